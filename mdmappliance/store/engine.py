"""The embedded SQLite store: one connection, owned by one thread, behind Deferreds.

SQLite commits wait for fsync; on the reactor thread that would stall every device. So the
store owns a dedicated one-thread pool: every query runs there, in submission order, and
callers get a Deferred. One connection means no lock contention inside the process and a
simple rule for transactions: one ``transaction()`` call is one ``BEGIN IMMEDIATE`` ...
``COMMIT``.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorFromThreads
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from mdmappliance.config import StoreSection
from mdmappliance.store.errors import StoreClosed, StoreError, StoreUnavailable
from mdmappliance.store.migrate import (
    Migration,
    MigrationReport,
    load_migrations,
    migrate,
    schema_version,
)
from mdmappliance.store.settings import HEALTH_PROBE
from mdmappliance.store.tx import Tx

T = TypeVar("T")
P = ParamSpec("P")

log = Logger()


class Store(Service):
    """The appliance database as a service: opened and migrated at start, closed at stop."""

    name = "store"

    def __init__(
        self,
        path: Path,
        *,
        reactor: IReactorFromThreads | None = None,
        synchronous: str = "FULL",
        busy_timeout_ms: int = 5000,
        backup_dir: Path | None = None,
        migrations: tuple[Migration, ...] | None = None,
    ) -> None:
        self.path = path
        self.synchronous = synchronous
        self.busy_timeout_ms = busy_timeout_ms
        self.backup_dir = backup_dir if backup_dir is not None else path.parent / "backups"
        self.migrations = migrations if migrations is not None else load_migrations()
        self._reactor = reactor
        self._conn: sqlite3.Connection | None = None
        self._tx: Tx | None = None
        self._pool: ThreadPool | None = None
        self._closing = False
        self.migration_report: MigrationReport | None = None
        self._lock = threading.Lock()
        self._jobs: deque[_Job] = deque()
        self._worker_busy = False
        #: Set on the store thread after a fault that may have left the connection unusable
        #: (I/O error, read-only file, damage): the next batch opens a fresh one first.
        self._reconnect = False

    @classmethod
    def configured(cls, section: StoreSection, reactor: IReactorFromThreads | None = None) -> Store:
        """The store as ``[store]`` describes it (no reactor: for offline use)."""
        return cls(
            section.path,
            reactor=reactor,
            synchronous=section.synchronous,
            busy_timeout_ms=section.busy_timeout_ms,
            backup_dir=section.backup_dir,
        )

    def open(self) -> MigrationReport:
        """Connect, set the pragmas and migrate, synchronously (before the reactor runs).

        Raises StoreError (or a subclass) with a message for the administrator.
        """
        if self.migration_report is not None:
            return self.migration_report
        try:
            _create_private(self.path)
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=0
            )
        except (OSError, sqlite3.Error) as e:
            raise StoreError(f"cannot open database {self.path}: {e}") from e
        try:
            self._configure(conn)
            self._check_integrity(conn)
            report = migrate(conn, self.migrations, db_path=self.path, backup_dir=self.backup_dir)
        except sqlite3.DatabaseError as e:
            conn.close()
            fault = unavailable(e)
            if fault is not None and "damaged" in fault.reason:
                raise self._damaged(str(e)) from e
            raise StoreError(f"cannot use database {self.path}: {e}") from e
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        self._tx = Tx(conn)
        self.migration_report = report
        return report

    def _check_integrity(self, conn: sqlite3.Connection) -> None:
        """``PRAGMA quick_check`` before anything else touches the file: a damaged database
        stops the service with what to do, rather than serving until a page breaks."""
        problems = [str(row[0]) for row in conn.execute("PRAGMA quick_check").fetchmany(5)]
        if problems != ["ok"]:
            raise self._damaged(f"quick_check: {'; '.join(problems)}")

    def _damaged(self, why: str) -> StoreError:
        return StoreError(
            f"{self.path} is damaged ({why}); stop the service, move the file aside and "
            f"restore the newest backup from {self.backup_dir} (see the README, Reliability)"
        )

    def _configure(self, conn: sqlite3.Connection) -> None:
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"cannot put {self.path} in WAL mode (got {mode})")
        if self.synchronous not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise StoreError(f"unknown synchronous mode {self.synchronous!r}")
        conn.execute(f"PRAGMA synchronous = {self.synchronous}")
        conn.execute("PRAGMA foreign_keys = ON")

    def startService(self) -> None:
        if self._reactor is None:
            raise StoreError("the store needs a reactor to run as a service")
        self.open()
        self._pool = ThreadPool(minthreads=1, maxthreads=1, name="mdmappliance-store")
        self._pool.start()
        self._closing = False
        self._jobs.clear()
        self._worker_busy = False
        super().startService()

    def run(
        self, fn: Callable[Concatenate[Tx, P], T], *args: P.args, **kw: P.kwargs
    ) -> Deferred[T]:
        """Run ``fn(tx, ...)`` on the store thread, outside any transaction."""
        return self._submit(False, fn, args, kw)

    def transaction(
        self, fn: Callable[Concatenate[Tx, P], T], *args: P.args, **kw: P.kwargs
    ) -> Deferred[T]:
        """Run ``fn(tx, ...)`` in one transaction: all of it commits, or none of it.

        The Deferred fires once the work is durable (committed). Transactions that are waiting
        together are committed together (group commit: one fsync for the lot), each inside its
        own savepoint, so one that raises is rolled back alone.
        """
        return self._submit(True, fn, args, kw)

    def _submit(
        self, transactional: bool, fn: Callable[..., Any], args: tuple[Any, ...], kw: dict[str, Any]
    ) -> Deferred[Any]:
        if self._closing or self._pool is None or self._tx is None:
            return fail(StoreClosed(f"the store {self.path} is not running"))
        job = _Job(transactional, fn, args, kw, Deferred())
        with self._lock:
            self._jobs.append(job)
            start = not self._worker_busy
            self._worker_busy = True
        if start:
            self._pool.callInThread(self._work)
        return job.deferred

    def _work(self) -> None:
        """On the store thread: run queued jobs in order, batching adjacent transactions.
        Never raises: a job's failure is its Deferred's, and the store carries on."""
        assert self._reactor is not None
        reactor = self._reactor
        while True:
            with self._lock:
                if not self._jobs:
                    self._worker_busy = False
                    return
                batch = [self._jobs.popleft()]
                if batch[0].transactional:
                    while (
                        self._jobs and self._jobs[0].transactional and len(batch) < MAX_GROUP_COMMIT
                    ):
                        batch.append(self._jobs.popleft())
            outcomes = self._run_batch(batch)
            # One wake-up of the reactor per batch, not per job.
            reactor.callFromThread(_fire_all, [j.deferred for j in batch], outcomes)

    def _run_batch(self, batch: list[_Job]) -> list[Any]:
        """The batch's outcomes; SQLite's faults become StoreUnavailable."""
        try:
            if self._reconnect:
                self._reopen()
            assert self._tx is not None
            tx = self._tx
            outcomes = _run_group(tx, batch) if batch[0].transactional else [_run_one(tx, batch[0])]
        except BaseException:
            # A job broke the transaction itself (say, it committed or rolled back on its
            # own), or the connection failed: the batch fails as a whole.
            failure = Failure()
            outcomes = [failure] * len(batch)
            self._rollback_quietly()
        return [self._translate(outcome) for outcome in outcomes]

    def _translate(self, outcome: Any) -> Any:
        if not isinstance(outcome, Failure):
            return outcome
        fault = unavailable(outcome.value) if outcome.value is not None else None
        if fault is None:
            return outcome
        if not fault.transient:
            self._reconnect = True
        return Failure(fault)

    def _rollback_quietly(self) -> None:
        conn = self._conn
        try:
            if conn is not None and conn.in_transaction:
                conn.execute("ROLLBACK")
        except sqlite3.Error as e:
            self._reconnect = True
            log.warn("store: rollback failed ({error}); reconnecting", error=str(e))

    def _reopen(self) -> None:
        """A fresh connection in place of one a fault may have left unusable. Until one
        opens, every batch tries again first (the old one is closed, never used again)."""
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
        try:
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=0
            )
            self._configure(conn)
        except (OSError, sqlite3.Error) as e:
            raise StoreUnavailable(f"cannot reopen {self.path}: {e}", transient=False) from e
        self._conn, self._tx = conn, Tx(conn)
        self._reconnect = False
        log.info("store: reopened {path} after a fault", path=str(self.path))

    def transaction_now(
        self, fn: Callable[Concatenate[Tx, P], T], *args: P.args, **kw: P.kwargs
    ) -> T:
        """``transaction`` on the calling thread, for offline commands (no service running)."""
        if self._pool is not None or self._tx is None:
            raise StoreClosed(f"the store {self.path} is not open for offline use")
        return in_transaction(self._tx, fn, *args, **kw)

    def close(self) -> None:
        """Close a store opened for offline use."""
        if self._pool is not None:
            raise StoreError("close() is for offline use; stop the service instead")
        if self._conn is not None:
            self._close(self._conn)

    def schema_version(self) -> Deferred[int]:
        return self.run(lambda tx: schema_version(tx.conn))

    def probe(self) -> Deferred[int]:
        """A real write, committed (the health check's probe: a read would pass while the
        file refuses writes or another process holds the lock); the schema version."""
        return self.transaction(_probe)

    def stopService(self) -> Deferred[None]:
        """Refuse new work, let queued work finish, then close the file cleanly."""
        super().stopService()
        pool, conn = self._pool, self._conn
        if pool is None or conn is None:
            return succeed(None)
        done: Deferred[None] = self._submit(False, lambda tx: self._close(tx.conn), (), {})
        self._closing = True

        def stop_pool(result: Any) -> Any:
            pool.stop()
            self._pool = None
            return result

        done.addBoth(stop_pool)
        return done

    def _close(self, conn: sqlite3.Connection) -> None:
        try:
            conn.execute("PRAGMA optimize")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as e:
            log.warn("store: checkpoint before close failed: {error}", error=str(e))
        conn.close()
        self._conn = None
        self._tx = None
        self.migration_report = None


def in_transaction(
    tx: Tx,
    fn: Callable[Concatenate[Tx, P], T],
    /,
    *args: P.args,
    **kw: P.kwargs,
) -> T:
    """``BEGIN IMMEDIATE``, ``fn``, ``COMMIT``; ``ROLLBACK`` if ``fn`` raises."""
    conn = tx.conn
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = fn(tx, *args, **kw)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result


#: SQLite's result codes for a database that cannot do the work now (Python names them).
_BUSY = ("SQLITE_BUSY", "SQLITE_LOCKED")
_FAULTS = {
    "SQLITE_READONLY": "the database file refuses writes (read-only)",
    "SQLITE_IOERR": "the disk refused a read or write (I/O error)",
    "SQLITE_FULL": "the disk (or the file-size limit) is full",
    "SQLITE_CANTOPEN": "the database file cannot be opened",
    "SQLITE_CORRUPT": "the database is damaged",
    "SQLITE_NOTADB": "the database file is not a database",
}


def unavailable(error: BaseException) -> StoreUnavailable | None:
    """The fault ``error`` is, when it says the database cannot work now (else None: a bug,
    or a constraint the caller broke)."""
    if isinstance(error, StoreUnavailable):
        return error
    name = getattr(error, "sqlite_errorname", None)
    if not isinstance(error, sqlite3.Error) or not isinstance(name, str):
        return None
    if name.startswith(_BUSY):
        return StoreUnavailable("the database is busy: another process holds it", transient=True)
    for prefix, reason in _FAULTS.items():
        if name.startswith(prefix):
            return StoreUnavailable(f"{reason} ({error})", transient=False)
    return None


def _probe(tx: Tx) -> int:
    tx.settings.set(HEALTH_PROBE, "ok")
    return schema_version(tx.conn)


def _create_private(path: Path) -> None:
    """Create an empty database file readable only by us (SQLite copies its mode to -wal/-shm)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    os.close(fd)


#: At most this many transactions share one commit.
MAX_GROUP_COMMIT = 128


@dataclass
class _Job:
    transactional: bool
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kw: dict[str, Any]
    deferred: Deferred[Any]


def _run_one(tx: Tx, job: _Job) -> Any:
    try:
        return job.fn(tx, *job.args, **job.kw)
    except BaseException:
        return Failure()


def _run_group(tx: Tx, batch: list[_Job]) -> list[Any]:
    """One ``BEGIN IMMEDIATE`` ... ``COMMIT`` for the batch, a savepoint for each job."""
    conn = tx.conn
    outcomes: list[Any] = []
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.Error:
        failure = Failure()
        return [failure] * len(batch)
    for job in batch:
        conn.execute("SAVEPOINT job")
        try:
            outcomes.append(job.fn(tx, *job.args, **job.kw))
        except BaseException:
            outcomes.append(Failure())
            conn.execute("ROLLBACK TO job")
        conn.execute("RELEASE job")
    try:
        conn.execute("COMMIT")
    except sqlite3.Error:
        failure = Failure()
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        return [failure] * len(batch)
    return outcomes


def _fire_all(deferreds: list[Deferred[Any]], outcomes: list[Any]) -> None:
    for deferred, outcome in zip(deferreds, outcomes, strict=True):
        if isinstance(outcome, Failure):
            deferred.errback(outcome)
        else:
            deferred.callback(outcome)
