"""VPP: a first sync of 50,000 users and 100,000 licenses from the fake VPP service (its own
process, batches of 1,000) into the store, then an incremental sync of 1,000 changed users;
time and this process's peak memory (VmHWM, reset before each phase): flat in the number of
records, a batch at a time."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.dep import _memory, _reset_peak
from bench.device_channel import REPO
from mdmappliance.app.reactor import global_reactor
from mdmappliance.store import Store
from mdmappliance.vpp.client import LegacyVPPClient
from mdmappliance.vpp.sync import VPPSync
from mdmappliance.vpp.token import parse_stoken
from tests.support import subprocess_env

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
        server = subprocess.Popen(
            [sys.executable, str(REPO / "bench" / "fakevpp_server.py"), str(directory),
             str(USERS), str(LICENSES)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=subprocess_env(),
        )  # fmt: skip
        try:
            assert server.stdout is not None and server.stdin is not None
            started = json.loads(server.stdout.readline())
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
            await _phase(
                f"vpp: first sync, {USERS:,} users + {LICENSES:,} licenses", job, USERS + LICENSES
            )
            server.stdin.write(f"touch {CHANGES}\n".encode())
            server.stdin.flush()
            assert server.stdout.readline().strip() == b"ok"
            await _phase(f"vpp: incremental sync of {CHANGES:,} changes", job, CHANGES)
            count = await store.run(lambda tx: tx.vpp.count())
            assert count == {"users": USERS, "licenses": LICENSES}, count
            await client.close()
            await store.stopService()
        finally:
            if server.stdin is not None:
                server.stdin.write(b"quit\n")
                server.stdin.close()
            server.wait(timeout=60)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from bench.run import run

    run(bench_vpp)
