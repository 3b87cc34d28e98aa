"""A simulated device's state, answering every request type the way the spec describes.

``DeviceModel.answer`` is an ``Answer`` for ``SimulatedDevice.poll``: it performs the command
on its own state (profiles, apps, settings, ...) and replies with the keys of the spec's
result tables, or with an Error and an ErrorChain where a real device refuses. OS X models
answer only what Table 10 says OS X does.
"""

from __future__ import annotations

import datetime
import plistlib
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from asn1crypto import cms as acms

from mdmappliance.mdm.schema import KeySpec, apple_schema, parse_version

UUID_IN_TEXT = re.compile(rb"[0-9A-Fa-f]{8}(-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12}")
TRANSIENT = ("UserInstalledApp", "UserRejected", "UpdateRejected", "Failed")
MAC_UNSUPPORTED = {
    "InstallProvisioningProfile",
    "RemoveProvisioningProfile",
    "ClearPasscode",
    "RequestMirroring",
    "StopMirroring",
    "ApplyRedemptionCode",
    "ManagedApplicationList",
    "RemoveApplication",
    "ManagedApplicationConfiguration",
    "ManagedApplicationAttributes",
    "ManagedApplicationFeedback",
}


def error(domain: str, code: int, text: str, **extra: Any) -> tuple[str, dict[str, Any]]:
    chain = [
        {
            "ErrorDomain": domain,
            "ErrorCode": code,
            "LocalizedDescription": text,
            "USEnglishDescription": text,
        }
    ]
    return "Error", {"ErrorChain": chain, **extra}


OS_NAMES = {"ios": "iOS", "macos": "macOS", "tvos": "tvOS"}


def example_value(key: KeySpec) -> Any:
    """A plausible value of a schema key's type: its first allowed value, or one of its
    type, with every required subkey."""
    if key.choices:
        return key.choices[0]
    if key.type == "dictionary":
        return {sub.name: example_value(sub) for sub in key.subkeys if sub.required}
    if key.type == "array":
        if key.values:
            return [key.values[0].name]
        return [example_value(key.subkeys[0])] if key.subkeys else []
    low = key.low if key.low is not None else 1
    return {
        "string": f"example {key.name}",
        "integer": int(low),
        "real": float(low),
        "boolean": True,
        "data": b"example " + key.name.encode(),
        "date": datetime.datetime(2026, 1, 1, 12, 0, 0),
    }.get(key.type, f"example {key.name}")


def generic_answer(request_type: str) -> dict[str, Any]:
    """An Acknowledged answer to a command the model does not perform: the required keys of
    Apple's response schema, each with a value of its type."""
    schema = apple_schema().commands[request_type]
    return {key.name: example_value(key) for key in schema.response if key.required}


def unwrap_profile(payload: bytes) -> dict[str, Any] | None:
    """The profile inside a (possibly signed) InstallProfile Payload, or None."""
    if payload[:1] == b"\x30":
        try:
            payload = bytes(
                acms.ContentInfo.load(payload)["content"]["encap_content_info"]["content"].native
            )
        except (ValueError, KeyError, TypeError):
            return None
    try:
        profile = plistlib.loads(payload)
    except Exception:
        return None
    return profile if isinstance(profile, dict) else None


@dataclass
class DeviceModel:
    platform: str = "ios"
    supervised: bool = True
    udid: str = ""
    unlock_token: bytes | None = None
    certificates: list[tuple[str, bool, bytes]] = field(default_factory=list)
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    provisioning: dict[str, dict[str, Any]] = field(default_factory=dict)
    installed: dict[str, dict[str, Any]] = field(default_factory=dict)
    managed: dict[str, dict[str, Any]] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    locked: bool = False
    erased: bool = False
    passcode: bool = True
    answered: list[str] = field(default_factory=list)
    #: The OS version it reports (a 2014 default per platform when empty).
    os_version: str = ""
    user_enrollment: bool = False

    def __post_init__(self) -> None:
        self.installed.setdefault(
            "com.example.notes",
            {
                "Identifier": "com.example.notes",
                "Name": "Notes",
                "Version": "412",
                "ShortVersion": "4.1.2",
                "BundleSize": 10_485_760,
                "DynamicSize": 2048,
            },
        )

    @property
    def mac(self) -> bool:
        return self.platform == "macos"

    @property
    def version(self) -> str:
        return self.os_version or ("10.13.1" if self.mac else "7.1")

    def supports(self, request_type: str) -> bool:
        """What a device of this OS and version does, by Table 10 for an OS X of 2014 and by
        Apple's schema otherwise."""
        if self.mac and (parse_version(self.version) or (0,))[:2] <= (10, 9):
            return request_type not in MAC_UNSUPPORTED
        schema = apple_schema().commands.get(request_type)
        support = schema.support.get(OS_NAMES[self.platform]) if schema else None
        if support is None or support.introduced is None:
            return False
        if self.user_enrollment and support.user_enrollment == "forbidden":
            return False
        current = parse_version(self.version) or (0,)
        return current >= support.introduced and not (
            support.removed and current >= support.removed
        )

    def answer(self, envelope: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        command = envelope["Command"]
        request_type = command["RequestType"]
        self.answered.append(request_type)
        if not self.supports(request_type):
            return error(
                "MCMDMErrorDomain",
                12021,
                f'The request type "{request_type}" is not supported.',
            )
        handler = getattr(self, f"do_{request_type}", None)
        if handler is None:
            return "Acknowledged", generic_answer(request_type)
        result: tuple[str, dict[str, Any]] = handler(command)
        return result

    # Profiles
    def do_ProfileList(self, command: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        return "Acknowledged", {"ProfileList": list(self.profiles.values())}

    def do_InstallProfile(self, command: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        profile = unwrap_profile(command["Payload"])
        if profile is None or "PayloadIdentifier" not in profile:
            return error("MCProfileErrorDomain", 1000, "Malformed profile")
        self.profiles[profile["PayloadIdentifier"]] = {
            key: profile[key]
            for key in ("PayloadIdentifier", "PayloadUUID", "PayloadVersion", "PayloadDisplayName")
            if key in profile
        } | {
            "PayloadContent": [
                {
                    "PayloadType": p.get("PayloadType"),
                    "PayloadIdentifier": p.get("PayloadIdentifier"),
                }
                for p in profile.get("PayloadContent", [])
            ],
            "IsManaged": True,
        }
        return "Acknowledged", {}

    def do_RemoveProfile(self, command: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        if self.profiles.pop(command["Identifier"], None) is None:
            return error("MCMDMErrorDomain", 12013, "Profile not managed")
        return "Acknowledged", {}

    # Provisioning profiles
    def do_ProvisioningProfileList(self, command: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        listed = [] if self.mac else list(self.provisioning.values())
        return "Acknowledged", {"ProvisioningProfileList": listed}

    def do_InstallProvisioningProfile(self, command: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        # A .mobileprovision is CMS around a plist that names its UUID: take it from there.
        found = UUID_IN_TEXT.search(command["ProvisioningProfile"])
        profile_uuid = found.group().decode().upper() if found else str(uuid.uuid4()).upper()
        self.provisioning[profile_uuid] = {
            "Name": "Example Distribution",
            "UUID": profile_uuid,
            "ExpiryDate": datetime.datetime(2027, 6, 1, 12, 0, 0),
        }
        return "Acknowledged", {}

    def do_RemoveProvisioningProfile(self, command: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        if self.provisioning.pop(command["UUID"], None) is None:
            return error("MCProvisioningProfileErrorDomain", 25002, "Cannot remove")
        return "Acknowledged", {}

    # Certificates
    def do_CertificateList(self, command: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        return "Acknowledged", {
            "CertificateList": [
                {"CommonName": name, "IsIdentity": identity, "Data": der}
                for name, identity, der in self.certificates
            ]
        }

    # Information
    def facts(self) -> dict[str, Any]:
        common = {
            "UDID": self.udid,
            "DeviceName": self.settings.get("DeviceName", "Simulated device"),
            "SerialNumber": "C02SIM" + self.udid[:6],
            "DeviceCapacity": 119.2,
            "AvailableDeviceCapacity": 80.5,
            "BluetoothMAC": "a4:83:e7:00:00:01",
            "WiFiMAC": "a4:83:e7:00:00:02",
        }
        if self.mac:
            return common | {
                "OSVersion": self.version,
                "BuildVersion": "17B48",
                "ModelName": "Mac Pro",
                "Model": "MacPro6,1",
                "ProductName": "MacPro6,1",
                "EthernetMACs": ["a4:83:e7:00:00:03"],
            }
        return common | {
            "OSVersion": self.version,
            "BuildVersion": "11D167",
            "ModelName": "iPhone",
            "Model": "ME341LL",
            "ProductName": "iPhone6,1",
            "BatteryLevel": 0.8,
            "CellularTechnology": 1,
            "IMEI": "01 234567 890123 4",
            "ModemFirmwareVersion": "3.04.25",
            "IsSupervised": self.supervised,
            "IsDeviceLocatorServiceEnabled": True,
            "IsActivationLockEnabled": True,
            "IsDoNotDisturbInEffect": False,
            "EASDeviceIdentifier": "SIMEAS0001",
            "ICCID": "8901 2345 6789 0123 4567",
            "CurrentCarrierNetwork": "Carrier",
            "SubscriberCarrierNetwork": "Carrier",
            "CarrierSettingsVersion": "16.0",
            "PhoneNumber": "15555550100",
            "VoiceRoamingEnabled": self.settings.get("VoiceRoaming", True),
            "DataRoamingEnabled": self.settings.get("DataRoaming", False),
            "IsRoaming": False,
            "PersonalHotspotEnabled": self.settings.get("PersonalHotspot", False),
            "SubscriberMCC": "310",
            "SubscriberMNC": "410",
            "CurrentMCC": "310",
            "CurrentMNC": "410",
            "iTunesStoreAccountIsActive": True,
            "OrganizationInfo": self.settings.get("OrganizationInfo", {}),
        }

    def do_DeviceInformation(self, command: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """The facts it has, and for Apple's other queries its OS answers a value of the
        schema's type (a device answers what it knows and leaves out the rest)."""
        facts = self.facts()
        responses = {query: facts[query] for query in command["Queries"] if query in facts}
        if (parse_version(self.version) or (0,))[:2] > (10, 9 if self.mac else 7):
            answers = apple_schema().commands["DeviceInformation"].response_key("QueryResponses")
            assert answers is not None
            for key in answers.subkeys:
                support = key.support.get(OS_NAMES[self.platform])
                wanted = key.name in command["Queries"] and key.name not in responses
                if wanted and support is not None and support.introduced is not None:
                    responses[key.name] = example_value(key)
        if self.user_enrollment:
            for query in ("UDID", "SerialNumber", "IMEI", "MEID", "EASDeviceIdentifier"):
                responses.pop(query, None)
        return "Acknowledged", {"QueryResponses": responses}

    def do_SecurityInfo(self, command: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        info: dict[str, Any]
        if self.mac:
            info = {
                "FDE_Enabled": True,
                "FDE_HasPersonalRecoveryKey": True,
                "FDE_HasInstitutionalRecoveryKey": False,
            }
        else:
            info = {
                "HardwareEncryptionCaps": 3,
                "PasscodePresent": self.passcode,
                "PasscodeCompliant": True,
                "PasscodeCompliantWithProfiles": True,
            }
        return "Acknowledged", {"SecurityInfo": info}

    # Lock, passcode, erase
    def do_DeviceLock(self, command: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        self.locked = True
        return "Acknowledged", {}

    def do_ClearPasscode(self, command: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        if self.unlock_token is None or command.get("UnlockToken") != self.unlock_token:
            return error("MCPasscodeErrorDomain", 5013, "Cannot clear passcode")
        self.passcode = False
        return "Acknowledged", {}

    def do_EraseDevice(self, command: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        self.erased = True
        return "Acknowledged", {}

    # Mirroring
    def do_RequestMirroring(self, command: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        found = command.get("DestinationDeviceID") or command.get("DestinationName") == "Room 1"
        return "Acknowledged", {"MirroringResult": "Prompting" if found else "DestinationNotFound"}

    def do_StopMirroring(self, command: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        if not self.supervised:
            return error("MCChaperoneErrorDomain", 29000, "Device not supervised")
        return "Acknowledged", {}

    # Restrictions
    def do_Restrictions(self, command: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        if self.mac:
            return "Acknowledged", {"GlobalRestrictions": {}}
        restrictions = {
            "restrictedBool": {"allowCamera": {"value": False}},
            "restrictedValue": {"maxGracePeriod": {"value": 5}},
        }
        answer: dict[str, Any] = {"GlobalRestrictions": restrictions}
        if command.get("ProfileRestrictions"):
            answer["ProfileRestrictions"] = {"com.example.restrictions": restrictions}
        return "Acknowledged", answer

    # Applications
    def do_InstalledApplicationList(self, command: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        wanted = command.get("Identifiers")
        apps = [
            app
            for identifier, app in self.installed.items()
            if (not wanted or identifier in wanted)
            and (not command.get("ManagedAppsOnly") or identifier in self.managed)
        ]
        return "Acknowledged", {"InstalledApplicationList": apps}

    def do_InstallApplication(self, command: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        identifier = command.get("Identifier") or (
            f"com.example.store{command['iTunesStoreID']}"
            if "iTunesStoreID" in command
            else "com.example.enterprise"
        )
        if identifier in self.installed or identifier in self.managed:
            return error(
                "MCMDMErrorDomain",
                12025,
                "App already installed",
                RejectionReason="AppAlreadyInstalled",
                Identifier=identifier,
            )
        state = "NeedsRedemption" if "iTunesStoreID" in command else "Managed"
        self.managed[identifier] = {
            "Status": state,
            "ManagementFlags": command.get("ManagementFlags", 0),
            "HasConfiguration": "Configuration" in command,
            "HasFeedback": False,
            "Configuration": command.get("Configuration"),
            "Attributes": command.get("Attributes"),
        }
        if state == "Managed":
            self.installed[identifier] = {
                "Identifier": identifier,
                "Name": identifier,
                "Version": "1",
            }
        return "Acknowledged", {"Identifier": identifier, "State": state}

    def do_ApplyRedemptionCode(self, command: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        app = self.managed.get(command["Identifier"])
        if app is None or app["Status"] != "NeedsRedemption":
            return error("MCMDMErrorDomain", 12028, "Not waiting for redemption")
        app["Status"] = "Managed"
        self.installed[command["Identifier"]] = {
            "Identifier": command["Identifier"],
            "Name": command["Identifier"],
            "Version": "1",
        }
        return "Acknowledged", {}

    def do_ManagedApplicationList(self, command: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        wanted = command.get("Identifiers")
        listed: dict[str, Any] = {}
        for identifier, app in list(self.managed.items()):
            if wanted and identifier not in wanted:
                continue
            entry = {
                key: app[key]
                for key in ("Status", "ManagementFlags", "HasConfiguration", "HasFeedback")
            }
            if app.get("UnusedRedemptionCode"):
                entry["UnusedRedemptionCode"] = app.pop("UnusedRedemptionCode")
            listed[identifier] = entry
            if app["Status"] in TRANSIENT:
                del self.managed[identifier]  # reported once
        return "Acknowledged", {"ManagedApplicationList": listed}

    def do_RemoveApplication(self, command: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        if self.managed.pop(command["Identifier"], None) is None:
            return error("MCMDMErrorDomain", 12029, "App not managed")
        self.installed.pop(command["Identifier"], None)
        return "Acknowledged", {}

    def do_InviteToProgram(self, command: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        return "Acknowledged", {"InvitationResult": "Acknowledged"}

    # Managed app configuration, attributes, feedback
    def _per_app(self, command: dict[str, Any], key: str) -> list[dict[str, Any]]:
        entries = []
        for identifier in command["Identifiers"]:
            app = self.managed.get(identifier)
            if app is None:
                continue  # "Queries about apps that are not managed are ignored."
            entry: dict[str, Any] = {"Identifier": identifier}
            if app.get(key) is not None:
                entry[key] = app[key]
            entries.append(entry)
        return entries

    def do_ManagedApplicationConfiguration(
        self, command: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        return "Acknowledged", {
            "ApplicationConfigurations": self._per_app(command, "Configuration")
        }

    def do_ManagedApplicationAttributes(
        self, command: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        return "Acknowledged", {"ApplicationAttributes": self._per_app(command, "Attributes")}

    def do_ManagedApplicationFeedback(self, command: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        entries = self._per_app(command, "Feedback")
        if command.get("DeleteFeedback"):
            for identifier in command["Identifiers"]:
                if identifier in self.managed:
                    self.managed[identifier]["Feedback"] = None
        return "Acknowledged", {"ManagedApplicationFeedback": entries}

    # Settings
    def do_Settings(self, command: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        results = []
        for item in command["Settings"]:
            name = item["Item"]
            result: dict[str, Any] = {"Status": "Acknowledged"}
            if self.mac and name not in ("DeviceName", "OrganizationInfo"):
                result = error("MCSettingsErrorDomain", 28000, "Unknown item")[1] | {
                    "Status": "Error"
                }
            elif name == "Wallpaper" and not self.supervised:
                result = error("MCChaperoneErrorDomain", 29000, "Device not supervised")[1] | {
                    "Status": "Error"
                }
            elif name in ("ApplicationConfiguration", "ApplicationAttributes"):
                app = self.managed.get(item["Identifier"])
                result["Identifier"] = item["Identifier"]
                if app is None:
                    result = error("MCMDMErrorDomain", 12029, "App not managed")[1] | {
                        "Status": "Error",
                        "Identifier": item["Identifier"],
                    }
                elif name == "ApplicationConfiguration":
                    app["Configuration"] = item.get("Configuration")
                else:
                    app["Attributes"] = item.get("Attributes")
            elif name in ("Language", "Locale") and self.platform != "tvos":
                result = error("MCMDMErrorDomain", 12041, "Unknown language code")[1] | {
                    "Status": "Error"
                }
            else:
                value = item.get("Enabled", item.get(name, item.get("Where")))
                self.settings[name] = value
            results.append(result)
        return "Acknowledged", {"Settings": results}
