"""Queue one command for many enrollments: checked once, fitted per kind of target, written
in one transaction.

This is what the admin API and the CLI call. All or nothing by default: if any target
refuses the command, nothing is queued and every refusal is reported; with ``partial`` the
others are queued and the refusals returned. One event records the admin action, and each
command row points at it.
"""

from __future__ import annotations

import json
import os
import plistlib
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mdmappliance.commands.base import BuildContext, CommandInvalid, Fitted, Platform, Target
from mdmappliance.commands.catalog import Prepared, fit, fit_key, prepare
from mdmappliance.escrow import Escrow
from mdmappliance.events import record_event, utc_timestamp
from mdmappliance.queue import CommandRejected

PLACEHOLDER = "@@COMMAND-UUID@@"
MAX_REPORTED = 50
CLEAR_PASSCODE = "ClearPasscode"


@dataclass
class SendResult:
    """CommandUUIDs by enrollment id; refusals by enrollment id; warnings with the
    enrollments they concern (an empty list: they concern the command itself)."""

    queued: dict[int, str] = field(default_factory=dict)
    refused: dict[int, str] = field(default_factory=dict)
    warnings: dict[str, list[int]] = field(default_factory=dict)
    event_id: int | None = None


def command_uuids(count: int) -> list[str]:
    """``count`` random (version 4) UUIDs in upper case, made from one urandom call."""
    raw = bytearray(os.urandom(16 * count))
    out = []
    for i in range(0, 16 * count, 16):
        raw[i + 6] = (raw[i + 6] & 0x0F) | 0x40
        raw[i + 8] = (raw[i + 8] & 0x3F) | 0x80
        h = raw[i : i + 16].hex().upper()
        out.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    return out


def load_targets(conn: sqlite3.Connection, enrollment_ids: Sequence[int]) -> dict[int, Target]:
    """What is known of each enrollment; a user channel shares its device's AccessRights
    and UnlockToken."""
    rows = conn.execute(
        "SELECT e.id, e.udid, e.user_id, e.state, coalesce(e.access_rights, dc.access_rights), "
        "d.platform, d.supervised, dc.unlock_token_sealed IS NOT NULL "
        "FROM (SELECT DISTINCT value AS id FROM json_each(?)) AS wanted "
        "JOIN enrollments AS e ON e.id = wanted.id JOIN devices AS d ON d.udid = e.udid "
        "LEFT JOIN enrollments AS dc ON dc.udid = e.udid AND dc.user_id = ''",
        (json.dumps(list(enrollment_ids)),),
    ).fetchall()
    return {
        row[0]: Target(
            enrollment_id=row[0],
            udid=row[1],
            user_id=row[2],
            state=row[3],
            access_rights=row[4],
            platform=Platform(row[5]) if row[5] else None,
            supervised=None if row[6] is None else bool(row[6]),
            has_unlock_token=bool(row[7]),
        )
        for row in rows
    }


def _refusal_problems(targets: Mapping[int, Target], refused: Mapping[int, str]) -> list[str]:
    problems = []
    for enrollment_id, reason in list(refused.items())[:MAX_REPORTED]:
        target = targets.get(enrollment_id)
        who = target.describe() if target else f"enrollment {enrollment_id}"
        problems.append(f"{who}: {reason}")
    if len(refused) > MAX_REPORTED:
        problems.append(f"... and {len(refused) - MAX_REPORTED} more refusals")
    return problems


def send_command(
    conn: sqlite3.Connection,
    enrollment_ids: Sequence[int],
    description: Mapping[str, Any] | Prepared,
    *,
    actor: str,
    context: BuildContext | None = None,
    escrow: Escrow | None = None,
    confirm_clear_passcode: bool = False,
    unchecked: bool = False,
    partial: bool = False,
    priority: int = 0,
    expires_at: str | None = None,
) -> SendResult:
    """Check ``description`` and queue it for each enrollment; CommandRejected if refused."""
    prepared = (
        description
        if isinstance(description, Prepared)
        else prepare(description, context, unchecked=unchecked)
    )
    clear_passcode = prepared.spec is not None and prepared.request_type == CLEAR_PASSCODE
    if clear_passcode and not confirm_clear_passcode:
        raise CommandRejected(
            "ClearPasscode removes the device's passcode using its escrowed UnlockToken: "
            "confirm explicitly, and only once you know the owner holds the device "
            "(never for a lost device)"
        )
    if clear_passcode and escrow is None:
        raise CommandRejected("ClearPasscode needs the escrow key, which is not loaded")
    if not enrollment_ids:
        raise CommandInvalid(["name at least one target"])
    targets = load_targets(conn, enrollment_ids)
    result = SendResult()
    for warning in prepared.warnings:
        result.warnings[warning] = []
    fitted_by_kind: dict[tuple[Any, ...], Fitted] = {}
    accepted: list[tuple[Target, Fitted]] = []
    for enrollment_id in dict.fromkeys(enrollment_ids):
        target = targets.get(enrollment_id)
        if target is None:
            result.refused[enrollment_id] = "no such enrollment"
            continue
        key = fit_key(target)
        fitted = fitted_by_kind.get(key)
        if fitted is None:
            fitted = fitted_by_kind[key] = fit(prepared, target)
        if fitted.command is None:
            result.refused[enrollment_id] = fitted.refusal or "refused"
            continue
        for warning in fitted.warnings:
            result.warnings.setdefault(warning, []).append(enrollment_id)
        accepted.append((target, fitted))
    if result.refused and not partial:
        raise CommandInvalid(_refusal_problems(targets, result.refused))
    if not accepted:
        raise CommandInvalid(_refusal_problems(targets, result.refused) or ["no targets"])
    result.event_id = record_event(
        conn,
        "command.queued",
        actor=actor,
        subject=accepted[0][0].udid if len(accepted) == 1 else None,
        detail={
            "request_type": prepared.request_type,
            "targets": len(accepted),
            "refused": len(result.refused),
            "unchecked": prepared.spec is None,
        },
    )
    uuids = command_uuids(len(accepted))
    now = utc_timestamp()
    templates: dict[int, tuple[bytes, bytes]] = {}
    rows = []
    for (target, fitted), command_uuid in zip(accepted, uuids, strict=True):
        assert fitted.command is not None
        if clear_passcode:
            assert escrow is not None
            payload = _clear_passcode_payload(
                conn, escrow, target, fitted.command, command_uuid, actor
            )
            sealed = 1
        else:
            head, tail = templates.get(id(fitted)) or templates.setdefault(
                id(fitted), _template(fitted.command)
            )
            payload = head + command_uuid.encode("ascii") + tail
            sealed = 0
        rows.append(
            (
                command_uuid,
                target.enrollment_id,
                prepared.request_type,
                payload,
                priority,
                now,
                expires_at,
                now,
                sealed,
                result.event_id,
            )
        )
        result.queued[target.enrollment_id] = command_uuid
    conn.executemany(
        "INSERT INTO commands (uuid, enrollment_id, request_type, payload, priority, state, "
        "created_at, expires_at, updated_at, sealed, batch_event_id) "
        "VALUES (?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?, ?)",
        rows,
    )
    return result


def _template(command: Mapping[str, Any]) -> tuple[bytes, bytes]:
    """The reply plist split around its CommandUUID, so each target costs one join."""
    body = plistlib.dumps(
        {"CommandUUID": PLACEHOLDER, "Command": dict(command)},
        fmt=plistlib.FMT_XML,
        sort_keys=True,
    )
    head, marker, tail = body.partition(PLACEHOLDER.encode("ascii"))
    assert marker and PLACEHOLDER.encode("ascii") not in tail
    return head, tail


def _clear_passcode_payload(
    conn: sqlite3.Connection,
    escrow: Escrow,
    target: Target,
    command: Mapping[str, Any],
    command_uuid: str,
    actor: str,
) -> bytes:
    """The UnlockToken from escrow, in a payload sealed again for storage; audited."""
    row = conn.execute(
        "SELECT unlock_token_sealed FROM enrollments WHERE udid = ? AND user_id = ''",
        (target.udid,),
    ).fetchone()
    if row is None or row[0] is None:
        raise CommandRejected(f"{target.describe()}: no UnlockToken was escrowed")
    token = escrow.open(bytes(row[0]), target.udid)
    payload = plistlib.dumps(
        {"CommandUUID": command_uuid, "Command": {**command, "UnlockToken": token}},
        fmt=plistlib.FMT_XML,
        sort_keys=True,
    )
    record_event(
        conn,
        "command.clear_passcode_confirmed",
        actor=actor,
        subject=target.udid,
        detail={"command_uuid": command_uuid, "confirmed": True},
    )
    return escrow.seal(payload, target.udid)


def resolve_udids(
    conn: sqlite3.Connection, udids: Sequence[str], user_id: str = ""
) -> tuple[dict[str, int], list[str]]:
    """Enrollment ids of the device channels (or ``user_id``'s channels) of ``udids``, and
    the UDIDs that have none, so that unknown devices are reported, not dropped."""
    rows = conn.execute(
        "SELECT e.udid, e.id FROM (SELECT DISTINCT value AS udid FROM json_each(?)) AS wanted "
        "JOIN enrollments AS e ON e.udid = wanted.udid AND e.user_id = ?",
        (json.dumps(list(udids)), user_id),
    ).fetchall()
    found = {udid: enrollment_id for udid, enrollment_id in rows}
    return found, [udid for udid in dict.fromkeys(udids) if udid not in found]


@dataclass(frozen=True)
class CommandSender:
    """What the admin API and CLI hold to queue commands: the store, the appliance's own
    profile identifier, the profile signer and the escrow key."""

    store: Any
    context: BuildContext
    sign_profile: Any = None
    escrow: Escrow | None = None

    def send(
        self,
        enrollment_ids: Sequence[int],
        description: Mapping[str, Any],
        *,
        actor: str,
        sign_profile: bool = False,
        **options: Any,
    ) -> Any:
        """``send_command`` in one store transaction (a Deferred of its SendResult)."""
        context = self.context
        if sign_profile:
            if self.sign_profile is None:
                raise CommandRejected("no profile signer is configured")
            context = BuildContext(context.own_profile_identifier, self.sign_profile)
        prepared = prepare(description, context, unchecked=options.pop("unchecked", False))
        return self.store.transaction(
            send_command, enrollment_ids, prepared, actor=actor, escrow=self.escrow, **options
        )
