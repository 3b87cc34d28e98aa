"""A command's keys checked against Apple's schema: names, plist types, nesting, required
keys, allowed values and ranges, at every level.

This is the floor every request type stands on; the family modules add the rules the spec
adds (constraints, signing, escrow) on top. Values come in as JSON callers must give them
(data as base64 text, dates as ISO 8601 text) and go out with their plist types.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from mdmappliance.commands.base import kind_of
from mdmappliance.mdm.schema import KeySpec

MAX_TEXT = 64 * 1024
MAX_DATA = 32 * 1024 * 1024
MAX_ITEMS = 100_000
#: Apple's name for "any key" in a free-form dictionary (InstallApplication Configuration).
ANY_KEY = "ANY"


@dataclass
class SchemaCheck:
    """Problems by the path of the key they concern, and notes (``warnings``)."""

    found: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def problem(self, path: str, message: str) -> None:
        self.found.append((path, f"{path} {message}"))

    def problems(self, told: set[str]) -> list[str]:
        """The problems, but none about a key (or inside one) in ``told``: a family rule
        already said what is wrong with it, in the spec's words."""
        return [
            message
            for path, message in self.found
            if not any(path == t or path.startswith((f"{t}.", f"{t}[")) for t in told)
        ]


def check_keys(
    keys: Collection[KeySpec],
    source: Mapping[str, Any],
    where: str,
    check: SchemaCheck,
    *,
    filled_here: Collection[str] = (),
) -> dict[str, Any]:
    """``source`` checked against ``keys``; the keys as they are sent. ``filled_here`` are
    required keys the appliance itself fills in (ClearPasscode's UnlockToken)."""
    known = {k.name: k for k in keys}
    if set(known) == {ANY_KEY} and known[ANY_KEY].type == "any":
        return dict(source)
    out: dict[str, Any] = {}
    for name, value in source.items():
        spec = known.get(name) if isinstance(name, str) else None
        if spec is None:
            check.problem(f"{where}{name}", "is not a key of this command in Apple's schema")
            continue
        if value is None:
            continue
        converted = check_value(spec, value, f"{where}{name}", check)
        if converted is not _BAD:
            out[name] = converted
    for spec in keys:
        if spec.required and source.get(spec.name) is None and spec.name not in filled_here:
            check.problem(f"{where}{spec.name}", "is required")
    return out


class _Bad:
    """A value that failed its check (None is not a plist value, but it may be meant)."""


_BAD: Any = _Bad()


_NAMES = {
    "string": "a string",
    "integer": "an integer",
    "real": "a number",
    "boolean": "a boolean",
    "date": "a date",
    "data": "data",
    "array": "an array",
    "dictionary": "a dictionary",
}


def check_value(spec: KeySpec, value: Any, path: str, check: SchemaCheck) -> Any:
    """One value of ``spec``'s type, converted to its plist form, or ``_BAD`` (reported)."""
    converted = _converted(spec.type, value)
    if converted is _BAD:
        check.problem(path, f"must be {_NAMES.get(spec.type, spec.type)}, not {kind_of(value)}")
        return _BAD
    if isinstance(converted, str) and len(converted) > MAX_TEXT:
        check.problem(path, f"is longer than {MAX_TEXT} characters")
        return _BAD
    if isinstance(converted, bytes) and len(converted) > MAX_DATA:
        check.problem(path, f"is larger than {MAX_DATA} bytes")
        return _BAD
    if spec.choices and converted not in spec.choices:
        allowed = ", ".join(map(str, spec.choices))
        check.problem(path, f"must be one of {allowed}, not {converted!r}")
        return _BAD
    number = isinstance(converted, int | float) and not isinstance(converted, bool)
    if number and (
        (spec.low is not None and converted < spec.low)
        or (spec.high is not None and converted > spec.high)
    ):
        check.problem(path, f"must be between {spec.low} and {spec.high}, not {converted}")
        return _BAD
    if spec.type == "dictionary":
        if not all(isinstance(k, str) for k in converted):
            check.problem(path, "must have string keys only")
            return _BAD
        return check_keys(spec.subkeys, converted, f"{path}.", check) if spec.subkeys else converted
    if spec.type == "array":
        return _array(spec, converted, path, check)
    return converted


def _converted(kind: str, value: Any) -> Any:
    """``value`` as a ``kind`` plist value (data and dates may come as text), or ``_BAD``."""
    if kind == "any":
        return value
    if kind == "string":
        return value if isinstance(value, str) else _BAD
    if kind == "boolean":
        return value if isinstance(value, bool) else _BAD
    if kind == "integer":
        return value if isinstance(value, int) and not isinstance(value, bool) else _BAD
    if kind == "real":
        number = isinstance(value, int | float) and not isinstance(value, bool)
        return value if number and math.isfinite(value) else _BAD
    if kind == "data":
        return _data(value)
    if kind == "date":
        return _date(value)
    if kind == "array":
        return list(value) if isinstance(value, list | tuple) else _BAD
    if kind == "dictionary":
        return value if isinstance(value, dict) else _BAD
    return value


def _data(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return _BAD
    return _BAD


def _date(value: Any) -> Any:
    if isinstance(value, datetime.datetime):
        return value
    if isinstance(value, str):
        try:
            parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return _BAD
        if parsed.tzinfo is not None:
            parsed = parsed.astimezone(datetime.UTC).replace(tzinfo=None)
        return parsed
    return _BAD


def _array(spec: KeySpec, items: list[Any], path: str, check: SchemaCheck) -> Any:
    if len(items) > MAX_ITEMS:
        check.problem(path, f"has more than {MAX_ITEMS} entries")
        return _BAD
    if not spec.subkeys:
        return items
    out = []
    for index, item in enumerate(items):
        item_spec = spec.subkeys[0] if len(spec.subkeys) == 1 else alternative_of(spec, item)
        where = f"{path}[{index}]"
        if item_spec is None:
            check.problem(f"{where}.{_discriminator(spec)}", _alternatives_problem(spec, item))
            continue
        converted = check_value(item_spec, item, where, check)
        if converted is not _BAD:
            out.append(converted)
    if spec.values:
        known = {v.name for v in spec.values}
        unknown = [v for v in out if isinstance(v, str) and v not in known]
        if unknown:
            check.warnings.append(
                f"{path}: values Apple's schema does not list (sent anyway): {', '.join(unknown)}"
            )
    return out


def _discriminator(spec: KeySpec) -> str:
    """The key that tells a polymorphic array's items apart (Settings: Item)."""
    for alternative in spec.subkeys:
        for key in alternative.subkeys:
            if key.required and len(key.choices) == 1:
                return key.name
    return "?"


def alternative_of(spec: KeySpec, item: Any) -> KeySpec | None:
    """Which of a polymorphic array's item kinds ``item`` is, by its discriminating key."""
    if not isinstance(item, dict):
        return None
    name = _discriminator(spec)
    for alternative in spec.subkeys:
        key = alternative.subkey(name)
        if key is not None and item.get(name) in key.choices:
            return alternative
    return None


def _alternatives_problem(spec: KeySpec, item: Any) -> str:
    if not isinstance(item, dict):
        return f"is missing: each item must be a dictionary, not {kind_of(item)}"
    name = _discriminator(spec)
    kinds = ", ".join(str(k.choices[0]) for a in spec.subkeys if (k := a.subkey(name)))
    given = item.get(name)
    return "is required" if given is None else f"must be one of {kinds}, not {given!r}"
