"""Keys and certificates: the appliance CA, the server TLS certificate, loading and matching.

Later issues issue device identities and profile-signing certificates from the same CA here.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    PrivateKeyTypes,
)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: Apple devices (iOS 13 / macOS 10.15 and later) refuse TLS server certificates from a
#: private CA that are valid for longer than 825 days, lack a SAN, or lack serverAuth.
SERVER_CERT_MAX_DAYS = 825
CA_CERT_DAYS = 10 * 365
CA_KEY_BITS = 3072
SERVER_KEY_BITS = 2048


#: The key types the appliance issues and accepts.
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


class PKIError(ValueError):
    """A file that should hold a key or certificate does not, or they disagree."""


@dataclass(frozen=True)
class IssuedPair:
    """A certificate with its private key."""

    certificate: x509.Certificate
    key: PrivateKey


def _key_usage(*, cert_sign: bool = False, key_encipherment: bool = False) -> x509.KeyUsage:
    """digitalSignature always; certificate and CRL signing for a CA; key encipherment for TLS
    and for a CA that SCEP clients encrypt their requests to."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def new_rsa_key(bits: int) -> rsa.RSAPrivateKey:
    """RSA, not EC: older Apple clients handle RSA identities and chains everywhere."""
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def create_ca(
    common_name: str, *, now: datetime.datetime | None = None, bits: int = CA_KEY_BITS
) -> IssuedPair:
    """A self-signed CA that issues the appliance's server and device certificates."""
    now = now or _now()
    key = new_rsa_key(bits)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mdmappliance"),
        ]
    )
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CA_CERT_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True, key_encipherment=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    return IssuedPair(cert, key)


def hostname_to_general_name(hostname: str) -> x509.GeneralName:
    """A SAN entry for ``hostname``: an IP address entry for literals, DNS otherwise."""
    try:
        return x509.IPAddress(ipaddress.ip_address(hostname))
    except ValueError:
        return x509.DNSName(hostname)


def certify(
    ca: IssuedPair,
    subject: x509.Name,
    public: rsa.RSAPublicKey | ec.EllipticCurvePublicKey,
    *,
    lifetime: datetime.timedelta,
    usages: list[x509.ObjectIdentifier],
    key_encipherment: bool = False,
    names: list[x509.GeneralName] | None = None,
    now: datetime.datetime | None = None,
) -> x509.Certificate:
    """An end-entity certificate for someone else's key (a CSR's), signed by ``ca``."""
    now = now or _now()
    ca_public = ca.certificate.public_key()
    assert isinstance(ca_public, rsa.RSAPublicKey | ec.EllipticCurvePublicKey)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.certificate.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + lifetime)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(key_encipherment=key_encipherment), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_public), critical=False
        )
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(ca.key, hashes.SHA256())


def issue_leaf(
    ca: IssuedPair,
    common_name: str,
    *,
    lifetime: datetime.timedelta,
    usages: list[x509.ObjectIdentifier],
    key_encipherment: bool = False,
    names: list[x509.GeneralName] | None = None,
    now: datetime.datetime | None = None,
) -> IssuedPair:
    """An end-entity certificate and its new RSA key, signed by ``ca``."""
    key = new_rsa_key(SERVER_KEY_BITS)
    certificate = certify(
        ca,
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]),
        key.public_key(),
        lifetime=lifetime,
        usages=usages,
        key_encipherment=key_encipherment,
        names=names,
        now=now,
    )
    return IssuedPair(certificate, key)


def issue_server_certificate(
    ca: IssuedPair, hostname: str, *, now: datetime.datetime | None = None
) -> IssuedPair:
    """A TLS server certificate for ``hostname`` that Apple devices accept from a private CA."""
    return issue_leaf(
        ca,
        hostname,
        lifetime=datetime.timedelta(days=SERVER_CERT_MAX_DAYS),
        usages=[ExtendedKeyUsageOID.SERVER_AUTH],
        key_encipherment=True,
        names=[hostname_to_general_name(hostname)],
        now=now,
    )


def issue_device_identity(
    ca: IssuedPair,
    name: str,
    *,
    lifetime: datetime.timedelta,
    now: datetime.datetime | None = None,
) -> IssuedPair:
    """A device's client identity (TLS clientAuth, and signing for Mdm-Signature)."""
    return issue_leaf(
        ca,
        name,
        lifetime=lifetime,
        usages=[ExtendedKeyUsageOID.CLIENT_AUTH],
        key_encipherment=True,
        now=now,
    )


def certify_device_key(
    ca: IssuedPair,
    subject: x509.Name,
    public: rsa.RSAPublicKey | ec.EllipticCurvePublicKey,
    *,
    lifetime: datetime.timedelta,
    now: datetime.datetime | None = None,
) -> x509.Certificate:
    """A device identity for a key the device made itself (SCEP): the same usages as
    ``issue_device_identity``, so the device channel cannot tell them apart."""
    return certify(
        ca,
        subject,
        public,
        lifetime=lifetime,
        usages=[ExtendedKeyUsageOID.CLIENT_AUTH],
        key_encipherment=True,
        now=now,
    )


def issue_signing_certificate(ca: IssuedPair, name: str) -> IssuedPair:
    """The certificate that signs enrollment and other configuration profiles."""
    return issue_leaf(
        ca,
        name,
        lifetime=datetime.timedelta(days=SERVER_CERT_MAX_DAYS),
        usages=[ExtendedKeyUsageOID.CODE_SIGNING, ExtendedKeyUsageOID.EMAIL_PROTECTION],
    )


def read_issuer(cert_path: Path, key_path: Path) -> IssuedPair:
    return IssuedPair(read_certificate(cert_path), read_private_key(key_path))


def certificate_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def private_key_pem(key: PrivateKeyTypes) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def read_certificates(path: Path) -> list[x509.Certificate]:
    """Every certificate in a PEM bundle, or the one in a DER file."""
    data = path.read_bytes()
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificates(data)
        return [x509.load_der_x509_certificate(data)]
    except ValueError as e:
        raise PKIError(f"{path} does not hold a PEM or DER X.509 certificate ({e})") from None


def read_certificate(path: Path) -> x509.Certificate:
    """The first certificate in a PEM or DER file (a leaf before its chain)."""
    return read_certificates(path)[0]


def read_private_key(path: Path) -> PrivateKey:
    """An unencrypted RSA or EC private key from a PEM or DER file."""
    data = path.read_bytes()
    try:
        if b"-----BEGIN" in data:
            key = serialization.load_pem_private_key(data, password=None)
        else:
            key = serialization.load_der_private_key(data, password=None)
    except TypeError:
        raise PKIError(f"{path} holds an encrypted private key; give an unencrypted one") from None
    except ValueError as e:
        raise PKIError(f"{path} does not hold a PEM or DER private key ({e})") from None
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise PKIError(f"{path} holds a {type(key).__name__}; only RSA and EC keys are supported")
    return key


def key_matches_certificate(key: PrivateKeyTypes, cert: x509.Certificate) -> bool:
    def spki(public: object) -> bytes:
        assert isinstance(public, rsa.RSAPublicKey | ec.EllipticCurvePublicKey)
        return public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    return spki(key.public_key()) == spki(cert.public_key())


def certificate_names(cert: x509.Certificate) -> list[str]:
    """The DNS names and IP addresses in the certificate's subjectAltName."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    names: list[str] = list(san.get_values_for_type(x509.DNSName))
    names.extend(str(ip) for ip in san.get_values_for_type(x509.IPAddress))
    return names


def certificate_covers_hostname(cert: x509.Certificate, hostname: str) -> bool:
    """Whether a TLS client would accept ``cert`` for ``hostname`` (SAN only, as Apple does)."""
    host = hostname.lower().rstrip(".")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    for name in certificate_names(cert):
        if ip is not None:
            if name == str(ip):
                return True
            continue
        pattern = name.lower().rstrip(".")
        if pattern == host:
            return True
        wildcard_match = "." in host and host.split(".", 1)[1] == pattern[2:]
        if pattern.startswith("*.") and wildcard_match:
            return True
    return False


def is_ca_certificate(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False
