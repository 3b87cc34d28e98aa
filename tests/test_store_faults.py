"""Database faults get back-pressure, not 500 (issue 12, case 4): a busy or read-only store
makes devices answer 503 with Retry-After and admin writes 503 with a reason, the health
check says "degraded" while a write probe fails, the store reconnects once the fault is
gone, and a damaged file stops the service at start with what to do."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import treq
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import HTTPConnectionPool

from mdmappliance.app.reactor import global_reactor
from mdmappliance.simulator.device import SimulatedDevice
from mdmappliance.store import Store
from mdmappliance.store.errors import StoreError
from tests.support import InProcessAppliance, make_installation, run_cli


class FaultCase(TestCase):
    timeout = 120

    def setUp(self) -> None:
        self.appliance = InProcessAppliance(Path(self.mktemp()), store={"busy_timeout_ms": 200})
        self.addCleanup(self.appliance.stop)
        self.db = self.appliance.config.store.path

    async def enrolled(self) -> SimulatedDevice:
        device: SimulatedDevice = await self.appliance.enrolled(self)
        return device

    async def admin(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        pool = HTTPConnectionPool(global_reactor(), persistent=False)
        self.addCleanup(pool.closeCachedConnections)
        headers: dict[bytes | str, bytes | str] = {
            "Authorization": f"Bearer {self.appliance.config.read_admin_api_key()}"
        }
        response = await treq.request(
            method,
            self.appliance.config.admin_url() + path,
            data=None if body is None else json.dumps(body).encode(),
            headers=headers,
            pool=pool,
        )
        return response.code, json.loads(await response.content())

    async def assert_healthy(self, device: SimulatedDevice) -> None:
        reply = await device.report("Idle")
        self.assertEqual(reply.code, 200, reply.body)
        code, health = await self.admin("GET", "/v1/health")
        self.assertEqual((code, health["status"]), (200, "ok"), health)
        code, _ = await self.admin("POST", "/v1/enrollment-tokens", {})
        self.assertEqual(code, 201)


class Busy(FaultCase):
    async def test_another_process_holding_the_lock_gets_503_and_it_passes(self) -> None:
        device = await self.enrolled()
        other = sqlite3.connect(self.db, isolation_level=None, timeout=0)
        self.addCleanup(other.close)
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        reply = await device.report("Idle")
        self.assertEqual(reply.code, 503, reply.body)
        self.assertEqual(reply.headers.getRawHeaders("retry-after"), ["30"])
        code, body = await self.admin("POST", "/v1/enrollment-tokens", {})
        self.assertEqual(code, 503)
        self.assertIn("busy", body["error"])
        code, health = await self.admin("GET", "/v1/health")
        self.assertEqual((code, health["status"]), (503, "degraded"), health)
        self.assertIn("busy", health["database"]["error"])
        other.execute("ROLLBACK")
        await self.assert_healthy(device)
        tokens = sqlite3.connect(self.db).execute("SELECT count(*) FROM enrollment_tokens")
        self.assertEqual(tokens.fetchone(), (1,), "the refused write left nothing behind")


class ReadOnly(FaultCase):
    def immutable(self, path: Path, on: bool) -> None:
        tool = shutil.which("chattr")
        result = (
            subprocess.run([tool, "+i" if on else "-i", str(path)], capture_output=True)
            if tool
            else None
        )
        if result is None or result.returncode != 0:
            raise self.skipTest("chattr +i is not available here (needs root on ext4)")

    async def test_a_file_that_refuses_writes_gets_503_and_recovers(self) -> None:
        device = await self.enrolled()
        # The Idle must write (last_seen is due): an Idle with nothing to write is answered
        # from a read-only store like any read.
        conn = sqlite3.connect(self.db)
        with conn:
            conn.execute("UPDATE enrollments SET last_seen = '2000-01-01T00:00:00.000Z'")
        conn.close()
        wal = self.db.with_name(self.db.name + "-wal")
        self.immutable(wal, True)
        self.addCleanup(lambda: subprocess.run(["chattr", "-i", str(wal)], capture_output=True))
        reply = await device.report("Idle")
        self.assertEqual(reply.code, 503, reply.body)
        code, health = await self.admin("GET", "/v1/health")
        self.assertEqual((code, health["status"]), (503, "degraded"), health)
        self.assertRegex(health["database"]["error"], "read-only|I/O error")
        code, body = await self.admin("POST", "/v1/enrollment-tokens", {})
        self.assertEqual(code, 503, body)
        self.immutable(wal, False)
        await self.assert_healthy(device)


def damage(db: Path) -> None:
    """Overwrite interior pages of ``db`` with garbage, leaving the header readable."""
    page = sqlite3.connect(db).execute("PRAGMA page_size").fetchone()[0]
    with open(db, "r+b") as f:
        f.seek(page * 2)
        f.write(b"\xa5" * page * 3)


class Damaged(SynchronousTestCase):
    def test_a_damaged_database_stops_the_service_at_start(self) -> None:
        config_path = make_installation(Path(self.mktemp()))
        db = config_path.parent / "mdmappliance.db"
        damage(db)
        store = Store(db)
        with self.assertRaises(StoreError) as caught:
            store.open()
        message = str(caught.exception)
        self.assertIn("is damaged", message)
        self.assertIn("restore the newest backup", message)
        result = run_cli("serve", "--config", str(config_path))
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertEqual(len(result.stderr.strip().splitlines()), 1, result.stderr)
        self.assertIn("is damaged", result.stderr)
