"""Identity lifecycle end to end: renewal before expiry, revocation, retirement."""

from __future__ import annotations

import dataclasses
import datetime
import time
from pathlib import Path
from typing import Any

from twisted.internet import task
from twisted.trial.unittest import TestCase
from twisted.web.client import ResponseNeverReceived

from mdmappliance.app.enrollment_listener import profile_factory
from mdmappliance.app.reactor import global_reactor
from mdmappliance.commands.queue import enqueue_for_device
from mdmappliance.enrollment.renewal import RenewalJob
from mdmappliance.enrollment.retirement import retire_device, revoke_device
from mdmappliance.simulator.device import SimulatedDevice
from tests.support import InProcessAppliance, openssl_verify, query

#: Identities from links live 20 seconds here, so the test can see the old one expire.
SHORT_DAYS = 20 / 86400


class LifecycleCase(TestCase):
    timeout = 120

    def setUp(self) -> None:
        self.appliance = InProcessAppliance(
            Path(self.mktemp()), enrollment={"identity_days": SHORT_DAYS}
        )
        self.addCleanup(self.appliance.stop)
        self.config = self.appliance.config
        self.store = self.appliance.store

    async def enrolled_device(self) -> SimulatedDevice:
        device: SimulatedDevice = await self.appliance.device_from_link()
        self.addCleanup(device.close)
        await device.enroll()
        return device


class Lifecycle(LifecycleCase):
    async def test_renewal_end_to_end(self) -> None:
        device = await self.enrolled_device()
        command_uuid = await self.store.transaction(
            enqueue_for_device, device.udid, {"RequestType": "ProfileList"}
        )
        self.assertEqual(await device.poll(), [command_uuid])
        assert device.identity is not None
        old = device.identity

        clock = task.Clock()
        clock.advance(time.time())
        renewed_factory = dataclasses.replace(
            profile_factory(self.config), identity_lifetime=datetime.timedelta(days=365)
        )
        job = RenewalJob(self.store, renewed_factory, clock, datetime.timedelta(days=30))
        (renewal,) = await job.run_once()
        self.assertEqual(await job.run_once(), [], "one renewal per expiring identity")

        self.assertEqual(await device.poll(), [renewal])
        self.assertEqual(len(device.adopted), 1)
        new = device.identity
        self.assertNotEqual(new.certificate, old.certificate)
        self.assertEqual(
            device.adopted[0].profile["PayloadIdentifier"],
            self.config.profile_identifier(),
            "the same top-level identifier",
        )
        workdir = Path(self.mktemp())
        workdir.mkdir()
        openssl_verify(device.adopted[0].signed, self.config.pki.ca_cert, workdir)
        self.assertEqual(
            query(self.config.store.path, "SELECT state FROM commands WHERE uuid = ?", renewal),
            [("acknowledged",)],
        )
        self.assertEqual(
            query(
                self.config.store.path,
                "SELECT count(*) FROM identities WHERE udid = ?",
                device.udid,
            ),
            [(2,)],
        )

        # Wait (bounded) until the old certificate has expired for real, then keep working.
        left = (
            old.certificate.not_valid_after_utc - datetime.datetime.now(datetime.UTC)
        ).total_seconds()
        self.assertLess(left, 30)
        await task.deferLater(global_reactor(), max(0.0, left) + 1.5, lambda: None)
        next_command = await self.store.transaction(
            enqueue_for_device, device.udid, {"RequestType": "DeviceInformation"}
        )
        self.assertEqual(await device.poll(), [next_command])
        stale = self.appliance.device(udid=device.udid, identity=old)
        self.addCleanup(stale.close)
        with self.assertRaises(ResponseNeverReceived):
            await stale.report("Idle")

    async def test_revoked_identity_is_refused_and_audited(self) -> None:
        device = await self.enrolled_device()
        self.assertEqual(await self.store.transaction(revoke_device, device.udid, "admin"), 1)
        for attempt in (lambda: device.report("Idle"), device.authenticate):
            reply = await attempt()
            self.assertEqual(reply.code, 403)
            self.assertIn(b"revoked", reply.body)
        await self.store.run(lambda conn: None)
        kinds = [k for (k,) in query(self.config.store.path, "SELECT kind FROM events")]
        self.assertIn("identity.revoked", kinds)
        self.assertEqual(kinds.count("device.refused"), 2)

    async def test_retire_sends_remove_profile_then_401(self) -> None:
        device = await self.enrolled_device()
        command_uuid = await self.store.transaction(
            retire_device, device.udid, self.config.profile_identifier(), "admin"
        )
        reply = await device.report("Idle")
        command = reply.plist()
        self.assertEqual(command["CommandUUID"], command_uuid)
        self.assertEqual(
            command["Command"],
            {"RequestType": "RemoveProfile", "Identifier": self.config.profile_identifier()},
        )
        reply = await device.report("Acknowledged", command_uuid)
        self.assertEqual((reply.code, reply.body), (200, b""))
        self.assertEqual((await device.report("Idle")).code, 401)
        self.assertEqual(
            query(self.config.store.path, "SELECT state FROM enrollments"), [("retired",)]
        )

    async def test_retire_now(self) -> None:
        device = await self.enrolled_device()
        self.assertIsNone(
            await self.store.transaction(
                retire_device, device.udid, self.config.profile_identifier(), "admin", now=True
            )
        )
        self.assertEqual((await device.report("Idle")).code, 401)


class AdminRoutes(LifecycleCase):
    async def call(self, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        import json

        import treq
        from twisted.web.client import HTTPConnectionPool

        pool = HTTPConnectionPool(global_reactor(), persistent=False)
        headers: dict[bytes | str, bytes | str] = {
            "Authorization": f"Bearer {self.config.read_admin_api_key()}"
        }
        response = await treq.post(
            f"{self.config.admin_url()}{path}", json=body or {}, headers=headers, pool=pool
        )
        return response.code, json.loads(await response.content())

    async def test_revoke_and_retire_through_the_admin_api(self) -> None:
        device = await self.enrolled_device()
        code, body = await self.call(f"/v1/devices/{device.udid}/retire", {"now": "yes"})
        self.assertEqual(code, 400)
        code, body = await self.call(f"/v1/devices/{device.udid}/retire")
        self.assertEqual((code, body["state"]), (200, "retiring"))
        code, body = await self.call(f"/v1/devices/{device.udid}/revoke")
        self.assertEqual((code, body["revoked_identities"]), (200, 1))
        self.assertEqual((await device.report("Idle")).code, 403)
        code, _ = await self.call("/v1/devices/NO-SUCH-DEVICE/revoke")
        self.assertEqual(code, 404)
        code, _ = await self.call("/v1/devices/NO-SUCH-DEVICE/retire")
        self.assertEqual(code, 404)


class DeviceCommand(TestCase):
    timeout = 120

    async def test_revoke_and_retire_from_the_command_line(self) -> None:
        from twisted.internet.threads import deferToThread

        from mdmappliance.device.handlers import handle_message
        from mdmappliance.device.policy import ChannelPolicy
        from mdmappliance.pki.escrow import Escrow, read_key
        from mdmappliance.pki.identity import DeviceIdentity
        from mdmappliance.simulator.device import TOPIC, issue_device_identity
        from tests.support import enrollment_checkins, run_cli

        # The fleet commands go through the admin API: a running appliance answers them.
        appliance = InProcessAppliance(Path(self.mktemp()))
        self.addCleanup(appliance.stop)
        config = appliance.config
        config_path = config.path
        udid = "CLI-DEVICE-0001"
        identity = DeviceIdentity.of(
            issue_device_identity(config.pki.ca_cert, config.pki.ca_key, udid).certificate, "tls"
        )
        policy = ChannelPolicy(escrow=Escrow(read_key(config.device.unlock_key_file)))
        for message in enrollment_checkins(udid, TOPIC):
            await appliance.store.transaction(handle_message, message, identity, policy, ())

        def cli(*args: str) -> Any:
            return deferToThread(run_cli, *args)

        retired = await cli("devices", "retire", udid, "--config", str(config_path))
        self.assertEqual(retired.returncode, 0, retired.stderr)
        self.assertIn("RemoveProfile queued", retired.stdout)
        revoked = await cli("devices", "revoke", udid, "--config", str(config_path))
        self.assertEqual(revoked.returncode, 0, revoked.stderr)
        self.assertIn("1 identity certificate(s) revoked", revoked.stdout)
        again = await cli("device", "revoke", udid, "--config", str(config_path))
        self.assertEqual(again.returncode, 1)
        self.assertEqual(len(again.stderr.strip().splitlines()), 1)
        unknown = await cli("device", "retire", "NO-SUCH-DEVICE", "--config", str(config_path))
        self.assertEqual(unknown.returncode, 1)
        self.assertIn("no enrollment for NO-SUCH-DEVICE", unknown.stderr)
