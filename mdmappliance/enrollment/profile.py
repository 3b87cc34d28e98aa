"""Configuration profiles: the enrollment profile, and signing any profile (CMS SignedData).

The enrollment profile holds only the basics ("Initial Profiles Should Contain Only The
Basics"): the CA certificates of the server's chain, the device identity, and the MDM
payload (with the ServerCapabilities of ``device.capabilities``). The identity is a SCEP
payload (the device makes its own key and gets the certificate with a one-time challenge),
or a PKCS#12 identity made here for clients without SCEP. Profiles are signed with SHA-256,
content attached, bytes as they are (no S/MIME LF→CRLF canonicalisation, which would change
what the device reads).
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from mdmappliance import pki
from mdmappliance.config import Config, check_access_rights
from mdmappliance.device.capabilities import SERVER_CAPABILITIES
from mdmappliance.pki.signing import ProfileError

MDM_PAYLOAD = "com.apple.mdm"
TOPIC_PREFIX = "com.apple.mgmt."


@dataclass(frozen=True)
class MDMSettings:
    """What goes into the MDM payload, checked against the spec's rules."""

    topic: str
    server_url: str
    checkin_url: str
    access_rights: int
    sign_message: bool
    check_out_when_removed: bool
    use_development_apns: bool

    def check(self) -> None:
        if not self.topic.startswith(TOPIC_PREFIX) or self.topic == TOPIC_PREFIX:
            raise ProfileError(f"Topic must begin with {TOPIC_PREFIX!r}, got {self.topic!r}")
        for name, url in (("ServerURL", self.server_url), ("CheckInURL", self.checkin_url)):
            if not url.startswith("https://"):
                raise ProfileError(f"{name} must begin with https://, got {url!r}")
        try:
            check_access_rights(self.access_rights)
        except ValueError as e:
            raise ProfileError(f"AccessRights {e}") from None

    @classmethod
    def from_config(cls, config: Config, topic: str) -> MDMSettings:
        e = config.enrollment
        return cls(
            topic=topic,
            server_url=e.server_url or config.device_url(config.device.server_path),
            checkin_url=e.checkin_url or config.device_url(config.device.checkin_path),
            access_rights=e.access_rights,
            sign_message=e.sign_message,
            check_out_when_removed=e.check_out_when_removed,
            use_development_apns=e.use_development_apns,
        )


def _payload(kind: str, identifier: str, name: str, **content: Any) -> dict[str, Any]:
    return {
        "PayloadType": kind,
        "PayloadVersion": 1,
        "PayloadIdentifier": identifier,
        "PayloadUUID": str(uuid.uuid4()).upper(),
        "PayloadDisplayName": name,
        **content,
    }


@dataclass(frozen=True)
class SCEPRequest:
    """What a profile's com.apple.security.scep payload asks the device to do."""

    url: str
    name: str
    subject: x509.Name
    challenge: str
    keysize: int = 2048
    retries: int = 3
    retry_delay: int = 10

    def payload_content(self) -> dict[str, Any]:
        return {
            "URL": self.url,
            "Name": self.name,
            # An array of RDNs, each an array of [OID-or-short-name, value] pairs.
            "Subject": [
                [[_SUBJECT_NAMES.get(a.oid.dotted_string, a.oid.dotted_string), str(a.value)]]
                for a in self.subject
            ],
            "Challenge": self.challenge,
            "Keysize": self.keysize,
            "Key Type": "RSA",
            "Key Usage": 5,  # signing (1) and encryption (4)
            "Retries": self.retries,
            "RetryDelay": self.retry_delay,
        }


_SUBJECT_NAMES = {
    "2.5.4.3": "CN",
    "2.5.4.10": "O",
    "2.5.4.11": "OU",
    "2.5.4.6": "C",
    "2.5.4.7": "L",
    "2.5.4.8": "ST",
}


def pkcs12_identity(identity: pki.IssuedPair, password: str, name: str) -> bytes:
    """The identity as PKCS#12 with the 3DES/SHA-1 encryption every Apple OS can read."""
    encryption = (
        serialization.PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(50_000)
        .key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC)
        .hmac_hash(hashes.SHA1())
        .build(password.encode())
    )
    return pkcs12.serialize_key_and_certificates(
        name.encode(),
        identity.key,
        identity.certificate,
        None,
        encryption,
    )


def _identity_payload(identifier: str, identity: pki.IssuedPair | SCEPRequest) -> dict[str, Any]:
    if isinstance(identity, SCEPRequest):
        return _payload(
            "com.apple.security.scep",
            f"{identifier}.scep",
            "Device identity (SCEP)",
            PayloadContent=identity.payload_content(),
        )
    password = secrets.token_urlsafe(18)
    return _payload(
        "com.apple.security.pkcs12",
        f"{identifier}.identity",
        "Device identity",
        PayloadContent=pkcs12_identity(identity, password, "mdmappliance device identity"),
        Password=password,
    )


def enrollment_profile(
    *,
    identifier: str,
    display_name: str,
    organization: str,
    settings: MDMSettings,
    identity: pki.IssuedPair | SCEPRequest,
    trust_chain: list[x509.Certificate],
    server_capabilities: Sequence[str] = SERVER_CAPABILITIES,
) -> dict[str, Any]:
    """The enrollment profile as a dictionary (fresh UUIDs every time).

    ``server_capabilities``: what the MDM payload announces; a renewal passes the set the
    device enrolled with (an empty one leaves the key out, as profiles before it had)."""
    settings.check()
    payloads = [
        _payload(
            "com.apple.security.root",
            f"{identifier}.ca.{n}",
            cert.subject.rfc4514_string(),
            PayloadContent=cert.public_bytes(serialization.Encoding.DER),
        )
        for n, cert in enumerate(trust_chain)
    ]
    identity_payload = _identity_payload(identifier, identity)
    mdm = _payload(
        MDM_PAYLOAD,
        f"{identifier}.mdm",
        "Mobile Device Management",
        IdentityCertificateUUID=identity_payload["PayloadUUID"],
        Topic=settings.topic,
        ServerURL=settings.server_url,
        CheckInURL=settings.checkin_url,
        SignMessage=settings.sign_message,
        CheckOutWhenRemoved=settings.check_out_when_removed,
        AccessRights=settings.access_rights,
        UseDevelopmentAPNS=settings.use_development_apns,
    )
    if server_capabilities:
        mdm["ServerCapabilities"] = list(dict.fromkeys(server_capabilities))
    profile = _payload(
        "Configuration",
        identifier,
        display_name,
        PayloadContent=[*payloads, identity_payload, mdm],
        PayloadScope="System",
    )
    if organization:
        profile["PayloadOrganization"] = organization
    return profile
