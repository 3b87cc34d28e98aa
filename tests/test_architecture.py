"""The house rules of docs/architecture.md, checked: no SQL outside ``mdmappliance/store/``,
and the import contracts (``make lint`` runs them) refuse a room importing one above it."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from tests.support import REPO

PACKAGE = REPO / "mdmappliance"
STORE = PACKAGE / "store"
#: What SQL looks like in this code base (keywords are written in capitals).
SQL = re.compile(
    r"\bSELECT\b.*\bFROM\b|\bINSERT\s+INTO\b|\bUPDATE\s+\w+\s+SET\b|\bDELETE\s+FROM\b|"
    r"\bCREATE\s+(TABLE|INDEX|TRIGGER)\b|\bPRAGMA\s+\w+|\bBEGIN\s+IMMEDIATE\b|\bjson_each\b|"
    r"\bON\s+CONFLICT\b|\bRETURNING\b",
    re.DOTALL,
)
EXECUTE = {"execute", "executemany", "executescript"}


def sql_in(source: str) -> list[str]:
    """Every place in ``source`` that holds SQL or talks to SQLite, as ``line: what``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
            if any(name.split(".")[0] == "sqlite3" for name in names):
                found.append(f"{line}: imports sqlite3")
        elif isinstance(node, ast.Name) and node.id == "sqlite3":
            found.append(f"{line}: names sqlite3")
        elif isinstance(node, ast.Attribute) and node.attr in EXECUTE:
            found.append(f"{line}: calls .{node.attr}()")
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and SQL.search(node.value)
        ):
            found.append(f"{line}: SQL text {node.value[:50]!r}")
    return found


class NoSQLOutsideTheStore(SynchronousTestCase):
    def test_the_checker_sees_sql(self) -> None:
        """Without this, a checker that finds nothing would pass the test below."""
        self.assertEqual(len(sql_in("import sqlite3\n")), 1)
        self.assertTrue(sql_in("conn.execute('x')\n"))
        self.assertTrue(sql_in("q = 'SELECT id FROM commands WHERE uuid = ?'\n"))
        self.assertTrue(sql_in("q = f'UPDATE enrollments SET state = {s}'\n"))
        self.assertTrue(sql_in("q = 'INSERT INTO events (at) VALUES (?)'\n"))
        self.assertEqual(sql_in("'''Queue the command, then SELECT the next one.'''\n"), [])

    def test_no_module_outside_the_store_holds_sql(self) -> None:
        offenders = {
            str(path.relative_to(REPO)): found
            for path in sorted(PACKAGE.rglob("*.py"))
            if STORE not in path.parents and (found := sql_in(path.read_text(encoding="utf-8")))
        }
        self.assertEqual(offenders, {}, "SQL belongs in a table family of mdmappliance/store/")

    def test_the_store_is_where_the_sql_is(self) -> None:
        holders = {p.name for p in STORE.glob("*.py") if sql_in(p.read_text(encoding="utf-8"))}
        for family in ("commands.py", "enrollments.py", "events.py", "links.py", "engine.py"):
            self.assertIn(family, holders)


class ImportContracts(SynchronousTestCase):
    """``lint-imports`` keeps the layering of the rooms and refuses import cycles."""

    def lint(self, tree: Path) -> subprocess.CompletedProcess[str]:
        tool = Path(sys.executable).with_name("lint-imports")
        if not tool.exists():
            raise self.skipTest("import-linter is not installed (pip install -e .[test])")
        return subprocess.run(
            [str(tool), str(tree / "pyproject.toml"), "--no-cache"],
            capture_output=True,
            text=True,
            cwd=str(tree),
            env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
            timeout=120,
        )

    def copy(self) -> Path:
        tree = Path(self.mktemp()).absolute()
        tree.mkdir()
        shutil.copytree(
            PACKAGE, tree / "mdmappliance", ignore=shutil.ignore_patterns("__pycache__")
        )
        shutil.copy(REPO / "pyproject.toml", tree / "pyproject.toml")
        return tree

    def test_the_tree_keeps_the_contracts(self) -> None:
        result = self.lint(self.copy())
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)

    def test_a_room_importing_one_above_it_breaks_the_layers(self) -> None:
        tree = self.copy()
        family = tree / "mdmappliance" / "store" / "family.py"
        family.write_text(family.read_text() + "\nfrom mdmappliance.admin import queries\n")
        result = self.lint(tree)
        self.assertNotEqual(result.returncode, 0)
        self.assertIn(
            "mdmappliance.store is not allowed to import mdmappliance.admin", result.stdout
        )

    def test_an_import_cycle_breaks_the_contracts(self) -> None:
        tree = self.copy()
        timestamps = tree / "mdmappliance" / "core" / "timestamps.py"
        timestamps.write_text(timestamps.read_text() + "\nfrom mdmappliance.core import files\n")
        files = tree / "mdmappliance" / "core" / "files.py"
        files.write_text(files.read_text() + "\nfrom mdmappliance.core import timestamps\n")
        result = self.lint(tree)
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("No cycles are allowed in mdmappliance.core", result.stdout)
