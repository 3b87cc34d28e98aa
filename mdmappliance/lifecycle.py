"""Device identity lifecycle: renewal before expiry, revocation, retirement.

- Renewal ("Updating Expired Profiles"): a periodic job finds enrolled devices whose bound
  identity expires within ``[enrollment] renew_within_days`` and queues an InstallProfile of a
  fresh enrollment profile with the same top-level PayloadIdentifier. The device replaces its
  profile, re-Authenticates with the new identity, and the device channel re-binds it.
- Revocation puts a device's identities on the deny list: every request made with them is
  refused (403, audited), whatever they are bound to.
- Retirement queues a RemoveProfile for the MDM profile; once the device answers it (or at
  once, when forced), the enrollment is retired and the device gets 401 from then on.
"""

from __future__ import annotations

import datetime
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from twisted.application.internet import TimerService
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.threads import deferToThread
from twisted.logger import Logger

from mdmappliance.enrollchannel import ProfileFactory
from mdmappliance.enrollment import record_issued
from mdmappliance.events import record_event, utc_timestamp
from mdmappliance.jobs import PeriodicJob, timer_service
from mdmappliance.queue import CommandRejected, enqueue
from mdmappliance.store import Store

log = Logger()
RENEWAL_PRIORITY = 100
RETIRE_PRIORITY = 1000


@dataclass(frozen=True)
class DueIdentity:
    udid: str
    enrollment_id: int
    sha256: str
    not_after: str


def identities_due(conn: sqlite3.Connection, cutoff: str) -> list[DueIdentity]:
    """Bound, unrevoked identities of enrolled devices expiring before ``cutoff`` that have
    no renewal queued yet."""
    rows = conn.execute(
        "SELECT i.udid, e.id, i.sha256, i.not_after FROM identities AS i "
        "JOIN enrollments AS e ON e.udid = i.udid AND e.user_id = '' "
        "WHERE i.current = 1 AND i.revoked_at IS NULL AND e.state = 'enrolled' "
        "AND e.retire_command_uuid IS NULL AND i.not_after <= ? "
        "AND NOT EXISTS (SELECT 1 FROM renewals AS r WHERE r.old_sha256 = i.sha256) "
        "ORDER BY i.not_after LIMIT 100",
        (cutoff,),
    ).fetchall()
    return [DueIdentity(*row) for row in rows]


def queue_renewal(
    conn: sqlite3.Connection,
    due: DueIdentity,
    certificate: Any,
    signed_profile: bytes,
    access_rights: int | None = None,
) -> str:
    """InstallProfile of the fresh enrollment profile, recorded as the renewal of ``due``."""
    new_sha256 = record_issued(
        conn, certificate, renews=due.sha256, udid=due.udid, access_rights=access_rights
    )
    command_uuid = enqueue(
        conn,
        due.enrollment_id,
        {"RequestType": "InstallProfile", "Payload": signed_profile},
        priority=RENEWAL_PRIORITY,
        actor="renewal",
    )
    conn.execute(
        "INSERT INTO renewals (old_sha256, new_sha256, udid, command_uuid, queued_at) "
        "VALUES (?, ?, ?, ?, ?)",
        (due.sha256, new_sha256, due.udid, command_uuid, utc_timestamp()),
    )
    record_event(
        conn,
        "identity.renewal_queued",
        subject=due.udid,
        detail={
            "old_sha256": due.sha256,
            "new_sha256": new_sha256,
            "expires": due.not_after,
            "command_uuid": command_uuid,
        },
    )
    return command_uuid


class RenewalJob(PeriodicJob):
    """Finds identities due for renewal and queues their renewal; never raises."""

    description = "identity renewal job"

    def __init__(
        self,
        store: Store,
        factory: ProfileFactory,
        clock: IReactorTime,
        window: datetime.timedelta,
        make: Callable[[Callable[[], Any]], Deferred[Any]] | None = None,
    ) -> None:
        self.store = store
        self.factory = factory
        self.clock = clock
        self.window = window
        self._make = make or (lambda f: deferToThread(f))

    async def run_once(self) -> list[str]:
        cutoff = utc_timestamp(self.now() + self.window)
        queued: list[str] = []
        for due in await self.store.run(identities_due, cutoff):
            identity, signed = await self._make(
                partial(self.factory.make, f"mdmappliance device {due.udid}")
            )
            queued.append(
                await self.store.transaction(
                    queue_renewal,
                    due,
                    identity.certificate,
                    signed,
                    self.factory.settings().access_rights,
                )
            )
        if queued:
            log.info("queued {count} identity renewal(s)", count=len(queued))
        return queued


def renewal_service(job: RenewalJob, interval: float, clock: IReactorTime) -> TimerService:
    return timer_service(job, interval, clock, "identity-renewal")


def revoke_device(conn: sqlite3.Connection, udid: str, actor: str) -> int:
    """Deny every identity bound to ``udid``; the number revoked (0: unknown device)."""
    now = utc_timestamp()
    cursor = conn.execute(
        "UPDATE identities SET revoked_at = ? WHERE udid = ? AND revoked_at IS NULL",
        (now, udid),
    )
    conn.execute(
        "UPDATE issued_identities SET udid = coalesce(udid, ?) WHERE sha256 IN "
        "(SELECT sha256 FROM identities WHERE udid = ?)",
        (udid, udid),
    )
    if cursor.rowcount:
        record_event(
            conn, "identity.revoked", actor=actor, subject=udid, detail={"count": cursor.rowcount}
        )
    return cursor.rowcount


def retire_device(
    conn: sqlite3.Connection, udid: str, profile_identifier: str, actor: str, *, now: bool = False
) -> str | None:
    """Queue RemoveProfile of the MDM profile (retired once answered), or retire at once."""
    row = conn.execute(
        "SELECT id, state FROM enrollments WHERE udid = ? AND user_id = ''", (udid,)
    ).fetchone()
    if row is None:
        raise CommandRejected(f"no enrollment for {udid}")
    enrollment_id, state = row
    if state == "retired":
        return None
    if now or state == "checked_out":
        _mark_retired(conn, udid, actor)
        return None
    command_uuid = enqueue(
        conn,
        enrollment_id,
        {"RequestType": "RemoveProfile", "Identifier": profile_identifier},
        priority=RETIRE_PRIORITY,
        actor=actor,
    )
    conn.execute(
        "UPDATE enrollments SET retire_command_uuid = ? WHERE id = ?", (command_uuid, enrollment_id)
    )
    record_event(
        conn,
        "enrollment.retire_requested",
        actor=actor,
        subject=udid,
        detail={"command_uuid": command_uuid},
    )
    return command_uuid


def _mark_retired(conn: sqlite3.Connection, udid: str, actor: str) -> None:
    conn.execute(
        "UPDATE enrollments SET state = 'retired', token_valid = 0, updated_at = ? WHERE udid = ?",
        (utc_timestamp(), udid),
    )
    record_event(conn, "enrollment.retired", actor=actor, subject=udid)


def finish_retirement(conn: sqlite3.Connection, udid: str, command_uuid: str | None) -> bool:
    """Called with each result: the answer to the retiring RemoveProfile retires the device."""
    if command_uuid is None:
        return False
    row = conn.execute(
        "SELECT 1 FROM enrollments WHERE udid = ? AND user_id = '' AND retire_command_uuid = ?",
        (udid, command_uuid),
    ).fetchone()
    if row is None:
        return False
    _mark_retired(conn, udid, f"device:{udid}")
    return True
