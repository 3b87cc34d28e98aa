"""Benchmarks that print figures (``make bench``); never assertions.

- store: committed transactions per second through the Deferred API, FULL vs NORMAL sync;
- admin: ``GET /v1/health`` requests per second over loopback with keep-alive;
- commands: one command queued for 10,000 and 100,000 enrollments in one call;
- apns: pushes per second to 10,000 enrollments through one HTTP/2 connection;
- scep: issuances per second (PKCSReq -> CertRep) and enrollments per second end to end;
- dep: the first fetch of 100,000 devices and a sync of 1,000 changes, time and peak memory;
- vpp: a first sync of 50,000 users and 100,000 licenses, then of 1,000 changes, likewise;
- device channel and hot path: server CPU per device message beside a bare TLS responder
  (``bench/hot_path.py`` is issue 18's table: 200 devices draining 10 DeviceInformation each);
- footprint: the server's RSS with 100,000 enrolled, idle and with 1,000 device connections.

Each runs a bounded number of operations on loopback and in a temporary directory.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import treq
from twisted.internet import defer, task
from twisted.web.client import HTTPConnectionPool

from bench.apns import bench_apns
from bench.commands import bench_commands
from bench.dep import bench_dep
from bench.device_channel import bench_device_channel
from bench.footprint import bench_footprint
from bench.hot_path import bench_hot_path
from bench.scep import bench_scep
from bench.vpp import bench_vpp
from mdmappliance.app.admin_listener import admin_listener
from mdmappliance.app.reactor import global_reactor
from mdmappliance.store import Store, record_event

reactor = global_reactor()

STORE_TRANSACTIONS = 2000
HEALTH_REQUESTS = 2000
HEALTH_CONCURRENCY = 8
KEY = "b" * 40


def report(name: str, count: int, seconds: float, unit: str) -> None:
    print(f"{name:48} {count / seconds:10.0f} {unit}/s  ({count} in {seconds:.2f}s)")


async def bench_store(directory: Path, synchronous: str, in_flight: int) -> None:
    store = Store(
        directory / f"bench-{synchronous}-{in_flight}.db", reactor=reactor, synchronous=synchronous
    )
    store.startService()
    started = time.perf_counter()
    for _ in range(STORE_TRANSACTIONS // in_flight):
        batch = [
            store.transaction(record_event, "bench.event", detail={"n": 1})
            for _ in range(in_flight)
        ]
        await defer.gatherResults(batch)
    elapsed = time.perf_counter() - started
    await store.stopService()
    report(
        f"store: 1-event transactions, {synchronous}, {in_flight} queued",
        STORE_TRANSACTIONS,
        elapsed,
        "tx",
    )


async def bench_health(directory: Path) -> None:
    store = Store(directory / "health.db", reactor=reactor)
    store.startService()
    listener = admin_listener(
        reactor, store, bind="127.0.0.1", port=0, api_keys={"admin": KEY}, grace=1.0
    )
    listener.startService()
    url = f"http://127.0.0.1:{listener.bound_port}/v1/health"
    pool = HTTPConnectionPool(reactor, persistent=True)
    pool.maxPersistentPerHost = HEALTH_CONCURRENCY
    headers: dict[bytes | str, bytes | str] = {"Authorization": f"Bearer {KEY}"}

    async def worker(count: int) -> None:
        for _ in range(count):
            response = await treq.get(url, headers=headers, pool=pool)
            await response.content()
            assert response.code == 200

    started = time.perf_counter()
    per_worker = HEALTH_REQUESTS // HEALTH_CONCURRENCY
    await defer.gatherResults(
        [defer.ensureDeferred(worker(per_worker)) for _ in range(HEALTH_CONCURRENCY)]
    )
    elapsed = time.perf_counter() - started
    report(
        f"admin: GET /v1/health, keep-alive, {HEALTH_CONCURRENCY} clients",
        per_worker * HEALTH_CONCURRENCY,
        elapsed,
        "req",
    )
    await pool.closeCachedConnections()
    await listener.stopService()
    await store.stopService()


async def main(_: Any) -> None:
    with tempfile.TemporaryDirectory(prefix="mdmappliance-bench-") as name:
        directory = Path(name)
        for synchronous in ("FULL", "NORMAL"):
            for in_flight in (1, 50):
                await bench_store(directory, synchronous, in_flight)
        await bench_health(directory)
        await bench_commands(directory)
        await bench_apns()
    await bench_scep()
    await bench_dep()
    await bench_vpp()
    await bench_device_channel()
    await bench_hot_path()
    await bench_footprint()


def run(entry: Callable[[Any], Coroutine[Any, Any, None]]) -> None:
    task.react(lambda r: defer.ensureDeferred(entry(r)))


if __name__ == "__main__":
    run(main)
