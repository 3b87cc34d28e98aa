"""Simulated devices against a real ``mdmappliance serve`` child process on loopback."""

from __future__ import annotations

import signal
import sqlite3
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from twisted.internet import defer
from twisted.trial.unittest import TestCase

from mdmappliance.commands.queue import enqueue
from mdmappliance.config import Config, load_config
from mdmappliance.simulator.device import SimulatedDevice
from mdmappliance.store import Tx, in_transaction
from tests.support import RunningAppliance, free_port, get_enrollment, make_installation

DEVICES = 50
COMMANDS_PER_DEVICE = 20


def enqueue_now(config: Config, udid: str, commands: list[dict[str, Any]]) -> list[str]:
    """Queue commands through the store function, from this process, as the admin API will."""
    conn = sqlite3.connect(config.store.path, isolation_level=None, timeout=30)
    conn.execute("PRAGMA busy_timeout = 30000")
    try:

        def add(tx: Tx) -> list[str]:
            enrollment = get_enrollment(tx, udid)
            assert enrollment is not None
            return [enqueue(tx, enrollment.id, command) for command in commands]

        return in_transaction(Tx(conn), add)
    finally:
        conn.close()


def states(config: Config) -> Counter[str]:
    conn = sqlite3.connect(config.store.path)
    try:
        return Counter(state for (state,) in conn.execute("SELECT state FROM commands"))
    finally:
        conn.close()


class DevicesAgainstServe(TestCase):
    timeout = 300

    def setUp(self) -> None:
        self.directory = Path(self.mktemp()).absolute()
        self.config_path = make_installation(self.directory, port=free_port())
        self.config = load_config(self.config_path)
        self.server = self.start()

    def start(self) -> RunningAppliance:
        server = RunningAppliance(
            [sys.executable, "-m", "mdmappliance", "serve", "--config", str(self.config_path)],
            self.config.admin.port,
            self.directory,
        )
        self.addCleanup(server.kill)
        server.wait_until_listening()
        return server

    def device(self) -> SimulatedDevice:
        device = SimulatedDevice.issued(
            f"https://127.0.0.1:{self.config.device.port}",
            self.config.pki.ca_cert,
            self.config.pki.ca_key,
        )
        self.addCleanup(device.close)
        return device

    async def test_fifty_devices_a_thousand_commands(self) -> None:
        devices = [self.device() for _ in range(DEVICES)]
        await defer.gatherResults([defer.ensureDeferred(d.enroll()) for d in devices])
        queued = {
            d.udid: enqueue_now(
                self.config,
                d.udid,
                [
                    {"RequestType": "DeviceInformation", "Queries": [f"n{n}"]}
                    for n in range(COMMANDS_PER_DEVICE)
                ],
            )
            for d in devices
        }
        refused_once: set[str] = set()

        def answer(command: dict[str, Any]) -> tuple[str, dict[str, Any]]:
            command_uuid = command["CommandUUID"]
            if hash(command_uuid) % 7 == 0 and command_uuid not in refused_once:
                refused_once.add(command_uuid)
                return "NotNow", {}
            return "Acknowledged", {}

        async def drain(device: SimulatedDevice) -> None:
            for _ in range(10):  # each round is a later poll on a new connection
                received = await device.poll(answer)
                await device.close()
                if not received:
                    return
            raise AssertionError(f"{device.udid} still had commands after 10 polls")

        await defer.gatherResults([defer.ensureDeferred(drain(d)) for d in devices])

        executed = [u for d in devices for u in d.executed]
        self.assertEqual(len(executed), DEVICES * COMMANDS_PER_DEVICE, "none lost")
        self.assertEqual(len(set(executed)), len(executed), "none run twice")
        for device in devices:
            self.assertEqual(sorted(device.executed), sorted(queued[device.udid]))
            in_order = [u for u in queued[device.udid] if u not in refused_once]
            self.assertEqual(
                [u for u in device.executed if u not in refused_once],
                in_order,
                "first in, first out",
            )
        self.assertTrue(refused_once, "some commands were answered NotNow")
        self.assertEqual(
            states(self.config), Counter({"acknowledged": DEVICES * COMMANDS_PER_DEVICE})
        )

    async def test_sigkill_between_send_and_result_resends_the_same_uuid(self) -> None:
        device = self.device()
        await device.enroll()
        (command_uuid,) = enqueue_now(self.config, device.udid, [{"RequestType": "ProfileList"}])
        reply = await device.report("Idle")
        self.assertEqual(reply.plist()["CommandUUID"], command_uuid)
        await device.close()

        self.server.process.send_signal(signal.SIGKILL)
        self.server.process.wait(timeout=30)
        self.server = self.start()

        self.assertEqual(await device.poll(), [command_uuid])
        self.assertEqual(device.executed, [command_uuid])
        self.assertEqual(states(self.config), Counter({"acknowledged": 1}))
