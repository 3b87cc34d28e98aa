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

import hmac
from dataclasses import dataclass

from asn1crypto import cms as acms
from cryptography import x509
from cryptography.exceptions import InvalidSignature
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


@dataclass(frozen=True)
class SignedContent:
    content: bytes
    signer: x509.Certificate
    certificates: tuple[x509.Certificate, ...]


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
    public = cert.public_key()
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


def verify_signed_data(
    signature_der: bytes, detached_content: bytes | None = None
) -> SignedContent:
    """Check a CMS SignedData with exactly one signer; return what it signs and who signed.

    ``detached_content`` is the content of a detached signature (``Mdm-Signature``); for an
    attached signature leave it None.
    """
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
    except (ValueError, TypeError, KeyError) as e:
        raise CMSError(f"malformed CMS structure ({e})") from None
    if detached_content is not None:
        if encapsulated is not None and encapsulated != detached_content:
            raise CMSError("the signature carries content other than the body")
        content = detached_content
    elif encapsulated is None:
        raise CMSError("a detached signature needs its content")
    else:
        content = bytes(encapsulated)
    if len(signer_infos) != 1:
        raise CMSError(f"expected one signer, found {len(signer_infos)}")
    info_ = signer_infos[0]
    try:
        digest_name = info_["digest_algorithm"]["algorithm"].native
        algorithm = info_["signature_algorithm"].signature_algo
        signature = info_["signature"].native
        signer = _find_signer(info_["sid"], certs)
        attributes = info_["signed_attrs"]
        if attributes.native is not None and len(attributes):
            by_type = {a["type"].native: a["values"].native for a in attributes}
            digests = by_type.get("message_digest")
            if not digests or len(digests) != 1:
                raise CMSError("the messageDigest attribute is missing")
            if not hmac.compare_digest(digests[0], _digest(digest_name, content)):
                raise CMSError("the messageDigest does not match the content")
            content_types = by_type.get("content_type")
            if content_types and content_types[0] != "data":
                raise CMSError(f"unexpected signed content type {content_types[0]}")
            signed_bytes = attributes.untag().dump(force=True)
            if signed_bytes[:1] != b"\x31":
                raise CMSError("signed attributes did not re-encode as a SET")
        else:
            signed_bytes = content
    except CMSError:
        raise
    except (ValueError, TypeError, KeyError) as e:
        raise CMSError(f"malformed SignerInfo ({e})") from None
    if digest_name not in DIGESTS:
        raise CMSError(f"unsupported digest algorithm {digest_name}")
    _verify_signature(signer, signature, signed_bytes, digest_name, algorithm)
    return SignedContent(content, signer, tuple(c for _, c in certs))
