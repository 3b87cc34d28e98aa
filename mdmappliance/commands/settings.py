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
from mdmappliance.commands.availability import is_2014_mac
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
from mdmappliance.mdm.schema import KeySpec, Support, apple_schema

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


def _spec_only_item(name: str, *values: str) -> KeySpec:
    """A Settings item of the 2014 reference that Apple's schema no longer lists (Apple TV's
    Language and Locale), so that the schema check knows its keys."""
    support = {os: Support(introduced=(0,)) for os in ("iOS", "tvOS")}
    keys = (
        KeySpec("Item", "string", required=True, choices=(name,), support=support),
        *(KeySpec(value, "string", support=support) for value in values),
    )
    return KeySpec(name, "dictionary", subkeys=keys, support=support)


#: Layered on Apple's Settings schema by the catalog.
SPEC_ONLY_ITEMS = (
    _spec_only_item("Language", "Language"),
    _spec_only_item("Locale", "Locale", "Language"),
)


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
        name = entry.get("Item")
        if not isinstance(name, str) or name not in ITEMS:
            items.append(entry)  # an item only Apple's schema describes: it checks the item
            continue
        item = Checker(entry, where, checker.context)
        item.string("Item", required=True, max_len=64)
        ITEMS[name].build(item)
        checker.take(item)
        items.append(item.out)  # one per entry, in order, so the schema sees each
    checker.out["Settings"] = items


def _schema_rights(name: str) -> int:
    """The right Apple's schema names for a Settings item the 2014 reference lacks."""
    items = apple_schema().commands["Settings"].key("Settings")
    item = items.subkey(name) if items is not None else None
    if item is None:
        return 0
    return rights.of_schema(s.access_rights for s in item.support.values())


def needed(command: Mapping[str, Any], context: BuildContext) -> int:
    bits = rights.SETTINGS
    for item in command.get("Settings", []):
        known = ITEMS.get(item["Item"])
        bits |= known.rights if known is not None else _schema_rights(item["Item"])
    return bits


def fit(command: dict[str, Any], target: Target, fitted: Fitted) -> None:
    names = [item["Item"] for item in command["Settings"]]
    old_mac = is_2014_mac(target)
    if target.platform is Platform.MACOS and old_mac is not False:
        refused = [n for n in names if n not in ITEMS or not ITEMS[n].on_mac]
        table = "OS X takes only the DeviceName and OrganizationInfo settings (Table 10)"
        if refused and old_mac:
            fitted.command = None
            fitted.refusal = f"{table}, not {', '.join(refused)}"
            return
        if refused:
            fitted.warnings.append(
                f"{table}; this Mac's OS version is not known, and later macOS takes more: "
                + ", ".join(refused)
            )
    for name in dict.fromkeys(names):
        spec = ITEMS.get(name)
        if spec is None:
            continue  # Apple's schema says what it needs (``catalog.fit``)
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
