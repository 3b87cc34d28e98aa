"""ProvisioningProfileList, InstallProvisioningProfile, RemoveProvisioningProfile."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from mdmappliance.commands import rights
from mdmappliance.commands.base import (
    Checker,
    CommandSpec,
    InventoryUpdate,
    MacSupport,
    Outcome,
    dicts,
    json_safe,
    no_keys,
)
from mdmappliance.commands.errors import ResultInvalid

UUID_FORM = re.compile(r"^[0-9A-Fa-f]{8}(-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12}$")

#: A provisioning profile is CMS signed data (DER), as Xcode and the developer portal make it.
DER_SEQUENCE = b"\x30"


def _uuid(value: str) -> str | None:
    return None if UUID_FORM.match(value) else "must be a UUID (8-4-4-4-12 hexadecimal digits)"


def build_install(checker: Checker) -> None:
    profile = checker.data("ProvisioningProfile", required=True)
    if profile is not None and profile[:1] != DER_SEQUENCE:
        checker.problem(
            "ProvisioningProfile", "must be a signed provisioning profile (.mobileprovision, DER)"
        )


def build_remove(checker: Checker) -> None:
    checker.string("UUID", required=True, check=_uuid)


def parse_list(result: Mapping[str, Any], command: Mapping[str, Any]) -> Outcome:
    entries = dicts(result, "ProvisioningProfileList")
    for entry in entries:
        if not isinstance(entry.get("UUID"), str):
            raise ResultInvalid("every ProvisioningProfileList entry needs a UUID string")
    return Outcome(
        inventory=[InventoryUpdate("provisioning_profiles", [json_safe(e) for e in entries])],
        summary={"provisioning_profiles": len(entries)},
    )


SPECS = (
    CommandSpec(
        "ProvisioningProfileList",
        "provisioning",
        no_keys,
        rights=rights.INSPECT_PROVISIONING,
        mac=MacSupport.PARTIAL,
        mac_note="OS X answers with an empty list",
        parse=parse_list,
    ),
    CommandSpec(
        "InstallProvisioningProfile",
        "provisioning",
        build_install,
        rights=rights.INSTALL_PROVISIONING,
        mac=MacSupport.NONE,
    ),
    CommandSpec(
        "RemoveProvisioningProfile",
        "provisioning",
        build_remove,
        rights=rights.INSTALL_PROVISIONING,
        mac=MacSupport.NONE,
    ),
)
