"""dist/mdmappliance_<version>_<arch>.deb: what it holds, the appliance started from it
(extracted with ``dpkg -x`` into a throwaway root), its maintainer scripts, lintian's verdict."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import tomllib
from pathlib import Path

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from mdmappliance._version import __version__
from tests.packages import harness
from tests.support import REPO, SCHEMA_VERSION

PACKAGING = REPO / "packaging"
SCRIPTS = ("postinst", "prerm", "postrm")
CONFFILE = "etc/mdmappliance/mdmappliance.toml"
UNIT = "lib/systemd/system/mdmappliance.service"


def dpkg_deb(*args: str) -> str:
    result = subprocess.run(["dpkg-deb", *args], capture_output=True, text=True, timeout=120)
    return harness.check(result)


class Contents(SynchronousTestCase):
    timeout = 600

    def setUp(self) -> None:
        harness.require_enabled()
        self.deb = harness.deb()

    def test_control(self) -> None:
        arch = subprocess.run(
            ["dpkg", "--print-architecture"], check=True, capture_output=True, text=True
        ).stdout.strip()
        self.assertEqual(self.deb.name, f"mdmappliance_{__version__}_{arch}.deb")
        fields = dict(
            line.split(": ", 1)
            for line in dpkg_deb("--field", str(self.deb)).splitlines()
            if ": " in line and not line.startswith(" ")
        )
        self.assertEqual(fields["Package"], "mdmappliance")
        self.assertEqual(fields["Version"], __version__)
        self.assertEqual(fields["Architecture"], arch)
        self.assertIn("python3 (>= 3.11)", fields["Depends"])
        self.assertIn("adduser", fields["Depends"])

    def test_files_owners_and_conffile(self) -> None:
        listing = dpkg_deb("--contents", str(self.deb))
        entries = {
            line.split()[-1].removeprefix("./"): (line.split()[0], line.split()[1])
            for line in listing.splitlines()
        }
        self.assertEqual({owner for _, owner in entries.values()}, {"root/root"})
        self.assertEqual(entries["opt/mdmappliance/bin/mdmappliance"][0], "-rwxr-xr-x")
        self.assertEqual(entries["opt/mdmappliance/bin/twistd"][0], "-rwxr-xr-x")
        self.assertIn("opt/mdmappliance/lib/mdmappliance.pyz", entries)
        self.assertEqual(entries[UNIT][0], "-rw-r--r--")
        self.assertEqual(entries[CONFFILE][0], "-rw-r--r--")
        control = Path(self.mktemp())
        dpkg_deb("--control", str(self.deb), str(control))
        self.assertEqual((control / "conffiles").read_text().split(), [f"/{CONFFILE}"])
        for script in SCRIPTS:
            self.assertEqual(
                (control / script).read_bytes(), (PACKAGING / "deb" / script).read_bytes()
            )

    def test_unit_and_config_agree(self) -> None:
        """The unit is the tree's, unchanged; it runs the binary the package ships with the
        config it ships, whose data directory is the unit's StateDirectory."""
        root = Path(self.mktemp()).absolute()
        dpkg_deb("--extract", str(self.deb), str(root))
        unit = (root / UNIT).read_text()
        self.assertEqual(unit, (PACKAGING / "mdmappliance.service").read_text())
        self.assertEqual(
            (root / CONFFILE).read_text(), (REPO / "conf" / "mdmappliance.toml").read_text()
        )
        match = re.search(r"^ExecStart=(\S+) serve --config (\S+)", unit, re.MULTILINE)
        assert match is not None
        binary, config = match.groups()
        self.assertTrue((root / binary.lstrip("/")).is_file())
        self.assertEqual(config, f"/{CONFFILE}")
        self.assertIn("StateDirectory=mdmappliance\n", unit)
        data_dir = tomllib.loads((root / CONFFILE).read_text())["appliance"]["data_dir"]
        self.assertEqual(data_dir, "/var/lib/mdmappliance")


class Extracted(SynchronousTestCase):
    """The package extracted into a throwaway root, started from there: init with the shipped
    config (as postinst does, in a temporary data directory), serve, twistd."""

    timeout = 600

    def setUp(self) -> None:
        harness.require_enabled()
        self.where = Path(self.mktemp()).absolute()
        self.where.mkdir()
        self.root = self.where / "root"
        dpkg_deb("--extract", str(harness.deb()), str(self.root))
        self.bin = self.root / "opt" / "mdmappliance" / "bin"
        self.data_dir = self.where / "state"
        self.env = harness.clean_env(self.where / "home")

    def cli(self, *args: str, **env: str) -> str:
        command = [str(self.bin / "mdmappliance"), *args]
        return harness.check(harness.run(command, {**self.env, **env}, self.where))

    def installed_config(self) -> Path:
        """The shipped conffile pointed at the temporary data directory, on free loopback
        ports, then ``init`` as postinst runs it (hostname from the config, which init keeps)."""
        self.ports = harness.Ports()
        shipped = (self.root / CONFFILE).read_text()
        config = self.where / "mdmappliance.toml"
        config.write_text(
            harness.set_keys(
                shipped,
                {
                    "appliance": {"data_dir": str(self.data_dir)},
                    "admin": {"port": self.ports.admin},
                    "device": {"port": self.ports.device, "bind": "127.0.0.1"},
                    "enrollment": {"port": self.ports.enrollment, "bind": "127.0.0.1"},
                },
            )
        )
        before = config.read_bytes()
        hostname = tomllib.loads(shipped)["appliance"]["hostname"]
        self.data_dir.mkdir(mode=0o750)
        state = {"SHIV_ROOT": str(self.data_dir / ".shiv")}
        self.cli(
            "init",
            "--data-dir",
            str(self.data_dir),
            "--hostname",
            hostname,
            "--config",
            str(config),
            **state,
        )
        self.assertEqual(config.read_bytes(), before, "init must keep the conffile as it is")
        self.assertIn(f"{config}: OK", self.cli("check-config", "--config", str(config), **state))
        return config

    def start(self, command: list[str]) -> harness.Appliance:
        # As systemd runs it: STATE_DIRECTORY set, HOME elsewhere; postinst's unpacking gone.
        shutil.rmtree(self.data_dir / ".shiv")
        env = {**self.env, "STATE_DIRECTORY": str(self.data_dir)}
        appliance = harness.Appliance(command, env, self.where, self.ports.admin)
        self.addCleanup(appliance.kill)
        return appliance

    def test_serve_from_the_extracted_package(self) -> None:
        config = self.installed_config()
        appliance = self.start([str(self.bin / "mdmappliance"), "serve", "--config", str(config)])
        health = appliance.health(harness.admin_key(self.data_dir))
        self.assertEqual((health["http_status"], health["status"]), (200, "ok"), health)
        self.assertEqual(health["database"], {"ok": True, "schema_version": SCHEMA_VERSION})
        self.cli("devices", "list", "--config", str(config))
        self.assertEqual(appliance.stop(), 0, appliance.output())
        # Under systemd it unpacks inside the StateDirectory.
        self.assertTrue(list((self.data_dir / ".shiv").glob("mdmappliance.pyz_*/site-packages")))

    def test_twistd_from_the_extracted_package(self) -> None:
        config = self.installed_config()
        command = [str(self.bin / "twistd"), "-n", "--pidfile=", "mdmappliance"]
        appliance = self.start([*command, "--config", str(config)])
        health = appliance.health(harness.admin_key(self.data_dir))
        self.assertEqual((health["http_status"], health["status"]), (200, "ok"), health)
        self.assertEqual(appliance.stop(), -signal.SIGTERM, appliance.output())


class MaintainerScripts(SynchronousTestCase):
    """Not run for real (that takes root, systemd and a machine to spoil): checked as text."""

    def setUp(self) -> None:
        harness.require_enabled()

    def scripts(self) -> list[Path]:
        deb = PACKAGING / "deb"
        return [deb / name for name in (*SCRIPTS, "mdmappliance.sh", "twistd.sh")]

    def test_posix_sh_syntax(self) -> None:
        for script in self.scripts():
            self.assertTrue(script.read_text().startswith("#!/bin/sh\n"), script)
            result = subprocess.run(["sh", "-n", str(script)], capture_output=True, text=True)
            self.assertEqual(result.returncode, 0, f"{script}: {result.stderr}")

    def test_shellcheck_clean(self) -> None:
        if shutil.which("shellcheck") is None:
            raise SkipTest("shellcheck is not installed (.ci/run installs it)")
        result = subprocess.run(
            ["shellcheck", "--shell=sh", *map(str, self.scripts())], capture_output=True, text=True
        )
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)

    def test_init_runs_on_first_install_only(self) -> None:
        postinst = (PACKAGING / "deb" / "postinst").read_text()
        first_install = postinst.index('if [ -z "$2" ]; then')
        self.assertGreater(postinst.index(" init --data-dir", first_install), first_install)
        self.assertEqual(postinst.count(" init --data-dir"), 1)


class Lintian(SynchronousTestCase):
    timeout = 600

    def setUp(self) -> None:
        harness.require_enabled()

    def test_no_errors_and_every_tag_accepted_in_the_readme(self) -> None:
        if shutil.which("lintian") is None:
            self.fail("lintian is not installed (apt-get install lintian; .ci/run does)")
        result = subprocess.run(
            ["lintian", "--pedantic", "--info", "--fail-on", "error", str(harness.deb())],
            capture_output=True,
            text=True,
            timeout=540,
        )
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        tags = re.findall(r"^([EWIPX]): mdmappliance: (\S+)", result.stdout, re.MULTILINE)
        self.assertNotIn("E", {level for level, _ in tags}, result.stdout)
        accepted = (PACKAGING / "deb" / "README").read_text()
        unlisted = sorted({tag for _, tag in tags if tag not in accepted})
        self.assertEqual(unlisted, [], f"list them in packaging/deb/README:\n{result.stdout}")
