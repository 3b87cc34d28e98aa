"""Every request type end to end: queued through the catalog on a real appliance, carried
over TLS to a simulated device that performs it, and its answer read back as inventory or
as the command's result."""

from __future__ import annotations

import json
import plistlib
import secrets
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding
from twisted.trial.unittest import TestCase

from mdmappliance import pki
from mdmappliance.app.admin_listener import command_sender
from mdmappliance.commands import rights
from mdmappliance.commands.catalog import CATALOG, FAMILY_SPECS
from mdmappliance.commands.errors import CommandInvalid, CommandRejected
from mdmappliance.commands.inventory import command_status
from mdmappliance.commands.send import resolve_udids
from mdmappliance.mdm.schema import apple_schema
from mdmappliance.simulator.device import SimulatedDevice
from mdmappliance.simulator.model import DeviceModel
from tests.support import InProcessAppliance, inventory_of, query, sql
from tests.test_catalog import EXAMPLES, JPEG, PROFILE, SETTING_EXAMPLES, UUID

#: The order a real rollout takes: look, install, configure, query, then lock and erase.
SCENARIO: list[tuple[str, dict[str, Any]]] = [
    ("DeviceInformation", {}),
    ("SecurityInfo", {}),
    ("ProfileList", {}),
    ("InstallProfile", {"Payload": PROFILE}),
    ("ProfileList", {}),
    ("RemoveProfile", {"Identifier": "com.example.not-installed"}),
    ("ProvisioningProfileList", {}),
    ("InstallProvisioningProfile", EXAMPLES["InstallProvisioningProfile"]),
    ("ProvisioningProfileList", {}),
    ("CertificateList", {}),
    ("InstalledApplicationList", {}),
    ("InstallApplication", {"Identifier": "com.example.app", "Configuration": {"k": "v"}}),
    ("InstallApplication", {"iTunesStoreID": 361285480, "Options": {"PurchaseMethod": 1}}),
    ("ApplyRedemptionCode", {"Identifier": "com.example.store361285480", "RedemptionCode": "R1"}),
    ("InstallApplication", {"Identifier": "com.example.notes"}),
    ("ManagedApplicationList", {}),
    ("InstalledApplicationList", {"Identifiers": ["com.example.app"]}),
    ("Settings", {"Settings": list(SETTING_EXAMPLES.values())}),
    ("ManagedApplicationConfiguration", {"Identifiers": ["com.example.app"]}),
    ("ManagedApplicationAttributes", {"Identifiers": ["com.example.app"]}),
    ("ManagedApplicationFeedback", {"Identifiers": ["com.example.app"], "DeleteFeedback": True}),
    ("Restrictions", {"ProfileRestrictions": True}),
    ("RequestMirroring", {"DestinationName": "Room 1", "ScanTime": 30}),
    ("StopMirroring", {}),
    ("InviteToProgram", EXAMPLES["InviteToProgram"]),
    ("RemoveProvisioningProfile", {"UUID": UUID}),
    ("RemoveApplication", {"Identifier": "com.example.store361285480"}),
    ("DeviceLock", {"Message": "Call IT"}),
    ("ClearPasscode", {}),
    ("EraseDevice", {}),
]


class CommandsEndToEnd(TestCase):
    timeout = 120

    def setUp(self) -> None:
        self.appliance = InProcessAppliance(Path(self.mktemp()))
        self.addCleanup(self.appliance.stop)
        self.config = self.appliance.config
        self.store = self.appliance.store
        self.sender = command_sender(self.config, self.store)
        self.db = self.config.store.path

    async def enrolled_iphone(self) -> tuple[SimulatedDevice, DeviceModel, int]:
        device = await self.appliance.device_from_link()
        self.addCleanup(device.close)
        unlock_token = secrets.token_bytes(64)
        assert (await device.authenticate(ProductName="iPhone6,1")).code == 200
        assert (await device.token_update(unlock_token=unlock_token)).code == 200
        assert device.identity is not None
        ca = pki.read_certificate(self.config.pki.ca_cert)
        model = DeviceModel(
            udid=device.udid,
            unlock_token=unlock_token,
            certificates=[
                (
                    "mdmappliance device",
                    True,
                    device.identity.certificate.public_bytes(Encoding.DER),
                ),
                ("appliance CA", False, ca.public_bytes(Encoding.DER)),
            ],
        )
        found, _ = await self.store.run(resolve_udids, [device.udid])
        return device, model, found[device.udid]

    async def send(self, targets: list[int], description: dict[str, Any], **kw: Any) -> Any:
        return await self.sender.send(targets, description, actor="test", **kw)

    async def test_an_unchanged_answer_rewrites_only_when_it_was_reported(self) -> None:
        """The same DeviceInformation answer again updates the inventory's command and time,
        not its JSON; a changed one rewrites it."""
        device, model, enrollment_id = await self.enrolled_iphone()
        await self.store.run(sql, "CREATE TEMP TABLE data_writes (kind TEXT)")
        await self.store.run(
            sql,
            "CREATE TEMP TRIGGER count_data AFTER UPDATE OF data ON inventory "
            "BEGIN INSERT INTO data_writes VALUES (new.kind); END",
        )
        asked = {"RequestType": "DeviceInformation", "Queries": ["DeviceName", "OSVersion"]}

        async def ask() -> tuple[str, dict[str, Any]]:
            uuid = (await self.send([enrollment_id], asked)).queued[enrollment_id]
            await device.poll(model.answer)
            return uuid, (await self.store.run(inventory_of, enrollment_id))["device_information"]

        _, first = await ask()
        again, second = await ask()
        self.assertEqual(second["data"], first["data"])
        self.assertEqual(second["command_uuid"], again)
        self.assertGreaterEqual(second["reported_at"], first["reported_at"])
        self.assertEqual(await self.store.run(sql, "SELECT * FROM data_writes"), [])
        model.settings["DeviceName"] = "Renamed"
        _, third = await ask()
        self.assertEqual(third["data"]["DeviceName"], "Renamed")
        self.assertEqual(
            await self.store.run(sql, "SELECT * FROM data_writes"), [("device_information",)]
        )

    async def test_every_request_type_reaches_the_device_and_its_answer_is_stored(self) -> None:
        device, model, enrollment_id = await self.enrolled_iphone()
        sent: list[tuple[str, str]] = []
        for request_type, keys in SCENARIO:
            result = await self.send(
                [enrollment_id],
                {"RequestType": request_type, **keys},
                confirm_clear_passcode=request_type == "ClearPasscode",
            )
            sent.append((request_type, result.queued[enrollment_id]))
        self.assertEqual({name for name, _ in sent}, set(EXAMPLES), "the scenario covers them all")
        received = await device.poll(model.answer)
        self.assertEqual(received, [uuid for _, uuid in sent], "in the order queued")
        self.assertEqual(model.answered, [name for name, _ in sent])

        status = {uuid: await self.store.run(command_status, uuid) for _, uuid in sent}
        errors = {
            name: status[uuid]["result"]["errors"]
            for name, uuid in sent
            if status[uuid]["state"] == "error"
        }
        self.assertEqual(
            errors,
            {
                "RemoveProfile": ["MCMDMErrorDomain 12013: Profile not managed"],
                "InstallApplication": ["MCMDMErrorDomain 12025: App already installed"],
            },
        )
        by_name = {name: status[uuid]["result"] for name, uuid in reversed(sent)}
        self.assertEqual(by_name["RequestMirroring"]["MirroringResult"], "Prompting")
        self.assertEqual(by_name["InviteToProgram"]["InvitationResult"], "Acknowledged")
        settings = by_name["Settings"]["Settings"]
        self.assertEqual([s["Item"] for s in settings], list(SETTING_EXAMPLES))
        statuses = {s["Item"]: s["Status"] for s in settings}
        self.assertEqual(statuses["VoiceRoaming"], "Acknowledged")
        self.assertEqual(statuses["Language"], "Error", "an iPhone is not an Apple TV")
        self.assertEqual(
            [s["Errors"] for s in settings if s["Item"] == "Locale"],
            [["MCMDMErrorDomain 12041: Unknown language code"]],
        )
        installs = [status[uuid]["result"] for name, uuid in sent if name == "InstallApplication"]
        self.assertEqual(installs[0]["State"], "Managed")
        self.assertEqual(installs[1]["State"], "NeedsRedemption")
        self.assertEqual(installs[2]["RejectionReason"], "AppAlreadyInstalled")
        self.assertTrue(model.erased and model.locked and not model.passcode)

        inventory = await self.store.run(inventory_of, enrollment_id)
        self.assertEqual(
            set(inventory),
            {
                "device_information",
                "security",
                "profiles",
                "provisioning_profiles",
                "certificates",
                "installed_apps",
                "app_installs",
                "managed_apps",
                "app_configurations",
                "app_attributes",
                "app_feedback",
                "restrictions",
            },
        )
        self.assertEqual(
            [p["PayloadIdentifier"] for p in inventory["profiles"]["data"]], ["com.example.wifi"]
        )
        self.assertEqual(len(inventory["provisioning_profiles"]["data"]), 1)
        certificates = inventory["certificates"]["data"]
        self.assertEqual([c["is_identity"] for c in certificates], [True, False])
        assert device.identity is not None
        self.assertEqual(
            certificates[0]["subject"], device.identity.certificate.subject.rfc4514_string()
        )
        apps = inventory["installed_apps"]["data"]
        self.assertIn("com.example.notes", apps, "a filtered answer keeps the other apps")
        self.assertIn("com.example.app", apps)
        managed = inventory["managed_apps"]["data"]
        self.assertEqual(managed["com.example.store361285480"]["Status"], "Managed")
        self.assertEqual(
            inventory["app_configurations"]["data"]["com.example.app"]["Configuration"],
            {"server": "https://example.com"},
            "the ApplicationConfiguration setting took effect",
        )
        self.assertEqual(
            inventory["app_attributes"]["data"]["com.example.app"]["Attributes"], {"VPNUUID": UUID}
        )
        self.assertTrue(inventory["security"]["data"]["DataProtection"])
        self.assertIn(
            "com.example.restrictions", inventory["restrictions"]["data"]["ProfileRestrictions"]
        )
        for kind in inventory.values():
            self.assertTrue(kind["reported_at"].endswith("Z"))

        ((serial, platform, supervised, activation_lock, facts),) = query(
            self.db,
            "SELECT serial_number, platform, supervised, activation_lock, facts FROM devices "
            "WHERE udid = ?",
            device.udid,
        )
        self.assertEqual(
            (serial, platform, supervised, activation_lock),
            (model.facts()["SerialNumber"], "ios", 1, 1),
        )
        facts = json.loads(facts)
        self.assertEqual(facts["IMEI"], "01 234567 890123 4")
        self.assertNotIn("EthernetMACs", facts, "an iPhone has none")
        self.assertTrue(facts["DataProtection"])

    async def test_clear_passcode_is_confirmed_audited_and_sealed_at_rest(self) -> None:
        device, model, enrollment_id = await self.enrolled_iphone()
        with self.assertRaises(CommandRejected) as refused:
            await self.send([enrollment_id], {"RequestType": "ClearPasscode"})
        self.assertIn("confirm explicitly", str(refused.exception))
        self.assertEqual(query(self.db, "SELECT count(*) FROM commands"), [(0,)])
        result = await self.send(
            [enrollment_id], {"RequestType": "ClearPasscode"}, confirm_clear_passcode=True
        )
        command_uuid = result.queued[enrollment_id]
        ((payload, sealed),) = query(self.db, "SELECT payload, sealed FROM commands")
        self.assertEqual(sealed, 1)
        assert model.unlock_token is not None
        self.assertNotIn(model.unlock_token, payload)
        self.assertNotIn(b"ClearPasscode", payload, "the whole payload is sealed")
        self.assertEqual(
            query(
                self.db,
                "SELECT actor, subject FROM events WHERE kind = 'command.clear_passcode_confirmed'",
            ),
            [("test", device.udid)],
        )
        self.assertEqual(await device.poll(model.answer), [command_uuid])
        self.assertFalse(model.passcode, "the device got the escrowed token itself")

    async def test_a_batch_is_all_or_nothing_unless_partial(self) -> None:
        (first, _, first_id), (second, _, second_id) = [
            await self.enrolled_iphone() for _ in range(2)
        ]
        await self.store.transaction(
            lambda tx: tx.conn.execute(
                "UPDATE enrollments SET access_rights = ? WHERE id = ?",
                (rights.ALL & ~rights.ERASE, second_id),
            )
        )
        with self.assertRaises(CommandInvalid) as refused:
            await self.send([first_id, second_id, 999_999], {"RequestType": "EraseDevice"})
        self.assertEqual(
            refused.exception.problems,
            [
                f"{second.udid}: EraseDevice needs 'Device Erase' (8), which this enrollment lacks",
                "enrollment 999999: no such enrollment",
            ],
        )
        self.assertEqual(query(self.db, "SELECT count(*) FROM commands"), [(0,)])
        result = await self.send(
            [first_id, second_id, 999_999], {"RequestType": "EraseDevice"}, partial=True
        )
        self.assertEqual(list(result.queued), [first_id])
        self.assertEqual(set(result.refused), {second_id, 999_999})
        self.assertEqual(
            query(self.db, "SELECT batch_event_id FROM commands"), [(result.event_id,)]
        )
        ((detail,),) = query(self.db, "SELECT detail FROM events WHERE id = ?", result.event_id)
        self.assertEqual(
            json.loads(detail),
            {"request_type": "EraseDevice", "targets": 1, "refused": 2, "unchecked": False},
        )
        self.assertEqual(await first.poll(), [result.queued[first_id]])

    async def test_profile_signed_on_request_verifies_with_openssl(self) -> None:
        from tests.support import openssl_verify

        device, model, enrollment_id = await self.enrolled_iphone()
        result = await self.send(
            [enrollment_id],
            {"RequestType": "InstallProfile", "Payload": PROFILE},
            sign_profile=True,
        )
        seen: list[bytes] = []

        def capture(envelope: dict[str, Any]) -> tuple[str, dict[str, Any]]:
            seen.append(envelope["Command"]["Payload"])
            return model.answer(envelope)

        self.assertEqual(await device.poll(capture), [result.queued[enrollment_id]])
        workdir = Path(self.mktemp())
        workdir.mkdir()
        self.assertEqual(openssl_verify(seen[0], self.config.pki.ca_cert, workdir), PROFILE)
        inventory = await self.store.run(inventory_of, enrollment_id)
        self.assertEqual(inventory, {})  # InstallProfile has no answer keys of its own

    async def enrolled_mac(self, os_version: str) -> tuple[SimulatedDevice, int]:
        device = self.appliance.device()
        self.addCleanup(device.close)
        assert (
            await device.authenticate(
                ProductName="MacPro6,1", ModelName="Mac Pro", OSVersion=os_version
            )
        ).code == 200
        assert (await device.token_update()).code == 200
        (enrollment_id,) = (await self.store.run(resolve_udids, [device.udid]))[0].values()
        return device, enrollment_id

    async def test_os_x_device_gets_only_what_table_10_allows(self) -> None:
        device, enrollment_id = await self.enrolled_mac("10.9.5")
        with self.assertRaises(CommandInvalid) as refused:
            await self.send(
                [enrollment_id], {"RequestType": "RequestMirroring", "DestinationName": "TV"}
            )
        self.assertIn("OS X 10.9 does not support RequestMirroring", str(refused.exception))
        result = await self.send(
            [enrollment_id],
            {
                "RequestType": "DeviceInformation",
                "Queries": ["SerialNumber", "IMEI", "EthernetMACs"],
            },
        )
        warnings = " ".join(result.warnings)
        self.assertIn("OS X does not answer: IMEI", warnings)
        self.assertIn(
            "AccessRights are not known", warnings, "issued outside a link: rights unknown"
        )
        model = DeviceModel(platform="macos", udid=device.udid, os_version="10.9.5")
        await device.poll(model.answer)
        facts = (await self.store.run(inventory_of, enrollment_id))["device_information"]["data"]
        self.assertEqual(facts["EthernetMACs"], ["a4:83:e7:00:00:03"])
        self.assertNotIn("IMEI", facts)
        self.assertEqual(query(self.db, "SELECT platform FROM devices"), [("macos",)])

    async def test_macos_15_gets_what_apples_schema_allows(self) -> None:
        """What Table 10 refused in 2014, current macOS takes (RequestMirroring since 10.10,
        ManagedApplicationConfiguration since 10.15, RemoveApplication since 11); what Apple
        says macOS lacks is still refused, by name."""
        device, enrollment_id = await self.enrolled_mac("15.1")
        model = DeviceModel(platform="macos", udid=device.udid, os_version="15.1")
        queued = []
        for description in (
            {"RequestType": "RequestMirroring", "DestinationName": "TV"},
            {"RequestType": "ManagedApplicationConfiguration", "Identifiers": ["com.example"]},
            {"RequestType": "RemoveApplication", "Identifier": "com.example.app"},
            {"RequestType": "EraseDevice", "PIN": "123456", "ObliterationBehavior": "Always"},
        ):
            result = await self.send([enrollment_id], description)
            queued.append(result.queued[enrollment_id])
        with self.assertRaises(CommandInvalid) as refused:
            await self.send(
                [enrollment_id], {"RequestType": "ClearPasscode"}, confirm_clear_passcode=True
            )
        self.assertIn("ClearPasscode is not supported on macOS", str(refused.exception))
        with self.assertRaises(CommandInvalid) as refused:
            await self.send(
                [enrollment_id],
                {
                    "RequestType": "EraseDevice",
                    "PIN": "123456",
                    "ReturnToService": {"Enabled": True},
                },
            )
        self.assertIn("ReturnToService is not supported on macOS", str(refused.exception))
        self.assertEqual(await device.poll(model.answer), queued)
        states = [(await self.store.run(command_status, uuid))["state"] for uuid in queued]
        # The model manages no com.example.app: it says so, as a Mac would.
        self.assertEqual(states, ["acknowledged", "acknowledged", "error", "acknowledged"])

    async def test_unreadable_result_is_kept_raw_and_leaves_inventory_alone(self) -> None:
        device, model, enrollment_id = await self.enrolled_iphone()
        first = await self.send([enrollment_id], {"RequestType": "ProfileList"})
        await device.poll(model.answer)
        second = await self.send([enrollment_id], {"RequestType": "ProfileList"})
        await device.poll(lambda envelope: ("Acknowledged", {"ProfileList": "garbage"}))
        inventory = await self.store.run(inventory_of, enrollment_id)
        self.assertEqual(inventory["profiles"]["command_uuid"], first.queued[enrollment_id])
        status = await self.store.run(command_status, second.queued[enrollment_id])
        self.assertEqual(status["state"], "acknowledged")
        self.assertIn("ProfileList must be an array", status["result"]["unreadable"])
        ((raw,),) = query(self.db, "SELECT raw FROM command_results ORDER BY id DESC LIMIT 1")
        self.assertEqual(plistlib.loads(raw)["ProfileList"], "garbage")

    async def test_unknown_udids_are_reported(self) -> None:
        device, _, enrollment_id = await self.enrolled_iphone()
        found, unknown = await self.store.run(resolve_udids, [device.udid, "NOPE-0000-0000"])
        self.assertEqual((found, unknown), ({device.udid: enrollment_id}, ["NOPE-0000-0000"]))

    async def test_wallpaper_jpeg_end_to_end(self) -> None:
        device, model, enrollment_id = await self.enrolled_iphone()
        item = {"Item": "Wallpaper", "Image": JPEG, "Where": 2}
        result = await self.send([enrollment_id], {"RequestType": "Settings", "Settings": [item]})
        await device.poll(model.answer)
        status = await self.store.run(command_status, result.queued[enrollment_id])
        self.assertEqual(
            status["result"]["Settings"], [{"Item": "Wallpaper", "Status": "Acknowledged"}]
        )


class TodaysDevicesEndToEnd(TestCase):
    """Every request type of Apple's schema, queued for an iPhone on iOS 18.1 and a Mac on
    macOS 15.1, carried to the simulated devices, answered and stored."""

    timeout = 180

    def setUp(self) -> None:
        self.appliance = InProcessAppliance(Path(self.mktemp()))
        self.addCleanup(self.appliance.stop)
        self.store = self.appliance.store
        self.sender = command_sender(self.appliance.config, self.store)

    async def enrolled(self, **facts: str) -> tuple[SimulatedDevice, int]:
        device = self.appliance.device()
        self.addCleanup(device.close)
        assert (await device.authenticate(**facts)).code == 200
        assert (await device.token_update(unlock_token=secrets.token_bytes(32))).code == 200
        (enrollment_id,) = (await self.store.run(resolve_udids, [device.udid]))[0].values()
        return device, enrollment_id

    async def test_every_apple_request_type_reaches_ios_18_and_macos_15(self) -> None:
        from tests.test_apple_schema import PER_OS, generated

        devices = {
            "iOS": await self.enrolled(ProductName="iPhone17,1", OSVersion="18.1"),
            "macOS": await self.enrolled(
                ProductName="Mac16,1", ModelName="MacBook Pro", OSVersion="15.1"
            ),
        }
        for os, (device, enrollment_id) in devices.items():
            model = DeviceModel(
                platform=os.lower(), udid=device.udid, os_version="18.1" if os == "iOS" else "15.1"
            )
            queued: dict[str, str] = {}
            refused: dict[str, str] = {}
            for request_type in sorted(CATALOG):
                description = {**generated(request_type), **PER_OS.get((request_type, os), {})}
                try:
                    result = await self.sender.send(
                        [enrollment_id],
                        description,
                        actor="test",
                        confirm_clear_passcode=True,
                    )
                except (CommandInvalid, CommandRejected) as e:
                    refused[request_type] = str(e)
                    continue
                queued[request_type] = result.queued[enrollment_id]
            schema = apple_schema().commands
            for request_type, reason in refused.items():
                support = schema[request_type].support.get(os)
                elsewhere = support is None or support.introduced is None
                other_channel = "goes to a user channel" in reason
                self.assertTrue(elsewhere or other_channel, f"{os} {request_type}: {reason}")
            self.assertEqual(len(queued) + len(refused), 66)
            self.assertGreaterEqual(len(queued), 49 if os == "iOS" else 40, sorted(refused))
            received = await device.poll(model.answer)
            self.assertEqual(received, list(queued.values()), os)
            for request_type, command_uuid in queued.items():
                status = await self.store.run(command_status, command_uuid)
                self.assertIn(status["state"], ("acknowledged", "error"), request_type)
                self.assertNotIn("unreadable", status["result"], request_type)
                if request_type not in FAMILY_SPECS:
                    self.assertEqual(status["state"], "acknowledged", request_type)

    async def test_a_user_enrollment_gets_what_apple_allows_it(self) -> None:
        """A User Enrollment iPhone (EnrollmentID, no UDID): what Apple forbids there is
        refused by name, DeviceInformation leaves out the device identifiers, and the model
        answers as such a device does."""
        device = self.appliance.device(user_enrollment=True, udid="ENR-" + secrets.token_hex(16))
        self.addCleanup(device.close)
        assert (await device.authenticate(ProductName="iPhone17,1", OSVersion="18.1")).code == 200
        assert (await device.token_update()).code == 200
        (enrollment_id,) = (await self.store.run(resolve_udids, [device.udid]))[0].values()
        with self.assertRaises(CommandInvalid) as refused:
            await self.sender.send([enrollment_id], {"RequestType": "EraseDevice"}, actor="test")
        self.assertIn("EraseDevice is not available with User Enrollment", str(refused.exception))
        result = await self.sender.send(
            [enrollment_id], {"RequestType": "DeviceInformation"}, actor="test"
        )
        model = DeviceModel(udid=device.udid, os_version="18.1", user_enrollment=True)
        seen: list[list[str]] = []

        def answer(envelope: dict[str, Any]) -> tuple[str, dict[str, Any]]:
            seen.append(envelope["Command"]["Queries"])
            return model.answer(envelope)

        self.assertEqual(await device.poll(answer), [result.queued[enrollment_id]])
        for identifier in ("UDID", "SerialNumber", "IMEI"):
            self.assertNotIn(identifier, seen[0])
        self.assertIn("OSVersion", seen[0])
        facts = (await self.store.run(inventory_of, enrollment_id))["device_information"]["data"]
        self.assertEqual(facts["OSVersion"], "18.1")
        self.assertNotIn("SerialNumber", facts)
