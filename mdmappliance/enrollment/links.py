"""One-time enrollment links and the identities handed out through them.

A link's token is single-use and expires; only its SHA-256 is stored. A token is consumed in
the same transaction that records the identity its profile carries, so either both happen or
neither: an interrupted download after that point has used the link (the identity may have
reached the client), and the admin makes a new one.
"""

from __future__ import annotations

import datetime
import hashlib
import re
import secrets
import sqlite3
from dataclasses import dataclass

from cryptography import x509

from mdmappliance.core.timestamps import utc_timestamp
from mdmappliance.pki.identity import DeviceIdentity
from mdmappliance.store.events import record_event

TOKEN_FORM = re.compile(r"^[A-Za-z0-9_-]{20,100}$")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([mhd])$")


class LinkRefused(ValueError):
    """The enrollment link cannot be used; the message is shown to the person holding it."""


def parse_duration(text: str) -> datetime.timedelta:
    """``30m``, ``12h``, ``7d``."""
    match = _DURATION.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a duration like 30m, 12h or 7d")
    amount = float(match.group(1))
    unit = {"m": "minutes", "h": "hours", "d": "days"}[match.group(2)]
    duration = datetime.timedelta(**{unit: amount})
    if not datetime.timedelta(minutes=1) <= duration <= datetime.timedelta(days=365):
        raise ValueError(f"{text!r} must be between 1 minute and 365 days")
    return duration


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


@dataclass(frozen=True)
class Link:
    id: int
    note: str
    created_by: str
    created_at: str
    expires_at: str
    used_at: str | None
    revoked_at: str | None

    def status(self, now: str) -> str:
        if self.revoked_at:
            return "revoked"
        if self.used_at:
            return "used"
        if self.expires_at <= now:
            return "expired"
        return "unused"


def create_link(
    conn: sqlite3.Connection, lifetime: datetime.timedelta, note: str = "", actor: str = "admin"
) -> tuple[str, Link]:
    """A new link: the token (shown once) and its record."""
    token = secrets.token_urlsafe(24)
    now = datetime.datetime.now(datetime.UTC)
    created, expires = utc_timestamp(now), utc_timestamp(now + lifetime)
    cursor = conn.execute(
        "INSERT INTO enrollment_tokens (token_sha256, note, created_by, created_at, expires_at) "
        "VALUES (?, ?, ?, ?, ?)",
        (token_hash(token), note, actor, created, expires),
    )
    link_id = int(cursor.lastrowid or 0)
    record_event(
        conn,
        "enrollment_link.created",
        actor=actor,
        subject=str(link_id),
        detail={"expires_at": expires, "note": note},
    )
    return token, Link(link_id, note, actor, created, expires, None, None)


def list_links(conn: sqlite3.Connection) -> list[Link]:
    rows = conn.execute(
        "SELECT id, note, created_by, created_at, expires_at, used_at, revoked_at "
        "FROM enrollment_tokens ORDER BY id"
    ).fetchall()
    return [Link(*row) for row in rows]


def revoke_link(conn: sqlite3.Connection, link_id: int, actor: str = "admin") -> bool:
    cursor = conn.execute(
        "UPDATE enrollment_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL "
        "AND used_at IS NULL",
        (utc_timestamp(), link_id),
    )
    if cursor.rowcount:
        record_event(conn, "enrollment_link.revoked", actor=actor, subject=str(link_id))
    return bool(cursor.rowcount)


def check_link(conn: sqlite3.Connection, token: str) -> int:
    """The link's id if it can be used now, else LinkRefused with a human message."""
    if not TOKEN_FORM.match(token):
        raise LinkRefused("This enrollment link is not valid.")
    row = conn.execute(
        "SELECT id, expires_at, used_at, revoked_at FROM enrollment_tokens WHERE token_sha256 = ?",
        (token_hash(token),),
    ).fetchone()
    if row is None:
        raise LinkRefused("This enrollment link is not valid.")
    link_id, expires_at, used_at, revoked_at = row
    if revoked_at:
        raise LinkRefused("This enrollment link was revoked; ask your IT team for a new one.")
    if used_at:
        raise LinkRefused("This enrollment link was already used; ask your IT team for a new one.")
    if expires_at <= utc_timestamp():
        raise LinkRefused("This enrollment link has expired; ask your IT team for a new one.")
    return int(link_id)


def record_issued(
    conn: sqlite3.Connection,
    certificate: x509.Certificate,
    *,
    token_id: int | None = None,
    renews: str | None = None,
    udid: str | None = None,
    access_rights: int | None = None,
) -> str:
    identity = DeviceIdentity.of(certificate, "issued")
    conn.execute(
        "INSERT INTO issued_identities (sha256, token_id, renews_sha256, udid, subject, serial, "
        "not_after, issued_at, access_rights) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            identity.sha256,
            token_id,
            renews,
            udid,
            certificate.subject.rfc4514_string(),
            format(certificate.serial_number, "x"),
            utc_timestamp(certificate.not_valid_after_utc),
            utc_timestamp(),
            access_rights,
        ),
    )
    return identity.sha256


def consume_link(
    conn: sqlite3.Connection,
    token: str,
    certificate: x509.Certificate,
    peer: str,
    access_rights: int | None = None,
) -> int:
    """Use the link for this identity (one transaction: both happen, or neither)."""
    link_id = check_link(conn, token)
    conn.execute(
        "UPDATE enrollment_tokens SET used_at = ?, used_by = ? WHERE id = ?",
        (utc_timestamp(), peer, link_id),
    )
    sha256 = record_issued(conn, certificate, token_id=link_id, access_rights=access_rights)
    record_event(
        conn,
        "enrollment_link.used",
        actor=f"peer:{peer}",
        subject=str(link_id),
        detail={"identity_sha256": sha256},
    )
    return link_id
