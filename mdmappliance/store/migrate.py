"""Schema migrations: numbered SQL files, ``PRAGMA user_version``, one transaction each.

``executescript`` is never used: it commits any open transaction before it runs, so a
migration that fails halfway would leave half a schema behind. Statements are split with
``sqlite3.complete_statement`` and executed one by one inside ``BEGIN IMMEDIATE``.
"""

from __future__ import annotations

import datetime
import os
import re
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from mdmappliance.store.errors import DatabaseTooNew, MigrationFailed, StoreError

APPLICATION_ID = 0x4D444D41  # 'MDMA'
_MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


@dataclass(frozen=True)
class MigrationReport:
    """What ``migrate`` did: the versions before and after, and the backup it took."""

    from_version: int
    to_version: int
    backup: Path | None

    @property
    def upgraded(self) -> bool:
        return self.to_version != self.from_version


def split_statements(sql: str) -> list[str]:
    """SQL text as complete statements (triggers' inner semicolons included)."""
    statements: list[str] = []
    pending = ""
    for line in sql.splitlines(keepends=True):
        if not pending and line.strip().startswith("--"):
            continue
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    if pending.strip():
        raise ValueError(f"incomplete SQL statement at the end: {pending.strip()[:60]!r}")
    return statements


def load_migrations(directory: Traversable | Path | None = None) -> tuple[Migration, ...]:
    """The migrations in ``directory`` (the package's own by default), numbered 1, 2, ..."""
    where = directory if directory is not None else resources.files("mdmappliance.store.migrations")
    found: dict[int, Migration] = {}
    for entry in where.iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if not match:
            continue
        version = int(match.group(1))
        if version in found:
            raise ValueError(f"two migrations are numbered {version}")
        statements = tuple(split_statements(entry.read_text(encoding="utf-8")))
        found[version] = Migration(version, match.group(2), statements)
    versions = sorted(found)
    if versions != list(range(1, len(versions) + 1)):
        raise ValueError(f"migrations must be numbered 1, 2, 3 ... without gaps, got {versions}")
    return tuple(found[v] for v in versions)


CURRENT_SCHEMA = "schema.sql"


def current_schema_text() -> str:
    """The shipped ``schema.sql``: the schema every migration together makes, in one file."""
    return resources.files("mdmappliance.store").joinpath(CURRENT_SCHEMA).read_text("utf-8")


def render_schema(conn: sqlite3.Connection) -> str:
    """The schema of ``conn`` as ``schema.sql`` holds it: every table, index and trigger in
    the order they were made (``make schema`` writes it after a new migration)."""
    rows = conn.execute(
        "SELECT sql FROM sqlite_schema WHERE name NOT LIKE 'sqlite_%' AND sql IS NOT NULL "
        "ORDER BY rowid"
    ).fetchall()
    header = (
        "-- The current schema, as every migration in migrations/ together makes it (version "
        f"{schema_version(conn)}).\n"
        "-- Written by `make schema`; tests/test_schema.py checks the two agree. Read it to\n"
        "-- learn the tables; change the schema only with a new numbered migration.\n"
    )
    return header + "".join(f"\n{row[0]};\n" for row in rows)


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def _check_is_ours(conn: sqlite3.Connection, path: Path) -> None:
    app_id = int(conn.execute("PRAGMA application_id").fetchone()[0])
    if app_id not in (0, APPLICATION_ID):
        raise StoreError(f"{path} belongs to another application (application_id {app_id:#x})")
    if app_id == 0 and schema_version(conn) == 0:
        tables = conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()[0]
        if tables:
            raise StoreError(f"{path} is not an mdmappliance database (it already has tables)")


def backup_database(conn: sqlite3.Connection, backup_dir: Path, db_path: Path) -> Path:
    """An online copy of the live database (consistent, WAL included), written atomically.

    A backup holds what the database holds (escrowed UnlockTokens, sealed; identities; the
    audit log): the file is 0600 in a 0700 folder, like the database itself."""
    backup_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(backup_dir, 0o700)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    target = backup_dir / f"{db_path.name}.v{schema_version(conn)}.{stamp}.bak"
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)
    os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    dest = sqlite3.connect(partial)
    try:
        conn.backup(dest)
    finally:
        dest.close()
    with open(partial, "rb") as f:
        os.fsync(f.fileno())
    os.replace(partial, target)
    return target


def _apply(conn: sqlite3.Connection, pending: Iterable[Migration]) -> None:
    """Run ``pending`` in one transaction: an upgrade happens whole or not at all.

    All-or-nothing rather than one commit per migration so that after a failure the file is
    exactly what the previous release wrote, and that release still runs on it.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        for migration in pending:
            try:
                for statement in migration.statements:
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {int(migration.version)}")
            except sqlite3.Error as e:
                raise _StepFailed(migration, e) from e
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


class _StepFailed(Exception):
    def __init__(self, migration: Migration, error: sqlite3.Error) -> None:
        super().__init__(str(error))
        self.migration = migration
        self.error = error


def migrate(
    conn: sqlite3.Connection,
    migrations: Iterable[Migration],
    *,
    db_path: Path,
    backup_dir: Path,
) -> MigrationReport:
    """Bring the schema to the newest migration, backing the file up first if it has data.

    ``conn`` must be in autocommit mode (``isolation_level=None``).
    """
    ordered = tuple(migrations)
    latest = len(ordered)
    _check_is_ours(conn, db_path)
    current = schema_version(conn)
    if current > latest:
        raise DatabaseTooNew(
            f"{db_path} has schema version {current}, but this mdmappliance only knows up to "
            f"version {latest}: run the newer mdmappliance that wrote it, or restore a backup "
            f"from {backup_dir}"
        )
    if current == latest:
        return MigrationReport(current, current, None)
    backup = backup_database(conn, backup_dir, db_path) if current > 0 else None
    try:
        _apply(conn, ordered[current:])
    except _StepFailed as e:
        raise MigrationFailed(
            f"migration {e.migration.version} ({e.migration.name}) failed on {db_path}: "
            f"{e.error}; nothing was changed, the database is still at version {current}"
        ) from e.error
    return MigrationReport(current, latest, backup)


def main() -> None:
    """Print the schema all migrations make (``make schema`` writes it to schema.sql)."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    _apply(conn, load_migrations())
    print(render_schema(conn), end="")
