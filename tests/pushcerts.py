"""Test stand-ins for Apple's push PKI: a CA that issues MDM push certificates (subject UID =
com.apple.mgmt.External.<uuid>, as the Apple Push Certificates Portal makes them) and a
gateway certificate for the local APNs server."""

from __future__ import annotations

import datetime
import uuid
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mdmappliance import pki


def push_certificate(
    ca: pki.IssuedPair, topic: str | None = None, *, days: float = 365
) -> pki.IssuedPair:
    topic = topic or f"com.apple.mgmt.External.{uuid.uuid4()}"
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = datetime.datetime.now(datetime.UTC)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.USER_ID, topic),
            x509.NameAttribute(NameOID.COMMON_NAME, f"APSP:{uuid.uuid4()}"),
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
        ]
    )
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    return pki.IssuedPair(certificate, key)


@dataclass(frozen=True)
class PushPKI:
    """Files for one test: the push CA, a push certificate and key, a gateway CA and the
    gateway's server certificate for localhost."""

    directory: Path
    push_ca: pki.IssuedPair
    push: pki.IssuedPair
    topic: str

    @property
    def push_ca_file(self) -> Path:
        return self.directory / "push-ca.pem"

    @property
    def cert_file(self) -> Path:
        return self.directory / "push.pem"

    @property
    def key_file(self) -> Path:
        return self.directory / "push.key"

    @property
    def gateway_ca_file(self) -> Path:
        return self.directory / "gateway-ca.pem"

    @property
    def gateway_cert(self) -> Path:
        return self.directory / "gateway.pem"

    @property
    def gateway_key(self) -> Path:
        return self.directory / "gateway.key"

    def pem(self) -> tuple[bytes, bytes]:
        return self.cert_file.read_bytes(), self.key_file.read_bytes()


def make_push_pki(directory: Path, topic: str | None = None) -> PushPKI:
    directory.mkdir(parents=True, exist_ok=True)
    push_ca = pki.create_ca("Test Apple Push CA")
    push = push_certificate(push_ca, topic)
    gateway_ca = pki.create_ca("Test APNs gateway CA")
    gateway = pki.issue_server_certificate(gateway_ca, "localhost")
    files = {
        "push-ca.pem": pki.certificate_pem(push_ca.certificate),
        "push.pem": pki.certificate_pem(push.certificate),
        "push.key": pki.private_key_pem(push.key),
        "gateway-ca.pem": pki.certificate_pem(gateway_ca.certificate),
        "gateway.pem": pki.certificate_pem(gateway.certificate),
        "gateway.key": pki.private_key_pem(gateway.key),
    }
    for name, data in files.items():
        (directory / name).write_bytes(data)
    topic_value = push.certificate.subject.get_attributes_for_oid(NameOID.USER_ID)[0].value
    return PushPKI(directory, push_ca, push, str(topic_value))


def der(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.DER)
