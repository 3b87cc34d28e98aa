"""What every command family is made of: a key checker, the target's known facts, and the
outcome of a parsed result.

A family module describes each request type as a ``CommandSpec``: which keys it takes (read
through a ``Checker``, which names the key in every problem), which access rights it needs,
what OS X does with it, and how its answer turns into inventory. ``catalog.py`` gathers them.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from mdmappliance.commands.errors import ResultInvalid
from mdmappliance.mdm.platforms import Platform

MAX_STRING = 4096
MAX_DATA = 8 * 1024 * 1024


@dataclass(frozen=True)
class BuildContext:
    """What builders need besides the command: the appliance's own MDM profile identifier
    (removing it is always allowed) and, when the admin asks, a signer for profiles."""

    own_profile_identifier: str = ""
    sign_profile: Callable[[bytes], bytes] | None = None


class Checker:
    """Reads the keys a family has rules for, one by one, checking each; collects every
    problem, naming the key.

    ``out`` holds those keys as they will be sent, with plist types (a Data key given as
    base64 text, as JSON callers must, becomes bytes). Which keys exist at all, and their
    types, Apple's schema says (``schema_check``), so a family reads only what it rules on.
    """

    def __init__(
        self, source: Mapping[str, Any], where: str = "", context: BuildContext | None = None
    ) -> None:
        self.source = source
        self.where = where
        self.context = context or BuildContext()
        self.out: dict[str, Any] = {}
        self.problems: list[str] = []
        #: The keys (paths) the problems are about: the schema's check adds none for them.
        self.problem_paths: set[str] = set()
        self.warnings: list[str] = []

    def name(self, key: str) -> str:
        return f"{self.where}{key}"

    def problem(self, key: str, message: str) -> None:
        self.problems.append(f"{self.name(key)} {message}")
        self.problem_paths.add(self.name(key))

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def _get(self, key: str, required: bool) -> Any:
        value = self.source.get(key)
        if value is None and required:
            self.problem(key, "is required")
        return value

    def string(
        self,
        key: str,
        *,
        required: bool = False,
        max_len: int = MAX_STRING,
        choices: Iterable[str] | None = None,
        check: Callable[[str], str | None] | None = None,
    ) -> str | None:
        value = self._get(key, required)
        if value is None:
            return None
        if not isinstance(value, str):
            self.problem(key, f"must be a string, not {kind_of(value)}")
            return None
        if not value:
            self.problem(key, "is empty")
            return None
        if len(value) > max_len:
            self.problem(key, f"is longer than {max_len} characters")
            return None
        allowed = list(choices or ())
        if allowed and value not in allowed:
            self.problem(key, f"must be one of {', '.join(allowed)}, not {value!r}")
            return None
        if check is not None and (message := check(value)) is not None:
            self.problem(key, message)
            return None
        self.out[key] = value
        return value

    def _take(self, key: str, required: bool, kinds: type | tuple[type, ...], name: str) -> Any:
        """The key's value if present and of ``kinds`` (a problem if not), else None."""
        value = self._get(key, required)
        if value is None:
            return None
        if not isinstance(value, kinds):
            self.problem(key, f"must be {name}, not {kind_of(value)}")
            return None
        return value

    def boolean(self, key: str, *, required: bool = False) -> bool | None:
        value: bool | None = self._take(key, required, bool, "a boolean")
        if value is not None:
            self.out[key] = value
        return value

    def integer(
        self,
        key: str,
        *,
        required: bool = False,
        low: int | None = None,
        high: int | None = None,
        choices: Iterable[int] | None = None,
        from_text: bool = False,
    ) -> int | None:
        value = self._get(key, required)
        if value is None:
            return None
        if from_text and isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            self.problem(key, f"must be an integer, not {kind_of(value)}")
            return None
        allowed = list(choices or ())
        if allowed and value not in allowed:
            self.problem(key, f"must be one of {', '.join(map(str, allowed))}, not {value}")
            return None
        if (low is not None and value < low) or (high is not None and value > high):
            self.problem(key, f"must be between {low} and {high}, not {value}")
            return None
        self.out[key] = value
        return value

    def data(self, key: str, *, required: bool = False, max_len: int = MAX_DATA) -> bytes | None:
        value = self._get(key, required)
        if value is None:
            return None
        if isinstance(value, str):
            try:
                value = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                self.problem(key, "must be data (bytes, or base64 text), and is not valid base64")
                return None
        if not isinstance(value, bytes | bytearray):
            self.problem(key, f"must be data, not {kind_of(value)}")
            return None
        if not value:
            self.problem(key, "is empty")
            return None
        if len(value) > max_len:
            self.problem(key, f"is larger than {max_len} bytes")
            return None
        self.out[key] = bytes(value)
        return bytes(value)

    def strings(
        self, key: str, *, required: bool = False, max_items: int = 10_000
    ) -> list[str] | None:
        value = self._get(key, required)
        if value is None:
            return None
        if not isinstance(value, list | tuple):
            self.problem(key, f"must be an array of strings, not {kind_of(value)}")
            return None
        if len(value) > max_items:
            self.problem(key, f"has more than {max_items} entries")
            return None
        bad = [i for i, item in enumerate(value) if not isinstance(item, str) or not item]
        if bad:
            self.problem(key, f"must hold non-empty strings only (entry {bad[0]} is not one)")
            return None
        self.out[key] = list(value)
        return list(value)

    def dictionary(self, key: str, *, required: bool = False) -> dict[str, Any] | None:
        value: dict[str, Any] | None = self._take(key, required, dict, "a dictionary")
        if value is None:
            return None
        bad = [k for k in value if not isinstance(k, str)]
        if bad:
            self.problem(key, "must have string keys only")
            return None
        self.out[key] = value
        return value

    def nested(self, key: str, *, required: bool = False) -> Checker | None:
        """A checker for a dictionary-valued key whose own keys the spec lists."""
        value = self._take(key, required, dict, "a dictionary")
        if value is None:
            return None
        return Checker(value, f"{self.name(key)}.", self.context)

    def adopt(self, key: str, child: Checker) -> None:
        """Take a nested checker's result and problems into this one."""
        self.take(child)
        self.out[key] = child.out

    def take(self, child: Checker) -> None:
        """A nested checker's problems and warnings, as this one's."""
        self.problems.extend(child.problems)
        self.problem_paths.update(child.problem_paths)
        self.warnings.extend(child.warnings)


def https_url(value: str) -> str | None:
    """A Checker check: an absolute https:// URL (iOS 7 and later refuse any other)."""
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.netloc:
        return "must be an https:// URL"
    return None


def kind_of(value: Any) -> str:
    """A value's type in the words problems use ("a string", "data", ...)."""
    names = {str: "a string", bool: "a boolean", int: "an integer", float: "a number"}
    names.update({bytes: "data", list: "an array", dict: "a dictionary"})
    return names.get(type(value), type(value).__name__)


class MacSupport(enum.Enum):
    """Table 10: what the OS X client does with a request type."""

    FULL = "full"
    PARTIAL = "partial"
    NONE = "none"


@dataclass(frozen=True)
class Target:
    """What the appliance knows about one enrollment when a command is queued for it."""

    enrollment_id: int
    udid: str
    user_id: str = ""
    state: str = "enrolled"
    access_rights: int | None = None
    platform: Platform | None = None
    supervised: bool | None = None
    has_unlock_token: bool = False
    os_version: str | None = None
    user_enrollment: bool = False

    @property
    def is_user(self) -> bool:
        return bool(self.user_id)

    def describe(self) -> str:
        return f"{self.udid} user {self.user_id}" if self.user_id else self.udid


@dataclass
class Fitted:
    """A command made to fit one target: what to send, or why it cannot be, plus warnings."""

    command: dict[str, Any] | None
    refusal: str | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class InventoryUpdate:
    """One piece of a device's current state, replacing the previous answer of its kind.

    ``merge`` is set when the command asked about some items only (``Identifiers``): the
    answered entries replace theirs, the others are kept, and those in ``scope`` (asked for)
    but not answered are removed. ``data`` is then a dictionary keyed by identifier.
    """

    kind: str
    data: Any
    merge: bool = False
    scope: tuple[str, ...] = ()


@dataclass
class Outcome:
    """What a result means: inventory to store, device facts, a summary for the command."""

    inventory: list[InventoryUpdate] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


Builder = Callable[[Checker], None]
Parser = Callable[[Mapping[str, Any], Mapping[str, Any]], Outcome]
Fitter = Callable[[dict[str, Any], Target, Fitted], None]
RightsOf = Callable[[Mapping[str, Any], BuildContext], int]


@dataclass(frozen=True)
class CommandSpec:
    """One request type of the spec.

    ``rights`` is the AccessRights bits it needs (``rights_of`` when that depends on the
    command's keys); ``fit`` adapts the command to one target (drop queries, warn);
    ``parse`` reads an Acknowledged (or, with ``parse_errors``, an Error) answer.
    """

    request_type: str
    family: str
    build: Builder
    rights: int = 0
    rights_of: RightsOf | None = None
    mac: MacSupport = MacSupport.FULL
    mac_note: str = ""
    mac_channel: str = "both"
    supervised_only: bool = False
    fit: Fitter | None = None
    parse: Parser | None = None
    parse_errors: bool = False
    #: Required keys of Apple's schema that the appliance fills in, not the caller.
    filled_here: tuple[str, ...] = ()
    #: Keys the spec says a platform ignores: dropped there with a warning, not refused.
    ignored_where_unsupported: tuple[str, ...] = ()

    def needed_rights(self, command: Mapping[str, Any], context: BuildContext) -> int:
        return self.rights_of(command, context) if self.rights_of else self.rights


def no_keys(checker: Checker) -> None:
    """A request type with nothing but its RequestType."""


def json_safe(value: Any) -> Any:
    """A plist value as JSON: data as base64 text, dates as ISO 8601 UTC."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.UTC)
        return value.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return value


def expect(result: Mapping[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    """A key of a device's answer with the type the spec gives it, or ResultInvalid."""
    value = result.get(key)
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise ResultInvalid(f"{key} must be {_kind_name(kind)} in the answer")
    return value


def optional(result: Mapping[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    if result.get(key) is None:
        return None
    return expect(result, key, kind)


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(kind_of(k()) if k is not bool else "a boolean" for k in kinds)


def dicts(result: Mapping[str, Any], key: str) -> list[dict[str, Any]]:
    """An array-of-dictionaries key of an answer."""
    value = result.get(key)
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ResultInvalid(f"{key} must be an array of dictionaries in the answer")
    return value


def filtered(command: Mapping[str, Any]) -> bool:
    """The command asked about some apps only, so its answer is merged, not a replacement."""
    return bool(command.get("Identifiers"))


def by_identifier(
    entries: list[dict[str, Any]], key: str = "Identifier", *, by_name: bool = False
) -> dict[str, Any]:
    """Entries keyed by their identifier. With ``by_name``, an entry without one (OS X lists
    apps that have no bundle identifier) is keyed by its Name instead."""
    keyed: dict[str, Any] = {}
    for entry in entries:
        identifier = entry.get(key)
        if by_name and not identifier and isinstance(entry.get("Name"), str):
            identifier = f"(name) {entry['Name']}"
        if not isinstance(identifier, str) or not identifier:
            raise ResultInvalid(f"every entry needs a string {key}")
        keyed[identifier] = json_safe(entry)
    return keyed


def one_answer(key: str, choices: tuple[str, ...]) -> Parser:
    """A parser for an answer that is one string of a fixed set (MirroringResult, ...)."""

    def parse(result: Mapping[str, Any], command: Mapping[str, Any]) -> Outcome:
        value = result.get(key)
        if value not in choices:
            raise ResultInvalid(f"{key} must be one of {', '.join(choices)}")
        return Outcome(summary={key: value})

    return parse
