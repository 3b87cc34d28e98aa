"""APNs over HTTP/2: one long-lived TLS connection to the provider API, many streams.

``APNsProtocol`` wraps an ``h2`` client connection: it honours the server's
MAX_CONCURRENT_STREAMS (pushes beyond it wait in order), acknowledges received data, waits for
the flow-control window, pings an idle connection and drops it when the ping goes unanswered,
and on GOAWAY stops sending and hands back the streams the server did not answer.
``APNsClient`` keeps one such connection up through ``ClientService`` (reconnecting with
backoff) and sends each push on whichever connection is current, retrying on a new one when
the old one went away without answering.
"""

from __future__ import annotations

import json
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    PingAckReceived,
    RemoteSettingsChanged,
    ResponseReceived,
    StreamEnded,
    StreamReset,
    WindowUpdated,
)
from h2.exceptions import H2Error
from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet import ssl
from twisted.internet.defer import Deferred, fail
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

log = Logger()

MAX_ATTEMPTS_PER_PUSH = 5
MAX_IN_FLIGHT = 250


class ConnectionGone(Exception):
    """The connection closed, or the server said GOAWAY, before this push was answered:
    it was not delivered and may be sent again on a new connection."""


@dataclass(frozen=True)
class Push:
    """One MDM push: the body is exactly ``{"mdm": PushMagic}`` and nothing else."""

    token: bytes
    push_magic: str
    topic: str
    priority: int = 10
    expiration: int = 0  # epoch seconds; 0: deliver now or never
    enrollment_id: int = 0

    def headers(self, authority: str) -> list[tuple[bytes, bytes]]:
        return [
            (b":method", b"POST"),
            (b":scheme", b"https"),
            (b":authority", authority.encode("ascii")),
            (b":path", b"/3/device/" + self.token.hex().encode("ascii")),
            (b"apns-topic", self.topic.encode("ascii")),
            (b"apns-push-type", b"mdm"),
            (b"apns-priority", str(self.priority).encode("ascii")),
            (b"apns-expiration", str(self.expiration).encode("ascii")),
        ]

    def body(self) -> bytes:
        return json.dumps({"mdm": self.push_magic}, separators=(",", ":")).encode()


@dataclass(frozen=True)
class PushAnswer:
    """What APNs said: 200 with an apns-id, or a status with a reason (and, for 410, the
    time the token stopped being valid, in milliseconds)."""

    status: int
    apns_id: str | None = None
    reason: str | None = None
    timestamp_ms: int | None = None


@dataclass
class _Stream:
    push: Push
    done: Deferred[PushAnswer]
    status: int = 0
    apns_id: str | None = None
    body: bytearray = field(default_factory=bytearray)
    unsent: bytes = b""


def parse_answer(stream: _Stream) -> PushAnswer:
    reason = timestamp = None
    if stream.body:
        try:
            document = json.loads(bytes(stream.body))
        except ValueError:
            document = {}
        if isinstance(document, dict):
            reason = document.get("reason") if isinstance(document.get("reason"), str) else None
            stamp = document.get("timestamp")
            timestamp = stamp if isinstance(stamp, int) and not isinstance(stamp, bool) else None
    return PushAnswer(stream.status, stream.apns_id, reason, timestamp)


class APNsProtocol(Protocol):
    def __init__(
        self, authority: str, clock: IReactorTime, ping_interval: float, ping_timeout: float
    ) -> None:
        self.authority = authority
        self.clock = clock
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        # Outbound headers are ours and fixed in form: h2 need not re-validate every push.
        self.conn = H2Connection(
            H2Configuration(
                client_side=True,
                header_encoding=None,
                validate_outbound_headers=False,
                normalize_outbound_headers=False,
            )
        )
        self.streams: dict[int, _Stream] = {}
        self.waiting: deque[tuple[Push, Deferred[PushAnswer]]] = deque()
        self.settled = False  # the server's SETTINGS have arrived
        self.going_away = False
        self.lost = False
        self._ready: list[Deferred[APNsProtocol]] = []
        self._closed: list[Deferred[None]] = []
        self._last_activity = 0.0
        self._idle_timer: IDelayedCall | None = None
        self._ping_deadline: IDelayedCall | None = None

    # Lifecycle
    def connectionMade(self) -> None:
        self.conn.initiate_connection()
        self._flush()
        self._touch()
        self._idle_timer = self.clock.callLater(self.ping_interval, self._idle_check)

    def when_ready(self) -> Deferred[APNsProtocol]:
        """Fires once the server's settings are known (ClientService's prepareConnection)."""
        if self.settled:
            return Deferred.fromCoroutine(self._self())
        d: Deferred[APNsProtocol] = Deferred()
        self._ready.append(d)
        return d

    async def _self(self) -> APNsProtocol:
        return self

    def when_closed(self) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        if self.lost:
            self.clock.callLater(0, d.callback, None)
        else:
            self._closed.append(d)
        return d

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:  # noqa: B008
        self.lost = True
        for timer in (self._idle_timer, self._ping_deadline):
            if timer is not None and timer.active():
                timer.cancel()
        gone = ConnectionGone(f"the APNs connection closed: {reason.getErrorMessage()}")
        streams, self.streams = self.streams, {}
        for stream in streams.values():
            stream.done.errback(Failure(gone))
        self._fail_waiting(gone)
        for d in self._ready:
            d.errback(Failure(gone))
        self._ready = []
        closed, self._closed = self._closed, []
        # Later, not now: ClientService learns of the loss after this method returns, and a
        # waiter that asked it for a connection now would get this dead one back.
        for c in closed:
            self.clock.callLater(0, c.callback, None)

    # Sending
    def push(self, push: Push) -> Deferred[PushAnswer]:
        if self.going_away or self.lost:
            return fail(ConnectionGone("the APNs connection is going away"))
        d: Deferred[PushAnswer] = Deferred()
        self.waiting.append((push, d))
        self._pump()
        return d

    @property
    def in_flight(self) -> int:
        return len(self.streams)

    def _capacity(self) -> int:
        """Streams that may open now: the server's MAX_CONCURRENT_STREAMS, and at most
        MAX_IN_FLIGHT of our own (h2 counts open streams by walking them all on every new
        stream, so a thousand in flight costs more than it gains on one connection)."""
        limit = min(int(self.conn.remote_settings.max_concurrent_streams), MAX_IN_FLIGHT)
        return max(0, limit - len(self.streams))

    def _pump(self) -> None:
        if not self.settled or self.going_away or self.lost:
            return
        sent = False
        while self.waiting and self._capacity() > 0:
            push, d = self.waiting.popleft()
            stream_id = self.conn.get_next_available_stream_id()
            stream = _Stream(push, d, unsent=push.body())
            self.streams[stream_id] = stream
            self.conn.send_headers(stream_id, push.headers(self.authority))
            self._send_body(stream_id, stream)
            sent = True
        if sent:
            self._flush()

    def _send_body(self, stream_id: int, stream: _Stream) -> None:
        """Send what the flow-control window allows; the rest waits for WINDOW_UPDATE."""
        if not stream.unsent:
            return
        window = min(
            self.conn.local_flow_control_window(stream_id), self.conn.max_outbound_frame_size
        )
        if window <= 0:
            return
        chunk, stream.unsent = stream.unsent[:window], stream.unsent[window:]
        self.conn.send_data(stream_id, chunk, end_stream=not stream.unsent)

    def _flush(self) -> None:
        data = self.conn.data_to_send()
        if data and self.transport is not None:
            self.transport.write(data)

    # Receiving
    def dataReceived(self, data: bytes) -> None:
        self._touch()
        try:
            events = self.conn.receive_data(data)
        except H2Error as e:
            log.warn("APNs sent something HTTP/2 does not allow ({error}); reconnecting", error=e)
            self._flush()
            if self.transport is not None:
                self.transport.loseConnection()
            return
        for event in events:
            self._handle(event)
        self._flush()
        self._pump()
        if self.going_away and not self.streams and self.transport is not None:
            self.transport.loseConnection()

    def _handle(self, event: Any) -> None:
        """Send one h2 event to the method for its kind; other kinds need nothing from us."""
        if isinstance(event, ResponseReceived):
            self._response_received(event)
        elif isinstance(event, DataReceived):
            self._data_received(event)
        elif isinstance(event, StreamEnded):
            self._stream_ended(event)
        elif isinstance(event, StreamReset):
            self._stream_reset(event)
        elif isinstance(event, RemoteSettingsChanged):
            self._settings_changed()
        elif isinstance(event, WindowUpdated):
            self._window_updated()
        elif isinstance(event, ConnectionTerminated):
            self._go_away(event.last_stream_id, event.error_code)
        elif isinstance(event, PingAckReceived):
            self._ping_answered()

    def _response_received(self, event: ResponseReceived) -> None:
        """Response headers: keep the status and apns-id for the answer."""
        stream = self.streams.get(event.stream_id)
        if stream is not None:
            for name, value in event.headers:
                if name == b":status":
                    stream.status = int(value)
                elif name == b"apns-id":
                    stream.apns_id = value.decode("ascii", "replace")

    def _data_received(self, event: DataReceived) -> None:
        """Response body: give the window back first (even for a stream no longer ours), then
        keep the bytes for the answer."""
        self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        stream = self.streams.get(event.stream_id)
        if stream is not None:
            stream.body += event.data

    def _stream_ended(self, event: StreamEnded) -> None:
        """The server answered the push in full: fire its Deferred with the answer."""
        stream = self.streams.pop(event.stream_id, None)
        if stream is not None:
            stream.done.callback(parse_answer(stream))

    def _stream_reset(self, event: StreamReset) -> None:
        """The stream was reset without an answer: the push may go again elsewhere."""
        stream = self.streams.pop(event.stream_id, None)
        if stream is not None:
            stream.done.errback(Failure(ConnectionGone(f"stream reset ({event.error_code})")))

    def _settings_changed(self) -> None:
        """The server's first SETTINGS make the connection ready; later ones change nothing
        here (h2 applies them, and ``_capacity`` reads them)."""
        if not self.settled:
            self.settled = True
            ready, self._ready = self._ready, []
            for d in ready:
                d.callback(self)

    def _window_updated(self) -> None:
        """More flow-control window: send what bodies were waiting for it."""
        for stream_id, stream in list(self.streams.items()):
            if stream.unsent:
                self._send_body(stream_id, stream)

    def _ping_answered(self) -> None:
        """The keep-alive ping was answered: the connection is alive, stop the deadline."""
        if self._ping_deadline is not None and self._ping_deadline.active():
            self._ping_deadline.cancel()
        self._ping_deadline = None

    def _go_away(self, last_stream_id: int | None, error_code: Any) -> None:
        """GOAWAY: no new streams here; those above last_stream_id were never processed."""
        self.going_away = True
        log.info(
            "APNs connection going away (error {code}, last stream {last})",
            code=error_code,
            last=last_stream_id,
        )
        gone = ConnectionGone("the APNs server closed the connection (GOAWAY)")
        last = last_stream_id if last_stream_id is not None else 0
        for stream_id in sorted(self.streams):
            if stream_id > last:
                self.streams.pop(stream_id).done.errback(Failure(gone))
        self._fail_waiting(gone)

    def _fail_waiting(self, gone: ConnectionGone) -> None:
        waiting, self.waiting = self.waiting, deque()
        for _, d in waiting:
            d.errback(Failure(gone))

    # Keep-alive
    def _touch(self) -> None:
        self._last_activity = self.clock.seconds()

    def _idle_check(self) -> None:
        if self.lost:
            return
        idle = self.clock.seconds() - self._last_activity
        if idle >= self.ping_interval and self._ping_deadline is None:
            self.conn.ping(b"mdmappli")
            self._flush()
            self._ping_deadline = self.clock.callLater(self.ping_timeout, self._dead)
            idle = 0
        self._idle_timer = self.clock.callLater(
            max(0.05, self.ping_interval - idle), self._idle_check
        )

    def _dead(self) -> None:
        self._ping_deadline = None
        log.warn(
            "APNs did not answer a ping within {timeout}s; dropping the connection",
            timeout=self.ping_timeout,
        )
        if self.transport is not None:
            abort = getattr(self.transport, "abortConnection", self.transport.loseConnection)
            abort()


class APNsFactory(Factory):
    def __init__(
        self, authority: str, clock: IReactorTime, ping_interval: float, ping_timeout: float
    ) -> None:
        self.authority = authority
        self.clock = clock
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout

    def buildProtocol(self, addr: Any) -> APNsProtocol:
        protocol = APNsProtocol(self.authority, self.clock, self.ping_interval, self.ping_timeout)
        protocol.factory = self
        return protocol


def client_tls_options(hostname: str, cert_pem: bytes, key_pem: bytes, ca_file: Path | None) -> Any:
    """TLS to the gateway: the push certificate as client certificate, ALPN h2."""
    trust = (
        ssl.trustRootFromCertificates(
            [ssl.Certificate.loadPEM(block) for block in _pem_blocks(ca_file.read_bytes())]
        )
        if ca_file is not None
        else ssl.platformTrust()
    )
    identity = ssl.PrivateCertificate.loadPEM(cert_pem + b"\n" + key_pem)
    return ssl.optionsForClientTLS(
        hostname, trustRoot=trust, clientCertificate=identity, acceptableProtocols=[b"h2"]
    )


def _pem_blocks(data: bytes) -> list[bytes]:
    marker = b"-----END CERTIFICATE-----"
    return [part + marker for part in data.split(marker) if b"-----BEGIN" in part]


class APNsClient:
    """One kept-open connection to the gateway (``ClientService``), and pushes over it."""

    def __init__(
        self,
        reactor: Any,
        gateway: str,
        cert_pem: bytes,
        key_pem: bytes,
        *,
        ca_file: Path | None = None,
        ping_interval: float = 60.0,
        ping_timeout: float = 20.0,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        parts = urlsplit(gateway)
        host = parts.hostname or ""
        port = parts.port or 443
        authority = host if port == 443 else f"{host}:{port}"
        options = client_tls_options(host, cert_pem, key_pem, ca_file)
        endpoint = wrapClientTLS(options, HostnameEndpoint(reactor, host, port))
        factory = APNsFactory(authority, reactor, ping_interval, ping_timeout)
        self.service = ClientService(
            endpoint,
            factory,
            retryPolicy=backoffPolicy(initialDelay=0.5, maxDelay=60.0, jitter=jitter),
            clock=reactor,
            prepareConnection=lambda protocol: cast(APNsProtocol, protocol).when_ready(),
        )

    def start(self) -> None:
        self.service.startService()

    def stop(self) -> Deferred[None]:
        return self.service.stopService()

    async def push(self, push: Push) -> PushAnswer:
        """Send on the current connection; a push the server never answered (GOAWAY, lost
        connection) goes again on the next one, a bounded number of times."""
        last: Exception | None = None
        for _ in range(MAX_ATTEMPTS_PER_PUSH):
            protocol = cast(APNsProtocol, await self.service.whenConnected(failAfterFailures=3))
            try:
                return await protocol.push(push)
            except ConnectionGone as e:
                last = e
                await protocol.when_closed()
        raise ConnectionGone(f"gave up after {MAX_ATTEMPTS_PER_PUSH} connections: {last}")
