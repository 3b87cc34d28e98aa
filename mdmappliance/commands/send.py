"""Queue one command for many enrollments: checked once, fitted per kind of target, written
in one transaction.

This is what the admin API and the CLI call. All or nothing by default: if any target
refuses the command, nothing is queued and every refusal is reported; with ``partial`` the
others are queued and the refusals returned. One event records the admin action, and each
command row points at it.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mdmappliance.commands.base import BuildContext, Fitted, Target
from mdmappliance.commands.catalog import Prepared, fit, prepare
from mdmappliance.commands.errors import CommandInvalid, CommandRejected
from mdmappliance.commands.queue import new_command_uuid, reply_plist
from mdmappliance.core.timestamps import utc_timestamp
from mdmappliance.mdm.platforms import Platform
from mdmappliance.pki.escrow import Escrow
from mdmappliance.store import Tx
from mdmappliance.store.commands import Batch, Kind, NewCommand, TargetSet

PLACEHOLDER = "@@COMMAND-UUID@@"
MAX_REPORTED = 50
CLEAR_PASSCODE = "ClearPasscode"
#: Kinds matched by one INSERT (an OR of this many terms stays far from SQLite's limits).
KINDS_PER_INSERT = 64


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


def _kind_target(kind: Kind) -> Target:
    """A stand-in Target with a kind's facts: everything ``catalog.fit`` reads."""
    state, access_rights, platform, supervised, unlock, is_user, os_version, user_enrollment = kind
    return Target(
        enrollment_id=0,
        udid="",
        user_id="(user)" if is_user else "",
        state=state,
        access_rights=access_rights,
        platform=Platform(platform) if platform else None,
        supervised=None if supervised is None else bool(supervised),
        has_unlock_token=bool(unlock),
        os_version=os_version,
        user_enrollment=bool(user_enrollment),
    )


def send_command(
    tx: Tx,
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
    targets = TargetSet.of(enrollment_ids)
    result = SendResult()
    for warning in prepared.warnings:
        result.warnings[warning] = []
    accepted, count, problems = _fit_kinds(tx, targets, prepared, result)
    if (problems and not partial) or not accepted:
        shown = problems[:MAX_REPORTED]
        if len(problems) > MAX_REPORTED:
            shown.append(f"... and {len(problems) - MAX_REPORTED} more refusals")
        raise CommandInvalid(shown or ["no targets"])
    subject = tx.commands.members(targets, accepted[0][0])[0].udid if count == 1 else None
    event_id = result.event_id = tx.events.record(
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
    if clear_passcode:
        assert escrow is not None
        common = NewCommand("", 0, CLEAR_PASSCODE, b"", priority, now, expires_at, event_id, True)
        queued = _queue_sealed(tx, escrow, targets, accepted, actor, common)
    else:
        queued = []
        prefix, start = uuid_prefix(), counter_start()
        for (head, tail, warnings), kinds in _alike(accepted):
            batch = Batch(
                request_type=prepared.request_type,
                priority=priority,
                created_at=now,
                expires_at=expires_at,
                event_id=event_id,
                body_id=tx.commands.add_body(head, tail),
                uuid_prefix=prefix,
                counter_start=start + len(queued),
            )
            rows = tx.commands.insert_batch(targets, kinds, batch)
            queued.extend(rows)
            for warning in warnings:
                result.warnings.setdefault(warning, []).extend(i for i, _ in rows)
    result.queued = dict(sorted(queued))
    return result


def _alike(
    accepted: list[tuple[Kind, Fitted]],
) -> list[tuple[tuple[bytes, bytes, tuple[str, ...]], list[Kind]]]:
    """The kinds the command fits alike (the same body, the same warnings), together, at
    most ``KINDS_PER_INSERT`` at a time: a fleet on many OS versions mostly gets one
    command, so it is inserted in one pass over the targets."""
    alike: dict[tuple[bytes, bytes, tuple[str, ...]], list[Kind]] = {}
    for kind, fitted in accepted:
        assert fitted.command is not None
        key = (*_template(fitted.command), tuple(fitted.warnings))
        alike.setdefault(key, []).append(kind)
    return [
        (key, kinds[n : n + KINDS_PER_INSERT])
        for key, kinds in alike.items()
        for n in range(0, len(kinds), KINDS_PER_INSERT)
    ]


def _fit_kinds(
    tx: Tx, targets: TargetSet, prepared: Prepared, result: SendResult
) -> tuple[list[tuple[Kind, Fitted]], int, list[str]]:
    """Fit the command once per kind of target: the kinds that accept it, how many targets
    they hold, and a problem per refused (or unknown) target, also noted in ``result``."""
    problems: list[str] = []
    accepted: list[tuple[Kind, Fitted]] = []
    count = 0
    for kind, members in tx.commands.target_kinds(targets):
        fitted = fit(prepared, _kind_target(kind))
        if fitted.command is None:
            for member in tx.commands.members(targets, kind):
                result.refused[member.enrollment_id] = fitted.refusal or "refused"
                who = Target(member.enrollment_id, member.udid, member.user_id).describe()
                problems.append(f"{who}: {fitted.refusal}")
        else:
            accepted.append((kind, fitted))
            count += members
    for enrollment_id in tx.commands.missing_enrollments(targets):
        result.refused[enrollment_id] = "no such enrollment"
        problems.append(f"enrollment {enrollment_id}: no such enrollment")
    return accepted, count, problems


def _queue_sealed(
    tx: Tx,
    escrow: Escrow,
    targets: TargetSet,
    accepted: list[tuple[Kind, Fitted]],
    actor: str,
    common: NewCommand,
) -> list[tuple[int, str]]:
    """ClearPasscode: one payload per device, each carrying its own UnlockToken, sealed."""
    queued = []
    for kind, fitted in accepted:
        for member in tx.commands.members(targets, kind):
            command_uuid = new_command_uuid()
            target = Target(member.enrollment_id, member.udid, member.user_id)
            payload = _clear_passcode_payload(
                tx, escrow, target, fitted.command or {}, command_uuid, actor
            )
            tx.commands.insert(
                dataclasses.replace(
                    common, uuid=command_uuid, enrollment_id=member.enrollment_id, payload=payload
                )
            )
            queued.append((member.enrollment_id, command_uuid))
    return queued


def _template(command: Mapping[str, Any]) -> tuple[bytes, bytes]:
    """The reply plist split around its CommandUUID, so each target costs one join."""
    body = reply_plist(PLACEHOLDER, command)
    head, marker, tail = body.partition(PLACEHOLDER.encode("ascii"))
    assert marker and PLACEHOLDER.encode("ascii") not in tail
    return head, tail


def _clear_passcode_payload(
    tx: Tx,
    escrow: Escrow,
    target: Target,
    command: Mapping[str, Any],
    command_uuid: str,
    actor: str,
) -> bytes:
    """The UnlockToken from escrow, in a payload sealed again for storage; audited."""
    sealed = tx.enrollments.unlock_token_sealed(target.udid)
    if sealed is None:
        raise CommandRejected(f"{target.describe()}: no UnlockToken was escrowed")
    token = escrow.open(sealed, target.udid)
    payload = reply_plist(command_uuid, {**command, "UnlockToken": token})
    tx.events.record(
        "command.clear_passcode_confirmed",
        actor=actor,
        subject=target.udid,
        detail={"command_uuid": command_uuid, "confirmed": True},
    )
    return escrow.seal(payload, target.udid)


def resolve_udids(
    tx: Tx, udids: Sequence[str], user_id: str = ""
) -> tuple[dict[str, int], list[str]]:
    """Enrollment ids of the device channels (or ``user_id``'s channels) of ``udids``, and
    the UDIDs that have none, so that unknown devices are reported, not dropped."""
    found = tx.enrollments.resolve(udids, user_id)
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
        description: Mapping[str, Any] | Prepared,
        *,
        actor: str,
        sign_profile: bool = False,
        push: bool = True,
        **options: Any,
    ) -> Any:
        """``send_command`` in one store transaction (a Deferred of its SendResult); then,
        with ``push``, the targets are pushed so that they poll for it. ``description`` may
        be ``prepare``'s already."""
        unchecked = options.pop("unchecked", False)
        prepared = (
            description
            if isinstance(description, Prepared)
            else self.prepare(description, sign_profile=sign_profile, unchecked=unchecked)
        )
        sent = self.store.transaction(
            send_command, enrollment_ids, prepared, actor=actor, escrow=self.escrow, **options
        )
        if push and self.pusher is not None:
            sent.addCallback(self._push)
        return sent

    def prepare(
        self, description: Mapping[str, Any], *, sign_profile: bool = False, unchecked: bool = False
    ) -> Prepared:
        """The command checked (CommandInvalid, CommandRejected), before any target is read:
        a wrong command is reported as such, whatever the targets."""
        context = self.context
        if sign_profile:
            if self.sign_profile is None:
                raise CommandRejected("no profile signer is configured")
            context = BuildContext(context.own_profile_identifier, self.sign_profile)
        return prepare(description, context, unchecked=unchecked)

    def _push(self, result: SendResult) -> SendResult:
        self.pusher.request(result.queued)
        return result
