"""Secrets stay secret and TLS is Mozilla's intermediate profile (issue 12, cases 7 and 8):
backups are 0600 in a 0700 folder, the access log shows neither a link's token nor a query
string, and no listener takes a suite without forward secrecy."""

from __future__ import annotations

import datetime
import socket
import sqlite3
import ssl
import stat
from pathlib import Path
from typing import Any, cast

import treq
from twisted.internet.threads import deferToThread
from twisted.logger import ILogObserver, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import HTTPConnectionPool

from mdmappliance.app.reactor import global_reactor
from mdmappliance.enrollment.links import create_link
from mdmappliance.simulator.device import get_enrollment_link
from mdmappliance.store.migrate import load_migrations, migrate
from tests.support import InProcessAppliance

MIGRATIONS = load_migrations()


class Backups(SynchronousTestCase):
    def test_a_backup_is_private(self) -> None:
        db = Path(self.mktemp())
        backups = Path(self.mktemp())
        conn = sqlite3.connect(db, isolation_level=None)
        try:
            migrate(conn, MIGRATIONS[:-1], db_path=db, backup_dir=backups)
            report = migrate(conn, MIGRATIONS, db_path=db, backup_dir=backups)
        finally:
            conn.close()
        assert report.backup is not None
        self.assertEqual(stat.S_IMODE(report.backup.stat().st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(backups.stat().st_mode), 0o700)


class AccessLog(TestCase):
    timeout = 60

    async def test_neither_a_token_nor_a_query_string_is_logged(self) -> None:
        appliance = InProcessAppliance(Path(self.mktemp()))
        self.addCleanup(appliance.stop)
        config = appliance.config
        seen: list[dict[str, Any]] = []
        observer = cast(ILogObserver, seen.append)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)

        token, _ = await appliance.store.transaction(
            create_link, datetime.timedelta(days=1), "", "test"
        )
        code, _, _ = await get_enrollment_link(config.enrollment_url(token), config.pki.ca_cert)
        self.assertEqual(code, 200)
        code, _, _ = await get_enrollment_link(config.enrollment_url(token), config.pki.ca_cert)
        self.assertEqual(code, 403, "used up")
        key = config.read_admin_api_key()
        pool = HTTPConnectionPool(global_reactor(), persistent=False)
        headers: dict[bytes | str, bytes | str] = {"Authorization": f"Bearer {key}"}
        response = await treq.get(
            f"{config.admin_url()}/v1/health?api_key={key}", headers=headers, pool=pool
        )
        await response.content()
        self.assertEqual(response.code, 200)
        access = [e for e in seen if e.get("log_namespace") == "mdmappliance.access"]
        self.assertTrue(any(e.get("path") == "/enroll/{token}" for e in access), access)
        self.assertTrue(any(e.get("path") == "/v1/health" for e in access), access)
        for event in seen:
            text = repr(event)
            self.assertNotIn(token, text)
            self.assertNotIn(key, text)


class DeviceAccessLog(TestCase):
    timeout = 60

    async def test_device_access_lines_are_made_only_when_the_log_takes_debug(self) -> None:
        # A device's every poll would be an access line at debug; below debug none is built.
        seen: list[dict[str, Any]] = []
        observer = cast(ILogObserver, seen.append)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        for level, logged in (("info", False), ("debug", True)):
            appliance = InProcessAppliance(Path(self.mktemp()), log={"level": level})
            self.addCleanup(appliance.stop)
            device = await appliance.enrolled(self)
            seen.clear()
            self.assertEqual(await device.poll(), [])
            server_path = appliance.config.device.server_path
            lines = [
                e
                for e in seen
                if e.get("log_namespace") == "mdmappliance.access" and e.get("path") == server_path
            ]
            self.assertEqual(bool(lines), logged, (level, lines))
            await device.close()
            await appliance.stop()


class Ciphers(TestCase):
    timeout = 60

    def setUp(self) -> None:
        self.appliance = InProcessAppliance(Path(self.mktemp()))
        self.addCleanup(self.appliance.stop)

    def handshake(self, port: int, cipher: str, client_cert: Any = None) -> str:
        """The suite a TLS 1.2 client offering only ``cipher`` agrees on (SSLError if none)."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        context.set_ciphers(cipher)
        if client_cert is not None:
            context.load_cert_chain(*client_cert)
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            context.wrap_socket(raw) as tls,
        ):
            agreed = tls.cipher()
            assert agreed is not None
            return agreed[0]

    def device_identity_files(self) -> tuple[str, str]:
        from cryptography.hazmat.primitives import serialization

        device = self.appliance.device()
        self.addCleanup(device.close)
        directory = Path(self.mktemp())
        directory.mkdir()
        cert, key = directory / "device.pem", directory / "device.key"
        cert.write_bytes(device.identity.certificate.public_bytes(serialization.Encoding.PEM))
        key.write_bytes(
            device.identity.key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return str(cert), str(key)

    async def test_only_forward_secret_aead_suites(self) -> None:
        config = self.appliance.config
        identity = self.device_identity_files()
        for port, client in ((config.enrollment.port, None), (config.device.port, identity)):
            for weak in ("AES128-SHA", "AES256-GCM-SHA384", "ECDHE-RSA-AES128-SHA"):
                with self.assertRaises(ssl.SSLError, msg=(port, weak)):
                    await deferToThread(self.handshake, port, weak, client)
            agreed = await deferToThread(
                self.handshake, port, "ECDHE-RSA-AES128-GCM-SHA256", client
            )
            self.assertEqual(agreed, "ECDHE-RSA-AES128-GCM-SHA256")


class ConnectionCaps(TestCase):
    """Case 9: a cap per address and in total on the device and enrollment listeners."""

    timeout = 60

    def setUp(self) -> None:
        self.appliance = InProcessAppliance(
            Path(self.mktemp()),
            enrollment={"max_connections": 3, "max_connections_per_address": 2},
            device={"max_connections": 3, "max_connections_per_address": 2},
        )
        self.addCleanup(self.appliance.stop)

    def open_connections(self, port: int, sources: list[str]) -> list[bool]:
        """Open one connection from each source address, all held open; for each, whether
        the listener kept it (a refused one is closed at once: recv sees the end)."""
        held = []
        kept = []
        try:
            for source in sources:
                conn = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                conn.bind((source, 0))
                conn.connect(("127.0.0.1", port))
                held.append(conn)
                conn.settimeout(0.5)
                try:
                    kept.append(conn.recv(1) != b"")
                except TimeoutError:
                    kept.append(True)  # still open, waiting for the client to speak
                except ConnectionResetError:
                    kept.append(False)
        finally:
            for conn in held:
                conn.close()
        return kept

    async def test_excess_connections_are_closed_at_once(self) -> None:
        config = self.appliance.config
        for port in (config.enrollment.port, config.device.port):
            per_address = await deferToThread(
                self.open_connections, port, ["127.0.0.1", "127.0.0.1", "127.0.0.1"]
            )
            self.assertEqual(per_address, [True, True, False], port)
            await task_later()
            total = await deferToThread(
                self.open_connections, port, ["127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"]
            )
            self.assertEqual(total, [True, True, True, False], port)
            await task_later()
            again = await deferToThread(self.open_connections, port, ["127.0.0.1"])
            self.assertEqual(again, [True], "closed connections give their place back")
            await task_later()


async def task_later() -> None:
    """Let the reactor see the closed connections."""
    from twisted.internet import task

    await task.deferLater(global_reactor(), 0.2, lambda: None)
