"""A webhook receiver for tests, as the README tells receivers to be: it verifies each
signature, deduplicates by event id, and keeps the order events arrived in. It can fail
deliveries (HTTP 500) or hold them unanswered, to test retries and restarts."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import reactor
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from mdmappliance.admin.webhooks import SIGNATURE_HEADER, verify


@dataclass
class WebhookReceiver:
    secret: bytes
    events: list[dict[str, Any]] = field(default_factory=list)  # deduplicated, in order
    seen_ids: set[str] = field(default_factory=set)
    deliveries: int = 0
    bad_signatures: int = 0
    fail_next: int = 0
    hold: bool = False
    held: list[Request] = field(default_factory=list)

    def site(self) -> Site:
        return Site(_Endpoint(self))

    def listen(self) -> str:
        site: Any = self.site()
        self.port = reactor.listenTCP(0, site, interface="127.0.0.1")
        address: Any = self.port.getHost()
        return f"http://127.0.0.1:{address.port}/hooks"

    def accept(self, request: Request, body: bytes) -> int:
        self.deliveries += 1
        header = request.getHeader(SIGNATURE_HEADER) or ""
        if not verify(self.secret, body, header, time.time()):
            self.bad_signatures += 1
            return 401
        if self.fail_next:
            self.fail_next -= 1
            return 500
        event = json.loads(body)
        if event["id"] not in self.seen_ids:
            self.seen_ids.add(event["id"])
            self.events.append(event)
        return 200


class _Endpoint(Resource):
    isLeaf = True

    def __init__(self, receiver: WebhookReceiver) -> None:
        super().__init__()
        self.receiver = receiver

    def render_POST(self, request: Request) -> Any:
        body = request.content.read() if request.content is not None else b""
        if self.receiver.hold:
            self.receiver.held.append(request)
            return NOT_DONE_YET
        request.setResponseCode(self.receiver.accept(request, body))
        return b""
