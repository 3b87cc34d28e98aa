"""Retention: old command results, answered commands and events are pruned after
``[retention] days``, in small batches, each its own short transaction, so check-ins keep
flowing between them.

Never pruned: commands still waiting for a result (they are marked expired when their expiry
passes, with an event, never dropped silently), events a webhook receiver has not yet
acknowledged, and events a queued command points at.
"""

from __future__ import annotations

import datetime
import sqlite3
from collections.abc import Sequence

from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger

from mdmappliance.commands.queue import expire_due
from mdmappliance.core.periodic import PeriodicJob
from mdmappliance.core.timestamps import utc_timestamp
from mdmappliance.store.engine import Store

log = Logger()


def expire_batch(conn: sqlite3.Connection, now: str, limit: int) -> int:
    return expire_due(conn, now, limit=limit, by="retention")


def prune_commands(conn: sqlite3.Connection, cutoff: str, limit: int) -> int:
    """Answered (or expired, or canceled) commands last changed before ``cutoff``, with
    their results; how many commands."""
    ids = [
        row[0]
        for row in conn.execute(
            "SELECT id FROM commands WHERE state NOT IN ('queued', 'sent', 'not_now') "
            "AND updated_at < ? ORDER BY id LIMIT ?",
            (cutoff, limit),
        )
    ]
    if not ids:
        return 0
    marks = ",".join("?" * len(ids))
    conn.execute(f"DELETE FROM command_results WHERE command_id IN ({marks})", ids)
    conn.execute(f"DELETE FROM commands WHERE id IN ({marks})", ids)
    conn.execute(
        "DELETE FROM command_bodies WHERE id NOT IN "
        "(SELECT body_id FROM commands WHERE body_id IS NOT NULL)"
    )
    return len(ids)


def prune_events(
    conn: sqlite3.Connection, cutoff: str, webhook_urls: Sequence[str], limit: int
) -> int:
    """Events older than ``cutoff`` that every receiver has and no command points at."""
    keep_from = None
    for url in webhook_urls:
        row = conn.execute(
            "SELECT last_event_id FROM webhook_cursors WHERE url = ?", (url,)
        ).fetchone()
        delivered = row[0] if row else 0
        keep_from = delivered if keep_from is None else min(keep_from, delivered)
    cursor = conn.execute(
        "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE at < ? AND id <= ? "
        "AND id NOT IN (SELECT batch_event_id FROM commands WHERE batch_event_id IS NOT NULL) "
        "ORDER BY id LIMIT ?)",
        (cutoff, keep_from if keep_from is not None else 2**62, limit),
    )
    return cursor.rowcount


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
        done = {"expired": 0, "commands": 0, "events": 0}
        steps = (
            ("expired", expire_batch, (utc_timestamp(now), self.batch)),
            ("commands", prune_commands, (cutoff, self.batch)),
            ("events", prune_events, (cutoff, self.webhook_urls, self.batch)),
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
                "retention: {expired} command(s) expired, {commands} old command(s) and "
                "{events} old event(s) pruned",
                **done,
            )
        return done
