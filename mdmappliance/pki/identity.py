"""A device identity: a client certificate and the SHA-256 of its DER, by which it is bound."""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes


@dataclass(frozen=True)
class DeviceIdentity:
    certificate: x509.Certificate
    sha256: str
    source: str

    @classmethod
    def of(cls, certificate: x509.Certificate, source: str) -> DeviceIdentity:
        return cls(certificate, certificate.fingerprint(hashes.SHA256()).hex(), source)
