"""UnlockToken escrow: the token is a master passcode, so it is kept only encrypted.

AES-256-GCM with a key file in the data directory (made by ``init``); the enrollment's UDID
is bound in as associated data, so a sealed token copied onto another device's row does not
open. Nothing in the appliance returns an UnlockToken through an API; only the ClearPasscode
command (a later issue) opens it.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32
NONCE_BYTES = 12
_VERSION = b"\x01"


class EscrowError(ValueError):
    """The key file is unusable or a sealed token does not open."""


def new_key() -> bytes:
    return AESGCM.generate_key(bit_length=KEY_BYTES * 8)


def read_key(path: Path) -> bytes:
    key = path.read_bytes()
    if len(key) != KEY_BYTES:
        raise EscrowError(f"{path} must hold exactly {KEY_BYTES} bytes, it holds {len(key)}")
    return key


class Escrow:
    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise EscrowError(f"the escrow key must be {KEY_BYTES} bytes")
        self._aead = AESGCM(key)

    def seal(self, token: bytes, udid: str) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return _VERSION + nonce + self._aead.encrypt(nonce, token, udid.encode())

    def open(self, sealed: bytes, udid: str) -> bytes:
        if sealed[:1] != _VERSION or len(sealed) < 1 + NONCE_BYTES + 16:
            raise EscrowError("not a sealed UnlockToken")
        nonce = sealed[1 : 1 + NONCE_BYTES]
        try:
            return self._aead.decrypt(nonce, sealed[1 + NONCE_BYTES :], udid.encode())
        except InvalidTag:
            raise EscrowError("the sealed UnlockToken does not open with this key") from None
