"""Retention: old history goes, in small batches; unanswered commands, undelivered webhook
events and events a command points at stay; expired commands are marked, with an event."""

from __future__ import annotations

import datetime
import time
from pathlib import Path
from typing import Any

from twisted.internet import task
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from mdmappliance.app.reactor import global_reactor
from mdmappliance.app.retention import RetentionJob
from mdmappliance.core.timestamps import utc_timestamp
from mdmappliance.store import Store
from tests.support import query

NOW = datetime.datetime.now(datetime.UTC)
OLD = utc_timestamp(NOW - datetime.timedelta(days=200))
RECENT = utc_timestamp(NOW - datetime.timedelta(days=1))


def seed(tx: Any) -> None:
    conn = tx.conn
    conn.execute(
        "INSERT INTO devices (udid, first_seen, updated_at) VALUES ('U-1', ?, ?)", (OLD, OLD)
    )
    conn.execute(
        "INSERT INTO enrollments (id, udid, topic, state, created_at, updated_at) "
        "VALUES (1, 'U-1', 'com.apple.mgmt.t', 'enrolled', ?, ?)",
        (OLD, OLD),
    )
    for n in range(1, 8):
        conn.execute(
            "INSERT INTO events (id, at, kind, actor, subject, detail) "
            "VALUES (?, ?, 'x.old', 'system', NULL, '{}')",
            (n, OLD),
        )
    conn.execute(
        "INSERT INTO events (id, at, kind, actor, subject, detail) "
        "VALUES (8, ?, 'x.recent', 'system', NULL, '{}')",
        (RECENT,),
    )
    commands = [
        # (uuid, state, updated_at, expires_at, batch_event_id)
        *[(f"OLD-ANSWERED-{n}", "acknowledged", OLD, None, None) for n in range(5)],
        ("OLD-PENDING", "queued", OLD, None, 2),
        ("OLD-EXPIRING", "sent", OLD, OLD, None),
        ("RECENT-ANSWERED", "error", RECENT, None, None),
    ]
    for uuid, state, updated, expires, batch in commands:
        cursor = conn.execute(
            "INSERT INTO commands (uuid, enrollment_id, request_type, payload, state, created_at, "
            "expires_at, updated_at, batch_event_id) VALUES (?, 1, 'ProfileList', x'00', ?, ?, ?, "
            "?, ?)",
            (uuid, state, updated, expires, updated, batch),
        )
        if state in ("acknowledged", "error"):
            conn.execute(
                "INSERT INTO command_results (command_id, status, raw, received_at) "
                "VALUES (?, 'Acknowledged', x'00', ?)",
                (cursor.lastrowid, updated),
            )
    conn.execute(
        "INSERT INTO webhook_cursors (url, last_event_id, updated_at) VALUES ('http://h/', 5, ?)",
        (RECENT,),
    )
    for name, expires in (("old-1", OLD), ("old-2", OLD), ("old-3", OLD), ("live", RECENT)):
        conn.execute(
            "INSERT INTO scep_challenges (challenge_sha256, subject, created_at, expires_at) "
            "VALUES (?, 'CN=x', ?, ?)",
            (name, expires, expires),
        )
    for name, created in (("T-old", OLD), ("T-recent", RECENT)):
        conn.execute(
            "INSERT INTO scep_transactions (transaction_id, signer_sha256, certificate, "
            "issued_sha256, created_at) VALUES (?, 's', x'00', 'i', ?)",
            (name, created),
        )


class Retention(TestCase):
    timeout = 30

    async def test_prunes_what_may_go_and_keeps_what_must_stay(self) -> None:
        db = Path(self.mktemp())
        store = Store(db, reactor=global_reactor())
        store.startService()
        self.addCleanup(store.stopService)
        await store.transaction(seed)
        clock = task.Clock()
        clock.advance(time.time())
        job = RetentionJob(
            store, clock, datetime.timedelta(days=90), webhook_urls=["http://h/"], batch=2
        )
        done = Deferred.fromCoroutine(job.run_once())
        for _ in range(20):
            clock.advance(0)
            await task.deferLater(global_reactor(), 0.01, lambda: None)
        result = await done
        self.assertEqual(result, {"expired": 1, "commands": 5, "events": 4, "scep": 3})
        self.assertEqual(query(db, "SELECT challenge_sha256 FROM scep_challenges"), [("live",)])
        self.assertEqual(query(db, "SELECT transaction_id FROM scep_transactions"), [("T-recent",)])
        self.assertEqual(
            query(db, "SELECT uuid, state FROM commands ORDER BY uuid"),
            [
                ("OLD-EXPIRING", "expired"),  # marked, not dropped: it is recent history now
                ("OLD-PENDING", "queued"),  # never pruned while unanswered
                ("RECENT-ANSWERED", "error"),
            ],
        )
        self.assertEqual(query(db, "SELECT count(*) FROM command_results"), [(1,)])
        kept = [row[0] for row in query(db, "SELECT id FROM events ORDER BY id")]
        # 1, 3, 4, 5 go; 2 (a queued command's batch), 6 and 7 (not yet delivered to the
        # webhook receiver) and 8 (recent) stay, plus the expiry event just written.
        self.assertEqual(kept[:4], [2, 6, 7, 8])
        self.assertEqual(query(db, "SELECT kind FROM events WHERE id > 8"), [("command.expired",)])
