"""Pushes per second through one HTTP/2 connection to the local APNs test server (run as its
own process), with the memory this process used. Target: at least 5,000 pushes/s.

(a) the APNs client alone: 10,000 pushes issued at once, streamed through the server's
    MAX_CONCURRENT_STREAMS (1000, as Apple's gateway allows);
(b) the pusher: 10,000 enrolled devices in the store, ``push_all`` (read a page, push it,
    record each outcome), what `POST /v1/push {"all": true}` does.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from twisted.internet import defer, task

from mdmappliance.apns.client import APNsClient, Push
from mdmappliance.apns.pusher import Pusher
from mdmappliance.app.reactor import global_reactor
from mdmappliance.core.timestamps import utc_timestamp
from mdmappliance.store import Store, Tx
from tests.pushcerts import make_push_pki
from tests.support import subprocess_env

REPO = Path(__file__).resolve().parent.parent
PUSHES = 10_000


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _fleet(tx: Tx, count: int) -> None:
    conn = tx.conn
    now = utc_timestamp()
    conn.executemany(
        "INSERT INTO devices (udid, first_seen, updated_at) VALUES (?, ?, ?)",
        [(f"BENCH-{n:012d}", now, now) for n in range(count)],
    )
    conn.executemany(
        "INSERT INTO enrollments (udid, topic, state, push_token, push_magic, token_valid, "
        "token_updated_at, created_at, updated_at) VALUES (?, 'com.apple.mgmt.bench', "
        "'enrolled', ?, ?, 1, ?, ?, ?)",
        [
            (f"BENCH-{n:012d}", n.to_bytes(32, "big"), f"magic-{n}", now, now, now)
            for n in range(count)
        ],
    )


async def bench_apns() -> None:
    reactor = global_reactor()
    with tempfile.TemporaryDirectory(prefix="mdmappliance-apns-") as name:
        directory = Path(name)
        pki = make_push_pki(directory / "pki")
        port_file = directory / "port"
        server = subprocess.Popen(
            [
                sys.executable,
                str(REPO / "bench" / "apns_gateway.py"),
                str(pki.directory),
                str(port_file),
            ],
            env=subprocess_env(),
        )
        try:
            for _ in range(200):
                if port_file.exists() and port_file.read_text():
                    break
                await task.deferLater(reactor, 0.05, lambda: None)
            port = int(port_file.read_text())
            cert, key = pki.pem()
            client = APNsClient(
                reactor, f"https://localhost:{port}", cert, key, ca_file=pki.gateway_ca_file
            )
            client.start()
            await client.push(Push(bytes(32), "warm-up", pki.topic))
            before = rss_mib()
            cpu = time.process_time()
            started = time.perf_counter()
            answers = await defer.gatherResults(
                [
                    defer.Deferred.fromCoroutine(
                        client.push(Push(n.to_bytes(32, "big"), f"m{n}", pki.topic))
                    )
                    for n in range(PUSHES)
                ]
            )
            elapsed = time.perf_counter() - started
            cpu = time.process_time() - cpu
            assert {a.status for a in answers} == {200}
            print(
                f"{'apns: client, 10000 pushes at once, 1 connection':48} "
                f"{PUSHES / elapsed:10.0f} push/s  ({elapsed:.2f}s, "
                f"+{rss_mib() - before:.0f} MiB RSS; client CPU {cpu / PUSHES * 1e6:.0f} us/push, "
                f"{PUSHES / cpu:.0f} push/s if the server kept up)"
            )
            store = Store(directory / "push.db", reactor=reactor)
            store.startService()
            await store.transaction(_fleet, PUSHES)
            pusher = Pusher(store, client, reactor, pki.topic, chunk=1000)
            before = rss_mib()
            started = time.perf_counter()
            count = await pusher.push_all()
            elapsed = time.perf_counter() - started
            assert count == PUSHES, count
            print(
                f"{'apns: push_all to 10000 enrollments (store too)':48} "
                f"{count / elapsed:10.0f} push/s  ({elapsed:.2f}s, "
                f"+{rss_mib() - before:.0f} MiB RSS)"
            )
            await store.stopService()
            await client.stop()
        finally:
            server.terminate()
            server.wait(timeout=10)
