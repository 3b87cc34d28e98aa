"""HTTP listeners that stop gracefully: refuse new connections, let requests in flight
finish within a bounded grace period, then close what is left.

Every listener of the appliance (admin, and later device and enrollment) is a
``ListenerService`` around a ``DrainingSite``.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from twisted.application.service import Service
from twisted.internet.defer import Deferred, gatherResults, maybeDeferred, succeed
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import (
    IDelayedCall,
    IListeningPort,
    IReactorTime,
    IStreamServerEndpoint,
    ITCPTransport,
)
from twisted.internet.protocol import Protocol
from twisted.logger import Logger, LogLevel
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.web.resource import IResource
from twisted.web.server import Request, Site

from mdmappliance.admin.metrics import Metrics
from mdmappliance.core.errors import ApplianceError

log = Logger()
access_log = Logger(namespace="mdmappliance.access")


class ListenError(ApplianceError):
    """A listener could not bind its address."""


class _TrackedRequest(Request):
    """A request that tells its site when it starts and when it is done, and that refuses a
    body larger than the site's ``max_body_bytes`` with 413 before reading the rest of it.

    The body is kept in memory (it is bounded), never spooled to a temporary file.
    """

    site: DrainingSite

    def __init__(self, channel: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(channel, *args, **kwargs)
        site = channel.site
        self._limit: int | None = site.max_body_bytes
        self.too_large = False
        self._tracked_by = site
        site.request_started(self)

    def finish(self) -> None:
        # The site is told here and in connectionLost, the two ways a request ends (a
        # notifyFinish Deferred per request costs more than the rest of this class).
        super().finish()
        self._done()

    def connectionLost(self, reason: Any) -> None:
        super().connectionLost(reason)
        self._done()

    def _done(self) -> None:
        self.__dict__.pop("_secure", None)  # without its channel, a request is not secure
        self._tracked_by.request_finished(self)

    def isSecure(self) -> bool:
        """Asked four times a request (Klein twice); the answer is an interface lookup on
        the transport, which does not change during the request."""
        secure: bool | None = self.__dict__.get("_secure")
        if secure is None:
            secure = self._secure = super().isSecure()
        return secure

    def setHost(self, host: bytes, port: int, ssl: bool = False) -> None:
        self.__dict__.pop("_secure", None)
        super().setHost(host, port, ssl)

    def gotLength(self, length: int | None) -> None:
        if self._limit is None:
            super().gotLength(length)
            return
        self.content = io.BytesIO()
        if length is not None and length > self._limit:
            self._refuse_too_large()

    def handleContentChunk(self, data: bytes) -> None:
        if self.too_large:
            return
        content = cast(io.BytesIO, self.content)
        if self._limit is not None and content.tell() + len(data) > self._limit:
            self._refuse_too_large()
            return
        content.write(data)

    def _refuse_too_large(self) -> None:
        """Answer at once and hang up, as twisted.web does for malformed requests."""
        self.too_large = True
        self.content = io.BytesIO()
        body = f"request body larger than {self._limit} bytes\n".encode()
        transport = self.channel.transport
        assert transport is not None
        transport.write(
            b"HTTP/1.1 413 Payload Too Large\r\nContent-Type: text/plain\r\n"
            b"Connection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        transport.loseConnection()

    def process(self) -> None:
        if not self.too_large:
            super().process()


class DrainingSite(Site):
    """A Site that knows its connections and requests in flight, so it can drain."""

    requestFactory = _TrackedRequest

    def __init__(
        self,
        resource: IResource,
        *,
        max_body_bytes: int | None = None,
        access_log_level: LogLevel | None = LogLevel.info,
        metrics: Metrics | None = None,
        metrics_name: str = "",
        **kwargs: Any,
    ) -> None:
        super().__init__(resource, **kwargs)
        self.metrics = metrics
        self.metrics_name = metrics_name
        self.max_body_bytes = max_body_bytes
        self.access_log_level = access_log_level
        #: The object whose routes ``resource`` serves (the device or enrollment routes).
        self.routes: Any = None
        #: The path as the access log shows it: never the query string (a caller may put a
        #: key there), and a listener whose paths carry secrets (enrollment tokens) masks them.
        self.loggable_path: Callable[[str], str] = lambda path: path
        self.in_flight: set[Request] = set()
        self.draining = False
        self._idle_waiters: list[Deferred[None]] = []

    def log(self, request: Request) -> None:  # type: ignore[override]
        """One structured access-log event per request, at this site's level (none when
        that is None), and a count for /metrics."""
        if self.metrics is not None:
            self.metrics.count_request(
                self.metrics_name, request.path.decode("ascii", "replace"), request.code
            )
        if self.access_log_level is None:
            return  # below the configured level: not built only to be dropped
        access_log.emit(
            self.access_log_level,
            "{peer} {method} {path} {code} {length}",
            peer=getattr(request.getClientAddress(), "host", "-"),
            method=request.method.decode("ascii", "replace"),
            path=self.loggable_path(request.path.decode("ascii", "replace")),
            code=request.code,
            length=request.sentLength,
        )

    def request_started(self, request: Request) -> None:
        self.in_flight.add(request)
        if self.draining:
            _close_after_response(request)

    def request_finished(self, request: Request) -> None:
        self.in_flight.discard(request)
        if not self.in_flight:
            waiters, self._idle_waiters = self._idle_waiters, []
            for waiter in waiters:
                waiter.callback(None)

    def when_idle(self) -> Deferred[None]:
        """Fires when no request is in flight."""
        if not self.in_flight:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._idle_waiters.append(waiter)
        return waiter


def _close_after_response(request: Request) -> None:
    """Make this request the last on its connection."""
    request.channel.persistent = False
    if not request.startedWriting:
        request.responseHeaders.setRawHeaders(b"connection", [b"close"])


@dataclass(frozen=True)
class ConnectionLimits:
    """How many connections a listener holds at most, in all and from one address."""

    total: int
    per_address: int


class LimitedConnections(WrappingFactory):
    """Knows the listener's open connections (to drain them) and closes a new one at once
    when it would pass the limits: a client cannot exhaust the process's file descriptors."""

    def __init__(self, site: DrainingSite, limits: ConnectionLimits | None) -> None:
        super().__init__(site)
        self.limits = limits
        self.by_address: dict[str, int] = {}
        self.refused = 0

    def buildProtocol(self, addr: Any) -> Any:
        limits, host = self.limits, getattr(addr, "host", "")
        if limits is not None and (
            len(self.protocols) >= limits.total
            or self.by_address.get(host, 0) >= limits.per_address
        ):
            self.refused += 1
            return _Refused()
        return super().buildProtocol(addr)

    def registerProtocol(self, p: Any) -> None:
        super().registerProtocol(p)
        host = getattr(p.transport.getPeer(), "host", "")
        self.by_address[host] = self.by_address.get(host, 0) + 1

    def unregisterProtocol(self, p: Any) -> None:
        super().unregisterProtocol(p)
        host = getattr(p.transport.getPeer(), "host", "")
        left = self.by_address.get(host, 1) - 1
        if left > 0:
            self.by_address[host] = left
        else:
            self.by_address.pop(host, None)


class _Refused(Protocol):
    """A connection over the limits: closed as soon as it is made (before any TLS)."""

    def connectionMade(self) -> None:
        transport = cast(ITCPTransport, self.transport)
        transport.abortConnection()


class ListenerService(Service):
    """Listen on an endpoint with a DrainingSite; on stop, drain within ``grace`` seconds."""

    def __init__(
        self,
        name: str,
        endpoint: IStreamServerEndpoint,
        site: DrainingSite,
        *,
        clock: IReactorTime,
        grace: float,
        describe: str,
        limits: ConnectionLimits | None = None,
    ) -> None:
        self.name = name
        self.endpoint = endpoint
        self.site = site
        self.clock = clock
        self.grace = grace
        self.describe = describe
        self.connections = LimitedConnections(site, limits)
        self.connections.noisy = False
        site.noisy = False
        self.port: IListeningPort | None = None

    def privilegedStartService(self) -> None:
        """Bind now, so a busy port stops start-up with a clear message."""
        super().privilegedStartService()
        listening = self.endpoint.listen(self.connections)
        failures: list[Any] = []
        listening.addCallbacks(self._listening, failures.append)
        if failures:
            error = failures[0].value
            if isinstance(error, CannotListenError):
                reason = getattr(error.socketError, "strerror", None) or str(error.socketError)
                raise ListenError(
                    f"{self.name} listener cannot listen on {self.describe}: {reason}"
                )
            failures[0].raiseException()

    def _listening(self, port: IListeningPort) -> None:
        self.port = port

    @property
    def bound_port(self) -> int:
        """The TCP port actually bound (useful when configured as 0)."""
        if self.port is None:
            raise RuntimeError(f"{self.name} listener is not listening")
        address: Any = self.port.getHost()
        return int(address.port)

    def startService(self) -> None:
        if self.port is None:
            self.privilegedStartService()
        super().startService()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        port, self.port = self.port, None
        if port is None:
            return succeed(None)
        closed: Deferred[Any] = maybeDeferred(port.stopListening)
        both = gatherResults([closed, self._drain()], consumeErrors=True)
        return both.addCallback(lambda _: None)

    def _drain(self) -> Deferred[None]:
        site = self.site
        site.draining = True
        for request in list(site.in_flight):
            _close_after_response(request)
        busy: set[object] = {request.channel.transport for request in site.in_flight}
        for protocol in list(self._open()):
            if protocol not in busy:
                protocol.loseConnection()
        if site.in_flight:
            log.info(
                "{listener}: waiting up to {grace}s for {count} request(s) in flight",
                listener=self.name,
                grace=self.grace,
                count=len(site.in_flight),
            )
        done: Deferred[None] = Deferred()
        timer: IDelayedCall = self.clock.callLater(self.grace, self._give_up, done)

        def idle(_: None) -> None:
            if timer.active():
                timer.cancel()
            if not done.called:
                done.callback(None)

        site.when_idle().addCallback(idle)
        return done

    def _give_up(self, done: Deferred[None]) -> None:
        remaining = len(self.site.in_flight)
        log.warn(
            "{listener}: {count} request(s) still running after {grace}s; closing them",
            listener=self.name,
            count=remaining,
            grace=self.grace,
        )
        for protocol in list(self._open()):
            cast(ITCPTransport, protocol.transport).abortConnection()
        if not done.called:
            done.callback(None)

    def _open(self) -> list[ProtocolWrapper]:
        return list(self.connections.protocols)
