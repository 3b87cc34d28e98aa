"""Schema migrations on real SQLite files: from empty, from every earlier version, refusals."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from mdmappliance.store.errors import DatabaseTooNew, MigrationFailed, StoreError
from mdmappliance.store.migrate import (
    APPLICATION_ID,
    Migration,
    MigrationReport,
    current_schema_text,
    load_migrations,
    migrate,
    render_schema,
    schema_version,
    split_statements,
)

MIGRATIONS = load_migrations()


def connect(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


def schema_of(path: Path) -> list[tuple[str, str, str]]:
    """Everything the schema holds, for comparing two files."""
    conn = connect(path)
    try:
        rows = conn.execute(
            "SELECT type, name, sql FROM sqlite_schema WHERE name NOT LIKE 'sqlite_%' "
            "ORDER BY type, name"
        ).fetchall()
        return [(str(t), str(n), str(s)) for t, n, s in rows]
    finally:
        conn.close()


def dump(path: Path) -> tuple[int, int, list[str]]:
    """user_version, application_id and every row, as SQL text."""
    conn = connect(path)
    try:
        return (
            schema_version(conn),
            int(conn.execute("PRAGMA application_id").fetchone()[0]),
            list(conn.iterdump()),
        )
    finally:
        conn.close()


class SplitStatements(SynchronousTestCase):
    def test_trigger_bodies_stay_whole(self) -> None:
        sql = (
            "-- a comment\nCREATE TABLE t (x);\n"
            "CREATE TRIGGER tr BEFORE UPDATE ON t\nBEGIN\n  SELECT 1;\n  SELECT 2;\nEND;\n"
        )
        statements = split_statements(sql)
        self.assertEqual(len(statements), 2)
        self.assertTrue(statements[1].startswith("CREATE TRIGGER"))
        self.assertTrue(statements[1].endswith("END;"))

    def test_incomplete_statement_is_an_error(self) -> None:
        self.assertRaises(ValueError, split_statements, "CREATE TABLE t (x)")


class LoadMigrations(SynchronousTestCase):
    def write(self, *names: str) -> Path:
        where = Path(self.mktemp())
        where.mkdir()
        for name in names:
            (where / name).write_text("CREATE TABLE x (y);\n")
        return where

    def test_shipped_migrations_are_numbered_from_one(self) -> None:
        self.assertEqual([m.version for m in MIGRATIONS], list(range(1, len(MIGRATIONS) + 1)))
        self.assertTrue(all(m.statements for m in MIGRATIONS))

    def test_gap_is_refused(self) -> None:
        where = self.write("0001_a.sql", "0003_c.sql")
        self.assertRaises(ValueError, load_migrations, where)

    def test_duplicate_number_is_refused(self) -> None:
        where = self.write("0001_a.sql", "0001_b.sql")
        self.assertRaises(ValueError, load_migrations, where)

    def test_other_files_are_ignored(self) -> None:
        where = self.write("0001_a.sql", "README", "__init__.py")
        self.assertEqual([m.name for m in load_migrations(where)], ["a"])


class Migrate(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = Path(self.mktemp())
        self.dir.mkdir()
        self.db = self.dir / "test.db"
        self.backups = self.dir / "backups"

    def migrate(self, migrations: tuple[Migration, ...], db: Path | None = None) -> MigrationReport:
        db = db or self.db
        conn = connect(db)
        try:
            return migrate(conn, migrations, db_path=db, backup_dir=self.backups)
        finally:
            conn.close()

    def test_from_empty(self) -> None:
        report = self.migrate(MIGRATIONS)
        self.assertEqual((report.from_version, report.to_version), (0, len(MIGRATIONS)))
        self.assertIsNone(report.backup, "a new database needs no backup")
        version, app_id, _ = dump(self.db)
        self.assertEqual(version, len(MIGRATIONS))
        self.assertEqual(app_id, APPLICATION_ID)
        names = {name for _, name, _ in schema_of(self.db)}
        self.assertTrue({"settings", "events", "events_append_only"} <= names)

    def test_again_changes_nothing(self) -> None:
        self.migrate(MIGRATIONS)
        before = dump(self.db)
        report = self.migrate(MIGRATIONS)
        self.assertFalse(report.upgraded)
        self.assertIsNone(report.backup)
        self.assertEqual(dump(self.db), before)

    def test_from_every_earlier_version(self) -> None:
        self.check_every_earlier_version(MIGRATIONS)

    def test_from_every_earlier_version_with_a_later_migration(self) -> None:
        """The shipped set plus one more, so the upgrade-with-data path runs today too."""
        extra = Migration(len(MIGRATIONS) + 1, "extra", ("CREATE TABLE extra (x INTEGER)",))
        self.check_every_earlier_version((*MIGRATIONS, extra))

    def check_every_earlier_version(self, migrations: tuple[Migration, ...]) -> None:
        fresh = self.dir / f"fresh-{len(migrations)}.db"
        self.migrate(migrations, fresh)
        for start in range(len(migrations)):
            db = self.dir / f"from-{start}-to-{len(migrations)}.db"
            self.migrate(migrations[:start], db)
            if start:
                conn = connect(db)
                conn.execute("INSERT INTO settings (key, value, updated_at) VALUES ('k', 'v', 't')")
                conn.close()
            report = self.migrate(migrations, db)
            self.assertEqual((report.from_version, report.to_version), (start, len(migrations)))
            self.assertEqual(schema_of(db), schema_of(fresh), f"upgrade from version {start}")
            if start:
                assert report.backup is not None
                self.assertEqual(dump(report.backup)[0], start, "backup holds the old version")
                self.assertIn("INSERT INTO \"settings\" VALUES('k','v','t');", dump(db)[2])

    def test_newer_database_is_refused(self) -> None:
        self.migrate(MIGRATIONS)
        conn = connect(self.db)
        conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
        conn.close()
        before = dump(self.db)
        with self.assertRaises(DatabaseTooNew) as caught:
            self.migrate(MIGRATIONS)
        self.assertIn(f"schema version {len(MIGRATIONS) + 1}", str(caught.exception))
        self.assertIn(f"only knows up to version {len(MIGRATIONS)}", str(caught.exception))
        self.assertEqual(dump(self.db), before)

    def broken(self) -> tuple[Migration, ...]:
        bad = Migration(
            len(MIGRATIONS) + 1,
            "broken",
            (
                "CREATE TABLE half_done (x INTEGER)",
                "INSERT INTO settings (key, value, updated_at) VALUES ('half', 'done', 'now')",
                "ALTER TABLE no_such_table ADD COLUMN y INTEGER",
            ),
        )
        return (*MIGRATIONS, bad)

    def test_failed_migration_leaves_the_file_as_it_was(self) -> None:
        self.migrate(MIGRATIONS)
        conn = connect(self.db)
        conn.execute("INSERT INTO settings (key, value, updated_at) VALUES ('keep', 'me', 't')")
        conn.close()
        before = dump(self.db)
        with self.assertRaises(MigrationFailed) as caught:
            self.migrate(self.broken())
        self.assertIn("broken", str(caught.exception))
        self.assertIn("no_such_table", str(caught.exception))
        self.assertIn(f"still at version {len(MIGRATIONS)}", str(caught.exception))
        self.assertEqual(dump(self.db), before)

    def test_failed_upgrade_from_empty_leaves_it_empty(self) -> None:
        with self.assertRaises(MigrationFailed):
            self.migrate(self.broken())
        version, app_id, _ = dump(self.db)
        self.assertEqual((version, app_id), (0, 0), "earlier steps were rolled back too")
        self.assertEqual(schema_of(self.db), [])

    def test_foreign_database_is_refused(self) -> None:
        conn = connect(self.db)
        conn.execute("CREATE TABLE customers (name TEXT)")
        conn.close()
        with self.assertRaises(StoreError) as caught:
            self.migrate(MIGRATIONS)
        self.assertIn("not an mdmappliance database", str(caught.exception))

    def test_other_application_is_refused(self) -> None:
        conn = connect(self.db)
        conn.execute("PRAGMA application_id = 42")
        conn.close()
        with self.assertRaises(StoreError) as caught:
            self.migrate(MIGRATIONS)
        self.assertIn("belongs to another application", str(caught.exception))


class CurrentSchema(SynchronousTestCase):
    """``store/schema.sql`` is the schema every migration together makes, in one file."""

    def test_the_migrations_make_exactly_the_current_schema(self) -> None:
        db = Path(self.mktemp())
        conn = connect(db)
        try:
            migrate(conn, MIGRATIONS, db_path=db, backup_dir=Path(self.mktemp()))
            self.assertEqual(
                render_schema(conn), current_schema_text(), "run `make schema` and commit it"
            )
        finally:
            conn.close()
        from_file = Path(self.mktemp())
        conn = connect(from_file)
        try:
            for statement in split_statements(current_schema_text()):
                conn.execute(statement)
        finally:
            conn.close()
        self.assertEqual(schema_of(from_file), schema_of(db), "the file holds the whole schema")
        self.assertIn(f"(version {len(MIGRATIONS)})", current_schema_text().splitlines()[0])
