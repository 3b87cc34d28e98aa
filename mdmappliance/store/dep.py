"""DEP: the devices assigned to this server (by serial), the DEP profiles defined here, and
where the device sync is."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from mdmappliance.store.family import Family


@dataclass(frozen=True)
class SyncState:
    cursor: str | None
    phase: str  # "fetch" (pages of Fetch Devices still to come) or "sync"
    last_run_at: str | None
    last_success_at: str | None
    alert: str | None


@dataclass(frozen=True)
class DEPDevice:
    serial: str
    state: str
    model: str | None
    description: str | None
    os: str | None
    device_family: str | None
    profile_status: str | None
    profile_uuid: str | None
    profile_assign_time: str | None
    device_assigned_date: str | None
    op_type: str | None
    op_date: str | None
    updated_at: str

    def as_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


_COLUMNS = (
    "serial, state, model, description, os, device_family, profile_status, profile_uuid, "
    "profile_assign_time, device_assigned_date, op_type, op_date, updated_at"
)


class DEP(Family):
    __slots__ = ()

    # The sync's place
    def sync_state(self) -> SyncState:
        row = self._conn.execute(
            "SELECT cursor, phase, last_run_at, last_success_at, alert FROM dep_sync WHERE id = 1"
        ).fetchone()
        if row is None:
            return SyncState(None, "fetch", None, None, None)
        return SyncState(*row)

    def save_cursor(self, cursor: str | None, phase: str, now: str) -> None:
        self._conn.execute(
            "INSERT INTO dep_sync (id, cursor, phase, updated_at) VALUES (1, ?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET cursor = excluded.cursor, phase = excluded.phase, "
            "updated_at = excluded.updated_at",
            (cursor, phase, now),
        )

    def record_run(self, now: str, *, success: bool, alert: str | None) -> None:
        self._conn.execute(
            "INSERT INTO dep_sync (id, phase, last_run_at, last_success_at, alert, updated_at) "
            "VALUES (1, 'fetch', ?, CASE WHEN ? THEN ? END, ?, ?) ON CONFLICT (id) DO UPDATE SET "
            "last_run_at = excluded.last_run_at, last_success_at = CASE WHEN ? THEN ? ELSE "
            "dep_sync.last_success_at END, alert = excluded.alert, "
            "updated_at = excluded.updated_at",
            (now, success, now, alert, now, success, now),
        )

    # Devices
    def existing(self, serials: Iterable[str]) -> dict[str, tuple[str, str | None]]:
        """State and last op_date of the serials already known, by serial."""
        rows = self._conn.execute(
            "SELECT serial, state, op_date FROM dep_devices WHERE serial IN "
            "(SELECT value FROM json_each(?))",
            (json.dumps(list(serials)),),
        ).fetchall()
        return {serial: (state, op_date) for serial, state, op_date in rows}

    def upsert(self, device: dict[str, Any], state: str, now: str) -> None:
        """Write one device as Apple sent it (the whole record is kept in ``data``)."""
        self._conn.execute(
            "INSERT INTO dep_devices (serial, state, model, description, os, device_family, "
            "profile_status, profile_uuid, profile_assign_time, device_assigned_date, op_type, "
            "op_date, data, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (serial) DO UPDATE SET state = excluded.state, model = "
            "coalesce(excluded.model, model), description = coalesce(excluded.description, "
            "description), os = coalesce(excluded.os, os), device_family = "
            "coalesce(excluded.device_family, device_family), profile_status = "
            "excluded.profile_status, profile_uuid = excluded.profile_uuid, "
            "profile_assign_time = excluded.profile_assign_time, device_assigned_date = "
            "coalesce(excluded.device_assigned_date, device_assigned_date), op_type = "
            "excluded.op_type, op_date = excluded.op_date, data = excluded.data, updated_at = "
            "excluded.updated_at",
            (
                device["serial_number"],
                state,
                device.get("model"),
                device.get("description"),
                device.get("os"),
                device.get("device_family"),
                device.get("profile_status"),
                device.get("profile_uuid"),
                device.get("profile_assign_time"),
                device.get("device_assigned_date"),
                device.get("op_type") or None,
                device.get("op_date"),
                json.dumps(device),
                now,
            ),
        )

    def mark_state(self, serial: str, state: str, op_type: str, now: str) -> None:
        """A change made here (disowned): the state, the rest as Apple last said."""
        self._conn.execute(
            "UPDATE dep_devices SET state = ?, op_type = ?, op_date = ?, updated_at = ? "
            "WHERE serial = ?",
            (state, op_type, now, now, serial),
        )

    def set_profile(
        self, serials: Iterable[str], profile_uuid: str | None, status: str, now: str
    ) -> int:
        cursor = self._conn.execute(
            "UPDATE dep_devices SET profile_uuid = ?, profile_status = ?, profile_assign_time = "
            "CASE WHEN ? IS NULL THEN NULL ELSE ? END, updated_at = ? WHERE serial IN "
            "(SELECT value FROM json_each(?))",
            (profile_uuid, status, profile_uuid, now, now, json.dumps(list(serials))),
        )
        return cursor.rowcount

    def get(self, serial: str) -> DEPDevice | None:
        row = self._conn.execute(
            f"SELECT {_COLUMNS} FROM dep_devices WHERE serial = ?", (serial,)
        ).fetchone()
        return None if row is None else DEPDevice(*row)

    def page(self, after: str, limit: int) -> list[DEPDevice]:
        rows = self._conn.execute(
            f"SELECT {_COLUMNS} FROM dep_devices WHERE serial > ? ORDER BY serial LIMIT ?",
            (after, limit),
        ).fetchall()
        return [DEPDevice(*row) for row in rows]

    def without_profile(self, limit: int) -> list[str]:
        """Assigned devices with no profile (or a removed one): what the default profile is
        for."""
        rows = self._conn.execute(
            "SELECT serial FROM dep_devices WHERE state = 'assigned' AND (profile_uuid IS NULL "
            "OR profile_status IN ('empty', 'removed')) ORDER BY serial LIMIT ?",
            (limit,),
        ).fetchall()
        return [row[0] for row in rows]

    def count(self) -> dict[str, int]:
        rows = self._conn.execute(
            "SELECT state, count(*) FROM dep_devices GROUP BY state"
        ).fetchall()
        return {state: count for state, count in rows}

    # Profiles
    def add_profile(
        self, profile_uuid: str, name: str, body: dict[str, Any], default: bool, now: str
    ) -> None:
        if default:
            self._conn.execute("UPDATE dep_profiles SET is_default = 0")
        self._conn.execute(
            "INSERT INTO dep_profiles (profile_uuid, name, body, is_default, defined_at) VALUES "
            "(?, ?, ?, ?, ?) ON CONFLICT (profile_uuid) DO UPDATE SET name = excluded.name, body "
            "= excluded.body, is_default = excluded.is_default",
            (profile_uuid, name, json.dumps(body), int(default), now),
        )

    def profiles(self) -> list[dict[str, Any]]:
        rows = self._conn.execute(
            "SELECT profile_uuid, name, body, is_default, defined_at FROM dep_profiles "
            "ORDER BY defined_at"
        ).fetchall()
        return [
            {
                "profile_uuid": uuid,
                "name": name,
                "body": json.loads(body),
                "default": bool(default),
                "defined_at": at,
            }
            for uuid, name, body, default, at in rows
        ]

    def default_profile(self) -> str | None:
        row = self._conn.execute(
            "SELECT profile_uuid FROM dep_profiles WHERE is_default = 1"
        ).fetchone()
        return None if row is None else str(row[0])
