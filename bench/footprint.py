"""The server's memory with a large fleet: RSS with 100,000 enrolled devices, idle, and with
1,000 device connections open (each has made its TLS handshake with a client certificate and
polled once, then stays open on keep-alive). Target: at most 200 MB.

The fleet is written to the database before the server starts (the rows an enrollment has);
one simulated device is enrolled for real, and its identity makes every connection. Run:
``python bench/footprint.py [--devices N] [--connections C]``.
"""

from __future__ import annotations

import argparse
import plistlib
import sys
import tempfile
from pathlib import Path
from typing import Any

from twisted.internet import defer, endpoints, protocol, task

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.commands import _fleet
from bench.device_channel import start_server
from mdmappliance.app.reactor import global_reactor
from mdmappliance.config import load_config
from mdmappliance.simulator.device import DeviceTLSPolicy, SimulatedDevice
from mdmappliance.store import Store
from tests.support import free_port, make_installation

TARGET_MB = 200
BATCH = 50  # connections opened at a time


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


class Poller(protocol.Protocol):
    """Sends one Idle and keeps the connection once the (empty) reply is in."""

    def __init__(self, request: bytes) -> None:
        self.request = request
        self.received = b""
        self.answered: defer.Deferred[None] = defer.Deferred()

    def connectionMade(self) -> None:
        self.transport.write(self.request)  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if not self.answered.called and b"\r\n\r\n" in self.received:
            status = self.received.split(b"\r\n", 1)[0]
            if b" 200 " not in status:
                self.answered.errback(RuntimeError(status.decode(errors="replace")))
            else:
                self.answered.callback(None)


class _OneProtocol(protocol.Factory):
    def __init__(self, poller: Poller) -> None:
        self.poller = poller

    def buildProtocol(self, addr: Any) -> Poller:
        return self.poller


def idle_request(device: SimulatedDevice) -> bytes:
    body = plistlib.dumps({"UDID": device.udid, "Status": "Idle"})
    return (
        f"PUT {device.server_path} HTTP/1.1\r\nHost: localhost\r\n"
        f"Content-Type: application/x-apple-aspen-mdm\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def open_connections(
    device: SimulatedDevice, ca_cert: Path, port: int, count: int
) -> list[Poller]:
    reactor: Any = global_reactor()
    creator = DeviceTLSPolicy(ca_cert, device.identity).creatorForNetloc(b"localhost", port)
    endpoint = endpoints.wrapClientTLS(
        creator, endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port)
    )
    request = idle_request(device)
    opened: list[Poller] = []
    while len(opened) < count:
        batch = [Poller(request) for _ in range(min(BATCH, count - len(opened)))]
        await defer.gatherResults([endpoint.connect(_OneProtocol(p)) for p in batch])
        await defer.gatherResults([p.answered for p in batch])
        opened.extend(batch)
    return opened


async def bench_footprint(args: argparse.Namespace | None = None) -> None:
    args = args or parser().parse_args([])
    with tempfile.TemporaryDirectory(prefix="mdmappliance-bench-footprint-") as name:
        workdir = Path(name)
        device_port = free_port()
        config_path = make_installation(
            workdir / "appliance",
            port=free_port(),
            device_port=device_port,
            sections={
                "device": {
                    "max_connections": args.connections * 2,
                    "max_connections_per_address": args.connections * 2,
                }
            },
        )
        config = load_config(config_path)
        store = Store(config.store.path)
        store.open()
        store.transaction_now(_fleet, args.devices)
        store.close()
        command = [sys.executable, "-m", "mdmappliance", "serve", "--config", str(config_path)]
        process = start_server(command, device_port, workdir, "footprint")
        pollers: list[Poller] = []
        device = SimulatedDevice.issued(
            f"https://127.0.0.1:{device_port}", config.pki.ca_cert, config.pki.ca_key
        )
        try:
            await device.enroll()
            await device.close()
            idle = rss_mb(process.pid)
            pollers = await open_connections(
                device, config.pki.ca_cert, device_port, args.connections
            )
            opened = rss_mb(process.pid)
        finally:
            for poller in pollers:
                poller.transport.loseConnection()  # type: ignore[union-attr]
            process.terminate()
            process.wait(timeout=30)
    print(f"server memory: {args.devices:,} enrolled devices")
    print(f"  RSS, idle                          {idle:8.1f} MB")
    print(f"  RSS, {args.connections:,} device connections open {opened:8.1f} MB")
    print(f"  target: <= {TARGET_MB} MB")


def parser() -> argparse.ArgumentParser:
    options = argparse.ArgumentParser(description=__doc__)
    options.add_argument("--devices", type=int, default=100_000)
    options.add_argument("--connections", type=int, default=1_000)
    return options


if __name__ == "__main__":
    arguments = parser().parse_args()
    task.react(lambda reactor: defer.ensureDeferred(bench_footprint(arguments)))
