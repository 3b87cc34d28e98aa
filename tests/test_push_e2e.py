"""Queue a command → the appliance pushes over HTTP/2 → the device polls → the result is
stored, with no manual step; plus explicit pushes, health, and inactive devices."""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

import treq
from twisted.internet import reactor, task
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool

from mdmappliance.apns.pusher import PushService
from mdmappliance.app.admin_listener import command_sender
from mdmappliance.commands.inventory import command_status
from mdmappliance.device.inactivity import InactivityJob
from mdmappliance.simulator.device import SimulatedDevice
from mdmappliance.simulator.model import DeviceModel
from tests.apns_server import FakeAPNs, Received, Reply
from tests.pushcerts import make_push_pki
from tests.support import InProcessAppliance, query


class PushEndToEnd(TestCase):
    timeout = 120

    def setUp(self) -> None:
        self.pki = make_push_pki(Path(self.mktemp()).absolute())
        self.gateway = FakeAPNs(on_push=self.delivered)
        port = self.gateway.listen(
            self.pki.gateway_cert, self.pki.gateway_key, self.pki.push_ca_file
        )
        self.addCleanup(self.gateway.port.stopListening)
        self.appliance = InProcessAppliance(
            Path(self.mktemp()),
            device={"topic": ""},
            apns={
                "gateway": f"https://localhost:{port}",
                "ca_file": str(self.pki.gateway_ca_file),
                "cert_file": str(self.pki.cert_file),
                "key_file": str(self.pki.key_file),
                "coalesce_seconds": 0.05,
            },
        )
        self.addCleanup(self.appliance.stop)
        self.config = self.appliance.config
        self.store = self.appliance.store
        self.push = self.appliance.service.getServiceNamed("apns")
        assert isinstance(self.push, PushService)
        self.sender = command_sender(self.config, self.store, self.push)
        self.devices: dict[str, tuple[SimulatedDevice, DeviceModel]] = {}
        self.polls: list[Deferred[Any]] = []
        self.http = treq.client.HTTPClient(
            Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False))
        )

    def delivered(self, request: Received) -> None:
        """The device whose token was pushed wakes up and polls, as a real one does."""
        found = self.devices.get(request.token)
        if found is not None:
            device, model = found
            self.polls.append(Deferred.fromCoroutine(device.poll(model.answer)))

    async def enrolled(self) -> tuple[SimulatedDevice, int]:
        device = await self.appliance.device_from_link()
        self.addCleanup(device.close)
        self.assertEqual(device.topic, self.pki.topic, "the profile carries the cert's topic")
        await device.enroll()
        self.devices[device.token.hex()] = (device, DeviceModel(udid=device.udid))
        return device, await self.appliance.enrollment_id(device.udid)

    async def settle(self, command_uuid: str) -> dict[str, Any]:
        for _ in range(200):
            status = await self.store.run(command_status, command_uuid)
            if status["state"] not in ("queued", "sent"):
                return dict(status)
            await task.deferLater(reactor, 0.05, lambda: None)
        raise AssertionError(f"{command_uuid} never got a result")

    async def test_queue_push_poll_result(self) -> None:
        device, enrollment_id = await self.enrolled()
        result = await self.sender.send(
            [enrollment_id], {"RequestType": "DeviceInformation"}, actor="test"
        )
        command_uuid = result.queued[enrollment_id]
        status = await self.settle(command_uuid)
        self.assertEqual(status["state"], "acknowledged")
        (request,) = self.gateway.received
        self.assertEqual(json.loads(request.body), {"mdm": device.push_magic})
        self.assertEqual(request.headers["apns-topic"], self.pki.topic)
        self.assertEqual(
            query(
                self.config.store.path,
                "SELECT push_status FROM enrollments WHERE id = ?",
                enrollment_id,
            ),
            [("sent",)],
        )
        ((serial,),) = query(self.config.store.path, "SELECT serial_number FROM devices")
        self.assertTrue(serial.startswith("C02SIM"), "the answer reached the inventory")

    async def test_many_commands_to_many_devices_are_coalesced(self) -> None:
        enrolled = [await self.enrolled() for _ in range(3)]
        ids = [enrollment_id for _, enrollment_id in enrolled]
        sent = [
            await self.sender.send(ids, {"RequestType": name}, actor="test")
            for name in ("ProfileList", "SecurityInfo", "CertificateList")
        ]
        for result in sent:
            for command_uuid in result.queued.values():
                self.assertEqual((await self.settle(command_uuid))["state"], "acknowledged")
        self.assertEqual(len(self.gateway.received), 3, "one push per device, not per command")

    async def test_not_now_gets_no_push(self) -> None:
        device, enrollment_id = await self.enrolled()
        self.devices.clear()  # the device does not wake by itself in this test
        result = await self.sender.send([enrollment_id], {"RequestType": "ProfileList"}, actor="t")
        for _ in range(100):
            if self.gateway.received:
                break
            await task.deferLater(reactor, 0.02, lambda: None)
        self.assertEqual(len(self.gateway.received), 1)
        await device.poll(lambda command: ("NotNow", {}))
        await task.deferLater(reactor, 0.3, lambda: None)
        self.assertEqual(len(self.gateway.received), 1, "NotNow is not answered with a push")
        self.assertEqual(
            (await self.store.run(command_status, result.queued[enrollment_id]))["state"],
            "not_now",
        )

    async def test_explicit_push_and_health(self) -> None:
        device, _ = await self.enrolled()
        self.devices.clear()
        url = self.config.admin_url()
        headers: dict[bytes | str, bytes | str] = {
            "Authorization": f"Bearer {self.config.read_admin_api_key()}"
        }
        response = await self.http.post(
            f"{url}/v1/push", json={"udids": [device.udid, "UNKNOWN-0000"]}, headers=headers
        )
        self.assertEqual(response.code, 202)
        body = await response.json()
        self.assertEqual((body["requested"], body["unknown"]), ([device.udid], ["UNKNOWN-0000"]))
        for _ in range(100):
            if self.gateway.received:
                break
            await task.deferLater(reactor, 0.02, lambda: None)
        self.assertEqual(len(self.gateway.received), 1)
        bad = await self.http.post(f"{url}/v1/push", json={"udids": "x"}, headers=headers)
        self.assertEqual(bad.code, 400)
        await bad.content()
        health = await self.http.get(f"{url}/v1/health", headers=headers)
        apns = (await health.json())["apns"]
        self.assertEqual(apns["topic"], self.pki.topic)
        self.assertGreater(apns["certificate_days_left"], 300)
        self.assertEqual(
            query(self.config.store.path, "SELECT actor FROM events WHERE kind = 'push.requested'"),
            [("api:admin",)],
        )

    async def test_403_makes_health_loud(self) -> None:
        _, enrollment_id = await self.enrolled()
        self.gateway.answer = lambda request: Reply(403, "BadCertificate")
        self.push.pusher.request([enrollment_id])
        for _ in range(100):
            if self.push.pusher.blocked:
                break
            await task.deferLater(reactor, 0.02, lambda: None)
        headers: dict[bytes | str, bytes | str] = {
            "Authorization": f"Bearer {self.config.read_admin_api_key()}"
        }
        health = await self.http.get(f"{self.config.admin_url()}/v1/health", headers=headers)
        self.assertEqual(health.code, 503)
        body = await health.json()
        self.assertEqual(body["status"], "degraded")
        self.assertIn("403 BadCertificate", body["apns"]["alert"])

    async def test_inactive_devices_are_pushed_marked_and_wake_up(self) -> None:
        device, enrollment_id = await self.enrolled()
        self.devices.clear()
        clock = task.Clock()
        clock.advance(
            (datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=8)).timestamp()
        )
        job = InactivityJob(
            self.store,
            self.push.pusher,
            clock,
            push_after=datetime.timedelta(days=1),
            inactive_after=datetime.timedelta(days=7),
        )
        self.assertEqual(await job.run_once(), (1, 1))
        self.assertEqual(await job.run_once(), (1, 0), "marked once; pushed until it answers")
        for _ in range(100):
            if self.gateway.received:
                break
            await task.deferLater(reactor, 0.02, lambda: None)
        self.assertTrue(self.gateway.received, "the quiet device was pushed")
        db = self.config.store.path
        self.assertEqual(
            query(db, "SELECT kind FROM events WHERE kind LIKE 'enrollment.%'"),
            [("enrollment.inactive",)],
        )
        await device.poll()
        self.assertEqual(
            query(db, "SELECT inactive_since FROM enrollments WHERE id = ?", enrollment_id),
            [(None,)],
        )
        self.assertEqual(
            [k for (k,) in query(db, "SELECT kind FROM events WHERE kind LIKE 'enrollment.%'")],
            ["enrollment.inactive", "enrollment.active"],
        )
