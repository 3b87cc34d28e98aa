"""Retention: old command results, answered commands, events, and SCEP challenges and
transactions are pruned after
``[retention] days``, in small batches, each its own short transaction, so check-ins keep
flowing between them.

Never pruned: commands still waiting for a result (they are marked expired when their expiry
passes, with an event, never dropped silently), events a webhook receiver has not yet
acknowledged, and events a queued command points at.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence

from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger

from mdmappliance.commands.queue import expire_due
from mdmappliance.core.periodic import PeriodicJob
from mdmappliance.core.timestamps import utc_timestamp
from mdmappliance.store import Store, Tx
from mdmappliance.store.events import NO_LIMIT_ID

log = Logger()


def expire_batch(tx: Tx, now: str, limit: int) -> int:
    return expire_due(tx, now, limit=limit, by="retention")


def prune_commands(tx: Tx, cutoff: str, limit: int) -> int:
    """Answered (or expired, or canceled) commands last changed before ``cutoff``, with
    their results; how many commands."""
    return tx.commands.prune_answered(cutoff, limit)


def prune_events(tx: Tx, cutoff: str, webhook_urls: Sequence[str], limit: int) -> int:
    """Events older than ``cutoff`` that every receiver has and no command points at."""
    delivered = tx.webhooks.delivered_up_to(webhook_urls)
    return tx.events.prune(cutoff, NO_LIMIT_ID if delivered is None else delivered, limit)


def prune_scep(tx: Tx, cutoff: str, limit: int) -> int:
    """SCEP challenges that expired, and SCEP transactions made, before ``cutoff``."""
    return tx.scep.prune(cutoff, limit)


class RetentionJob(PeriodicJob):
    description = "retention job"

    def __init__(
        self,
        store: Store,
        clock: IReactorTime,
        keep: datetime.timedelta,
        *,
        webhook_urls: Sequence[str] = (),
        batch: int = 500,
    ) -> None:
        self.store = store
        self.clock = clock
        self.keep = keep
        self.webhook_urls = tuple(webhook_urls)
        self.batch = batch

    async def run_once(self) -> dict[str, int]:
        now = self.now()
        cutoff = utc_timestamp(now - self.keep)
        done = {"expired": 0, "commands": 0, "events": 0, "scep": 0}
        steps = (
            ("expired", expire_batch, (utc_timestamp(now), self.batch)),
            ("commands", prune_commands, (cutoff, self.batch)),
            ("events", prune_events, (cutoff, self.webhook_urls, self.batch)),
            ("scep", prune_scep, (cutoff, self.batch)),
        )
        for name, step, args in steps:
            while True:
                count = await self.store.transaction(step, *args)
                done[name] += count
                if count < self.batch:
                    break
                await deferLater(self.clock, 0, lambda: None)  # let device requests in
        if any(done.values()):
            log.info(
                "retention: {expired} command(s) expired, {commands} old command(s), "
                "{events} old event(s) and {scep} SCEP challenge/transaction row(s) pruned",
                **done,
            )
        return done
