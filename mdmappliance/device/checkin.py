"""One device request, one transaction: check the identity, apply the message, pick a reply.

``handle_message`` runs on the store thread inside ``Store.transaction``; an MDMError raised
here rolls everything back, so a refused request leaves the database as it was.
"""

from __future__ import annotations

import plistlib
import secrets
import sqlite3
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from mdmappliance.commands.inventory import apply_result
from mdmappliance.commands.queue import next_command, record_report
from mdmappliance.core.timestamps import utc_timestamp
from mdmappliance.device import binding as enr
from mdmappliance.device.digest import DigestAuthority
from mdmappliance.enrollment.retirement import finish_retirement
from mdmappliance.mdm.errors import BadMessage, IdentityRefused, NotManaged
from mdmappliance.mdm.messages import (
    FINAL_STATUSES,
    Authenticate,
    Channel,
    CheckOut,
    Message,
    Report,
    TokenUpdate,
    UserAuthenticate,
)
from mdmappliance.mdm.platforms import platform_of
from mdmappliance.pki.escrow import Escrow
from mdmappliance.pki.identity import DeviceIdentity
from mdmappliance.store.events import record_event

EMPTY = b""


@dataclass(frozen=True)
class ChannelPolicy:
    """What the handlers need besides the database."""

    escrow: Escrow
    topic: str = ""
    digest: DigestAuthority | None = None


@dataclass(frozen=True)
class Handled:
    body: bytes
    not_now: str | None = None


def _plist(value: dict[str, str]) -> bytes:
    return plistlib.dumps(value, fmt=plistlib.FMT_XML)


def handle_message(
    conn: sqlite3.Connection,
    message: Message,
    identity: DeviceIdentity,
    policy: ChannelPolicy,
    skip: Collection[str],
) -> Handled:
    if isinstance(message, Report):
        return handle_report(conn, message, identity, policy, skip)
    if isinstance(message, Authenticate):
        return handle_authenticate(conn, message, identity)
    if isinstance(message, TokenUpdate):
        return handle_token_update(conn, message, identity, policy)
    if isinstance(message, CheckOut):
        return handle_checkout(conn, message, identity)
    return handle_user_authenticate(conn, message, identity, policy)


def _actor(udid: str) -> str:
    return f"device:{udid}"


def _checkin_event(
    conn: sqlite3.Connection, kind: str, channel: Channel, detail: dict[str, Any]
) -> None:
    record_event(conn, kind, actor=_actor(channel.udid), subject=channel.udid, detail=detail)


def handle_authenticate(
    conn: sqlite3.Connection, message: Authenticate, identity: DeviceIdentity
) -> Handled:
    """Create or refresh the enrollment and bind the certificate; the payload may still fail
    to install, so the enrollment is not pushable until its first TokenUpdate."""
    channel = message.channel
    if channel.is_user:
        raise BadMessage("Authenticate is for the device channel; it carries no UserID")
    enr.refuse_foreign_certificate(conn, channel.udid, identity)
    enr.refuse_takeover(conn, channel.udid, identity)
    now = utc_timestamp()
    facts = message.facts
    columns = ", ".join(facts)
    conn.execute(
        f"INSERT INTO devices (udid, first_seen, updated_at{', ' + columns if facts else ''}) "
        f"VALUES (?, ?, ?{', ?' * len(facts)}) ON CONFLICT (udid) DO UPDATE SET "
        + ", ".join([f"{c} = excluded.{c}" for c in facts] + ["updated_at = excluded.updated_at"]),
        (channel.udid, now, now, *facts.values()),
    )
    conn.execute(
        "INSERT INTO enrollments (udid, user_id, topic, state, created_at, updated_at, last_seen) "
        "VALUES (?, '', ?, 'authenticated', ?, ?, ?) ON CONFLICT (udid, user_id) DO UPDATE SET "
        "topic = excluded.topic, state = 'authenticated', token_valid = 0, "
        "checked_out_at = NULL, updated_at = excluded.updated_at, last_seen = excluded.last_seen",
        (channel.udid, message.topic, now, now, now),
    )
    enr.bind_identity(conn, channel.udid, identity)
    platform = platform_of(facts.get("product_name"), facts.get("model_name"))
    conn.execute(
        "UPDATE devices SET platform = coalesce(?, platform) WHERE udid = ?",
        (platform.value if platform else None, channel.udid),
    )
    # The AccessRights of the profile that carried this identity, if the appliance issued it.
    conn.execute(
        "UPDATE enrollments SET access_rights = (SELECT access_rights FROM issued_identities "
        "WHERE sha256 = ?) WHERE udid = ? AND user_id = ''",
        (identity.sha256, channel.udid),
    )
    _checkin_event(conn, "checkin.authenticate", channel, {"topic": message.topic, **facts})
    return Handled(EMPTY)


def handle_token_update(
    conn: sqlite3.Connection, message: TokenUpdate, identity: DeviceIdentity, policy: ChannelPolicy
) -> Handled:
    channel = message.channel
    device = enr.require_bound_identity(conn, channel, identity)
    if policy.topic and message.topic != policy.topic:
        raise IdentityRefused(
            f"TokenUpdate for topic {message.topic!r}, but this server pushes on {policy.topic!r}"
        )
    now = utc_timestamp()
    sealed = (
        policy.escrow.seal(message.unlock_token, channel.udid)
        if message.unlock_token is not None and not channel.is_user
        else None
    )
    if channel.is_user:
        existing = enr.get_enrollment(conn, channel.udid, channel.user_id)
        if existing is not None:
            enr.check_auth_token(existing, channel)
        conn.execute(
            "INSERT INTO enrollments (udid, user_id, user_short_name, user_long_name, topic, "
            "state, created_at, updated_at) VALUES (?, ?, ?, ?, ?, 'authenticated', ?, ?) "
            "ON CONFLICT (udid, user_id) DO UPDATE SET "
            "user_short_name = coalesce(excluded.user_short_name, user_short_name), "
            "user_long_name = coalesce(excluded.user_long_name, user_long_name)",
            (
                channel.udid,
                channel.user_id,
                channel.user_short_name,
                channel.user_long_name,
                message.topic,
                now,
                now,
            ),
        )
    target = enr.get_enrollment(conn, channel.udid, channel.user_id)
    assert target is not None
    first = target.state != "enrolled"
    conn.execute(
        "UPDATE enrollments SET topic = ?, push_token = ?, push_magic = ?, token_valid = 1, "
        "token_updated_at = ?, unlock_token_sealed = coalesce(?, unlock_token_sealed), "
        "not_on_console = coalesce(?, not_on_console), "
        "awaiting_configuration = coalesce(?, awaiting_configuration), state = 'enrolled', "
        "enrolled_at = coalesce(enrolled_at, ?), checked_out_at = NULL, updated_at = ?, "
        "last_seen = ? WHERE id = ?",
        (
            message.topic,
            message.token,
            message.push_magic,
            now,
            sealed,
            message.not_on_console,
            message.awaiting_configuration,
            now,
            now,
            now,
            target.id,
        ),
    )
    if channel.is_user:
        enr.touch(conn, device.id)
    enr.touch(conn, target.id)
    _checkin_event(
        conn,
        "checkin.token_update",
        channel,
        {
            "user_id": channel.user_id,
            "first": first,
            "unlock_token_escrowed": sealed is not None,
        },
    )
    return Handled(EMPTY)


def handle_checkout(
    conn: sqlite3.Connection, message: CheckOut, identity: DeviceIdentity
) -> Handled:
    """Unenrolled, history kept, no more pushes; the device channel takes its users along."""
    channel = message.channel
    enr.require_bound_identity(conn, channel, identity)
    now = utc_timestamp()
    args: tuple[str, ...]
    if channel.is_user:
        enr.require_user_channel(conn, channel)
        where, args = "udid = ? AND user_id = ?", (channel.udid, channel.user_id)
    else:
        where, args = "udid = ?", (channel.udid,)
    conn.execute(
        "UPDATE enrollments SET state = 'checked_out', token_valid = 0, checked_out_at = ?, "
        f"updated_at = ?, last_seen = ? WHERE {where}",
        (now, now, now, *args),
    )
    _checkin_event(conn, "checkin.checkout", channel, {"user_id": channel.user_id})
    return Handled(EMPTY)


def handle_user_authenticate(
    conn: sqlite3.Connection,
    message: UserAuthenticate,
    identity: DeviceIdentity,
    policy: ChannelPolicy,
) -> Handled:
    channel = message.channel
    device = enr.require_bound_identity(conn, channel, identity)
    enr.touch(conn, device.id)
    digest = policy.digest
    if digest is None:
        _checkin_event(
            conn, "checkin.user_authenticate", channel, {"user_id": channel.user_id, "step": "open"}
        )
        return Handled(_plist({"DigestChallenge": ""}))
    if message.digest_response is None:
        return Handled(_plist({"DigestChallenge": digest.challenge(channel.udid, channel.user_id)}))
    username = digest.verify(channel.udid, channel.user_id, message.digest_response)
    if username is None:
        _checkin_event(
            conn, "checkin.user_authenticate_failed", channel, {"user_id": channel.user_id}
        )
        return Handled(_plist({"AuthToken": ""}))
    token = secrets.token_urlsafe(32)
    now = utc_timestamp()
    conn.execute(
        "INSERT INTO enrollments (udid, user_id, user_short_name, user_long_name, topic, state, "
        "auth_token_sha256, created_at, updated_at) VALUES (?, ?, ?, ?, ?, 'authenticated', ?, "
        "?, ?) ON CONFLICT (udid, user_id) DO UPDATE SET "
        "auth_token_sha256 = excluded.auth_token_sha256, updated_at = excluded.updated_at",
        (
            channel.udid,
            channel.user_id,
            username,
            channel.user_long_name,
            device.topic,
            enr.hash_auth_token(token),
            now,
            now,
        ),
    )
    _checkin_event(
        conn,
        "checkin.user_authenticate",
        channel,
        {"user_id": channel.user_id, "user": username, "step": "token"},
    )
    return Handled(_plist({"AuthToken": token}))


def handle_report(
    conn: sqlite3.Connection,
    report: Report,
    identity: DeviceIdentity,
    policy: ChannelPolicy,
    skip: Collection[str],
) -> Handled:
    """Record a result (or an Idle poll) and answer with the next command or nothing."""
    channel = report.channel
    device = enr.require_bound_identity(conn, channel, identity)
    if device.state != "enrolled":
        raise NotManaged(f"device {channel.udid} has not completed enrollment (no TokenUpdate)")
    target = enr.require_user_channel(conn, channel) if channel.is_user else device
    enr.touch(conn, target.id)
    outcome = record_report(conn, target.id, report)
    if outcome.result_id is not None and report.command_uuid is not None:
        apply_result(
            conn,
            target.id,
            channel.udid,
            outcome.result_id,
            report.command_uuid,
            report.body,
            request_type=outcome.request_type,
            sealed=outcome.sealed,
        )
    if report.status in FINAL_STATUSES and finish_retirement(
        conn, channel.udid, report.command_uuid
    ):
        return Handled(EMPTY)  # retired: from now on this device gets 401
    excluded = set(skip)
    if outcome.not_now:
        excluded.add(outcome.not_now)
    command = next_command(conn, target.id, excluded)
    if command is None:
        return Handled(EMPTY, outcome.not_now)
    if command.sealed:  # ClearPasscode: its UnlockToken is opened only to be sent
        return Handled(policy.escrow.open(command.payload, channel.udid), outcome.not_now)
    return Handled(command.payload, outcome.not_now)
