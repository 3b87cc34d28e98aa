"""What gets installed: the twistd plugin, the console script, the systemd unit."""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
import sys
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from tests.support import REPO

FIND_PLUGIN = """
from twisted.application.service import IServiceMaker
from twisted.plugin import getPlugins
import mdmappliance
makers = [p for p in getPlugins(IServiceMaker) if p.tapname == "mdmappliance"]
import sysconfig
print(len(makers), makers[0].module if makers else "-", mdmappliance.__file__,
      sysconfig.get_paths()["purelib"])
options = makers[0].options()
print(type(options).__module__)
"""


class Installed(SynchronousTestCase):
    """``make test`` installs the project first; these check what that install holds."""

    def test_plugin_is_found_from_the_installation(self) -> None:
        # Run away from the source tree, with no PYTHONPATH, so only the installed copy counts.
        elsewhere = Path(self.mktemp()).absolute()
        elsewhere.mkdir()
        result = subprocess.run(
            [sys.executable, "-I", "-c", FIND_PLUGIN],
            capture_output=True,
            text=True,
            cwd=str(elsewhere),
            timeout=120,
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        count, module, location, site_packages = result.stdout.splitlines()[0].split()
        self.assertEqual((count, module), ("1", "mdmappliance.app.tap"))
        self.assertTrue(
            location.startswith(site_packages + "/"),
            "the plugin must come from the installed package (run `make install`)",
        )
        self.assertEqual(result.stdout.splitlines()[1], "mdmappliance.app.tap")

    def test_distribution_ships_the_plugin_but_no_package_init(self) -> None:
        files = {str(f) for f in importlib.metadata.files("mdmappliance") or []}
        self.assertIn("twisted/plugins/mdmappliance_plugin.py", files)
        self.assertNotIn("twisted/plugins/__init__.py", files)
        self.assertNotIn("twisted/__init__.py", files)
        self.assertIn("mdmappliance/store/migrations/0001_foundation.sql", files)
        self.assertFalse((REPO / "twisted" / "plugins" / "__init__.py").exists())
        self.assertFalse((REPO / "twisted" / "__init__.py").exists())

    def test_distribution_ships_every_module_and_migration(self) -> None:
        """A subpackage left out of setup.cfg passes every test run from the source tree and
        breaks the installed service; this compares the two."""
        files = {str(f) for f in importlib.metadata.files("mdmappliance") or []}
        source = {
            str(path.relative_to(REPO))
            for pattern in (
                "mdmappliance/**/*.py",
                "mdmappliance/store/*.sql",
                "mdmappliance/store/migrations/*.sql",
                "mdmappliance/dep/apple/*",
                "mdmappliance/mdm/apple/*",
                "mdmappliance/mdm/apple/mdm/*/*.yaml",
            )
            for path in REPO.glob(pattern)
            if path.is_file() and "__pycache__" not in path.parts
        }
        self.assertEqual(source - files, set(), "run `make install` after adding a module")
        elsewhere = Path(self.mktemp()).absolute()
        elsewhere.mkdir()
        load = "from mdmappliance.mdm.schema import apple_schema; apple_schema()"
        result = subprocess.run(
            [
                sys.executable,
                "-I",
                "-c",
                f"import mdmappliance.app.service, mdmappliance.cli.main; {load}",
            ],
            capture_output=True,
            text=True,
            cwd=str(elsewhere),
            timeout=120,
        )
        self.assertEqual(result.returncode, 0, result.stderr)

    def test_console_script(self) -> None:
        script = Path(sys.executable).parent / "mdmappliance"
        result = subprocess.run(
            [str(script), "--version"], capture_output=True, text=True, timeout=60
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(
            result.stdout.strip(), f"mdmappliance {importlib.metadata.version('mdmappliance')}"
        )


class SystemdUnit(SynchronousTestCase):
    def test_verify(self) -> None:
        tool = shutil.which("systemd-analyze")
        if tool is None:
            raise self.skipTest("systemd-analyze is not installed (.ci/run installs it)")
        unit = (REPO / "packaging" / "mdmappliance.service").read_text()
        for needed in (
            "User=mdmappliance",
            "StateDirectory=",
            "ConfigurationDirectory=",
            "ProtectSystem=strict",
            "NoNewPrivileges=yes",
            "PrivateTmp=yes",
            "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
            " serve --config ",
        ):
            self.assertIn(needed, unit)
        self.assertNotIn("\nMemoryDenyWriteExecute", unit)
        # verify insists that ExecStart exists: point it at the script this test runs beside.
        script = Path(sys.executable).parent / "mdmappliance"
        where = Path(self.mktemp())
        where.mkdir()
        (where / "mdmappliance.service").write_text(
            unit.replace("/opt/mdmappliance/bin/mdmappliance", str(script))
        )
        result = subprocess.run(
            [tool, "verify", "--man=no", str(where / "mdmappliance.service")],
            capture_output=True,
            text=True,
            timeout=120,
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stderr.strip(), "", "systemd-analyze found problems")
