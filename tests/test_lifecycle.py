"""Identity lifecycle end to end: renewal before expiry, revocation, retirement."""

from __future__ import annotations

import dataclasses
import datetime
import sqlite3
import time
from pathlib import Path
from typing import Any

from twisted.internet import task
from twisted.trial.unittest import TestCase
from twisted.web.client import ResponseNeverReceived

from mdmappliance.enrollment import create_link
from mdmappliance.lifecycle import RenewalJob, retire_device, revoke_device
from mdmappliance.queue import enqueue_for_device
from mdmappliance.service import global_reactor, profile_factory
from tests.simulator import SimulatedDevice
from tests.support import InProcessAppliance

#: Identities from links live 20 seconds here, so the test can see the old one expire.
SHORT_DAYS = 20 / 86400


def query(path: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


class Lifecycle(TestCase):
    timeout = 120

    def setUp(self) -> None:
        self.appliance = InProcessAppliance(
            Path(self.mktemp()), enrollment={"identity_days": SHORT_DAYS}
        )
        self.addCleanup(self.appliance.stop)
        self.config = self.appliance.config
        self.store = self.appliance.store

    async def enrolled_device(self) -> SimulatedDevice:
        token, _ = await self.store.transaction(create_link, datetime.timedelta(days=1), "", "t")
        device = await SimulatedDevice.from_enrollment_link(
            self.config.enrollment_url(token), self.config.pki.ca_cert
        )
        self.addCleanup(device.close)
        await device.enroll()
        return device

    async def test_renewal_end_to_end(self) -> None:
        device = await self.enrolled_device()
        command_uuid = await self.store.transaction(enqueue_for_device, device.udid,
                                                    {"RequestType": "ProfileList"})
        self.assertEqual(await device.poll(), [command_uuid])
        assert device.identity is not None
        old = device.identity

        clock = task.Clock()
        clock.advance(time.time())
        renewed_factory = dataclasses.replace(profile_factory(self.config),
                                              identity_lifetime=datetime.timedelta(days=365))
        job = RenewalJob(self.store, renewed_factory, clock, datetime.timedelta(days=30))
        (renewal,) = await job.run_once()
        self.assertEqual(await job.run_once(), [], "one renewal per expiring identity")

        self.assertEqual(await device.poll(), [renewal])
        self.assertEqual(len(device.adopted), 1)
        new = device.identity
        self.assertNotEqual(new.certificate, old.certificate)
        self.assertEqual(device.adopted[0].profile["PayloadIdentifier"],
                         self.config.profile_identifier(), "the same top-level identifier")
        self.assertEqual(query(self.config.store.path,
                               "SELECT state FROM commands WHERE uuid = ?", renewal),
                         [("acknowledged",)])
        self.assertEqual(query(self.config.store.path,
                               "SELECT count(*) FROM identities WHERE udid = ?", device.udid),
                         [(2,)])

        # Wait (bounded) until the old certificate has expired for real, then keep working.
        left = (old.certificate.not_valid_after_utc
                - datetime.datetime.now(datetime.UTC)).total_seconds()
        self.assertLess(left, 30)
        await task.deferLater(global_reactor(), max(0.0, left) + 1.5, lambda: None)
        next_command = await self.store.transaction(enqueue_for_device, device.udid,
                                                    {"RequestType": "DeviceInformation"})
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
        self.assertEqual(command["Command"], {"RequestType": "RemoveProfile",
                                              "Identifier": self.config.profile_identifier()})
        reply = await device.report("Acknowledged", command_uuid)
        self.assertEqual((reply.code, reply.body), (200, b""))
        self.assertEqual((await device.report("Idle")).code, 401)
        self.assertEqual(query(self.config.store.path, "SELECT state FROM enrollments"),
                         [("retired",)])

    async def test_retire_now(self) -> None:
        device = await self.enrolled_device()
        self.assertIsNone(await self.store.transaction(
            retire_device, device.udid, self.config.profile_identifier(), "admin", now=True
        ))
        self.assertEqual((await device.report("Idle")).code, 401)
