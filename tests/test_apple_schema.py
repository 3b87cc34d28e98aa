"""Apple's device-management schema as the catalog's floor: the data shipped is Apple's and
current, every request type Apple defines can be sent (its required keys made from the
schema's types), each is accepted where Apple says it runs and refused, with the version
named, where it does not; keys are checked at every level."""

from __future__ import annotations

import dataclasses
import filecmp
import plistlib
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase, TestCase

from mdmappliance.app.reactor import global_reactor
from mdmappliance.commands import rights
from mdmappliance.commands.base import MacSupport, Target
from mdmappliance.commands.catalog import CATALOG, FAMILY_SPECS, SCHEMAS, fit, prepare
from mdmappliance.commands.errors import CommandInvalid
from mdmappliance.commands.information import (
    DEFAULT_QUERIES,
    QUERY_RIGHTS,
    parse_device_information,
)
from mdmappliance.commands.send import send_command
from mdmappliance.mdm import schema_build
from mdmappliance.mdm.platforms import Platform
from mdmappliance.mdm.schema import apple_schema, parse_version, show_version
from mdmappliance.simulator.model import example_value
from mdmappliance.store import Store, Tx
from tests.support import testdata
from tests.test_catalog import PROFILE, UUID

SHIPPED = Path(schema_build.__file__).parent / "apple"
PLATFORMS = {"iOS": Platform.IOS, "macOS": Platform.MACOS, "tvOS": Platform.TVOS}

#: Keys whose values the spec's rules (not only their types) constrain: a generated
#: value of the right type would be refused for a reason that is not the schema's.
RULE_VALUES: dict[tuple[str, str], Any] = {
    ("InstallProfile", "Payload"): PROFILE,
    ("InstallProvisioningProfile", "ProvisioningProfile"): b"\x30\x82\x01\x00" + bytes(256),
    ("RemoveProvisioningProfile", "UUID"): UUID,
    ("InviteToProgram", "InvitationURL"): "https://vpp.itunes.apple.com/invite/abc",
    ("ApplyRedemptionCode", "Identifier"): "com.example.app",
    ("Settings", "Settings"): [{"Item": "DataRoaming", "Enabled": False}],
}
#: Keys the spec requires one of, where the schema marks each optional.
ONE_OF: dict[str, dict[str, Any]] = {
    "RequestMirroring": {"DestinationName": "Room 1"},
    "InstallApplication": {"iTunesStoreID": 361285480},
}
#: The spec's rule that OS X needs the Find My Mac PIN to lock or erase.
PER_OS: dict[tuple[str, str], dict[str, Any]] = {
    ("DeviceLock", "macOS"): {"PIN": "123456"},
    ("EraseDevice", "macOS"): {"PIN": "123456"},
    ("InstallApplication", "macOS"): {"Options": {"NotManaged": True}},
    **{
        ("Settings", os): {
            "Settings": [
                {"Item": "OrganizationInfo", "OrganizationInfo": {"OrganizationName": "Example"}}
            ]
        }
        for os in ("macOS", "tvOS")
    },
}


def generated(request_type: str) -> dict[str, Any]:
    """The request type with each required key, a value made from the schema's type."""
    description: dict[str, Any] = {"RequestType": request_type}
    for key in SCHEMAS[request_type].keys:
        if key.required and key.name not in CATALOG[request_type].filled_here:
            description[key.name] = RULE_VALUES.get((request_type, key.name), example_value(key))
    return {**description, **ONE_OF.get(request_type, {})}


def older(version: tuple[int, ...]) -> str:
    """A version just before ``version`` (macOS 11 came after 10.15)."""
    *head, last = version if len(version) > 1 else (*version, 0)
    if last > 0:
        return show_version((*head, last - 1))
    return show_version((10, 15) if head[0] == 11 else (head[0] - 1, 9))


def target_for(os: str, version: str | None, **changes: Any) -> Target:
    return dataclasses.replace(
        Target(
            1,
            "UDID-TARGET-0001",
            access_rights=rights.ALL,
            platform=PLATFORMS[os],
            supervised=True,
            has_unlock_token=True,
            os_version=version,
        ),
        **changes,
    )


def channel_for(request_type: str, os: str) -> dict[str, Any]:
    """A user channel where the command runs there only (macOS InviteToProgram; on OS X
    10.9, what Table 10 sends to a user channel)."""
    support = SCHEMAS[request_type].support[os]
    introduced = support.introduced or (0,)
    table_10 = os == "macOS" and introduced <= (10, 9) and CATALOG[request_type].mac_channel
    user = support.device_channel is False or table_10 == "user"
    return {"user_id": "USER-1"} if user else {}


class ShippedSchema(SynchronousTestCase):
    def test_the_yaml_is_apples_byte_for_byte_with_its_licence(self) -> None:
        snapshot = testdata("apple-device-management")
        for folder in schema_build.FOLDERS:
            ours = sorted(p.name for p in (SHIPPED / folder).iterdir())
            theirs = sorted(p.name for p in (snapshot / folder).iterdir())
            self.assertEqual(ours, theirs, folder)
            _match, mismatch, errors = filecmp.cmpfiles(
                SHIPPED / folder, snapshot / folder, ours, shallow=False
            )
            self.assertEqual((mismatch, errors), ([], []), folder)
        self.assertTrue(filecmp.cmp(SHIPPED / "LICENSE", snapshot / "LICENSE", shallow=False))
        self.assertIn(
            "b6202ca2fbd31286a52eb160b67a4db7b4fe1f1f", (SHIPPED / "SOURCE.md").read_text()
        )

    def test_schema_json_is_compiled_from_the_shipped_yaml(self) -> None:
        """``make update-schema`` was run after the YAML last changed."""
        commit = apple_schema().commit
        compiled = schema_build.render(schema_build.compile_schema(SHIPPED), commit)
        self.assertEqual((SHIPPED / "schema.json").read_text(encoding="utf-8"), compiled)

    def test_update_schema_copies_a_checkout_and_names_its_commit(self) -> None:
        target = Path(self.mktemp())
        target.mkdir()
        schema_build.update(SHIPPED, "0" * 40, target)
        self.assertIn("0" * 40, (target / "SOURCE.md").read_text())
        self.assertTrue((target / "mdm/profiles/com.apple.mdm.yaml").is_file())
        self.assertEqual(
            (target / "schema.json").read_text()[:60],
            schema_build.render(schema_build.compile_schema(SHIPPED), "0" * 40)[:60],
        )

    def test_the_counts(self) -> None:
        schema = apple_schema()
        self.assertEqual(len(schema.commands), 66)
        self.assertEqual(len(schema.checkin), 8)
        self.assertEqual(len(DEFAULT_QUERIES), 85)
        settings = SCHEMAS["Settings"].key("Settings")
        assert settings is not None
        self.assertEqual(len(settings.subkeys), 19 + 2, "Apple's 19 items and the spec's 2")

    def test_versions(self) -> None:
        self.assertEqual(parse_version("10.13.4"), (10, 13, 4))
        self.assertEqual(parse_version("17.1 (21B80)"), (17, 1))
        self.assertEqual(parse_version("15.0"), (15,))
        self.assertIsNone(parse_version("n/a"))
        self.assertEqual(show_version((15,)), "15.0")


class EveryRequestType(SynchronousTestCase):
    """The issue's bar: every request type of Apple's schema, with its required keys."""

    def test_each_is_accepted_where_it_runs_and_refused_with_the_version_where_not(self) -> None:
        checked = 0
        for request_type, schema in sorted(SCHEMAS.items()):
            with self.subTest(request_type=request_type):
                prepared = prepare(generated(request_type))
                oses = [os for os in PLATFORMS if schema.support.get(os, None)]
                supported = [os for os in oses if schema.support[os].introduced is not None]
                self.assertTrue(supported, f"{request_type} runs on none of {list(PLATFORMS)}?")
                for os in supported:
                    introduced = schema.support[os].introduced
                    assert introduced is not None
                    channel = channel_for(request_type, os)
                    at = show_version(introduced)
                    on_os = prepared
                    if (request_type, os) in PER_OS:
                        on_os = prepare({**generated(request_type), **PER_OS[request_type, os]})
                    ok = fit(on_os, target_for(os, at, **channel))
                    self.assertIsNone(ok.refusal, f"{request_type} on {os} {at}")
                    self.assertEqual(ok.command and ok.command["RequestType"], request_type)
                    if introduced > apple_schema().floor(os):
                        before = older(introduced)
                        old = fit(on_os, target_for(os, before, **channel))
                        named = f"{request_type} needs {os} {at} or later; this device runs "
                        named += f"{os} {before}"
                        old_mac = os == "macOS" and (parse_version(before) or (0,)) <= (10, 9)
                        if old_mac and CATALOG[request_type].mac is MacSupport.NONE:
                            named = f"OS X 10.9 does not support {request_type} (Table 10)"
                        self.assertEqual(old.refusal, named)
                        unknown = fit(on_os, target_for(os, None, **channel))
                        self.assertIsNone(unknown.refusal)
                        self.assertIn(f"needs {os} {at}", " ".join(unknown.warnings))
                for os in set(PLATFORMS) - set(supported):
                    refused = fit(prepared, target_for(os, "99.0"))
                    self.assertIn(f"{request_type} is not supported on {os}", refused.refusal or "")
                checked += 1
        self.assertEqual(checked, 66)

    def test_the_2014_os_x_table_stays_true_for_os_x_10_9(self) -> None:
        """Table 10 refused these in 2014, and still does for an OS X of then; current
        macOS takes them (Apple's schema)."""
        for request_type in (
            "RequestMirroring",
            "StopMirroring",
            "ManagedApplicationConfiguration",
        ):
            prepared = prepare(generated(request_type))
            old_mac = fit(prepared, target_for("macOS", "10.9.5"))
            self.assertIn("(Table 10)", old_mac.refusal or "", request_type)
            self.assertIsNone(fit(prepared, target_for("macOS", "15.1")).refusal, request_type)
        for request_type in ("RemoveApplication", "InstallProvisioningProfile"):
            prepared = prepare(generated(request_type))
            self.assertIsNone(fit(prepared, target_for("macOS", "11.0")).refusal, request_type)
        refused = fit(prepare(generated("ManagedApplicationList")), target_for("macOS", "10.15"))
        self.assertIn(
            "needs macOS 11.0 or later; this device runs macOS 10.15", refused.refusal or ""
        )
        # A Mac of unknown version: the 2014 table warns instead of refusing.
        unknown = fit(prepare(generated("RequestMirroring")), target_for("macOS", None))
        self.assertIsNone(unknown.refusal)
        self.assertIn("OS X 10.9 does not support RequestMirroring", " ".join(unknown.warnings))

    def test_keys_added_since_2014_are_sent_and_checked_by_version(self) -> None:
        erase = prepare(
            {
                "RequestType": "EraseDevice",
                "PreserveDataPlan": True,
                "DisallowProximitySetup": True,
                "ReturnToService": {
                    "Enabled": True,
                    "WiFiProfileData": "AAEC",
                    "MDMProfileData": b"\x00\x01",
                },
            }
        )
        self.assertEqual(erase.command["ReturnToService"]["WiFiProfileData"], b"\x00\x01\x02")
        self.assertIsNone(fit(erase, target_for("iOS", "17.0")).refusal)
        old = fit(erase, target_for("iOS", "16.7"))
        self.assertEqual(
            old.refusal, "ReturnToService needs iOS 17.0 or later; this device runs iOS 16.7"
        )
        unknown = fit(erase, target_for("iOS", None))
        self.assertIn("ReturnToService needs iOS 17.0 or later", " ".join(unknown.warnings))
        mac = prepare(
            {"RequestType": "EraseDevice", "PIN": "123456", "ObliterationBehavior": "Always"}
        )
        self.assertIsNone(fit(mac, target_for("macOS", "12.0")).refusal)
        self.assertIn(
            "ObliterationBehavior needs macOS 12.0",
            fit(mac, target_for("macOS", "11.7")).refusal or "",
        )
        install = prepare(
            {"RequestType": "InstallApplication", "iTunesStoreID": 1, "InstallAsManaged": True}
        )
        self.assertIsNone(fit(install, target_for("macOS", "15.1", user_id="")).refusal)
        listing = prepare({"RequestType": "ProfileList", "ManagedOnly": True})
        self.assertIn(
            "ManagedOnly needs iOS 13.0", fit(listing, target_for("iOS", "12.4")).refusal or ""
        )
        information = prepare(
            {
                "RequestType": "DeviceInformation",
                "Queries": ["UDID"],
                "DeviceAttestationNonce": "AAAA",
            }
        )
        self.assertIsNone(fit(information, target_for("iOS", "16.0")).refusal)

    def test_schema_types_nesting_and_required_keys(self) -> None:
        cases: list[tuple[dict[str, Any], str]] = [
            (
                {"RequestType": "EraseDevice", "PreserveDataPlan": "yes"},
                "PreserveDataPlan must be a boolean",
            ),
            (
                {"RequestType": "EraseDevice", "ObliterationBehavior": "Sometimes"},
                "ObliterationBehavior must be one of Default, DoNotObliterate",
            ),
            (
                {"RequestType": "EraseDevice", "ReturnToService": {}},
                "ReturnToService.Enabled is required",
            ),
            (
                {"RequestType": "EraseDevice", "ReturnToService": {"Enabled": True, "Typo": 1}},
                "ReturnToService.Typo is not a key",
            ),
            (
                {"RequestType": "EraseDevice", "Wipe": True},
                "Wipe is not a key of this command in Apple's schema",
            ),
            ({"RequestType": "ScheduleOSUpdate"}, "Updates is required"),
            (
                {"RequestType": "ScheduleOSUpdate", "Updates": [{"InstallAction": "Now"}]},
                "Updates[0].InstallAction must be one of",
            ),
            (
                {"RequestType": "Settings", "Settings": [{"Item": "TimeZone"}]},
                "Settings[0].TimeZone is required",
            ),
            (
                {"RequestType": "Settings", "Settings": [{"Item": "Bluetooth", "Enabled": 1}]},
                "Settings[0].Enabled must be a boolean",
            ),
            (
                {
                    "RequestType": "Settings",
                    "Settings": [{"Item": "SoftwareUpdateSettings", "RecommendationCadence": 7}],
                },
                "RecommendationCadence must be one of 0, 1, 2",
            ),
            ({"RequestType": "InstallMedia", "MediaType": "Movie"}, "MediaType must be one of"),
            (
                {"RequestType": "Settings", "Settings": [{"Item": ["Bluetooth"]}]},
                "Settings[0].Item must be one of",
            ),
            ({"RequestType": "DeviceLocation", "Extra": 1}, "Extra is not a key"),
            (
                {"RequestType": "InstallApplication", "iTunesStoreID": 1, "Options": {"Other": 1}},
                "Options.Other is not a key",
            ),
        ]
        for description, expected in cases:
            with self.subTest(description=description):
                with self.assertRaises(CommandInvalid) as refused:
                    prepare(description)
                self.assertIn(expected, "; ".join(refused.exception.problems))

    def test_the_spec_rules_still_apply_on_top(self) -> None:
        """ClearPasscode's UnlockToken comes from escrow, never the caller; the PIN rule."""
        with self.assertRaises(CommandInvalid) as refused:
            prepare({"RequestType": "ClearPasscode", "UnlockToken": "AAAA"})
        self.assertIn("filled in by the appliance", str(refused.exception.problems))
        with self.assertRaises(CommandInvalid) as refused:
            prepare({"RequestType": "EraseDevice", "PIN": "12"})
        self.assertEqual(refused.exception.problems, ["PIN must be 4 or 6 characters long, not 2"])

    def test_rights_of_the_new_request_types_come_from_the_schema(self) -> None:
        self.assertEqual(CATALOG["RestartDevice"].rights, rights.LOCK_AND_PASSCODE)
        self.assertEqual(CATALOG["EnableLostMode"].rights, 0)
        self.assertEqual(CATALOG["ValidateApplications"].rights, rights.APP_MANAGEMENT)
        target = target_for("iOS", "18.1", access_rights=rights.ALL & ~rights.LOCK_AND_PASSCODE)
        refused = fit(prepare(generated("RestartDevice")), target)
        self.assertIn("'Device Lock and Passcode Removal' (4)", refused.refusal or "")
        # Rights by the target's OS: macOS names none for ScheduleOSUpdate, iOS App Management.
        update = prepare(generated("ScheduleOSUpdate"))
        without = {"access_rights": rights.ALL & ~rights.APP_MANAGEMENT}
        self.assertIsNone(fit(update, target_for("macOS", "15.1", **without)).refusal)
        self.assertIn(
            "App Management", fit(update, target_for("iOS", "18.1", **without)).refusal or ""
        )

    def test_the_spec_and_apples_schema_agree_on_rights(self) -> None:
        """Where Apple names a right (not a "Special Case"), it is the one the spec's
        request types need."""
        for request_type, spec in FAMILY_SPECS.items():
            named = {
                s.access_rights
                for s in SCHEMAS[request_type].support.values()
                if s.access_rights not in (None, "Special Case", "None", "n/a")
            }
            with self.subTest(request_type=request_type):
                self.assertEqual(rights.of_schema(named), spec.rights)

    def test_user_enrollment_and_channels(self) -> None:
        erase = prepare(generated("EraseDevice"))
        refused = fit(erase, target_for("iOS", "17.0", user_enrollment=True))
        self.assertEqual(
            refused.refusal, "EraseDevice is not available with User Enrollment on iOS"
        )
        self.assertIsNone(
            fit(
                prepare(generated("ProfileList")), target_for("iOS", "17.0", user_enrollment=True)
            ).refusal
        )
        on_user = fit(erase, target_for("macOS", "15.0", user_id="USER-1"))
        self.assertIn("goes to the device channel", on_user.refusal or "")
        invite = prepare(generated("InviteToProgram"))
        self.assertIn(
            "goes to a user channel", fit(invite, target_for("macOS", "15.0")).refusal or ""
        )

    def test_deprecated_and_removed_are_flagged(self) -> None:
        unlock = prepare(generated("RequestUnlockToken"))
        self.assertIn(
            "deprecated since iOS 6.1.6", " ".join(fit(unlock, target_for("iOS", "7.0")).warnings)
        )


class DeviceInformationByApplesNames(SynchronousTestCase):
    def test_the_default_queries_are_apples_85(self) -> None:
        command = prepare({"RequestType": "DeviceInformation"}).command
        self.assertEqual(command["Queries"], list(DEFAULT_QUERIES))
        for name in ("EthernetMACs", "Languages", "Locales"):
            self.assertNotIn(name, command["Queries"])
        for name in ("OrganizationInfo", "IsMDMLostModeEnabled", "SoftwareUpdateDeviceID"):
            self.assertIn(name, command["Queries"])

    def test_the_spec_names_are_still_asked_when_named(self) -> None:
        prepared = prepare(
            {"RequestType": "DeviceInformation", "Queries": ["EthernetMACs", "UDID"]}
        )
        self.assertEqual(prepared.command["Queries"], ["EthernetMACs", "UDID"])
        self.assertEqual(QUERY_RIGHTS["EthernetMACs"], rights.NETWORK_INFORMATION)

    def test_queries_a_platform_does_not_answer_are_left_out(self) -> None:
        named = prepare(
            {"RequestType": "DeviceInformation", "Queries": ["IMEI", "HostName", "UDID"]}
        )
        mac = fit(named, target_for("macOS", "15.1"))
        assert mac.command is not None
        self.assertEqual(mac.command["Queries"], ["HostName", "UDID"])
        self.assertIn("IMEI is not supported on macOS", " ".join(mac.warnings))
        default = fit(prepare({"RequestType": "DeviceInformation"}), target_for("macOS", "15.1"))
        assert default.command is not None
        self.assertNotIn("IMEI", default.command["Queries"])
        self.assertIn("HostName", default.command["Queries"])
        self.assertFalse([w for w in default.warnings if "left out" in w])
        with_version = prepare(
            {"RequestType": "DeviceInformation", "Queries": ["UDID", "OSVersion"]}
        )
        ue = fit(with_version, target_for("iOS", "17.0", user_enrollment=True))
        assert ue.command is not None
        self.assertEqual(ue.command["Queries"], ["OSVersion"])

    def test_organization_info_is_a_dictionary(self) -> None:
        command = {"Queries": ["OrganizationInfo", "OSUpdateSettings"]}
        info = {"OrganizationName": "Example", "OrganizationEmail": "it@example.com"}
        outcome = parse_device_information(
            {
                "QueryResponses": {
                    "OrganizationInfo": info,
                    "OSUpdateSettings": {"AutoCheckEnabled": True},
                }
            },
            command,
        )
        self.assertEqual(outcome.facts["OrganizationInfo"], info)
        ignored = parse_device_information(
            {"QueryResponses": {"OrganizationInfo": "Example"}}, command
        )
        self.assertEqual(ignored.summary["ignored"], ["OrganizationInfo (not a dictionary)"])


class MixedFleet(TestCase):
    """One command to a fleet on many OS versions, through a real store: fitted once per kind
    of target (platform, OS version, rights, ...), inserted once per body."""

    async def test_kinds_fitted_alike_share_one_body_and_warnings_stay_their_own(self) -> None:
        store = Store(Path(self.mktemp()), reactor=global_reactor())
        store.startService()
        self.addCleanup(store.stopService)
        fleet = [
            ("ios", "16.4", 8191),
            ("ios", "17.2", 8191),
            ("ios", "18.1", 8191),
            ("macos", "14.7", 8191),
            ("macos", "15.1", None),  # enrolled through another CA: its rights are not known
        ]

        def enroll(tx: Tx) -> list[int]:
            for n, (platform, version, access_rights) in enumerate(fleet * 3):
                udid = f"MIXED-FLEET-{n:04d}"
                tx.conn.execute(
                    "INSERT INTO devices (udid, first_seen, updated_at, platform, os_version) "
                    "VALUES (?, 'now', 'now', ?, ?)",
                    (udid, platform, version),
                )
                tx.conn.execute(
                    "INSERT INTO enrollments (udid, topic, state, created_at, updated_at, "
                    "access_rights) VALUES (?, 'com.apple.mgmt.t', 'enrolled', 'now', 'now', ?)",
                    (udid, access_rights),
                )
            return [row[0] for row in tx.conn.execute("SELECT id FROM enrollments ORDER BY id")]

        ids = await store.transaction(enroll)
        result = await store.transaction(
            send_command, ids, {"RequestType": "DeviceInformation"}, actor="test"
        )
        self.assertEqual(sorted(result.queued), ids)

        def bodies(tx: Tx) -> tuple[int, dict[int, list[str]]]:
            count = tx.conn.execute("SELECT count(*) FROM command_bodies").fetchone()[0]
            queries = {}
            for enrollment_id, command_uuid in result.queued.items():
                payload = tx.commands.payload(command_uuid)
                assert payload is not None
                queries[enrollment_id] = plistlib.loads(payload[0])["Command"]["Queries"]
            return count, queries

        count, queries = await store.transaction(bodies)
        # iOS (three versions, one body: the default set by platform) and macOS (two
        # versions); the Mac of unknown rights has a warning, so its own body.
        self.assertEqual(count, 3)
        platform = {i: fleet[n % len(fleet)][0] for n, i in enumerate(ids)}
        for enrollment_id, asked in queries.items():
            self.assertEqual("IMEI" in asked, platform[enrollment_id] == "ios")
            self.assertEqual("HostName" in asked, platform[enrollment_id] == "macos")
        unknown = [w for w in result.warnings if "AccessRights are not known" in w]
        self.assertEqual(len(unknown), 1)
        self.assertEqual(sorted(result.warnings[unknown[0]]), ids[4::5])
