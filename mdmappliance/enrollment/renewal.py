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

from mdmappliance.commands.queue import enqueue
from mdmappliance.core.periodic import PeriodicJob, timer_service
from mdmappliance.core.timestamps import utc_timestamp
from mdmappliance.enrollment.factory import ProfileFactory
from mdmappliance.enrollment.links import record_issued
from mdmappliance.store.engine import Store
from mdmappliance.store.events import record_event

log = Logger()
RENEWAL_PRIORITY = 100


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
