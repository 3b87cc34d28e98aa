"""DEP: the first fetch of 100,000 devices (pages of 1,000) from the fake DEP service (its
own process) into the store, then a sync of 1,000 changes; time and this process's peak
memory for each (VmHWM, reset before each phase). Target: 100,000 devices in 60 s or less,
memory flat (a page at a time, never the whole fleet)."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.fakes import fake_process
from mdmappliance.app.reactor import global_reactor
from mdmappliance.dep.client import DEPClient
from mdmappliance.dep.sync import DEPSync
from mdmappliance.dep.token import ServerToken
from mdmappliance.store import Store

DEVICES = 100_000
CHANGES = 1_000


def _memory(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS (Linux)


async def _phase(name: str, job: DEPSync, count: int) -> None:
    _reset_peak()
    before = _memory("VmRSS")
    started = time.perf_counter()
    report = await job.run_once()
    elapsed = time.perf_counter() - started
    done = report.fetched or report.modified + report.ignored
    assert not report.errors and report.alert is None, report
    print(
        f"{name:48} {count / elapsed:10.0f} devices/s  ({done} in {elapsed:.1f}s; RSS "
        f"{before:.0f} MiB before, peak {_memory('VmHWM'):.0f} MiB)"
    )


async def bench_dep(_: Any = None) -> None:
    reactor = global_reactor()
    with tempfile.TemporaryDirectory(prefix="mdmappliance-bench-dep-") as name:
        directory = Path(name)
        with fake_process("fakedep_server.py", str(directory), str(DEVICES)) as fake:
            started = fake.started
            store = Store(directory / "dep.db", reactor=reactor)
            store.startService()
            client = DEPClient.connect(
                ServerToken(**started["token"]),
                reactor,
                base_url=started["url"],
                ca_file=Path(started["ca_file"]),
                protocol_version=7,
            )

            async def factory() -> DEPClient:
                return client

            job = DEPSync(store, factory, reactor, page_size=1000)
            await _phase(f"dep: first fetch of {DEVICES:,} devices", job, DEVICES)
            fake.command(f"modify {CHANGES}")
            await _phase(f"dep: sync of {CHANGES:,} changes", job, CHANGES)
            count = await store.run(lambda tx: tx.dep.count())
            assert count == {"assigned": DEVICES}, count
            await client.close()
            await store.stopService()


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from bench.run import run

    run(bench_dep)
