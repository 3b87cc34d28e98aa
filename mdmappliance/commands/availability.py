"""Whether a target's OS supports a command or key, by Apple's ``supportedOS``.

Refused only when Apple's schema says so for the target's platform, or for a too-old OS
version when the device's version is known (the refusal names the version it needs). When
the version is not known, what came after the platform's first MDM release is a warning,
never a silent drop. Deprecated and removed entries are flagged.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from mdmappliance.commands.base import Target
from mdmappliance.commands.schema_check import alternative_of
from mdmappliance.mdm.platforms import Platform
from mdmappliance.mdm.schema import (
    KeySpec,
    RequestSchema,
    Support,
    Version,
    apple_schema,
    parse_version,
    show_version,
)

#: Apple's OS name for each platform the appliance tells apart.
OS_NAMES = {Platform.IOS: "iOS", Platform.MACOS: "macOS", Platform.TVOS: "tvOS"}
#: The last OS X the 2014 reference (and its Table 10) describes.
OS_X_2014 = (10, 9)


@dataclass
class Verdict:
    refusal: str | None = None
    warnings: list[str] = field(default_factory=list)


def os_of(target: Target) -> tuple[str, Version | None] | None:
    """The target's OS name in Apple's schema and its version (None if not known); None
    when the platform is not known."""
    if target.platform is None:
        return None
    return OS_NAMES[target.platform], parse_version(target.os_version)


def is_2014_mac(target: Target) -> bool | None:
    """True for an OS X the 2014 reference describes, False for a later one, None when the
    Mac's version is not known (or the target is no Mac)."""
    if target.platform is not Platform.MACOS:
        return None
    version = parse_version(target.os_version)
    return None if version is None else version[:2] <= OS_X_2014


@functools.cache
def _floor(os: str) -> Version:
    return apple_schema().floor(os)


def judge(name: str, support: Mapping[str, Support], target: Target) -> Verdict:
    """Whether ``target`` can take ``name`` (a request type, or a key path) by ``support``."""
    verdict = Verdict()
    found = os_of(target)
    if found is None:
        return verdict
    os, version = found
    entry = support.get(os)
    if entry is None or entry.introduced is None:
        verdict.refusal = f"{name} is not supported on {os} (Apple's schema)"
        return verdict
    if version is None:
        if entry.introduced > _floor(os):
            verdict.warnings.append(
                f"{name} needs {os} {show_version(entry.introduced)} or later, and this "
                "device's OS version is not known"
            )
    elif version < entry.introduced:
        verdict.refusal = (
            f"{name} needs {os} {show_version(entry.introduced)} or later; this device runs "
            f"{os} {show_version(version)}"
        )
        return verdict
    if entry.removed is not None:
        removed = f"{name} was removed in {os} {show_version(entry.removed)}"
        if version is not None and version >= entry.removed:
            verdict.refusal = removed
            return verdict
        verdict.warnings.append(f"{removed} (Apple's schema)")
    elif entry.deprecated is not None and (version is None or version >= entry.deprecated):
        verdict.warnings.append(
            f"{name} is deprecated since {os} {show_version(entry.deprecated)} (Apple's schema)"
        )
    _enrollment(name, os, entry, target, verdict)
    return verdict


def _enrollment(name: str, os: str, entry: Support, target: Target, verdict: Verdict) -> None:
    """The kind of enrollment and channel: User Enrollment, device or user channel,
    supervision, DEP."""
    if target.user_enrollment and entry.user_enrollment == "forbidden":
        verdict.refusal = f"{name} is not available with User Enrollment on {os}"
    elif target.is_user and entry.user_channel is False:
        verdict.refusal = f"on {os}, {name} goes to the device channel, not a user's"
    elif not target.is_user and entry.device_channel is False:
        verdict.refusal = f"on {os}, {name} goes to a user channel, not the device's"
    if verdict.refusal is not None:
        return
    if entry.supervised and target.supervised is not True:
        verdict.warnings.append(
            f"{name} works on supervised devices only, and this one is not known to be"
        )
    if entry.requires_dep:
        verdict.warnings.append(
            f"{name} works only on devices enrolled through Automated Device Enrollment"
        )


def _differs(own: Support | None, parent: Support | None) -> bool:
    """Whether a key says more about availability than what it is in (so each fact is told
    once, at the key that introduces it)."""

    def facts(s: Support | None) -> tuple[Any, ...]:
        if s is None:
            return ()
        return (s.introduced, s.deprecated, s.removed, s.user_enrollment, s.device_channel)

    return facts(own) != facts(parent)


def judge_keys(
    schema: RequestSchema, command: Mapping[str, Any], target: Target
) -> Iterator[tuple[str, str, Verdict]]:
    """(path, top-level key, verdict) for each key of ``command`` whose availability on the
    target's OS differs from what contains it and is refused or warned about."""
    found = os_of(target)
    if found is None:
        return
    yield from _Walk(found[0], target).keys(schema.keys, command, schema.support, "", None)


class _Walk:
    """One command's keys walked against the schema, for one target's OS."""

    def __init__(self, os: str, target: Target) -> None:
        self.os = os
        self.target = target

    def told(
        self, name: str, own: Mapping[str, Support], parent: Mapping[str, Support]
    ) -> Verdict | None:
        """The verdict on a key that says more than its parent, if there is one to tell."""
        if not _differs(own.get(self.os), parent.get(self.os)):
            return None
        verdict = judge(name, own, self.target)
        return verdict if verdict.refusal is not None or verdict.warnings else None

    def keys(
        self,
        keys: tuple[KeySpec, ...],
        values: Mapping[str, Any],
        parent: Mapping[str, Support],
        where: str,
        top: str | None,
    ) -> Iterator[tuple[str, str, Verdict]]:
        known = {k.name: k for k in keys}
        for name, value in values.items():
            spec = known.get(name)
            if spec is None:
                continue
            path, top_key = f"{where}{name}", top or name
            verdict = self.told(path, spec.support, parent)
            if verdict is not None:
                yield path, top_key, verdict
                if verdict.refusal is not None:
                    continue
            if isinstance(value, dict) and spec.subkeys:
                yield from self.keys(spec.subkeys, value, spec.support, f"{path}.", top_key)
            elif isinstance(value, list) and not spec.values:
                yield from self.items(spec, value, path, top_key)

    def items(
        self, spec: KeySpec, value: list[Any], path: str, top_key: str
    ) -> Iterator[tuple[str, str, Verdict]]:
        """An array's dictionaries; a polymorphic array's (Settings) by their kind."""
        for index, item in enumerate(value):
            if not isinstance(item, dict):
                continue
            kind = alternative_of(spec, item) if len(spec.subkeys) > 1 else None
            if kind is None and len(spec.subkeys) != 1:
                continue
            at = f"{path}[{index}]" + (f" ({kind.name})" if kind else "")
            if kind is not None:
                verdict = self.told(f"{path} item {kind.name}", kind.support, spec.support)
                if verdict is not None:
                    yield at, top_key, verdict
                    if verdict.refusal is not None:
                        continue
            item_spec = kind or spec.subkeys[0]
            yield from self.keys(item_spec.subkeys, item, item_spec.support, f"{at}.", top_key)
