"""Webhooks: signed, in order, retried, and never lost across a restart mid-delivery."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from twisted.internet import reactor, task
from twisted.trial.unittest import SynchronousTestCase, TestCase

from mdmappliance.admin.webhooks import KINDS, sign, verify
from mdmappliance.app.admin_listener import command_sender
from mdmappliance.simulator.device import SimulatedDevice
from mdmappliance.simulator.model import DeviceModel
from tests.support import InProcessAppliance, query
from tests.webhook_receiver import WebhookReceiver


class Signatures(SynchronousTestCase):
    def test_sign_and_verify(self) -> None:
        secret, body, now = b"k" * 32, b'{"id":"x"}', 1_800_000_000
        header = sign(secret, body, now)
        self.assertTrue(verify(secret, body, header, now + 10))
        self.assertFalse(verify(secret, body + b" ", header, now), "tampered body")
        self.assertFalse(verify(b"other" * 8, body, header, now), "another secret")
        self.assertFalse(verify(secret, body, header, now + 3600), "replayed an hour later")
        self.assertFalse(verify(secret, body, "v1=abc", now), "no timestamp")


async def until(condition: Any, seconds: float = 30) -> None:
    for _ in range(int(seconds / 0.05)):
        if condition():
            return
        await task.deferLater(reactor, 0.05, lambda: None)
    raise AssertionError("condition not met in time")


class Delivery(TestCase):
    timeout = 120

    def setUp(self) -> None:
        self.directory = Path(self.mktemp())
        self.receiver = WebhookReceiver(secret=b"")
        url = self.receiver.listen()
        self.addCleanup(self.receiver.port.stopListening)
        self.appliance = self.start(
            webhooks={"urls": [url], "retry_base_seconds": 0.05, "poll_interval": 0.05}
        )
        self.receiver.secret = self.appliance.config.read_webhook_secret()

    def start(self, **sections: Any) -> InProcessAppliance:
        if sections:
            appliance = InProcessAppliance(self.directory, **sections)
        else:
            appliance = InProcessAppliance.reopen(self.config_path)
        self.config_path: Path = appliance.config.path
        self.addCleanup(appliance.stop)
        return appliance

    async def enrolled(self, appliance: InProcessAppliance) -> tuple[SimulatedDevice, int]:
        device = await appliance.device_from_link()
        self.addCleanup(device.close)
        await device.enroll()
        return device, await appliance.enrollment_id(device.udid)

    async def command_round(
        self, appliance: InProcessAppliance, device: SimulatedDevice, enrollment_id: int
    ) -> None:
        sender = command_sender(appliance.config, appliance.store)
        await sender.send([enrollment_id], {"RequestType": "SecurityInfo"}, actor="test")
        await device.poll(DeviceModel(udid=device.udid).answer)

    def expected_ids(self) -> list[int]:
        placeholders = ",".join("?" * len(KINDS))
        return [
            row[0]
            for row in query(
                self.appliance.config.store.path,
                f"SELECT id FROM events WHERE kind IN ({placeholders}) ORDER BY id",
                *KINDS,
            )
        ]

    def received_ids(self) -> list[int]:
        return [int(event["id"].rsplit("-", 1)[1]) for event in self.receiver.events]

    async def test_every_event_in_order_across_a_restart_mid_delivery(self) -> None:
        device, enrollment_id = await self.enrolled(self.appliance)
        await self.command_round(self.appliance, device, enrollment_id)
        await until(lambda: self.received_ids() == self.expected_ids())
        kinds = [event["type"] for event in self.receiver.events]
        self.assertEqual(kinds, ["checkin.authenticate", "checkin.token_update", "command.result"])
        result = self.receiver.events[-1]
        self.assertEqual(result["enrollment"], {"udid": device.udid, "user_id": ""})
        self.assertEqual(result["payload"]["request_type"], "SecurityInfo")
        self.assertTrue(result["payload"]["result"]["DataProtection"])

        # Failures are retried; the order holds.
        self.receiver.fail_next = 3
        await self.command_round(self.appliance, device, enrollment_id)
        await until(lambda: self.received_ids() == self.expected_ids())
        ((failures,),) = query(
            self.appliance.config.store.path, "SELECT failures FROM webhook_cursors"
        )
        self.assertEqual(failures, 3)

        # The receiver holds the next delivery; the appliance stops with it in flight.
        self.receiver.hold = True
        await self.command_round(self.appliance, device, enrollment_id)
        await until(lambda: bool(self.receiver.held))
        await self.appliance.stop()
        self.receiver.hold = False
        self.appliance = self.start()  # the same installation, restarted
        await device.close()
        await self.command_round(self.appliance, device, enrollment_id)
        await until(lambda: self.received_ids() == self.expected_ids())
        self.assertEqual(len(self.received_ids()), 3 + 1 + 1 + 1)
        self.assertEqual(self.receiver.bad_signatures, 0)
        self.assertGreater(self.receiver.deliveries, len(self.receiver.events), "retried")

    async def test_todays_check_in_messages_are_delivered_without_their_tokens(self) -> None:
        device, _ = await self.enrolled(self.appliance)
        token = b"bootstrap-token-" + bytes(range(32))
        self.assertEqual((await device.set_bootstrap_token(token)).code, 200)
        self.assertEqual((await device.get_bootstrap_token()).code, 200)
        await until(lambda: self.received_ids() == self.expected_ids())
        kinds = [event["type"] for event in self.receiver.events]
        self.assertEqual(kinds[-2:], ["checkin.bootstrap_token_set", "checkin.bootstrap_token_get"])
        self.assertEqual(self.receiver.events[-2]["enrollment"]["udid"], device.udid)
        self.assertNotIn(base64.b64encode(token).decode(), json.dumps(self.receiver.events))

    async def test_a_receiver_that_is_down_loses_nothing(self) -> None:
        self.receiver.fail_next = 10**6
        _device, _ = await self.enrolled(self.appliance)
        await until(lambda: self.receiver.deliveries >= 3)
        self.assertEqual(self.receiver.events, [])
        self.receiver.fail_next = 0
        await until(lambda: self.received_ids() == self.expected_ids())
        self.assertEqual(len(self.receiver.events), 2)
