"""Webhooks: each check-in message and each command result, POSTed as signed JSON.

The append-only event log is the outbox. Every receiver URL has a cursor in the database
(``webhook_cursors``): the last event it acknowledged with a 2xx. Deliveries go in event
order (so in order per enrollment), one at a time per URL; a failure is retried with
exponential backoff and jitter, without end, and nothing after it is sent before it. A
restart resumes at the cursor, so an event may arrive twice (the one in flight) but is never
lost; receivers deduplicate by the event's ``id``.

Signature: header ``X-Mdmappliance-Signature: t=<unix seconds>,v1=<hex>``, where ``<hex>``
is HMAC-SHA256 with the shared secret over ``"<t>." + body``. A receiver recomputes it,
compares in constant time, and rejects old timestamps to stop replays.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import treq
from twisted.application.service import MultiService, Service
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool

from mdmappliance.admin.queries import command_detail
from mdmappliance.core.timestamps import utc_timestamp
from mdmappliance.store import Store, Tx
from mdmappliance.store.errors import StoreError
from mdmappliance.store.events import DEVICE_ACTOR_PREFIX, Event
from mdmappliance.store.settings import INSTALLATION_ID

log = Logger()

SIGNATURE_HEADER = "X-Mdmappliance-Signature"
#: What receivers get: every check-in message and every command result.
KINDS = (
    "checkin.authenticate",
    "checkin.token_update",
    "checkin.checkout",
    "checkin.user_authenticate",
    "checkin.bootstrap_token_set",
    "checkin.bootstrap_token_get",
    "checkin.get_token_refused",
    "checkin.declarative_status",
    "command.result",
)
BATCH = 100
MAX_DELAY = 300.0


def sign(secret: bytes, body: bytes, timestamp: int) -> str:
    digest = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(secret: bytes, body: bytes, header: str, now: float, tolerance: float = 300) -> bool:
    """What a receiver does (and the tests do): check the signature and its age."""
    parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    expected = sign(secret, body, timestamp).split("v1=", 1)[1]
    return abs(now - timestamp) <= tolerance and hmac.compare_digest(expected, parts.get("v1", ""))


@dataclass(frozen=True)
class Delivery:
    event_id: int
    body: bytes


def pending(tx: Tx, url: str, limit: int = BATCH) -> list[Delivery]:
    """The next events for ``url`` after its cursor, as the JSON bodies to send."""
    after = tx.webhooks.cursor(url).last_event_id
    installation = tx.settings.get(INSTALLATION_ID) or "mdmappliance"
    return [
        Delivery(event.id, _body(tx, installation, event))
        for event in tx.events.after(after, limit, kinds=KINDS)
    ]


def _body(tx: Tx, installation: str, event: Event) -> bytes:
    detail = event.detail
    actor, subject = event.actor, event.subject
    enrollment: dict[str, Any] = {
        "udid": actor.removeprefix(DEVICE_ACTOR_PREFIX) if actor else subject
    }
    if event.kind.startswith("checkin."):
        enrollment["user_id"] = detail.get("user_id", "")
        payload = detail
    else:
        command: Mapping[str, Any] = command_detail(tx, detail.get("command_uuid", "")) or {}
        enrollment["user_id"] = command.get("user_id", "")
        enrollment["udid"] = command.get("udid", enrollment["udid"])
        payload = {
            "command_uuid": detail.get("command_uuid"),
            "request_type": command.get("request_type"),
            "status": detail.get("status"),
            "result": command.get("result"),
        }
    document = {
        "id": f"{installation}-{event.id}",
        "type": event.kind,
        "at": event.at,
        "enrollment": enrollment,
        "payload": payload,
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def record_delivery(tx: Tx, url: str, event_id: int | None, error: str | None) -> None:
    """Move the cursor past a delivered event, or count a failure."""
    tx.webhooks.record(url, event_id, error, utc_timestamp())


def backlog(tx: Tx, urls: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per URL: events waiting, delivered, failures, last error (for /metrics and health)."""
    found = {}
    for url in urls:
        cursor = tx.webhooks.cursor(url)
        found[url] = {
            "pending": tx.events.count_after(cursor.last_event_id, KINDS),
            "delivered": cursor.delivered,
            "failures": cursor.failures,
            "last_error": cursor.last_error,
        }
    return found


class Receiver(Service):
    """Delivers to one URL, in event order, forever."""

    def __init__(
        self,
        store: Store,
        url: str,
        secret: bytes,
        clock: IReactorTime,
        *,
        http: Any = None,
        poll_interval: float = 1.0,
        timeout: float = 10.0,
        retry_base: float = 1.0,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.store = store
        self.url = url
        self.secret = secret
        self.clock = clock
        self.pool = HTTPConnectionPool(clock, persistent=True)
        self.http = http or treq.client.HTTPClient(Agent(clock, pool=self.pool))
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.retry_base = retry_base
        self.jitter = jitter
        self._loop: Deferred[None] | None = None
        self._sleep: IDelayedCall | None = None
        self._failures = 0  # deliveries failed in a row (the backoff)

    def startService(self) -> None:
        super().startService()
        self._loop = Deferred.fromCoroutine(self._run())
        self._loop.addErrback(self._stopped)

    def _stopped(self, failure: Failure) -> None:
        if not failure.check(CancelledError):
            log.failure("webhook delivery to {url} stopped", failure, url=self.url)

    def stopService(self) -> Deferred[None]:
        """Stop at once; a delivery in flight is dropped and resent after the restart."""
        super().stopService()
        if self._loop is not None:
            self._loop.cancel()
        closed: Deferred[None] = self.pool.closeCachedConnections()
        return closed

    async def _run(self) -> None:
        """Deliver until stopped; while the store is unavailable, wait and carry on from the
        cursor (an event delivered but not yet recorded goes again: at least once)."""
        while self.running:
            try:
                await self._deliver()
            except StoreError as e:
                if not self.running:
                    return
                log.warn(
                    "webhook {url}: the store is unavailable ({error}); trying again",
                    url=self.url,
                    error=str(e),
                )
                await deferLater(self.clock, max(self.poll_interval, 1.0), lambda: None)

    async def _deliver(self) -> None:
        while self.running:
            batch = await self.store.run(pending, self.url)
            if not batch:
                await deferLater(self.clock, self.poll_interval, lambda: None)
                continue
            for delivery in batch:
                # The same event again until it is taken: nothing after it goes first, and
                # the batch's bodies are not rebuilt for each retry.
                while True:
                    error = await self._post(delivery)
                    if not self.running:
                        return
                    await self.store.transaction(
                        record_delivery, self.url, delivery.event_id, error
                    )
                    if error is None:
                        self._failures = 0
                        break
                    self._failures += 1
                    delay = min(MAX_DELAY, self.retry_base * 2 ** min(self._failures - 1, 16))
                    delay *= 0.5 + self.jitter()
                    log.warn(
                        "webhook {url}: {error}; retrying event {event} in {delay:.1f}s",
                        url=self.url,
                        error=error,
                        event=delivery.event_id,
                        delay=delay,
                    )
                    await deferLater(self.clock, delay, lambda: None)

    async def _post(self, delivery: Delivery) -> str | None:
        """None when the receiver took it (2xx), else what went wrong."""
        signature = sign(self.secret, delivery.body, int(self.clock.seconds()))
        headers: dict[bytes | str, bytes | str] = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: signature,
        }
        try:
            response = await self.http.post(
                self.url,
                data=delivery.body,
                headers=headers,
                timeout=self.timeout,
            )
            await response.content()
        except Exception as e:
            return f"{type(e).__name__}: {e}"
        if 200 <= response.code < 300:
            return None
        return f"HTTP {response.code}"


def webhook_service(
    store: Store, urls: Sequence[str], secret: bytes, clock: IReactorTime, **options: Any
) -> MultiService:
    service = MultiService()
    service.setName("webhooks")
    for url in urls:
        Receiver(store, url, secret, clock, **options).setServiceParent(service)
    return service
