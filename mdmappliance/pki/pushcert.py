"""The MDM push certificate: reading and importing it, the customer's CSR, and the vendor's
signing of that CSR ("MDM Vendor CSR Signing Overview").

The topic devices listen on is the certificate's UID ("Structure of MDM Messages"). Replacing
a push certificate instead of renewing it changes that topic and silently strands every
enrolled device, so an import with a different topic is refused unless forced.
"""

from __future__ import annotations

import base64
import datetime
import plistlib
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from mdmappliance import pki
from mdmappliance.core.files import write_atomic

TOPIC_PREFIX = "com.apple.mgmt."
WARN_DAYS = 30


class PushCertError(ValueError):
    """The push certificate (or CSR, or vendor material) cannot be used; says why."""


@dataclass(frozen=True)
class PushCertificate:
    certificate: x509.Certificate
    topic: str

    @property
    def not_after(self) -> datetime.datetime:
        return self.certificate.not_valid_after_utc

    def days_left(self, now: datetime.datetime | None = None) -> float:
        now = now or datetime.datetime.now(datetime.UTC)
        return (self.not_after - now).total_seconds() / 86400


def topic_of(certificate: x509.Certificate) -> str:
    """The push topic: the subject's UID, which must start with com.apple.mgmt."""
    uids = certificate.subject.get_attributes_for_oid(NameOID.USER_ID)
    if not uids:
        raise PushCertError(
            "the certificate has no UID in its subject: it is not a push certificate"
        )
    topic = str(uids[0].value)
    if not topic.startswith(TOPIC_PREFIX) or topic == TOPIC_PREFIX:
        raise PushCertError(
            f"the certificate's topic {topic!r} does not start with {TOPIC_PREFIX!r}: "
            "it is not an MDM push certificate"
        )
    return topic


def read_push_certificate(path: Path) -> PushCertificate:
    try:
        certificate = pki.read_certificates(path)[0]
    except pki.PKIError as e:
        raise PushCertError(str(e)) from None
    return PushCertificate(certificate, topic_of(certificate))


def load_push_identity(
    cert_path: Path, key_path: Path | None, password: bytes | None = None
) -> tuple[x509.Certificate, pki.PrivateKey]:
    """A push certificate and its key from PEM files, or from one PKCS#12 file."""
    data = cert_path.read_bytes()
    if key_path is None:
        try:
            key, certificate, _ = pkcs12.load_key_and_certificates(data, password)
        except ValueError as e:
            raise PushCertError(f"{cert_path} is not a readable PKCS#12 file ({e})") from None
        if key is None or certificate is None:
            raise PushCertError(f"{cert_path} holds no certificate with its private key")
        if not isinstance(key, rsa.RSAPrivateKey):
            raise PushCertError("push certificates have RSA keys; this key is not one")
        return certificate, key
    try:
        certificate = pki.read_certificates(cert_path)[0]
        key = pki.read_private_key(key_path)
    except pki.PKIError as e:
        raise PushCertError(str(e)) from None
    return certificate, key


def key_matches(certificate: x509.Certificate, key: pki.PrivateKey) -> bool:
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    return certificate.public_key().public_bytes(der, spki) == key.public_key().public_bytes(
        der, spki
    )


@dataclass(frozen=True)
class ImportPlan:
    certificate: x509.Certificate
    key: pki.PrivateKey
    topic: str
    warnings: tuple[str, ...]


def check_import(
    certificate: x509.Certificate,
    key: pki.PrivateKey,
    in_use: list[str],
    *,
    force: bool,
    now: datetime.datetime | None = None,
) -> ImportPlan:
    """Everything that must hold before a push certificate replaces the current one."""
    if not key_matches(certificate, key):
        raise PushCertError("the private key does not belong to this certificate")
    topic = topic_of(certificate)
    now = now or datetime.datetime.now(datetime.UTC)
    if certificate.not_valid_after_utc <= now:
        raise PushCertError(
            f"the certificate expired on {certificate.not_valid_after_utc:%Y-%m-%d}"
        )
    other = [t for t in in_use if t != topic]
    if other and not force:
        raise PushCertError(
            f"this certificate's topic is {topic!r}, but enrolled devices listen on "
            f"{', '.join(repr(t) for t in other)}. A new certificate instead of a renewal of "
            "the old one changes the topic and silently strands every enrolled device: they "
            "never hear a push again and must be enrolled anew. Renew the existing "
            "certificate in the Apple Push Certificates Portal (same Apple ID, 'Renew'); use "
            "--force only if stranding them is what you want."
        )
    warnings = []
    days = (certificate.not_valid_after_utc - now).total_seconds() / 86400
    if days < WARN_DAYS:
        warnings.append(f"the certificate expires in {days:.0f} days; renew it soon")
    if other:
        warnings.append(f"forced: devices on {', '.join(other)} will no longer get pushes")
    return ImportPlan(certificate, key, topic, tuple(warnings))


def write_push_identity(plan: ImportPlan, cert_path: Path, key_path: Path) -> None:
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    key_path.parent.mkdir(parents=True, exist_ok=True)
    key_pem = plan.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_atomic(key_path, key_pem, mode=0o600)
    write_atomic(cert_path, plan.certificate.public_bytes(serialization.Encoding.PEM), mode=0o644)


def make_csr(common_name: str, organization: str = "") -> tuple[rsa.RSAPrivateKey, bytes]:
    """The customer's key pair and CSR (PEM) for a push certificate; the key stays here."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name(attributes))
        .sign(key, hashes.SHA256())
    )
    return key, csr.public_bytes(serialization.Encoding.PEM)


def read_csr(data: bytes) -> x509.CertificateSigningRequest:
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_csr(data)
        return x509.load_der_x509_csr(data)
    except ValueError as e:
        raise PushCertError(f"not a certificate signing request (PEM or DER): {e}") from None


def pem_64(certificate: x509.Certificate) -> str:
    """PEM with lines of exactly 64 characters (the last one 64 or fewer), as Apple asks."""
    body = base64.b64encode(certificate.public_bytes(serialization.Encoding.DER)).decode()
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return "-----BEGIN CERTIFICATE-----\n" + "\n".join(lines) + "\n-----END CERTIFICATE-----\n"


@dataclass(frozen=True)
class VendorSigned:
    csr_der: bytes
    signature: bytes
    chain_pem: str
    request: bytes  # the PushCertWebRequest file: base64 of the plist


def vendor_sign(
    csr_data: bytes,
    vendor_certificate: x509.Certificate,
    vendor_key: pki.PrivateKey,
    chain: list[x509.Certificate],
) -> VendorSigned:
    """The vendor's side: SHA1withRSA over the DER CSR, the chain back to Apple's root, and
    the PushCertWebRequest plist, base64-encoded."""
    csr = read_csr(csr_data)
    if not csr.is_signature_valid:
        raise PushCertError("the CSR's own signature does not verify")
    if not isinstance(vendor_key, rsa.RSAPrivateKey):
        raise PushCertError("the MDM vendor signing key must be an RSA key")
    if not key_matches(vendor_certificate, vendor_key):
        raise PushCertError("the vendor key does not belong to the vendor certificate")
    der = csr.public_bytes(serialization.Encoding.DER)
    signature = vendor_key.sign(der, padding.PKCS1v15(), hashes.SHA1())
    others = [c for c in chain if c != vendor_certificate]
    chain_pem = "".join(pem_64(c) for c in [vendor_certificate, *others])
    plist = plistlib.dumps(
        {
            "PushCertRequestCSR": base64.b64encode(der).decode(),
            "PushCertCertificateChain": chain_pem,
            "PushCertSignature": base64.b64encode(signature).decode(),
        },
        fmt=plistlib.FMT_XML,
    )
    return VendorSigned(der, signature, chain_pem, base64.b64encode(plist))
