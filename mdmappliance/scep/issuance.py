"""What the store decides for a SCEP request whose crypto checked out: whether its challenge
(PKCSReq) or its signer (RenewalReq) entitles it to the certificate already made for it.

Every refusal raises SCEPFailure inside the transaction, so it rolls back: a refused
request changes nothing. A request resent with the same transactionID by the same key gets
the certificate its first copy got, and nothing new is issued.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from mdmappliance.core.timestamps import utc_timestamp
from mdmappliance.scep.attributes import FailInfo, SCEPFailure
from mdmappliance.scep.challenges import challenge_sha256
from mdmappliance.store import Tx

INACTIVE = ("checked_out", "retired")


@dataclass(frozen=True)
class Candidate:
    """A certificate made for a request, waiting for the store's yes."""

    transaction_id: str
    signer_sha256: str
    certificate: x509.Certificate
    peer: str


def previously_issued(tx: Tx, transaction_id: str, signer_sha256: str) -> bytes | None:
    """The certificate this transaction got before (a resend or a GetCertInitial poll)."""
    return tx.scep.issued_in(transaction_id, signer_sha256)


def _finish(tx: Tx, candidate: Candidate, sha256: str, now: str) -> bytes:
    der = candidate.certificate.public_bytes(Encoding.DER)
    tx.scep.record_transaction(candidate.transaction_id, candidate.signer_sha256, der, sha256, now)
    return der


def issue_with_challenge(tx: Tx, candidate: Candidate, challenge: str) -> bytes:
    """PKCSReq: use the challenge up and record the identity against what it was for."""
    again = previously_issued(tx, candidate.transaction_id, candidate.signer_sha256)
    if again is not None:
        return again
    now = utc_timestamp()
    key = challenge_sha256(challenge)
    found = tx.scep.challenge(key)
    if found is None:
        raise SCEPFailure(FailInfo.BAD_REQUEST, "the challenge password is wrong")
    if found.used_at is not None:
        raise SCEPFailure(FailInfo.BAD_REQUEST, "the challenge password was already used")
    if found.expires_at <= now:
        raise SCEPFailure(FailInfo.BAD_REQUEST, "the challenge password has expired")
    subject = candidate.certificate.subject.rfc4514_string()
    if subject != found.subject:
        raise SCEPFailure(
            FailInfo.BAD_REQUEST,
            f"the CSR asks for subject {subject!r}, the profile for {found.subject!r}",
        )
    sha256 = tx.links.record_certificate(
        candidate.certificate,
        now,
        token_id=found.token_id,
        renews=found.renews_sha256,
        udid=found.udid,
        access_rights=found.access_rights,
    )
    if not tx.scep.use_challenge(key, sha256, now):
        raise SCEPFailure(FailInfo.BAD_REQUEST, "the challenge password was already used")
    if found.renews_sha256 is not None:
        tx.links.renewal_issued(found.renews_sha256, sha256)
    tx.events.record(
        "scep.issued",
        actor=f"peer:{candidate.peer}",
        subject=found.udid or (str(found.token_id) if found.token_id is not None else None),
        detail={
            "identity_sha256": sha256,
            "subject": subject,
            "link_id": found.token_id,
            "renews_sha256": found.renews_sha256,
        },
    )
    return _finish(tx, candidate, sha256, now)


def issue_renewal(tx: Tx, candidate: Candidate, signer_sha256: str) -> bytes:
    """RenewalReq: a current, unrevoked identity of a managed device gets its replacement,
    recorded as that device's renewal (the device channel then accepts it)."""
    again = previously_issued(tx, candidate.transaction_id, candidate.signer_sha256)
    if again is not None:
        return again
    old = tx.scep.renewable(signer_sha256)
    if old is None:
        raise SCEPFailure(FailInfo.BAD_CERT_ID, "the signer is not an identity this CA issued")
    if old.revoked_at is not None:
        raise SCEPFailure(FailInfo.BAD_CERT_ID, f"the signer was revoked on {old.revoked_at}")
    if old.bound_udid is None:
        raise SCEPFailure(FailInfo.BAD_CERT_ID, "the signer never enrolled a device")
    if not old.current:
        raise SCEPFailure(FailInfo.BAD_CERT_ID, "the signer was replaced by a newer identity")
    if old.state is None or old.state in INACTIVE:
        raise SCEPFailure(FailInfo.BAD_CERT_ID, "the signer's device is not managed here")
    now = utc_timestamp()
    sha256 = tx.links.record_certificate(
        candidate.certificate,
        now,
        renews=signer_sha256,
        udid=old.bound_udid,
        access_rights=old.access_rights,
    )
    tx.events.record(
        "identity.renewed",
        actor=f"peer:{candidate.peer}",
        subject=old.bound_udid,
        detail={"old_sha256": signer_sha256, "new_sha256": sha256, "by": "scep"},
    )
    return _finish(tx, candidate, sha256, now)
