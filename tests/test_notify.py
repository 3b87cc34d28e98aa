"""systemd readiness: what the appliance sends to ``$NOTIFY_SOCKET``, and in which order.

Each test binds its own unix datagram socket, as systemd does for a ``Type=notify`` unit,
and starts the real appliance pointed at it: ``mdmappliance serve`` and ``twistd`` as child
processes from the installed scripts, and the service tree in this process.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from twisted.internet.task import deferLater
from twisted.logger import ILogObserver, LogLevel, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import provider

from mdmappliance.app.graceful import ListenerService
from mdmappliance.app.notify import Notifier, socket_address
from mdmappliance.app.reactor import global_reactor
from mdmappliance.app.service import ApplianceService, make_service
from mdmappliance.config import Config, load_config
from tests.support import (
    REPO,
    SCHEMA_VERSION,
    free_port,
    make_installation,
    subprocess_env,
    twistd,
)


class NotifySocket:
    """A unix datagram socket standing in for systemd's notify socket."""

    def __init__(self, case: SynchronousTestCase, *, abstract: bool = False) -> None:
        if abstract:
            name = f"mdmappliance-test-{secrets.token_hex(8)}"
            self.env_value = "@" + name
            address = "\0" + name
        else:
            # Not under _trial_temp: a unix socket path must fit in 108 bytes.
            where = tempfile.mkdtemp(prefix="notify-")
            case.addCleanup(shutil.rmtree, where, True)
            address = self.env_value = os.path.join(where, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        case.addCleanup(self.sock.close)
        self.sock.bind(address)
        #: What arrived after the message ``wait_for`` waited for, in the same datagram.
        self.early: list[str] = []

    def pending(self) -> list[str]:
        """The messages that have arrived so far (a datagram may carry several lines)."""
        messages: list[str] = []
        self.sock.setblocking(False)
        while True:
            try:
                messages += self.sock.recv(4096).decode().splitlines()
            except BlockingIOError:
                return messages

    def wait_for(
        self, wanted: str, process: subprocess.Popen[bytes] | None = None, timeout: float = 60
    ) -> list[str]:
        """The messages up to and including ``wanted``; fails when the process exits first
        or nothing comes within ``timeout`` seconds."""
        messages: list[str] = []
        deadline = time.monotonic() + timeout
        while wanted not in messages:
            exited = process is not None and process.poll() is not None
            if exited or time.monotonic() > deadline:
                messages += self.pending()
                if wanted in messages:
                    break
                why = f"exited with {process.returncode}" if exited and process else "timed out"
                raise AssertionError(f"no {wanted} ({why}); got {messages}")
            self.sock.settimeout(0.2)
            try:
                messages += self.sock.recv(4096).decode().splitlines()
            except TimeoutError:
                continue
        rest = messages.index(wanted) + 1
        self.early = messages[rest:]
        return messages[:rest]


def serving_line(config: Config) -> str:
    return (
        f"STATUS=serving devices on https://localhost:{config.device.port}, "
        f"enrollment on https://localhost:{config.enrollment.port}/enroll/, "
        f"admin on http://127.0.0.1:{config.admin.port}"
    )


class Subprocess(SynchronousTestCase):
    """The real command under a NOTIFY_SOCKET, as systemd runs it."""

    def start(self, command: list[str], notify: NotifySocket) -> tuple[Any, Config, Path]:
        directory = Path(self.mktemp()).absolute()
        config_path = make_installation(directory, port=free_port())
        env = subprocess_env()
        env["NOTIFY_SOCKET"] = notify.env_value
        with (directory / "out").open("wb") as out, (directory / "err").open("wb") as err:
            process = subprocess.Popen(
                [*command, "--config", str(config_path)],
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=str(directory),
            )
        self.addCleanup(self._kill, process)
        return process, load_config(config_path), directory

    @staticmethod
    def _kill(process: subprocess.Popen[bytes]) -> None:
        if process.poll() is None:
            process.kill()
            process.wait()

    def check_readiness(
        self, command: list[str], notify: NotifySocket, stopped_status: int = 0
    ) -> None:
        process, config, directory = self.start(command, notify)
        started = notify.wait_for("READY=1", process)
        # Ready means serving: every listener accepts now, and the database answers.
        for port in (config.admin.port, config.device.port, config.enrollment.port):
            socket.create_connection(("127.0.0.1", port), timeout=10).close()
        request = urllib.request.Request(f"http://127.0.0.1:{config.admin.port}/v1/health")
        request.add_header("Authorization", f"Bearer {config.read_admin_api_key()}")
        with urllib.request.urlopen(request, timeout=10) as response:
            health = json.loads(response.read())
        self.assertEqual(health["database"], {"ok": True, "schema_version": SCHEMA_VERSION})

        self.assertEqual(
            started,
            [
                f"STATUS=opening the database {config.store.path} "
                "(and migrating it if it is older)",
                "STATUS=binding the listeners",
                "STATUS=starting the services",
                serving_line(config),
                "READY=1",
            ],
        )
        self.assertEqual(notify.early + notify.pending(), [], "nothing until it stops")

        process.send_signal(signal.SIGTERM)
        stopping = notify.wait_for("STOPPING=1", process)
        self.assertEqual(stopping, ["STOPPING=1"])
        status = process.wait(timeout=60)
        err = (directory / "err").read_text() + (directory / "out").read_text()
        self.assertEqual(status, stopped_status, err)
        self.assertEqual(
            notify.early + notify.pending(),
            ["STATUS=stopping: draining requests in flight, then closing the database"],
        )
        self.assertNotIn("cannot notify systemd", err)

    def serve(self) -> list[str]:
        # The installed console script, as the unit's ExecStart runs it.
        return [str(Path(sys.executable).parent / "mdmappliance"), "serve"]

    def test_serve(self) -> None:
        self.check_readiness(self.serve(), NotifySocket(self))

    def test_serve_abstract_socket(self) -> None:
        self.check_readiness(self.serve(), NotifySocket(self, abstract=True))

    def test_twistd(self) -> None:
        # twistd re-raises SIGTERM on itself once stopped (see test_e2e.test_twistd).
        command = [twistd(), "--nodaemon", "--pidfile=", "mdmappliance"]
        self.check_readiness(command, NotifySocket(self), stopped_status=-signal.SIGTERM)


class Witness(Notifier):
    """A notifier that also notes, when it says READY=1, what was not ready yet."""

    service: ApplianceService
    unready: list[str] | None = None

    def ready(self) -> None:
        store = self.service.getServiceNamed("store")
        self.unready = [
            child.name
            for child in self.service
            if (isinstance(child, ListenerService) and child.port is None) or not child.running
        ]
        if getattr(store, "migration_report", None) is None:
            self.unready.append("the database")
        super().ready()


class InProcess(TestCase):
    """The service tree in this process, with the notifier handed to it."""

    def setUp(self) -> None:
        self.config = load_config(make_installation(Path(self.mktemp()), port=free_port()))
        self.warnings: list[str] = []

        @provider(ILogObserver)
        def observe(event: dict[str, Any]) -> None:
            if event.get("log_level") == LogLevel.warn:
                self.warnings.append(formatEvent(event))

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)

    async def start(self, notifier: Notifier) -> ApplianceService:
        service = make_service(self.config, global_reactor(), notifier)
        if isinstance(notifier, Witness):
            notifier.service = service
        service.privilegedStartService()
        service.startService()
        self.addCleanup(lambda: service.stopService() if service.running else None)
        # Ready is said once the reactor runs; trial runs it only while the test waits.
        await deferLater(global_reactor(), 0, lambda: None)
        return service

    def notify_warnings(self) -> list[str]:
        return [w for w in self.warnings if "cannot notify systemd" in w]

    async def test_ready_after_everything_started_stopping_before_anything_stops(self) -> None:
        notify = NotifySocket(self)
        witness = Witness(notify.env_value)
        service = await self.start(witness)
        started = notify.pending()
        self.assertEqual(started[-2:], [serving_line(self.config), "READY=1"])
        self.assertEqual(witness.unready, [], "READY=1 before these were")
        socket.create_connection(("127.0.0.1", self.config.admin.port), timeout=10).close()

        heard_when_stopped: dict[str, list[str]] = {}
        for child in service:

            def stop(child: Any = child, original: Any = child.stopService) -> Any:
                heard_when_stopped[child.name] = notify.pending()
                return original()

            self.patch(child, "stopService", stop)
        await service.stopService()
        newest = list(service)[-1].name
        self.assertEqual(heard_when_stopped[newest][0], "STOPPING=1")
        self.assertEqual(len(heard_when_stopped), len(list(service)), "every child stopped")
        self.assertEqual(self.notify_warnings(), [])

    async def test_unreachable_socket_is_logged_once_and_serves(self) -> None:
        where = tempfile.mkdtemp(prefix="notify-")
        self.addCleanup(shutil.rmtree, where, True)
        service = await self.start(Notifier(os.path.join(where, "nobody-listens")))
        socket.create_connection(("127.0.0.1", self.config.admin.port), timeout=10).close()
        await service.stopService()
        warnings = self.notify_warnings()
        self.assertEqual(len(warnings), 1, warnings)
        self.assertIn("nobody-listens", warnings[0])

    async def test_without_notify_socket_nothing_is_sent_or_logged(self) -> None:
        notifier = Notifier.from_environment({})
        self.assertFalse(notifier.enabled)
        service = await self.start(notifier)
        socket.create_connection(("127.0.0.1", self.config.admin.port), timeout=10).close()
        await service.stopService()
        self.assertEqual(self.notify_warnings(), [])


class Addresses(SynchronousTestCase):
    def test_forms(self) -> None:
        self.assertEqual(socket_address("/run/systemd/notify"), "/run/systemd/notify")
        self.assertEqual(socket_address("@abstract/name"), "\0abstract/name")
        self.assertIsNone(socket_address("vsock:2:1234"))
        self.assertIsNone(socket_address("relative/path"))

    def test_environment(self) -> None:
        self.assertEqual(Notifier.from_environment({"NOTIFY_SOCKET": "@x"}).address, "\0x")
        self.assertFalse(Notifier.from_environment({"NOTIFY_SOCKET": ""}).enabled)

    def test_status_is_one_line(self) -> None:
        notify = NotifySocket(self, abstract=True)
        Notifier(notify.env_value).status("two\nlines")
        self.assertEqual(notify.pending(), ["STATUS=two lines"])


class Unit(SynchronousTestCase):
    def test_unit_waits_for_readiness(self) -> None:
        unit = (REPO / "packaging" / "mdmappliance.service").read_text().splitlines()
        self.assertIn("Type=notify", unit)
        self.assertIn("NotifyAccess=main", unit)
        self.assertNotIn("Type=simple", unit)
