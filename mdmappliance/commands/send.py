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
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mdmappliance.commands.base import BuildContext, CommandInvalid, Fitted, Platform, Target
from mdmappliance.commands.catalog import Prepared, fit, prepare
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
    """``count`` time-ordered UUIDs (version 7, RFC 9562), upper case.

    The millisecond clock leads, then a counter that starts at a random point, then 32
    random bits: a batch's UUIDs sort in order, so they go into the uuid index at its end
    instead of at random places, which keeps a 100,000-command batch fast.
    """
    prefix = f"{time.time_ns() // 1_000_000:012X}"
    head = f"{prefix[:8]}-{prefix[8:]}-7"
    start = int.from_bytes(os.urandom(3), "big") << 17  # leaves 2**17 steps below 2**42
    noise = os.urandom(4 * count)
    out = []
    for i in range(count):
        counter = start + i
        low = (2 << 62) | ((counter & 0x3FFFFFFF) << 32) | int.from_bytes(noise[4 * i : 4 * i + 4])
        tail = f"{low:016X}"
        out.append(f"{head}{counter >> 30 & 0xFFF:03X}-{tail[:4]}-{tail[4:]}")
    return out


#: One enrollment as ``load_targets`` reads it: id, udid, user_id, then what decides how a
#: command fits it (state, access_rights, platform, supervised, has_unlock_token, is_user).
TargetRow = tuple[int, str, str, str, int | None, str | None, int | None, int, int]
PLATFORMS = {platform.value: platform for platform in Platform}


def _target_rows(conn: sqlite3.Connection, enrollment_ids: Sequence[int]) -> dict[int, TargetRow]:
    """What is known of each enrollment; a user channel shares its device's AccessRights
    and UnlockToken."""
    rows = conn.execute(
        "SELECT e.id, e.udid, e.user_id, e.state, coalesce(e.access_rights, dc.access_rights), "
        "d.platform, d.supervised, dc.unlock_token_sealed IS NOT NULL, e.user_id != '' "
        "FROM enrollments AS e JOIN devices AS d ON d.udid = e.udid "
        "LEFT JOIN enrollments AS dc ON dc.udid = e.udid AND dc.user_id = '' "
        "WHERE e.id IN (SELECT value FROM json_each(?))",
        (json.dumps(list(enrollment_ids)),),
    ).fetchall()
    return {row[0]: row for row in rows}


def _target(row: TargetRow) -> Target:
    return Target(
        enrollment_id=row[0],
        udid=row[1],
        user_id=row[2],
        state=row[3],
        access_rights=row[4],
        platform=PLATFORMS[row[5]] if row[5] else None,
        supervised=None if row[6] is None else bool(row[6]),
        has_unlock_token=bool(row[7]),
    )


def load_targets(conn: sqlite3.Connection, enrollment_ids: Sequence[int]) -> dict[int, Target]:
    return {i: _target(row) for i, row in _target_rows(conn, enrollment_ids).items()}


def _refusal_problems(rows: Mapping[int, TargetRow], refused: Mapping[int, str]) -> list[str]:
    problems = []
    for enrollment_id, reason in list(refused.items())[:MAX_REPORTED]:
        row = rows.get(enrollment_id)
        who = _target(row).describe() if row else f"enrollment {enrollment_id}"
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
    rows = _target_rows(conn, enrollment_ids)
    result = SendResult()
    for warning in prepared.warnings:
        result.warnings[warning] = []
    fitted_by_kind: dict[tuple[Any, ...], Fitted] = {}
    accepted: list[tuple[TargetRow, Fitted]] = []
    for enrollment_id in dict.fromkeys(enrollment_ids):
        row = rows.get(enrollment_id)
        if row is None:
            result.refused[enrollment_id] = "no such enrollment"
            continue
        kind = row[3:]  # rows alike from here on fit the command alike (catalog.fit_key)
        fitted = fitted_by_kind.get(kind)
        if fitted is None:
            fitted = fitted_by_kind[kind] = fit(prepared, _target(row))
        if fitted.command is None:
            result.refused[enrollment_id] = fitted.refusal or "refused"
            continue
        for warning in fitted.warnings:
            result.warnings.setdefault(warning, []).append(enrollment_id)
        accepted.append((row, fitted))
    if result.refused and not partial:
        raise CommandInvalid(_refusal_problems(rows, result.refused))
    if not accepted:
        raise CommandInvalid(_refusal_problems(rows, result.refused) or ["no targets"])
    event_id = result.event_id = record_event(
        conn,
        "command.queued",
        actor=actor,
        subject=accepted[0][0][1] if len(accepted) == 1 else None,
        detail={
            "request_type": prepared.request_type,
            "targets": len(accepted),
            "refused": len(result.refused),
            "unchecked": prepared.spec is None,
        },
    )
    uuids = command_uuids(len(accepted))
    now = utc_timestamp()
    common = (prepared.request_type, priority, now, expires_at, now, event_id)
    if clear_passcode:
        assert escrow is not None
        sealed_rows = [
            (
                command_uuid,
                row[0],
                _clear_passcode_payload(
                    conn, escrow, _target(row), fitted.command or {}, command_uuid, actor
                ),
            )
            for (row, fitted), command_uuid in zip(accepted, uuids, strict=True)
        ]
        conn.executemany(
            "INSERT INTO commands (uuid, enrollment_id, payload, request_type, priority, state, "
            "created_at, expires_at, updated_at, batch_event_id, sealed) "
            "VALUES (?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?, 1)",
            [(*sealed_row, *common) for sealed_row in sealed_rows],
        )
    else:
        # One shared body per fitted command; the rows go in as one JSON array per body, so
        # SQLite expands them in C rather than binding eleven parameters per row in Python.
        by_body: dict[int, list[tuple[str, int]]] = {}
        bodies: dict[int, int] = {}
        for (row, fitted), command_uuid in zip(accepted, uuids, strict=True):
            body_id = bodies.get(id(fitted))
            if body_id is None:
                assert fitted.command is not None
                body_id = bodies[id(fitted)] = _store_body(conn, fitted.command)
            by_body.setdefault(body_id, []).append((command_uuid, row[0]))
        for body_id, pairs in by_body.items():
            conn.execute(
                "INSERT INTO commands (uuid, enrollment_id, payload, request_type, priority, "
                "state, created_at, expires_at, updated_at, batch_event_id, body_id) "
                "SELECT value ->> 0, value ->> 1, x'', ?, ?, 'queued', ?, ?, ?, ?, ? "
                "FROM json_each(?)",
                (*common, body_id, json.dumps(pairs)),
            )
    result.queued = {
        row[0]: command_uuid for (row, _), command_uuid in zip(accepted, uuids, strict=True)
    }
    return result


def _store_body(conn: sqlite3.Connection, command: Mapping[str, Any]) -> int:
    head, tail = _template(command)
    cursor = conn.execute("INSERT INTO command_bodies (head, tail) VALUES (?, ?)", (head, tail))
    assert cursor.lastrowid is not None
    return cursor.lastrowid


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
