"""The command queue, per "Dequeueing Commands" and "Handling a NotNow Response".

Per enrollment, first in first out (a higher priority goes first). A command stays pending
(queued, sent or not_now) until a result with its CommandUUID says Acknowledged, Error or
CommandFormatError; a command that was sent but never answered (the device lost the reply,
or the server crashed) is offered again with the same CommandUUID. NotNow keeps the command,
counts it, and it is not offered again within the same connection.

All functions take a connection inside a store transaction.
"""

from __future__ import annotations

import json
import plistlib
import sqlite3
import uuid as uuidlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from mdmappliance.commands.errors import CommandRejected
from mdmappliance.core.timestamps import utc_timestamp
from mdmappliance.mdm.messages import FINAL_STATUSES, Report
from mdmappliance.store.events import record_event

FINAL = ("acknowledged", "error", "format_error", "expired", "canceled")


@dataclass(frozen=True)
class Dequeued:
    uuid: str
    payload: bytes
    #: The payload is sealed with the escrow key (it carries an UnlockToken).
    sealed: bool = False


def build_payload(command_uuid: str, command: Mapping[str, Any]) -> bytes:
    """The reply a device gets: ``{CommandUUID, Command}`` as an XML plist."""
    return plistlib.dumps(
        {"CommandUUID": command_uuid, "Command": dict(command)},
        fmt=plistlib.FMT_XML,
        sort_keys=True,
    )


def enqueue(
    conn: sqlite3.Connection,
    enrollment_id: int,
    command: Mapping[str, Any],
    *,
    command_uuid: str | None = None,
    priority: int = 0,
    expires_at: str | None = None,
    actor: str = "system",
) -> str:
    """Queue ``command`` (a dictionary with a RequestType) for one enrollment; return its UUID."""
    request_type = command.get("RequestType")
    if not isinstance(request_type, str) or not request_type:
        raise CommandRejected("the command needs a RequestType string")
    command_uuid = command_uuid or str(uuidlib.uuid4()).upper()
    try:
        payload = build_payload(command_uuid, command)
    except (TypeError, OverflowError) as e:
        raise CommandRejected(f"the command is not a plist dictionary: {e}") from None
    now = utc_timestamp()
    conn.execute(
        "INSERT INTO commands (uuid, enrollment_id, request_type, payload, priority, state, "
        "created_at, expires_at, updated_at) VALUES (?, ?, ?, ?, ?, 'queued', ?, ?, ?)",
        (command_uuid, enrollment_id, request_type, payload, priority, now, expires_at, now),
    )
    record_event(
        conn,
        "command.queued",
        actor=actor,
        subject=str(enrollment_id),
        detail={"command_uuid": command_uuid, "request_type": request_type},
    )
    return command_uuid


def enqueue_for_device(
    conn: sqlite3.Connection,
    udid: str,
    command: Mapping[str, Any],
    *,
    user_id: str = "",
    **options: Any,
) -> str:
    """``enqueue`` addressed by UDID (and UserID for a user channel), as admins name devices."""
    row = conn.execute(
        "SELECT id, state FROM enrollments WHERE udid = ? AND user_id = ?", (udid, user_id)
    ).fetchone()
    if row is None:
        raise CommandRejected(f"no enrollment for {udid}" + (f" user {user_id}" if user_id else ""))
    if row[1] in ("checked_out", "retired"):
        raise CommandRejected(f"the enrollment of {udid} is {row[1].replace('_', ' ')}")
    return enqueue(conn, int(row[0]), command, **options)


def command_payload(conn: sqlite3.Connection, command_uuid: str) -> tuple[bytes, bool] | None:
    """The reply plist of a command as stored (sealed or not), or None if unknown."""
    row = conn.execute(
        "SELECT c.payload, c.sealed, b.head, b.tail FROM commands AS c "
        "LEFT JOIN command_bodies AS b ON b.id = c.body_id WHERE c.uuid = ?",
        (command_uuid,),
    ).fetchone()
    if row is None:
        return None
    payload, sealed, head, tail = row
    if head is not None:
        payload = bytes(head) + command_uuid.encode("ascii") + bytes(tail)
    return bytes(payload), bool(sealed)


def cancel(conn: sqlite3.Connection, command_uuid: str, *, actor: str = "system") -> bool:
    """Cancel a command that has no result yet; False if it already has one (or is unknown)."""
    now = utc_timestamp()
    cursor = conn.execute(
        "UPDATE commands SET state = 'canceled', updated_at = ? WHERE uuid = ? AND state IN "
        "('queued', 'sent', 'not_now')",
        (now, command_uuid),
    )
    if cursor.rowcount:
        record_event(conn, "command.canceled", actor=actor, detail={"command_uuid": command_uuid})
    return bool(cursor.rowcount)


def expire_due(
    conn: sqlite3.Connection,
    now: str,
    *,
    enrollment_id: int | None = None,
    limit: int = -1,
    by: str = "queue",
) -> int:
    """Mark pending commands whose expiry passed as expired, an event each; how many.
    For one enrollment (when it polls) or for all (the retention job)."""
    scope, args = ("AND enrollment_id = ?", (enrollment_id,)) if enrollment_id else ("", ())
    expired = conn.execute(
        "SELECT id, uuid, enrollment_id FROM commands WHERE state IN ('queued', 'sent', "
        f"'not_now') AND expires_at IS NOT NULL AND expires_at <= ? {scope} LIMIT ?",
        (now, *args, limit),
    ).fetchall()
    for command_id, command_uuid, owner in expired:
        conn.execute(
            "UPDATE commands SET state = 'expired', updated_at = ? WHERE id = ?", (now, command_id)
        )
        record_event(
            conn,
            "command.expired",
            subject=str(owner),
            detail={"command_uuid": command_uuid, "by": by},
        )
    return len(expired)


def next_command(
    conn: sqlite3.Connection, enrollment_id: int, skip: Collection[str]
) -> Dequeued | None:
    """The command to send now (marked sent), or None for an empty reply."""
    now = utc_timestamp()
    expire_due(conn, now, enrollment_id=enrollment_id)
    placeholders = ",".join("?" * len(skip))
    excluded = f"AND c.uuid NOT IN ({placeholders})" if skip else ""
    row = conn.execute(
        "SELECT c.id, c.uuid, c.payload, c.sealed, b.head, b.tail FROM commands AS c "
        "LEFT JOIN command_bodies AS b ON b.id = c.body_id WHERE c.enrollment_id = ? AND "
        f"c.state IN ('queued', 'sent', 'not_now') {excluded} ORDER BY c.priority DESC, c.id "
        "LIMIT 1",
        (enrollment_id, *skip),
    ).fetchone()
    if row is None:
        return None
    command_id, command_uuid, payload, sealed, head, tail = row
    if head is not None:
        payload = bytes(head) + command_uuid.encode("ascii") + bytes(tail)
    conn.execute(
        "UPDATE commands SET state = 'sent', sent_at = ?, send_count = send_count + 1, "
        "updated_at = ? WHERE id = ?",
        (now, now, command_id),
    )
    return Dequeued(command_uuid, bytes(payload), bool(sealed))


@dataclass(frozen=True)
class ReportOutcome:
    """What a report did: ``not_now`` is the UUID to skip for the rest of the connection."""

    matched: bool
    not_now: str | None = None
    #: The command_results row of a newly recorded final result (to read its answer), and
    #: what the command was.
    result_id: int | None = None
    request_type: str = ""
    sealed: bool = False


def record_report(conn: sqlite3.Connection, enrollment_id: int, report: Report) -> ReportOutcome:
    """Apply a device's report about a command (nothing to do for Idle)."""
    if report.status == "Idle" or report.command_uuid is None:
        return ReportOutcome(matched=True)
    row = conn.execute(
        "SELECT id, enrollment_id, state, request_type, sealed FROM commands WHERE uuid = ?",
        (report.command_uuid,),
    ).fetchone()
    if row is None or row[1] != enrollment_id:
        record_event(
            conn,
            "command.result_unmatched",
            actor=f"device:{report.channel.udid}",
            subject=str(enrollment_id),
            detail={
                "command_uuid": report.command_uuid,
                "status": report.status,
                "reason": "unknown command" if row is None else "another enrollment's",
            },
        )
        return ReportOutcome(matched=False)
    command_id, _, state, request_type, sealed = row
    now = utc_timestamp()
    if report.status == "NotNow":
        if state in FINAL:
            return ReportOutcome(matched=True)  # a late NotNow changes nothing
        conn.execute(
            "UPDATE commands SET state = 'not_now', not_now_count = not_now_count + 1, "
            "updated_at = ? WHERE id = ?",
            (now, command_id),
        )
        _store_result(conn, command_id, report, now)
        return ReportOutcome(matched=True, not_now=report.command_uuid)
    new_state = FINAL_STATUSES[report.status]
    if state == new_state:
        return ReportOutcome(matched=True)  # the same result twice: idempotent
    if state in ("acknowledged", "error", "format_error"):
        record_event(
            conn,
            "command.result_conflict",
            actor=f"device:{report.channel.udid}",
            subject=str(enrollment_id),
            detail={"command_uuid": report.command_uuid, "state": state, "status": report.status},
        )
        return ReportOutcome(matched=True)
    conn.execute(
        "UPDATE commands SET state = ?, result_at = ?, updated_at = ? WHERE id = ?",
        (new_state, now, now, command_id),
    )
    result_id = _store_result(conn, command_id, report, now)
    record_event(
        conn,
        "command.result",
        actor=f"device:{report.channel.udid}",
        subject=str(enrollment_id),
        detail={"command_uuid": report.command_uuid, "status": report.status},
    )
    return ReportOutcome(
        matched=True, result_id=result_id, request_type=request_type, sealed=bool(sealed)
    )


def _store_result(conn: sqlite3.Connection, command_id: int, report: Report, now: str) -> int:
    chain = json.dumps(report.error_chain, default=str) if report.error_chain else None
    cursor = conn.execute(
        "INSERT INTO command_results (command_id, status, error_chain, raw, received_at) "
        "VALUES (?, ?, ?, ?, ?)",
        (command_id, report.status, chain, report.raw, now),
    )
    assert cursor.lastrowid is not None
    return cursor.lastrowid
