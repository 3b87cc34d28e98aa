"""The Store service: one connection on its own thread, pragmas, transactions, clean close."""

from __future__ import annotations

import sqlite3
import stat
import threading
from pathlib import Path

from twisted.trial.unittest import TestCase

from mdmappliance.app.reactor import global_reactor
from mdmappliance.store import Store, Tx, record_event
from mdmappliance.store.errors import StoreClosed, StoreError
from tests.support import events_after, get_setting, set_setting

reactor = global_reactor()


class StoreService(TestCase):
    def setUp(self) -> None:
        self.dir = Path(self.mktemp())
        self.dir.mkdir()
        self.path = self.dir / "store.db"

    def start(self, **kw: object) -> Store:
        store = Store(self.path, reactor=reactor, **kw)  # type: ignore[arg-type]
        store.startService()
        self.addCleanup(lambda: store.stopService() if store.running else None)
        return store

    async def test_pragmas(self) -> None:
        store = self.start(synchronous="NORMAL", busy_timeout_ms=1234)

        def pragmas(tx: Tx) -> tuple[object, ...]:
            return tuple(
                tx.conn.execute(f"PRAGMA {name}").fetchone()[0]
                for name in ("journal_mode", "foreign_keys", "synchronous", "busy_timeout")
            )

        self.assertEqual(await store.run(pragmas), ("wal", 1, 1, 1234))
        await store.stopService()
        store = self.start()
        self.assertEqual((await store.run(pragmas))[2], 2, "FULL is the durable default")

    async def test_file_is_private(self) -> None:
        self.start()
        self.assertEqual(stat.S_IMODE(self.path.stat().st_mode), 0o600)

    async def test_work_runs_on_one_dedicated_thread(self) -> None:
        store = self.start()
        main = threading.get_ident()

        def ident(tx: Tx) -> int:
            return threading.get_ident()

        idents = {await store.run(ident) for _ in range(5)}
        self.assertEqual(len(idents), 1)
        self.assertNotIn(main, idents)

    async def test_transaction_commits_or_rolls_back_whole(self) -> None:
        store = self.start()
        await store.transaction(set_setting, "a", "1")

        def half_then_fail(tx: Tx) -> None:
            set_setting(tx, "b", "2")
            record_event(tx, "test.half")
            raise RuntimeError("boom")

        with self.assertRaises(RuntimeError):
            await store.transaction(half_then_fail)
        self.assertEqual(await store.run(get_setting, "a"), "1")
        self.assertIsNone(await store.run(get_setting, "b"))
        self.assertEqual(await store.run(events_after), [])

    async def test_events_are_append_only(self) -> None:
        store = self.start()
        first = await store.transaction(record_event, "test.one", actor="tester", detail={"n": 1})
        await store.transaction(record_event, "test.two", subject="UDID-1")
        events = await store.run(events_after)
        self.assertEqual([e.kind for e in events], ["test.one", "test.two"])
        self.assertEqual(events[0].detail, {"n": 1})
        self.assertEqual(events[0].actor, "tester")
        self.assertEqual(events[1].subject, "UDID-1")
        self.assertEqual([e.id for e in await store.run(events_after, first)], [events[1].id])

        def tamper(tx: Tx) -> None:
            tx.conn.execute("UPDATE events SET kind = 'forged' WHERE id = ?", (first,))

        with self.assertRaises(sqlite3.IntegrityError) as caught:
            await store.transaction(tamper)
        self.assertIn("append-only", str(caught.exception))

    async def test_stop_finishes_queued_work_then_refuses(self) -> None:
        store = self.start()
        queued = [store.transaction(record_event, f"test.{i}") for i in range(50)]
        stopped = store.stopService()
        with self.assertRaises(StoreClosed):
            await store.run(events_after)
        ids = [await d for d in queued]
        await stopped
        self.assertEqual(len(set(ids)), 50)
        conn = sqlite3.connect(self.path)
        try:
            self.assertEqual(conn.execute("PRAGMA integrity_check").fetchone()[0], "ok")
            self.assertEqual(conn.execute("SELECT count(*) FROM events").fetchone()[0], 50)
        finally:
            conn.close()
        wal = self.path.with_name(self.path.name + "-wal")
        self.assertFalse(wal.exists() and wal.stat().st_size, "the log was checkpointed")

    def test_garbage_file_is_a_clear_error(self) -> None:
        self.path.write_bytes(b"this is not a database" * 100)
        store = Store(self.path, reactor=reactor)
        with self.assertRaises(StoreError) as caught:
            store.open()
        self.assertIn(str(self.path), str(caught.exception))
        self.assertIn("not a database", str(caught.exception))

    def test_offline_use(self) -> None:
        store = Store(self.path)
        store.open()
        store.transaction_now(set_setting, "offline", "yes")
        store.close()
        store = Store(self.path)
        store.open()
        try:
            self.assertEqual(store.transaction_now(get_setting, "offline"), "yes")
        finally:
            store.close()
