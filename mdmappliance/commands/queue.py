"""The command queue, per "Dequeueing Commands" and "Handling a NotNow Response".

Per enrollment, first in first out (a higher priority goes first). A command stays pending
(queued, sent or not_now) until a result with its CommandUUID says Acknowledged, Error or
CommandFormatError; a command that was sent but never answered (the device lost the reply,
or the server crashed) is offered again with the same CommandUUID. NotNow keeps the command,
counts it, and it is not offered again within the same connection.

All functions run inside a store transaction.
"""

from __future__ import annotations

import plistlib
import uuid as uuidlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from mdmappliance.commands.errors import CommandRejected
from mdmappliance.core.timestamps import utc_timestamp
from mdmappliance.mdm.messages import FINAL_STATUSES, Report
from mdmappliance.store import Tx
from mdmappliance.store.commands import ANSWERED, EXPIRY_DUE, FINAL, NewCommand, Pending
from mdmappliance.store.events import device_actor


def reply_plist(command_uuid: str, command: Mapping[str, Any]) -> bytes:
    """The reply a device gets: ``{CommandUUID, Command}`` as an XML plist."""
    return plistlib.dumps(
        {"CommandUUID": command_uuid, "Command": dict(command)},
        fmt=plistlib.FMT_XML,
        sort_keys=True,
    )


def new_command_uuid() -> str:
    return str(uuidlib.uuid4()).upper()


def enqueue(
    tx: Tx,
    enrollment_id: int,
    command: Mapping[str, Any],
    *,
    command_uuid: str | None = None,
    priority: int = 0,
    expires_at: str | None = None,
    actor: str = "system",
) -> str:
    """Queue ``command`` (a dictionary with a RequestType) for one enrollment; return its UUID.

    What the appliance queues for itself (renewals, retirement); admins' commands go through
    ``send.send_command``, which checks them against the catalog first.
    """
    request_type = command.get("RequestType")
    if not isinstance(request_type, str) or not request_type:
        raise CommandRejected("the command needs a RequestType string")
    command_uuid = command_uuid or new_command_uuid()
    try:
        payload = reply_plist(command_uuid, command)
    except (TypeError, OverflowError) as e:
        raise CommandRejected(f"the command is not a plist dictionary: {e}") from None
    tx.commands.insert(
        NewCommand(
            uuid=command_uuid,
            enrollment_id=enrollment_id,
            request_type=request_type,
            payload=payload,
            priority=priority,
            created_at=utc_timestamp(),
            expires_at=expires_at,
        )
    )
    tx.events.record(
        "command.queued",
        actor=actor,
        subject=str(enrollment_id),
        detail={"command_uuid": command_uuid, "request_type": request_type},
    )
    return command_uuid


def enqueue_for_device(
    tx: Tx,
    udid: str,
    command: Mapping[str, Any],
    *,
    user_id: str = "",
    **options: Any,
) -> str:
    """``enqueue`` addressed by UDID (and UserID for a user channel), as admins name devices."""
    enrollment = tx.enrollments.get(udid, user_id)
    if enrollment is None:
        raise CommandRejected(f"no enrollment for {udid}" + (f" user {user_id}" if user_id else ""))
    if enrollment.state in ("checked_out", "retired"):
        raise CommandRejected(f"the enrollment of {udid} is {enrollment.state.replace('_', ' ')}")
    return enqueue(tx, enrollment.id, command, **options)


def cancel(tx: Tx, command_uuid: str, *, actor: str = "system") -> bool:
    """Cancel a command that has no result yet; False if it already has one (or is unknown)."""
    canceled = tx.commands.cancel(command_uuid, utc_timestamp())
    if canceled:
        tx.events.record("command.canceled", actor=actor, detail={"command_uuid": command_uuid})
    return canceled


def expire_due(
    tx: Tx,
    now: str,
    *,
    enrollment_id: int | None = None,
    limit: int = -1,
    by: str = "queue",
) -> int:
    """Mark pending commands whose expiry passed as expired, an event each; how many.
    For one enrollment (when it polls) or for all (the retention job)."""
    expired = tx.commands.expire_due(now, enrollment_id=enrollment_id, limit=limit)
    for command in expired:
        tx.events.record(
            "command.expired",
            subject=str(command.enrollment_id),
            detail={"command_uuid": command.uuid, "by": by},
        )
    return len(expired)


def next_command(tx: Tx, enrollment_id: int, skip: Collection[str]) -> Pending | None:
    """The command to send now (marked sent; its payload sealed when it carries an
    UnlockToken), or None for an empty reply."""
    now = utc_timestamp()
    pending = tx.commands.next_pending(enrollment_id, skip, now)
    if pending is EXPIRY_DUE:
        expire_due(tx, now, enrollment_id=enrollment_id)
        pending = tx.commands.next_pending(enrollment_id, skip, now)
        assert pending is not EXPIRY_DUE  # all of them were expired at ``now``
    return pending


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
    #: The raw answer was not kept: the enrollment's stored answers reached their bound.
    raw_dropped: bool = False


#: The default bound on the raw answers kept per enrollment (``[retention]``).
RESULT_BYTES = 32 * 1024 * 1024


def record_report(
    tx: Tx, enrollment_id: int, report: Report, *, max_result_bytes: int = RESULT_BYTES
) -> ReportOutcome:
    """Apply a device's report about a command (nothing to do for Idle).

    NotNow keeps no body (a device could otherwise fill the disk answering NotNow); a final
    answer is kept raw while the enrollment's stored answers stay within
    ``max_result_bytes``, and is dropped with an event past it (it is still read)."""
    if report.status == "Idle" or report.command_uuid is None:
        return ReportOutcome(matched=True)
    actor = device_actor(report.channel.udid)
    command = tx.commands.find(report.command_uuid)
    if command is None or command.enrollment_id != enrollment_id:
        tx.events.record(
            "command.result_unmatched",
            actor=actor,
            subject=str(enrollment_id),
            detail={
                "command_uuid": report.command_uuid,
                "status": report.status,
                "reason": "unknown command" if command is None else "another enrollment's",
            },
        )
        return ReportOutcome(matched=False)
    now = utc_timestamp()
    if report.status == "NotNow":
        if command.state in FINAL:
            return ReportOutcome(matched=True)  # a late NotNow changes nothing
        tx.commands.mark_not_now(command.id, now)
        tx.commands.add_result(command.id, report.status, None, b"", now)
        return ReportOutcome(matched=True, not_now=report.command_uuid)
    new_state = FINAL_STATUSES[report.status]
    if command.state == new_state:
        return ReportOutcome(matched=True)  # the same result twice: idempotent
    if command.state in ANSWERED:
        tx.events.record(
            "command.result_conflict",
            actor=actor,
            subject=str(enrollment_id),
            detail={
                "command_uuid": report.command_uuid,
                "state": command.state,
                "status": report.status,
            },
        )
        return ReportOutcome(matched=True)
    tx.commands.mark_answered(command.id, new_state, now)
    keep = tx.enrollments.reserve_result_bytes(enrollment_id, len(report.raw), max_result_bytes)
    if not keep:
        tx.events.record(
            "command.result_dropped",
            actor=actor,
            subject=str(enrollment_id),
            detail={
                "command_uuid": report.command_uuid,
                "bytes": len(report.raw),
                "limit": max_result_bytes,
            },
        )
    result_id = tx.commands.add_result(
        command.id, report.status, report.error_chain, report.raw if keep else b"", now
    )
    tx.events.record(
        "command.result",
        actor=actor,
        subject=str(enrollment_id),
        detail={"command_uuid": report.command_uuid, "status": report.status},
    )
    return ReportOutcome(
        matched=True,
        result_id=result_id,
        request_type=command.request_type,
        sealed=command.sealed,
        raw_dropped=not keep,
    )
