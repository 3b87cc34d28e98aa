"""Which device identities the appliance trusts: certificates that chain to its CAs.

TLS client certificates are checked by OpenSSL during the handshake against the same CA
list. Identities that arrive outside TLS (an ``Mdm-Signature`` signer, an RFC 9440
``Client-Cert`` header) are checked here: the chain is walked from the leaf through the
intermediates the sender supplied up to a trusted CA, verifying each signature and each
validity window (with a small tolerance for clock skew).
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from mdmappliance import pki

MAX_CHAIN = 5


class UntrustedCertificate(ValueError):
    """The certificate does not chain to a trusted CA, or is outside its validity."""


@dataclass(frozen=True)
class TrustStore:
    anchors: tuple[x509.Certificate, ...]
    clock_skew: datetime.timedelta = datetime.timedelta(minutes=5)
    #: False only for Apple's device CA chain, which expired in 2014 and 2022 and which
    #: Apple still issues device certificates under.
    check_validity_dates: bool = True

    @classmethod
    def from_files(cls, ca_files: Iterable[Path], clock_skew_seconds: float) -> TrustStore:
        anchors: list[x509.Certificate] = []
        for path in ca_files:
            anchors.extend(pki.read_certificates(path))
        return cls(tuple(anchors), datetime.timedelta(seconds=clock_skew_seconds))

    def _check_dates(self, cert: x509.Certificate, now: datetime.datetime) -> None:
        if not self.check_validity_dates:
            return
        if now + self.clock_skew < cert.not_valid_before_utc:
            raise UntrustedCertificate(
                f"certificate {cert.subject.rfc4514_string()} is not valid before "
                f"{cert.not_valid_before_utc.isoformat()}"
            )
        if now - self.clock_skew > cert.not_valid_after_utc:
            raise UntrustedCertificate(
                f"certificate {cert.subject.rfc4514_string()} expired on "
                f"{cert.not_valid_after_utc.isoformat()}"
            )

    def verify(
        self,
        leaf: x509.Certificate,
        intermediates: Sequence[x509.Certificate],
        now: datetime.datetime,
    ) -> None:
        """Raise UntrustedCertificate unless ``leaf`` chains to an anchor, all in date."""
        current = leaf
        pool = [c for c in intermediates if c != leaf]
        for _ in range(MAX_CHAIN):
            self._check_dates(current, now)
            for anchor in self.anchors:
                if _issued_by(current, anchor):
                    self._check_dates(anchor, now)
                    return
            issuer = next(
                (c for c in pool if pki.is_ca_certificate(c) and _issued_by(current, c)), None
            )
            if issuer is None:
                break
            pool.remove(issuer)
            current = issuer
        raise UntrustedCertificate(
            f"certificate {leaf.subject.rfc4514_string()} does not chain to a trusted CA"
        )


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Names match and ``issuer``'s key made ``cert``'s signature.

    Checked by hand rather than with ``verify_directly_issued_by``, which refuses SHA-1:
    Apple still signs device identities with SHA-1 under its iPhone Device CA.
    """
    if cert.issuer != issuer.subject:
        return False
    public = issuer.public_key()
    algorithm = cert.signature_hash_algorithm
    if algorithm is None:
        return False
    try:
        if isinstance(public, rsa.RSAPublicKey):
            pad = cert.signature_algorithm_parameters
            if not isinstance(pad, padding.PSS | padding.PKCS1v15):
                pad = padding.PKCS1v15()
            public.verify(cert.signature, cert.tbs_certificate_bytes, pad, algorithm)
        elif isinstance(public, ec.EllipticCurvePublicKey):
            public.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(algorithm))
        else:
            return False
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True
