"""CMS (PKCS#7) SignedData verification: ``Mdm-Signature`` and, later, device-signed payloads.

``cryptography`` can sign CMS but has no public verify API, so the structure is parsed with
asn1crypto and every check is done here with ``cryptography`` primitives:

- the ``messageDigest`` signed attribute must equal the hash of the content (without this
  check any body would pass with any valid signature);
- the signature covers the DER of the signed attributes re-tagged as a SET (0x31);
- the signer is the certificate the SignerInfo names (issuer and serial, or key id).

Chain trust and validity dates are the caller's (``trust.py``): this module only proves
that the named certificate signed the content.
"""

from __future__ import annotations

import datetime
import hmac
from dataclasses import dataclass

from asn1crypto import cms as acms
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

DIGESTS: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


class CMSError(ValueError):
    """The signature is malformed, does not verify, or does not cover the content."""


#: What asn1crypto and ``cryptography`` raise for bytes that do not hold what they should
#: (found by fuzzing: not only ValueError).
PARSE_ERRORS: tuple[type[Exception], ...] = (
    ValueError,
    TypeError,
    KeyError,
    AttributeError,
    x509.InvalidVersion,
    UnsupportedAlgorithm,
)


@dataclass(frozen=True)
class SignedContent:
    content: bytes
    signer: x509.Certificate
    certificates: tuple[x509.Certificate, ...]
    #: The signingTime signed attribute, when the signer put one.
    signing_time: datetime.datetime | None = None
    #: Every signed attribute (SCEP reads its own from here), or None without any.
    signed_attrs: acms.CMSAttributes | None = None


def _digest(name: str, data: bytes) -> bytes:
    try:
        algorithm = DIGESTS[name]()
    except KeyError:
        raise CMSError(f"unsupported digest algorithm {name}") from None
    h = hashes.Hash(algorithm)
    h.update(data)
    return h.finalize()


def _find_signer(
    sid: acms.SignerIdentifier, certs: list[tuple[acms.Certificate, x509.Certificate]]
) -> x509.Certificate:
    for parsed, cert in certs:
        if sid.name == "issuer_and_serial_number":
            wanted = sid.chosen
            if (
                parsed.issuer == wanted["issuer"]
                and parsed.serial_number == wanted["serial_number"].native
            ):
                return cert
        elif sid.name == "subject_key_identifier" and parsed.key_identifier == sid.chosen.native:
            return cert
    raise CMSError("the signer's certificate is not in the signature")


def _verify_signature(
    cert: x509.Certificate, signature: bytes, data: bytes, digest: str, algorithm: str
) -> None:
    try:
        public = cert.public_key()
    except (ValueError, UnsupportedAlgorithm) as e:  # a certificate with an unreadable key
        raise CMSError(f"the signer's public key is unreadable ({e})") from None
    hash_algorithm = DIGESTS[digest]()
    try:
        if isinstance(public, rsa.RSAPublicKey):
            if algorithm == "rsassa_pss":
                pad: padding.AsymmetricPadding = padding.PSS(
                    mgf=padding.MGF1(hash_algorithm), salt_length=padding.PSS.AUTO
                )
            else:
                pad = padding.PKCS1v15()
            public.verify(signature, data, pad, hash_algorithm)
        elif isinstance(public, ec.EllipticCurvePublicKey):
            public.verify(signature, data, ec.ECDSA(hash_algorithm))
        else:
            raise CMSError(f"unsupported signer key type {type(public).__name__}")
    except InvalidSignature:
        raise CMSError("the signature does not verify") from None


@dataclass(frozen=True)
class _SignerFields:
    """What the one SignerInfo says: how it signed, who signed, and which bytes it covers."""

    digest_name: str
    algorithm: str
    signature: bytes
    signer: x509.Certificate
    signed_bytes: bytes
    signing_time: datetime.datetime | None
    signed_attrs: acms.CMSAttributes | None


def _parse_signed_data(
    signature_der: bytes,
) -> tuple[bytes | None, list[tuple[acms.Certificate, x509.Certificate]], list[acms.SignerInfo]]:
    """Unwrap ContentInfo into the SignedData parts the checks need: the encapsulated content
    (None when detached), the certificates (asn1crypto and cryptography forms of each), and
    the SignerInfos. Any parse failure is a CMSError."""
    try:
        info = acms.ContentInfo.load(signature_der)
        if info["content_type"].native != "signed_data":
            raise CMSError(f"not a SignedData but {info['content_type'].native}")
        signed = info["content"]
        encapsulated = signed["encap_content_info"]["content"].native
        parsed_certs = [c.chosen for c in signed["certificates"] or [] if c.name == "certificate"]
        certs = [(c, x509.load_der_x509_certificate(c.dump())) for c in parsed_certs]
        signer_infos = list(signed["signer_infos"])
    except CMSError:
        raise
    except PARSE_ERRORS as e:
        raise CMSError(f"malformed CMS structure ({e})") from None
    return encapsulated, certs, signer_infos


def _locate_content(encapsulated: bytes | None, detached_content: bytes | None) -> bytes:
    """The signed content: the detached body if given (an attached copy must then be the
    same bytes), else the encapsulated content."""
    if detached_content is not None:
        if encapsulated is not None and encapsulated != detached_content:
            raise CMSError("the signature carries content other than the body")
        return detached_content
    if encapsulated is None:
        raise CMSError("a detached signature needs its content")
    return bytes(encapsulated)


def _signed_bytes(attributes: acms.CMSAttributes, digest_name: str, content: bytes) -> bytes:
    """The bytes the signature covers. With signed attributes, those re-tagged as a SET, and
    only after their messageDigest is shown to be the content's hash (without that, the
    signature would vouch for the attributes but not for the content); without, the content."""
    if attributes.native is None or not len(attributes):
        return content
    by_type = {a["type"].native: a["values"].native for a in attributes}
    digests = by_type.get("message_digest")
    if not digests or len(digests) != 1:
        raise CMSError("the messageDigest attribute is missing")
    if not hmac.compare_digest(digests[0], _digest(digest_name, content)):
        raise CMSError("the messageDigest does not match the content")
    content_types = by_type.get("content_type")
    if content_types and content_types[0] != "data":
        raise CMSError(f"unexpected signed content type {content_types[0]}")
    signed_bytes: bytes = attributes.untag().dump(force=True)
    if signed_bytes[:1] != b"\x31":
        raise CMSError("signed attributes did not re-encode as a SET")
    return signed_bytes


def _signing_time(attributes: acms.CMSAttributes) -> datetime.datetime | None:
    """The signingTime attribute (UTC), or None without one."""
    if attributes.native is None:
        return None
    for attribute in attributes:
        if attribute["type"].native == "signing_time":
            values = attribute["values"].native
            if len(values) != 1 or not isinstance(values[0], datetime.datetime):
                raise CMSError("the signingTime attribute is malformed")
            moment: datetime.datetime = values[0]
            return moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)
    return None


def _read_signer_info(
    info: acms.SignerInfo,
    certs: list[tuple[acms.Certificate, x509.Certificate]],
    content: bytes,
) -> _SignerFields:
    """Read the SignerInfo, find its certificate and check its signed attributes against
    ``content``. Any parse failure is a CMSError."""
    try:
        digest_name = info["digest_algorithm"]["algorithm"].native
        algorithm = info["signature_algorithm"].signature_algo
        signature = info["signature"].native
        signer = _find_signer(info["sid"], certs)
        signed_bytes = _signed_bytes(info["signed_attrs"], digest_name, content)
        signing_time = _signing_time(info["signed_attrs"])
    except CMSError:
        raise
    except PARSE_ERRORS as e:
        raise CMSError(f"malformed SignerInfo ({e})") from None
    attributes = info["signed_attrs"] if info["signed_attrs"].native is not None else None
    return _SignerFields(
        digest_name, algorithm, signature, signer, signed_bytes, signing_time, attributes
    )


def verify_signed_data(
    signature_der: bytes, detached_content: bytes | None = None
) -> SignedContent:
    """Check a CMS SignedData with exactly one signer; return what it signs and who signed.

    ``detached_content`` is the content of a detached signature (``Mdm-Signature``); for an
    attached signature leave it None.
    """
    encapsulated, certs, signer_infos = _parse_signed_data(signature_der)
    content = _locate_content(encapsulated, detached_content)
    if len(signer_infos) != 1:
        raise CMSError(f"expected one signer, found {len(signer_infos)}")
    fields = _read_signer_info(signer_infos[0], certs, content)
    if fields.digest_name not in DIGESTS:
        raise CMSError(f"unsupported digest algorithm {fields.digest_name}")
    _verify_signature(
        fields.signer, fields.signature, fields.signed_bytes, fields.digest_name, fields.algorithm
    )
    certificates = tuple(c for _, c in certs)
    return SignedContent(
        content, fields.signer, certificates, fields.signing_time, fields.signed_attrs
    )
