"""The append-only event log: what happened, when, and who did it.

Writers record an event inside the same transaction as the change it describes, so an event
exists exactly when its change does. The audit log, the events API and the webhook outbox
read it; a trigger refuses updates.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from mdmappliance.core.timestamps import utc_timestamp
from mdmappliance.store.family import Family, id_list

SYSTEM_ACTOR = "system"
#: A device's own actions are recorded as ``device:<UDID>``.
DEVICE_ACTOR_PREFIX = "device:"
#: Above any event id: "no upper bound" for ``prune``.
NO_LIMIT_ID = 2**62


@dataclass(frozen=True)
class Event:
    id: int
    at: str
    kind: str
    actor: str
    subject: str | None
    detail: dict[str, Any]


def device_actor(udid: str) -> str:
    """Who a device's own actions are recorded as, in the event log."""
    return f"{DEVICE_ACTOR_PREFIX}{udid}"


class Events(Family):
    __slots__ = ()

    def record(
        self,
        kind: str,
        *,
        actor: str = SYSTEM_ACTOR,
        subject: str | None = None,
        detail: Mapping[str, Any] | None = None,
        at: str | None = None,
    ) -> int:
        """Append one event and return its id (the cursor the events API pages by)."""
        cursor = self._conn.execute(
            "INSERT INTO events (at, kind, actor, subject, detail) VALUES (?, ?, ?, ?, ?)",
            (at or utc_timestamp(), kind, actor, subject, json.dumps(dict(detail or {}))),
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def after(
        self, after_id: int = 0, limit: int = 100, kinds: Collection[str] | None = None
    ) -> list[Event]:
        """Events after the cursor ``after_id``, oldest first (only ``kinds``, if given)."""
        if kinds is None:
            rows = self._conn.execute(
                "SELECT id, at, kind, actor, subject, detail FROM events WHERE id > ? "
                "ORDER BY id LIMIT ?",
                (after_id, limit),
            ).fetchall()
        else:
            rows = self._conn.execute(
                "SELECT id, at, kind, actor, subject, detail FROM events WHERE id > ? "
                "AND kind IN (SELECT value FROM json_each(?)) ORDER BY id LIMIT ?",
                (after_id, id_list(kinds), limit),
            ).fetchall()
        return [Event(r[0], r[1], r[2], r[3], r[4], json.loads(r[5])) for r in rows]

    def count_after(self, after_id: int, kinds: Collection[str]) -> int:
        row = self._conn.execute(
            "SELECT count(*) FROM events WHERE id > ? AND kind IN (SELECT value FROM json_each(?))",
            (after_id, id_list(kinds)),
        ).fetchone()
        return int(row[0])

    def prune(self, before: str, up_to_id: int, limit: int) -> int:
        """Delete up to ``limit`` events older than ``before`` with ids up to ``up_to_id``,
        except those a command points at (its batch's admin action); how many."""
        cursor = self._conn.execute(
            "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE at < ? AND id <= ? "
            "AND id NOT IN (SELECT batch_event_id FROM commands WHERE batch_event_id IS NOT NULL) "
            "ORDER BY id LIMIT ?)",
            (before, up_to_id, limit),
        )
        return cursor.rowcount
