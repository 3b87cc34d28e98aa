"""Managed applications: InstalledApplicationList, InstallApplication, ApplyRedemptionCode,
ManagedApplicationList and RemoveApplication."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mdmappliance.commands import rights
from mdmappliance.commands.availability import is_2014_mac
from mdmappliance.commands.base import (
    Checker,
    CommandSpec,
    Fitted,
    InventoryUpdate,
    MacSupport,
    Outcome,
    Target,
    by_identifier,
    dicts,
    expect,
    filtered,
    https_url,
    json_safe,
)
from mdmappliance.commands.errors import ResultInvalid
from mdmappliance.mdm.platforms import Platform
from mdmappliance.mdm.schema import KeySpec, Support

MANAGEMENT_FLAGS = 1 | 4  # 1: remove with the MDM profile; 4: no backup of app data
APP_SOURCES = ("Identifier", "iTunesStoreID", "ManifestURL")
REJECTION_REASONS = (
    "AppAlreadyInstalled",
    "AppAlreadyQueued",
    "NotSupported",
    "CouldNotVerifyAppID",
    "AppStoreDisabled",
    "NotAnApp",
    "PurchaseMethodNotSupported",
)
STATUSES = (
    "NeedsRedemption",
    "Redeeming",
    "Prompting",
    "PromptingForLogin",
    "Installing",
    "ValidatingPurchase",
    "Managed",
    "ManagedButUninstalled",
    "PromptingForUpdate",
    "PromptingForUpdateLogin",
    "Updating",
    "ValidatingUpdate",
    "Unknown",
)
#: Reported once, then gone from the next answer: kept as events so they are not lost.
TRANSIENT_STATUSES = ("UserInstalledApp", "UserRejected", "UpdateRejected", "Failed")


#: Options of the 2014 reference that Apple's schema no longer lists (OS X's unmanaged
#: installs), layered on the schema by the catalog.
SPEC_ONLY_OPTIONS = (
    KeySpec(
        "NotManaged",
        "boolean",
        support={os: Support(introduced=(0,)) for os in ("iOS", "macOS", "tvOS")},
    ),
)


def build_installed_list(checker: Checker) -> None:
    checker.strings("Identifiers")
    checker.boolean("ManagedAppsOnly")


def parse_installed_list(result: Mapping[str, Any], command: Mapping[str, Any]) -> Outcome:
    apps = by_identifier(dicts(result, "InstalledApplicationList"), by_name=True)
    partial = filtered(command) or command.get("ManagedAppsOnly") is True
    scope = tuple(command.get("Identifiers") or ())
    return Outcome(
        inventory=[InventoryUpdate("installed_apps", apps, merge=partial, scope=scope)],
        summary={"apps": len(apps)},
    )


def build_install(checker: Checker) -> None:
    given = [key for key in APP_SOURCES if key in checker.source]
    checker.string("Identifier", max_len=255)
    checker.integer("iTunesStoreID", low=1, high=2**63 - 1)
    checker.string("ManifestURL", max_len=2048, check=https_url)
    if len(given) != 1:
        checker.problem(
            "Identifier",
            f"/ iTunesStoreID / ManifestURL: exactly one is required, {len(given)} given"
            + (f" ({', '.join(given)})" if given else ""),
        )
    flags = checker.integer("ManagementFlags", low=0)
    if flags is not None and flags & ~MANAGEMENT_FLAGS:
        checker.problem("ManagementFlags", f"may only use bits 1 and 4, not {flags}")
        checker.out.pop("ManagementFlags", None)
    options = checker.nested("Options")
    if options is not None:
        options.boolean("NotManaged")
        options.integer("PurchaseMethod", choices=(0, 1))
        checker.adopt("Options", options)
    checker.dictionary("Configuration")
    attributes = checker.nested("Attributes")
    if attributes is not None:
        attributes.string("VPNUUID", max_len=64)
        checker.adopt("Attributes", attributes)


def fit_install(command: dict[str, Any], target: Target, fitted: Fitted) -> None:
    """OS X of 2014 installs (VPP) only unmanaged apps: "OS X app installation must set
    NotManaged". Later macOS manages apps (macOS 11), so there it is a warning at most."""
    options = command.get("Options") or {}
    if target.platform is not Platform.MACOS or options.get("NotManaged") is True:
        return
    rule = "OS X 10.9 app installation must set Options.NotManaged to true (the spec)"
    old_mac = is_2014_mac(target)
    if old_mac:
        fitted.command = None
        fitted.refusal = rule
    elif old_mac is None:
        fitted.warnings.append(f"{rule}; this Mac's OS version is not known")


def parse_install(result: Mapping[str, Any], command: Mapping[str, Any]) -> Outcome:
    identifier = result.get("Identifier") or command.get("Identifier")
    key = str(identifier or command.get("iTunesStoreID") or command.get("ManifestURL"))
    if "RejectionReason" in result:
        reason = expect(result, "RejectionReason", str)
        entry = {"RejectionReason": reason}
        if reason not in REJECTION_REASONS:
            entry["note"] = "a reason the spec does not list"
    elif "State" in result:
        entry = {"State": expect(result, "State", str)}
    else:
        return Outcome(summary={"app": key})
    return Outcome(
        inventory=[InventoryUpdate("app_installs", {key: entry}, merge=True)],
        summary={"app": key, **entry},
    )


def build_redemption(checker: Checker) -> None:
    checker.string("Identifier", required=True, max_len=255)
    checker.string("RedemptionCode", required=True, max_len=255)


def build_managed_list(checker: Checker) -> None:
    checker.strings("Identifiers")


def parse_managed_list(result: Mapping[str, Any], command: Mapping[str, Any]) -> Outcome:
    apps = expect(result, "ManagedApplicationList", dict)
    state: dict[str, Any] = {}
    events: list[tuple[str, dict[str, Any]]] = []
    for identifier, entry in apps.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("Status"), str):
            raise ResultInvalid(f"ManagedApplicationList.{identifier} needs a Status string")
        status = entry["Status"]
        if status in TRANSIENT_STATUSES:
            events.append(("app.transient_status", {"identifier": identifier, "status": status}))
        code = entry.get("UnusedRedemptionCode")
        if isinstance(code, str) and code:
            events.append(("app.unused_redemption_code", {"identifier": identifier, "code": code}))
        state[str(identifier)] = json_safe(entry)
    scope = tuple(command.get("Identifiers") or ())
    return Outcome(
        inventory=[InventoryUpdate("managed_apps", state, merge=filtered(command), scope=scope)],
        summary={"apps": len(state)},
        events=events,
    )


def build_remove(checker: Checker) -> None:
    checker.string("Identifier", required=True, max_len=255)


SPECS = (
    CommandSpec(
        "InstalledApplicationList",
        "apps",
        build_installed_list,
        rights=rights.INSPECT_APPS,
        parse=parse_installed_list,
    ),
    CommandSpec(
        "InstallApplication",
        "apps",
        build_install,
        rights=rights.APP_MANAGEMENT,
        mac=MacSupport.PARTIAL,
        mac_note="OS X installs VPP apps only, unmanaged, on the user channel",
        mac_channel="user",
        fit=fit_install,
        parse=parse_install,
        parse_errors=True,
    ),
    CommandSpec(
        "ApplyRedemptionCode",
        "apps",
        build_redemption,
        rights=rights.APP_MANAGEMENT,
        mac=MacSupport.NONE,
    ),
    CommandSpec(
        "ManagedApplicationList",
        "apps",
        build_managed_list,
        rights=rights.APP_MANAGEMENT,
        mac=MacSupport.NONE,
        parse=parse_managed_list,
    ),
    CommandSpec(
        "RemoveApplication",
        "apps",
        build_remove,
        rights=rights.APP_MANAGEMENT,
        mac=MacSupport.NONE,
    ),
)
