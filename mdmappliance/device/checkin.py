"""The check-in protocol ("MDM Check-in Protocol"): Authenticate, TokenUpdate, CheckOut and
UserAuthenticate, each applied in the request's one transaction. (The newer check-in types
have modules of their own: ``bootstrap``, ``declarative``, ``token_service``.)

A User Enrollment device (EnrollmentID, no UDID) takes the same path: its EnrollmentID is
the UDID here (``Channel.user_enrollment`` says which it is; ``binding`` keeps them apart).

An MDMError raised here rolls everything back, so a refused check-in leaves the database as
it was.
"""

from __future__ import annotations

import secrets
from typing import Any

from mdmappliance.core.timestamps import utc_timestamp
from mdmappliance.device import binding
from mdmappliance.device.capabilities import SERVER_CAPABILITIES
from mdmappliance.device.policy import EMPTY, ChannelPolicy, Handled, plist_reply
from mdmappliance.mdm.errors import BadMessage, IdentityRefused
from mdmappliance.mdm.messages import Authenticate, Channel, CheckOut, TokenUpdate, UserAuthenticate
from mdmappliance.mdm.platforms import platform_of
from mdmappliance.pki.identity import DeviceIdentity
from mdmappliance.store import Tx
from mdmappliance.store.enrollments import TokenUpdateRow
from mdmappliance.store.events import device_actor


def checkin_event(tx: Tx, kind: str, channel: Channel, detail: dict[str, Any]) -> None:
    tx.events.record(kind, actor=device_actor(channel.udid), subject=channel.udid, detail=detail)


def handle_authenticate(tx: Tx, message: Authenticate, identity: DeviceIdentity) -> Handled:
    """Create or refresh the enrollment and bind the certificate; the payload may still fail
    to install, so the enrollment is not pushable until its first TokenUpdate.

    A new enrollment records the ServerCapabilities its profile announced (the profiles made
    here carry ``SERVER_CAPABILITIES``) and has no Bootstrap Token yet."""
    channel = message.channel
    if channel.is_user:
        raise BadMessage("Authenticate is for the device channel; it carries no UserID")
    binding.refuse_other_kind(tx, channel)
    binding.refuse_foreign_certificate(tx, channel.udid, identity)
    binding.refuse_takeover(tx, channel.udid, identity)
    now = utc_timestamp()
    facts = message.facts
    tx.enrollments.upsert_device(channel.udid, facts, now, channel.user_enrollment)
    tx.enrollments.authenticate(channel.udid, message.topic, now, SERVER_CAPABILITIES)
    binding.bind_identity(tx, channel.udid, identity)
    platform = platform_of(facts.get("product_name"), facts.get("model_name"))
    tx.enrollments.set_platform(channel.udid, platform.value if platform else None)
    tx.enrollments.adopt_issued_rights(channel.udid, identity.sha256)
    detail: dict[str, Any] = {"topic": message.topic, **facts}
    if channel.user_enrollment:
        detail["user_enrollment"] = True
    checkin_event(tx, "checkin.authenticate", channel, detail)
    return Handled(EMPTY)


def handle_token_update(
    tx: Tx, message: TokenUpdate, identity: DeviceIdentity, policy: ChannelPolicy
) -> Handled:
    channel = message.channel
    device = binding.require_bound_identity(tx, channel, identity)
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
        existing = tx.enrollments.get(channel.udid, channel.user_id)
        if existing is not None:
            binding.check_auth_token(existing, channel)
        tx.enrollments.add_user_channel(
            channel.udid,
            channel.user_id,
            channel.user_short_name,
            channel.user_long_name,
            message.topic,
            now,
        )
    target = tx.enrollments.get(channel.udid, channel.user_id)
    assert target is not None
    first = target.state != "enrolled"
    tx.enrollments.token_update(
        target.id,
        TokenUpdateRow(
            topic=message.topic,
            token=message.token,
            push_magic=message.push_magic,
            unlock_token_sealed=sealed,
            not_on_console=message.not_on_console,
            awaiting_configuration=message.awaiting_configuration,
        ),
        now,
    )
    if channel.is_user:
        binding.touch(tx, device)
    binding.touch(tx, target)
    checkin_event(
        tx,
        "checkin.token_update",
        channel,
        {
            "user_id": channel.user_id,
            "first": first,
            "unlock_token_escrowed": sealed is not None,
        },
    )
    return Handled(EMPTY)


def handle_checkout(tx: Tx, message: CheckOut, identity: DeviceIdentity) -> Handled:
    """Unenrolled, history kept, no more pushes; the device channel takes its users along."""
    channel = message.channel
    binding.require_bound_identity(tx, channel, identity)
    if channel.is_user:
        binding.require_user_channel(tx, channel)
    tx.enrollments.check_out(
        channel.udid, channel.user_id if channel.is_user else None, utc_timestamp()
    )
    checkin_event(tx, "checkin.checkout", channel, {"user_id": channel.user_id})
    return Handled(EMPTY)


def handle_user_authenticate(
    tx: Tx, message: UserAuthenticate, identity: DeviceIdentity, policy: ChannelPolicy
) -> Handled:
    channel = message.channel
    device = binding.require_bound_identity(tx, channel, identity)
    binding.touch(tx, device)
    digest = policy.digest
    if digest is None:
        checkin_event(
            tx, "checkin.user_authenticate", channel, {"user_id": channel.user_id, "step": "open"}
        )
        return Handled(plist_reply({"DigestChallenge": ""}))
    if message.digest_response is None:
        challenge = digest.challenge(channel.udid, channel.user_id)
        return Handled(plist_reply({"DigestChallenge": challenge}))
    username = digest.verify(channel.udid, channel.user_id, message.digest_response)
    if username is None:
        checkin_event(tx, "checkin.user_authenticate_failed", channel, {"user_id": channel.user_id})
        return Handled(plist_reply({"AuthToken": ""}))
    token = secrets.token_urlsafe(32)
    tx.enrollments.set_auth_token(
        channel.udid,
        channel.user_id,
        username,
        channel.user_long_name,
        device.topic,
        binding.hash_auth_token(token),
        utc_timestamp(),
    )
    checkin_event(
        tx,
        "checkin.user_authenticate",
        channel,
        {"user_id": channel.user_id, "user": username, "step": "token"},
    )
    return Handled(plist_reply({"AuthToken": token}))
