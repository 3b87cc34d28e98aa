"""APNs over real HTTP/2 and TLS against the local test server: the push format, stream
limits, GOAWAY, ping, and what each answer does to an enrollment."""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any, cast

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import PingReceived
from twisted.internet import reactor, task
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase, TestCase

from mdmappliance.apns.client import APNsClient, APNsProtocol, Push
from mdmappliance.apns.pusher import Pusher
from mdmappliance.app.reactor import global_reactor
from mdmappliance.core.timestamps import utc_timestamp
from mdmappliance.store import Store
from tests.apns_server import FakeAPNs, Reply
from tests.pushcerts import make_push_pki
from tests.support import query

TOKEN = bytes(range(32))


def a_push(n: int = 0, topic: str = "") -> Push:
    return Push(bytes([n % 256]) * 32, f"magic-{n}", topic, 10, 0, n)


class APNsCase(TestCase):
    timeout = 60

    def setUp(self) -> None:
        self.pki = make_push_pki(Path(self.mktemp()))
        self.server = FakeAPNs()

    def start(self, **server: Any) -> APNsClient:
        for name, value in server.items():
            setattr(self.server, name, value)
        port = self.server.listen(
            self.pki.gateway_cert, self.pki.gateway_key, self.pki.push_ca_file
        )
        self.addCleanup(self.server.port.stopListening)
        cert, key = self.pki.pem()
        client = APNsClient(
            reactor, f"https://localhost:{port}", cert, key, ca_file=self.pki.gateway_ca_file
        )
        client.start()
        self.addCleanup(client.stop)
        return client


class Client(APNsCase):
    async def test_push_is_exactly_what_apple_documents(self) -> None:
        client = self.start()
        answer = await client.push(Push(TOKEN, "PUSHMAGIC", self.pki.topic, 10, 1_900_000_000, 1))
        self.assertEqual(answer.status, 200)
        self.assertTrue(answer.apns_id)
        (request,) = self.server.received
        self.assertEqual(request.token, TOKEN.hex())
        self.assertEqual(json.loads(request.body), {"mdm": "PUSHMAGIC"})
        self.assertEqual(request.body, b'{"mdm":"PUSHMAGIC"}')
        h = request.headers
        self.assertEqual(
            (h[":method"], h[":path"], h["apns-topic"], h["apns-push-type"]),
            ("POST", f"/3/device/{TOKEN.hex()}", self.pki.topic, "mdm"),
        )
        self.assertEqual((h["apns-priority"], h["apns-expiration"]), ("10", "1900000000"))
        self.assertEqual(request.topic, self.pki.topic, "the push certificate was presented")

    async def test_wrong_topic_is_refused_by_the_server(self) -> None:
        client = self.start()
        answer = await client.push(Push(TOKEN, "M", "com.apple.mgmt.other", 10, 0, 1))
        self.assertEqual((answer.status, answer.reason), (400, "DeviceTokenNotForTopic"))

    async def test_max_concurrent_streams_is_honoured(self) -> None:
        client = self.start(max_concurrent_streams=2)
        answers = await gatherResults(
            [Deferred.fromCoroutine(client.push(a_push(n, self.pki.topic))) for n in range(30)]
        )
        self.assertEqual({a.status for a in answers}, {200})
        self.assertEqual(len(self.server.received), 30)
        self.assertLessEqual(self.server.most_concurrent, 2)
        self.assertEqual(self.server.connections, 1, "one connection carries them all")

    async def test_goaway_mid_batch_retries_unanswered_streams_on_a_new_connection(self) -> None:
        client = self.start(goaway_after=4, max_concurrent_streams=10)
        answers = await gatherResults(
            [Deferred.fromCoroutine(client.push(a_push(n, self.pki.topic))) for n in range(10)]
        )
        self.assertEqual([a.status for a in answers], [200] * 10)
        self.assertGreaterEqual(self.server.connections, 2)
        answered_tokens = sorted({r.token for r in self.server.received})
        self.assertEqual(len(answered_tokens), 10, "every push arrived")
        first = [r for r in self.server.received if r.connection == 1]
        self.assertEqual(len(first), 4, "the first connection took no more after GOAWAY")

    async def test_answers_with_reasons_and_timestamps(self) -> None:
        replies = {
            0: Reply(410, "Unregistered", 1_700_000_000_000),
            1: Reply(400, "BadDeviceToken"),
            2: Reply(403, "BadCertificate"),
            3: Reply(429, "TooManyRequests"),
            4: Reply(500, "InternalServerError"),
        }
        client = self.start(answer=lambda r: replies[int(r.token[:2], 16)])
        got = [await client.push(a_push(n, self.pki.topic)) for n in range(5)]
        self.assertEqual(
            [(a.status, a.reason, a.timestamp_ms) for a in got],
            [
                (410, "Unregistered", 1_700_000_000_000),
                (400, "BadDeviceToken", None),
                (403, "BadCertificate", None),
                (429, "TooManyRequests", None),
                (500, "InternalServerError", None),
            ],
        )


class Keepalive(SynchronousTestCase):
    """An idle connection is pinged; an unanswered ping drops it (task.Clock, no socket)."""

    def test_unanswered_ping_drops_the_connection(self) -> None:
        clock = task.Clock()
        protocol = APNsProtocol("localhost", clock, ping_interval=60, ping_timeout=20)
        transport = StringTransport()
        protocol.makeConnection(transport)
        server = H2Connection(H2Configuration(client_side=False))
        server.initiate_connection()
        server.receive_data(transport.value())
        transport.clear()
        protocol.dataReceived(server.data_to_send())
        self.assertTrue(protocol.settled)
        server.receive_data(transport.value())
        transport.clear()
        clock.advance(59)
        self.assertEqual(transport.value(), b"", "no ping while recently active")
        clock.advance(2)
        events = server.receive_data(transport.value())
        self.assertTrue([e for e in events if isinstance(e, PingReceived)], "idle: ping sent")
        protocol.dataReceived(server.data_to_send())  # the PING ACK
        clock.advance(25)
        self.assertFalse(transport.disconnecting, "the ping was answered")
        transport.clear()
        clock.advance(60)
        self.assertTrue(server.receive_data(transport.value()))
        clock.advance(21)
        self.assertTrue(transport.disconnecting, "no answer within ping_timeout: dropped")


def add_enrollment(tx: Any, udid: str, token: bytes, updated: str) -> int:
    conn = tx.conn
    now = utc_timestamp()
    conn.execute(
        "INSERT INTO devices (udid, first_seen, updated_at) VALUES (?, ?, ?)", (udid, now, now)
    )
    cursor = conn.execute(
        "INSERT INTO enrollments (udid, topic, state, push_token, push_magic, token_valid, "
        "token_updated_at, created_at, updated_at) VALUES (?, 'com.apple.mgmt.t', 'enrolled', "
        "?, ?, 1, ?, ?, ?)",
        (udid, token, f"magic-{udid}", updated, now, now),
    )
    return int(cursor.lastrowid)


class Outcomes(APNsCase):
    """Each answer of the provider API, and what it does to the enrollment."""

    def setUp(self) -> None:
        super().setUp()
        self.db = Path(self.mktemp())
        self.store = Store(self.db, reactor=global_reactor())
        self.store.startService()
        self.addCleanup(self.store.stopService)

    async def pusher(self, answer: Any, **kw: Any) -> Pusher:
        client = self.start(answer=answer)
        kw.setdefault("retry_base_seconds", 0.01)
        pusher = Pusher(self.store, client, reactor, self.pki.topic, coalesce_seconds=0, **kw)
        self.addCleanup(pusher.stop)
        return pusher

    async def enrollments(self, count: int, updated: str | None = None) -> list[int]:
        updated = updated or utc_timestamp()
        return [
            await self.store.transaction(add_enrollment, f"UDID-{n:08d}", bytes([n]) * 32, updated)
            for n in range(count)
        ]

    def state(self, enrollment_id: int) -> tuple[Any, ...]:
        ((row),) = query(
            self.db,
            "SELECT push_status, push_reason, token_valid, apns_id IS NOT NULL FROM enrollments "
            "WHERE id = ?",
            enrollment_id,
        )
        return tuple(row)

    async def test_200_records_the_apns_id(self) -> None:
        (one,) = await self.enrollments(1)
        pusher = await self.pusher(lambda r: Reply(200))
        pusher.request([one])
        await pusher.flush()
        self.assertEqual(self.state(one), ("sent", None, 1, 1))

    async def test_410_newer_than_the_token_invalidates_it_and_stops_pushes(self) -> None:
        (one,) = await self.enrollments(1, updated="2026-01-01T00:00:00.000Z")
        later = int(datetime.datetime(2026, 6, 1, tzinfo=datetime.UTC).timestamp() * 1000)
        pusher = await self.pusher(lambda r: Reply(410, "Unregistered", later))
        pusher.request([one])
        await pusher.flush()
        self.assertEqual(self.state(one), ("unregistered", "Unregistered", 0, 1))
        self.assertEqual(
            query(self.db, "SELECT kind FROM events WHERE kind LIKE 'push.%'"),
            [("push.unregistered",)],
        )
        pusher.request([one])
        await pusher.flush()
        self.assertEqual(len(self.server.received), 1, "no push to an invalid token")

    async def test_410_older_than_the_last_token_update_keeps_the_token(self) -> None:
        (one,) = await self.enrollments(1, updated="2026-06-01T00:00:00.000Z")
        earlier = int(datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC).timestamp() * 1000)
        pusher = await self.pusher(lambda r: Reply(410, "Unregistered", earlier))
        pusher.request([one])
        await pusher.flush()
        self.assertEqual(self.state(one), ("stale_unregistered", "Unregistered", 1, 1))

    async def test_400_bad_token_invalidates_without_retry(self) -> None:
        first, second = await self.enrollments(2)
        reasons = {first: "BadDeviceToken", second: "DeviceTokenNotForTopic"}
        pusher = await self.pusher(
            lambda r: Reply(400, reasons[first if r.token[:2] == "00" else second])
        )
        pusher.request([first, second])
        await pusher.flush()
        self.assertEqual(self.state(first), ("bad_token", "BadDeviceToken", 0, 1))
        self.assertEqual(self.state(second), ("bad_token", "DeviceTokenNotForTopic", 0, 1))
        await task.deferLater(reactor, 0.1, lambda: None)
        self.assertEqual(len(self.server.received), 2, "not retried")

    async def test_403_stops_every_push(self) -> None:
        ids = await self.enrollments(3)
        pusher = await self.pusher(lambda r: Reply(403, "BadCertificate"), chunk=1)
        pusher.request(ids)
        await pusher.flush()
        self.assertIn("403 BadCertificate", pusher.blocked or "")
        self.assertEqual(len(self.server.received), 1, "nothing more after the first 403")
        self.assertEqual(self.state(ids[0])[:2], ("blocked", "403 BadCertificate"))
        self.assertEqual(self.state(ids[0])[2], 1, "the device's token is not at fault")
        pusher.request(ids)
        await pusher.flush()
        self.assertEqual(len(self.server.received), 1)

    async def test_429_and_5xx_are_retried_with_backoff_then_succeed(self) -> None:
        (one,) = await self.enrollments(1)
        script = [Reply(429, "TooManyRequests"), Reply(503, "ServiceUnavailable"), Reply(200)]
        pusher = await self.pusher(lambda r: script.pop(0))
        pusher.request([one])
        await pusher.flush()
        self.assertEqual(self.state(one)[0], "retrying")
        for _ in range(100):
            if self.state(one)[0] == "sent":
                break
            await task.deferLater(reactor, 0.02, lambda: None)
        self.assertEqual(self.state(one)[0], "sent")
        self.assertEqual(len(self.server.received), 3)

    async def test_retries_are_bounded(self) -> None:
        (one,) = await self.enrollments(1)
        pusher = await self.pusher(lambda r: Reply(500, "InternalServerError"), retries=2)
        pusher.request([one])
        for _ in range(200):
            await pusher.flush()
            if self.state(one)[0] == "failed":
                break
            await task.deferLater(reactor, 0.02, lambda: None)
        self.assertEqual(self.state(one)[:3], ("failed", "500 InternalServerError", 1))
        self.assertEqual(len(self.server.received), 3, "the first try and two retries")

    async def test_only_enrollments_with_a_valid_token_are_pushed(self) -> None:
        ids = await self.enrollments(3)
        await self.store.transaction(
            lambda tx: tx.conn.execute(
                "UPDATE enrollments SET token_valid = 0 WHERE id = ?", (ids[1],)
            )
        )
        await self.store.transaction(
            lambda tx: tx.conn.execute(
                "UPDATE enrollments SET state = 'authenticated' WHERE id = ?", (ids[2],)
            )
        )
        pusher = await self.pusher(lambda r: Reply(200))
        pusher.request(ids)
        await pusher.flush()
        self.assertEqual(len(self.server.received), 1)

    async def test_coalescing_sends_one_push_per_window(self) -> None:
        (one,) = await self.enrollments(1)
        client = self.start()
        clock = task.Clock()
        pusher = Pusher(self.store, client, clock, self.pki.topic, coalesce_seconds=2)
        for _ in range(5):
            pusher.request([one])
        self.assertEqual(pusher.pending, {one: 0})
        await pusher.flush()
        self.assertEqual(len(self.server.received), 1)
        pusher.stop()

    async def test_push_all_pages_through_every_enrollment(self) -> None:
        ids = await self.enrollments(25)
        pusher = await self.pusher(lambda r: Reply(200), chunk=10)
        self.assertEqual(await pusher.push_all(), 25)
        self.assertEqual(len({r.token for r in self.server.received}), 25)
        self.assertEqual({self.state(i)[0] for i in ids}, {"sent"})


class ExpiryWarnings(SynchronousTestCase):
    """From 30 days before expiry, the log warns every day; after it, loudly."""

    def test_daily_warning_then_critical(self) -> None:
        from twisted.logger import ILogObserver, LogLevel, globalLogPublisher

        from mdmappliance import pki
        from mdmappliance.apns.pusher import PushService
        from mdmappliance.pki.pushcert import PushCertificate
        from tests.pushcerts import push_certificate

        pair = push_certificate(pki.create_ca("Test Apple Push CA"), days=30.5)
        certificate = PushCertificate(pair.certificate, "com.apple.mgmt.External.x")
        clock = task.Clock()
        clock.advance(time_now())
        seen: list[tuple[Any, str]] = []

        def observe(event: dict[str, Any]) -> None:
            if "push certificate" in str(event.get("log_format", "")):
                seen.append((event["log_level"], event["log_format"]))

        observer = cast(ILogObserver, observe)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)

        class Connection:
            def start(self) -> None: ...

            async def stop(self) -> None: ...

        pusher = Pusher(None, Connection(), clock, certificate.topic)  # type: ignore[arg-type]
        service = PushService(Connection(), pusher, certificate, clock)
        service.startService()
        self.assertEqual(seen, [], "30.5 days left: quiet")
        clock.advance(86400)
        self.assertEqual([level for level, _ in seen], [LogLevel.warn])
        clock.advance(86400 * 31)
        self.assertEqual(seen[-1][0], LogLevel.critical)
        self.assertIn("EXPIRED", seen[-1][1])
        service.stopService()


def time_now() -> float:
    import time

    return time.time()
