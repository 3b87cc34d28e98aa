"""VPP: a first sync of 50,000 users and 100,000 licenses from the fake VPP service (its own
process, batches of 1,000) into the store, then an incremental sync of 1,000 changed users;
time and this process's peak memory (VmHWM, reset before each phase): flat in the number of
records, a batch at a time."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.dep import _memory, _reset_peak
from bench.fakes import fake_process
from mdmappliance.app.reactor import global_reactor
from mdmappliance.store import Store
from mdmappliance.vpp.client import LegacyVPPClient
from mdmappliance.vpp.sync import VPPSync
from mdmappliance.vpp.token import parse_stoken

USERS = 50_000
LICENSES = 100_000
CHANGES = 1_000


async def _phase(name: str, job: VPPSync, count: int) -> None:
    _reset_peak()
    before = _memory("VmRSS")
    started = time.perf_counter()
    report = await job.run_once()
    elapsed = time.perf_counter() - started
    assert not report.errors and report.alert is None, report
    print(
        f"{name:48} {count / elapsed:10.0f} records/s  ({report.users} users, "
        f"{report.licenses} licenses in {elapsed:.1f}s; RSS {before:.0f} MiB before, peak "
        f"{_memory('VmHWM'):.0f} MiB)"
    )


async def bench_vpp(_: Any = None) -> None:
    reactor = global_reactor()
    with tempfile.TemporaryDirectory(prefix="mdmappliance-bench-vpp-") as name:
        directory = Path(name)
        with fake_process("fakevpp_server.py", str(directory), str(USERS), str(LICENSES)) as fake:
            started = fake.started
            store = Store(directory / "vpp.db", reactor=reactor)
            store.startService()
            client = LegacyVPPClient.connect(
                parse_stoken(started["stoken"].encode()),
                reactor,
                service_config_url=started["url"],
                ca_file=Path(started["ca_file"]),
            )

            async def factory() -> LegacyVPPClient:
                return client

            job = VPPSync(store, factory, reactor)
            first = f"vpp: first sync, {USERS:,} users + {LICENSES:,} licenses"
            await _phase(first, job, USERS + LICENSES)
            fake.command(f"touch {CHANGES}")
            await _phase(f"vpp: incremental sync of {CHANGES:,} changes", job, CHANGES)
            count = await store.run(lambda tx: tx.vpp.count())
            assert count == {"users": USERS, "licenses": LICENSES}, count
            await client.close()
            await store.stopService()


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from bench.run import run

    run(bench_vpp)
