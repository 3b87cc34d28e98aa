"""Apple's device-management schema (``apple/`` in this package), read once, as typed data.

Each command and check-in message is a ``RequestSchema``: its keys (``KeySpec``, nested),
and per OS what supports it (``Support``: introduced, deprecated, removed, access right,
channels, supervision, User Enrollment). A key inherits its parent's support and overrides
what it names, as Apple's ``docs/schema.md`` says. ``make update-schema`` refreshes the data.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from typing import Any

#: The OS names of Apple's schema, in its order.
OSES = ("iOS", "macOS", "tvOS", "visionOS", "watchOS")
NOT_AVAILABLE = "n/a"
_VERSION = re.compile(r"\d+(?:\.\d+)*")

Version = tuple[int, ...]


@functools.lru_cache(maxsize=1024)
def parse_version(text: str | None) -> Version | None:
    """``'10.13.4'`` as ``(10, 13, 4)``; the leading version of ``'17.1 (21B80)'``; None if
    there is none (``'n/a'``, empty)."""
    if not text:
        return None
    found = _VERSION.match(str(text).strip())
    if found is None:
        return None
    parts = tuple(int(p) for p in found.group().split("."))
    while len(parts) > 1 and parts[-1] == 0:
        parts = parts[:-1]
    return parts


def show_version(version: Version) -> str:
    return ".".join(map(str, version if len(version) > 1 else (*version, 0)))


@dataclass(frozen=True)
class Support:
    """What one OS supports of a command or key. ``introduced`` None: not on that OS."""

    introduced: Version | None
    deprecated: Version | None = None
    removed: Version | None = None
    access_rights: str | None = None
    device_channel: bool | None = None
    user_channel: bool | None = None
    supervised: bool = False
    requires_dep: bool = False
    user_enrollment: str = "allowed"
    shared_ipad: str = "allowed"

    @property
    def available(self) -> bool:
        return self.introduced is not None


def _merged(parent: Mapping[str, Any], own: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(parent)
    for key, value in own.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def _support(raw: Mapping[str, Any]) -> Support:
    introduced = raw.get("introduced")
    return Support(
        introduced=None if introduced == NOT_AVAILABLE else parse_version(introduced) or (0,),
        deprecated=parse_version(raw.get("deprecated")),
        removed=parse_version(raw.get("removed")),
        access_rights=raw.get("accessrights"),
        device_channel=raw.get("devicechannel"),
        user_channel=raw.get("userchannel"),
        supervised=raw.get("supervised") is True,
        requires_dep=raw.get("requiresdep") is True,
        user_enrollment=(raw.get("userenrollment") or {}).get("mode", "allowed"),
        shared_ipad=(raw.get("sharedipad") or {}).get("mode", "allowed"),
    )


@dataclass(frozen=True)
class KeySpec:
    """One key: its plist type (Apple's name without the brackets), whether it is required,
    its allowed values and bounds, its subkeys, and its support per OS."""

    name: str
    type: str
    required: bool = False
    choices: tuple[Any, ...] = ()
    low: float | None = None
    high: float | None = None
    subkeys: tuple[KeySpec, ...] = ()
    support: Mapping[str, Support] = field(default_factory=dict)
    title: str = ""
    default: Any = None

    def subkey(self, name: str) -> KeySpec | None:
        return next((k for k in self.subkeys if k.name == name), None)

    @property
    def values(self) -> tuple[KeySpec, ...]:
        """An array of strings whose item lists its possible values (DeviceInformation's
        Queries): those values, each with its own support."""
        if self.type == "array" and len(self.subkeys) == 1:
            item = self.subkeys[0]
            if item.type not in ("dictionary", "array"):
                return item.subkeys
        return ()


def _key(raw: Mapping[str, Any], inherited: Mapping[str, Mapping[str, Any]]) -> KeySpec:
    own = raw.get("supportedOS") or {}
    raw_support = {os: _merged(inherited[os], own.get(os) or {}) for os in OSES if os in inherited}
    bounds = raw.get("range") or {}
    return KeySpec(
        name=str(raw["key"]),
        type=str(raw.get("type", "<any>")).strip("<>"),
        required=raw.get("presence") == "required",
        choices=tuple(raw.get("rangelist") or ()),
        low=bounds.get("min"),
        high=bounds.get("max"),
        subkeys=tuple(_key(sub, raw_support) for sub in raw.get("subkeys") or ()),
        support={os: _support(values) for os, values in raw_support.items()},
        title=str(raw.get("title") or ""),
        default=raw.get("default"),
    )


@dataclass(frozen=True)
class RequestSchema:
    """A command (``RequestType``) or check-in message (``MessageType``) of Apple's schema."""

    name: str
    title: str
    file: str
    support: Mapping[str, Support]
    keys: tuple[KeySpec, ...]
    response: tuple[KeySpec, ...]

    def key(self, name: str) -> KeySpec | None:
        return next((k for k in self.keys if k.name == name), None)

    def response_key(self, name: str) -> KeySpec | None:
        return next((k for k in self.response if k.name == name), None)

    def extended(self, key: str, extra: tuple[KeySpec, ...]) -> RequestSchema:
        """The schema with more subkeys for ``key`` (a dictionary's keys, or a polymorphic
        array's item kinds): the 2014 reference defines some that Apple's schema no longer
        lists (InstallApplication's Options.NotManaged, Apple TV's Language setting)."""
        if self.key(key) is None:
            raise KeyError(f"{self.name} has no key {key}")
        keys = tuple(
            replace(k, subkeys=(*k.subkeys, *extra)) if k.name == key else k for k in self.keys
        )
        return replace(self, keys=keys)


def _request(raw: Mapping[str, Any]) -> RequestSchema:
    payload = raw["payload"]
    inherited = {
        os: dict(values or {}) for os, values in (payload.get("supportedOS") or {}).items()
    }
    return RequestSchema(
        name=str(payload["requesttype"]),
        title=str(raw.get("title") or ""),
        file=str(raw["file"]),
        support={os: _support(values) for os, values in inherited.items() if os in OSES},
        keys=tuple(_key(k, inherited) for k in raw.get("payloadkeys") or ()),
        response=tuple(_key(k, inherited) for k in raw.get("responsekeys") or ()),
    )


@dataclass(frozen=True)
class AppleSchema:
    commit: str
    commands: Mapping[str, RequestSchema]
    checkin: Mapping[str, RequestSchema]

    def floor(self, os: str) -> Version:
        """The oldest version of ``os`` that speaks MDM at all (when Authenticate came):
        nothing needs naming below it."""
        support = self.checkin["Authenticate"].support.get(os)
        return support.introduced if support and support.introduced else (0,)


def load_raw() -> dict[str, Any]:
    text = resources.files(__package__).joinpath("apple/schema.json").read_text(encoding="utf-8")
    raw: dict[str, Any] = json.loads(text)
    return raw


@functools.cache
def apple_schema() -> AppleSchema:
    """The schema, read once per process."""
    raw = load_raw()
    return AppleSchema(
        commit=str(raw["commit"]),
        commands={name: _request(doc) for name, doc in raw["commands"].items()},
        checkin={name: _request(doc) for name, doc in raw["checkin"].items()},
    )
