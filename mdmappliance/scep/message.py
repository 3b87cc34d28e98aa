"""SCEP pkiMessages: reading a client's request and writing the CA's CertRep.

A pkiMessage is a CMS SignedData whose signed attributes carry the SCEP fields and whose
content is the pkcsPKIEnvelope (an EnvelopedData). ``cryptography`` cannot add custom signed
attributes to a SignedData, so the CertRep's SignerInfo is assembled with asn1crypto and only
the signature is made with ``cryptography``, over the DER of the attributes as a SET.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

from asn1crypto import cms as acms
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding

from mdmappliance import pki
from mdmappliance.pki.cms import PARSE_ERRORS, CMSError, SignedContent, verify_signed_data
from mdmappliance.scep import attributes as attrs
from mdmappliance.scep.attributes import FailInfo, MessageType, PKIStatus, SCEPFailure

#: Reply digests by the request's: SHA-2 as asked, SHA-1 only for a client that used it.
_REPLY_DIGESTS: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


class MalformedMessage(ValueError):
    """Not a pkiMessage at all: no CertRep can be addressed to it (HTTP 400)."""


@dataclass(frozen=True)
class Header:
    """The fields a CertRep echoes, read before the signature is checked (a failure reply
    needs them too)."""

    transaction_id: str
    message_type: int
    sender_nonce: bytes
    digest: str


@dataclass(frozen=True)
class Request:
    """A pkiMessage whose signature verified."""

    header: Header
    signer: x509.Certificate
    envelope: bytes
    #: A challengePassword among the signed attributes (Apple sends one there too).
    signed_challenge: str | None = None

    @property
    def signer_sha256(self) -> str:
        """SHA-256 of the signer certificate: with the transactionID, what tells a resent
        request (or a poll) from a new one. Not the key: scepclient, for one, derives its
        transactionID from the key and keeps the key when it renews."""
        return hashlib.sha256(self.signer.public_bytes(Encoding.DER)).hexdigest()


def read_header(der: bytes) -> Header:
    """The SCEP fields of a pkiMessage (BER accepted), unverified. MalformedMessage if the
    bytes are not a SignedData with one signer carrying transactionID, messageType and
    senderNonce."""
    try:
        info = acms.ContentInfo.load(der)
        if info["content_type"].native != "signed_data":
            raise MalformedMessage(
                f"a pkiMessage is a SignedData, not {info['content_type'].native}"
            )
        signer_infos = info["content"]["signer_infos"]
        if len(signer_infos) != 1:
            raise MalformedMessage(f"a pkiMessage has one signer, not {len(signer_infos)}")
        signer_info = signer_infos[0]
        digest = signer_info["digest_algorithm"]["algorithm"].native
        signed = signer_info["signed_attrs"]
        found = attrs.read_attributes(signed if signed.native is not None else None)
    except MalformedMessage:
        raise
    except SCEPFailure as e:
        raise MalformedMessage(str(e)) from None
    except PARSE_ERRORS as e:
        raise MalformedMessage(f"not a pkiMessage ({e})") from None
    transaction_id = found.get(attrs.TRANSACTION_ID)
    message_type = found.get(attrs.MESSAGE_TYPE)
    nonce = found.get(attrs.SENDER_NONCE)
    if not transaction_id or not isinstance(transaction_id, str) or len(transaction_id) > 256:
        raise MalformedMessage("the pkiMessage has no usable transactionID")
    if (
        not isinstance(message_type, str)
        or not message_type.isascii()
        or not message_type.isdigit()
    ):
        raise MalformedMessage("the pkiMessage has no usable messageType")
    if not isinstance(nonce, bytes) or not 1 <= len(nonce) <= 64:
        raise MalformedMessage("the pkiMessage has no usable senderNonce")
    return Header(transaction_id, int(message_type[:6]), nonce, str(digest))


def verify_request(der: bytes, header: Header) -> Request:
    """Check the signature (messageDigest included) and return the request; SCEPFailure
    badMessageCheck if it does not verify."""
    try:
        signed: SignedContent = verify_signed_data(der)
    except CMSError as e:
        raise SCEPFailure(
            FailInfo.BAD_MESSAGE_CHECK, f"the signature does not verify: {e}"
        ) from None
    try:
        challenge = attrs.read_attributes(signed.signed_attrs).get(attrs.CHALLENGE_PASSWORD)
    except SCEPFailure:
        challenge = None
    return Request(header, signed.signer, signed.content, challenge)


def _signer_identifier(cert: x509.Certificate) -> acms.SignerIdentifier:
    parsed = acms.Certificate.load(cert.public_bytes(Encoding.DER))
    return acms.SignerIdentifier(
        name="issuer_and_serial_number",
        value=acms.IssuerAndSerialNumber(
            {"issuer": parsed.issuer, "serial_number": parsed.serial_number}
        ),
    )


def sign_pki_message(
    signer: x509.Certificate,
    key: pki.PrivateKey,
    scep_attributes: list[acms.CMSAttribute],
    content: bytes | None,
    digest_name: str = "sha256",
) -> bytes:
    """A SignedData of ``content`` (absent: none) whose one SignerInfo signs the SCEP
    attributes next to contentType and messageDigest."""
    algorithm = _REPLY_DIGESTS[digest_name]()
    h = hashes.Hash(algorithm)
    h.update(content or b"")
    attributes = acms.CMSAttributes(
        [
            acms.CMSAttribute({"type": "content_type", "values": ["data"]}),
            acms.CMSAttribute({"type": "message_digest", "values": [h.finalize()]}),
            *scep_attributes,
        ]
    )
    to_sign = attributes.dump()  # a SET (0x31): what RFC 5652 5.4 says the signature covers
    if isinstance(key, rsa.RSAPrivateKey):
        signature = key.sign(to_sign, padding.PKCS1v15(), algorithm)
        signature_algorithm = "rsassa_pkcs1v15"
    else:
        signature = key.sign(to_sign, ec.ECDSA(algorithm))
        signature_algorithm = f"{digest_name}_ecdsa"
    signer_info = acms.SignerInfo(
        {
            "version": "v1",
            "sid": _signer_identifier(signer),
            "digest_algorithm": {"algorithm": digest_name},
            "signed_attrs": attributes,
            "signature_algorithm": {"algorithm": signature_algorithm},
            "signature": signature,
        }
    )
    encapsulated: dict[str, object] = {"content_type": "data"}
    if content is not None:
        encapsulated["content"] = content
    signed_data = acms.SignedData(
        {
            "version": "v1",
            "digest_algorithms": [{"algorithm": digest_name}],
            "encap_content_info": encapsulated,
            "certificates": [acms.Certificate.load(signer.public_bytes(Encoding.DER))],
            "signer_infos": [signer_info],
        }
    )
    return bytes(acms.ContentInfo({"content_type": "signed_data", "content": signed_data}).dump())


def cert_rep(
    ca: pki.IssuedPair,
    header: Header,
    *,
    status: PKIStatus,
    envelope: bytes | None = None,
    fail_info: FailInfo | None = None,
    fail_text: str | None = None,
) -> bytes:
    """A CertRep signed by the CA: the request's transactionID, a fresh senderNonce, the
    request's senderNonce as recipientNonce, and the envelope (SUCCESS) or failInfo."""
    scep_attributes = [
        attrs.attribute(attrs.TRANSACTION_ID, header.transaction_id),
        attrs.attribute(attrs.MESSAGE_TYPE, str(int(MessageType.CERT_REP))),
        attrs.attribute(attrs.PKI_STATUS, str(int(status))),
        attrs.attribute(attrs.SENDER_NONCE, os.urandom(16)),
        attrs.attribute(attrs.RECIPIENT_NONCE, header.sender_nonce),
    ]
    if status == PKIStatus.FAILURE:
        scep_attributes.append(attrs.attribute(attrs.FAIL_INFO, str(int(fail_info or 0))))
        if fail_text:
            scep_attributes.append(attrs.attribute(attrs.FAIL_INFO_TEXT, fail_text[:200]))
    digest_name = header.digest if header.digest in _REPLY_DIGESTS else "sha256"
    return sign_pki_message(ca.certificate, ca.key, scep_attributes, envelope, digest_name)


def degenerate_certificates(certificates: list[x509.Certificate]) -> bytes:
    """A certs-only SignedData (no content, no signers): how a CertRep carries the issued
    certificate inside its envelope."""
    signed_data = acms.SignedData(
        {
            "version": "v1",
            "digest_algorithms": [],
            "encap_content_info": {"content_type": "data"},
            "certificates": [
                acms.Certificate.load(c.public_bytes(Encoding.DER)) for c in certificates
            ],
            "signer_infos": [],
        }
    )
    return bytes(acms.ContentInfo({"content_type": "signed_data", "content": signed_data}).dump())
