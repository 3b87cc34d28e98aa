"""Enrollments and the certificates bound to them: who may speak for which UDID.

The rules (see README, "Device identity and 401"):

- A certificate (SHA-256 of its DER) belongs to at most one UDID, ever.
- Authenticate binds the presented certificate to the UDID. While the device is managed, a
  different certificate is accepted only if the appliance issued it as that device's renewal;
  a checked-out or retired device may enroll again with any trusted certificate.
- Every other message must come with the certificate currently bound to its UDID.
- A User Enrollment device is known by its EnrollmentID, which takes the place of the UDID
  under the same rules; a message never passes an EnrollmentID for a UDID or the other way
  round (403).
- 401, which makes the device delete its MDM profile, is only for devices this server is not
  managing: an unknown UDID with an unknown certificate, or a checked-out or retired one.
  Everything else that is refused gets 403, written to the event log.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac

from mdmappliance.core.timestamps import utc_timestamp
from mdmappliance.mdm.errors import IdentityRefused, NotManaged
from mdmappliance.mdm.messages import Channel
from mdmappliance.pki.identity import DeviceIdentity
from mdmappliance.store import Tx
from mdmappliance.store.enrollments import BoundCertificate, Enrollment
from mdmappliance.store.events import device_actor

INACTIVE = ("checked_out", "retired")
#: How stale ``last_seen`` may get before a message rewrites it (``touch``).
LAST_SEEN_EVERY = datetime.timedelta(seconds=10)


def refuse_foreign_certificate(tx: Tx, udid: str, identity: DeviceIdentity) -> None:
    """One certificate never serves two UDIDs; one issued for a UDID (a DEP enrollment, a
    renewal) serves only that one."""
    issued_to = tx.links.issued_udid(identity.sha256)
    if issued_to is not None and issued_to != udid:
        raise IdentityRefused(
            f"certificate {identity.sha256[:16]}… was issued for device {issued_to}, not {udid}"
        )
    owner = tx.enrollments.identity_owner(identity.sha256)
    if owner is None:
        return
    if owner.revoked_at is not None:
        raise IdentityRefused(
            f"certificate {identity.sha256[:16]}… was revoked on {owner.revoked_at}"
        )
    if owner.udid != udid:
        raise IdentityRefused(
            f"certificate {identity.sha256[:16]}… is bound to device {owner.udid}, not {udid}"
        )


def refuse_other_kind(tx: Tx, channel: Channel) -> None:
    """The identifier must be of the kind (UDID or EnrollmentID) the device is known by."""
    stored = tx.enrollments.user_enrollment(channel.udid)
    if stored is not None and stored != channel.user_enrollment:
        raise IdentityRefused(_kind_mismatch(channel, stored))


def _kind_mismatch(channel: Channel, stored: bool) -> str:
    known = "an EnrollmentID (User Enrollment)" if stored else "a UDID"
    sent = "EnrollmentID" if channel.user_enrollment else "UDID"
    return f"device {channel.udid} is known by {known}; the message names it as {sent}"


def refuse_takeover(tx: Tx, udid: str, identity: DeviceIdentity) -> None:
    """While a device is managed, only a renewal issued for it may replace its certificate.

    Otherwise anyone holding a fresh identity (say, from a second enrollment link) could
    Authenticate with a managed device's UDID and take its commands, UnlockToken included.
    A device that lost its profile without checking out is retired first, then re-enrolls.
    """
    device = tx.enrollments.get(udid)
    if device is None or device.state in INACTIVE:
        return
    current = tx.enrollments.current_identity(udid)
    if current is None or current == identity.sha256:
        return
    if not tx.links.issued_for(identity.sha256, udid):
        raise IdentityRefused(
            f"device {udid} is managed with another certificate; only a renewal issued for it "
            "can replace it (retire the device to let it enroll again)"
        )


def require_bound_identity(tx: Tx, channel: Channel, identity: DeviceIdentity) -> Enrollment:
    """The device channel enrollment of a managed device whose bound certificate this is."""
    found = tx.enrollments.bound_check(identity.sha256, channel.udid)
    device = found.device
    if found.revoked_at is not None:
        raise IdentityRefused(
            f"certificate {identity.sha256[:16]}… was revoked on {found.revoked_at}"
        )
    if device is None:
        if found.owner is None:
            raise NotManaged(f"device {channel.udid} is not enrolled here")
        raise IdentityRefused(
            f"certificate {identity.sha256[:16]}… is bound to device {found.owner}, "
            f"not {channel.udid}"
        )
    if found.user_enrollment != channel.user_enrollment:
        raise IdentityRefused(_kind_mismatch(channel, found.user_enrollment))
    if device.state in INACTIVE:
        raise NotManaged(f"device {channel.udid} is {device.state.replace('_', ' ')}")
    if found.owner != channel.udid or not found.current:
        raise IdentityRefused(
            f"certificate {identity.sha256[:16]}… is not the one bound to device {channel.udid}"
        )
    return device


def require_user_channel(tx: Tx, channel: Channel) -> Enrollment:
    """An existing, active user channel, with its AuthToken when it has one."""
    user = tx.enrollments.get(channel.udid, channel.user_id)
    if user is None:
        raise IdentityRefused(f"no user channel {channel.user_id} on device {channel.udid}")
    if user.state in INACTIVE:
        raise IdentityRefused(f"user channel {channel.describe()} is {user.state}")
    check_auth_token(user, channel)
    return user


def check_auth_token(enrollment: Enrollment, channel: Channel) -> None:
    if enrollment.auth_token_sha256 is None:
        return
    presented = hash_auth_token(channel.auth_token or "")
    if not hmac.compare_digest(presented, enrollment.auth_token_sha256):
        raise IdentityRefused(f"missing or wrong AuthToken for user {channel.user_id}")


def hash_auth_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def bind_identity(tx: Tx, udid: str, identity: DeviceIdentity) -> bool:
    """Make ``identity`` the certificate bound to ``udid``; True if that changed anything."""
    if tx.enrollments.current_identity(udid) == identity.sha256:
        return False
    cert = identity.certificate
    subject = cert.subject.rfc4514_string()
    tx.enrollments.bind_identity(
        udid,
        BoundCertificate(
            sha256=identity.sha256,
            subject=subject,
            issuer=cert.issuer.rfc4514_string(),
            serial=format(cert.serial_number, "x"),
            not_before=utc_timestamp(cert.not_valid_before_utc),
            not_after=utc_timestamp(cert.not_valid_after_utc),
        ),
        utc_timestamp(),
    )
    tx.events.record(
        "identity.bound",
        actor=device_actor(udid),
        subject=udid,
        detail={"sha256": identity.sha256, "subject": subject, "source": identity.source},
    )
    return True


def touch(tx: Tx, enrollment: Enrollment) -> None:
    """Record that this enrollment was just heard from (an inactive one is active again).

    ``last_seen`` is rewritten at most every ``LAST_SEEN_EVERY``: a device answering a queue
    of commands would otherwise rewrite its row on every message, and an empty-queue Idle
    would be a write (a commit with its fsync) only for this. An inactive one wakes at once."""
    now = datetime.datetime.now(datetime.UTC)
    seen = enrollment.last_seen
    if (
        enrollment.inactive_since is None
        and seen is not None
        and seen > utc_timestamp(now - LAST_SEEN_EVERY)
    ):
        return
    woke = tx.enrollments.touch(enrollment.id, utc_timestamp(now))
    if woke is not None:
        tx.events.record("enrollment.active", subject=woke, detail={"enrollment_id": enrollment.id})
