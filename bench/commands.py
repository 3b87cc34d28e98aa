"""Queueing one command for many enrollments through the catalog (``send_command``).

Target: 100,000 targets in at most 1 s, checked once, written in one transaction. The fleet
is mixed as a real one is (iPhones on 12 iOS versions, Macs on 6 macOS versions), so the
command is fitted once per kind of target: platform, OS version and the rest.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from mdmappliance.app.reactor import global_reactor
from mdmappliance.commands.send import send_command
from mdmappliance.core.timestamps import utc_timestamp
from mdmappliance.store import Store, Tx

SIZES = (10_000, 100_000)
COMMANDS: tuple[dict[str, Any], ...] = (
    {"RequestType": "DeviceInformation", "Queries": ["SerialNumber", "OSVersion", "WiFiMAC"]},
    {"RequestType": "DeviceInformation"},  # Apple's 85 queries, fitted per kind
)
#: Eight iPhones to each Mac.
FLEET_OS = [
    *[("ios", f"{major}.{minor}") for major in (16, 17, 18) for minor in range(4)] * 4,
    *(("macos", version) for version in ("12.7", "13.6", "14.4", "14.7", "15.0", "15.1")),
]


def _fleet(tx: Tx, count: int) -> list[int]:
    conn = tx.conn
    now = utc_timestamp()
    udids = [f"BENCH-{n:012d}" for n in range(count)]
    conn.executemany(
        "INSERT INTO devices (udid, first_seen, updated_at, platform, os_version) "
        "VALUES (?, ?, ?, ?, ?)",
        [(udid, now, now, *FLEET_OS[n % len(FLEET_OS)]) for n, udid in enumerate(udids)],
    )
    conn.executemany(
        "INSERT INTO enrollments (udid, topic, state, created_at, updated_at, access_rights) "
        "VALUES (?, 'com.apple.mgmt.bench', 'enrolled', ?, ?, 8191)",
        [(udid, now, now) for udid in udids],
    )
    return [row[0] for row in conn.execute("SELECT id FROM enrollments ORDER BY id")]


async def bench_commands(directory: Path) -> None:
    for size in SIZES:
        for n, command in enumerate(COMMANDS):
            store = Store(directory / f"commands-{size}-{n}.db", reactor=global_reactor())
            store.open()
            store.startService()
            ids = await store.transaction(_fleet, size)
            started = time.perf_counter()
            result = await store.transaction(send_command, ids, command, actor="bench")
            elapsed = time.perf_counter() - started
            await store.stopService()
            assert len(result.queued) == size
            what = "named queries" if "Queries" in command else "default queries"
            print(
                f"{f'commands: DeviceInformation ({what}) to {size}':48} "
                f"{size / elapsed:10.0f} cmd/s  ({size} in {elapsed:.2f}s, one transaction)"
            )
