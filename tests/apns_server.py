"""A local APNs provider API for tests: HTTP/2 over TLS with client certificates.

It checks each push the way Apple documents (POST /3/device/<64 hex>, apns-topic matching
the client certificate's topic, apns-push-type mdm, a body of exactly {"mdm": ...}) and
answers with what ``answer`` says: 200 with an apns-id, or an error status with its JSON
reason (410 with a timestamp). It can lower MAX_CONCURRENT_STREAMS, send GOAWAY after some
requests (leaving later streams unanswered), and hold answers back.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.x509.oid import NameOID
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import DataReceived, RequestReceived, StreamEnded, StreamReset
from h2.settings import SettingCodes
from OpenSSL import crypto
from twisted.internet import reactor as _reactor
from twisted.internet import ssl
from twisted.internet.interfaces import ISSLTransport
from twisted.internet.protocol import Factory, Protocol

from mdmappliance import pki

TOKEN_PATH = re.compile(rb"^/3/device/([0-9a-f]{64})$")


@dataclass
class Received:
    token: str
    headers: dict[str, str]
    body: bytes
    topic: str  # from the client certificate
    connection: int


@dataclass(frozen=True)
class Reply:
    status: int = 200
    reason: str | None = None
    timestamp_ms: int | None = None


Answer = Callable[[Received], Reply | None]  # None: leave the stream unanswered


def always_ok(request: Received) -> Reply:
    return Reply(200)


def check_request(request: Received) -> Reply | None:
    """What Apple's gateway refuses before looking at the token."""
    h = request.headers
    if h.get(":method") != "POST":
        return Reply(405, "MethodNotAllowed")
    if h.get("apns-topic") != request.topic:
        return Reply(400, "DeviceTokenNotForTopic" if h.get("apns-topic") else "MissingTopic")
    if h.get("apns-push-type") != "mdm":
        return Reply(400, "InvalidPushType")
    try:
        body = json.loads(request.body)
    except ValueError:
        return Reply(400, "PayloadEmpty")
    if not isinstance(body, dict) or set(body) != {"mdm"} or not isinstance(body["mdm"], str):
        return Reply(400, "BadMessage")  # the whole message must be {"mdm": PushMagic}
    return None


@dataclass
class FakeAPNs:
    answer: Answer = always_ok
    max_concurrent_streams: int = 1000
    goaway_after: int | None = None  # GOAWAY once a connection has this many requests
    received: list[Received] = field(default_factory=list)
    on_push: Callable[[Received], None] | None = None
    connections: int = 0
    most_concurrent: int = 0
    held: list[tuple[Any, int]] = field(default_factory=list)
    open_connections: list[Any] = field(default_factory=list)

    def listen(self, cert: Path, key: Path, ca_cert: Path) -> int:
        """Listen on 127.0.0.1; client certificates must chain to ``ca_cert``."""
        server = ssl.PrivateCertificate.loadPEM(cert.read_bytes() + key.read_bytes())
        ca = crypto.X509.from_cryptography(pki.read_certificates(ca_cert)[0])
        options = ssl.CertificateOptions(
            privateKey=server.privateKey.original,
            certificate=server.original,
            verify=True,
            requireCertificate=True,
            caCerts=[ca],
            acceptableProtocols=[b"h2"],
        )
        factory = Factory.forProtocol(lambda: FakeAPNsProtocol(self))
        self.port = _reactor.listenSSL(0, factory, options, interface="127.0.0.1")  # type: ignore[attr-defined]
        return int(self.port.getHost().port)

    def reset(self) -> None:
        """Drop every open connection at once, as a gateway restarting does."""
        for protocol in list(self.open_connections):
            if protocol.transport is not None:
                protocol.transport.abortConnection()

    def release(self) -> None:
        """Answer the held streams now (200)."""
        held, self.held = self.held, []
        for protocol, stream_id in held:
            protocol.reply(stream_id, Reply(200))


class FakeAPNsProtocol(Protocol):
    def __init__(self, server: FakeAPNs) -> None:
        self.server = server
        self.conn = H2Connection(
            H2Configuration(
                client_side=False,
                header_encoding=None,
                validate_outbound_headers=False,
                normalize_outbound_headers=False,
            )
        )
        self.headers: dict[int, dict[str, str]] = {}
        self.bodies: dict[int, bytearray] = {}
        self.count = 0
        self.gone = False
        self._topic: str | None = None

    def connectionMade(self) -> None:
        self.server.open_connections.append(self)
        self.server.connections += 1
        self.number = self.server.connections
        self.conn.initiate_connection()
        self.conn.update_settings(
            {SettingCodes.MAX_CONCURRENT_STREAMS: self.server.max_concurrent_streams}
        )
        self._send()

    def connectionLost(self, reason: Any = None) -> None:
        if self in self.server.open_connections:
            self.server.open_connections.remove(self)

    def _send(self) -> None:
        if self.transport is not None:
            self.transport.write(self.conn.data_to_send())

    def topic(self) -> str:
        """The client certificate's topic (read once per connection)."""
        if self._topic is None:
            self._topic = self._read_topic()
        return self._topic

    def _read_topic(self) -> str:
        peer: Any = ISSLTransport(self.transport).getPeerCertificate()
        uids = peer.to_cryptography().subject.get_attributes_for_oid(NameOID.USER_ID)
        return str(uids[0].value) if uids else ""

    def dataReceived(self, data: bytes) -> None:
        for event in self.conn.receive_data(data):
            if isinstance(event, RequestReceived):
                self.headers[event.stream_id] = {k.decode(): v.decode() for k, v in event.headers}
                self.bodies[event.stream_id] = bytearray()
                open_streams = len(self.headers)
                self.server.most_concurrent = max(self.server.most_concurrent, open_streams)
            elif isinstance(event, DataReceived):
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                self.bodies[event.stream_id] += event.data
            elif isinstance(event, StreamEnded):
                self.request_done(event.stream_id)
            elif isinstance(event, StreamReset):
                self.headers.pop(event.stream_id, None)
        self._send()

    def request_done(self, stream_id: int) -> None:
        if self.gone:
            return  # after GOAWAY: never answered
        headers = self.headers[stream_id]
        match = TOKEN_PATH.match(headers.get(":path", "").encode())
        request = Received(
            token=match.group(1).decode() if match else "",
            headers=headers,
            body=bytes(self.bodies.pop(stream_id)),
            topic=self.topic(),
            connection=self.number,
        )
        self.server.received.append(request)
        self.count += 1
        reply = (Reply(400, "BadDeviceToken") if match is None else None) or check_request(request)
        if reply is None:
            reply = self.server.answer(request)
        if reply is None:
            self.server.held.append((self, stream_id))
        else:
            self.reply(stream_id, reply)
        if reply is not None and reply.status == 200 and self.server.on_push is not None:
            self.server.on_push(request)
        if self.server.goaway_after is not None and self.count >= self.server.goaway_after:
            self.gone = True
            self.conn.close_connection(error_code=0, last_stream_id=stream_id)
        self._send()

    def reply(self, stream_id: int, reply: Reply) -> None:
        self.headers.pop(stream_id, None)
        headers = [(":status", str(reply.status)), ("apns-id", str(uuid.uuid4()).upper())]
        body = b""
        if reply.reason is not None:
            document: dict[str, Any] = {"reason": reply.reason}
            if reply.timestamp_ms is not None:
                document["timestamp"] = reply.timestamp_ms
            body = json.dumps(document).encode()
            headers.append(("content-type", "application/json"))
        self.conn.send_headers(stream_id, headers, end_stream=not body)
        if body:
            self.conn.send_data(stream_id, body, end_stream=True)
        self._send()
