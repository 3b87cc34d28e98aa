"""Ending a management relationship ("Terminating a Management Relationship").

- Revocation puts a device's identities on the deny list: every request made with them is
  refused (403, audited), whatever they are bound to.
- Retirement queues a RemoveProfile for the MDM profile; once the device answers it (or at
  once, when forced), the enrollment is retired and the device gets 401 from then on.
"""

from __future__ import annotations

import sqlite3

from mdmappliance.commands.errors import CommandRejected
from mdmappliance.commands.queue import enqueue
from mdmappliance.core.timestamps import utc_timestamp
from mdmappliance.store.events import record_event

RETIRE_PRIORITY = 1000


def revoke_device(conn: sqlite3.Connection, udid: str, actor: str) -> int:
    """Deny every identity bound to ``udid``; the number revoked (0: unknown device)."""
    now = utc_timestamp()
    cursor = conn.execute(
        "UPDATE identities SET revoked_at = ? WHERE udid = ? AND revoked_at IS NULL",
        (now, udid),
    )
    conn.execute(
        "UPDATE issued_identities SET udid = coalesce(udid, ?) WHERE sha256 IN "
        "(SELECT sha256 FROM identities WHERE udid = ?)",
        (udid, udid),
    )
    if cursor.rowcount:
        record_event(
            conn, "identity.revoked", actor=actor, subject=udid, detail={"count": cursor.rowcount}
        )
    return cursor.rowcount


def retire_device(
    conn: sqlite3.Connection, udid: str, profile_identifier: str, actor: str, *, now: bool = False
) -> str | None:
    """Queue RemoveProfile of the MDM profile (retired once answered), or retire at once."""
    row = conn.execute(
        "SELECT id, state FROM enrollments WHERE udid = ? AND user_id = ''", (udid,)
    ).fetchone()
    if row is None:
        raise CommandRejected(f"no enrollment for {udid}")
    enrollment_id, state = row
    if state == "retired":
        return None
    if now or state == "checked_out":
        _mark_retired(conn, udid, actor)
        return None
    command_uuid = enqueue(
        conn,
        enrollment_id,
        {"RequestType": "RemoveProfile", "Identifier": profile_identifier},
        priority=RETIRE_PRIORITY,
        actor=actor,
    )
    conn.execute(
        "UPDATE enrollments SET retire_command_uuid = ? WHERE id = ?", (command_uuid, enrollment_id)
    )
    record_event(
        conn,
        "enrollment.retire_requested",
        actor=actor,
        subject=udid,
        detail={"command_uuid": command_uuid},
    )
    return command_uuid


def _mark_retired(conn: sqlite3.Connection, udid: str, actor: str) -> None:
    conn.execute(
        "UPDATE enrollments SET state = 'retired', token_valid = 0, updated_at = ? WHERE udid = ?",
        (utc_timestamp(), udid),
    )
    record_event(conn, "enrollment.retired", actor=actor, subject=udid)


def finish_retirement(conn: sqlite3.Connection, udid: str, command_uuid: str | None) -> bool:
    """Called with each result: the answer to the retiring RemoveProfile retires the device."""
    if command_uuid is None:
        return False
    row = conn.execute(
        "SELECT 1 FROM enrollments WHERE udid = ? AND user_id = '' AND retire_command_uuid = ?",
        (udid, command_uuid),
    ).fetchone()
    if row is None:
        return False
    _mark_retired(conn, udid, f"device:{udid}")
    return True
