"""Appliance-wide facts kept in the database (installation id, when it was initialized)."""

from __future__ import annotations

import sqlite3

from mdmappliance.core.timestamps import utc_timestamp

INSTALLATION_ID = "installation_id"
INITIALIZED_AT = "initialized_at"


def get_setting(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def set_setting(conn: sqlite3.Connection, key: str, value: str) -> None:
    conn.execute(
        "INSERT INTO settings (key, value, updated_at) VALUES (?, ?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        (key, value, utc_timestamp()),
    )
