"""Queueing one command for many enrollments through the catalog (``send_command``).

Target: 100,000 targets in at most 1 s, checked once, written in one transaction.
"""

from __future__ import annotations

import time
from pathlib import Path

from mdmappliance.app.reactor import global_reactor
from mdmappliance.commands.send import send_command
from mdmappliance.core.timestamps import utc_timestamp
from mdmappliance.store import Store, Tx

SIZES = (10_000, 100_000)
COMMAND = {"RequestType": "DeviceInformation", "Queries": ["SerialNumber", "OSVersion", "WiFiMAC"]}


def _fleet(tx: Tx, count: int) -> list[int]:
    conn = tx.conn
    now = utc_timestamp()
    udids = [f"BENCH-{n:012d}" for n in range(count)]
    conn.executemany(
        "INSERT INTO devices (udid, first_seen, updated_at, platform) VALUES (?, ?, ?, 'ios')",
        [(udid, now, now) for udid in udids],
    )
    conn.executemany(
        "INSERT INTO enrollments (udid, topic, state, created_at, updated_at, access_rights) "
        "VALUES (?, 'com.apple.mgmt.bench', 'enrolled', ?, ?, 8191)",
        [(udid, now, now) for udid in udids],
    )
    return [row[0] for row in conn.execute("SELECT id FROM enrollments ORDER BY id")]


async def bench_commands(directory: Path) -> None:
    for size in SIZES:
        store = Store(directory / f"commands-{size}.db", reactor=global_reactor())
        store.open()
        store.startService()
        ids = await store.transaction(_fleet, size)
        started = time.perf_counter()
        result = await store.transaction(send_command, ids, COMMAND, actor="bench")
        elapsed = time.perf_counter() - started
        await store.stopService()
        assert len(result.queued) == size
        print(
            f"{f'commands: DeviceInformation to {size} enrollments':48} "
            f"{size / elapsed:10.0f} cmd/s  ({size} in {elapsed:.2f}s, one transaction)"
        )
