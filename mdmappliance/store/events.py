"""The append-only event log: what happened, when, and who did it.

Writers call ``record_event`` inside the same transaction as the change it describes, so
an event exists exactly when its change does.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mdmappliance.core.timestamps import utc_timestamp

SYSTEM_ACTOR = "system"


@dataclass(frozen=True)
class Event:
    id: int
    at: str
    kind: str
    actor: str
    subject: str | None
    detail: dict[str, Any]


def record_event(
    conn: sqlite3.Connection,
    kind: str,
    *,
    actor: str = SYSTEM_ACTOR,
    subject: str | None = None,
    detail: Mapping[str, Any] | None = None,
    at: str | None = None,
) -> int:
    """Append one event and return its id (the cursor the events API pages by)."""
    cursor = conn.execute(
        "INSERT INTO events (at, kind, actor, subject, detail) VALUES (?, ?, ?, ?, ?)",
        (at or utc_timestamp(), kind, actor, subject, json.dumps(dict(detail or {}))),
    )
    assert cursor.lastrowid is not None
    return cursor.lastrowid


def events_after(conn: sqlite3.Connection, after_id: int = 0, limit: int = 100) -> list[Event]:
    rows = conn.execute(
        "SELECT id, at, kind, actor, subject, detail FROM events WHERE id > ? ORDER BY id LIMIT ?",
        (after_id, limit),
    ).fetchall()
    return [Event(r[0], r[1], r[2], r[3], r[4], json.loads(r[5])) for r in rows]
