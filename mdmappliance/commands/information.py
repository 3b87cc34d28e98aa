"""DeviceInformation and SecurityInfo: what the device is and how it is protected.

The query names are those of Tables 5 to 8; each needs the access right of its table, and the
device drops any it is not allowed to answer, so those are dropped here (with a warning)
before the command is queued. Answers become the device's facts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mdmappliance.commands import rights
from mdmappliance.commands.base import (
    Checker,
    CommandSpec,
    Fitted,
    InventoryUpdate,
    MacSupport,
    Outcome,
    Target,
    expect,
    json_safe,
    no_keys,
)
from mdmappliance.commands.errors import ResultInvalid
from mdmappliance.mdm.messages import DEVICE_FACTS
from mdmappliance.mdm.platforms import Platform

STRING, NUMBER, BOOL, STRINGS = "string", "number", "boolean", "array of strings"

#: Table 5 (general, no right needed) and Table 6 (iTunes Store account, App Management).
GENERAL = {
    "UDID": STRING,
    "Languages": STRINGS,
    "Locales": STRINGS,
    "DeviceID": STRING,
    "OrganizationInfo": STRING,
}
ITUNES = {"iTunesStoreAccountIsActive": BOOL}
#: Table 7: Device Information right.
DEVICE = {
    "DeviceName": STRING,
    "OSVersion": STRING,
    "BuildVersion": STRING,
    "ModelName": STRING,
    "Model": STRING,
    "ProductName": STRING,
    "SerialNumber": STRING,
    "DeviceCapacity": NUMBER,
    "AvailableDeviceCapacity": NUMBER,
    "BatteryLevel": NUMBER,
    "CellularTechnology": NUMBER,
    "IMEI": STRING,
    "MEID": STRING,
    "ModemFirmwareVersion": STRING,
    "IsSupervised": BOOL,
    "IsDeviceLocatorServiceEnabled": BOOL,
    "IsActivationLockEnabled": BOOL,
    "IsDoNotDisturbInEffect": BOOL,
    "EASDeviceIdentifier": STRING,
}
#: Table 8: Network Information right.
NETWORK = {
    "ICCID": STRING,
    "BluetoothMAC": STRING,
    "WiFiMAC": STRING,
    "EthernetMACs": STRINGS,
    "CurrentCarrierNetwork": STRING,
    "SIMCarrierNetwork": STRING,
    "SubscriberCarrierNetwork": STRING,
    "CarrierSettingsVersion": STRING,
    "PhoneNumber": STRING,
    "VoiceRoamingEnabled": BOOL,
    "DataRoamingEnabled": BOOL,
    "IsRoaming": BOOL,
    "PersonalHotspotEnabled": BOOL,
    "SubscriberMCC": STRING,
    "SubscriberMNC": STRING,
    "CurrentMCC": STRING,
    "CurrentMNC": STRING,
}

QUERY_RIGHTS: dict[str, int] = {
    **{name: rights.NETWORK_INFORMATION for name in NETWORK},
    **{name: rights.DEVICE_INFORMATION for name in DEVICE},
    **{name: rights.APP_MANAGEMENT for name in ITUNES},
    **{name: 0 for name in GENERAL},  # DeviceID is in Tables 5 and 7: Table 5 needs no right
}
REPLY_TYPES: dict[str, str] = {**NETWORK, **DEVICE, **ITUNES, **GENERAL}

#: Table 10: the queries the OS X client answers.
MAC_QUERIES = frozenset(
    (
        *("UDID", "OSVersion", "BuildVersion", "ProductName", "Model", "ModelName"),
        *("DeviceCapacity", "AvailableDeviceCapacity", "DeviceName", "SerialNumber"),
        *("BluetoothMAC", "WiFiMAC", "EthernetMACs", "Languages", "Locales"),
        "iTunesStoreAccountIsActive",
    )
)

#: Answers kept in the device record's own columns (the rest stay in its facts).
COLUMNS = {
    **DEVICE_FACTS,  # the columns Authenticate fills too
    "IsSupervised": "supervised",
    "IsActivationLockEnabled": "activation_lock",
}


def build_device_information(checker: Checker) -> None:
    queries = checker.strings("Queries", max_items=len(REPLY_TYPES) + 64)
    if "Queries" not in checker.source:
        checker.out["Queries"] = list(REPLY_TYPES)  # every query the spec knows
        return
    if queries is None:
        return
    if not queries:
        checker.problem("Queries", "is empty: name at least one query")
        return
    unknown = [q for q in queries if q not in REPLY_TYPES]
    if unknown:
        checker.warn(
            "unknown DeviceInformation queries (sent anyway; newer OS versions add queries): "
            + ", ".join(unknown)
        )
    checker.out["Queries"] = list(dict.fromkeys(queries))


def fit_device_information(command: dict[str, Any], target: Target, fitted: Fitted) -> None:
    queries: list[str] = command["Queries"]
    granted = target.access_rights
    kept = queries
    if granted is None and any(QUERY_RIGHTS.get(q, 0) for q in queries):
        fitted.warnings.append(
            "this enrollment's AccessRights are not known (enrolled through another CA); "
            "the device drops the queries its profile does not allow"
        )
    if granted is not None:
        mac = target.platform is Platform.MACOS
        lacking = {
            q: bits
            for q in queries
            if (bits := rights.missing(QUERY_RIGHTS.get(q, 0), granted, mac=mac))
        }
        if lacking:
            kept = [q for q in queries if q not in lacking]
            missing_bits = 0
            for bits in lacking.values():
                missing_bits |= bits
            needs = f"{rights.describe(missing_bits)}, which this enrollment's AccessRights lack"
            if not kept:
                fitted.command = None
                fitted.refusal = f"none of the queries is allowed: they need {needs}"
                return
            fitted.warnings.append(f"dropped queries needing {needs}: {', '.join(lacking)}")
    if target.platform is Platform.MACOS:
        unanswered = [q for q in kept if q not in MAC_QUERIES and q in REPLY_TYPES]
        if unanswered:
            fitted.warnings.append("OS X does not answer: " + ", ".join(unanswered))
    command["Queries"] = kept


def _typed(kind: str, value: Any) -> bool:
    if kind == STRING:
        return isinstance(value, str)
    if kind == BOOL:
        return isinstance(value, bool)
    if kind == NUMBER:
        return isinstance(value, int | float) and not isinstance(value, bool)
    return (isinstance(value, list) and all(isinstance(v, str) for v in value)) or (
        isinstance(value, str)  # Table 5 gives Locales as String; devices send an array
    )


def parse_device_information(result: Mapping[str, Any], command: Mapping[str, Any]) -> Outcome:
    responses = expect(result, "QueryResponses", dict)
    facts: dict[str, Any] = {}
    ignored: list[str] = []
    for name, value in responses.items():
        kind = REPLY_TYPES.get(name)
        if kind is not None and not _typed(kind, value):
            ignored.append(f"{name} (not a {kind})")
            continue
        facts[name] = json_safe(value)
    summary: dict[str, Any] = {"answered": sorted(facts)}
    if ignored:
        summary["ignored"] = ignored
    return Outcome(
        inventory=[InventoryUpdate("device_information", facts, merge=True)],
        facts=facts,
        summary=summary,
    )


IOS_SECURITY = {
    "HardwareEncryptionCaps": int,
    "PasscodePresent": bool,
    "PasscodeCompliant": bool,
    "PasscodeCompliantWithProfiles": bool,
}
MAC_SECURITY = ("FDE_Enabled", "FDE_HasPersonalRecoveryKey", "FDE_HasInstitutionalRecoveryKey")


def parse_security_info(result: Mapping[str, Any], command: Mapping[str, Any]) -> Outcome:
    info = expect(result, "SecurityInfo", dict)
    for key, kind in IOS_SECURITY.items():
        value = info.get(key)
        wrong = not isinstance(value, kind) or (kind is int and isinstance(value, bool))
        if value is not None and wrong:
            expected = "an integer" if kind is int else "a boolean"
            raise ResultInvalid(f"SecurityInfo.{key} must be {expected}")
    for key in MAC_SECURITY:
        if info.get(key) is not None and not isinstance(info[key], bool):
            raise ResultInvalid(f"SecurityInfo.{key} must be a boolean")
    state = json_safe(info)
    derived: dict[str, Any] = {}
    if "HardwareEncryptionCaps" in info:
        # "For a device to be protected with Data Protection, HardwareEncryptionCaps must be
        # 3, and PasscodePresent must be true."
        derived["DataProtection"] = info["HardwareEncryptionCaps"] & 3 == 3 and bool(
            info.get("PasscodePresent")
        )
    if "FDE_Enabled" in info:
        derived["FileVault"] = bool(info["FDE_Enabled"])
    state.update(derived)
    return Outcome(
        inventory=[InventoryUpdate("security", state)],
        facts=derived,
        summary=derived or {"keys": sorted(info)},
    )


SPECS = (
    CommandSpec(
        "DeviceInformation",
        "information",
        build_device_information,
        mac=MacSupport.PARTIAL,
        mac_note="OS X answers only some queries (Table 10)",
        fit=fit_device_information,
        parse=parse_device_information,
    ),
    CommandSpec(
        "SecurityInfo",
        "information",
        no_keys,
        rights=rights.SECURITY,
        mac=MacSupport.PARTIAL,
        mac_note="OS X answers only with its FileVault state, on the device channel",
        mac_channel="device",
        parse=parse_security_info,
    ),
)
