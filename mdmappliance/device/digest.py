"""HTTP Digest (RFC 2617, MD5, qop=auth) for the UserAuthenticate check-in.

The users file is in Apache's htdigest format, ``user:realm:HA1`` where
HA1 = MD5(user:realm:password), so the appliance never holds a clear-text password. A
challenge's nonce is random, single-use, bound to the UDID and UserID it was issued to, and
expires after a few minutes. The DigestResponse is verified (the well-known open-source MDM
servers skip this): HA2 = MD5("PUT":uri) for the PUT the device sends its check-in with.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from twisted.internet.interfaces import IReactorTime

NONCE_LIFETIME = 300.0
MAX_OUTSTANDING = 10_000
METHOD = "PUT"
_PARAM = re.compile(r'\s*([A-Za-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))\s*,?')


def md5_hex(text: str) -> str:
    return hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest()


def parse_digest(value: str) -> dict[str, str]:
    """The parameters of a ``Digest k=v, k="v"`` string."""
    text = value.strip()
    if text[:7].lower() == "digest ":
        text = text[7:]
    params: dict[str, str] = {}
    position = 0
    while position < len(text):
        match = _PARAM.match(text, position)
        if match is None:
            raise ValueError(f"cannot parse the digest at {text[position : position + 20]!r}")
        quoted, bare = match.group(2), match.group(3)
        params[match.group(1).lower()] = (
            re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else bare
        )
        position = match.end()
    return params


@dataclass(frozen=True)
class _Nonce:
    udid: str
    user_id: str
    expires: float


class DigestAuthority:
    def __init__(
        self, users: dict[str, str], realm: str, clock: IReactorTime, method: str = METHOD
    ) -> None:
        self.users = users
        self.realm = realm
        self.clock = clock
        #: The HTTP method the digest covers: PUT on the device channel, POST at the
        #: ConfigurationURL.
        self.method = method
        self._nonces: dict[str, _Nonce] = {}

    def challenge(self, udid: str, user_id: str) -> str:
        now = self.clock.seconds()
        if len(self._nonces) >= MAX_OUTSTANDING:
            self._nonces = {k: v for k, v in self._nonces.items() if v.expires > now}
            while len(self._nonces) >= MAX_OUTSTANDING:
                self._nonces.pop(next(iter(self._nonces)))
        nonce = secrets.token_hex(16)
        self._nonces[nonce] = _Nonce(udid, user_id, now + NONCE_LIFETIME)
        return f'Digest realm="{self.realm}", nonce="{nonce}", qop="auth", algorithm=MD5'

    def verify(self, udid: str, user_id: str, digest_response: str) -> str | None:
        """The authenticated user name, or None (wrong password, stale nonce, bad form)."""
        try:
            params = parse_digest(digest_response)
        except ValueError:
            return None
        nonce = self._nonces.pop(params.get("nonce", ""), None)  # single use, even on failure
        if nonce is None or nonce.expires < self.clock.seconds():
            return None
        if (nonce.udid, nonce.user_id) != (udid, user_id) or params.get("realm") != self.realm:
            return None
        username = params.get("username", "")
        ha1 = self.users.get(username)
        if ha1 is None or params.get("algorithm", "MD5").upper() != "MD5":
            return None
        ha2 = md5_hex(f"{self.method}:{params.get('uri', '')}")
        qop = params.get("qop")
        if qop == "auth":
            expected = md5_hex(
                f"{ha1}:{params.get('nonce')}:{params.get('nc', '')}:"
                f"{params.get('cnonce', '')}:auth:{ha2}"
            )
        elif qop is None:
            expected = md5_hex(f"{ha1}:{params.get('nonce')}:{ha2}")
        else:
            return None
        presented = params.get("response", "").lower().encode("utf-8")
        if not hmac.compare_digest(expected.encode("ascii"), presented):
            return None
        return username
