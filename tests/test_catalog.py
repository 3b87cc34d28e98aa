"""The command catalog without sockets: builders, constraints, access rights, OS X support,
parsers (on answers from the device model and from real device captures), ErrorChain words."""

from __future__ import annotations

import base64
import dataclasses
import plistlib
from typing import Any, ClassVar

from twisted.trial.unittest import SynchronousTestCase

from mdmappliance.commands import rights
from mdmappliance.commands.base import BuildContext, Target
from mdmappliance.commands.catalog import CATALOG, FAMILY_SPECS, fit, prepare
from mdmappliance.commands.errors import CommandInvalid, ResultInvalid
from mdmappliance.commands.inventory import _parsed_command, sent_command
from mdmappliance.commands.queue import reply_plist
from mdmappliance.commands.settings import ITEMS
from mdmappliance.mdm.errorcodes import ERROR_CODES, describe_chain, describe_error, meaning
from mdmappliance.mdm.platforms import Platform, platform_of
from mdmappliance.mdm.schema import apple_schema
from mdmappliance.simulator.model import DeviceModel
from tests.support import testdata

UUID = "9F09D114-BCFD-42AD-A974-371AA7D6256E"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(24)
JPEG = b"\xff\xd8\xff\xe0" + bytes(24)
PROFILE = plistlib.dumps(
    {
        "PayloadType": "Configuration",
        "PayloadVersion": 1,
        "PayloadIdentifier": "com.example.wifi",
        "PayloadUUID": "9F09D114-BCFD-42AD-A974-371AA7D6256E",
        "PayloadDisplayName": "Wi-Fi",
        "PayloadContent": [],
    }
)

#: The request types of the spec's "Request Types" chapter, all of them.
SPEC_REQUEST_TYPES = {
    "ProfileList",
    "InstallProfile",
    "RemoveProfile",
    "ProvisioningProfileList",
    "InstallProvisioningProfile",
    "RemoveProvisioningProfile",
    "CertificateList",
    "InstalledApplicationList",
    "DeviceInformation",
    "SecurityInfo",
    "DeviceLock",
    "ClearPasscode",
    "EraseDevice",
    "RequestMirroring",
    "StopMirroring",
    "Restrictions",
    "InstallApplication",
    "ApplyRedemptionCode",
    "ManagedApplicationList",
    "RemoveApplication",
    "InviteToProgram",
    "Settings",
    "ManagedApplicationConfiguration",
    "ManagedApplicationAttributes",
    "ManagedApplicationFeedback",
}

#: One valid Settings item of each kind (the spec's items and DeviceName from Table 10).
SETTING_EXAMPLES: dict[str, dict[str, Any]] = {
    "VoiceRoaming": {"Item": "VoiceRoaming", "Enabled": False},
    "PersonalHotspot": {"Item": "PersonalHotspot", "Enabled": True},
    "Wallpaper": {"Item": "Wallpaper", "Image": PNG, "Where": 3},
    "DataRoaming": {"Item": "DataRoaming", "Enabled": False},
    "ApplicationAttributes": {
        "Item": "ApplicationAttributes",
        "Identifier": "com.example.app",
        "Attributes": {"VPNUUID": UUID},
    },
    "ApplicationConfiguration": {
        "Item": "ApplicationConfiguration",
        "Identifier": "com.example.app",
        "Configuration": {"server": "https://example.com"},
    },
    "Language": {"Item": "Language", "Language": "fr"},
    "Locale": {"Item": "Locale", "Locale": "fr_FR"},
    "OrganizationInfo": {
        "Item": "OrganizationInfo",
        "OrganizationInfo": {
            "OrganizationName": "Example Corp",
            "OrganizationAddress": "1 Example Way\nSpringfield",
            "OrganizationPhone": "+1 555 0100",
            "OrganizationEmail": "it@example.com",
            "OrganizationMagic": "EXAMPLE-1",
        },
    },
    "MDMOptions": {
        "Item": "MDMOptions",
        "MDMOptions": {"ActivationLockAllowedWhileSupervised": True},
    },
    "DeviceName": {"Item": "DeviceName", "DeviceName": "Front desk"},
}

#: One valid description of each request type, with every optional key the spec lists.
EXAMPLES: dict[str, dict[str, Any]] = {
    "ProfileList": {},
    "InstallProfile": {"Payload": PROFILE},
    "RemoveProfile": {"Identifier": "com.example.wifi"},
    "ProvisioningProfileList": {},
    "InstallProvisioningProfile": {
        "ProvisioningProfile": b"\x30\x82\x01\x00<key>UUID</key><string>" + UUID.encode()
    },
    "RemoveProvisioningProfile": {"UUID": UUID},
    "CertificateList": {},
    "InstalledApplicationList": {"Identifiers": ["com.example.notes"], "ManagedAppsOnly": False},
    "DeviceInformation": {"Queries": ["UDID", "SerialNumber", "WiFiMAC", "IsSupervised"]},
    "SecurityInfo": {},
    "DeviceLock": {"Message": "Call IT", "PhoneNumber": "+1 555 0100"},
    "ClearPasscode": {},
    "EraseDevice": {},
    "RequestMirroring": {
        "DestinationName": "Room 1",
        "ScanTime": 30,
        "Password": "1234",
    },
    "StopMirroring": {},
    "Restrictions": {"ProfileRestrictions": True},
    "InstallApplication": {
        "iTunesStoreID": 361285480,
        "Options": {"NotManaged": False, "PurchaseMethod": 1},
        "ManagementFlags": 5,
        "Configuration": {"server": "https://example.com"},
        "Attributes": {"VPNUUID": UUID},
    },
    "ApplyRedemptionCode": {"Identifier": "com.example.store361285480", "RedemptionCode": "ABCD"},
    "ManagedApplicationList": {"Identifiers": ["com.example.app"]},
    "RemoveApplication": {"Identifier": "com.example.app"},
    "InviteToProgram": {
        "ProgramID": "com.apple.cloudvpp",
        "InvitationURL": "https://buy.itunes.apple.com/invite/abc",
    },
    "Settings": {"Settings": list(SETTING_EXAMPLES.values())},
    "ManagedApplicationConfiguration": {"Identifiers": ["com.example.app"]},
    "ManagedApplicationAttributes": {"Identifiers": ["com.example.app"]},
    "ManagedApplicationFeedback": {"Identifiers": ["com.example.app"], "DeleteFeedback": True},
}

IPHONE = Target(
    1,
    "UDID-IPHONE-0001",
    access_rights=rights.ALL,
    platform=Platform.IOS,
    supervised=True,
    has_unlock_token=True,
)
#: A Mac of 2014 (OS X 10.9): Table 10 of the spec is true of it.
MAC = Target(
    2, "UDID-MAC-000001", access_rights=rights.ALL, platform=Platform.MACOS, os_version="10.9"
)


def described(request_type: str, **changes: Any) -> dict[str, Any]:
    description = {"RequestType": request_type, **EXAMPLES[request_type]}
    description.update(changes)
    return {k: v for k, v in description.items() if v is not None}


def problems_of(description: dict[str, Any], context: BuildContext | None = None) -> str:
    try:
        prepare(description, context)
    except CommandInvalid as e:
        return "; ".join(e.problems)
    raise AssertionError(f"{description} was accepted")


class Builders(SynchronousTestCase):
    def test_every_request_type_of_the_spec_is_known(self) -> None:
        self.assertLessEqual(SPEC_REQUEST_TYPES, set(CATALOG))
        self.assertEqual(set(FAMILY_SPECS), SPEC_REQUEST_TYPES)
        self.assertEqual(set(CATALOG), set(apple_schema().commands))
        self.assertEqual(set(EXAMPLES), SPEC_REQUEST_TYPES)
        self.assertEqual(set(ITEMS), set(SETTING_EXAMPLES))

    def test_every_example_builds_and_fits_a_supervised_iphone(self) -> None:
        for request_type in SPEC_REQUEST_TYPES:
            with self.subTest(request_type=request_type):
                prepared = prepare(described(request_type))
                fitted = fit(prepared, IPHONE)
                self.assertIsNone(fitted.refusal)
                assert fitted.command is not None
                self.assertEqual(fitted.command["RequestType"], request_type)
                for key in EXAMPLES[request_type]:
                    self.assertIn(key, fitted.command)
                plistlib.dumps(fitted.command)  # it is a property list

    def test_each_settings_item_builds_alone(self) -> None:
        for name, item in SETTING_EXAMPLES.items():
            with self.subTest(item=name):
                prepared = prepare({"RequestType": "Settings", "Settings": [item]})
                (built,) = prepared.command["Settings"]
                self.assertEqual(built["Item"], name)

    def test_data_given_as_base64_text_becomes_data(self) -> None:
        prepared = prepare(
            {"RequestType": "InstallProfile", "Payload": base64.b64encode(PROFILE).decode()}
        )
        self.assertEqual(prepared.command["Payload"], PROFILE)

    def test_device_information_without_queries_asks_every_known_query(self) -> None:
        prepared = prepare({"RequestType": "DeviceInformation"})
        self.assertIn("SerialNumber", prepared.command["Queries"])
        self.assertIn("WiFiMAC", prepared.command["Queries"])

    def test_unknown_query_is_sent_with_a_warning(self) -> None:
        prepared = prepare({"RequestType": "DeviceInformation", "Queries": ["UDID", "NewQuery"]})
        self.assertEqual(prepared.command["Queries"], ["UDID", "NewQuery"])
        self.assertIn("NewQuery", prepared.warnings[0])

    def test_locale_is_sent_under_both_names(self) -> None:
        prepared = prepare({"RequestType": "Settings", "Settings": [SETTING_EXAMPLES["Locale"]]})
        self.assertEqual(
            prepared.command["Settings"][0],
            {"Item": "Locale", "Locale": "fr_FR", "Language": "fr_FR"},
        )

    def test_scan_time_as_text_is_sent_as_an_integer(self) -> None:
        prepared = prepare(described("RequestMirroring", ScanTime="45"))
        self.assertEqual(prepared.command["ScanTime"], 45)

    def test_profile_is_signed_when_the_admin_asks(self) -> None:
        context = BuildContext(sign_profile=lambda data: b"\x30signed:" + data)
        prepared = prepare(described("InstallProfile"), context)
        self.assertEqual(prepared.command["Payload"], b"\x30signed:" + PROFILE)

    def test_unchecked_command_passes_with_a_warning(self) -> None:
        prepared = prepare({"RequestType": "RestartDevice"}, unchecked=True)
        self.assertIsNone(prepared.spec)
        self.assertIn("unchecked", prepared.warnings[0])
        self.assertIsNone(fit(prepared, IPHONE).refusal)


class Constraints(SynchronousTestCase):
    """Each rule of the spec broken once; the message names the key."""

    CASES: ClassVar[list[tuple[dict[str, Any], str]]] = [
        ({"RequestType": "Reboot"}, "RequestType 'Reboot' is not a request type"),
        ({}, "RequestType is required"),
        (described("ProfileList", Extra=1), "Extra is not a key of this command"),
        (described("InstallProfile", Payload=None), "Payload is required"),
        (described("InstallProfile", Payload=b"not a profile"), "Payload is not a well-formed"),
        (
            described("InstallProfile", Payload=plistlib.dumps({"PayloadType": "Configuration"})),
            "Payload is not a well-formed configuration profile: PayloadIdentifier",
        ),
        (described("InstallProfile", Payload="***"), "Payload must be data"),
        (described("RemoveProfile", Identifier=7), "Identifier must be a string"),
        (described("RemoveProvisioningProfile", UUID="nope"), "UUID must be a UUID"),
        (
            described("InstallProvisioningProfile", ProvisioningProfile=b"plain"),
            "ProvisioningProfile must be a signed provisioning profile",
        ),
        (described("InstalledApplicationList", Identifiers="x"), "Identifiers must be an array"),
        (
            described("InstalledApplicationList", ManagedAppsOnly="yes"),
            "ManagedAppsOnly must be a boolean",
        ),
        (described("DeviceInformation", Queries=[]), "Queries is empty"),
        (described("DeviceInformation", Queries=[1]), "Queries must hold non-empty strings"),
        (described("DeviceLock", PIN="12345"), "PIN must be 4 or 6 characters"),
        (described("EraseDevice", PIN="123"), "PIN must be 4 or 6 characters"),
        (described("ClearPasscode", UnlockToken=b"x"), "UnlockToken is filled in by the appliance"),
        (
            described("RequestMirroring", DestinationName=None),
            "DestinationName or DestinationDeviceID is required",
        ),
        (described("RequestMirroring", ScanTime=9), "ScanTime must be between 10 and 300"),
        (described("RequestMirroring", ScanTime=301), "ScanTime must be between 10 and 300"),
        (
            described("RequestMirroring", DestinationName=None, DestinationDeviceID="zz"),
            "DestinationDeviceID must be a hardware address",
        ),
        (described("Restrictions", ProfileRestrictions=1), "ProfileRestrictions must be a boolean"),
        (
            described("InstallApplication", Identifier="com.example.app"),
            "exactly one is required, 2 given (Identifier, iTunesStoreID)",
        ),
        (
            described("InstallApplication", iTunesStoreID=None),
            "exactly one is required, 0 given",
        ),
        (
            described("InstallApplication", iTunesStoreID=None, ManifestURL="http://x/m.plist"),
            "ManifestURL must be an https:// URL",
        ),
        (
            described("InstallApplication", ManagementFlags=2),
            "ManagementFlags may only use bits 1 and 4",
        ),
        (
            described("InstallApplication", Options={"PurchaseMethod": 2}),
            "Options.PurchaseMethod must be one of 0, 1",
        ),
        (described("InstallApplication", Options={"Other": 1}), "Options.Other is not a key"),
        (
            described("InstallApplication", Attributes={"VPNUUID": 1}),
            "Attributes.VPNUUID must be a string",
        ),
        (described("ApplyRedemptionCode", RedemptionCode=None), "RedemptionCode is required"),
        (described("ManagedApplicationList", Identifiers=[""]), "Identifiers must hold non-empty"),
        (described("RemoveApplication", Identifier=""), "Identifier is empty"),
        (
            described("InviteToProgram", ProgramID="com.example"),
            "ProgramID must be one of com.apple.cloudvpp",
        ),
        (
            described("InviteToProgram", InvitationURL="ftp://x"),
            "InvitationURL must be an https:// URL",
        ),
        (described("ManagedApplicationConfiguration", Identifiers=[]), "Identifiers is empty"),
        (described("ManagedApplicationAttributes", Identifiers=None), "Identifiers is required"),
        (
            described("ManagedApplicationFeedback", DeleteFeedback="y"),
            "DeleteFeedback must be a boolean",
        ),
        ({"RequestType": "Settings", "Settings": []}, "Settings must be a non-empty array"),
        (
            {"RequestType": "Settings", "Settings": [{"Item": "Flashlight"}]},
            "Settings[0].Item must be one of",
        ),
        (
            {"RequestType": "Settings", "Settings": [{"Item": "Bluetooth"}]},
            "Settings[0].Enabled is required",
        ),
        ({"RequestType": "Settings", "Settings": ["x"]}, "Settings[0] must be a dictionary"),
        (
            {"RequestType": "Settings", "Settings": [{"Item": "VoiceRoaming"}]},
            "Settings[0].Enabled is required",
        ),
        (
            {"RequestType": "Settings", "Settings": [{"Item": "DataRoaming", "Enabled": 1}]},
            "Settings[0].Enabled must be a boolean",
        ),
        (
            {
                "RequestType": "Settings",
                "Settings": [{"Item": "PersonalHotspot", "Enabled": True, "X": 1}],
            },
            "Settings[0].X is not a key",
        ),
        (
            {
                "RequestType": "Settings",
                "Settings": [{"Item": "Wallpaper", "Image": b"GIF89a", "Where": 1}],
            },
            "Settings[0].Image must be a PNG or JPEG image",
        ),
        (
            {
                "RequestType": "Settings",
                "Settings": [{"Item": "Wallpaper", "Image": PNG, "Where": 4}],
            },
            "Settings[0].Where must be one of 1, 2, 3",
        ),
        (
            {"RequestType": "Settings", "Settings": [{"Item": "ApplicationAttributes"}]},
            "Settings[0].Identifier is required",
        ),
        (
            {
                "RequestType": "Settings",
                "Settings": [
                    {"Item": "ApplicationConfiguration", "Identifier": "a", "Configuration": []}
                ],
            },
            "Settings[0].Configuration must be a dictionary",
        ),
        (
            {"RequestType": "Settings", "Settings": [{"Item": "Language"}]},
            "Settings[0].Language is required",
        ),
        (
            {"RequestType": "Settings", "Settings": [{"Item": "Locale"}]},
            "Settings[0].Locale is required",
        ),
        (
            {
                "RequestType": "Settings",
                "Settings": [{"Item": "OrganizationInfo", "OrganizationInfo": {}}],
            },
            "Settings[0].OrganizationInfo.OrganizationName is required",
        ),
        (
            {
                "RequestType": "Settings",
                "Settings": [
                    {
                        "Item": "MDMOptions",
                        "MDMOptions": {"ActivationLockAllowedWhileSupervised": 1},
                    }
                ],
            },
            "Settings[0].MDMOptions.ActivationLockAllowedWhileSupervised must be a boolean",
        ),
        (
            {"RequestType": "Settings", "Settings": [{"Item": "DeviceName", "DeviceName": ""}]},
            "Settings[0].DeviceName is empty",
        ),
    ]

    def test_each_rule_broken_once(self) -> None:
        for description, expected in self.CASES:
            with self.subTest(description=str(description)[:80]):
                self.assertIn(expected, problems_of(description))

    def test_all_problems_are_reported_at_once(self) -> None:
        message = problems_of(described("RequestMirroring", ScanTime=5, Password=3, Other=1))
        for key in ("ScanTime", "Password", "Other"):
            self.assertIn(key, message)

    def test_jpeg_wallpaper_is_accepted(self) -> None:
        prepare(
            {
                "RequestType": "Settings",
                "Settings": [{"Item": "Wallpaper", "Image": JPEG, "Where": 1}],
            }
        )

    def test_signed_profile_that_does_not_verify_is_refused(self) -> None:
        # A real device-signed CMS whose content is MachineInfo, not a profile.
        signed = testdata("zentral/tests/mdm/testdata/ota_playload_phase_2").read_bytes()
        self.assertIn("Payload", problems_of(described("InstallProfile", Payload=signed)))


class AccessRights(SynchronousTestCase):
    """Each right missing once: the command needing it is refused with the right's name."""

    NEEDS: ClassVar[list[tuple[str, dict[str, Any], int]]] = [
        ("ProfileList", {}, rights.INSPECT_PROFILES),
        ("CertificateList", {}, rights.INSPECT_PROFILES),
        ("InstallProfile", {}, rights.INSTALL_PROFILES),
        ("RemoveProfile", {}, rights.INSTALL_PROFILES),
        ("DeviceLock", {}, rights.LOCK_AND_PASSCODE),
        ("ClearPasscode", {}, rights.LOCK_AND_PASSCODE),
        ("EraseDevice", {}, rights.ERASE),
        ("DeviceInformation", {"Queries": ["SerialNumber"]}, rights.DEVICE_INFORMATION),
        ("DeviceInformation", {"Queries": ["WiFiMAC"]}, rights.NETWORK_INFORMATION),
        ("ProvisioningProfileList", {}, rights.INSPECT_PROVISIONING),
        ("InstallProvisioningProfile", {}, rights.INSTALL_PROVISIONING),
        ("RemoveProvisioningProfile", {}, rights.INSTALL_PROVISIONING),
        ("InstalledApplicationList", {}, rights.INSPECT_APPS),
        ("Restrictions", {"ProfileRestrictions": False}, rights.RESTRICTIONS),
        ("Restrictions", {"ProfileRestrictions": True}, rights.INSPECT_PROFILES),
        ("SecurityInfo", {}, rights.SECURITY),
        ("Settings", {"Settings": [SETTING_EXAMPLES["VoiceRoaming"]]}, rights.SETTINGS),
        (
            "Settings",
            {"Settings": [SETTING_EXAMPLES["PersonalHotspot"]]},
            rights.NETWORK_INFORMATION,
        ),
        (
            "Settings",
            {"Settings": [SETTING_EXAMPLES["ApplicationConfiguration"]]},
            rights.APP_MANAGEMENT,
        ),
        ("InstallApplication", {}, rights.APP_MANAGEMENT),
        ("ManagedApplicationList", {}, rights.APP_MANAGEMENT),
        ("ManagedApplicationFeedback", {}, rights.APP_MANAGEMENT),
    ]

    def test_each_right_missing_once(self) -> None:
        seen = set()
        for request_type, changes, bit in self.NEEDS:
            seen.add(bit)
            with self.subTest(request_type=request_type, right=bit):
                target = Target(1, "UDID-IPHONE-0001", access_rights=rights.ALL & ~bit)
                fitted = fit(prepare(described(request_type, **changes)), target)
                self.assertIsNone(fitted.command)
                assert fitted.refusal is not None
                self.assertIn(rights.NAMES[bit], fitted.refusal)
        self.assertEqual(seen, set(rights.NAMES), "every right of the table is covered")

    def test_device_information_drops_queries_the_rights_do_not_allow(self) -> None:
        target = Target(
            1, "UDID-IPHONE-0001", access_rights=rights.ALL & ~rights.NETWORK_INFORMATION
        )
        fitted = fit(prepare(described("DeviceInformation")), target)
        assert fitted.command is not None
        self.assertEqual(fitted.command["Queries"], ["UDID", "SerialNumber", "IsSupervised"])
        self.assertIn("'Network Information' (32)", fitted.warnings[0])
        self.assertIn("WiFiMAC", fitted.warnings[0])

    def test_removing_the_own_mdm_profile_needs_no_right(self) -> None:
        context = BuildContext(own_profile_identifier="mdmappliance.example.enrollment")
        target = Target(1, "UDID-IPHONE-0001", access_rights=rights.INSPECT_PROFILES)
        own = prepare(
            {"RequestType": "RemoveProfile", "Identifier": "mdmappliance.example.enrollment"},
            context,
        )
        self.assertIsNotNone(fit(own, target).command)
        other = prepare(described("RemoveProfile"), context)
        self.assertIsNone(fit(other, target).command)

    def test_unknown_rights_warn_and_queue(self) -> None:
        target = Target(1, "UDID-IPHONE-0001", access_rights=None)
        fitted = fit(prepare(described("EraseDevice")), target)
        self.assertIsNotNone(fitted.command)
        self.assertIn("not known", fitted.warnings[0])

    def test_os_x_ignores_flags_above_1024(self) -> None:
        target = Target(
            1, "UDID-MAC-000001", user_id="U1", access_rights=1024 | 1, platform=Platform.MACOS
        )
        mac = described("InstallApplication", Options={"NotManaged": True}, Attributes=None)
        fitted = fit(prepare(mac), target)
        self.assertIsNone(fitted.refusal)
        later = dataclasses.replace(target, os_version="15.1")
        self.assertIsNone(fit(prepare(mac), later).refusal)


class Platforms(SynchronousTestCase):
    def test_os_x_refuses_what_table_10_does_not_list(self) -> None:
        for request_type in (
            "InstallProvisioningProfile",
            "ClearPasscode",
            "RequestMirroring",
            "RemoveApplication",
        ):
            with self.subTest(request_type=request_type):
                fitted = fit(prepare(described(request_type)), MAC)
                self.assertIn(f"OS X 10.9 does not support {request_type}", fitted.refusal or "")

    def test_os_x_partial_answers_warn(self) -> None:
        fitted = fit(prepare(described("DeviceInformation", Queries=["SerialNumber", "IMEI"])), MAC)
        self.assertIn("OS X answers only some queries", fitted.warnings[0])
        self.assertIn("OS X does not answer: IMEI", fitted.warnings[1])
        for request_type in ("ProvisioningProfileList", "Restrictions", "SecurityInfo"):
            with self.subTest(request_type=request_type):
                self.assertTrue(fit(prepare(described(request_type)), MAC).warnings)

    def test_os_x_channels(self) -> None:
        user = Target(
            3,
            "UDID-MAC-000001",
            user_id="U1",
            access_rights=rights.ALL,
            platform=Platform.MACOS,
            os_version="10.9",
        )
        self.assertIn(
            "device channel",
            fit(prepare(described("DeviceLock", PIN="123456")), user).refusal or "",
        )
        self.assertIn(
            "user channel", fit(prepare(described("InstallApplication")), MAC).refusal or ""
        )

    def test_os_x_needs_the_find_my_mac_pin_and_not_managed_apps(self) -> None:
        self.assertIn("PIN", fit(prepare(described("EraseDevice")), MAC).refusal or "")
        self.assertIsNone(fit(prepare(described("EraseDevice", PIN="123456")), MAC).refusal)
        user = Target(
            3,
            "UDID-MAC-000001",
            user_id="U1",
            access_rights=rights.ALL,
            platform=Platform.MACOS,
            os_version="10.9",
        )
        self.assertIn(
            "NotManaged", fit(prepare(described("InstallApplication")), user).refusal or ""
        )

    def test_ios_ignores_a_pin(self) -> None:
        fitted = fit(prepare(described("DeviceLock", PIN="1234")), IPHONE)
        assert fitted.command is not None
        self.assertNotIn("PIN", fitted.command)
        self.assertIn(
            "PIN is not supported on iOS (Apple's schema): it is left out",
            " ".join(fitted.warnings),
        )

    def test_os_x_settings_are_device_name_and_organization_info_only(self) -> None:
        ok = {
            "RequestType": "Settings",
            "Settings": [SETTING_EXAMPLES["DeviceName"], SETTING_EXAMPLES["OrganizationInfo"]],
        }
        self.assertIsNone(fit(prepare(ok), MAC).refusal)
        refused = fit(prepare(described("Settings")), MAC).refusal or ""
        self.assertIn("VoiceRoaming", refused)

    def test_supervised_only_items_warn_on_unsupervised_devices(self) -> None:
        unsupervised = Target(
            1, "UDID-IPHONE-0001", access_rights=rights.ALL, platform=Platform.IOS, supervised=False
        )
        for description, name in (
            (described("StopMirroring"), "StopMirroring"),
            ({"RequestType": "Settings", "Settings": [SETTING_EXAMPLES["Wallpaper"]]}, "Wallpaper"),
            ({"RequestType": "Settings", "Settings": [SETTING_EXAMPLES["Language"]]}, "Language"),
            ({"RequestType": "Settings", "Settings": [SETTING_EXAMPLES["Locale"]]}, "Locale"),
        ):
            with self.subTest(item=name):
                warnings = fit(prepare(description), unsupervised).warnings
                self.assertIn(f"{name} works on supervised devices only", " ".join(warnings))
                self.assertFalse(
                    [w for w in fit(prepare(description), IPHONE).warnings if "supervised" in w]
                )

    def test_clear_passcode_needs_an_escrowed_token(self) -> None:
        without = Target(1, "UDID-IPHONE-0001", access_rights=rights.ALL, has_unlock_token=False)
        self.assertIn(
            "no UnlockToken", fit(prepare(described("ClearPasscode")), without).refusal or ""
        )

    def test_platform_from_product_name(self) -> None:
        self.assertEqual(platform_of("iPhone7,2"), Platform.IOS)
        self.assertEqual(platform_of("iPad4,1"), Platform.IOS)
        self.assertEqual(platform_of("AppleTV5,3"), Platform.TVOS)
        self.assertEqual(platform_of("MacPro6,1"), Platform.MACOS)
        self.assertEqual(platform_of("iMac17,1"), Platform.MACOS)
        self.assertIsNone(platform_of(None, None))
        self.assertIsNone(platform_of("Watch6,1"), "watchOS is not iOS in Apple's schema")
        self.assertIsNone(platform_of("RealityDevice14,1"))

    def test_checked_out_enrollment_refuses(self) -> None:
        target = Target(1, "UDID-IPHONE-0001", state="checked_out")
        self.assertEqual(
            fit(prepare(described("ProfileList")), target).refusal, "the enrollment is checked out"
        )


def parse(request_type: str, answer: dict[str, Any], command: dict[str, Any] | None = None) -> Any:
    spec = CATALOG[request_type]
    assert spec.parse is not None
    built = command if command is not None else prepare(described(request_type)).command
    return spec.parse(answer, built)


class Parsers(SynchronousTestCase):
    def model_answer(
        self, request_type: str, model: DeviceModel | None = None, **changes: Any
    ) -> Any:
        model = model or DeviceModel(udid="UDID-IPHONE-0001")
        command = prepare(described(request_type, **changes)).command
        status, answer = model.answer({"CommandUUID": UUID, "Command": command})
        parser = CATALOG[request_type].parse
        assert parser is not None
        return status, parser(answer, command)

    def test_every_parser_reads_the_model_device(self) -> None:
        model = DeviceModel(udid="UDID-IPHONE-0001")
        model.answer(
            {
                "Command": prepare(
                    described(
                        "InstallApplication", iTunesStoreID=None, Identifier="com.example.app"
                    )
                ).command
            }
        )
        for request_type, spec in CATALOG.items():
            if spec.parse is None:
                continue
            with self.subTest(request_type=request_type):
                status, outcome = self.model_answer(request_type, model)
                self.assertIn(status, ("Acknowledged", "Error"))
                self.assertTrue(outcome.summary or outcome.inventory)

    def test_device_information_facts(self) -> None:
        _, outcome = self.model_answer("DeviceInformation", Queries=None)
        self.assertEqual(outcome.facts["ProductName"], "iPhone6,1")
        self.assertEqual(outcome.facts["IsSupervised"], True)
        self.assertEqual(outcome.facts["SubscriberMCC"], "310")

    def test_wrongly_typed_answers_are_ignored_not_stored(self) -> None:
        outcome = parse("DeviceInformation", {"QueryResponses": {"SerialNumber": 7, "UDID": "U"}})
        self.assertEqual(outcome.facts, {"UDID": "U"})
        self.assertIn("SerialNumber (not a string)", outcome.summary["ignored"])

    def test_security_info_data_protection(self) -> None:
        protected = parse(
            "SecurityInfo", {"SecurityInfo": {"HardwareEncryptionCaps": 3, "PasscodePresent": True}}
        )
        self.assertTrue(protected.facts["DataProtection"])
        block_only = parse(
            "SecurityInfo", {"SecurityInfo": {"HardwareEncryptionCaps": 1, "PasscodePresent": True}}
        )
        self.assertFalse(block_only.facts["DataProtection"])
        no_passcode = parse(
            "SecurityInfo",
            {"SecurityInfo": {"HardwareEncryptionCaps": 3, "PasscodePresent": False}},
        )
        self.assertFalse(no_passcode.facts["DataProtection"])
        mac = parse(
            "SecurityInfo",
            {"SecurityInfo": {"FDE_Enabled": True, "FDE_HasPersonalRecoveryKey": False}},
        )
        self.assertEqual(mac.facts, {"FileVault": True})

    def test_certificate_list_reads_each_certificate(self) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives.serialization import Encoding

        pems = sorted(testdata("micromdm/pkg/crypto/testdata").glob("*.pem"))
        cert = x509.load_pem_x509_certificate(pems[0].read_bytes())
        outcome = parse(
            "CertificateList",
            {
                "CertificateList": [
                    {
                        "CommonName": "Device",
                        "IsIdentity": True,
                        "Data": cert.public_bytes(Encoding.DER),
                    }
                ]
            },
        )
        (entry,) = outcome.inventory[0].data
        self.assertTrue(entry["is_identity"])
        self.assertEqual(entry["issuer"], cert.issuer.rfc4514_string())
        self.assertIn("not_after", entry)

    def test_managed_app_transient_statuses_and_unused_codes_become_events(self) -> None:
        outcome = parse(
            "ManagedApplicationList",
            {
                "ManagedApplicationList": {
                    "com.example.a": {"Status": "UserRejected", "ManagementFlags": 1},
                    "com.example.b": {"Status": "Managed", "UnusedRedemptionCode": "CODE1"},
                }
            },
            {"RequestType": "ManagedApplicationList"},
        )
        kinds = [kind for kind, _ in outcome.events]
        self.assertEqual(kinds, ["app.transient_status", "app.unused_redemption_code"])
        self.assertEqual(outcome.events[1][1]["code"], "CODE1")

    def test_install_application_state_and_rejection(self) -> None:
        state = parse(
            "InstallApplication", {"Identifier": "com.example.a", "State": "NeedsRedemption"}
        )
        self.assertEqual(state.summary["State"], "NeedsRedemption")
        rejected = parse("InstallApplication", {"RejectionReason": "AppAlreadyInstalled"})
        self.assertEqual(rejected.summary["RejectionReason"], "AppAlreadyInstalled")

    def test_settings_results_pair_with_items(self) -> None:
        command = {
            "RequestType": "Settings",
            "Settings": [SETTING_EXAMPLES["Wallpaper"], SETTING_EXAMPLES["DataRoaming"]],
        }
        _, answer = DeviceModel(udid="U" * 8, supervised=False).answer({"Command": command})
        outcome = parse("Settings", answer, command)
        wallpaper, roaming = outcome.summary["Settings"]
        self.assertEqual((wallpaper["Item"], wallpaper["Status"]), ("Wallpaper", "Error"))
        self.assertEqual(
            wallpaper["Errors"], ["MCChaperoneErrorDomain 29000: Device not supervised"]
        )
        self.assertEqual((roaming["Item"], roaming["Status"]), ("DataRoaming", "Acknowledged"))
        with self.assertRaises(ResultInvalid):
            parse("Settings", {"Settings": answer["Settings"][:1]}, command)

    def test_malformed_answers_are_named(self) -> None:
        for request_type, answer, words in (
            ("ProfileList", {"ProfileList": "x"}, "ProfileList must be an array"),
            ("ProfileList", {}, "ProfileList must be an array"),
            ("DeviceInformation", {"QueryResponses": []}, "QueryResponses must be a dictionary"),
            (
                "SecurityInfo",
                {"SecurityInfo": {"PasscodePresent": 1}},
                "PasscodePresent must be a boolean",
            ),
            ("ManagedApplicationList", {"ManagedApplicationList": {"a": {}}}, "needs a Status"),
            ("RequestMirroring", {"MirroringResult": "Maybe"}, "MirroringResult must be one of"),
            ("InviteToProgram", {}, "InvitationResult must be one of"),
            ("CertificateList", {"CertificateList": [{"CommonName": "x"}]}, "needs Data"),
            ("Restrictions", {"GlobalRestrictions": {"restrictedBool": []}}, "restrictedBool"),
        ):
            with self.subTest(request_type=request_type, answer=answer):
                with self.assertRaises(ResultInvalid) as caught:
                    parse(request_type, answer)
                self.assertIn(words, str(caught.exception))


class Captures(SynchronousTestCase):
    """Real device answers collected by other projects (shared/testdata)."""

    def load(self, path: str) -> dict[str, Any]:
        value = plistlib.loads(testdata(path).read_bytes())
        assert isinstance(value, dict)
        return value

    def test_device_information_captures(self) -> None:
        for path, platform in (
            ("commandment/testdata/DeviceInformation/iOS-11.3.1.xml", Platform.IOS),
            ("commandment/testdata/DeviceInformation/macOS-10.13.1.xml", Platform.MACOS),
            ("commandment/testdata/DeviceInformation/10.11.x.xml", Platform.MACOS),
        ):
            with self.subTest(path=path):
                outcome = parse("DeviceInformation", self.load(path))
                self.assertEqual(
                    platform_of(outcome.facts.get("ProductName"), outcome.facts.get("ModelName")),
                    platform,
                )
                self.assertIn("SerialNumber", outcome.facts)

    def test_list_captures(self) -> None:
        for request_type, path in (
            ("SecurityInfo", "commandment/testdata/SecurityInfo/iOS-11.3.1.xml"),
            ("SecurityInfo", "commandment/testdata/SecurityInfo/macOS-10.13.1.xml"),
            ("ProfileList", "commandment/testdata/ProfileList/iOS-11.3.1.xml"),
            ("ProfileList", "commandment/testdata/ProfileList/10.11.x.xml"),
            ("CertificateList", "commandment/testdata/CertificateList/10.11.x.xml"),
            (
                "InstalledApplicationList",
                "commandment/testdata/InstalledApplicationList/iOS-12.1.xml",
            ),
            (
                "InstalledApplicationList",
                "commandment/testdata/InstalledApplicationList/10.11.x.xml",
            ),
            (
                "ManagedApplicationList",
                "commandment/testdata/ManagedApplicationList/iOS-12.1-Managed.xml",
            ),
            (
                "ManagedApplicationList",
                "commandment/testdata/ManagedApplicationList/iOS-12.1-Failed.xml",
            ),
            (
                "InstallApplication",
                "commandment/testdata/InstallApplication/iOS-12.1-prompting.xml",
            ),
        ):
            with self.subTest(path=path):
                outcome = parse(request_type, self.load(path), {"RequestType": request_type})
                self.assertTrue(outcome.summary)

    def test_error_captures_read_in_plain_words(self) -> None:
        answer = self.load("commandment/testdata/Errors/10.13.6-invalid-command.xml")
        self.assertEqual(
            describe_chain(answer["ErrorChain"])[0], "MCMDMErrorDomain 12021: Invalid request type"
        )
        unmanaged = self.load("commandment/testdata/Errors/iOS-11.3.1-RemoveProfile-Unmanaged.xml")
        self.assertIn(
            "MCMDMErrorDomain 12013: Profile not managed", describe_chain(unmanaged["ErrorChain"])
        )


class ErrorWords(SynchronousTestCase):
    def test_known_code(self) -> None:
        self.assertEqual(
            describe_error({"ErrorDomain": "MCMDMErrorDomain", "ErrorCode": 12021}),
            "MCMDMErrorDomain 12021: Invalid request type",
        )

    def test_codes_listed_twice_show_both_meanings(self) -> None:
        self.assertEqual(
            meaning("MCAPNErrorDomain", 11000), "Cannot install APN / Custom APN already installed"
        )
        self.assertEqual(
            meaning("MCInstallationErrorDomain", 4004),
            "User cancelled installation / Profile not found",
        )
        self.assertEqual(
            meaning("MCCellularErrorDomain", 36000),
            "Cellular already configured / (internal error)",
        )

    def test_unknown_domain_or_code_keeps_raw_values(self) -> None:
        self.assertEqual(
            describe_error(
                {
                    "ErrorDomain": "MDMClientError",
                    "ErrorCode": 97,
                    "USEnglishDescription": "Missing key",
                }
            ),
            "MDMClientError 97: Missing key",
        )
        self.assertEqual(
            describe_error({"ErrorDomain": "MCMDMErrorDomain", "ErrorCode": 99999}),
            "MCMDMErrorDomain 99999: (not in the spec's tables)",
        )
        self.assertEqual(describe_error({}), "(no domain) (no code): (not in the spec's tables)")

    def test_every_domain_of_the_chapter(self) -> None:
        self.assertEqual(len(ERROR_CODES), 34)
        self.assertEqual(meaning("MCKeychainErrorDomain", 6001), "Empty string")
        self.assertEqual(meaning("MCChaperoneErrorDomain", 29003), "Bad certificate data")
        self.assertEqual(meaning("MCFontErrorDomain", 35002), "Multiple fonts in a single payload")


class SentCommands(SynchronousTestCase):
    def test_a_body_sent_to_many_devices_is_parsed_once(self) -> None:
        """An answer is read against the command it answers; the replies of one batch body
        differ only in their CommandUUID, so the body is parsed once for all of them."""
        command = {"RequestType": "DeviceInformation", "Queries": ["SerialNumber", "IMEI"]}
        uuids = [f"0000-{n:04d}-CACHE-TEST" for n in range(3)]
        before = _parsed_command.cache_info()
        read = [sent_command(reply_plist(uuid, command), uuid) for uuid in uuids]
        after = _parsed_command.cache_info()
        self.assertEqual(read, [command] * 3)
        self.assertEqual((after.misses - before.misses, after.hits - before.hits), (1, 2))
        other = {"RequestType": "ProfileList"}
        self.assertEqual(sent_command(reply_plist(uuids[0], other), uuids[0]), other)
