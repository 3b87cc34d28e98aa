"""DeviceInformation and SecurityInfo: what the device is and how it is protected.

The query names are Apple's (its schema lists 85, each with the OSes that answer it) and
the spec's; each needs the access right of its table in the spec (or Apple's schema), and
the device drops any it is not allowed to answer, so those are dropped here (with a warning)
before the command is queued. Answers become the device's facts.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping
from typing import Any

from mdmappliance.commands import rights
from mdmappliance.commands.availability import is_2014_mac, judge
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
from mdmappliance.mdm.schema import KeySpec, apple_schema

STRINGS = "array of strings"

#: The spec's Tables 5 (general, no right needed) and 6 (iTunes Store account, App
#: Management): the rights of their queries, which Apple's schema calls a "Special Case".
GENERAL = ("UDID", "Languages", "Locales", "DeviceID", "OrganizationInfo")
ITUNES = ("iTunesStoreAccountIsActive",)
#: Queries of the spec that Apple's schema does not list: asked only when named, and their
#: answers still read (the spec's types).
SPEC_ONLY = {"Languages": STRINGS, "Locales": STRINGS, "EthernetMACs": STRINGS}


def _schema_queries() -> dict[str, KeySpec]:
    queries = apple_schema().commands["DeviceInformation"].key("Queries")
    assert queries is not None
    return {value.name: value for value in queries.values}


def _schema_answers() -> dict[str, str]:
    answers = apple_schema().commands["DeviceInformation"].response_key("QueryResponses")
    assert answers is not None
    return {key.name: key.type for key in answers.subkeys}


#: Apple's query names, each with its support per OS (access right included).
QUERIES = _schema_queries()
#: What is asked when the command names no Queries: every query Apple's schema lists.
DEFAULT_QUERIES = tuple(QUERIES)


def _rights_of(name: str) -> int:
    if name in GENERAL:
        return 0  # DeviceID is in Tables 5 and 7: Table 5 needs no right
    if name in ITUNES:
        return rights.APP_MANAGEMENT
    if name in SPEC_ONLY:
        return rights.NETWORK_INFORMATION if name == "EthernetMACs" else 0
    return rights.of_schema(s.access_rights for s in QUERIES[name].support.values())


QUERY_RIGHTS: dict[str, int] = {name: _rights_of(name) for name in (*QUERIES, *SPEC_ONLY)}
#: The type of each answer (Apple's schema; the spec's for the names it alone has).
REPLY_TYPES: dict[str, str] = {**SPEC_ONLY, **_schema_answers()}

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
        checker.out["Queries"] = list(DEFAULT_QUERIES)
        return
    if queries is None:
        return
    if not queries:
        checker.problem("Queries", "is empty: name at least one query")
        return
    unknown = [q for q in queries if q not in QUERY_RIGHTS]
    if unknown:
        checker.warn(
            "DeviceInformation queries neither Apple's schema nor the spec lists (sent "
            "anyway; newer OS versions add queries): " + ", ".join(unknown)
        )
    checker.out["Queries"] = list(dict.fromkeys(queries))


def _unanswerable(queries: list[str], target: Target, fitted: Fitted) -> list[str]:
    """The queries the target's OS does not answer by Apple's schema (its platform, its
    version when known, User Enrollment): left out, with a warning unless the command
    asked for the default set (then by platform and User Enrollment only)."""
    if is_2014_mac(target):
        return queries  # Table 10 says what it answers (below)
    default = queries == list(DEFAULT_QUERIES)
    if default:
        # By platform only: a device passes over queries newer than its OS, and one body
        # per platform is queued in one pass however many OS versions the fleet runs.
        target = dataclasses.replace(target, os_version=None)
    kept, left_out = [], []
    for query in queries:
        spec = QUERIES.get(query)
        verdict = judge(query, spec.support, target) if spec is not None else None
        if verdict is not None and verdict.refusal is not None:
            left_out.append(verdict.refusal)
        else:
            kept.append(query)
    if left_out and not default:
        fitted.warnings.append(
            "left out queries the device does not answer: " + "; ".join(left_out)
        )
    return kept


def fit_device_information(command: dict[str, Any], target: Target, fitted: Fitted) -> None:
    queries: list[str] = _unanswerable(command["Queries"], target, fitted)
    if not queries:
        fitted.command = None
        fitted.refusal = "none of the queries is answered by this device (Apple's schema)"
        return
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
    if is_2014_mac(target):
        unanswered = [q for q in kept if q not in MAC_QUERIES and q in REPLY_TYPES]
        if unanswered:
            fitted.warnings.append("OS X does not answer: " + ", ".join(unanswered))
    command["Queries"] = kept


_KINDS: dict[str, type | tuple[type, ...]] = {
    "string": str,
    "boolean": bool,
    "integer": int,
    "real": (int, float),
    "data": bytes,
    "date": datetime.datetime,
    "array": list,
    "dictionary": dict,
}


def _typed(kind: str, value: Any) -> bool:
    if kind == STRINGS:
        return (isinstance(value, list) and all(isinstance(v, str) for v in value)) or (
            isinstance(value, str)  # Table 5 gives Locales as String; devices send an array
        )
    if isinstance(value, bool) and kind != "boolean":
        return False
    return isinstance(value, _KINDS.get(kind, object))


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
