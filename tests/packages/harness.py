"""The built artefacts, and the appliance started from them in a clean environment.

A clean environment: PATH of the system's directories only (so ``/usr/bin/env python3`` finds
the system's Python, not this virtualenv's), no PYTHONPATH, HOME and SHIV_ROOT in the test's
own directory, and the working directory there too: nothing of the source tree can be found.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SkipTest

from mdmappliance._version import __version__
from tests.support import REPO, free_port

DIST = REPO / "dist"
BINARY = DIST / "mdmappliance"
BUILD = REPO / "packaging" / "deb" / "build.py"
SYSTEM_PYTHON = Path("/usr/bin/python3")
# The binary runs twistd instead of the console script with SHIV_ENTRY_POINT set to this.
TWISTD = "twisted.scripts.twistd:run"


def require_enabled() -> None:
    if os.environ.get("MDMAPPLIANCE_PACKAGES") != "1":
        raise SkipTest("the packages suite runs with `make packages`")
    if not SYSTEM_PYTHON.exists():
        raise SkipTest(f"{SYSTEM_PYTHON} is not here: the .deb and these tests need it")


def _newer_sources_than(artefact: Path) -> bool:
    built = artefact.stat().st_mtime
    sources = [REPO / "setup.cfg", *REPO.glob("mdmappliance/**/*"), *BUILD.parent.iterdir()]
    return any(
        p.is_file() and "__pycache__" not in p.parts and p.stat().st_mtime > built for p in sources
    )


def binary() -> Path:
    """dist/mdmappliance as ``make dist`` left it, or built now when missing or older than the
    sources."""
    if not BINARY.exists() or _newer_sources_than(BINARY):
        subprocess.run([sys.executable, str(BUILD), "dist", "--out", str(BINARY)], check=True)
    return BINARY


def deb() -> Path:
    """dist/mdmappliance_<version>_<arch>.deb as ``make deb`` left it, or built now."""
    found = sorted(DIST.glob(f"mdmappliance_{__version__}_*.deb"))
    if not found or _newer_sources_than(found[-1]) or found[-1].stat().st_mtime < binary_mtime():
        subprocess.run(
            [sys.executable, str(BUILD), "deb", "--binary", str(binary()), "--out-dir", str(DIST)],
            check=True,
        )
        found = sorted(DIST.glob(f"mdmappliance_{__version__}_*.deb"))
    return found[-1]


def binary_mtime() -> float:
    return binary().stat().st_mtime


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    home.mkdir(parents=True, exist_ok=True)
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(home), "LANG": "C.UTF-8"}
    env.update(extra)
    return env


def run(
    command: list[str], env: dict[str, str], cwd: Path, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        env=env,
        cwd=str(cwd),
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def check(result: subprocess.CompletedProcess[str]) -> str:
    if result.returncode != 0:
        raise AssertionError(
            f"{result.args} exited with {result.returncode}:\n{result.stderr}{result.stdout}"
        )
    return result.stdout


class Ports:
    """Free loopback ports for one installation's three listeners."""

    def __init__(self) -> None:
        self.admin, self.device, self.enrollment = free_port(), free_port(), free_port()

    def init_args(self) -> list[str]:
        return [
            "--admin-port",
            str(self.admin),
            "--device-port",
            str(self.device),
            "--enrollment-port",
            str(self.enrollment),
        ]


def set_keys(text: str, values: dict[str, dict[str, Any]]) -> str:
    """The config ``text`` with each ``[section] key`` set: its line (commented or not, as the
    documented example has every key) replaced by ``key = value``."""
    lines, section, done = text.splitlines(), "", set()
    for i, line in enumerate(lines):
        header = re.match(r"^\[(\w+)\]$", line)
        if header:
            section = header.group(1)
            continue
        for key, value in values.get(section, {}).items():
            if re.match(rf"^#?{key} = ", line) and (section, key) not in done:
                lines[i] = f"{key} = {json.dumps(value)}"
                done.add((section, key))
    missing = {(s, k) for s, keys in values.items() for k in keys} - done
    if missing:
        raise AssertionError(f"no line for {sorted(missing)} in the config")
    return "\n".join(lines) + "\n"


class Appliance:
    """The appliance as a child process; output to files (a full pipe would block it)."""

    def __init__(self, command: list[str], env: dict[str, str], cwd: Path, port: int) -> None:
        self.port = port
        self.out, self.err = cwd / "appliance.out", cwd / "appliance.err"
        with self.out.open("wb") as out, self.err.open("wb") as err:
            self.process = subprocess.Popen(
                command, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env, cwd=str(cwd)
            )

    def output(self) -> str:
        return self.err.read_text() + self.out.read_text()

    def health(self, key: str, timeout: float = 60.0) -> dict[str, Any]:
        """GET /v1/health once it answers (the first start unpacks the zipapp)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"exited with {self.process.returncode}:\n{self.output()}")
            request = urllib.request.Request(f"http://127.0.0.1:{self.port}/v1/health")
            request.add_header("Authorization", f"Bearer {key}")
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    body: dict[str, Any] = json.loads(response.read())
                    body["http_status"] = response.status
                    return body
            except urllib.error.HTTPError as e:
                return {"http_status": e.code, **json.loads(e.read())}
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"/v1/health did not answer within {timeout} s:\n{self.output()}")

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def admin_key(data_dir: Path) -> str:
    return (data_dir / "admin-api-key").read_text().strip()
