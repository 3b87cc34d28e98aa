"""Device messages: strict XML plist parsing and typed models of check-ins and reports.

Everything a device sends is checked here, before the store is touched: XML plists only,
a dictionary at the top, bounded nesting, and each key of the spec's tables with its type
and a sane size. A failure is a ``BadMessage`` (HTTP 400) naming the key.
"""

from __future__ import annotations

import json
import math
import plistlib
import re
from dataclasses import dataclass, field
from typing import Any

from mdmappliance.mdm.errors import BadMessage
from mdmappliance.mdm.plist import read_plain_plist

UDID_FORM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{6,126}[A-Za-z0-9]$")
TOPIC_PREFIX = "com.apple.mgmt."
MAX_TOKEN_BYTES = 100
MAX_UNLOCK_TOKEN_BYTES = 16 * 1024
MAX_BOOTSTRAP_TOKEN_BYTES = 16 * 1024
#: A DeclarativeManagement request's Data (a status report is the largest).
MAX_DECLARATIVE_DATA = 1024 * 1024
MAX_JSON_DEPTH = 32
MAX_STRING = 1024
#: GetToken's TokenServiceType rangelist (Apple's check-in schema).
TOKEN_SERVICE_TYPES = ("com.apple.maid", "com.apple.watch.pairing")
TOKEN_PARAMETERS = ("SecurityToken", "PhoneUDID", "WatchUDID")
#: The DeclarativeManagement Endpoints besides ``declaration/<type>/<identifier>``.
DECLARATIVE_ENDPOINTS = ("tokens", "declaration-items", "status")

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
    _refuse_not_xml(body)
    value = read_plain_plist(body, max_depth)  # the common shape, fast; None: plistlib's
    if value is None:
        return _read_with_plistlib(body, max_depth)
    if not isinstance(value, dict):
        raise BadMessage(f"the plist must hold a dictionary, not {type(value).__name__}")
    return value


def parse_plist_with_plistlib(body: bytes, max_depth: int) -> dict[str, Any]:
    """``parse_plist`` by plistlib alone: the judge the fast reader is tested against."""
    _refuse_not_xml(body)
    return _read_with_plistlib(body, max_depth)


def _refuse_not_xml(body: bytes) -> None:
    if not body.strip():
        raise BadMessage("the request body is empty")
    if body.startswith(b"bplist"):
        raise BadMessage("binary plists are not accepted; send an XML plist")


def _read_with_plistlib(body: bytes, max_depth: int) -> dict[str, Any]:
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


def _check_depth(value: Any, max_depth: int, what: str = "the plist") -> None:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > max_depth:
            raise BadMessage(f"{what} nests deeper than {max_depth} levels")
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


def _identifier(d: dict[str, Any], key: str) -> str:
    value = _required_string(d, key, 128)
    if not UDID_FORM.match(value):
        raise BadMessage(f"{key} must be 8 to 128 letters, digits and hyphens")
    return value


def _udid(d: dict[str, Any]) -> tuple[str, bool]:
    """What identifies the enrollment, and whether it is a User Enrollment: the UDID, or,
    when there is none, the EnrollmentID (a User Enrollment device has no UDID). A message
    with both is a device enrollment, keyed by its UDID."""
    if d.get("UDID") is None and d.get("EnrollmentID") is not None:
        return _identifier(d, "EnrollmentID"), True
    if "EnrollmentID" in d:
        _string(d, "EnrollmentID", required=False, max_len=128)
    return _identifier(d, "UDID"), False


def _topic(d: dict[str, Any]) -> str:
    topic = _required_string(d, "Topic", 255)
    if not topic.startswith(TOPIC_PREFIX) or topic == TOPIC_PREFIX:
        raise BadMessage(f"Topic must start with {TOPIC_PREFIX!r}")
    return topic


@dataclass(frozen=True)
class Channel:
    """Who a message is for: the device channel, or a user channel (UserID). For a User
    Enrollment, ``udid`` is the EnrollmentID and ``user_id`` the EnrollmentUserID."""

    udid: str
    user_id: str = ""
    user_short_name: str | None = None
    user_long_name: str | None = None
    auth_token: str | None = None
    user_enrollment: bool = False

    @property
    def is_user(self) -> bool:
        return bool(self.user_id)

    def describe(self) -> str:
        return f"{self.udid} user {self.user_id}" if self.user_id else self.udid


def _channel(d: dict[str, Any]) -> Channel:
    udid, user_enrollment = _udid(d)
    user_id = _string(d, "UserID", required=False, max_len=255)
    enrollment_user_id = _string(d, "EnrollmentUserID", required=False, max_len=255)
    if user_enrollment and enrollment_user_id:
        user_id = enrollment_user_id  # a User Enrollment's user channel on macOS
    return Channel(
        udid=udid,
        user_id=user_id or "",
        user_short_name=_string(d, "UserShortName", required=False, max_len=255),
        user_long_name=_string(d, "UserLongName", required=False, max_len=255),
        auth_token=_string(d, "AuthToken", required=False, max_len=255),
        user_enrollment=user_enrollment,
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
class SetBootstrapToken:
    """A macOS device channel's Bootstrap Token to escrow; ``token`` None: remove it."""

    channel: Channel
    token: bytes | None
    awaiting_configuration: bool | None


@dataclass(frozen=True)
class GetBootstrapToken:
    channel: Channel
    awaiting_configuration: bool | None


@dataclass(frozen=True)
class GetToken:
    channel: Channel
    service_type: str
    parameters: dict[str, Any] | None


@dataclass(frozen=True)
class DeclarativeManagement:
    """A declarative management request: ``status`` is the report sent to the "status"
    Endpoint, ``declaration`` the (type, identifier) asked for by ``declaration/…/…``."""

    channel: Channel
    endpoint: str
    status: dict[str, Any] | None = None
    declaration: tuple[str, str] | None = None


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


CheckinMessage = (
    Authenticate
    | TokenUpdate
    | CheckOut
    | UserAuthenticate
    | SetBootstrapToken
    | GetBootstrapToken
    | GetToken
    | DeclarativeManagement
)
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
        if channel.user_enrollment:
            raise BadMessage("UserAuthenticate is not for a User Enrollment")
        if not channel.user_id:
            raise BadMessage("UserID is missing")
        return UserAuthenticate(channel, _string(d, "DigestResponse", required=False, max_len=4096))
    if kind == "SetBootstrapToken":
        return SetBootstrapToken(
            _bootstrap_channel(d, kind),
            _bootstrap_token(d),
            _bool(d, "AwaitingConfiguration"),
        )
    if kind == "GetBootstrapToken":
        return GetBootstrapToken(_bootstrap_channel(d, kind), _bool(d, "AwaitingConfiguration"))
    if kind == "GetToken":
        return _get_token(d)
    if kind == "DeclarativeManagement":
        return _declarative_management(d)
    raise BadMessage(f"unsupported MessageType {kind!r}")


def _bootstrap_channel(d: dict[str, Any], kind: str) -> Channel:
    """Bootstrap Tokens belong to a macOS device channel of a device enrollment."""
    channel = _channel(d)
    if channel.is_user:
        raise BadMessage(f"{kind} is for the device channel; it carries no UserID")
    if channel.user_enrollment:
        raise BadMessage(f"{kind} is not for a User Enrollment (it has no Bootstrap Token)")
    return channel


def _bootstrap_token(d: dict[str, Any]) -> bytes | None:
    """The token, or None when it is missing or zero length (Apple: remove it)."""
    value = d.get("BootstrapToken")
    if value is None or value == b"":
        return None
    return _data(d, "BootstrapToken", required=True, max_len=MAX_BOOTSTRAP_TOKEN_BYTES)


def _get_token(d: dict[str, Any]) -> GetToken:
    service = _required_string(d, "TokenServiceType", 255)
    if service not in TOKEN_SERVICE_TYPES:
        raise BadMessage(
            f"TokenServiceType {service!r} is not one of {', '.join(TOKEN_SERVICE_TYPES)}"
        )
    parameters = d.get("TokenParameters")
    if parameters is not None:
        if not isinstance(parameters, dict):
            raise BadMessage(
                f"TokenParameters must be a dictionary, not {type(parameters).__name__}"
            )
        for key in TOKEN_PARAMETERS:
            _string(parameters, key, required=False, max_len=4096)
    return GetToken(_channel(d), service, parameters)


def _declarative_management(d: dict[str, Any]) -> DeclarativeManagement:
    channel = _channel(d)
    endpoint = _required_string(d, "Endpoint", MAX_STRING)
    data = _data(d, "Data", required=False, max_len=MAX_DECLARATIVE_DATA)
    if endpoint == "status":
        if data is None:
            raise BadMessage("Data is missing: a status report carries it")
        return DeclarativeManagement(channel, endpoint, status=_json_object(data, "Data"))
    if endpoint in DECLARATIVE_ENDPOINTS:
        return DeclarativeManagement(channel, endpoint)
    parts = endpoint.split("/", 2)
    if len(parts) == 3 and parts[0] == "declaration" and parts[1] and parts[2]:
        return DeclarativeManagement(channel, endpoint, declaration=(parts[1], parts[2]))
    raise BadMessage(
        f"Endpoint {endpoint[:100]!r} is not one of {', '.join(DECLARATIVE_ENDPOINTS)} "
        "or declaration/<type>/<identifier>"
    )


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _json_object(data: bytes, key: str) -> dict[str, Any]:
    """``data`` as a JSON object (no NaN or infinities: the store keeps JSON; bounded
    nesting), or BadMessage."""
    try:
        value = json.loads(data, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as e:
        raise BadMessage(f"{key} is not JSON ({type(e).__name__}: {str(e)[:200]})") from None
    if not isinstance(value, dict):
        raise BadMessage(f"{key} must hold a JSON object, not {type(value).__name__}")
    _check_depth(value, MAX_JSON_DEPTH, key)
    reason = unstorable(value)  # 1e999 parses as an infinity
    if reason is not None:
        raise BadMessage(f"{key}: {reason}")
    return value


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
