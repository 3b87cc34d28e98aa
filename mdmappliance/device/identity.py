"""Who sent a device request: the certificate behind it, from TLS, Mdm-Signature or a proxy.

- TLS: the client certificate OpenSSL already verified against the trusted CAs.
- ``Mdm-Signature``: a BASE64 CMS detached signature of the body (SignMessage profiles),
  verified on every listener whenever it is present; with TLS it must be the same certificate.
- RFC 9440 ``Client-Cert`` (and ``Client-Cert-Chain``): believed only from an allow-listed
  proxy address on the plain-HTTP proxy listener; a copy from anywhere else is ignored.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import ipaddress
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from cryptography import x509
from OpenSSL import crypto
from twisted.internet.interfaces import ISSLTransport
from twisted.web.iweb import IRequest

from mdmappliance.mdm.errors import IdentityRefused
from mdmappliance.pki.cms import CMSError, verify_signed_data
from mdmappliance.pki.identity import DeviceIdentity
from mdmappliance.pki.trust import TrustStore, UntrustedCertificate

MAX_SIGNATURE_HEADER = 64 * 1024
#: Client-Cert headers whose certificate was parsed and chain-checked, kept so that a device
#: behind the proxy costs one check per certificate, not one per request. Revocation is the
#: store's, read on every request, so a revoked certificate is refused at once regardless.
CLIENT_CERT_CACHE = 10_000
#: How long a checked Client-Cert is believed before it is checked again (at most until the
#: certificate expires).
CLIENT_CERT_RECHECK = datetime.timedelta(minutes=10)


def tls_peer_certificate(request: IRequest) -> x509.Certificate | None:
    channel_transport = request.channel.transport  # type: ignore[attr-defined]
    if not ISSLTransport.providedBy(channel_transport):
        return None
    transport = ISSLTransport(channel_transport)
    peer = cast(crypto.X509 | None, transport.getPeerCertificate())
    return None if peer is None else peer.to_cryptography()


def _sf_binary(item: str) -> bytes:
    """An RFC 8941 byte sequence, ``:BASE64:``."""
    item = item.strip()
    if len(item) < 2 or item[0] != ":" or item[-1] != ":":
        raise ValueError("not a structured-field byte sequence")
    return base64.b64decode(item[1:-1], validate=True)


@dataclass(frozen=True)
class Resolved:
    """Who sent a request, and the digest of its Mdm-Signature when it had one."""

    identity: DeviceIdentity
    signature: bytes | None = None


class IdentityResolver:
    def __init__(
        self,
        trust: TrustStore,
        *,
        now: Callable[[], datetime.datetime],
        trusted_proxies: frozenset[str] = frozenset(),
    ) -> None:
        self.trust = trust
        self.now = now
        self.trusted_proxies = frozenset(ipaddress.ip_address(p) for p in trusted_proxies)
        self._per_connection: weakref.WeakKeyDictionary[Any, tuple[DeviceIdentity | None]] = (
            weakref.WeakKeyDictionary()
        )
        self._client_certs: OrderedDict[
            tuple[bytes, bytes | None], tuple[DeviceIdentity, datetime.datetime]
        ] = OrderedDict()

    def resolve(self, request: IRequest, body: bytes) -> Resolved:
        tls_identity = self._tls_identity(request)
        signed, signature = self._from_signature(request, body)
        header = None if tls_identity is not None else self._from_client_cert_header(request)
        presented = [i for i in (tls_identity, signed, header) if i is not None]
        if not presented:
            raise IdentityRefused(
                "no device identity: no TLS client certificate, Mdm-Signature or trusted "
                "Client-Cert header"
            )
        if len({i.sha256 for i in presented}) != 1:
            sources = " and ".join(i.source for i in presented)
            raise IdentityRefused(f"the {sources} identities are different certificates")
        return Resolved(presented[0], signature)

    def _tls_identity(self, request: IRequest) -> DeviceIdentity | None:
        """The TLS client identity, worked out once per connection (it cannot change)."""
        connection = request.channel  # type: ignore[attr-defined]
        cached = self._per_connection.get(connection)
        if cached is None:
            cert = tls_peer_certificate(request)
            cached = (DeviceIdentity.of(cert, "tls") if cert is not None else None,)
            self._per_connection[connection] = cached
        return cached[0]

    def _from_signature(
        self, request: IRequest, body: bytes
    ) -> tuple[DeviceIdentity | None, bytes | None]:
        """The Mdm-Signature's signer, and the SHA-256 of the signature (to tell a replay)."""
        header = request.getHeader(b"mdm-signature")
        if header is None:
            return None, None
        if len(header) > MAX_SIGNATURE_HEADER:
            raise IdentityRefused("the Mdm-Signature header is too large")
        try:
            der = base64.b64decode(b"".join(header.split()), validate=True)
            signed = verify_signed_data(der, body)
        except (binascii.Error, ValueError) as e:
            raise IdentityRefused(f"bad Mdm-Signature: {e}") from None
        except CMSError as e:
            raise IdentityRefused(f"bad Mdm-Signature: {e}") from None
        now = self.now()
        if (
            signed.signing_time is not None
            and abs(now - signed.signing_time) > self.trust.clock_skew
        ):
            raise IdentityRefused(
                f"Mdm-Signature signed at {signed.signing_time.isoformat()}, outside "
                f"{self.trust.clock_skew.total_seconds():g} s of now (a replay, or a wrong clock)"
            )
        self._check_trusted(signed.signer, signed.certificates, "Mdm-Signature signer")
        return DeviceIdentity.of(signed.signer, "mdm-signature"), hashlib.sha256(der).digest()

    def _from_client_cert_header(self, request: IRequest) -> DeviceIdentity | None:
        header = request.getHeader(b"client-cert")
        if header is None or not self.trusted_proxies:
            return None
        peer = request.getClientAddress()
        try:
            address = ipaddress.ip_address(getattr(peer, "host", ""))
        except ValueError:
            return None
        if address not in self.trusted_proxies:
            return None  # a device (or anyone) may not vouch for itself
        chain_header = request.getHeader(b"client-cert-chain")
        key = (header, chain_header)
        now = self.now()
        checked = self._client_certs.get(key)
        if checked is not None and now < checked[1]:
            self._client_certs.move_to_end(key)
            return checked[0]
        identity = self._check_client_cert(header, chain_header)
        until = min(identity.certificate.not_valid_after_utc, now + CLIENT_CERT_RECHECK)
        self._client_certs[key] = (identity, until)
        self._client_certs.move_to_end(key)
        while len(self._client_certs) > CLIENT_CERT_CACHE:
            self._client_certs.popitem(last=False)
        return identity

    def _check_client_cert(self, header: bytes, chain_header: bytes | None) -> DeviceIdentity:
        """The Client-Cert header's certificate, parsed and chain-checked."""
        try:
            cert = x509.load_der_x509_certificate(_sf_binary(header.decode("ascii")))
            chain = [
                x509.load_der_x509_certificate(_sf_binary(item))
                for item in (chain_header.decode("ascii").split(",") if chain_header else [])
            ]
        except (ValueError, UnicodeDecodeError) as e:
            raise IdentityRefused(f"bad Client-Cert header from the proxy: {e}") from None
        self._check_trusted(cert, chain, "Client-Cert certificate")
        return DeviceIdentity.of(cert, "client-cert-header")

    def _check_trusted(
        self,
        cert: x509.Certificate,
        chain: tuple[x509.Certificate, ...] | list[x509.Certificate],
        what: str,
    ) -> None:
        try:
            self.trust.verify(cert, chain, self.now())
        except UntrustedCertificate as e:
            raise IdentityRefused(f"{what}: {e}") from None
