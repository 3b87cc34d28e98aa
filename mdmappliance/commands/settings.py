"""Settings: one-time device settings, each an item of the Settings array ("Managed Settings").

Each item is checked by its own builder; the command needs Manipulation of Settings, and
some items need more (PersonalHotspot: Network Information; app items: App Management). The
answer has one status per item, in order, which becomes the command's summary.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from mdmappliance.commands import rights
from mdmappliance.commands.base import (
    BuildContext,
    Checker,
    CommandSpec,
    Fitted,
    MacSupport,
    Outcome,
    Target,
    dicts,
)
from mdmappliance.commands.errors import ResultInvalid
from mdmappliance.mdm.errorcodes import describe_chain
from mdmappliance.mdm.platforms import Platform

PNG = b"\x89PNG\r\n\x1a\n"
JPEG = b"\xff\xd8\xff"
MAX_WALLPAPER = 20 * 1024 * 1024
MAX_ITEMS = 64


def _enabled(item: Checker) -> None:
    item.boolean("Enabled", required=True)


def _wallpaper(item: Checker) -> None:
    image = item.data("Image", required=True, max_len=MAX_WALLPAPER)
    if image is not None and not image.startswith((PNG, JPEG)):
        item.problem("Image", "must be a PNG or JPEG image (its bytes are neither)")
    item.integer("Where", required=True, choices=(1, 2, 3))


def _app_attributes(item: Checker) -> None:
    item.string("Identifier", required=True, max_len=255)
    attributes = item.nested("Attributes")
    if attributes is not None:
        attributes.string("VPNUUID", max_len=64)
        item.adopt("Attributes", attributes)


def _app_configuration(item: Checker) -> None:
    item.string("Identifier", required=True, max_len=255)
    item.dictionary("Configuration")


def _language(item: Checker) -> None:
    item.string("Language", required=True, max_len=64)


def _locale(item: Checker) -> None:
    """The spec's table names the value key ``Language``; the item's name suggests ``Locale``.
    Either is accepted and both are sent, so the device finds the one it reads."""
    given = [key for key in ("Locale", "Language") if key in item.source]
    for key in given:
        item.string(key, max_len=64)
    if not given:
        item.problem("Locale", "is required")
    elif len(given) == 2 and item.source["Locale"] != item.source["Language"]:
        item.problem("Locale", "and Language disagree; give one of them")
    elif not item.problems:
        value = item.out[given[0]]
        item.out["Locale"] = item.out["Language"] = value


def _organization_info(item: Checker) -> None:
    info = item.nested("OrganizationInfo")
    if info is None:
        return  # no OrganizationInfo: the current one is removed
    info.string("OrganizationName", required=True, max_len=255)
    for key in ("OrganizationAddress", "OrganizationPhone", "OrganizationEmail"):
        info.string(key, max_len=1024)
    info.string("OrganizationMagic", max_len=255)
    item.adopt("OrganizationInfo", info)


def _mdm_options(item: Checker) -> None:
    options = item.nested("MDMOptions", required=True)
    if options is not None:
        options.boolean("ActivationLockAllowedWhileSupervised")
        item.adopt("MDMOptions", options)


def _device_name(item: Checker) -> None:
    item.string("DeviceName", required=True, max_len=255)


@dataclass(frozen=True)
class SettingItem:
    build: Callable[[Checker], None]
    rights: int = rights.SETTINGS
    supervised_only: bool = False
    apple_tv_only: bool = False
    on_mac: bool = False


ITEMS: dict[str, SettingItem] = {
    "VoiceRoaming": SettingItem(_enabled),
    "PersonalHotspot": SettingItem(_enabled, rights.SETTINGS | rights.NETWORK_INFORMATION),
    "Wallpaper": SettingItem(_wallpaper, supervised_only=True),
    "DataRoaming": SettingItem(_enabled),
    "ApplicationAttributes": SettingItem(_app_attributes, rights.SETTINGS | rights.APP_MANAGEMENT),
    "ApplicationConfiguration": SettingItem(
        _app_configuration, rights.SETTINGS | rights.APP_MANAGEMENT
    ),
    "Language": SettingItem(_language, supervised_only=True, apple_tv_only=True),
    "Locale": SettingItem(_locale, supervised_only=True, apple_tv_only=True),
    "OrganizationInfo": SettingItem(_organization_info, on_mac=True),
    "MDMOptions": SettingItem(_mdm_options),
    "DeviceName": SettingItem(_device_name, on_mac=True),
}


def build(checker: Checker) -> None:
    value = checker._get("Settings", True)
    if value is None:
        return
    if not isinstance(value, list) or not value:
        checker.problem("Settings", "must be a non-empty array of setting dictionaries")
        return
    if len(value) > MAX_ITEMS:
        checker.problem("Settings", f"has more than {MAX_ITEMS} items")
        return
    items: list[dict[str, Any]] = []
    for index, entry in enumerate(value):
        where = f"Settings[{index}]."
        if not isinstance(entry, dict):
            checker.problems.append(f"Settings[{index}] must be a dictionary")
            continue
        item = Checker(entry, where, checker.context)
        name = item.string("Item", required=True, max_len=64, choices=ITEMS)
        if name is None:
            checker.problems.extend(item.problems)
            continue
        ITEMS[name].build(item)
        item.finish_keys()
        checker.problems.extend(item.problems)
        checker.warnings.extend(item.warnings)
        items.append(item.out)
    checker.out["Settings"] = items


def needed(command: Mapping[str, Any], context: BuildContext) -> int:
    bits = rights.SETTINGS
    for item in command.get("Settings", []):
        bits |= ITEMS[item["Item"]].rights
    return bits


def fit(command: dict[str, Any], target: Target, fitted: Fitted) -> None:
    names = [item["Item"] for item in command["Settings"]]
    if target.platform is Platform.MACOS:
        refused = [n for n in names if not ITEMS[n].on_mac]
        if refused:
            fitted.command = None
            fitted.refusal = (
                "OS X takes only the DeviceName and OrganizationInfo settings, not "
                + ", ".join(refused)
            )
            return
    for name in dict.fromkeys(names):
        spec = ITEMS[name]
        if spec.supervised_only and target.supervised is not True:
            fitted.warnings.append(
                f"{name} works on supervised devices only, and this one is not known to be"
            )
        if spec.apple_tv_only and target.platform not in (None, Platform.TVOS):
            fitted.warnings.append(f"{name} is for Apple TV only")


def parse(result: Mapping[str, Any], command: Mapping[str, Any]) -> Outcome:
    answers = dicts(result, "Settings")
    asked = command.get("Settings", [])
    if len(answers) != len(asked):
        raise ResultInvalid(
            f"Settings has {len(answers)} results for {len(asked)} items in the command"
        )
    items = []
    for request, answer in zip(asked, answers, strict=True):
        status = answer.get("Status")
        if status not in ("Acknowledged", "Error"):
            raise ResultInvalid("each Settings result needs Status Acknowledged or Error")
        entry: dict[str, Any] = {"Item": request.get("Item"), "Status": status}
        if isinstance(answer.get("Identifier"), str):
            entry["Identifier"] = answer["Identifier"]
        if answer.get("ErrorChain"):
            entry["Errors"] = describe_chain(answer["ErrorChain"])
        items.append(entry)
    return Outcome(summary={"Settings": items})


SPECS = (
    CommandSpec(
        "Settings",
        "settings",
        build,
        rights=rights.SETTINGS,
        rights_of=needed,
        mac=MacSupport.PARTIAL,
        mac_note="OS X takes only DeviceName and OrganizationInfo",
        mac_channel="device",
        fit=fit,
        parse=parse,
    ),
)
