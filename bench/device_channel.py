"""Device-channel throughput, each figure beside a bare twisted.web TLS responder.

Servers run as their own processes (one core each at most); the simulated devices run in
this process. A cycle is what a device does for one command: PUT Idle → the command,
PUT Acknowledged → the next command (two messages; a device that leaves then gets that next
command again on its next poll). The bare responder answers the
same two PUTs with an empty 200, behind the same mTLS options.

(a) keep-alive: messages per second over reused mTLS connections, N devices at once, and
    the server process's CPU per message (utime + stime around that phase only: steadier
    than the rates on a noisy machine);
(b) wake-ups: a new mTLS connection per cycle (what a push makes a device do).

Also measured: the device routes alone in a process (no admin listener, access log, metrics),
and the same endpoint without Klein (its handler behind a plain Resource): what Klein's render
costs a message.
"""

from __future__ import annotations

import os
import plistlib
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from twisted.internet import defer

from mdmappliance.cli.installation import InitRequest, initialize
from mdmappliance.commands.queue import enqueue
from mdmappliance.config import Config
from mdmappliance.simulator.device import SimulatedDevice
from mdmappliance.store import Tx, in_transaction
from tests.support import free_port, subprocess_env

REPO = Path(__file__).resolve().parent.parent
ROUNDS = 3  # each server is measured this many times; the best round counts (less noise)
DEVICES = 10
KEEPALIVE_CYCLES = 40
WAKEUPS = 12


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process ``pid`` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_cpu_seconds(pid: int) -> tuple[float, float]:
    """CPU time of process ``pid``'s main thread (the reactor) and of all its other threads
    (the store thread, the thread pool) so far, from /proc/PID/task."""
    main = others = 0.0
    for task_dir in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task_dir / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the thread ended meanwhile
        seconds = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        if task_dir.name == str(pid):
            main += seconds
        else:
            others += seconds
    return main, others


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


class Timed:
    def __init__(self) -> None:
        self.latencies: list[float] = []

    async def put(self, device: SimulatedDevice, message: dict[str, Any]) -> bytes:
        started = time.perf_counter()
        reply = await device.put(device.server_path, message)
        self.latencies.append(time.perf_counter() - started)
        assert reply.code == 200, (reply.code, reply.body)
        return reply.body


async def cycle(device: SimulatedDevice, timed: Timed, bare: bool) -> None:
    body = await timed.put(device, {"UDID": device.udid, "Status": "Idle"})
    command_uuid = "BARE" if bare else plistlib.loads(body)["CommandUUID"]
    # The reply is the next queued command (sent, not yet answered): the next cycle's Idle
    # gets it again with the same UUID, as after a device loses a reply.
    await timed.put(
        device,
        # A ProfileList answer as a device sends it (an empty list keeps the bench lean).
        {
            "UDID": device.udid,
            "Status": "Acknowledged",
            "CommandUUID": command_uuid,
            "ProfileList": [],
        },
    )


def start_server(
    command: list[str], port: int, workdir: Path, name: str, timeout: float = 30
) -> subprocess.Popen[bytes]:
    """``command`` as its own process, once it listens on ``port``."""
    log = (workdir / f"{name}.log").open("wb")
    process = subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, env=subprocess_env(), cwd=str(workdir)
    )
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode} (see {name}.log)")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"{name} did not listen on {port}")


def queue_commands(config: Config, devices: list[SimulatedDevice], count: int) -> None:
    conn = sqlite3.connect(config.store.path, isolation_level=None, timeout=30)
    try:

        def add(tx: Tx) -> None:
            for device in devices:
                enrollment = tx.enrollments.get(device.udid)
                assert enrollment is not None
                for _ in range(count):
                    enqueue(tx, enrollment.id, {"RequestType": "ProfileList"})

        in_transaction(Tx(conn), add)
    finally:
        conn.close()


async def run_devices(
    devices: list[SimulatedDevice], work: Callable[[SimulatedDevice], Coroutine[Any, Any, None]]
) -> float:
    started = time.perf_counter()
    await defer.gatherResults([defer.ensureDeferred(work(d)) for d in devices])
    return time.perf_counter() - started


async def measure(devices: list[SimulatedDevice], bare: bool, server_pid: int) -> dict[str, Any]:
    timed = Timed()

    async def keepalive(device: SimulatedDevice) -> None:
        for _ in range(KEEPALIVE_CYCLES):
            await cycle(device, timed, bare)

    cpu_before = cpu_seconds(server_pid)
    seconds = await run_devices(devices, keepalive)
    cpu = cpu_seconds(server_pid) - cpu_before
    messages = DEVICES * KEEPALIVE_CYCLES * 2
    keep = {
        "rate": messages / seconds,
        "p50": percentile(timed.latencies, 0.5),
        "p99": percentile(timed.latencies, 0.99),
        "cpu_ms": cpu * 1000 / messages,
    }
    for device in devices:
        await device.close()
    woken = Timed()

    async def wakeups(device: SimulatedDevice) -> None:
        for _ in range(WAKEUPS):
            await cycle(device, woken, bare)
            await device.close()

    seconds = await run_devices(devices, wakeups)
    wake = {"rate": DEVICES * WAKEUPS / seconds, "p99": percentile(woken.latencies, 0.99)}
    return {"keepalive": keep, "wakeup": wake}


def installation(workdir: Path) -> tuple[Config, int, list[SimulatedDevice]]:
    """A fresh installation in ``workdir``, its device port, and DEVICES simulated devices
    with identities from its CA (not enrolled yet)."""
    port = free_port()
    config = initialize(
        InitRequest(
            data_dir=workdir / "data",
            hostname="localhost",
            admin_port=free_port(),
            device_port=port,
        )
    ).config
    url = f"https://127.0.0.1:{port}"
    devices = [
        SimulatedDevice.issued(url, config.pki.ca_cert, config.pki.ca_key) for _ in range(DEVICES)
    ]
    return config, port, devices


async def bench_device_channel() -> None:
    with tempfile.TemporaryDirectory(prefix="mdmappliance-bench-devices-") as name:
        workdir = Path(name)
        config, port, devices = installation(workdir)
        figures: dict[str, dict[str, Any]] = {}
        servers = {
            "mdmappliance serve": [
                sys.executable,
                "-m",
                "mdmappliance",
                "serve",
                "--config",
                str(config.path),
            ],
            "device routes alone": [
                sys.executable,
                str(REPO / "bench" / "servers.py"),
                "endpoint",
                str(config.path),
            ],
            "device routes without Klein": [
                sys.executable,
                str(REPO / "bench" / "servers.py"),
                "unrouted",
                str(config.path),
            ],
            "bare twisted.web TLS responder": [
                sys.executable,
                str(REPO / "bench" / "servers.py"),
                "bare",
                str(config.path),
            ],
        }
        for label, command in servers.items():
            process = start_server(command, port, workdir, label.replace(" ", "-"))
            try:
                bare = label.startswith("bare")
                if not bare:
                    if label.startswith("mdmappliance"):
                        for device in devices:
                            await device.enroll()
                        for device in devices:
                            await device.close()
                    queue_commands(config, devices, ROUNDS * (KEEPALIVE_CYCLES + WAKEUPS) + 1)
                rounds = [await measure(devices, bare, process.pid) for _ in range(ROUNDS)]
                figures[label] = {
                    phase: max((r[phase] for r in rounds), key=lambda f: f["rate"])
                    for phase in ("keepalive", "wakeup")
                }
                figures[label]["keepalive"]["cpu_ms"] = min(
                    r["keepalive"]["cpu_ms"] for r in rounds
                )
            finally:
                for device in devices:
                    await device.close()
                process.terminate()
                process.wait(timeout=30)
        ceiling = figures["bare twisted.web TLS responder"]
        print(
            f"device channel: {DEVICES} devices, cycle = PUT Idle -> command, "
            "PUT Acknowledged -> next command"
        )
        for label, figure in figures.items():
            keep, wake = figure["keepalive"], figure["wakeup"]
            print(
                f"  {label:36} keep-alive {keep['rate']:7.0f} msg/s "
                f"({keep['rate'] / ceiling['keepalive']['rate']:.2f} of bare; "
                f"p50 {keep['p50'] * 1000:.1f} ms, p99 {keep['p99'] * 1000:.1f} ms; "
                f"server CPU {keep['cpu_ms']:.2f} ms/msg)   "
                f"wake-ups {wake['rate']:6.0f}/s "
                f"({wake['rate'] / ceiling['wakeup']['rate']:.2f} of bare; "
                f"p99 {wake['p99'] * 1000:.1f} ms)"
            )
        print("  targets: keep-alive >= 0.45 of bare, wake-ups >= 0.60 of bare")
