"""Inventory: each enrollment's current state by kind (profiles, apps, certificates ...),
each the latest answer of its kind."""

from __future__ import annotations

import json
from typing import Any

from mdmappliance.store.family import Family


class Inventory(Family):
    __slots__ = ()

    def get(self, enrollment_id: int, kind: str) -> Any:
        """The stored data of one kind (None when there is none)."""
        row = self._conn.execute(
            "SELECT data FROM inventory WHERE enrollment_id = ? AND kind = ?",
            (enrollment_id, kind),
        ).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, enrollment_id: int, kind: str, data: Any, command_uuid: str, now: str) -> None:
        """Replace the enrollment's state of this kind with ``data`` (JSON)."""
        self._conn.execute(
            "INSERT INTO inventory (enrollment_id, kind, data, command_uuid, reported_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (enrollment_id, kind) DO UPDATE SET "
            "data = excluded.data, command_uuid = excluded.command_uuid, "
            "reported_at = excluded.reported_at",
            (enrollment_id, kind, json.dumps(data, sort_keys=True), command_uuid, now),
        )

    def mark_reported(self, enrollment_id: int, kind: str, command_uuid: str, now: str) -> None:
        """The stored state of this kind was reported again, unchanged (no JSON rewritten)."""
        self._conn.execute(
            "UPDATE inventory SET command_uuid = ?, reported_at = ? "
            "WHERE enrollment_id = ? AND kind = ?",
            (command_uuid, now, enrollment_id, kind),
        )

    def of(self, enrollment_id: int) -> dict[str, dict[str, Any]]:
        """The enrollment's current state by kind: ``{kind: {data, reported_at, command_uuid}}``."""
        rows = self._conn.execute(
            "SELECT kind, data, reported_at, command_uuid FROM inventory WHERE enrollment_id = ? "
            "ORDER BY kind",
            (enrollment_id,),
        ).fetchall()
        return {
            kind: {"data": json.loads(data), "reported_at": at, "command_uuid": uuid}
            for kind, data, at, uuid in rows
        }
