"""Appliance-wide facts kept in the database (installation id, when it was initialized)."""

from __future__ import annotations

from mdmappliance.core.timestamps import utc_timestamp
from mdmappliance.store.family import Family

INSTALLATION_ID = "installation_id"
INITIALIZED_AT = "initialized_at"
#: What the health check writes to prove the database takes writes.
HEALTH_PROBE = "health_probe"


class Settings(Family):
    __slots__ = ()

    def get(self, key: str) -> str | None:
        row = self._conn.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set(self, key: str, value: str) -> None:
        self._conn.execute(
            "INSERT INTO settings (key, value, updated_at) VALUES (?, ?, ?) ON CONFLICT (key) "
            "DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            (key, value, utc_timestamp()),
        )
