"""Enrollments and the certificates bound to them: who may speak for which UDID.

The rules (see README, "Device identity and 401"):

- A certificate (SHA-256 of its DER) belongs to at most one UDID, ever.
- Authenticate binds the presented certificate to the UDID. While the device is managed, a
  different certificate is accepted only if the appliance issued it as that device's renewal;
  a checked-out or retired device may enroll again with any trusted certificate.
- Every other message must come with the certificate currently bound to its UDID.
- 401, which makes the device delete its MDM profile, is only for devices this server is not
  managing: an unknown UDID with an unknown certificate, or a checked-out or retired one.
  Everything else that is refused gets 403, written to the event log.
"""

from __future__ import annotations

import hashlib
import hmac
import sqlite3
from dataclasses import dataclass

from mdmappliance.core.timestamps import utc_timestamp
from mdmappliance.mdm.errors import IdentityRefused, NotManaged
from mdmappliance.mdm.messages import Channel
from mdmappliance.pki.identity import DeviceIdentity
from mdmappliance.store.events import record_event

INACTIVE = ("checked_out", "retired")


@dataclass(frozen=True)
class Enrollment:
    id: int
    udid: str
    user_id: str
    state: str
    topic: str
    auth_token_sha256: str | None


def get_enrollment(conn: sqlite3.Connection, udid: str, user_id: str = "") -> Enrollment | None:
    row = conn.execute(
        "SELECT id, udid, user_id, state, topic, auth_token_sha256 FROM enrollments "
        "WHERE udid = ? AND user_id = ?",
        (udid, user_id),
    ).fetchone()
    return None if row is None else Enrollment(*row)


def current_identity(conn: sqlite3.Connection, udid: str) -> str | None:
    row = conn.execute(
        "SELECT sha256 FROM identities WHERE udid = ? AND current = 1", (udid,)
    ).fetchone()
    return None if row is None else str(row[0])


def refuse_foreign_certificate(
    conn: sqlite3.Connection, udid: str, identity: DeviceIdentity
) -> None:
    """One certificate never serves two UDIDs."""
    row = conn.execute(
        "SELECT udid, revoked_at FROM identities WHERE sha256 = ?", (identity.sha256,)
    ).fetchone()
    if row is None:
        return
    owner, revoked_at = row
    if revoked_at is not None:
        raise IdentityRefused(f"certificate {identity.sha256[:16]}… was revoked on {revoked_at}")
    if owner != udid:
        raise IdentityRefused(
            f"certificate {identity.sha256[:16]}… is bound to device {owner}, not {udid}"
        )


def refuse_takeover(conn: sqlite3.Connection, udid: str, identity: DeviceIdentity) -> None:
    """While a device is managed, only a renewal issued for it may replace its certificate.

    Otherwise anyone holding a fresh identity (say, from a second enrollment link) could
    Authenticate with a managed device's UDID and take its commands, UnlockToken included.
    A device that lost its profile without checking out is retired first, then re-enrolls.
    """
    device = get_enrollment(conn, udid)
    if device is None or device.state in INACTIVE:
        return
    current = current_identity(conn, udid)
    if current is None or current == identity.sha256:
        return
    renewal = conn.execute(
        "SELECT 1 FROM issued_identities WHERE sha256 = ? AND udid = ?", (identity.sha256, udid)
    ).fetchone()
    if renewal is None:
        raise IdentityRefused(
            f"device {udid} is managed with another certificate; only a renewal issued for it "
            "can replace it (retire the device to let it enroll again)"
        )


def require_bound_identity(
    conn: sqlite3.Connection, channel: Channel, identity: DeviceIdentity
) -> Enrollment:
    """The device channel enrollment of a managed device whose bound certificate this is."""
    row = conn.execute(
        "SELECT e.id, e.udid, e.user_id, e.state, e.topic, e.auth_token_sha256, i.udid, "
        "i.current, i.revoked_at FROM (SELECT ? AS sha256) AS presented "
        "LEFT JOIN enrollments AS e ON e.udid = ? AND e.user_id = '' "
        "LEFT JOIN identities AS i ON i.sha256 = presented.sha256",
        (identity.sha256, channel.udid),
    ).fetchone()
    device = Enrollment(*row[:6]) if row[0] is not None else None
    owner, current, revoked_at = row[6], row[7], row[8]
    if revoked_at is not None:
        raise IdentityRefused(f"certificate {identity.sha256[:16]}… was revoked on {revoked_at}")
    if device is None:
        if owner is None:
            raise NotManaged(f"device {channel.udid} is not enrolled here")
        raise IdentityRefused(
            f"certificate {identity.sha256[:16]}… is bound to device {owner}, not {channel.udid}"
        )
    if device.state in INACTIVE:
        raise NotManaged(f"device {channel.udid} is {device.state.replace('_', ' ')}")
    if owner != channel.udid or current != 1:
        raise IdentityRefused(
            f"certificate {identity.sha256[:16]}… is not the one bound to device {channel.udid}"
        )
    return device


def require_user_channel(conn: sqlite3.Connection, channel: Channel) -> Enrollment:
    """An existing, active user channel, with its AuthToken when it has one."""
    user = get_enrollment(conn, channel.udid, channel.user_id)
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


def bind_identity(conn: sqlite3.Connection, udid: str, identity: DeviceIdentity) -> bool:
    """Make ``identity`` the certificate bound to ``udid``; True if that changed anything."""
    if current_identity(conn, udid) == identity.sha256:
        return False
    now = utc_timestamp()
    conn.execute("UPDATE identities SET current = 0 WHERE udid = ? AND current = 1", (udid,))
    cert = identity.certificate
    conn.execute(
        "INSERT INTO identities (sha256, udid, subject, issuer, serial, not_before, not_after, "
        "bound_at, current) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1) "
        "ON CONFLICT (sha256) DO UPDATE SET current = 1, bound_at = excluded.bound_at",
        (
            identity.sha256,
            udid,
            cert.subject.rfc4514_string(),
            cert.issuer.rfc4514_string(),
            format(cert.serial_number, "x"),
            utc_timestamp(cert.not_valid_before_utc),
            utc_timestamp(cert.not_valid_after_utc),
            now,
        ),
    )
    record_event(
        conn,
        "identity.bound",
        actor=f"device:{udid}",
        subject=udid,
        detail={
            "sha256": identity.sha256,
            "subject": cert.subject.rfc4514_string(),
            "source": identity.source,
        },
    )
    return True


def touch(conn: sqlite3.Connection, enrollment_id: int) -> None:
    """Record that this enrollment was just heard from (an inactive one is active again)."""
    now = utc_timestamp()
    active = conn.execute(
        "UPDATE enrollments SET last_seen = ? WHERE id = ? AND inactive_since IS NULL",
        (now, enrollment_id),
    )
    if active.rowcount:
        return  # the common case: one statement
    woke = conn.execute(
        "UPDATE enrollments SET last_seen = ?, inactive_since = NULL WHERE id = ? RETURNING udid",
        (now, enrollment_id),
    ).fetchone()
    if woke is not None:
        record_event(
            conn, "enrollment.active", subject=woke[0], detail={"enrollment_id": enrollment_id}
        )
