"""A SCEP client, as a device runs it: a key pair, a CSR with the challenge, a PKCSReq (or a
RenewalReq signed by the current identity), and the certificate unwrapped from the CertRep.

The device simulator and the benchmarks enrol through it; it shares the CMS code with the
server, so the tests also run Debian's scepclient and real captures against the server.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import os
from dataclasses import dataclass

from asn1crypto import cms as acms
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import AttributeOID, NameOID

from mdmappliance import pki
from mdmappliance.pki.cms import PARSE_ERRORS, CMSError, verify_signed_data
from mdmappliance.scep import attributes as attrs
from mdmappliance.scep.attributes import FailInfo, MessageType, PKIStatus
from mdmappliance.scep.envelope import open_envelope, seal_envelope
from mdmappliance.scep.message import sign_pki_message


class CertRepError(ValueError):
    """The CertRep is not from this CA, not for this request, or does not open."""


@dataclass(frozen=True)
class Outgoing:
    der: bytes
    transaction_id: str
    sender_nonce: bytes


@dataclass(frozen=True)
class Answer:
    status: PKIStatus
    fail_info: FailInfo | None
    fail_text: str | None
    certificate: x509.Certificate | None


def key_sha256(public: object) -> str:
    """SHA-256 of a public key's SubjectPublicKeyInfo (transactionIDs are made from it)."""
    assert isinstance(public, rsa.RSAPublicKey | ec.EllipticCurvePublicKey)
    spki = public.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()


def self_signed(key: rsa.RSAPrivateKey, subject: x509.Name) -> x509.Certificate:
    """The throwaway certificate that signs a first PKCSReq (RFC 8894 2.3)."""
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )


def make_csr(
    key: pki.PrivateKey, subject: x509.Name, challenge: str | None
) -> x509.CertificateSigningRequest:
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
    if challenge is not None:
        builder = builder.add_attribute(AttributeOID.CHALLENGE_PASSWORD, challenge.encode())
    return builder.sign(key, hashes.SHA256())


def common_name_subject(name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])


def request_message(
    csr: x509.CertificateSigningRequest,
    *,
    signer: x509.Certificate,
    key: pki.PrivateKey,
    ca: x509.Certificate,
    message_type: MessageType = MessageType.PKCS_REQ,
    cipher: str = "aes256_cbc",
    transaction_id: str | None = None,
    digest: str = "sha256",
    extra_attributes: tuple[acms.CMSAttribute, ...] = (),
) -> Outgoing:
    """A PKCSReq or RenewalReq: the CSR enveloped to the CA, signed by ``signer``."""
    envelope = seal_envelope(csr.public_bytes(Encoding.DER), ca, cipher)
    transaction_id = (
        transaction_id
        or base64.b64encode(bytes.fromhex(key_sha256(csr.public_key()))[:20]).decode()
    )
    nonce = os.urandom(16)
    der = sign_pki_message(
        signer,
        key,
        [
            attrs.attribute(attrs.TRANSACTION_ID, transaction_id),
            attrs.attribute(attrs.MESSAGE_TYPE, str(int(message_type))),
            attrs.attribute(attrs.SENDER_NONCE, nonce),
            *extra_attributes,
        ],
        envelope,
        digest,
    )
    return Outgoing(der, transaction_id, nonce)


def read_answer(
    der: bytes,
    outgoing: Outgoing,
    *,
    ca: x509.Certificate,
    signer: x509.Certificate,
    key: rsa.RSAPrivateKey,
) -> Answer:
    """Check a CertRep as a careful client does (signed by the CA, for this transaction and
    nonce) and unwrap the certificate it carries."""
    try:
        # A FAILURE or PENDING CertRep has no content (RFC 8894 3.3.2): it signs nothing.
        signed = verify_signed_data(der, None if _has_content(der) else b"")
    except CMSError as e:
        raise CertRepError(f"the CertRep does not verify: {e}") from None
    if signed.signer.public_key() != ca.public_key():
        raise CertRepError("the CertRep is not signed by the CA")
    found = attrs.read_attributes(signed.signed_attrs)
    if found.get(attrs.MESSAGE_TYPE) != str(int(MessageType.CERT_REP)):
        raise CertRepError(f"not a CertRep but messageType {found.get(attrs.MESSAGE_TYPE)}")
    if found.get(attrs.TRANSACTION_ID) != outgoing.transaction_id:
        raise CertRepError("the CertRep is for another transaction")
    if found.get(attrs.RECIPIENT_NONCE) != outgoing.sender_nonce:
        raise CertRepError("the CertRep's recipientNonce is not our senderNonce")
    status = PKIStatus(int(found[attrs.PKI_STATUS]))
    if status != PKIStatus.SUCCESS:
        info = found.get(attrs.FAIL_INFO)
        return Answer(
            status,
            FailInfo(int(info)) if info is not None else None,
            found.get(attrs.FAIL_INFO_TEXT),
            None,
        )
    opened = open_envelope(signed.content, (signer,), key)
    degenerate = certificates_in(opened.content)
    return Answer(status, None, None, degenerate[0])


def _has_content(der: bytes) -> bool:
    try:
        content = acms.ContentInfo.load(der)["content"]["encap_content_info"]["content"]
    except PARSE_ERRORS as e:
        raise CertRepError(f"the CertRep is not a SignedData ({e})") from None
    return content.native is not None


def certificates_in(der: bytes) -> list[x509.Certificate]:
    """The certificates of a degenerate (certs-only) SignedData."""
    info = acms.ContentInfo.load(der)
    certificates = info["content"]["certificates"] or []
    found = [x509.load_der_x509_certificate(c.chosen.dump()) for c in certificates]
    if not found:
        raise CertRepError("the CertRep carries no certificate")
    return found
