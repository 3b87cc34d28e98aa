"""Shared test helpers: real installations made by ``init``, free loopback ports, subprocesses."""

from __future__ import annotations

import json
import os
import plistlib
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from mdmappliance.cli.installation import InitRequest, initialize
from mdmappliance.config import load_config, render_config
from mdmappliance.mdm.messages import Message, parse_message, parse_plist
from mdmappliance.store import Tx
from mdmappliance.store.enrollments import Enrollment
from mdmappliance.store.events import Event
from mdmappliance.store.migrate import load_migrations

REPO = Path(__file__).resolve().parent.parent


def _find_testdata() -> Path:
    """Real device captures and Apple-signed samples: shared/ beside the checkout (as in CI),
    or where MDMAPPLIANCE_TESTDATA points."""
    candidates: list[str | Path] = [
        os.environ.get("MDMAPPLIANCE_TESTDATA", ""),
        REPO.parent / "shared" / "testdata",
        "/work/shared/testdata",
    ]
    for candidate in candidates:
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return REPO.parent / "shared" / "testdata"


TESTDATA = _find_testdata()


def testdata(*parts: str) -> Path:
    """A file of the shared test data, or SkipTest when this machine does not have it."""
    from twisted.trial.unittest import SkipTest

    path = TESTDATA.joinpath(*parts)
    if not path.exists():
        raise SkipTest(f"{path} is not here (set MDMAPPLIANCE_TESTDATA)")
    return path


SCHEMA_VERSION = len(load_migrations())
TOPIC = "com.apple.mgmt.External.test-topic"
_template: Path | None = None


def _template_installation() -> Path:
    """One real ``init`` run per test process; tests get copies (RSA key generation is slow)."""
    global _template
    if _template is None:
        where = Path(tempfile.mkdtemp(prefix="mdmappliance-template-"))
        initialize(InitRequest(data_dir=where / "data", hostname="localhost"))
        _template = where / "data"
    return _template


def local_users_sections(case: Any) -> dict[str, dict[str, Any]]:
    """Config with one local network user for UserAuthenticate: cjoe, password s3cret."""
    from mdmappliance.device.digest import md5_hex

    users = Path(case.mktemp()).absolute()
    users.write_text(f"cjoe:mdmappliance:{md5_hex('cjoe:mdmappliance:s3cret')}\n")
    return {"device": {"users_file": str(users)}}


def make_installation(
    directory: Path,
    port: int | None = None,
    device_port: int | None = None,
    sections: dict[str, dict[str, Any]] | None = None,
) -> Path:
    """A complete installation in ``directory``; returns its config path.

    ``sections`` override config keys, e.g. ``store={"synchronous": "NORMAL"}``.
    """
    directory = directory.absolute()
    shutil.copytree(_template_installation(), directory)
    values: dict[str, dict[str, Any]] = {"appliance": {"data_dir": ".", "hostname": "localhost"}}
    if port is not None:
        values["admin"] = {"port": port}
    values["device"] = {"port": device_port or free_port(), "bind": "127.0.0.1", "topic": TOPIC}
    values["enrollment"] = {"port": free_port(), "bind": "127.0.0.1"}
    for name, overrides in (sections or {}).items():
        values.setdefault(name, {}).update(overrides)
    config_path = directory / "mdmappliance.toml"
    config_path.write_text(render_config(values, "test installation"))
    return config_path


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, and not one this process
    handed out before (the kernel may offer the same free port twice in a row, and one
    installation's listeners need different ones)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port
    raise RuntimeError("no fresh free port in 100 tries")


def subprocess_env() -> dict[str, str]:
    """The environment for running this tree's code in a child process."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO)
    env.pop("PYTHONSTARTUP", None)
    return env


def run_cli(
    *args: str, timeout: float = 60, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``mdmappliance ARGS`` in a child process (``env`` added to its environment)."""
    return subprocess.run(
        [sys.executable, "-m", "mdmappliance", *args],
        capture_output=True,
        text=True,
        env={**subprocess_env(), **(env or {})},
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def twistd() -> str:
    """The twistd script of the environment running the tests."""
    return str(Path(sys.executable).parent / "twistd")


class RunningAppliance:
    """An appliance started as a child process (``serve`` or ``twistd``) on a loopback port.

    Its output goes to files, not pipes: a busy server would block on a full pipe.
    """

    _count = 0

    def __init__(self, command: list[str], port: int, cwd: Path) -> None:
        self.port = port
        RunningAppliance._count += 1
        self.stdout_path = cwd / f"appliance-{RunningAppliance._count}.out"
        self.stderr_path = cwd / f"appliance-{RunningAppliance._count}.err"
        cwd.mkdir(parents=True, exist_ok=True)
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.process = subprocess.Popen(
                command,
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                env=subprocess_env(),
                cwd=str(cwd),
            )

    def output(self) -> tuple[str, str]:
        return self.stdout_path.read_text(), self.stderr_path.read_text()

    def wait_until_listening(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                out, err = self.output()
                raise AssertionError(f"exited with {self.process.returncode}: {err}{out}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"nothing listened on port {self.port} within {timeout}s")

    def get(self, path: str, key: str | None) -> tuple[int, dict[str, Any]]:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}")
        if key is not None:
            request.add_header("Authorization", f"Bearer {key}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def terminate(self, timeout: float = 30.0) -> tuple[int, str, str]:
        """SIGTERM, then the exit status and everything it printed."""
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=timeout)
        return (self.process.returncode, *self.output())

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


class InProcessAppliance:
    """The real service tree (store, admin and device listeners) in the test's reactor."""

    def __init__(self, directory: Path, **sections: dict[str, Any]) -> None:
        self._start(make_installation(directory, port=free_port(), sections=sections))

    @classmethod
    def reopen(cls, config_path: Path) -> InProcessAppliance:
        """The installation of ``config_path`` started again, as after a restart."""
        appliance = cls.__new__(cls)
        appliance._start(config_path)
        return appliance

    def _start(self, config_path: Path) -> None:
        from mdmappliance.app.reactor import global_reactor
        from mdmappliance.app.service import make_service

        self.config = load_config(config_path)
        self.service = make_service(self.config, global_reactor())
        try:
            self.service.startService()
        except Exception:
            # e.g. a port taken between free_port() and listen: stop what did start (the
            # store's thread would otherwise keep trial from exiting).
            self.service.stopService()
            raise
        self.store = self.service.getServiceNamed("store")
        self.base_url = f"https://127.0.0.1:{self.config.device.port}"

    def device(self, identity: Any = "issue", **kw: Any) -> Any:
        """A simulated device with its own identity from the appliance CA (or ``identity``)."""
        from mdmappliance.simulator.device import SimulatedDevice

        kw.setdefault("base_url", self.base_url)
        pki = self.config.pki
        if identity == "issue":
            return SimulatedDevice.issued(ca_cert=pki.ca_cert, ca_key=pki.ca_key, **kw)
        kw.setdefault("udid", secrets.token_hex(20).upper())
        return SimulatedDevice(ca_cert=pki.ca_cert, identity=identity, **kw)

    async def enrolled(self, case: Any) -> Any:
        """A simulated device that completed Authenticate and TokenUpdate; closed when
        ``case`` (the test) ends."""
        device = self.device()
        case.addCleanup(device.close)
        await device.enroll()
        return device

    async def device_from_link(self) -> Any:
        """A simulated device that enrolled the way a real one does: from a one-time link
        (the profile's identity, topic and URLs). It has not checked in yet; close it."""
        import datetime

        from mdmappliance.enrollment.links import create_link
        from mdmappliance.simulator.device import SimulatedDevice

        token, _ = await self.store.transaction(create_link, datetime.timedelta(days=1), "", "t")
        return await SimulatedDevice.from_enrollment_link(
            self.config.enrollment_url(token), self.config.pki.ca_cert
        )

    async def enrollment_id(self, udid: str) -> int:
        from mdmappliance.commands.send import resolve_udids

        found, _ = await self.store.run(resolve_udids, [udid])
        return int(found[udid])

    async def stop(self) -> None:
        if self.service.running:  # a test may stop it early; its cleanup stops it again
            await self.service.stopService()


def openssl_verify(signed: bytes, ca_cert: Path, directory: Path) -> bytes:
    """What ``openssl cms -verify`` says the signed content is (it must verify)."""
    signed_path, out_path = directory / "profile.der", directory / "content.plist"
    signed_path.write_bytes(signed)
    result = subprocess.run(
        [
            "openssl",
            "cms",
            "-verify",
            "-inform",
            "DER",
            "-in",
            str(signed_path),
            "-CAfile",
            str(ca_cert),
            "-purpose",
            "any",
            "-binary",
            "-out",
            str(out_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "Verification successful" in result.stderr, result.stderr
    return out_path.read_bytes()


def query(path: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """Rows from the database file, read on a connection of the test's own."""
    import sqlite3

    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


# Store reads and writes the tests use often, as functions of a Tx (``store.run(get_setting,
# key)``), so a test reads like the property it checks.
def get_setting(tx: Tx, key: str) -> str | None:
    return tx.settings.get(key)


def set_setting(tx: Tx, key: str, value: str) -> None:
    tx.settings.set(key, value)


def events_after(tx: Tx, after_id: int = 0, limit: int = 100) -> list[Event]:
    return tx.events.after(after_id, limit)


def get_enrollment(tx: Tx, udid: str, user_id: str = "") -> Enrollment | None:
    return tx.enrollments.get(udid, user_id)


def inventory_of(tx: Tx, enrollment_id: int) -> dict[str, dict[str, Any]]:
    return tx.inventory.of(enrollment_id)


def sql(tx: Tx, statement: str, *args: Any) -> list[tuple[Any, ...]]:
    """A statement of the test's own on the store's connection (to set up a state the
    appliance would take days to reach, or to look at one)."""
    return tx.conn.execute(statement, args).fetchall()


def enrollment_checkins(udid: str, topic: str) -> list[Message]:
    """Authenticate and TokenUpdate of ``udid``, parsed as the device channel parses them:
    for a test that enrolls a device through ``handle_message``, with no TLS client."""
    messages: list[dict[str, Any]] = [
        {"MessageType": "Authenticate", "UDID": udid, "Topic": topic},
        {
            "MessageType": "TokenUpdate",
            "UDID": udid,
            "Topic": topic,
            "Token": b"t" * 32,
            "PushMagic": "magic",
        },
    ]
    bodies = [plistlib.dumps(message) for message in messages]
    return [parse_message(parse_plist(body, 32), body, checkin_only=True) for body in bodies]
