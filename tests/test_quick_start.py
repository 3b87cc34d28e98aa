"""The README's Quick start, run as it is written: ``make run``, then ``mdmappliance simulate``
in a second "terminal", then the fleet commands in a third.

Only what cannot be the same on a test machine is changed: the demo directory (``var/demo``
becomes a temporary one, through ``make run``'s own ``DEMO_DIR``) and the ports (free ones,
through ``make run``'s ``*_PORT`` variables), and ``FIRST_UDID`` is a UDID of the list.
"""

from __future__ import annotations

import json
import os
import plistlib
import re
import shlex
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from twisted.trial.unittest import TestCase

from tests.support import REPO, free_port

BLOCK = re.compile(r"## Quick start\n.*?```sh\n(.*?)```", re.S)
WAIT = 120.0


FLEET_BLOCK = re.compile(r"## Running the fleet\n.*?```sh\n(.*?)```", re.S)
#: What the demo answers, as documented, where it cannot do what the example asks: pushes
#: need a real push certificate; a command the simulated device already answered cannot be
#: canceled.
DOCUMENTED_REFUSALS = {
    "mdmappliance push": "no push certificate is installed",
    "mdmappliance command cancel": "cannot be canceled",
}


def block_lines(pattern: re.Pattern[str], name: str) -> list[str]:
    """The commands of a README block, comments and blank lines left out."""
    found = pattern.search((REPO / "README.md").read_text(encoding="utf-8"))
    assert found is not None, f"README.md has no {name} block"
    lines = [line.split(" #")[0].strip() for line in found.group(1).splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def quick_start_lines() -> list[str]:
    return block_lines(BLOCK, "Quick start")


def as_run(line: str) -> str:
    """A synopsis line as a command: optional ``[...]`` parts left out, the first of
    ``A | B``."""
    line = re.sub(r"\s*\[[^\]]*\]", "", line)
    return line.split(" | ")[0].strip()


def wait_until(process: subprocess.Popen[bytes], log: Path, check: Any, what: str) -> None:
    """Until ``check(log text)`` holds; fails at once (with the log) if the process ended."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        if check(text):
            return
        if process.poll() is not None:
            raise AssertionError(f"{what}: the process ended ({process.returncode}):\n{text}")
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}; {log.name}:\n{log.read_text()[-3000:]}")


def answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=2)
    except urllib.error.HTTPError:
        return True  # 401 without a key: it is serving
    except OSError:
        return False
    return True


class QuickStart(TestCase):
    timeout = 300

    def setUp(self) -> None:
        self.dir = Path(self.mktemp()).absolute()
        self.dir.mkdir()
        self.demo = self.dir / "var" / "demo"
        self.ports = {
            "DEVICE_PORT": free_port(),
            "ENROLLMENT_PORT": free_port(),
            "ADMIN_PORT": free_port(),
        }
        self.env = {k: v for k, v in os.environ.items() if k != "MDMAPPLIANCE_CONFIG"}
        self.env["PWD"] = str(REPO)
        self.background: list[subprocess.Popen[bytes]] = []

    def tearDown(self) -> None:
        for process in reversed(self.background):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()

    def start(self, argv: list[str], log: str) -> tuple[subprocess.Popen[bytes], Path]:
        out = self.dir / log
        with out.open("wb") as sink:
            process = subprocess.Popen(
                argv,
                cwd=REPO,
                env=self.env,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.background.append(process)
        return process, out

    def export(self, line: str) -> None:
        """``export A=x B=y``, with ``$PWD/var/demo`` the test's demo directory."""
        for assignment in shlex.split(line)[1:]:
            name, _, value = assignment.partition("=")
            value = value.replace("$PWD/var/demo", str(self.demo)).replace("$PWD", str(REPO))
            self.env[name] = value.replace("$PATH", self.env.get("PATH", ""))

    def run_line(self, line: str, **substitutions: str) -> str:
        for name, value in substitutions.items():
            line = line.replace(name, value)
        done = subprocess.run(
            shlex.split(line), cwd=REPO, env=self.env, capture_output=True, text=True, timeout=WAIT
        )
        self.assertEqual(done.returncode, 0, f"{line}\n{done.stdout}\n{done.stderr}")
        return done.stdout + done.stderr

    def test_the_quick_start_as_written(self) -> None:
        lines = quick_start_lines()
        self.assertEqual(lines[0], "make run")
        make = ["make", "run", f"DEMO_DIR={self.demo}"]
        make += [f"{name}={port}" for name, port in self.ports.items()]
        server, served = self.start(make, "make-run.log")
        health = f"http://127.0.0.1:{self.ports['ADMIN_PORT']}/v1/health"
        wait_until(server, served, lambda text: answers(health), f"make run ({health})")

        outputs: dict[str, str] = {}
        simulated: Path | None = None
        for line in lines[1:]:
            if line.startswith("export "):
                self.export(line)
            elif line.startswith("mdmappliance simulate"):
                fleet, simulated = self.start(
                    [str(REPO / ".venv/bin/mdmappliance"), *shlex.split(line)[1:]],
                    "simulate.log",
                )
                wait_until(
                    fleet, simulated, lambda text: text.count("enrolled ") >= 5, "5 enrollments"
                )
            else:
                first = self.first_udid() if "FIRST_UDID" in line else ""
                outputs[line] = self.run_line(line, FIRST_UDID=first)
        assert simulated is not None

        listed = outputs["mdmappliance devices list"]
        self.assertIn("5 device(s)", listed)
        self.assertEqual(listed.count(" ios "), 4)
        self.assertEqual(listed.count(" macos "), 1)
        results = outputs["mdmappliance command send DeviceInformation --all --wait"]
        self.assertEqual(results.count("acknowledged"), 5 * 2, results)  # progress + table
        shown = outputs["mdmappliance devices show FIRST_UDID"]
        self.assertIn("inventory device_information", shown)
        erased = outputs["mdmappliance command send EraseDevice --all --partial --no-push"]
        self.assertIn("4 command(s) queued", erased)
        self.assertIn("Find My Mac PIN", erased)
        self.assertIn("command.queued", outputs["mdmappliance events"])
        self.assertIn("-> Acknowledged", simulated.read_text())
        self.running_the_fleet()

    def running_the_fleet(self) -> None:
        """Every example of "Running the fleet" in the same demo, placeholders filled in:
        UDID an iPhone's, COMMAND_UUID the last queued, settings.plist a DeviceName setting.
        The simulator (the Quick start's) and completion lines have tests of their own."""
        udid = self.first_udid()
        (self.dir / "settings.plist").write_bytes(
            plistlib.dumps({"Settings": [{"Item": "DeviceName", "DeviceName": "Front desk"}]})
        )
        last_uuid = ""
        ran = 0
        said: dict[str, str] = {}
        for synopsis in block_lines(FLEET_BLOCK, "Running the fleet"):
            if synopsis.startswith(("mdmappliance simulate", "source <(")):
                continue
            line = as_run(synopsis).replace("COMMAND_UUID", last_uuid).replace("UDID", udid)
            line = line.replace("settings.plist", str(self.dir / "settings.plist"))
            done = subprocess.run(
                shlex.split(line),
                cwd=REPO,
                env=self.env,
                capture_output=True,
                text=True,
                timeout=WAIT,
            )
            refusal = next(
                (text for start, text in DOCUMENTED_REFUSALS.items() if line.startswith(start)),
                None,
            )
            if done.returncode != 0 and refusal is not None:
                self.assertIn(refusal, done.stderr, line)
            else:
                self.assertEqual(done.returncode, 0, f"{line}\n{done.stdout}\n{done.stderr}")
            queued = re.findall(
                r"[0-9A-F]{8}-[0-9A-F]{4}-7[0-9A-F]{3}-[0-9A-F]{4}-[0-9A-F]{12}", done.stdout
            )
            if line.startswith("mdmappliance command send") and queued:
                last_uuid = queued[-1]
            ran += 1
            said[line.split(udid)[0].strip()] = done.stdout
        self.assertGreaterEqual(ran, 10)
        self.assertIn("identity certificate(s) revoked", said["mdmappliance devices revoke"])
        self.assertIn("queued", said["mdmappliance command send Settings --udid"])

    def first_udid(self) -> str:
        devices: list[dict[str, Any]] = json.loads(
            self.run_line("mdmappliance devices list --json")
        )
        return str(devices[0]["udid"])
