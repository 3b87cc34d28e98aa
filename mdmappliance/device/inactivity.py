"""Detecting inactive devices ("Detecting Inactive Devices"): push the quiet ones, and mark
those that stay silent for too long.

A device that has not been heard from for ``push_after`` is pushed (at most once per
``push_after``), to see whether it still listens; one not heard from for ``inactive_after``
is marked inactive with an event. Its next contact makes it active again (``binding.touch``).
"""

from __future__ import annotations

import datetime

from twisted.application.internet import TimerService
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from mdmappliance.apns.pusher import Pusher
from mdmappliance.core.periodic import PeriodicJob, timer_service
from mdmappliance.core.timestamps import utc_timestamp
from mdmappliance.store import Store, Tx

log = Logger()
PAGE = 1000


def mark_inactive(tx: Tx, seen_before: str) -> int:
    """Mark (a page of) the enrolled channels silent since ``seen_before`` inactive, with
    an event each; how many."""
    now = utc_timestamp()
    stale = tx.enrollments.stale(seen_before, PAGE)
    for quiet in stale:
        tx.enrollments.mark_inactive(quiet.enrollment_id, now)
        tx.events.record(
            "enrollment.inactive",
            subject=quiet.udid,
            detail={
                "enrollment_id": quiet.enrollment_id,
                "user_id": quiet.user_id,
                "last_seen": quiet.last_seen,
            },
        )
    return len(stale)


class InactivityJob(PeriodicJob):
    """Never raises: a failure is logged and the job runs again next time."""

    description = "inactive-device job"

    def __init__(
        self,
        store: Store,
        pusher: Pusher | None,
        clock: IReactorTime,
        push_after: datetime.timedelta,
        inactive_after: datetime.timedelta,
    ) -> None:
        self.store = store
        self.pusher = pusher
        self.clock = clock
        self.push_after = push_after
        self.inactive_after = inactive_after

    async def run_once(self) -> tuple[int, int]:
        """(enrollments pushed, enrollments newly marked inactive)."""
        now = self.now()
        pushed = 0
        if self.pusher is not None and not self.pusher.blocked:
            cutoff, after = utc_timestamp(now - self.push_after), 0
            while page := await self.store.run(_quiet, cutoff, after):
                self.pusher.request(page)
                pushed += len(page)
                after = page[-1]
        marked = 0
        cutoff = utc_timestamp(now - self.inactive_after)
        while count := await self.store.transaction(mark_inactive, cutoff):
            marked += count
        if pushed or marked:
            log.info(
                "inactive devices: pushed {pushed} quiet enrollment(s), {marked} now inactive",
                pushed=pushed,
                marked=marked,
            )
        return pushed, marked


def _quiet(tx: Tx, seen_before: str, after_id: int) -> list[int]:
    return tx.enrollments.quiet(seen_before, after_id, PAGE)


def inactivity_service(job: InactivityJob, interval: float, clock: IReactorTime) -> TimerService:
    return timer_service(job, interval, clock, "inactivity")
