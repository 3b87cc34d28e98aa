"""Instructions the server executes per device message, counted by callgrind (``make
bench-instructions``): unlike CPU time on a shared 2-core machine, the count repeats within a
fraction of a percent from run to run, so a change of a few percent shows.

The server (``mdmappliance serve``; ``bench/servers.py endpoint`` with ``--routes-only``,
the device routes alone; ``bench/servers.py unrouted`` with ``--without-klein``, the same
without Klein's render) runs under ``valgrind --tool=callgrind`` with collection off; 10
enrolled devices warm up, then collection is switched on for a keep-alive phase of Idle ->
command, Acknowledged -> next command cycles, and off again. Prints instructions per
message, for the reactor's thread and the others (the store's).

Valgrind counts each byte a ``rep stosb`` clears as an instruction, so SQLite zeroing its
fresh pages weighs ~18% of the store thread's count (nanoseconds of real time); and Python's
instructions are not all alike in time (Klein's share of the count is ~11%, of the CPU time
~20%). Compare counts with counts, not with CPU time.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from twisted.internet import defer, reactor

from bench.device_channel import (
    DEVICES,
    Timed,
    cycle,
    installation,
    queue_commands,
    run_devices,
    start_server,
)
from mdmappliance.simulator.device import SimulatedDevice

CYCLES = 20
REPO = Path(__file__).resolve().parent.parent


def control(pid: int, *arguments: str) -> None:
    """callgrind_control: switch collection on or off, or dump the counts."""
    subprocess.run(["callgrind_control", *arguments, str(pid)], check=True, capture_output=True)


async def measure(routes_only: str) -> None:
    with tempfile.TemporaryDirectory(prefix="mdmappliance-bench-instructions-") as name:
        workdir = Path(name)
        config, port, devices = installation(workdir)
        serve = [sys.executable, "-m", "mdmappliance", "serve", "--config", str(config.path)]
        enrolling = start_server(serve, port, workdir, "enroll")
        for device in devices:
            await device.enroll()
            await device.close()
        enrolling.terminate()
        enrolling.wait(timeout=30)
        queue_commands(config, devices, 2 * CYCLES + 10)
        server = (
            [sys.executable, str(REPO / "bench" / "servers.py"), routes_only, str(config.path)]
            if routes_only
            else serve
        )
        valgrind = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
                    "--separate-threads=yes",
                    f"--callgrind-out-file={workdir / 'callgrind.out'}"]  # fmt: skip
        process = start_server([*valgrind, *server], port, workdir, "valgrind", timeout=300)
        try:
            timed = Timed()

            async def once(device: SimulatedDevice) -> None:
                await cycle(device, timed, False)

            await run_devices(devices, once)  # warm: TLS sessions, imports, caches
            control(process.pid, "-i", "on")

            async def keepalive(device: SimulatedDevice) -> None:
                for _ in range(CYCLES):
                    await cycle(device, timed, False)

            started = time.monotonic()
            await run_devices(devices, keepalive)
            control(process.pid, "-i", "off")
            control(process.pid, "-d")
            seconds = time.monotonic() - started
        finally:
            for device in devices:
                await device.close()
            process.terminate()
            process.wait(timeout=300)
        # One file per thread of the dump taken above (callgrind.out.1-01 is the reactor's
        # thread); the files written at exit count nothing (collection is off by then).
        by_thread = {
            dump.name.rsplit("-", 1)[1]: int(line.split()[1])
            for dump in workdir.glob("callgrind.out.1-*")
            for line in dump.read_text().splitlines()
            if line.startswith("totals:")
        }
        if "01" not in by_thread:
            raise RuntimeError(f"callgrind wrote no per-thread dump in {workdir}")
        messages = DEVICES * CYCLES * 2
        reactor_thread = by_thread.pop("01")
        others = sum(by_thread.values())
        label = {
            "endpoint": "device routes alone",
            "unrouted": "device routes without Klein",
        }.get(routes_only, "mdmappliance serve")
        print(
            f"device channel instructions, {label}: "
            f"{(reactor_thread + others) / messages / 1e6:.3f} M per keep-alive message "
            f"(reactor thread {reactor_thread / messages / 1e6:.3f} M, other threads "
            f"{others / messages / 1e6:.3f} M; {messages} messages, {seconds:.0f}s under "
            "callgrind)"
        )


def main() -> None:
    if shutil.which("valgrind") is None:
        print("bench-instructions needs valgrind (apt-get install valgrind)")
        return
    routes_only = (
        "endpoint"
        if "--routes-only" in sys.argv
        else "unrouted"
        if "--without-klein" in sys.argv
        else ""
    )
    done = defer.ensureDeferred(measure(routes_only))
    done.addErrback(lambda f: print(f.getTraceback()))
    done.addBoth(lambda _: reactor.stop())
    reactor.run()


if __name__ == "__main__":
    main()
