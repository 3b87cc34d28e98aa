"""Device identity lifecycle: renewal before expiry, revocation, retirement.

- Renewal ("Updating Expired Profiles"): a periodic job finds enrolled devices whose bound
  identity expires within ``[enrollment] renew_within_days`` and queues an InstallProfile of a
  fresh enrollment profile with the same top-level PayloadIdentifier (with SCEP, carrying a
  fresh one-time challenge bound to that device; Apple's clients do not send RenewalReq on
  their own, SCEP clients that do are renewed by the SCEP server directly). The device replaces its
  profile, re-Authenticates with the new identity, and the device channel re-binds it. The
  new MDM payload announces the ServerCapabilities the device enrolled with (recorded at
  its Authenticate): Apple rejects an update that adds or removes per-user-connections.
- Revocation puts a device's identities on the deny list: every request made with them is
  refused (403, audited), whatever they are bound to.
- Retirement queues a RemoveProfile for the MDM profile; once the device answers it (or at
  once, when forced), the enrollment is retired and the device gets 401 from then on.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from functools import partial
from typing import Any

from twisted.application.internet import TimerService
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.threads import deferToThread
from twisted.logger import Logger

from mdmappliance.commands.queue import enqueue
from mdmappliance.core.periodic import PeriodicJob, timer_service
from mdmappliance.core.timestamps import parse_timestamp, utc_timestamp
from mdmappliance.enrollment.factory import MadeProfile, ProfileFactory
from mdmappliance.enrollment.links import record_issued
from mdmappliance.scep.challenges import record_challenge
from mdmappliance.store import Store, Tx
from mdmappliance.store.enrollments import DueIdentity

log = Logger()
RENEWAL_PRIORITY = 100


def identities_due(tx: Tx, cutoff: str) -> list[DueIdentity]:
    """Bound, unrevoked identities of enrolled devices expiring before ``cutoff`` that have
    no renewal queued yet (a hundred at a time)."""
    return tx.enrollments.identities_due(cutoff)


def queue_renewal(
    tx: Tx,
    due: DueIdentity,
    made: MadeProfile,
    access_rights: int | None = None,
) -> str:
    """InstallProfile of the fresh enrollment profile, recorded as the renewal of ``due``.

    A PKCS#12 profile's identity is recorded now; a SCEP profile's challenge is recorded
    bound to this device and identity (valid until that identity expires), and the identity
    it gets is recorded when the device asks for it."""
    new_sha256: str | None = None
    if made.identity is not None:
        new_sha256 = record_issued(
            tx,
            made.identity.certificate,
            renews=due.sha256,
            udid=due.udid,
            access_rights=access_rights,
        )
    else:
        assert made.scep is not None
        record_challenge(
            tx,
            made.scep.challenge,
            made.scep.subject,
            parse_timestamp(due.not_after),
            renews_sha256=due.sha256,
            udid=due.udid,
            access_rights=access_rights,
        )
    command_uuid = enqueue(
        tx,
        due.enrollment_id,
        {"RequestType": "InstallProfile", "Payload": made.signed},
        priority=RENEWAL_PRIORITY,
        actor="renewal",
    )
    tx.links.record_renewal(due.sha256, new_sha256, due.udid, command_uuid, utc_timestamp())
    tx.events.record(
        "identity.renewal_queued",
        subject=due.udid,
        detail={
            "old_sha256": due.sha256,
            "new_sha256": new_sha256,
            "by": "pkcs12" if made.identity is not None else "scep",
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
            made = await self._make(
                partial(
                    self.factory.make, f"mdmappliance device {due.udid}", due.server_capabilities
                )
            )
            queued.append(
                await self.store.transaction(
                    queue_renewal, due, made, self.factory.settings().access_rights
                )
            )
        if queued:
            log.info("queued {count} identity renewal(s)", count=len(queued))
        return queued


def renewal_service(job: RenewalJob, interval: float, clock: IReactorTime) -> TimerService:
    return timer_service(job, interval, clock, "identity-renewal")
