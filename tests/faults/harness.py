"""The fault-injection harness: the appliance as its own process under a mixed load, while
faults are injected, and a ledger of what every client was told, to check afterwards that
nothing acknowledged was lost.

The load (seeded): enrollment through one-time links, check-ins, polls answered Acknowledged,
NotNow or Error, admin sends (which push through a local APNs server), and webhooks to a
local receiver. The faults: SIGKILL of the service, the database locked by another process,
the database files refusing writes (``chattr +i``), the file-size limit hit mid-write
(``RLIMIT_FSIZE`` on the service), the APNs server resetting its connections or answering
slowly, and the webhook receiver going down and coming back.
"""

from __future__ import annotations

import json
import random
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import treq
from twisted.internet import reactor, task
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.web.client import Agent, HTTPConnectionPool

from mdmappliance.app.reactor import global_reactor
from mdmappliance.config import Config, load_config
from mdmappliance.simulator.device import SimulatedDevice
from tests.apns_server import FakeAPNs, Received, Reply
from tests.pushcerts import make_push_pki
from tests.support import free_port, make_installation, subprocess_env
from tests.webhook_receiver import WebhookReceiver

REQUEST_TYPES = (
    "DeviceInformation",
    "ProfileList",
    "SecurityInfo",
    "CertificateList",
    "InstalledApplicationList",
)
FINAL = {"Acknowledged": "acknowledged", "Error": "error"}
#: A fault has ended when the service is healthy again within this long.
RECOVERY_SECONDS = 20.0


async def sleep(seconds: float) -> None:
    await task.deferLater(reactor, seconds, lambda: None)


@dataclass
class Ledger:
    """What clients were told, and what they saw: the invariants are checked against it."""

    #: CommandUUIDs the admin API returned (201), by UDID.
    queued: dict[str, str] = field(default_factory=dict)
    #: Results the appliance acknowledged (200 to the device's final answer): uuid -> state.
    committed: dict[str, str] = field(default_factory=dict)
    #: Every delivery of a command to a device: (uuid, udid).
    deliveries: list[tuple[str, str]] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    requests: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    recoveries: list[tuple[str, float]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    def delivered(self, command_uuid: str, udid: str) -> None:
        self.deliveries.append((command_uuid, udid))
        if command_uuid in self.committed:
            self.violations.append(f"{command_uuid} was delivered after its result was committed")
        owner = self.queued.get(command_uuid)
        if owner is not None and owner != udid:
            self.violations.append(f"{command_uuid} went to {udid}, queued for {owner}")


def answer_for(command: dict[str, Any], choice: str) -> tuple[str, dict[str, Any]]:
    """A device's answer: ``choice`` (Acknowledged, NotNow or Error), with plausible keys."""
    request_type = command["Command"]["RequestType"]
    if choice == "NotNow":
        return "NotNow", {}
    if choice == "Error":
        chain = [{"ErrorCode": 12021, "ErrorDomain": "MCMDMErrorDomain"}]
        return "Error", {"ErrorChain": chain}
    answers: dict[str, dict[str, Any]] = {
        "DeviceInformation": {"QueryResponses": {"OSVersion": "17.1", "BatteryLevel": 0.5}},
        "ProfileList": {"ProfileList": []},
        "SecurityInfo": {"SecurityInfo": {"PasscodePresent": True}},
        "CertificateList": {"CertificateList": []},
        "InstalledApplicationList": {"InstalledApplicationList": []},
    }
    return "Acknowledged", answers.get(request_type, {})


class Harness:
    def __init__(self, workdir: Path, seed: int, devices: int = 6) -> None:
        self.workdir = workdir
        self.rng = random.Random(seed)
        self.ledger = Ledger()
        self.device_count = devices
        self.pki = make_push_pki(workdir / "push")
        self.apns = FakeAPNs(answer=self._apns_answer)
        self.apns_slow = False
        apns_port = self.apns.listen(
            self.pki.gateway_cert, self.pki.gateway_key, self.pki.push_ca_file
        )
        secret = b"s" * 32
        self.receiver = WebhookReceiver(secret)
        hook_url = self.receiver.listen()
        self.hook_port = int(hook_url.split(":")[2].split("/")[0])
        self.config_path = make_installation(
            workdir / "appliance",
            port=free_port(),
            sections={
                "device": {"topic": ""},
                "store": {"busy_timeout_ms": 300},
                "apns": {
                    "gateway": f"https://localhost:{apns_port}",
                    "ca_file": str(self.pki.gateway_ca_file),
                    "cert_file": str(self.pki.cert_file),
                    "key_file": str(self.pki.key_file),
                    "coalesce_seconds": 0.05,
                    "retry_base_seconds": 0.05,
                },
                "webhooks": {"urls": [hook_url], "retry_base_seconds": 0.05},
            },
        )
        config_dir = self.config_path.parent
        (config_dir / "webhook-secret").write_bytes(secret)
        self.config: Config = load_config(self.config_path)
        self.db = self.config.store.path
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        self.http = treq.client.HTTPClient(Agent(reactor, pool=self.pool))
        self.key = self.config.read_admin_api_key()
        self.headers: dict[bytes | str, bytes | str] = {"Authorization": f"Bearer {self.key}"}
        self.devices: list[SimulatedDevice] = []

    # The service
    def start(self, file_size_limit: int | None = None) -> None:
        self.starts += 1
        out = (self.workdir / f"serve-{self.starts}.log").open("wb")

        def limit() -> None:
            if file_size_limit is not None:
                signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of death
                resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

        self.process = subprocess.Popen(
            [sys.executable, "-m", "mdmappliance", "serve", "--config", str(self.config_path)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=subprocess_env(),
            cwd=str(self.workdir),
            preexec_fn=limit,
        )
        out.close()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    async def health(self) -> tuple[int, dict[str, Any]]:
        try:
            response = await self.http.get(
                self.config.admin_url() + "/v1/health",
                headers=self.headers,
                timeout=5,
            )
            return response.code, json.loads(await response.content())
        except Exception as e:
            return 0, {"error": str(e)}

    async def until_up(self) -> None:
        """Wait until the admin API answers at all (healthy or not)."""
        for _ in range(200):
            code, _ = await self.health()
            if code:
                return
            await sleep(0.05)

    async def until_healthy(self, fault: str) -> None:
        """Wait for health 200 "ok", recording how long it took after the fault ended."""
        ended = time.monotonic()
        while True:
            code, body = await self.health()
            if code == 200 and body.get("status") == "ok":
                self.ledger.recoveries.append((fault, time.monotonic() - ended))
                return
            if time.monotonic() - ended > RECOVERY_SECONDS:
                self.ledger.violations.append(
                    f"not healthy {RECOVERY_SECONDS:g}s after {fault} ended: {code} {body}"
                )
                return
            if self.process is not None and self.process.poll() is not None:
                self.start()  # it exited (say, EFBIG at start): bring it back
            await sleep(0.1)

    # The load
    async def admin(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        self.ledger.requests["admin"] += 1
        try:
            response = await self.http.request(
                method,
                self.config.admin_url() + path,
                data=None if body is None else json.dumps(body).encode(),
                headers=self.headers,
                timeout=10,
            )
            return response.code, json.loads(await response.content())
        except Exception as e:
            return 0, {"error": str(e)}

    async def enroll_through_a_link(self) -> SimulatedDevice | None:
        code, link = await self.admin("POST", "/v1/enrollment-tokens", {"note": "faults"})
        if code != 201:
            return None
        self.ledger.requests["enrollment"] += 1
        try:
            device = await SimulatedDevice.from_enrollment_link(
                link["url"], self.config.pki.ca_cert
            )
        except Exception:
            return None
        device.base_url = f"https://127.0.0.1:{self.config.device.port}"
        for step in (device.authenticate, device.token_update):
            for _ in range(50):
                self.ledger.requests["device"] += 1
                try:
                    reply = await step()
                except Exception:
                    reply = None
                if reply is not None and reply.code == 200:
                    break
                await device.close()
                await sleep(0.1)
            else:
                await device.close()
                return None
        return device

    async def send(self) -> None:
        targets = self.rng.sample(self.devices, k=self.rng.randint(1, len(self.devices)))
        command = {"RequestType": self.rng.choice(REQUEST_TYPES)}
        code, body = await self.admin(
            "POST", "/v1/commands", {"udids": [d.udid for d in targets], "command": command}
        )
        if code == 201:
            for entry in body["commands"]:
                if entry["command_uuid"] in self.ledger.queued:
                    self.ledger.violations.append(f"{entry['command_uuid']} was queued twice")
                self.ledger.queued[entry["command_uuid"]] = entry["udid"]

    async def poll(self, device: SimulatedDevice, answers: tuple[str, ...]) -> int:
        """One poll session: Idle, then answer each command; the commands received."""
        received = 0
        try:
            self.ledger.requests["device"] += 1
            reply = await device.report("Idle")
            for _ in range(40):
                if reply.code != 200:
                    self.ledger.requests[f"device_{reply.code}"] += 1
                if reply.code != 200 or not reply.body:
                    return received
                command = reply.plist()
                command_uuid = command["CommandUUID"]
                received += 1
                self.ledger.delivered(command_uuid, device.udid)
                status, extra = answer_for(command, self.rng.choice(answers))
                self.ledger.requests["device"] += 1
                reply = await device.report(status, command_uuid, **extra)
                if reply.code != 200:
                    self.ledger.requests[f"device_{reply.code}"] += 1
                if reply.code == 200 and status in FINAL:
                    self.ledger.committed[command_uuid] = FINAL[status]
                if status == "NotNow":
                    return received  # not offered again on this connection: a later poll
        except Exception:
            self.ledger.requests["device_failed"] += 1
        finally:
            await device.close()
        return received

    async def round(self) -> None:
        """A slice of mixed load: maybe an admin send, then every device polls once."""
        if self.rng.random() < 0.6:
            await self.send()
        polls = [
            self.poll(d, ("Acknowledged", "Acknowledged", "NotNow", "Error")) for d in self.devices
        ]
        for poll in polls:
            await poll

    # The faults
    def _apns_answer(self, request: Received) -> Reply | None:
        if self.apns_slow:
            reactor.callLater(0.5, self.apns.release)
            return None
        return Reply(200)

    async def fault(self, kind: str) -> None:
        self.ledger.faults[kind] += 1
        handler = getattr(self, f"_fault_{kind}")
        started = time.monotonic()
        await handler()
        self.ledger.seconds[kind] += time.monotonic() - started

    async def _fault_kill(self) -> None:
        # Mid-load: the kill lands while requests are in flight.
        load = Deferred.fromCoroutine(self.round())
        await sleep(self.rng.uniform(0.0, 0.15))
        self.kill()
        await load
        self.start()
        await self.until_healthy("kill")

    async def _fault_lock(self) -> None:
        other = sqlite3.connect(self.db, isolation_level=None, timeout=5)
        try:
            other.execute("BEGIN IMMEDIATE")
            await self.round()
            code, body = await self.health()
            if code != 503 or body.get("status") != "degraded":
                self.ledger.violations.append(f"health said {code} {body} while locked")
            other.execute("ROLLBACK")
        finally:
            other.close()
        await self.until_healthy("lock")

    def _immutable(self, on: bool) -> bool:
        tool = shutil.which("chattr")
        if tool is None:
            return False
        paths = [self.db, self.db.with_name(self.db.name + "-wal")]
        results = [
            subprocess.run([tool, "+i" if on else "-i", str(p)], capture_output=True)
            for p in paths
            if p.exists()
        ]
        return all(r.returncode == 0 for r in results)

    async def _fault_readonly(self) -> None:
        if not self._immutable(True):
            self.ledger.faults["readonly_skipped"] += 1
            return
        try:
            await self.round()
            code, body = await self.health()
            if code != 503:
                self.ledger.violations.append(f"health said {code} {body} while read-only")
        finally:
            self._immutable(False)
        await self.until_healthy("readonly")

    async def _fault_fsize(self) -> None:
        sizes = [p.stat().st_size for p in self.db.parent.glob(self.db.name + "*") if p.is_file()]
        self.kill()
        self.start(file_size_limit=max(sizes) + 8192)
        await self.until_up()
        for _ in range(3):
            await self.round()
        self.kill()
        self.start()
        await self.until_healthy("fsize")

    async def _fault_apns(self) -> None:
        self.apns.reset()
        self.apns_slow = True
        await self.send()
        await self.round()
        self.apns_slow = False
        self.apns.release()
        await self.until_healthy("apns")

    async def _fault_webhooks(self) -> None:
        await maybeDeferred(self.receiver.port.stopListening)
        await self.round()
        await self.round()
        site: Any = self.receiver.site()
        self.receiver.port = global_reactor().listenTCP(self.hook_port, site, interface="127.0.0.1")
        await self.until_healthy("webhooks")

    # The end
    async def drain(self) -> None:
        """Every device polls, answering Acknowledged, until no command is left."""
        for _ in range(30):
            received = 0
            for device in self.devices:
                received += await self.poll(device, ("Acknowledged",))
            if not received:
                return
        self.ledger.violations.append("commands were still being delivered after 30 rounds")

    async def webhooks_delivered(self) -> None:
        kinds = ("checkin.authenticate", "checkin.token_update", "checkin.checkout",
                 "checkin.user_authenticate", "command.result")  # fmt: skip
        expected = [
            row[0]
            for row in self.query(
                f"SELECT id FROM events WHERE kind IN ({','.join('?' * len(kinds))}) ORDER BY id",
                *kinds,
            )
        ]
        for _ in range(300):
            got = [int(e["id"].rsplit("-", 1)[1]) for e in self.receiver.events]
            if set(expected) <= set(got):
                break
            await sleep(0.1)
        got = [int(e["id"].rsplit("-", 1)[1]) for e in self.receiver.events]
        missing = sorted(set(expected) - set(got))
        if missing:
            self.ledger.violations.append(f"{len(missing)} webhook events never arrived")
        if got != sorted(got):
            self.ledger.violations.append("webhook events arrived out of order")
        if self.receiver.bad_signatures:
            self.ledger.violations.append(f"{self.receiver.bad_signatures} bad signatures")

    def query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        conn = sqlite3.connect(self.db, timeout=30)
        try:
            return conn.execute(sql, args).fetchall()
        finally:
            conn.close()

    def check_the_database(self) -> None:
        """Run after the service stopped: every acknowledged result is there, whole."""
        states = dict(self.query("SELECT uuid, state FROM commands"))
        for command_uuid, state in self.ledger.committed.items():
            if states.get(command_uuid) != state:
                self.ledger.violations.append(
                    f"acknowledged {command_uuid} ({state}) is {states.get(command_uuid)}"
                )
        results = {u for (u,) in self.query(
            "SELECT DISTINCT c.uuid FROM command_results AS r JOIN commands AS c "
            "ON c.id = r.command_id WHERE r.status IN ('Acknowledged', 'Error')"
        )}  # fmt: skip
        lost = set(self.ledger.committed) - results
        if lost:
            self.ledger.violations.append(f"{len(lost)} acknowledged results have no result row")
        for command_uuid in self.ledger.queued:
            if command_uuid not in states:
                self.ledger.violations.append(f"queued {command_uuid} is not in the database")
        check = self.query("PRAGMA integrity_check")
        if check != [("ok",)]:
            self.ledger.violations.append(f"integrity_check: {check[:3]}")

    def figures(self, seed: int) -> str:
        ledger = self.ledger
        slowest = max((seconds for _, seconds in ledger.recoveries), default=0.0)
        return (
            f"fault suite, seed {seed}: faults {dict(sorted(ledger.faults.items()))}; "
            f"requests {dict(sorted(ledger.requests.items()))}; "
            f"commands queued {len(ledger.queued)}, results acknowledged "
            f"{len(ledger.committed)}, deliveries {len(ledger.deliveries)}; webhook events "
            f"{len(self.receiver.events)} ({self.receiver.deliveries} deliveries); pushes "
            f"{len(self.apns.received)}; slowest recovery {slowest:.1f}s; seconds by fault "
            f"{ {k: round(v, 1) for k, v in sorted(ledger.seconds.items())} }; "
            f"invariant violations: {len(ledger.violations)}"
        )
