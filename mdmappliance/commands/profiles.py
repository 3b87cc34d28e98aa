"""ProfileList, InstallProfile and RemoveProfile: configuration profiles on the device."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from asn1crypto import cms as acms

from mdmappliance.commands import rights
from mdmappliance.commands.base import (
    BuildContext,
    Checker,
    CommandSpec,
    InventoryUpdate,
    Outcome,
    dicts,
    json_safe,
    no_keys,
)
from mdmappliance.pki.cms import CMSError, verify_signed_data
from mdmappliance.pki.signing import ProfileError, check_profile


def _profile_problem(payload: bytes) -> tuple[str | None, str | None]:
    """(problem, warning) for an InstallProfile Payload: plain, signed or encrypted."""
    if payload[:1] != b"\x30":  # not DER: a plain profile
        try:
            check_profile(payload)
        except ProfileError as e:
            return f"is not a well-formed configuration profile: {e}", None
        return None, None
    try:
        kind = acms.ContentInfo.load(payload)["content_type"].native
    except (ValueError, TypeError, KeyError):
        return "is neither a profile nor a CMS structure", None
    if kind == "enveloped_data":
        return None, "the profile is encrypted; the appliance cannot check what it contains"
    if kind != "signed_data":
        return f"is a CMS {kind}, not a signed or encrypted profile", None
    try:
        inner = verify_signed_data(payload).content
    except CMSError as e:
        return f"carries a signature that does not verify: {e}", None
    if inner[:1] == b"\x30":
        return None, "the signed profile is encrypted inside; its contents were not checked"
    try:
        check_profile(inner)
    except ProfileError as e:
        return f"is signed but the profile inside is not well-formed: {e}", None
    return None, None


def build_install_profile(checker: Checker) -> None:
    payload = checker.data("Payload", required=True)
    if payload is None:
        return
    problem, warning = _profile_problem(payload)
    if problem:
        checker.problem("Payload", problem)
        return
    if warning:
        checker.warn(warning)
    sign = checker.context.sign_profile
    if sign is not None:
        if payload[:1] == b"\x30":
            checker.problem("Payload", "is already signed or encrypted; it cannot be signed again")
            return
        checker.out["Payload"] = sign(payload)


def build_remove_profile(checker: Checker) -> None:
    checker.string("Identifier", required=True, max_len=1024)


def remove_profile_rights(command: Mapping[str, Any], context: BuildContext) -> int:
    """Removing the appliance's own MDM profile is always allowed (it ends management)."""
    own = context.own_profile_identifier
    if own and command.get("Identifier") == own:
        return 0
    return rights.INSTALL_PROFILES


def parse_profile_list(result: Mapping[str, Any], command: Mapping[str, Any]) -> Outcome:
    profiles = dicts(result, "ProfileList")
    return Outcome(
        inventory=[InventoryUpdate("profiles", [json_safe(p) for p in profiles])],
        summary={"profiles": len(profiles)},
    )


SPECS = (
    CommandSpec(
        "ProfileList",
        "profiles",
        no_keys,
        rights=rights.INSPECT_PROFILES,
        parse=parse_profile_list,
    ),
    CommandSpec(
        "InstallProfile",
        "profiles",
        build_install_profile,
        rights=rights.INSTALL_PROFILES,
    ),
    CommandSpec(
        "RemoveProfile",
        "profiles",
        build_remove_profile,
        rights=rights.INSTALL_PROFILES,
        rights_of=remove_profile_rights,
    ),
)
