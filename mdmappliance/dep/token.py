"""The DEP server token: the key pair whose certificate the admin uploads to Apple's portal,
and the token file the portal returns.

The portal returns a ``.p7m``: MIME headers, then base64 of a CMS EnvelopedData addressed to
the uploaded certificate, whose content is a second MIME part holding the token JSON between
``-----BEGIN MESSAGE-----`` and ``-----END MESSAGE-----``. The seed's plain JSON is accepted
too. Five fields are required; the token is stored 0600 and never logged.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from mdmappliance import pki
from mdmappliance.core.errors import ApplianceError
from mdmappliance.core.files import write_atomic
from mdmappliance.scep.attributes import SCEPFailure
from mdmappliance.scep.envelope import open_envelope

FIELDS = ("consumer_key", "consumer_secret", "access_token", "access_secret")
_MESSAGE = re.compile(rb"-----BEGIN MESSAGE-----\s*(.*?)\s*-----END MESSAGE-----", re.S)
KEY_BITS = 2048
CERT_DAYS = 365
#: Warn in /v1/health and the log this long before the token expires.
WARN_BEFORE = datetime.timedelta(days=30)


class TokenError(ApplianceError):
    """The token file cannot be used; the message says why."""


@dataclass(frozen=True)
class ServerToken:
    consumer_key: str
    consumer_secret: str
    access_token: str
    access_secret: str
    access_token_expiry: str

    def expiry(self) -> datetime.datetime:
        """The expiry as an aware datetime (one written without a zone is read as UTC)."""
        moment = datetime.datetime.fromisoformat(self.access_token_expiry.replace("Z", "+00:00"))
        return moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)

    def days_left(self, now: datetime.datetime | None = None) -> float:
        now = now or datetime.datetime.now(datetime.UTC)
        return (self.expiry() - now).total_seconds() / 86400

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=2).encode() + b"\n"


def parse_token_json(data: bytes) -> ServerToken:
    """The five fields of a token, each checked."""
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise TokenError("the token is not JSON (nor a .p7m from Apple's portal)") from None
    if not isinstance(document, dict):
        raise TokenError("the token is not a JSON object")
    values: dict[str, str] = {}
    for field in (*FIELDS, "access_token_expiry"):
        value = document.get(field)
        if not isinstance(value, str) or not value.strip() or len(value) > 1024:
            raise TokenError(f"the token's {field} is missing or not a string")
        if any(c.isspace() for c in value.strip()):
            raise TokenError(f"the token's {field} contains whitespace")
        values[field] = value.strip()
    token = ServerToken(**values)
    try:
        token.expiry()
    except ValueError:
        raise TokenError(
            f"the token's access_token_expiry {token.access_token_expiry!r} is not ISO 8601"
        ) from None
    return token


def _mime_body(data: bytes) -> bytes:
    """The body of a MIME entity: what follows the first blank line."""
    normalized = data.replace(b"\r\n", b"\n")
    _, separator, body = normalized.partition(b"\n\n")
    return body if separator else normalized


def parse_token_file(
    data: bytes, key: pki.PrivateKey | None, cert: x509.Certificate | None
) -> ServerToken:
    """A token from what the admin downloaded: Apple's .p7m (decrypted with the DEP key) or
    plain JSON."""
    if not data.strip():
        raise TokenError("the token file is empty")
    if data.lstrip().startswith(b"{"):
        return parse_token_json(data)
    if key is None or cert is None:
        raise TokenError("a .p7m token needs the DEP key pair: run `mdmappliance dep keypair`")
    if not isinstance(key, rsa.RSAPrivateKey):
        raise TokenError("the DEP key must be RSA")
    try:
        der = base64.b64decode(b"".join(_mime_body(data).split()), validate=True)
    except (binascii.Error, ValueError):
        raise TokenError("the token is neither JSON nor a base64 S/MIME (.p7m) file") from None
    try:
        opened = open_envelope(der, (cert,), key)
    except SCEPFailure as e:
        raise TokenError(
            f"the .p7m does not decrypt with the DEP key ({e}); was it made for the certificate "
            "`dep keypair` wrote?"
        ) from None
    found = _MESSAGE.search(opened.content)
    return parse_token_json(found.group(1) if found else _mime_body(opened.content))


def make_keypair(key_path: Path, cert_path: Path, common_name: str) -> x509.Certificate:
    """The RSA-2048 key (0600, it never leaves the box) and the self-signed certificate the
    admin uploads to Apple's portal."""
    key = pki.new_rsa_key(KEY_BITS)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CERT_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    write_atomic(key_path, pki.private_key_pem(key), 0o600)
    write_atomic(cert_path, pki.certificate_pem(cert), 0o644)
    return cert


def read_token(path: Path) -> ServerToken | None:
    """The stored token, or None when none was imported."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise TokenError(f"cannot read {path}: {e.strerror}") from None
    return parse_token_json(data)


def store_token(path: Path, token: ServerToken) -> None:
    write_atomic(path, token.to_json(), 0o600)
