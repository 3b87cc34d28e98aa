"""One-time SCEP challenges: made for each profile download or renewal, stored hashed.

A static challenge is no authentication (CERT/CC VU#971035): anyone who reads one profile
could get identities for ever. Here each profile carries a fresh random challenge bound to
what it was made for (a link, or the renewal of one identity), and the first PKCSReq that
gets a certificate with it uses it up.
"""

from __future__ import annotations

import datetime
import hashlib
import secrets

from cryptography import x509

from mdmappliance.core.timestamps import utc_timestamp
from mdmappliance.store import Tx


def new_challenge_text() -> str:
    """A challenge: 192 random bits, URL-safe (it travels in a plist and a CSR)."""
    return secrets.token_urlsafe(24)


def challenge_sha256(challenge: str) -> str:
    return hashlib.sha256(challenge.encode("utf-8")).hexdigest()


def record_challenge(
    tx: Tx,
    challenge: str,
    subject: x509.Name,
    expires_at: datetime.datetime,
    *,
    token_id: int | None = None,
    renews_sha256: str | None = None,
    udid: str | None = None,
    access_rights: int | None = None,
) -> None:
    """Remember a challenge that a profile just carried away (its hash only)."""
    tx.scep.add_challenge(
        challenge_sha256(challenge),
        subject=subject.rfc4514_string(),
        created_at=utc_timestamp(),
        expires_at=utc_timestamp(expires_at),
        token_id=token_id,
        renews_sha256=renews_sha256,
        udid=udid,
        access_rights=access_rights,
    )
