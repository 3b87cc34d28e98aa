"""What makes an enrollment profile: the device identity (a SCEP request with a fresh
one-time challenge, or a PKCS#12 identity from the CA), the MDM payload settings, and the
signer. Used by the enrollment routes and by identity renewal."""

from __future__ import annotations

import datetime
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import NameOID

from mdmappliance import pki
from mdmappliance.device.capabilities import SERVER_CAPABILITIES
from mdmappliance.enrollment.profile import MDMSettings, SCEPRequest, enrollment_profile
from mdmappliance.pki.signing import ProfileSigner
from mdmappliance.scep.challenges import new_challenge_text


@dataclass(frozen=True)
class SCEPProfile:
    """How profiles send devices to the SCEP server."""

    url: str
    name: str
    keysize: int = 2048
    retries: int = 3
    retry_delay: int = 10
    challenge_lifetime: datetime.timedelta = datetime.timedelta(hours=24)


@dataclass(frozen=True)
class MadeProfile:
    """A signed enrollment profile and the identity it carries: the PKCS#12 identity made
    for it, or the SCEP request (challenge and subject) the server must now expect."""

    signed: bytes
    identity: pki.IssuedPair | None = None
    scep: SCEPRequest | None = None


@dataclass(frozen=True)
class ProfileFactory:
    """Everything needed to make an enrollment profile, but the topic (it may change)."""

    issuer: pki.IssuedPair
    signer: ProfileSigner
    identifier: str
    display_name: str
    organization: str
    trust_chain: tuple[x509.Certificate, ...]
    identity_lifetime: datetime.timedelta
    settings: Callable[[], MDMSettings]
    #: None: PKCS#12 identities in the profile.
    scep: SCEPProfile | None = None

    def make(
        self, device_name: str, server_capabilities: Sequence[str] = SERVER_CAPABILITIES
    ) -> MadeProfile:
        """A fresh identity (or SCEP request) and the signed profile that carries it
        (CPU-bound: a thread). A renewal passes the ServerCapabilities the device enrolled
        with: a profile update must not change them."""
        settings = self.settings()
        settings.check()
        identity: pki.IssuedPair | SCEPRequest
        if self.scep is None:
            identity = pki.issue_device_identity(
                self.issuer, device_name, lifetime=self.identity_lifetime
            )
        else:
            identity = SCEPRequest(
                url=self.scep.url,
                name=self.scep.name,
                subject=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, device_name)]),
                challenge=new_challenge_text(),
                keysize=self.scep.keysize,
                retries=self.scep.retries,
                retry_delay=self.scep.retry_delay,
            )
        profile = enrollment_profile(
            identifier=self.identifier,
            display_name=self.display_name,
            organization=self.organization,
            settings=settings,
            identity=identity,
            trust_chain=list(self.trust_chain),
            server_capabilities=server_capabilities,
        )
        signed = self.signer.sign_dict(profile)
        if isinstance(identity, SCEPRequest):
            return MadeProfile(signed, scep=identity)
        return MadeProfile(signed, identity=identity)
