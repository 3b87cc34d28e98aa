"""Signing configuration profiles (CMS SignedData, content attached, SHA-256), and the
shape check a profile must pass first.

Bytes are signed as they are (no S/MIME LF→CRLF canonicalisation, which would change what
the device reads).
"""

from __future__ import annotations

import plistlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs7

from mdmappliance import pki


class ProfileError(ValueError):
    """A profile that must not be served or signed as it is."""


def check_profile(data: bytes) -> dict[str, Any]:
    """A well-formed configuration profile, or ProfileError naming what is wrong."""
    try:
        profile = plistlib.loads(data)
    except Exception as e:  # plistlib raises several types for bad input
        raise ProfileError(f"not a property list ({type(e).__name__}: {e})") from None
    if not isinstance(profile, dict):
        raise ProfileError("a profile must be a dictionary")
    if profile.get("PayloadType") != "Configuration":
        raise ProfileError("PayloadType must be 'Configuration'")
    for key in ("PayloadIdentifier", "PayloadUUID"):
        if not isinstance(profile.get(key), str) or not profile[key]:
            raise ProfileError(f"{key} is missing")
    version = profile.get("PayloadVersion")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ProfileError("PayloadVersion is missing")
    content = profile.get("PayloadContent", [])
    if not isinstance(content, list) or not all(isinstance(p, dict) for p in content):
        raise ProfileError("PayloadContent must be an array of payload dictionaries")
    return profile


@dataclass(frozen=True)
class ProfileSigner:
    """Signs profiles with the profile-signing certificate (its chain attached)."""

    signer: pki.IssuedPair
    chain: tuple[x509.Certificate, ...] = ()

    @classmethod
    def from_files(cls, cert: Path, key: Path, ca_cert: Path) -> ProfileSigner:
        """The signing certificate with the chain in its file, else with the CA that issued it."""
        certs = pki.read_certificates(cert)
        chain = tuple(certs[1:]) or (pki.read_certificate(ca_cert),)
        return cls(pki.IssuedPair(certs[0], pki.read_private_key(key)), chain)

    def sign(self, profile: bytes) -> bytes:
        """Check ``profile`` is a well-formed profile, then sign it (DER SignedData)."""
        check_profile(profile)
        builder = (
            pkcs7.PKCS7SignatureBuilder()
            .set_data(profile)
            .add_signer(
                self.signer.certificate,
                self.signer.key,
                hashes.SHA256(),
            )
        )
        for cert in self.chain:
            builder = builder.add_certificate(cert)
        return builder.sign(serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary])

    def sign_dict(self, profile: dict[str, Any]) -> bytes:
        return self.sign(plistlib.dumps(profile, fmt=plistlib.FMT_XML))
