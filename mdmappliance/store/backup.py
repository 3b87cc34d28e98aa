"""The database half of ``mdmappliance backup`` and ``restore``: an online copy of the live
file, and the checks a copy must pass before it is restored.

The copy is made from a connection of its own with SQLite's online backup API, a few pages
per step, so the running service's writers are never held up. A step after which another
connection wrote restarts the copy from the first page; under steady load a stepped copy may
never finish, so after a few restarts it is made in one step instead. The live file is in
WAL mode, where one step is one read snapshot: writers go on appending to the WAL meanwhile
(only the checkpoint waits), so neither way blocks them.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from mdmappliance.store.errors import DatabaseTooNew, StoreError
from mdmappliance.store.migrate import load_migrations, schema_version

#: Pages copied per step (4 MiB with SQLite's default 4 KiB pages).
STEP_PAGES = 1024
#: Restarts of a stepped copy (another connection wrote between steps) before one step.
MAX_RESTARTS = 3


class CopyFailed(StoreError):
    """The live database could not be copied, or the copy is not sound."""


@dataclass(frozen=True)
class DatabaseCopy:
    """What a copy holds and how it was made."""

    path: Path
    schema_version: int
    pages: int
    restarts: int
    one_step: bool


class _Restarted(Exception):
    """A stepped copy started over: someone wrote between two steps."""


def copy_live_database(
    source: Path,
    target: Path,
    *,
    busy_timeout_ms: int = 5000,
    step_pages: int = STEP_PAGES,
    max_restarts: int = MAX_RESTARTS,
) -> DatabaseCopy:
    """Copy the live database ``source`` to ``target`` (created 0600, must not exist),
    then check the copy with ``PRAGMA integrity_check``. Raises CopyFailed."""
    if not source.is_file():
        raise CopyFailed(f"the database {source} does not exist")
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as e:
        raise CopyFailed(f"cannot create {target}: {e.strerror}") from None
    os.close(fd)
    try:
        # mode=rw: never create a database where the config names none.
        live = sqlite3.connect(f"{source.absolute().as_uri()}?mode=rw", uri=True)
    except sqlite3.Error as e:
        raise CopyFailed(f"cannot open the database {source}: {e}") from e
    try:
        live.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        restarts, one_step = _copy(live, target, step_pages, max_restarts)
    except sqlite3.Error as e:
        raise CopyFailed(f"cannot copy the database {source}: {e}") from e
    finally:
        live.close()
    version, pages = check_copy(target)
    return DatabaseCopy(target, version, pages, restarts, one_step)


def _copy(live: sqlite3.Connection, target: Path, step_pages: int, limit: int) -> tuple[int, bool]:
    """Stepped, then in one step once it restarted ``limit`` times: (restarts, one step)."""
    restarts = 0
    last = [-1]

    def progress(status: int, remaining: int, total: int) -> None:
        nonlocal restarts
        if last[0] >= 0 and remaining >= last[0]:
            restarts += 1
            if restarts > limit:
                raise _Restarted()
        last[0] = remaining

    dest = sqlite3.connect(target)
    try:
        try:
            live.backup(dest, pages=step_pages, progress=progress)
            one_step = False
        except _Restarted:
            live.backup(dest, pages=-1)
            one_step = True
        # One self-contained file: no -wal beside the copy, whatever mode the live one is in.
        dest.execute("PRAGMA journal_mode = DELETE")
    finally:
        dest.close()
    return restarts, one_step


def check_copy(path: Path) -> tuple[int, int]:
    """A copy's schema version and size in pages, after ``PRAGMA integrity_check`` passed
    (else CopyFailed). Opened read-only: checking changes nothing."""
    try:
        conn = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as e:
        raise CopyFailed(f"cannot open the database copy {path}: {e}") from e
    try:
        problems = [str(row[0]) for row in conn.execute("PRAGMA integrity_check").fetchmany(5)]
        if problems != ["ok"]:
            raise CopyFailed(f"the database copy fails integrity_check: {'; '.join(problems)}")
        pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
        return schema_version(conn), pages
    except sqlite3.DatabaseError as e:
        raise CopyFailed(f"the database copy {path} is not a sound database: {e}") from e
    finally:
        conn.close()


def known_schema_version() -> int:
    """The newest schema this mdmappliance knows (its last migration)."""
    return len(load_migrations())


def check_restorable(path: Path) -> int:
    """The schema version of a database about to be restored: sound (integrity_check) and
    not newer than this mdmappliance knows (else DatabaseTooNew). An older one is fine: the
    service migrates it at start, after backing it up (``Store.open``)."""
    version, _ = check_copy(path)
    known = known_schema_version()
    if version > known:
        raise DatabaseTooNew(
            f"the backup's database has schema version {version}, but this mdmappliance only "
            f"knows up to version {known}: restore it with the newer mdmappliance that wrote it"
        )
    return version
