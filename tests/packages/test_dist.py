"""dist/mdmappliance, the single-file binary, on the system's Python alone."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from mdmappliance._version import __version__
from tests.packages import harness
from tests.support import SCHEMA_VERSION

PACKAGE_DATA = """
import json, sys
import mdmappliance, twisted
from mdmappliance.dep.machineinfo import apple_device_chain
from mdmappliance.mdm.schema import load_raw
from mdmappliance.store.migrate import current_schema_text, load_migrations
print(json.dumps({
    "python": sys.executable,
    "mdmappliance": mdmappliance.__file__,
    "twisted": twisted.__file__,
    "migrations": len(load_migrations()),
    "schema_sql": "CREATE TABLE" in current_schema_text(),
    "apple_schema": len(load_raw()) > 0,
    "dep_chain": len(apple_device_chain()),
}))
"""


class SingleFileBinary(SynchronousTestCase):
    timeout = 600

    def setUp(self) -> None:
        harness.require_enabled()
        self.binary = str(harness.binary())
        self.where = Path(self.mktemp()).absolute()
        self.where.mkdir()
        self.shiv_root = self.where / "shiv"
        self.env = harness.clean_env(self.where / "home", SHIV_ROOT=str(self.shiv_root))

    def cli(self, *args: str, **env: str) -> str:
        return harness.check(harness.run([self.binary, *args], {**self.env, **env}, self.where))

    def init(self, ports: harness.Ports) -> tuple[Path, Path]:
        data_dir = self.where / "data"
        out = self.cli(
            "init", "--data-dir", str(data_dir), "--hostname", "localhost", *ports.init_args()
        )
        self.assertIn("Start it with:", out)
        return data_dir, data_dir / "mdmappliance.toml"

    def start(self, command: list[str], port: int, **env: str) -> harness.Appliance:
        appliance = harness.Appliance(command, {**self.env, **env}, self.where, port)
        self.addCleanup(appliance.kill)
        return appliance

    def test_runs_as_the_console_script(self) -> None:
        self.assertTrue(os.access(self.binary, os.X_OK))
        self.assertEqual(self.cli("--version").strip(), f"mdmappliance {__version__}")
        self.assertIn("devices", self.cli("--help"))
        self.assertIn("[appliance]", self.cli("config-example"))

    def test_unpacks_under_shiv_root_and_reads_its_package_data(self) -> None:
        """Everything is imported from what the binary unpacked (none from the source tree or
        the system's Python packages), and the data files are read through importlib.resources."""
        found = json.loads(self.cli("-c", PACKAGE_DATA, SHIV_INTERPRETER="1"))
        self.assertEqual(found["python"], "/usr/bin/python3")
        (unpacked,) = self.shiv_root.glob("mdmappliance_*/site-packages")
        for module in ("mdmappliance", "twisted"):
            self.assertTrue(found[module].startswith(f"{unpacked}/"), found[module])
        self.assertEqual(found["migrations"], SCHEMA_VERSION)
        self.assertTrue(found["schema_sql"])
        self.assertTrue(found["apple_schema"])
        self.assertEqual(found["dep_chain"], 3)
        self.assertFalse((self.where / "home" / ".shiv").exists())

    def test_init_serve_and_a_cli_command(self) -> None:
        ports = harness.Ports()
        data_dir, config = self.init(ports)
        self.assertIn(f"{config}: OK", self.cli("check-config", "--config", str(config)))

        appliance = self.start([self.binary, "serve", "--config", str(config)], ports.admin)
        health = appliance.health(harness.admin_key(data_dir))
        self.assertEqual((health["http_status"], health["status"]), (200, "ok"), health)
        self.assertEqual(health["database"], {"ok": True, "schema_version": SCHEMA_VERSION})
        self.assertEqual(health["version"], __version__)
        # A command over the admin API, as an administrator runs it.
        self.cli("devices", "list", "--config", str(config))
        self.assertEqual(appliance.stop(), 0, appliance.output())

    def test_twistd_plugin(self) -> None:
        """``SHIV_ENTRY_POINT=twisted.scripts.twistd:run dist/mdmappliance`` is twistd, and finds
        the plugin in what the binary unpacked."""
        ports = harness.Ports()
        data_dir, config = self.init(ports)
        twistd = {"SHIV_ENTRY_POINT": harness.TWISTD}
        self.assertIn("mdmappliance", self.cli("--help", **twistd))
        command = [self.binary, "-n", "--pidfile=", "mdmappliance", "--config", str(config)]
        appliance = self.start(command, ports.admin, **twistd)
        health = appliance.health(harness.admin_key(data_dir))
        self.assertEqual((health["http_status"], health["status"]), (200, "ok"), health)
        # twistd re-raises SIGTERM on itself after a clean stop (README "Install on a server").
        self.assertEqual(appliance.stop(), -signal.SIGTERM, appliance.output())
