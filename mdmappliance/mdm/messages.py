"""Device messages: strict XML plist parsing and typed models of check-ins and reports.

Everything a device sends is checked here, before the store is touched: XML plists only,
a dictionary at the top, bounded nesting, and each key of the spec's tables with its type
and a sane size. A failure is a ``BadMessage`` (HTTP 400) naming the key.
"""

from __future__ import annotations

import math
import plistlib
import re
from dataclasses import dataclass, field
from typing import Any

from mdmappliance.mdm.errors import BadMessage

UDID_FORM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{6,126}[A-Za-z0-9]$")
TOPIC_PREFIX = "com.apple.mgmt."
MAX_TOKEN_BYTES = 100
MAX_UNLOCK_TOKEN_BYTES = 16 * 1024
MAX_STRING = 1024

STATUSES = ("Acknowledged", "Error", "CommandFormatError", "Idle", "NotNow")
FINAL_STATUSES = {
    "Acknowledged": "acknowledged",
    "Error": "error",
    "CommandFormatError": "format_error",
}

#: Authenticate keys recorded as device facts (Apple's check-in schema), plist key -> column.
DEVICE_FACTS = {
    "SerialNumber": "serial_number",
    "Model": "model",
    "ModelName": "model_name",
    "ProductName": "product_name",
    "DeviceName": "device_name",
    "OSVersion": "os_version",
    "BuildVersion": "build_version",
    "IMEI": "imei",
    "MEID": "meid",
}


def parse_plist(body: bytes, max_depth: int) -> dict[str, Any]:
    """The body as a dictionary, or BadMessage. Binary plists are refused."""
    if not body.strip():
        raise BadMessage("the request body is empty")
    if body.startswith(b"bplist"):
        raise BadMessage("binary plists are not accepted; send an XML plist")
    try:
        value = plistlib.loads(body, fmt=plistlib.FMT_XML)
    except Exception as e:
        # plistlib raises a zoo on malformed input (ValueError, ExpatError, binascii.Error,
        # and AttributeError for an unreadable <date>): every one is the sender's fault.
        raise BadMessage(f"the body is not a valid XML plist ({type(e).__name__}: {e})") from None
    if not isinstance(value, dict):
        raise BadMessage(f"the plist must hold a dictionary, not {type(value).__name__}")
    _check_depth(value, max_depth)
    return value


def _check_depth(value: Any, max_depth: int) -> None:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > max_depth:
            raise BadMessage(f"the plist nests deeper than {max_depth} levels")
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)


def _string(
    d: dict[str, Any], key: str, *, required: bool, max_len: int = MAX_STRING
) -> str | None:
    value = d.get(key)
    if value is None:
        if required:
            raise BadMessage(f"{key} is missing")
        return None
    if not isinstance(value, str):
        raise BadMessage(f"{key} must be a string, not {type(value).__name__}")
    if len(value) > max_len:
        raise BadMessage(f"{key} is longer than {max_len} characters")
    return value


def _required_string(d: dict[str, Any], key: str, max_len: int = MAX_STRING) -> str:
    value = _string(d, key, required=True, max_len=max_len)
    assert value is not None
    if not value:
        raise BadMessage(f"{key} is empty")
    return value


def _data(d: dict[str, Any], key: str, *, required: bool, max_len: int) -> bytes | None:
    value = d.get(key)
    if value is None:
        if required:
            raise BadMessage(f"{key} is missing")
        return None
    if not isinstance(value, bytes):
        raise BadMessage(f"{key} must be data, not {type(value).__name__}")
    if not value:
        raise BadMessage(f"{key} is empty")
    if len(value) > max_len:
        raise BadMessage(f"{key} is longer than {max_len} bytes")
    return value


def _bool(d: dict[str, Any], key: str) -> bool | None:
    value = d.get(key)
    if value is not None and not isinstance(value, bool):
        raise BadMessage(f"{key} must be a boolean, not {type(value).__name__}")
    return value


def _udid(d: dict[str, Any]) -> str:
    udid = _required_string(d, "UDID", 128)
    if not UDID_FORM.match(udid):
        raise BadMessage("UDID must be 8 to 128 letters, digits and hyphens")
    return udid


def _topic(d: dict[str, Any]) -> str:
    topic = _required_string(d, "Topic", 255)
    if not topic.startswith(TOPIC_PREFIX) or topic == TOPIC_PREFIX:
        raise BadMessage(f"Topic must start with {TOPIC_PREFIX!r}")
    return topic


@dataclass(frozen=True)
class Channel:
    """Who a message is for: the device channel, or a user channel (UserID)."""

    udid: str
    user_id: str = ""
    user_short_name: str | None = None
    user_long_name: str | None = None
    auth_token: str | None = None

    @property
    def is_user(self) -> bool:
        return bool(self.user_id)

    def describe(self) -> str:
        return f"{self.udid} user {self.user_id}" if self.user_id else self.udid


def _channel(d: dict[str, Any]) -> Channel:
    return Channel(
        udid=_udid(d),
        user_id=_string(d, "UserID", required=False, max_len=255) or "",
        user_short_name=_string(d, "UserShortName", required=False, max_len=255),
        user_long_name=_string(d, "UserLongName", required=False, max_len=255),
        auth_token=_string(d, "AuthToken", required=False, max_len=255),
    )


@dataclass(frozen=True)
class Authenticate:
    channel: Channel
    topic: str
    facts: dict[str, str]


@dataclass(frozen=True)
class TokenUpdate:
    channel: Channel
    topic: str
    token: bytes
    push_magic: str
    unlock_token: bytes | None
    not_on_console: bool | None
    awaiting_configuration: bool | None


@dataclass(frozen=True)
class CheckOut:
    channel: Channel
    topic: str


@dataclass(frozen=True)
class UserAuthenticate:
    channel: Channel
    digest_response: str | None


@dataclass(frozen=True)
class Report:
    """A command result or an Idle poll, sent to the ServerURL."""

    channel: Channel
    status: str
    command_uuid: str | None
    error_chain: list[dict[str, Any]] | None
    raw: bytes = field(repr=False)
    #: The whole result dictionary: the request type's own answer keys are read from it.
    body: dict[str, Any] = field(default_factory=dict, repr=False)
    #: Why the answer cannot be stored as JSON (it is then kept raw only), or None.
    unreadable: str | None = None


CheckinMessage = Authenticate | TokenUpdate | CheckOut | UserAuthenticate
Message = CheckinMessage | Report


def parse_checkin(d: dict[str, Any]) -> CheckinMessage:
    kind = _required_string(d, "MessageType", 64)
    if kind == "Authenticate":
        facts = {
            column: value
            for key, column in DEVICE_FACTS.items()
            if (value := _string(d, key, required=False, max_len=255)) is not None
        }
        return Authenticate(_channel(d), _topic(d), facts)
    if kind == "TokenUpdate":
        return TokenUpdate(
            channel=_channel(d),
            topic=_topic(d),
            token=_data(d, "Token", required=True, max_len=MAX_TOKEN_BYTES) or b"",
            push_magic=_required_string(d, "PushMagic", 255),
            unlock_token=_data(d, "UnlockToken", required=False, max_len=MAX_UNLOCK_TOKEN_BYTES),
            not_on_console=_bool(d, "NotOnConsole"),
            awaiting_configuration=_bool(d, "AwaitingConfiguration"),
        )
    if kind == "CheckOut":
        return CheckOut(_channel(d), _topic(d))
    if kind == "UserAuthenticate":
        channel = _channel(d)
        if not channel.user_id:
            raise BadMessage("UserID is missing")
        return UserAuthenticate(channel, _string(d, "DigestResponse", required=False, max_len=4096))
    raise BadMessage(f"unsupported MessageType {kind!r}")


def _error_chain(d: dict[str, Any]) -> list[dict[str, Any]] | None:
    chain = d.get("ErrorChain")
    if chain is None:
        return None
    if not isinstance(chain, list) or not all(isinstance(e, dict) for e in chain):
        raise BadMessage("ErrorChain must be an array of dictionaries")
    for entry in chain:
        code = entry.get("ErrorCode")
        if code is not None and (not isinstance(code, int) or isinstance(code, bool)):
            raise BadMessage("ErrorChain ErrorCode must be an integer")
        for key in ("ErrorDomain", "LocalizedDescription", "USEnglishDescription"):
            _string(entry, key, required=False, max_len=4096)
    return chain


def parse_report(d: dict[str, Any], raw: bytes) -> Report:
    status = _required_string(d, "Status", 64)
    if status not in STATUSES:
        raise BadMessage(f"Status {status!r} is not one of {', '.join(STATUSES)}")
    command_uuid = _string(d, "CommandUUID", required=status != "Idle", max_len=128)
    if status != "Idle" and not command_uuid:
        raise BadMessage(f"CommandUUID is missing for Status {status}")
    unreadable = unstorable(d)
    chain = None if unreadable else _error_chain(d)
    return Report(_channel(d), status, command_uuid or None, chain, raw, d, unreadable)


def unstorable(value: Any) -> str | None:
    """Why ``value`` cannot be kept as JSON (a NaN or an infinite number: plists can hold
    them, JSON cannot), or None."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return f"the answer holds a number JSON cannot hold ({item})"
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None


def parse_message(d: dict[str, Any], raw: bytes, *, checkin_only: bool) -> Message:
    """A check-in (it has MessageType) or, unless ``checkin_only``, a command report."""
    if "MessageType" in d or checkin_only:
        return parse_checkin(d)
    if "Status" in d:
        return parse_report(d, raw)
    raise BadMessage("the message has neither MessageType nor Status")


def message_kind(message: Message) -> str:
    """A label for metrics: the check-in MessageType, or the report's Status."""
    if isinstance(message, Report):
        return f"Status:{message.status}"
    return type(message).__name__
