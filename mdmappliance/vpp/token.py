"""The VPP sToken: base64 of a JSON object with token, expDate and orgName (spec:
"Authentication"), as downloaded from the VPP portal; stored 0600, never logged."""

from __future__ import annotations

import base64
import binascii
import datetime
import json
from dataclasses import dataclass
from pathlib import Path

from mdmappliance.core.errors import ApplianceError
from mdmappliance.core.files import write_atomic

#: Apple's warning period (tokenExpDate appears in answers from then on).
WARN_BEFORE = datetime.timedelta(days=15)


class STokenError(ApplianceError):
    """The sToken cannot be used; the message says why."""


def parse_apple_date(text: str) -> datetime.datetime:
    """ISO 8601 as Apple writes it (``2014-08-15T18:13:52-0700``), aware; no zone is UTC."""
    value = text.strip()
    if len(value) > 5 and value[-5] in "+-" and value[-4:].isdigit() and ":" not in value[-5:]:
        value = value[:-2] + ":" + value[-2:]
    moment = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)


@dataclass(frozen=True)
class SToken:
    blob: str  # the base64 text, exactly what every request sends as sToken
    token: str
    exp_date: str
    org_name: str

    def expiry(self) -> datetime.datetime:
        return parse_apple_date(self.exp_date)

    def days_left(self, now: datetime.datetime | None = None) -> float:
        now = now or datetime.datetime.now(datetime.UTC)
        return (self.expiry() - now).total_seconds() / 86400


def parse_stoken(data: bytes) -> SToken:
    text = b"".join(data.split())
    if not text:
        raise STokenError("the sToken file is empty")
    try:
        decoded = base64.b64decode(text, validate=True)
        document = json.loads(decoded.decode("utf-8"))
    except (binascii.Error, UnicodeDecodeError, ValueError, RecursionError):
        raise STokenError(
            "this is not an sToken (base64 of JSON, as the VPP portal's download holds)"
        ) from None
    if not isinstance(document, dict):
        raise STokenError("the sToken's JSON is not an object")
    fields: dict[str, str] = {}
    for key in ("token", "expDate", "orgName"):
        value = document.get(key)
        if not isinstance(value, str) or not value.strip() or len(value) > 4096:
            raise STokenError(f"the sToken's {key} is missing or not a string")
        fields[key] = value
    token = SToken(text.decode("ascii"), fields["token"], fields["expDate"], fields["orgName"])
    try:
        token.expiry()
    except ValueError:
        raise STokenError(f"the sToken's expDate {fields['expDate']!r} is not ISO 8601") from None
    return token


def read_stoken(path: Path) -> SToken | None:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise STokenError(f"cannot read {path}: {e.strerror}") from None
    return parse_stoken(data)


def store_stoken(path: Path, token: SToken) -> None:
    write_atomic(path, token.blob.encode() + b"\n", 0o600)
