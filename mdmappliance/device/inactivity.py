"""Detecting inactive devices ("Detecting Inactive Devices"): push the quiet ones, and mark
those that stay silent for too long.

A device that has not been heard from for ``push_after`` is pushed (at most once per
``push_after``), to see whether it still listens; one not heard from for ``inactive_after``
is marked inactive with an event. Its next contact makes it active again (``enrollments.touch``).
"""

from __future__ import annotations

import datetime
import sqlite3

from twisted.application.internet import TimerService
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from mdmappliance.apns.pusher import Pusher
from mdmappliance.core.periodic import PeriodicJob, timer_service
from mdmappliance.core.timestamps import utc_timestamp
from mdmappliance.store.engine import Store
from mdmappliance.store.events import record_event

log = Logger()
PAGE = 1000


def quiet_enrollments(conn: sqlite3.Connection, seen_before: str, after_id: int) -> list[int]:
    """Enrolled channels with a valid token, silent since ``seen_before`` and not pushed
    since then either; a page at a time."""
    rows = conn.execute(
        "SELECT id FROM enrollments WHERE state = 'enrolled' AND token_valid = 1 "
        "AND last_seen < ? AND (push_at IS NULL OR push_at < ?) AND id > ? ORDER BY id LIMIT ?",
        (seen_before, seen_before, after_id, PAGE),
    ).fetchall()
    return [row[0] for row in rows]


def mark_inactive(conn: sqlite3.Connection, seen_before: str) -> int:
    rows = conn.execute(
        "SELECT id, udid, user_id, last_seen FROM enrollments WHERE state = 'enrolled' "
        "AND inactive_since IS NULL AND last_seen < ? LIMIT ?",
        (seen_before, PAGE),
    ).fetchall()
    now = utc_timestamp()
    for enrollment_id, udid, user_id, last_seen in rows:
        conn.execute("UPDATE enrollments SET inactive_since = ? WHERE id = ?", (now, enrollment_id))
        record_event(
            conn,
            "enrollment.inactive",
            subject=udid,
            detail={"enrollment_id": enrollment_id, "user_id": user_id, "last_seen": last_seen},
        )
    return len(rows)


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
            while page := await self.store.run(quiet_enrollments, cutoff, after):
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


def inactivity_service(job: InactivityJob, interval: float, clock: IReactorTime) -> TimerService:
    return timer_service(job, interval, clock, "inactivity")
