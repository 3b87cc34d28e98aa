"""Graceful stop of a listener over real loopback sockets: drain, then close what is left."""

from __future__ import annotations

from typing import Any, cast

import treq
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.error import ConnectionDone, ConnectionRefusedError
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.internet.task import Clock, deferLater
from twisted.logger import ILogObserver, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from twisted.web.client import HTTPConnectionPool, ResponseNeverReceived
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from mdmappliance.admin.metrics import Metrics
from mdmappliance.app.graceful import DrainingSite, ListenError, ListenerService
from mdmappliance.app.reactor import global_reactor

reactor = global_reactor()


class Slow(Resource):
    """Answers only when the test says so."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.arrived: Deferred[Request] = Deferred()
        self.pending: list[Request] = []

    def render_GET(self, request: Request) -> Any:
        if request.path == b"/fast":
            return b"fast"
        self.pending.append(request)
        self.arrived.callback(request)
        return NOT_DONE_YET


class Recording(Protocol):
    """A raw client that keeps what it is sent and says when the connection is gone."""

    def __init__(self) -> None:
        self.received = b""
        self.lost: Deferred[None] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lost.callback(None)


class Drain(TestCase):
    def setUp(self) -> None:
        self.resource = Slow()
        self.clock = Clock()
        self.listener = ListenerService(
            "test",
            TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1"),
            DrainingSite(self.resource),
            clock=self.clock,
            grace=5.0,
            describe="127.0.0.1:0",
        )
        self.listener.startService()
        self.port = self.listener.bound_port
        self.pool = HTTPConnectionPool(reactor, persistent=True)
        self.addCleanup(self.pool.closeCachedConnections)
        self.addCleanup(lambda: self.listener.stopService() if self.listener.running else None)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def refused(self) -> None:
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.port)
        with self.assertRaises(ConnectionRefusedError):
            await endpoint.connect(Factory.forProtocol(Protocol))

    async def test_in_flight_request_finishes(self) -> None:
        response_d = treq.get(self.url("/slow"), pool=self.pool)
        request = await self.resource.arrived
        stopped = self.listener.stopService()
        fired: list[object] = []
        stopped.addCallback(fired.append)
        await self.refused()
        self.assertEqual(fired, [], "stop waits for the request in flight")
        request.write(b"done")
        request.finish()
        response = await response_d
        self.assertEqual(response.code, 200)
        self.assertEqual(await response.content(), b"done")
        self.assertEqual(
            request.responseHeaders.getRawHeaders(b"connection"),
            [b"close"],
            "the client is told this connection ends with the response",
        )
        await stopped
        self.assertFalse(self.clock.getDelayedCalls(), "the grace timer was cancelled")

    async def test_grace_is_bounded(self) -> None:
        response_d = treq.get(self.url("/slow"), pool=self.pool)
        await self.resource.arrived
        stopped = self.listener.stopService()
        fired: list[object] = []
        stopped.addCallback(fired.append)
        self.clock.advance(4.9)
        self.assertEqual(fired, [])
        self.clock.advance(0.2)
        await stopped
        with self.assertRaises(ResponseNeverReceived):
            await response_d

    async def test_idle_keepalive_connections_are_closed(self) -> None:
        response = await treq.get(self.url("/fast"), pool=self.pool)
        self.assertEqual(await response.content(), b"fast")
        self.assertEqual(len(self.listener.connections.protocols), 1, "kept alive")
        closed: Deferred[None] = Deferred()
        protocol = next(iter(self.listener.connections.protocols))
        lost = protocol.connectionLost

        def notify(reason: Any) -> None:
            lost(reason)
            closed.callback(None)

        protocol.connectionLost = notify
        await self.listener.stopService()
        await closed
        self.assertEqual(len(self.listener.connections.protocols), 0)

    async def test_a_request_whose_client_hangs_up_is_no_longer_in_flight(self) -> None:
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.port)
        client = cast(Protocol, await endpoint.connect(Factory.forProtocol(Protocol)))
        assert client.transport is not None
        client.transport.write(b"GET /slow HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        request = await self.resource.arrived
        self.assertEqual(self.listener.site.in_flight, {request})
        lost = request.notifyFinish()
        client.transport.loseConnection()
        with self.assertRaises(ConnectionDone):
            await lost
        await deferLater(reactor, 0, lambda: None)
        self.assertEqual(self.listener.site.in_flight, set())
        await self.listener.stopService()
        self.assertFalse(self.clock.getDelayedCalls(), "nothing was left to wait for")

    async def test_is_secure_is_asked_once_and_follows_set_host(self) -> None:
        response_d = treq.get(self.url("/slow"), pool=self.pool)
        request = await self.resource.arrived
        asked: list[bool] = []
        channel_answer = request.channel.isSecure

        def counted() -> bool:
            asked.append(channel_answer())
            return asked[-1]

        request.channel.isSecure = counted  # type: ignore[method-assign]
        self.assertFalse(request.isSecure(), "plain TCP")
        self.assertFalse(request.isSecure())
        self.assertEqual(asked, [False], "the transport was asked once")
        request.setHost(b"mdm.example", 443, ssl=True)
        self.assertTrue(request.isSecure(), "setHost(ssl=True) is heard after a first answer")
        request.finish()
        await (await response_d).content()

    async def test_pipelined_and_refused_requests_leave_nothing_in_flight(self) -> None:
        site = self.listener.site
        site.max_body_bytes = 10
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.port)
        pipelined = b"GET /fast HTTP/1.1\r\nHost: h\r\n\r\n" * 3
        client = cast(Recording, await endpoint.connect(Factory.forProtocol(Recording)))
        assert client.transport is not None
        client.transport.write(pipelined)
        for _ in range(500):  # bounded: three answers on loopback come within milliseconds
            if client.received.count(b"fast") == 3:
                break
            await deferLater(reactor, 0.01, lambda: None)
        self.assertEqual(client.received.count(b"fast"), 3)
        self.assertEqual(site.in_flight, set(), "the pipelined requests")
        client.transport.loseConnection()
        await client.lost
        for too_large in (
            b"POST /fast HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n01234567890",
            b"POST /fast HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"b\r\n01234567890\r\n0\r\n\r\n",  # refused as the body arrives
        ):
            client = cast(Recording, await endpoint.connect(Factory.forProtocol(Recording)))
            assert client.transport is not None
            client.transport.write(too_large)
            await client.lost  # the server answers 413 and hangs up
            self.assertIn(b"HTTP/1.1 413", client.received)
            await deferLater(reactor, 0, lambda: None)
            self.assertEqual(site.in_flight, set(), too_large[:60])

    async def test_a_site_without_an_access_level_logs_no_access_and_still_counts(
        self,
    ) -> None:
        metrics = Metrics()
        quiet = ListenerService(
            "quiet",
            TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1"),
            DrainingSite(
                self.resource, access_log_level=None, metrics=metrics, metrics_name="quiet"
            ),
            clock=self.clock,
            grace=1.0,
            describe="127.0.0.1:0",
        )
        quiet.startService()
        self.addCleanup(quiet.stopService)
        seen: list[dict[str, Any]] = []
        observer = cast(ILogObserver, seen.append)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        response = await treq.get(f"http://127.0.0.1:{quiet.bound_port}/fast", pool=self.pool)
        self.assertEqual(await response.content(), b"fast")
        self.assertEqual([e for e in seen if e.get("log_namespace") == "mdmappliance.access"], [])
        counted = metrics.registry.get_sample_value(
            "mdmappliance_http_requests_total",
            {"listener": "quiet", "endpoint": "other", "status": "200"},
        )
        self.assertEqual(counted, 1.0)

    def test_busy_port_is_a_clear_error(self) -> None:
        second = ListenerService(
            "second",
            TCP4ServerEndpoint(reactor, self.port, interface="127.0.0.1"),
            DrainingSite(self.resource),
            clock=self.clock,
            grace=1.0,
            describe=f"127.0.0.1:{self.port}",
        )
        with self.assertRaises(ListenError) as caught:
            second.privilegedStartService()
        self.assertEqual(
            str(caught.exception),
            f"second listener cannot listen on 127.0.0.1:{self.port}: Address already in use",
        )
