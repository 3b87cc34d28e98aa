"""Replayed Mdm-Signature messages on the proxy listener (issue 12, case 6): a signingTime
outside the clock skew is refused, and a signed check-in that changes state is taken once."""

from __future__ import annotations

import datetime
import plistlib
from pathlib import Path
from typing import Any

from twisted.internet import task
from twisted.trial.unittest import SynchronousTestCase, TestCase

from mdmappliance.app.reactor import global_reactor
from mdmappliance.device.replay import ReplayGuard
from mdmappliance.simulator.device import SimulatedDevice, detached_signature
from tests.support import InProcessAppliance, free_port, query


class ThroughTheProxy(TestCase):
    timeout = 60

    def setUp(self) -> None:
        self.proxy_port = free_port()
        self.appliance = InProcessAppliance(
            Path(self.mktemp()),
            proxy={"enabled": True, "port": self.proxy_port, "trusted_proxies": ["127.0.0.1"]},
        )
        self.addCleanup(self.appliance.stop)
        self.db = self.appliance.config.store.path
        self.device: SimulatedDevice = self.appliance.device(
            base_url=f"http://127.0.0.1:{self.proxy_port}", sign_messages=True
        )
        self.addCleanup(self.device.close)

    async def signed(self, message: dict[str, Any]) -> tuple[bytes, bytes]:
        body = plistlib.dumps(message)
        assert self.device.identity is not None
        return body, detached_signature(self.device.identity, body)

    async def send(self, body: bytes, signature: bytes) -> int:
        self.device.sign_messages = False  # send this very signature
        try:
            reply = await self.device.put(
                self.device.checkin_path, body, headers={"Mdm-Signature": signature}
            )
        finally:
            self.device.sign_messages = True
        return reply.code

    def state(self) -> str:
        return str(query(self.db, "SELECT state FROM enrollments WHERE user_id = ''")[0][0])

    async def test_a_replayed_checkout_is_refused(self) -> None:
        await self.device.enroll()
        checkout = await self.signed(
            {"MessageType": "CheckOut", "UDID": self.device.udid, "Topic": self.device.topic}
        )
        self.assertEqual(await self.send(*checkout), 200)
        self.assertEqual(self.state(), "checked_out")
        # The device enrolls again (later: within one second, the same message signs the same).
        await task.deferLater(global_reactor(), 1.1, lambda: None)
        await self.device.enroll()
        self.assertEqual(self.state(), "enrolled")
        self.assertEqual(await self.send(*checkout), 403, "replayed")
        self.assertEqual(self.state(), "enrolled", "the replay changed nothing")
        await self.appliance.store.run(lambda tx: None)  # the audit event follows the reply
        refusals = query(self.db, "SELECT detail FROM events WHERE kind = 'device.refused'")
        self.assertIn("replayed Mdm-Signature", refusals[-1][0])

    async def test_a_signing_time_outside_the_skew_is_refused(self) -> None:
        await self.device.enroll()
        routes = self.appliance.service.getServiceNamed("proxy").site.routes
        skew = routes.resolver.trust.clock_skew
        later = datetime.datetime.now(datetime.UTC) + skew + datetime.timedelta(seconds=60)
        routes.resolver.now = lambda: later  # the message was signed long before "now"
        reply = await self.device.report("Idle")
        self.assertEqual(reply.code, 403)
        self.assertIn(b"outside", reply.body)


class Guard(SynchronousTestCase):
    def test_remembers_within_the_window_and_within_its_capacity(self) -> None:
        now = [0.0]
        guard = ReplayGuard(lambda: now[0], window=10, capacity=3)
        self.assertFalse(guard.taken(b"a"))
        guard.remember(b"a")
        self.assertTrue(guard.taken(b"a"))
        now[0] = 11
        self.assertFalse(guard.taken(b"a"), "forgotten after the window")
        for digest in (b"b", b"c", b"d", b"e"):
            guard.remember(digest)
        self.assertLessEqual(len(guard._expiry), 3, "bounded")
        self.assertTrue(guard.taken(b"e"))
        self.assertFalse(guard.taken(b"b"), "the oldest made room")
