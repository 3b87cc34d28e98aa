"""What the admin API and CLI read: devices, their commands, and the pages they come in.

Plain functions on a connection (run on the store thread). Pages use the row id as cursor:
stable while rows are added, and cheap with the primary key.
"""

from __future__ import annotations

import json
import plistlib
import sqlite3
from typing import Any

from mdmappliance.commands.base import json_safe
from mdmappliance.commands.inventory import command_status, inventory_of

MAX_PAGE = 1000
DEVICE_STATES = ("enrolled", "authenticated", "checked_out", "retired", "inactive")
COMMAND_STATES = (
    "queued",
    "sent",
    "not_now",
    "acknowledged",
    "error",
    "format_error",
    "expired",
    "canceled",
)

DEVICE_COLUMNS = (
    "e.id, d.udid, d.serial_number, d.device_name, d.model, d.product_name, d.platform, "
    "d.os_version, d.build_version, d.supervised, e.state, e.enrolled_at, e.last_seen, "
    "e.inactive_since, e.push_status, e.token_valid"
)
DEVICE_FIELDS = (
    "enrollment_id",
    "udid",
    "serial_number",
    "device_name",
    "model",
    "product_name",
    "platform",
    "os_version",
    "build_version",
    "supervised",
    "state",
    "enrolled_at",
    "last_seen",
    "inactive_since",
    "push_status",
    "push_token_valid",
)


def _device(row: tuple[Any, ...]) -> dict[str, Any]:
    device = dict(zip(DEVICE_FIELDS, row, strict=True))
    for key in ("supervised", "push_token_valid"):
        if device[key] is not None:
            device[key] = bool(device[key])
    if device["inactive_since"] and device["state"] == "enrolled":
        device["state"] = "inactive"
    return device


def list_devices(
    conn: sqlite3.Connection,
    *,
    state: str | None = None,
    platform: str | None = None,
    serial: str | None = None,
    after: int = 0,
    limit: int = 100,
) -> tuple[list[dict[str, Any]], int | None]:
    """Device channels, filtered, by enrollment id after ``after``; and the next cursor."""
    where = ["e.user_id = ''", "e.id > ?"]
    args: list[Any] = [after]
    if state == "inactive":
        where.append("e.state = 'enrolled' AND e.inactive_since IS NOT NULL")
    elif state == "enrolled":
        where.append("e.state = 'enrolled' AND e.inactive_since IS NULL")
    elif state is not None:
        where.append("e.state = ?")
        args.append(state)
    if platform is not None:
        where.append("d.platform = ?")
        args.append(platform)
    if serial is not None:
        where.append("d.serial_number = ?")
        args.append(serial)
    limit = max(1, min(limit, MAX_PAGE))
    rows = conn.execute(
        f"SELECT {DEVICE_COLUMNS} FROM enrollments AS e JOIN devices AS d ON d.udid = e.udid "
        f"WHERE {' AND '.join(where)} ORDER BY e.id LIMIT ?",
        (*args, limit + 1),
    ).fetchall()
    devices = [_device(row) for row in rows[:limit]]
    return devices, (devices[-1]["enrollment_id"] if len(rows) > limit else None)


def device_detail(conn: sqlite3.Connection, udid: str) -> dict[str, Any] | None:
    """One device: its enrollment, identity, facts, inventory and user channels."""
    row = conn.execute(
        f"SELECT {DEVICE_COLUMNS}, d.facts, d.facts_at, e.access_rights, "
        "e.unlock_token_sealed IS NOT NULL FROM enrollments AS e "
        "JOIN devices AS d ON d.udid = e.udid WHERE e.udid = ? AND e.user_id = ''",
        (udid,),
    ).fetchone()
    if row is None:
        return None
    device = _device(row[: len(DEVICE_FIELDS)])
    facts, facts_at, access_rights, escrowed = row[len(DEVICE_FIELDS) :]
    identity = conn.execute(
        "SELECT subject, issuer, not_after, revoked_at FROM identities WHERE udid = ? "
        "AND current = 1",
        (udid,),
    ).fetchone()
    device.update(
        facts=json.loads(facts),
        facts_reported_at=facts_at,
        access_rights=access_rights,
        unlock_token_escrowed=bool(escrowed),
        identity=dict(zip(("subject", "issuer", "not_after", "revoked_at"), identity, strict=True))
        if identity
        else None,
        inventory=inventory_of(conn, device["enrollment_id"]),
        user_channels=[
            {
                "enrollment_id": r[0],
                "user_id": r[1],
                "user_short_name": r[2],
                "state": r[3],
                "last_seen": r[4],
            }
            for r in conn.execute(
                "SELECT id, user_id, user_short_name, state, last_seen FROM enrollments "
                "WHERE udid = ? AND user_id != '' ORDER BY id",
                (udid,),
            )
        ],
    )
    return device


def all_enrolled(conn: sqlite3.Connection) -> list[int]:
    """Every enrolled device channel (the target of "all devices")."""
    rows = conn.execute(
        "SELECT id FROM enrollments WHERE user_id = '' AND state = 'enrolled' ORDER BY id"
    ).fetchall()
    return [row[0] for row in rows]


def command_detail(conn: sqlite3.Connection, command_uuid: str) -> dict[str, Any] | None:
    """``command_status`` plus the device's whole answer, decoded to JSON."""
    status = command_status(conn, command_uuid)
    if status is None:
        return None
    raw = conn.execute(
        "SELECT r.raw FROM command_results AS r JOIN commands AS c ON c.id = r.command_id "
        "WHERE c.uuid = ? ORDER BY r.id DESC LIMIT 1",
        (command_uuid,),
    ).fetchone()
    if raw is not None and "result" in status:
        try:
            status["result"]["answer"] = json_safe(plistlib.loads(bytes(raw[0])))
        except Exception:
            status["result"]["answer"] = None
    return status


def device_commands(
    conn: sqlite3.Connection,
    *,
    udid: str,
    state: str | None = None,
    after: int = 0,
    limit: int = 100,
) -> tuple[list[dict[str, Any]], int | None]:
    """The commands of a device's channels, oldest first, after the cursor ``after``."""
    where = ["e.udid = ?", "c.id > ?"]
    args: list[Any] = [udid, after]
    if state is not None:
        where.append("c.state = ?")
        args.append(state)
    limit = max(1, min(limit, MAX_PAGE))
    rows = conn.execute(
        "SELECT c.id, c.uuid, c.request_type, c.state, c.created_at, c.sent_at, c.result_at, "
        "c.not_now_count, e.user_id FROM commands AS c JOIN enrollments AS e "
        f"ON e.id = c.enrollment_id WHERE {' AND '.join(where)} ORDER BY c.id LIMIT ?",
        (*args, limit + 1),
    ).fetchall()
    fields = (
        "id",
        "uuid",
        "request_type",
        "state",
        "created_at",
        "sent_at",
        "result_at",
        "not_now_count",
        "user_id",
    )
    commands = [dict(zip(fields, row, strict=True)) for row in rows[:limit]]
    return commands, (commands[-1]["id"] if len(rows) > limit else None)


def udids_of(conn: sqlite3.Connection, enrollment_ids: list[int]) -> dict[int, str]:
    rows = conn.execute(
        "SELECT id, udid FROM enrollments WHERE id IN (SELECT value FROM json_each(?))",
        (json.dumps(enrollment_ids),),
    ).fetchall()
    return {row[0]: row[1] for row in rows}
