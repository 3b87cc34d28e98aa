"""One-time enrollment links and the identities handed out through them.

A link's token is single-use and expires; only its SHA-256 is stored. A token is consumed in
the same transaction that records the identity its profile carries (or, for SCEP, the
one-time challenge the device will get its identity with), so either both happen or
neither: an interrupted download after that point has used the link (the identity may have
reached the client), and the admin makes a new one.
"""

from __future__ import annotations

import datetime
import hashlib
import re
import secrets

from cryptography import x509

from mdmappliance.core.timestamps import utc_timestamp
from mdmappliance.enrollment.factory import MadeProfile
from mdmappliance.scep.challenges import record_challenge
from mdmappliance.store import Tx
from mdmappliance.store.links import Link

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
    try:
        duration = datetime.timedelta(**{unit: amount})
    except OverflowError:
        duration = datetime.timedelta.max
    if not datetime.timedelta(minutes=1) <= duration <= datetime.timedelta(days=365):
        raise ValueError(f"{text!r} must be between 1 minute and 365 days")
    return duration


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def create_link(
    tx: Tx, lifetime: datetime.timedelta, note: str = "", actor: str = "admin"
) -> tuple[str, Link]:
    """A new link: the token (shown once) and its record."""
    token = secrets.token_urlsafe(24)
    now = datetime.datetime.now(datetime.UTC)
    created, expires = utc_timestamp(now), utc_timestamp(now + lifetime)
    link_id = tx.links.create(token_hash(token), note, actor, created, expires)
    tx.events.record(
        "enrollment_link.created",
        actor=actor,
        subject=str(link_id),
        detail={"expires_at": expires, "note": note},
    )
    return token, Link(link_id, note, actor, created, expires, None, None)


def list_links(tx: Tx) -> list[Link]:
    return tx.links.all()


def revoke_link(tx: Tx, link_id: int, actor: str = "admin") -> bool:
    revoked = tx.links.revoke(link_id, utc_timestamp())
    if revoked:
        tx.events.record("enrollment_link.revoked", actor=actor, subject=str(link_id))
    return revoked


def check_link(tx: Tx, token: str) -> int:
    """The link's id if it can be used now, else LinkRefused with a human message."""
    if not TOKEN_FORM.match(token):
        raise LinkRefused("This enrollment link is not valid.")
    link = tx.links.find(token_hash(token))
    if link is None:
        raise LinkRefused("This enrollment link is not valid.")
    if link.revoked_at:
        raise LinkRefused("This enrollment link was revoked; ask your IT team for a new one.")
    if link.used_at:
        raise LinkRefused("This enrollment link was already used; ask your IT team for a new one.")
    if link.expires_at <= utc_timestamp():
        raise LinkRefused("This enrollment link has expired; ask your IT team for a new one.")
    return link.id


def record_issued(
    tx: Tx,
    certificate: x509.Certificate,
    *,
    token_id: int | None = None,
    renews: str | None = None,
    udid: str | None = None,
    access_rights: int | None = None,
) -> str:
    """Remember an identity the appliance issued (through a link, or as a renewal)."""
    return tx.links.record_certificate(
        certificate,
        utc_timestamp(),
        token_id=token_id,
        renews=renews,
        udid=udid,
        access_rights=access_rights,
    )


def consume_link(
    tx: Tx,
    token: str,
    made: MadeProfile,
    peer: str,
    access_rights: int | None = None,
    challenge_expires: datetime.datetime | None = None,
) -> int:
    """Use the link for this profile's identity, or for its SCEP challenge (one
    transaction: both happen, or neither)."""
    link_id = check_link(tx, token)
    tx.links.mark_used(link_id, utc_timestamp(), peer)
    detail: dict[str, object]
    if made.identity is not None:
        sha256 = record_issued(
            tx, made.identity.certificate, token_id=link_id, access_rights=access_rights
        )
        detail = {"identity_sha256": sha256}
    else:
        assert made.scep is not None and challenge_expires is not None
        record_challenge(
            tx,
            made.scep.challenge,
            made.scep.subject,
            challenge_expires,
            token_id=link_id,
            access_rights=access_rights,
        )
        detail = {"identity": "scep", "subject": made.scep.subject.rfc4514_string()}
    tx.events.record(
        "enrollment_link.used", actor=f"peer:{peer}", subject=str(link_id), detail=detail
    )
    return link_id
