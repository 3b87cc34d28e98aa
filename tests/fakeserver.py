"""What the fakes of Apple's services (tests/fakedep.py, tests/fakevpp.py) share: a TLS
listener on 127.0.0.1 that serves ``handle(request)`` answers and drops its connections when
stopped, so the test reactor is clean afterwards."""

from __future__ import annotations

import functools
from typing import Any, Protocol, cast

from twisted.internet import defer, ssl
from twisted.internet.endpoints import SSL4ServerEndpoint
from twisted.internet.interfaces import IListeningPort, IReactorSSL
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from mdmappliance import pki
from mdmappliance.app.reactor import global_reactor


class Handler(Protocol):
    def handle(self, request: Request) -> Any: ...


@functools.cache
def tls_material(name: str) -> tuple[bytes, bytes, bytes]:
    """CA PEM, server certificate PEM and key PEM for ``name``, made once per process (RSA is
    slow)."""
    ca = pki.create_ca(name, bits=2048)
    server = pki.issue_server_certificate(ca, "127.0.0.1")
    return (
        pki.certificate_pem(ca.certificate),
        pki.certificate_pem(server.certificate),
        pki.private_key_pem(server.key),
    )


class AnswerResource(Resource):
    """Every request to the handler; its answer's status, headers and body as they are."""

    isLeaf = True

    def __init__(self, handler: Handler) -> None:
        super().__init__()
        self.handler = handler

    def render(self, request: Request) -> bytes:
        answer = self.handler.handle(request)
        request.setResponseCode(answer.status)
        for name, value in answer.headers.items():
            request.setHeader(name, value)
        body: bytes = answer.body
        return body


class TrackingFactory(WrappingFactory):
    """Knows its open connections so stop() can drop them and wait until they are gone."""

    def __init__(self, factory: Site) -> None:
        super().__init__(factory)
        self._gone: dict[ProtocolWrapper, defer.Deferred[None]] = {}

    def registerProtocol(self, p: ProtocolWrapper) -> None:
        super().registerProtocol(p)
        self._gone[p] = defer.Deferred()

    def unregisterProtocol(self, p: ProtocolWrapper) -> None:
        super().unregisterProtocol(p)
        gone = self._gone.pop(p, None)
        if gone is not None:
            gone.callback(None)

    async def close_all(self) -> None:
        waits = list(self._gone.values())
        for p in list(self._gone):
            if p.transport is not None:
                p.transport.abortConnection()  # type: ignore[attr-defined]
        for wait in waits:
            await wait


class TLSListener:
    """The handler served over TLS (HTTP/1.1) on 127.0.0.1, an ephemeral port."""

    def __init__(self, handler: Handler, server_pem: bytes) -> None:
        self.server_pem = server_pem
        self.factory = TrackingFactory(Site(AnswerResource(handler)))
        self.port: IListeningPort | None = None
        self.url = ""

    async def start(self) -> str:
        server = ssl.PrivateCertificate.loadPEM(self.server_pem)
        options = ssl.CertificateOptions(
            privateKey=server.privateKey.original,
            certificate=server.original,
            acceptableProtocols=[b"http/1.1"],
        )
        reactor = cast(IReactorSSL, global_reactor())
        endpoint = SSL4ServerEndpoint(reactor, 0, options, interface="127.0.0.1")
        self.port = await endpoint.listen(self.factory)
        self.url = f"https://127.0.0.1:{self.port.getHost().port}"  # type: ignore[union-attr]
        return self.url

    async def stop(self) -> None:
        """Stop listening and drop open connections."""
        if self.port is not None:
            await defer.maybeDeferred(self.port.stopListening)
            self.port = None
        await self.factory.close_all()
