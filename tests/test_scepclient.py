"""Debian's ``scepclient`` (micromdm/scep 2.1, an independent Go implementation) against the
SCEP server: its identity then checks in over mTLS and answers a command.

CI installs the ``scep`` package and sets MDMAPPLIANCE_REQUIRE_SCEPCLIENT=1, so there a
missing client fails these tests instead of skipping them.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import SkipTest

from mdmappliance import pki
from mdmappliance.commands.queue import enqueue_for_device
from mdmappliance.pki.identity import DeviceIdentity
from mdmappliance.simulator.device import reactor
from tests.support import sql
from tests.test_scep import SCEPCase

SCEPCLIENT = shutil.which("scepclient")
TIMEOUT = 60.0


def require_scepclient() -> str:
    if SCEPCLIENT is None:
        if os.environ.get("MDMAPPLIANCE_REQUIRE_SCEPCLIENT"):
            raise AssertionError("scepclient is required here (apt install scep)")
        raise SkipTest("scepclient is not installed (apt install scep)")
    return SCEPCLIENT


class SCEPClient(SCEPCase):
    def setUp(self) -> None:
        self.scepclient = require_scepclient()
        super().setUp()

    async def run_scepclient(
        self, directory: Path, common_name: str, challenge: str | None
    ) -> tuple[int, str]:
        """scepclient in ``directory`` (its key, CSR and certificate live there); with a
        certificate already there it sends a RenewalReq. Exit status and output."""
        directory.mkdir(exist_ok=True)
        args = [
            "-server-url",
            self.config.scep_url(),
            "-private-key",
            str(directory / "key.pem"),
            "-cn",
            common_name,
            "-organization",
            "",
            "-ou",
            "",
            "-country",
            "",
        ]
        if challenge is not None:
            args += ["-challenge", challenge]
        env = {"SSL_CERT_FILE": str(self.ca_cert), "PATH": os.environ.get("PATH", "")}
        run = getProcessOutputAndValue(self.scepclient, args, env=env, path=str(directory))
        timer = reactor.callLater(TIMEOUT, run.cancel)
        out, err, code = await run
        if timer.active():
            timer.cancel()
        return code, (out + err).decode(errors="replace")

    def identity(self, directory: Path) -> pki.IssuedPair:
        return pki.read_issuer(directory / "client.pem", directory / "key.pem")

    async def test_scepclient_enrolls_checks_in_renews_and_reuse_fails(self) -> None:
        received = await self.profile()
        assert received.scep
        common_name = received.scep["Subject"][0][0][1]
        challenge = received.scep["Challenge"]
        work = Path(self.mktemp()).absolute()
        work.mkdir()

        code, output = await self.run_scepclient(work / "wrong", common_name, "wrong-challenge")
        self.assertNotEqual(code, 0, output)
        self.assertIn("failInfo", output)
        self.assertEqual(self.issued_count(), 0)

        device_dir = work / "device"
        code, output = await self.run_scepclient(device_dir, common_name, challenge)
        self.assertEqual(code, 0, output)
        identity = self.identity(device_dir)
        identity.certificate.verify_directly_issued_by(self.ca)
        self.assertEqual(self.issued_count(), 1)

        code, output = await self.run_scepclient(work / "thief", common_name, challenge)
        self.assertNotEqual(code, 0, "a reused challenge issues nothing: " + output)
        self.assertEqual(self.issued_count(), 1)

        # The identity scepclient got checks in over mTLS and answers a command.
        device = self.appliance.device(identity=identity)
        self.addCleanup(device.close)
        await device.enroll()
        command_uuid = await self.appliance.store.transaction(
            enqueue_for_device,
            device.udid,
            {"RequestType": "DeviceInformation", "Queries": ["Model"]},
        )
        self.assertEqual(await device.poll(), [command_uuid])

        # With its certificate in place, scepclient renews it (RenewalReq, no challenge).
        code, output = await self.run_scepclient(device_dir, common_name, None)
        self.assertEqual(code, 0, output)
        renewed = self.identity(device_dir)
        self.assertNotEqual(renewed.certificate, identity.certificate)
        self.assertGreaterEqual(
            renewed.certificate.not_valid_after_utc, identity.certificate.not_valid_after_utc
        )
        self.assertEqual(self.issued_count(), 2)

        await device.use_identity(renewed)
        await device.enroll()
        stale = self.appliance.device(identity=identity, udid=device.udid)
        self.addCleanup(stale.close)
        self.assertEqual((await stale.report("Idle")).code, 403, "the old identity stops")
        self.assertEqual((await device.report("Idle")).code, 200)
        bound = DeviceIdentity.of(renewed.certificate, "tls").sha256
        self.assertIn(bound, await self.bound_identities(device.udid))

    async def bound_identities(self, udid: str) -> list[str]:
        rows = await self.appliance.store.run(
            sql, "SELECT sha256 FROM identities WHERE udid = ? AND current = 1", udid
        )
        return [r[0] for r in rows]
