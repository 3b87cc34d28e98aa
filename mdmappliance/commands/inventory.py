"""Results become inventory: each answer replaces the enrollment's current state of its kind,
DeviceInformation answers update the device record, and every result gets a summary.

``apply_result`` runs in the same transaction that records the device's report. A result
the catalog cannot read (wrong types) is still kept raw; the inventory is left as it was and
an event says why, so nothing the device sent is lost.
"""

from __future__ import annotations

import json
import plistlib
import sqlite3
from collections.abc import Mapping
from typing import Any

from mdmappliance.commands.base import InventoryUpdate, Outcome
from mdmappliance.commands.catalog import CATALOG
from mdmappliance.commands.errors import ResultInvalid
from mdmappliance.commands.information import COLUMNS
from mdmappliance.commands.queue import command_payload
from mdmappliance.core.timestamps import utc_timestamp
from mdmappliance.mdm.errorcodes import describe_chain
from mdmappliance.mdm.platforms import platform_of
from mdmappliance.store.events import record_event


def apply_result(
    conn: sqlite3.Connection,
    enrollment_id: int,
    udid: str,
    result_id: int,
    command_uuid: str,
    result: Mapping[str, Any],
    *,
    request_type: str,
    sealed: bool,
) -> dict[str, Any]:
    """Read the result of ``command_uuid`` (a ``request_type`` command; ``sealed`` ones
    carry secrets and are not parsed); store its summary, inventory and facts."""
    status = result.get("Status")
    summary: dict[str, Any] = {}
    if result.get("ErrorChain"):
        summary["errors"] = describe_chain(result["ErrorChain"])
    spec = CATALOG.get(request_type)
    parse = spec.parse if spec is not None and not sealed else None
    wanted = status == "Acknowledged" or (status == "Error" and spec and spec.parse_errors)
    if parse is not None and wanted:
        stored = command_payload(conn, command_uuid)  # only read when an answer is parsed
        assert stored is not None
        command = plistlib.loads(stored[0]).get("Command", {})
        try:
            outcome = parse(result, command)
        except ResultInvalid as e:
            summary["unreadable"] = str(e)
            record_event(
                conn,
                "command.result_unreadable",
                actor=f"device:{udid}",
                subject=str(enrollment_id),
                detail={"command_uuid": command_uuid, "request_type": request_type, "why": str(e)},
            )
        else:
            summary.update(outcome.summary)
            _store_outcome(conn, enrollment_id, udid, command_uuid, outcome)
    if summary:
        conn.execute(
            "UPDATE command_results SET summary = ? WHERE id = ?",
            (json.dumps(summary), result_id),
        )
    return summary


def _store_outcome(
    conn: sqlite3.Connection, enrollment_id: int, udid: str, command_uuid: str, outcome: Outcome
) -> None:
    now = utc_timestamp()
    for update in outcome.inventory:
        _store_inventory(conn, enrollment_id, command_uuid, update, now)
    if outcome.facts:
        _store_facts(conn, udid, outcome.facts, now)
    for kind, detail in outcome.events:
        record_event(
            conn,
            kind,
            actor=f"device:{udid}",
            subject=str(enrollment_id),
            detail={"command_uuid": command_uuid, **detail},
        )


def _store_inventory(
    conn: sqlite3.Connection,
    enrollment_id: int,
    command_uuid: str,
    update: InventoryUpdate,
    now: str,
) -> None:
    data = update.data
    if update.merge:
        row = conn.execute(
            "SELECT data FROM inventory WHERE enrollment_id = ? AND kind = ?",
            (enrollment_id, update.kind),
        ).fetchone()
        current = json.loads(row[0]) if row else {}
        if not isinstance(current, dict):
            current = {}
        for asked in update.scope:
            if asked not in data:
                current.pop(asked, None)  # asked about, not answered: no longer there
        current.update(data)
        data = current
    conn.execute(
        "INSERT INTO inventory (enrollment_id, kind, data, command_uuid, reported_at) "
        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (enrollment_id, kind) DO UPDATE SET "
        "data = excluded.data, command_uuid = excluded.command_uuid, "
        "reported_at = excluded.reported_at",
        (enrollment_id, update.kind, json.dumps(data, sort_keys=True), command_uuid, now),
    )


def _store_facts(conn: sqlite3.Connection, udid: str, facts: Mapping[str, Any], now: str) -> None:
    columns: dict[str, Any] = {}
    for key, column in COLUMNS.items():
        if key in facts:
            value = facts[key]
            columns[column] = int(value) if isinstance(value, bool) else value
    platform = platform_of(facts.get("ProductName"), facts.get("ModelName"))
    if platform is not None:
        columns["platform"] = platform.value
    assignments = "".join(f", {column} = ?" for column in columns)
    conn.execute(
        f"UPDATE devices SET facts = json_patch(facts, ?), facts_at = ?, updated_at = ?"
        f"{assignments} WHERE udid = ?",
        (json.dumps(facts), now, now, *columns.values(), udid),
    )


def inventory_of(conn: sqlite3.Connection, enrollment_id: int) -> dict[str, dict[str, Any]]:
    """The enrollment's current state by kind: ``{kind: {data, reported_at, command_uuid}}``."""
    rows = conn.execute(
        "SELECT kind, data, reported_at, command_uuid FROM inventory WHERE enrollment_id = ? "
        "ORDER BY kind",
        (enrollment_id,),
    ).fetchall()
    return {
        kind: {"data": json.loads(data), "reported_at": at, "command_uuid": uuid}
        for kind, data, at, uuid in rows
    }


def command_status(conn: sqlite3.Connection, command_uuid: str) -> dict[str, Any] | None:
    """A command as an admin reads it: state, times, NotNow count, and its last result with
    the summary (ErrorChain in plain words)."""
    row = conn.execute(
        "SELECT c.id, c.uuid, c.request_type, c.state, c.created_at, c.sent_at, c.result_at, "
        "c.not_now_count, e.udid, e.user_id FROM commands AS c "
        "JOIN enrollments AS e ON e.id = c.enrollment_id WHERE c.uuid = ?",
        (command_uuid,),
    ).fetchone()
    if row is None:
        return None
    status = dict(
        zip(
            (
                "uuid",
                "request_type",
                "state",
                "created_at",
                "sent_at",
                "result_at",
                "not_now_count",
                "udid",
                "user_id",
            ),
            row[1:],
            strict=True,
        )
    )
    result = conn.execute(
        "SELECT status, error_chain, summary, received_at FROM command_results "
        "WHERE command_id = ? ORDER BY id DESC LIMIT 1",
        (row[0],),
    ).fetchone()
    if result is not None:
        chain = json.loads(result[1]) if result[1] else None
        status["result"] = {
            "status": result[0],
            "received_at": result[3],
            "errors": describe_chain(chain),
            **(json.loads(result[2]) if result[2] else {}),
        }
    return status
