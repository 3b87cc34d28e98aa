"""The device hot path at NanoMDM's yardstick (issue 18): server CPU per device request.

The workload of the issue's table: the server as its own process (``mdmappliance serve``
from the installed package); N simulated devices enrolled untimed; K DeviceInformation
commands queued per device through the admin API without pushes; then W workers, each
draining devices one after another over a kept-alive connection: Idle → command,
Acknowledged with a 20-key answer → the next command, ..., → empty. Server CPU (utime +
stime from /proc) is read before and after the timed phase only. Then every device polls
again with an empty queue (the empty-queue Idle cost: with ``last_seen`` due, as after a
push, and again within the 10 s it is not rewritten in). The same figures for a bare
twisted.web TLS responder (two PUTs answered with an empty 200) in the same run are the
machine's yardstick; mTLS, and proxy mode (RFC 9440 ``Client-Cert`` header, plain HTTP).

Run: ``python bench/hot_path.py [--devices N] [--commands K] [--workers W] [--runs R]
[--profile FILE]`` (``make bench`` runs it with the defaults and one run; medians over
``--runs``; ``--profile`` writes the mTLS server's cProfile).
"""

from __future__ import annotations

import argparse
import base64
import json
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives.serialization import Encoding
from twisted.internet import defer, task

from bench.device_channel import REPO, cpu_seconds, percentile, start_server, thread_cpu_seconds
from mdmappliance.config import load_config
from mdmappliance.simulator.device import SimulatedDevice
from tests.support import free_port, make_installation

#: A DeviceInformation answer as an iPhone sends it: 20 keys of the usual kinds.
ANSWER = {
    "UDID": "",
    "DeviceName": "Bench iPhone",
    "OSVersion": "18.1",
    "BuildVersion": "22B83",
    "ModelName": "iPhone",
    "Model": "MQ9X3LL/A",
    "ProductName": "iPhone17,1",
    "SerialNumber": "F2LXK0Q8N7",
    "DeviceCapacity": 238.5,
    "AvailableDeviceCapacity": 171.25,
    "BatteryLevel": 0.82,
    "CellularTechnology": 3,
    "IMEI": "35 209900 176148 1",
    "ModemFirmwareVersion": "2.05.01",
    "IsSupervised": True,
    "IsDeviceLocatorServiceEnabled": True,
    "IsActivationLockEnabled": False,
    "WiFiMAC": "a4:83:e7:12:34:56",
    "BluetoothMAC": "a4:83:e7:12:34:57",
    "IsRoaming": False,
}
QUERIES = sorted(k for k in ANSWER if k != "UDID")
#: Empty-queue polls per device in each Idle measurement.
IDLE_ROUNDS = 3


class Run:
    """One server under the workload: its devices, and what they measured."""

    def __init__(self, devices: list[SimulatedDevice], bare: bool) -> None:
        self.devices = devices
        self.bare = bare
        self.latencies: list[float] = []
        self.requests = 0

    async def put(self, device: SimulatedDevice, message: dict[str, Any]) -> bytes:
        started = time.perf_counter()
        reply = await device.put(device.server_path, message)
        self.latencies.append(time.perf_counter() - started)
        self.requests += 1
        if reply.code != 200:
            raise RuntimeError(f"{reply.code}: {reply.text()}")
        return reply.body

    async def drain(self, device: SimulatedDevice, commands: int) -> None:
        """Idle, then answer each command until the empty reply (the bare server: as many
        exchanges as the real one has)."""
        body = await self.put(device, {"UDID": device.udid, "Status": "Idle"})
        for n in range(commands):
            if self.bare:
                command_uuid = f"BARE-{n}"
            else:
                if not body:
                    raise RuntimeError(f"{device.udid}: the queue ended after {n} commands")
                command_uuid = _command_uuid(body)
            body = await self.put(
                device,
                {
                    "UDID": device.udid,
                    "Status": "Acknowledged",
                    "CommandUUID": command_uuid,
                    "QueryResponses": {**ANSWER, "UDID": device.udid},
                },
            )
        if body and not self.bare:
            raise RuntimeError(f"{device.udid}: more commands than queued")

    async def workers(self, count: int, work: Any) -> float:
        """``work(device)`` for every device, ``count`` devices at a time."""
        pending = list(self.devices)

        async def worker() -> None:
            while pending:
                await work(pending.pop())

        started = time.perf_counter()
        await defer.gatherResults([defer.ensureDeferred(worker()) for _ in range(count)])
        return time.perf_counter() - started


def _command_uuid(body: bytes) -> str:
    import plistlib

    uuid: str = plistlib.loads(body)["CommandUUID"]
    return uuid


def admin_call(config: Any, method: str, path: str, body: Any) -> Any:
    request = urllib.request.Request(
        config.admin_url() + path, data=json.dumps(body).encode(), method=method
    )
    request.add_header("Authorization", f"Bearer {config.read_admin_api_key()}")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())


async def measure(
    run: Run, server_pid: int, commands: int, workers: int, database: Path | None
) -> dict[str, float]:
    """The drain, then the empty-queue Idle, each with the server's CPU around it. The Idle
    is measured twice, ``IDLE_ROUNDS`` polls per device each: with ``last_seen`` due (made
    old in ``database`` first, so every poll writes it, as after a push) and repeated within
    ``LAST_SEEN_EVERY`` (no write)."""
    cpu, (reactor, others) = cpu_seconds(server_pid), thread_cpu_seconds(server_pid)
    seconds = await run.workers(workers, lambda d: run.drain(d, commands))
    drained = cpu_seconds(server_pid) - cpu
    reactor_after, others_after = thread_cpu_seconds(server_pid)
    requests, latencies = run.requests, list(run.latencies)
    idle = {"due": 0.0, "recent": 0.0}
    for phase in idle:
        for _ in range(IDLE_ROUNDS):
            if phase == "due" and database is not None:
                _age_last_seen(database)
            cpu = cpu_seconds(server_pid)
            await run.workers(workers, lambda d: run.put(d, {"UDID": d.udid, "Status": "Idle"}))
            idle[phase] += cpu_seconds(server_pid) - cpu
    polls = len(run.devices) * IDLE_ROUNDS
    return {
        "cpu_ms": drained * 1000 / requests,
        "reactor_ms": (reactor_after - reactor) * 1000 / requests,
        "store_ms": (others_after - others) * 1000 / requests,
        "rate": requests / seconds,
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "idle_cpu_ms": idle["due"] * 1000 / polls,
        "idle_recent_ms": idle["recent"] * 1000 / polls,
    }


def _age_last_seen(database: Path) -> None:
    """Every enrollment last heard from long ago: its next message writes ``last_seen``."""
    conn = sqlite3.connect(database, timeout=30)
    try:
        with conn:
            conn.execute("UPDATE enrollments SET last_seen = '2000-01-01T00:00:00.000Z'")
    finally:
        conn.close()


def client_cert(device: SimulatedDevice) -> dict[bytes | str, bytes | str]:
    assert device.identity is not None
    der = device.identity.certificate.public_bytes(Encoding.DER)
    return {"Client-Cert": ":" + base64.b64encode(der).decode() + ":"}


async def one_server(workdir: Path, label: str, args: argparse.Namespace) -> dict[str, float]:
    """A fresh installation and server for ``label``; its figures."""
    admin_port, device_port, proxy_port = free_port(), free_port(), free_port()
    config_path = make_installation(
        workdir / label.replace(" ", "-"),
        port=admin_port,
        device_port=device_port,
        sections={
            "proxy": {"enabled": True, "port": proxy_port, "trusted_proxies": ["127.0.0.1"]},
            "store": {"synchronous": "FULL"},
            "retention": {"result_bytes_per_enrollment": 1 << 30},
        },
    )
    config = load_config(config_path)
    bare = label.startswith("bare")
    proxy = "proxy" in label
    if bare:
        command = [sys.executable, str(REPO / "bench" / "servers.py"), "bare", str(config_path)]
    else:
        profile = ["-m", "cProfile", "-o", args.profile] if args.profile and not proxy else []
        command = [
            sys.executable,
            *profile,
            "-m",
            "mdmappliance",
            "serve",
            "--config",
            str(config_path),
        ]
    process = start_server(command, device_port, workdir, label.split()[0])
    devices: list[SimulatedDevice] = []
    try:
        tls_url = f"https://127.0.0.1:{device_port}"
        for _ in range(args.devices):
            device = SimulatedDevice.issued(tls_url, config.pki.ca_cert, config.pki.ca_key)
            if not bare:
                await device.enroll()  # untimed, over TLS
            if proxy:
                await device.close()
                device.base_url = f"http://127.0.0.1:{proxy_port}"
                device.extra_headers.update(client_cert(device))
            devices.append(device)
        if not bare:
            udids = [d.udid for d in devices]
            for _ in range(args.commands):
                admin_call(
                    config,
                    "POST",
                    "/v1/commands",
                    {
                        "udids": udids,
                        "command": {"RequestType": "DeviceInformation", "Queries": QUERIES},
                        "push": False,
                    },
                )
        spy = None
        if args.py_spy and not bare and not proxy:
            spy = subprocess.Popen(
                [
                    *(str(Path(sys.executable).parent / "py-spy"), "record"),
                    *("--pid", str(process.pid), "--format", "raw", "--threads"),
                    *("--rate", "250", "-o", args.py_spy),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(1.0)  # attached before the timed phase
        try:
            database = None if bare else config.store.path
            return await measure(
                Run(devices, bare), process.pid, args.commands, args.workers, database
            )
        finally:
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                spy.wait(timeout=60)
    finally:
        for device in devices:
            await device.close()
        process.terminate()
        process.wait(timeout=30)


SERVERS = ("mdmappliance, mTLS device port", "mdmappliance, proxy mode", "bare twisted.web TLS")


async def bench_hot_path(args: argparse.Namespace | None = None) -> None:
    args = args or parser().parse_args([])
    results: dict[str, list[dict[str, float]]] = {label: [] for label in SERVERS}
    with tempfile.TemporaryDirectory(prefix="mdmappliance-bench-hot-") as name:
        for run in range(args.runs):
            for label in [s for s in SERVERS if s.startswith("bare") or args.only in s]:
                workdir = Path(name) / f"run-{run}"
                workdir.mkdir(exist_ok=True)
                results[label].append(await one_server(workdir, label, args))
    print(
        f"device hot path: {args.devices} devices x {args.commands} DeviceInformation "
        f"(20-key answers), {args.workers} workers, keep-alive; medians of {args.runs} run(s)"
    )
    print(
        f"  {'server':34} {'CPU ms/request':>14} {'requests/s':>11} {'p50 ms':>7} "
        f"{'p99 ms':>7} {'empty Idle CPU ms':>17} {'again <10 s':>11} "
        f"{'reactor/other threads ms':>25}"
    )
    for label, figures in results.items():
        if not figures:
            continue

        def median(key: str, figures: list[dict[str, float]] = figures) -> float:
            return statistics.median(f[key] for f in figures)

        bare = label.startswith("bare")
        idle = "-" if bare else f"{median('idle_cpu_ms'):.2f}"
        again = "-" if bare else f"{median('idle_recent_ms'):.2f}"
        threads = f"{median('reactor_ms'):.2f} / {median('store_ms'):.2f}"
        print(
            f"  {label:34} {median('cpu_ms'):14.2f} {median('rate'):11.0f} "
            f"{median('p50_ms'):7.1f} {median('p99_ms'):7.1f} {idle:>17} {again:>11} {threads:>25}"
        )
    print("  targets (NanoMDM's file store): <= 1.0 ms per request, <= 0.5 ms per empty Idle")


def parser() -> argparse.ArgumentParser:
    options = argparse.ArgumentParser(description=__doc__)
    options.add_argument("--devices", type=int, default=200)
    options.add_argument("--commands", type=int, default=10)
    options.add_argument("--workers", type=int, default=8)
    options.add_argument("--runs", type=int, default=1)
    options.add_argument(
        "--only",
        default="",
        metavar="TEXT",
        help="only the mdmappliance servers whose label holds TEXT (mTLS, proxy), and the bare",
    )
    options.add_argument(
        "--py-spy",
        metavar="FILE",
        help="sample every thread of the mTLS server with py-spy during the timed phase "
        "(collapsed stacks in FILE; pip install py-spy)",
    )
    options.add_argument(
        "--profile",
        metavar="FILE",
        help="run the mTLS server under cProfile and write its profile to FILE "
        "(python -m pstats FILE, or snakeviz)",
    )
    return options


if __name__ == "__main__":
    arguments = parser().parse_args()
    task.react(lambda reactor: defer.ensureDeferred(bench_hot_path(arguments)))
