"""SCEP: issuances per second (PKCSReq -> CertRep), and enrollments per second end to end.

(a) issuances: the SCEP service and a real store in this process, REQUESTS PKCSReqs made
    beforehand (each with its own recorded challenge), CONCURRENCY in flight: signature,
    envelope, CSR, the certificate, the challenge used up and the identity recorded in one
    durable transaction, the CertRep signed and enveloped. For an RSA-2048 CA (the target:
    at least 100/s) and the RSA-3072 CA `init` makes. Process CPU per issuance beside it.
(b) enrollments: `mdmappliance serve` as its own process; DEVICES simulated devices, their
    RSA keys made beforehand, each: GET the link -> the signed profile -> GetCACert ->
    PKCSReq -> CertRep -> Authenticate -> TokenUpdate over TLS (a new connection per step,
    as a device makes), ENROLL_CONCURRENCY at once; server CPU per enrollment.
"""

from __future__ import annotations

import datetime
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from twisted.internet import defer

from bench.device_channel import cpu_seconds, start_server
from mdmappliance import pki
from mdmappliance.app.reactor import global_reactor
from mdmappliance.config import load_config
from mdmappliance.enrollment.links import create_link
from mdmappliance.scep import client as scep_client
from mdmappliance.scep.challenges import record_challenge
from mdmappliance.scep.csr import KeyPolicy
from mdmappliance.scep.service import SCEPService
from mdmappliance.simulator.device import SimulatedDevice, fetch_profile
from mdmappliance.store import Store, Tx, in_transaction
from tests.support import make_installation

REQUESTS = 400
CONCURRENCY = 8
KEYS = 16
DEVICES = 60
ENROLL_CONCURRENCY = 8


def _requests(ca: pki.IssuedPair, count: int) -> list[tuple[bytes, str]]:
    """PKCSReqs (DER) and the challenge each carries; KEYS device keys, shared round-robin
    (each request has its own signer certificate, so each is a new transaction)."""
    keys = [pki.new_rsa_key(2048) for _ in range(KEYS)]
    made = []
    for n in range(count):
        key = keys[n % KEYS]
        subject = scep_client.common_name_subject(f"bench device {n}")
        challenge = f"bench-challenge-{n:06d}-padding-to-32"
        csr = scep_client.make_csr(key, subject, challenge)
        outgoing = scep_client.request_message(
            csr, signer=scep_client.self_signed(key, subject), key=key, ca=ca.certificate
        )
        made.append((outgoing.der, challenge))
    return made


async def bench_issuances(directory: Path, bits: int) -> None:
    reactor = global_reactor()
    ca = pki.create_ca(f"bench CA {bits}", bits=bits)
    store = Store(directory / f"scep-{bits}.db", reactor=reactor)
    store.startService()
    requests = _requests(ca, REQUESTS)
    expires = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)

    def challenges(tx: Tx) -> None:
        for n, (_, challenge) in enumerate(requests):
            subject = scep_client.common_name_subject(f"bench device {n}")
            record_challenge(tx, challenge, subject, expires)

    await store.transaction(challenges)
    service = SCEPService(
        store=store, ca=ca, policy=KeyPolicy(), lifetime=datetime.timedelta(days=365)
    )
    queue = list(reversed(requests))

    async def worker() -> None:
        while queue:
            der, _ = queue.pop()
            reply = await service.pki_operation(der)
            assert len(reply) > 1000, "a CertRep SUCCESS carries the certificate"

    cpu = time.process_time()
    started = time.perf_counter()
    await defer.gatherResults([defer.ensureDeferred(worker()) for _ in range(CONCURRENCY)])
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu
    issued = await store.run(
        lambda tx: tx.conn.execute("SELECT count(*) FROM issued_identities").fetchone()[0]
    )
    await store.stopService()
    assert issued == REQUESTS, issued
    print(
        f"{'scep: PKCSReq -> CertRep, RSA-' + str(bits) + ' CA':48} "
        f"{REQUESTS / elapsed:10.0f} issuances/s  ({REQUESTS} in {elapsed:.2f}s, "
        f"{cpu / REQUESTS * 1000:.1f} ms CPU each, {CONCURRENCY} in flight)"
    )


def _links(config_path: Path, count: int) -> list[str]:
    config = load_config(config_path)
    conn = sqlite3.connect(config.store.path, isolation_level=None, timeout=30)
    try:
        tokens = []
        for _ in range(count):
            token, _ = in_transaction(Tx(conn), create_link, datetime.timedelta(hours=1))
            tokens.append(config.enrollment_url(token))
        return tokens
    finally:
        conn.close()


async def bench_enrollments(directory: Path) -> None:
    config_path = make_installation(directory / "e2e")
    config = load_config(config_path)
    links = _links(config_path, DEVICES)
    keys = [pki.new_rsa_key(2048) for _ in range(DEVICES)]
    process = start_server(
        [sys.executable, "-m", "mdmappliance", "serve", "--config", str(config_path)],
        config.enrollment.port,
        directory,
        "scep-e2e",
    )
    try:
        queue = list(zip(links, keys, strict=True))
        devices: list[SimulatedDevice] = []

        async def worker() -> None:
            while queue:
                url, key = queue.pop()
                received = await fetch_profile(url, config.pki.ca_cert, key=key)
                device = SimulatedDevice(ca_cert=config.pki.ca_cert, **received.device_arguments())
                devices.append(device)
                await device.enroll()
                await device.close()

        cpu = cpu_seconds(process.pid)
        started = time.perf_counter()
        await defer.gatherResults(
            [defer.ensureDeferred(worker()) for _ in range(ENROLL_CONCURRENCY)]
        )
        elapsed = time.perf_counter() - started
        cpu = cpu_seconds(process.pid) - cpu
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert len(devices) == DEVICES
    print(
        f"{'scep: enrollments end to end (link..TokenUpdate)':48} "
        f"{DEVICES / elapsed:10.1f} enrollments/s  ({DEVICES} in {elapsed:.2f}s, "
        f"server CPU {cpu / DEVICES * 1000:.1f} ms each, {ENROLL_CONCURRENCY} at once)"
    )


async def bench_scep(_: Any = None) -> None:
    with tempfile.TemporaryDirectory(prefix="mdmappliance-bench-scep-") as name:
        directory = Path(name)
        for bits in (2048, 3072):
            await bench_issuances(directory, bits)
        await bench_enrollments(directory)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from bench.run import run

    run(bench_scep)
