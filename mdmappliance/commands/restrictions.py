"""Restrictions: the restrictions in effect, globally and (if asked) per profile."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mdmappliance.commands import rights
from mdmappliance.commands.base import (
    BuildContext,
    Checker,
    CommandSpec,
    InventoryUpdate,
    MacSupport,
    Outcome,
    json_safe,
)
from mdmappliance.commands.errors import ResultInvalid


def build(checker: Checker) -> None:
    checker.boolean("ProfileRestrictions")


def needed(command: Mapping[str, Any], context: BuildContext) -> int:
    """Per-profile restrictions also need the Inspect Profile Manifest right."""
    extra = rights.INSPECT_PROFILES if command.get("ProfileRestrictions") else 0
    return rights.RESTRICTIONS | extra


def _restriction_set(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ResultInvalid(f"{where} must be a dictionary")
    for kind in ("restrictedBool", "restrictedValue"):
        entries = value.get(kind, {})
        if not isinstance(entries, dict) or not all(isinstance(v, dict) for v in entries.values()):
            raise ResultInvalid(f"{where}.{kind} must be a dictionary of dictionaries")
    safe: dict[str, Any] = json_safe(value)
    return safe


def parse(result: Mapping[str, Any], command: Mapping[str, Any]) -> Outcome:
    state: dict[str, Any] = {
        "GlobalRestrictions": _restriction_set(
            result.get("GlobalRestrictions", {}), "GlobalRestrictions"
        )
    }
    per_profile = result.get("ProfileRestrictions")
    if per_profile is not None:
        if not isinstance(per_profile, dict):
            raise ResultInvalid("ProfileRestrictions must be a dictionary")
        state["ProfileRestrictions"] = {
            str(identifier): _restriction_set(value, f"ProfileRestrictions.{identifier}")
            for identifier, value in per_profile.items()
        }
    counts = {
        kind: len(state["GlobalRestrictions"].get(kind, {}))
        for kind in ("restrictedBool", "restrictedValue")
    }
    return Outcome(inventory=[InventoryUpdate("restrictions", state)], summary=counts)


SPECS = (
    CommandSpec(
        "Restrictions",
        "restrictions",
        build,
        rights=rights.RESTRICTIONS,
        rights_of=needed,
        mac=MacSupport.PARTIAL,
        mac_note="OS X answers with an empty list",
        parse=parse,
    ),
)
