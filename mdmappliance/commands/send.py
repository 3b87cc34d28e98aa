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
import uuid as uuidlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from mdmappliance.commands.base import BuildContext, Fitted, Target
from mdmappliance.commands.catalog import Prepared, fit, prepare
from mdmappliance.commands.errors import CommandInvalid, CommandRejected
from mdmappliance.core.timestamps import utc_timestamp
from mdmappliance.mdm.platforms import Platform
from mdmappliance.pki.escrow import Escrow
from mdmappliance.store.events import record_event

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


def uuid_prefix() -> str:
    """The first 19 characters of a batch's CommandUUIDs (version 7, RFC 9562): the
    millisecond clock, the version, and 12 random bits."""
    stamp = f"{time.time_ns() // 1_000_000:012X}"
    return f"{stamp[:8]}-{stamp[8:]}-7{int.from_bytes(os.urandom(2)) & 0xFFF:03X}-"


def counter_start() -> int:
    """Where a batch's 30-bit counter starts: random, with room for 2**29 commands."""
    return int.from_bytes(os.urandom(4)) & 0x1FFFFFFF


#: The rest of a CommandUUID, made by SQLite for each row: variant bits and the counter's top
#: 14 bits, then its low 16 bits and 32 random bits. A batch's UUIDs sort in the order they
#: are made, so they go in at the end of the uuid index rather than at random places.
UUID_TAIL_SQL = (
    "printf('%04X-%04X%08X', 32768 | ((:start + n) >> 16 & 16383), (:start + n) & 65535, "
    "random() & 4294967295)"
)

#: The targets of a batch, with what decides how a command fits each of them.
TARGETS_SQL = (
    "FROM enrollments AS e JOIN devices AS d ON d.udid = e.udid "
    "LEFT JOIN enrollments AS dc ON dc.udid = e.udid AND dc.user_id = '' "
    "WHERE e.id IN (SELECT value FROM json_each(:ids))"
)
KIND_COLUMNS = (
    "e.state",
    "coalesce(e.access_rights, dc.access_rights)",
    "d.platform",
    "d.supervised",
    "dc.unlock_token_sealed IS NOT NULL",
    "e.user_id != ''",
)
KIND_MATCH = " AND ".join(f"{column} IS :k{i}" for i, column in enumerate(KIND_COLUMNS))
PLATFORMS = {platform.value: platform for platform in Platform}

#: state, access_rights, platform, supervised, has_unlock_token, is_user
Kind = tuple[str, int | None, str | None, int | None, int, int]


def _kind_target(kind: Kind) -> Target:
    """A stand-in Target with a kind's facts: everything ``catalog.fit`` reads."""
    state, access_rights, platform, supervised, unlock, is_user = kind
    return Target(
        enrollment_id=0,
        udid="",
        user_id="(user)" if is_user else "",
        state=state,
        access_rights=access_rights,
        platform=PLATFORMS[platform] if platform else None,
        supervised=None if supervised is None else bool(supervised),
        has_unlock_token=bool(unlock),
    )


def _kind_args(ids: str, kind: Kind) -> dict[str, Any]:
    return {"ids": ids, **{f"k{i}": value for i, value in enumerate(kind)}}


def _members(conn: sqlite3.Connection, ids: str, kind: Kind) -> list[tuple[int, str, str]]:
    return conn.execute(
        f"SELECT e.id, e.udid, e.user_id {TARGETS_SQL} AND {KIND_MATCH} ORDER BY e.id",
        _kind_args(ids, kind),
    ).fetchall()


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
    """Check ``description`` and queue it for each enrollment; CommandRejected if refused.

    The targets never pass through Python one by one: their kinds (what decides how the
    command fits) are read grouped, the command is fitted once per kind, and each accepted
    kind's rows are inserted by one INSERT ... SELECT.
    """
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
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in enrollment_ids):
        raise CommandInvalid(["targets must be enrollment ids (integers)"])
    ids = json.dumps(sorted(set(enrollment_ids)))
    result = SendResult()
    for warning in prepared.warnings:
        result.warnings[warning] = []
    problems: list[str] = []
    groups = conn.execute(
        f"SELECT {', '.join(KIND_COLUMNS)}, count(*) {TARGETS_SQL} "
        f"GROUP BY {', '.join(str(i + 1) for i in range(len(KIND_COLUMNS)))}",
        {"ids": ids},
    ).fetchall()
    accepted: list[tuple[Kind, Fitted]] = []
    count = 0
    for *columns, members in groups:
        kind = cast(Kind, tuple(columns))
        fitted = fit(prepared, _kind_target(kind))
        if fitted.command is None:
            for enrollment_id, udid, user_id in _members(conn, ids, kind):
                result.refused[enrollment_id] = fitted.refusal or "refused"
                who = Target(enrollment_id, udid, user_id).describe()
                problems.append(f"{who}: {fitted.refusal}")
        else:
            accepted.append((kind, fitted))
            count += members
    for (enrollment_id,) in conn.execute(
        "SELECT value FROM json_each(?) WHERE value NOT IN (SELECT id FROM enrollments)", (ids,)
    ):
        result.refused[enrollment_id] = "no such enrollment"
        problems.append(f"enrollment {enrollment_id}: no such enrollment")
    if (problems and not partial) or not accepted:
        shown = problems[:MAX_REPORTED]
        if len(problems) > MAX_REPORTED:
            shown.append(f"... and {len(problems) - MAX_REPORTED} more refusals")
        raise CommandInvalid(shown or ["no targets"])
    subject = _members(conn, ids, accepted[0][0])[0][1] if count == 1 else None
    event_id = result.event_id = record_event(
        conn,
        "command.queued",
        actor=actor,
        subject=subject,
        detail={
            "request_type": prepared.request_type,
            "targets": count,
            "refused": len(result.refused),
            "unchecked": prepared.spec is None,
        },
    )
    now = utc_timestamp()
    queued: list[tuple[int, str]] = []
    if clear_passcode:
        assert escrow is not None
        queued = _queue_sealed(
            conn, escrow, ids, accepted, actor, (priority, now, expires_at, event_id)
        )
    else:
        prefix, start = uuid_prefix(), counter_start()
        for kind, fitted in accepted:
            assert fitted.command is not None
            body_id = _store_body(conn, fitted.command)
            rows = conn.execute(
                "INSERT INTO commands (uuid, enrollment_id, payload, request_type, priority, "
                "state, created_at, expires_at, updated_at, batch_event_id, body_id) "
                f"SELECT :prefix || {UUID_TAIL_SQL}, id, x'', :request_type, :priority, "
                "'queued', :now, :expires_at, :now, :event_id, :body_id "
                "FROM (SELECT e.id AS id, row_number() OVER (ORDER BY e.id) AS n "
                f"{TARGETS_SQL} AND {KIND_MATCH}) RETURNING enrollment_id, uuid",
                {
                    **_kind_args(ids, kind),
                    "prefix": prefix,
                    "start": start + len(queued),
                    "request_type": prepared.request_type,
                    "priority": priority,
                    "now": now,
                    "expires_at": expires_at,
                    "event_id": event_id,
                    "body_id": body_id,
                },
            ).fetchall()
            queued.extend(rows)
            for warning in fitted.warnings:
                result.warnings.setdefault(warning, []).extend(i for i, _ in rows)
    result.queued = dict(sorted(queued))
    return result


def _queue_sealed(
    conn: sqlite3.Connection,
    escrow: Escrow,
    ids: str,
    accepted: list[tuple[Kind, Fitted]],
    actor: str,
    common: tuple[int, str, str | None, int],
) -> list[tuple[int, str]]:
    """ClearPasscode: one payload per device, each carrying its own UnlockToken, sealed."""
    priority, now, expires_at, event_id = common
    queued = []
    for kind, fitted in accepted:
        for enrollment_id, udid, user_id in _members(conn, ids, kind):
            command_uuid = str(uuidlib.uuid4()).upper()
            target = Target(enrollment_id, udid, user_id)
            payload = _clear_passcode_payload(
                conn, escrow, target, fitted.command or {}, command_uuid, actor
            )
            conn.execute(
                "INSERT INTO commands (uuid, enrollment_id, payload, request_type, priority, "
                "state, created_at, expires_at, updated_at, batch_event_id, sealed) "
                "VALUES (?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?, 1)",
                (
                    command_uuid,
                    enrollment_id,
                    payload,
                    CLEAR_PASSCODE,
                    priority,
                    now,
                    expires_at,
                    now,
                    event_id,
                ),
            )
            queued.append((enrollment_id, command_uuid))
    return queued


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
    pusher: Any = None  # a pusher.Pusher, when a push certificate is installed

    def send(
        self,
        enrollment_ids: Sequence[int],
        description: Mapping[str, Any],
        *,
        actor: str,
        sign_profile: bool = False,
        push: bool = True,
        **options: Any,
    ) -> Any:
        """``send_command`` in one store transaction (a Deferred of its SendResult); then,
        with ``push``, the targets are pushed so that they poll for it."""
        context = self.context
        if sign_profile:
            if self.sign_profile is None:
                raise CommandRejected("no profile signer is configured")
            context = BuildContext(context.own_profile_identifier, self.sign_profile)
        prepared = prepare(description, context, unchecked=options.pop("unchecked", False))
        sent = self.store.transaction(
            send_command, enrollment_ids, prepared, actor=actor, escrow=self.escrow, **options
        )
        if push and self.pusher is not None:
            sent.addCallback(self._push)
        return sent

    def _push(self, result: SendResult) -> SendResult:
        self.pusher.request(result.queued)
        return result
