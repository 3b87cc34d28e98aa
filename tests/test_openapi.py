"""The admin API against its own OpenAPI document, fuzzed by schemathesis (from PyPI): no
input may get a 5xx, and every answer must match the document (status, content type, body)."""

from __future__ import annotations

import sys
from pathlib import Path

from twisted.internet import reactor
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import TestCase

from mdmappliance.admin.openapi import OPERATION_IDS, document
from mdmappliance.app.admin_listener import command_sender
from mdmappliance.commands.send import resolve_udids
from mdmappliance.simulator.model import DeviceModel
from tests.support import InProcessAppliance, subprocess_env

CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,"
    "response_schema_conformance"
)


class OpenAPI(TestCase):
    timeout = 300

    def test_every_route_is_described(self) -> None:
        from twisted.internet.task import Clock

        from mdmappliance.admin.api import AdminAPI
        from mdmappliance.admin.context import AdminContext
        from mdmappliance.store import Store

        store = Store(Path(self.mktemp()))  # never opened: the routes only need to exist
        api = AdminAPI(AdminContext(store=store, clock=Clock(), started_at=0))
        routes = {
            rule.rule.replace("<string:", "{").replace("<int:", "{").replace(">", "}")
            for rule in api.app.url_map.iter_rules()
        }
        self.assertEqual(routes, set(document()["paths"]))
        # Klein names each endpoint after its function: two routes with functions of one
        # name would both call the last one registered.
        rules = list(api.app.url_map.iter_rules())
        self.assertEqual(len({rule.endpoint for rule in rules}), len(rules))

    async def test_schemathesis_finds_nothing(self) -> None:
        st = Path(sys.executable).with_name("st")
        if not st.exists():
            raise self.skipTest("schemathesis is not installed (pip install -e .[test])")
        appliance = InProcessAppliance(Path(self.mktemp()))
        self.addCleanup(appliance.stop)
        config = appliance.config
        # One enrolled device with an answered command, so listings are not all empty.
        device = appliance.device()
        self.addCleanup(device.close)
        await device.enroll()
        sender = command_sender(config, appliance.store)
        found, _ = await appliance.store.run(resolve_udids, [device.udid])
        await sender.send(list(found.values()), {"RequestType": "SecurityInfo"}, actor="test")
        await device.poll(DeviceModel(udid=device.udid).answer)
        workdir = Path(self.mktemp()).absolute()
        workdir.mkdir()
        env = {**subprocess_env(), "NO_COLOR": "1", "HOME": str(workdir)}
        out, err, code = await getProcessOutputAndValue(
            str(st),
            [
                "run",
                f"{config.admin_url()}/openapi.json",
                "--header",
                f"Authorization: Bearer {config.read_admin_api_key()}",
                "--checks",
                CHECKS,
                "--max-examples",
                "15",
                "--seed",
                "20261126",
                "--workers",
                "1",
                "--generation-database",
                "none",
                "--no-color",
            ],
            env=env,
            path=str(workdir),
            reactor=reactor,
        )
        report = (out + err).decode(errors="replace")
        self.assertEqual(code, 0, report[-6000:])
        # Every operation but one schemathesis does not test on its own (it was 15 of 16).
        self.assertIn(f"Tested: {len(OPERATION_IDS) - 1}", report)
