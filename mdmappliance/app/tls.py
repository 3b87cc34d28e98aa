"""TLS for the listeners: the server certificate over TLS 1.2+, HTTP/1.1 only, and for the
device listener the client certificate it demands."""

from __future__ import annotations

from pathlib import Path

from OpenSSL import crypto
from twisted.internet.ssl import AcceptableCiphers, CertificateOptions, TLSVersion

from mdmappliance import pki
from mdmappliance.config import Config

#: Mozilla's "intermediate" profile for TLS 1.2: forward-secret AEAD suites only (TLS 1.3's
#: own suites are all of that kind). Twisted's default list also takes AES128-SHA.
INTERMEDIATE_CIPHERS = AcceptableCiphers.fromOpenSSLCipherString(
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305"
)


def server_tls_options(config: Config, client_cas: list[Path] | None) -> CertificateOptions:
    """The server certificate over TLS 1.2+, HTTP/1.1 only (with HTTP/2 twisted.web loses
    the peer certificate); with ``client_cas``, a client certificate from one of them is
    demanded."""
    server_chain = pki.read_certificates(config.pki.server_cert)
    key = pki.read_private_key(config.pki.server_key)
    anchors = [c for path in client_cas or [] for c in pki.read_certificates(path)]
    return CertificateOptions(
        privateKey=crypto.PKey.from_cryptography_key(key),
        certificate=crypto.X509.from_cryptography(server_chain[0]),
        extraCertChain=[crypto.X509.from_cryptography(c) for c in server_chain[1:]],
        verify=bool(anchors),
        requireCertificate=bool(anchors),
        caCerts=[crypto.X509.from_cryptography(c) for c in anchors] or None,
        acceptableProtocols=[b"http/1.1"],
        raiseMinimumTo=TLSVersion.TLSv1_2,
        acceptableCiphers=INTERMEDIATE_CIPHERS,
    )


def device_tls_options(config: Config) -> CertificateOptions:
    return server_tls_options(config, device_ca_files(config))


def device_ca_files(config: Config) -> list[Path]:
    return [config.pki.ca_cert, *config.device.extra_ca_files]
