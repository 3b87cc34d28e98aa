"""What makes an enrollment profile: a fresh device identity from the CA, the MDM payload
settings, and the signer. Used by the enrollment routes and by identity renewal."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass

from cryptography import x509

from mdmappliance import pki
from mdmappliance.enrollment.profile import MDMSettings, enrollment_profile
from mdmappliance.pki.signing import ProfileSigner


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

    def make(self, device_name: str) -> tuple[pki.IssuedPair, bytes]:
        """A fresh identity and the signed profile that carries it (CPU-bound: a thread)."""
        settings = self.settings()
        settings.check()
        identity = pki.issue_device_identity(
            self.issuer, device_name, lifetime=self.identity_lifetime
        )
        profile = enrollment_profile(
            identifier=self.identifier,
            display_name=self.display_name,
            organization=self.organization,
            settings=settings,
            identity=identity,
            trust_chain=list(self.trust_chain),
        )
        return identity, self.signer.sign_dict(profile)
