"""When and to whom pushes go, and what their answers mean for each enrollment.

Pushes are coalesced: asking for an enrollment several times within the window sends one
push (APNs keeps only the last one anyway). Only enrollments that completed a TokenUpdate
and whose token is valid are pushed; commands are queued either way, so a push that fails
loses nothing: the device picks its commands up when it next polls.

Answers (Apple's provider API): 200 records the apns-id; 410 Unregistered invalidates the
token unless a TokenUpdate came after the time APNs gives; 400 BadDeviceToken and
DeviceTokenNotForTopic invalidate it; 403 means the push certificate itself is refused, so
every push stops and the health check says so; 429 and 5xx are retried with exponential
backoff and jitter, a bounded number of times.
"""

from __future__ import annotations

import datetime
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredLock, gatherResults
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from mdmappliance.apns.client import ConnectionGone, Push, PushAnswer
from mdmappliance.core.timestamps import parse_timestamp, utc_timestamp
from mdmappliance.pki.pushcert import WARN_DAYS, PushCertificate
from mdmappliance.store import Store, Tx
from mdmappliance.store.pushes import PushRecord, PushTarget

log = Logger()

CHUNK = 1000
EXPIRY_CHECK_SECONDS = 86400.0
MAX_RETRY_DELAY = 300.0
INVALIDATING_400 = ("BadDeviceToken", "DeviceTokenNotForTopic")


class PushTransport(Protocol):
    async def push(self, push: Push) -> PushAnswer: ...


@dataclass(frozen=True)
class PushOutcome:
    """What to record for one enrollment after one attempt."""

    target: PushTarget
    status: str  # sent, unregistered, stale_unregistered, bad_token, rejected, retrying, failed
    reason: str | None = None
    apns_id: str | None = None
    invalidate: bool = False


def _millis(timestamp: str | None) -> int | None:
    if not timestamp:
        return None
    return int(parse_timestamp(timestamp).timestamp() * 1000)


def judge(target: PushTarget, answer: PushAnswer) -> PushOutcome:
    """What an answer means for the enrollment (403, 429 and 5xx are the caller's)."""
    if answer.status == 200:
        return PushOutcome(target, "sent", apns_id=answer.apns_id)
    if answer.status == 410:
        updated = _millis(target.token_updated_at)
        if (
            answer.timestamp_ms is not None
            and updated is not None
            and updated > answer.timestamp_ms
        ):
            # The token was renewed after APNs stopped accepting the old one: keep it.
            return PushOutcome(target, "stale_unregistered", answer.reason, answer.apns_id)
        return PushOutcome(target, "unregistered", answer.reason, answer.apns_id, invalidate=True)
    if answer.status == 400 and answer.reason in INVALIDATING_400:
        return PushOutcome(target, "bad_token", answer.reason, answer.apns_id, invalidate=True)
    return PushOutcome(target, "rejected", f"{answer.status} {answer.reason}", answer.apns_id)


def record_outcomes(tx: Tx, outcomes: list[PushOutcome]) -> None:
    """Each answer on its enrollment; the ones that need attention as events too."""
    tx.pushes.record(
        [
            PushRecord(o.target.enrollment_id, o.status, o.reason, o.apns_id, o.invalidate)
            for o in outcomes
        ],
        utc_timestamp(),
    )
    for o in outcomes:
        if o.invalidate or o.status in ("rejected", "failed"):
            tx.events.record(
                f"push.{o.status}",
                subject=o.target.udid,
                detail={"enrollment_id": o.target.enrollment_id, "reason": o.reason},
            )


def _pushable_page(tx: Tx, after_id: int, limit: int) -> list[int]:
    return tx.pushes.page(after_id, limit)


def _push_targets(tx: Tx, enrollment_ids: list[int]) -> list[PushTarget]:
    return tx.pushes.targets(enrollment_ids)


class Pusher:
    def __init__(
        self,
        store: Store,
        transport: PushTransport,
        clock: IReactorTime,
        topic: str,
        *,
        priority: int = 10,
        expiration_seconds: float = 72 * 3600,
        coalesce_seconds: float = 1.0,
        retries: int = 5,
        retry_base_seconds: float = 1.0,
        jitter: Callable[[], float] = random.random,
        chunk: int = CHUNK,
    ) -> None:
        self.store = store
        self.transport = transport
        self.clock = clock
        self.topic = topic
        self.priority = priority
        self.expiration_seconds = expiration_seconds
        self.coalesce_seconds = coalesce_seconds
        self.retries = retries
        self.retry_base_seconds = retry_base_seconds
        self.jitter = jitter
        self.chunk = chunk
        self.pending: dict[int, int] = {}  # enrollment id -> attempts so far
        self.blocked: str | None = None
        self.counts: dict[str, int] = {}
        self._flush_call: IDelayedCall | None = None
        self._flushing: Deferred[None] | None = None
        self._retry_calls: dict[int, IDelayedCall] = {}
        self._lock = DeferredLock()

    # Asking for pushes
    def request(self, enrollment_ids: Iterable[int], attempt: int = 0) -> None:
        """Push these enrollments within the coalescing window."""
        if self.blocked:
            return
        for enrollment_id in enrollment_ids:
            self.pending[enrollment_id] = max(attempt, self.pending.get(enrollment_id, 0))
        if self.pending and self._flush_call is None:
            self._flush_call = self.clock.callLater(self.coalesce_seconds, self._flush_now)

    def _flush_now(self) -> None:
        self._flush_call = None
        if self._flushing is not None:
            self._flushing.addBoth(lambda _: self._flush_now())
            return
        self._flushing = Deferred.fromCoroutine(self.flush())
        self._flushing.addErrback(lambda f: log.failure("pushing failed", f))
        self._flushing.addBoth(self._flushed)

    def _flushed(self, _: Any) -> None:
        self._flushing = None
        if self.pending and self._flush_call is None:
            self._flush_now()

    async def push_all(self) -> int:
        """Push every pushable enrollment, a page at a time (never all of them in memory)."""
        after, count = 0, 0
        while not self.blocked:
            page = await self.store.run(_pushable_page, after, self.chunk)
            if not page:
                return count
            await self._push_chunk({enrollment_id: 0 for enrollment_id in page})
            after, count = page[-1], count + len(page)
        return count

    async def flush(self) -> None:
        """Push everything pending now, a chunk at a time (one flush at a time)."""
        await self._lock.acquire()
        try:
            while self.pending and not self.blocked:
                ids = sorted(self.pending)[: self.chunk]
                chunk = {i: self.pending.pop(i) for i in ids}
                await self._push_chunk(chunk)
        finally:
            self._lock.release()

    # Pushing
    async def _push_chunk(self, attempts: dict[int, int]) -> None:
        targets = await self.store.run(_push_targets, list(attempts))
        results = await gatherResults(
            [Deferred.fromCoroutine(self._attempt(t, attempts[t.enrollment_id])) for t in targets]
        )
        outcomes = [o for o in results if o is not None]
        if outcomes:
            await self.store.transaction(record_outcomes, outcomes)

    def _push_of(self, target: PushTarget) -> Push:
        expiration = (
            int(self.clock.seconds() + self.expiration_seconds) if self.expiration_seconds else 0
        )
        return Push(
            target.token,
            target.push_magic,
            self.topic,
            self.priority,
            expiration,
            target.enrollment_id,
        )

    async def _attempt(self, target: PushTarget, attempt: int) -> PushOutcome | None:
        if self.blocked:
            return None
        try:
            answer = await self.transport.push(self._push_of(target))
        except ConnectionGone as e:
            return self._retry_or_fail(target, attempt, f"connection: {e}")
        except Exception as e:
            return self._retry_or_fail(target, attempt, f"{type(e).__name__}: {e}")
        self.counts[str(answer.status)] = self.counts.get(str(answer.status), 0) + 1
        if answer.status == 403:
            self._block(answer)
            return PushOutcome(target, "blocked", f"403 {answer.reason}")
        if answer.status == 429 or answer.status >= 500:
            return self._retry_or_fail(target, attempt, f"{answer.status} {answer.reason}")
        return judge(target, answer)

    def _retry_or_fail(self, target: PushTarget, attempt: int, why: str) -> PushOutcome:
        if attempt >= self.retries:
            return PushOutcome(target, "failed", why)
        delay = min(MAX_RETRY_DELAY, self.retry_base_seconds * 2**attempt)
        delay *= 0.5 + self.jitter()  # jitter: spread retries so they do not arrive together
        enrollment_id = target.enrollment_id

        def retry() -> None:
            self._retry_calls.pop(enrollment_id, None)
            self.request([enrollment_id], attempt + 1)

        previous = self._retry_calls.pop(enrollment_id, None)
        if previous is not None and previous.active():
            previous.cancel()
        self._retry_calls[enrollment_id] = self.clock.callLater(delay, retry)
        return PushOutcome(target, "retrying", why)

    def _block(self, answer: PushAnswer) -> None:
        if self.blocked:
            return
        self.blocked = f"APNs refused the push certificate: 403 {answer.reason}"
        log.critical(
            "{blocked}. Every push has stopped (commands stay queued). Import a valid push "
            "certificate (`mdmappliance pushcert import`) and restart.",
            blocked=self.blocked,
        )
        self.pending.clear()
        for call in self._retry_calls.values():
            if call.active():
                call.cancel()
        self._retry_calls.clear()

    def stop(self) -> None:
        for call in [self._flush_call, *self._retry_calls.values()]:
            if call is not None and call.active():
                call.cancel()
        self._flush_call = None
        self._retry_calls.clear()


class PushService(Service):
    """The APNs connection and the pusher, started and stopped with the appliance."""

    name = "apns"

    def __init__(
        self,
        client: Any,
        pusher: Pusher,
        certificate: PushCertificate,
        clock: IReactorTime | None = None,
    ) -> None:
        self.client = client
        self.pusher = pusher
        self.certificate = certificate
        self.expiry_check = LoopingCall(self.check_expiry)
        self.expiry_check.clock = clock or pusher.clock

    def startService(self) -> None:
        super().startService()
        self.client.start()
        self.expiry_check.start(EXPIRY_CHECK_SECONDS, now=True)

    def check_expiry(self) -> None:
        """Warn in the log every day from 30 days before the push certificate expires."""
        now = datetime.datetime.fromtimestamp(self.expiry_check.clock.seconds(), datetime.UTC)
        days = self.certificate.days_left(now)
        if days < 0:
            log.critical(
                "the push certificate for {topic} EXPIRED on {date}: no device can be pushed; "
                "renew it in the Apple Push Certificates Portal, then `mdmappliance pushcert "
                "import`",
                topic=self.certificate.topic,
                date=self.certificate.not_after.date().isoformat(),
            )
        elif days < WARN_DAYS:
            log.warn(
                "the push certificate for {topic} expires in {days:.0f} days ({date}); renew "
                "it in the Apple Push Certificates Portal, then `mdmappliance pushcert import`",
                topic=self.certificate.topic,
                days=days,
                date=self.certificate.not_after.date().isoformat(),
            )

    async def _stop(self) -> None:
        if self.expiry_check.running:
            self.expiry_check.stop()
        self.pusher.stop()
        await self.client.stop()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        return Deferred.fromCoroutine(self._stop())

    def status(self) -> dict[str, Any]:
        days = self.certificate.days_left()
        status: dict[str, Any] = {
            "enabled": True,
            "topic": self.certificate.topic,
            "certificate_expires": utc_timestamp(self.certificate.not_after),
            "certificate_days_left": round(days, 1),
            "pushes_by_status": dict(self.pusher.counts),
        }
        if self.pusher.blocked:
            status["alert"] = self.pusher.blocked
        elif days < WARN_DAYS:
            status["warning"] = f"the push certificate expires in {days:.0f} days"
        return status
