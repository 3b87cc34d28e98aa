"""The check-in protocol of today's Apple devices (issue 16, part 3), over real mTLS on
loopback against a real SQLite file: every MessageType of Apple's check-in schema, User
Enrollment (EnrollmentID / EnrollmentUserID), the escrowed Bootstrap Token, GetToken's error
body, DeclarativeManagement answered with the empty set, and the MDM payload's
ServerCapabilities kept across renewals."""

from __future__ import annotations

import dataclasses
import datetime
import json
import secrets
import time
from pathlib import Path
from typing import Any

import treq
import yaml
from twisted.internet import reactor, task
from twisted.web.client import Agent, HTTPConnectionPool

from mdmappliance.app.enrollment_listener import profile_factory
from mdmappliance.device.capabilities import SERVER_CAPABILITIES
from mdmappliance.enrollment.links import create_link
from mdmappliance.enrollment.renewal import RenewalJob
from mdmappliance.enrollment.retirement import retire_device
from mdmappliance.simulator.device import Reply, SimulatedDevice, fetch_profile
from tests.support import query, sql, testdata
from tests.test_devicechannel import DeviceChannelCase

MAC = {
    "DeviceName": "Simulated Mac",
    "Model": "Mac14,2",
    "ModelName": "MacBook Air",
    "ProductName": "Mac14,2",
    "OSVersion": "15.1",
    "BuildVersion": "24B83",
}
#: What a valid message may leave out though the schema says "required": the keys of the
#: other identifier kind (a device enrollment has no EnrollmentID, a User Enrollment no UDID)
#: and of user channels only (these messages are for the device channel).
IDENTIFIER_KEYS = {"UDID", "EnrollmentID", "EnrollmentUserID", "UserLongName"}
#: Schema keys whose valid value is not any value of their type.
SPECIAL_VALUES: dict[str, Any] = {"Endpoint": "tokens", "UserID": "501"}
#: Each MessageType's answer when it is not 200: the documented one.
DOCUMENTED = {"GetToken": 403}
#: The order a device sends them in (enrollment first, CheckOut last).
ORDER = ("Authenticate", "TokenUpdate")
LAST = ("CheckOut",)
TOKEN_UNSUPPORTED = "com.github.mdmappliance.token.unsupported"


def checkin_schema() -> dict[str, dict[str, Any]]:
    """Apple's check-in schema by MessageType (the YAML files of apple/device-management)."""
    directory = testdata("apple-device-management", "mdm", "checkin")
    schema = {}
    for path in sorted(directory.glob("*.yaml")):
        spec = yaml.safe_load(path.read_text())
        schema[spec["payload"]["requesttype"]] = spec
    return schema


def value_of(key: dict[str, Any], device: SimulatedDevice) -> Any:
    """A valid value for a schema key, from its type (and rangelist)."""
    name = key["key"]
    if name == "Topic":
        return device.topic
    if name in SPECIAL_VALUES:
        return SPECIAL_VALUES[name]
    if key.get("rangelist"):
        return key["rangelist"][0]
    kind = key["type"]
    if kind == "<string>":
        return f"value of {name}"
    if kind == "<data>":
        return device.token if name == "Token" else secrets.token_bytes(32)
    if kind == "<boolean>":
        return False
    if kind == "<dictionary>":
        return {}
    raise AssertionError(f"no value for a {kind} ({name})")


def schema_message(spec: dict[str, Any], device: SimulatedDevice) -> dict[str, Any]:
    """The message a device enrollment's device channel sends: every required key of the
    schema with a value of its type, and the UDID."""
    message: dict[str, Any] = {"UDID": device.udid}
    for key in spec.get("payloadkeys", []):
        if key["presence"] == "required" and key["key"] not in IDENTIFIER_KEYS:
            message[key["key"]] = value_of(key, device)
    return message


def escrowed_tokens(db: Path) -> bytes:
    """Every byte of the database as it is on disk (the file and its write-ahead log)."""
    parts = [db, db.with_name(db.name + "-wal")]
    return b"".join(p.read_bytes() for p in parts if p.exists())


def json_of(reply: Reply) -> Any:
    assert reply.headers.getRawHeaders("content-type") == ["application/json"], reply.headers
    return json.loads(reply.body)


class TodayCase(DeviceChannelCase):
    timeout = 120

    async def mac(self, **kw: Any) -> SimulatedDevice:
        """An enrolled macOS device channel."""
        device = self.device(**kw)
        reply = await device.authenticate(**MAC)
        self.assertEqual(reply.code, 200, reply.body)
        reply = await device.token_update()
        self.assertEqual(reply.code, 200, reply.body)
        return device

    async def admin_device(self, udid: str) -> dict[str, Any]:
        """The admin API's device detail."""
        config = self.appliance.config
        pool = HTTPConnectionPool(reactor, persistent=False)
        self.addCleanup(pool.closeCachedConnections)
        http = treq.client.HTTPClient(Agent(reactor, pool=pool))
        headers: dict[bytes | str, bytes | str] = {
            "Authorization": f"Bearer {config.read_admin_api_key()}"
        }
        response = await http.get(f"{config.admin_url()}/v1/devices/{udid}", headers=headers)
        self.assertEqual(response.code, 200)
        detail: dict[str, Any] = await response.json()
        return detail

    def count(self, table: str) -> int:
        return int(query(self.db, f"SELECT count(*) FROM {table}")[0][0])


class EveryMessageType(TodayCase):
    async def test_every_checkin_type_of_apples_schema_is_answered(self) -> None:
        schema = checkin_schema()
        self.assertEqual(len(schema), 8, sorted(schema))
        order = [
            *ORDER,
            *sorted(set(schema) - set(ORDER) - set(LAST)),
            *LAST,
        ]
        device = self.device()
        answered = {}
        for kind in order:
            message = schema_message(schema[kind], device)
            if kind == "Authenticate":
                message.update(MAC)
            reply = await device.put(device.checkin_path, message)
            answered[kind] = reply.code
            self.assertEqual(reply.code, DOCUMENTED.get(kind, 200), (kind, reply.body))
            if kind == "GetToken":
                self.assertEqual(json_of(reply)["code"], TOKEN_UNSUPPORTED)
        self.assertEqual(set(answered), set(schema))
        self.assertNotIn(400, answered.values())


class UserEnrollment(TodayCase):
    async def test_a_user_enrollment_enrolls_and_answers_a_command(self) -> None:
        device = self.device(user_enrollment=True, udid="ENR-" + secrets.token_hex(16).upper())
        await device.enroll()
        self.assertEqual(
            query(self.db, "SELECT udid, user_enrollment FROM devices"), [(device.udid, 1)]
        )
        self.assertEqual(
            query(self.db, "SELECT udid, state FROM enrollments"), [(device.udid, "enrolled")]
        )
        self.assertEqual(query(self.db, "SELECT udid FROM identities"), [(device.udid,)])
        command_uuid = await self.enqueue(device, {"RequestType": "ProfileList"})
        self.assertEqual(await device.poll(), [command_uuid])
        self.assertEqual(self.command_state(command_uuid)[0], "acknowledged")

        # A macOS User Enrollment's user channel: EnrollmentUserID instead of UserID.
        reply = await device.token_update(user_id="ENROLLMENT-USER-1")
        self.assertEqual(reply.code, 200, reply.body)
        self.assertEqual(
            query(self.db, "SELECT user_id, state FROM enrollments WHERE user_id != ''"),
            [("ENROLLMENT-USER-1", "enrolled")],
        )
        user_command = await self.enqueue(
            device, {"RequestType": "ProfileList"}, user_id="ENROLLMENT-USER-1"
        )
        message = {"EnrollmentID": device.udid, "EnrollmentUserID": "ENROLLMENT-USER-1"}
        reply = await device.put(device.server_path, {**message, "Status": "Idle"})
        self.assertEqual(reply.plist()["CommandUUID"], user_command)
        detail = await self.admin_device(device.udid)
        self.assertIs(detail["user_enrollment"], True)
        self.assertIs(detail["bootstrap_token_escrowed"], False)

    async def test_the_identifier_kind_must_match_the_device(self) -> None:
        enrolled_by_id = self.device(user_enrollment=True)
        await enrolled_by_id.enroll()
        enrolled_by_udid = self.device()
        await enrolled_by_udid.enroll()
        before = self.count("events")
        for device in (enrolled_by_id, enrolled_by_udid):
            device.user_enrollment = not device.user_enrollment  # the same string, other key
            for attempt in (device.authenticate, lambda d=device: d.report("Idle")):
                reply = await attempt()
                self.assertEqual(reply.code, 403, reply.body)
                self.assertIn(b"is known by", reply.body)
        await self.settle()
        self.assertEqual(
            sorted(query(self.db, "SELECT udid, user_enrollment FROM devices")),
            sorted([(enrolled_by_id.udid, 1), (enrolled_by_udid.udid, 0)]),
        )
        kinds = query(self.db, "SELECT kind FROM events WHERE id > ?", before)
        self.assertEqual(kinds, [("device.refused",)] * 4, "audited, nothing else written")

    async def test_udid_and_enrollment_id_together_are_a_device_enrollment(self) -> None:
        device = self.device()
        message = {
            "MessageType": "Authenticate",
            "UDID": device.udid,
            "EnrollmentID": "ENR-" + secrets.token_hex(8),
            "Topic": device.topic,
        }
        reply = await device.put(device.checkin_path, message)
        self.assertEqual(reply.code, 200, reply.body)
        self.assertEqual(
            query(self.db, "SELECT udid, user_enrollment FROM devices"), [(device.udid, 0)]
        )
        reply = await device.put(
            device.checkin_path, {**message, "EnrollmentID": "../not an identifier"}
        )
        self.assertEqual(reply.code, 200, "the UDID names the device; the EnrollmentID is a string")
        reply = await device.put(
            device.checkin_path,
            {"MessageType": "Authenticate", "EnrollmentID": "bad id!", "Topic": device.topic},
        )
        self.assertEqual(reply.code, 400)
        self.assertIn(b"EnrollmentID must be", reply.body)


class BootstrapToken(TodayCase):
    async def test_a_bootstrap_token_round_trips_sealed(self) -> None:
        device = await self.mac()
        token = b"BOOTSTRAP-SECRET-" + secrets.token_bytes(16) + b"-END" * 8
        reply = await device.set_bootstrap_token(token, AwaitingConfiguration=True)
        self.assertEqual((reply.code, reply.body), (200, b""))
        reply = await device.get_bootstrap_token()
        self.assertEqual(reply.code, 200)
        self.assertEqual(reply.plist(), {"BootstrapToken": token})
        await self.settle()
        self.assertNotIn(b"BOOTSTRAP-SECRET", escrowed_tokens(self.db), "sealed at rest")
        self.assertEqual(
            query(
                self.db,
                "SELECT awaiting_configuration, bootstrap_token_at IS NOT NULL FROM enrollments",
            ),
            [(1, 1)],
        )
        (detail,) = [json.loads(d) for _, _, d in self.events("checkin.bootstrap_token_set")]
        self.assertEqual(detail, {"bootstrap_token": "escrowed"})
        (got,) = [json.loads(d) for _, _, d in self.events("checkin.bootstrap_token_get")]
        self.assertEqual(got, {"returned": True})
        self.assertIs((await self.admin_device(device.udid))["bootstrap_token_escrowed"], True)

        other = await self.mac()
        reply = await other.get_bootstrap_token()
        self.assertEqual((reply.code, reply.plist()), (200, {}), "only to the one that set it")
        # The other device's identity with this device's UDID is not this device.
        impostor = self.device(udid=device.udid, identity=other.identity)
        self.assertEqual((await impostor.get_bootstrap_token()).code, 403)

        # A user channel has none (macOS: device channel only).
        for attempt in (
            device.get_bootstrap_token(user_id="501"),
            device.set_bootstrap_token(b"user token", UserID="501"),
        ):
            reply = await attempt
            self.assertEqual(reply.code, 400)
            self.assertIn(b"is for the device channel", reply.body)

        reply = await device.checkout()
        self.assertEqual(reply.code, 200)
        self.assertEqual(
            query(
                self.db,
                "SELECT bootstrap_token_sealed FROM enrollments WHERE udid = ?",
                device.udid,
            ),
            [(None,)],
        )
        await device.enroll()
        self.assertEqual((await device.get_bootstrap_token()).plist(), {})

    async def test_removal_reauthenticate_and_retirement(self) -> None:
        device = await self.mac()
        await device.set_bootstrap_token(b"first token")
        reply = await device.set_bootstrap_token(b"")
        self.assertEqual(reply.code, 200, "zero length: removed")
        self.assertEqual((await device.get_bootstrap_token()).plist(), {})
        await device.set_bootstrap_token(b"second token")
        await device.set_bootstrap_token(None)
        self.assertEqual((await device.get_bootstrap_token()).plist(), {}, "missing: removed")
        details = [
            json.loads(d)["bootstrap_token"]
            for _, _, d in self.events("checkin.bootstrap_token_set")
        ]
        self.assertEqual(details, ["escrowed", "removed", "escrowed", "removed"])

        await device.set_bootstrap_token(b"kept token")
        await device.enroll()  # a repeated Authenticate of a still-enrolled device
        self.assertEqual(
            (await device.get_bootstrap_token()).plist(), {"BootstrapToken": b"kept token"}
        )
        config = self.appliance.config
        await self.appliance.store.transaction(
            retire_device, device.udid, config.profile_identifier(), "admin", now=True
        )
        self.assertEqual(
            query(self.db, "SELECT bootstrap_token_sealed FROM enrollments"), [(None,)]
        )

    async def test_a_user_enrollment_has_none(self) -> None:
        device = self.device(user_enrollment=True)
        await device.enroll()
        reply = await device.set_bootstrap_token(b"token")
        self.assertEqual(reply.code, 400)
        self.assertIn(b"not for a User Enrollment", reply.body)


class GetToken(TodayCase):
    async def test_get_token_is_refused_with_apples_error_body(self) -> None:
        device = await self.mac()
        before = self.count("events")
        reply = await device.get_token("com.apple.watch.pairing", {"SecurityToken": "abc"})
        self.assertEqual(reply.code, 403)
        body = json_of(reply)
        self.assertEqual(set(body), {"code", "description"})
        self.assertEqual(body["code"], TOKEN_UNSUPPORTED)
        self.assertIn("com.apple.watch.pairing", body["description"])
        await self.settle()
        kinds = [k for (k,) in query(self.db, "SELECT kind FROM events WHERE id > ?", before)]
        self.assertEqual(kinds, ["checkin.get_token_refused"], "not an identity refusal")
        (detail,) = [json.loads(d) for _, _, d in self.events("checkin.get_token_refused")]
        self.assertEqual(detail["token_service_type"], "com.apple.watch.pairing")

        for bad in (
            device.get_token("com.example.other"),
            device.get_token("com.apple.maid", ["not", "a", "dictionary"]),  # type: ignore[arg-type]
        ):
            self.assertEqual((await bad).code, 400)


class DeclarativeManagement(TodayCase):
    async def test_tokens_and_declaration_items_are_the_empty_set(self) -> None:
        device = await self.mac()
        reply = await device.declarative_management("tokens")
        self.assertEqual(reply.code, 200)
        tokens = json_of(reply)["SyncTokens"]
        self.assertEqual(set(tokens), {"DeclarationsToken", "Timestamp"})
        moment = datetime.datetime.fromisoformat(tokens["Timestamp"].replace("Z", "+00:00"))
        self.assertEqual(moment.utcoffset(), datetime.timedelta(0), "RFC 3339 UTC")
        reply = await device.declarative_management("declaration-items")
        self.assertEqual(reply.code, 200)
        self.assertEqual(
            json_of(reply),
            {
                "Declarations": {
                    "Activations": [],
                    "Assets": [],
                    "Configurations": [],
                    "Management": [],
                },
                "DeclarationsToken": tokens["DeclarationsToken"],
            },
        )
        other = await self.mac(user_enrollment=True)
        again = json_of(await other.declarative_management("tokens"))["SyncTokens"]
        self.assertEqual(again, tokens, "the empty set's token is stable")

        reply = await device.declarative_management("declaration/configuration/com.example.a")
        self.assertEqual(reply.code, 404)
        for endpoint in ("declarations", "declaration/configuration", "status/extra", ""):
            reply = await device.declarative_management(endpoint)
            self.assertEqual(reply.code, 400, endpoint)

    async def test_status_reports_are_merged_into_inventory(self) -> None:
        device = await self.mac()
        first = {
            "StatusItems": {
                "device": {"operating-system": {"version": "15.1", "build-version": "24B83"}},
                "management": {"client-capabilities": {"supported-versions": ["1.0.0"]}},
            },
            "Errors": [],
        }
        reply = await device.declarative_management("status", json.dumps(first).encode())
        self.assertEqual((reply.code, reply.body), (200, b""))
        partial = {"StatusItems": {"device": {"operating-system": {"version": "15.2"}}}}
        reply = await device.declarative_management("status", json.dumps(partial).encode())
        self.assertEqual(reply.code, 200)
        (stored,) = query(self.db, "SELECT data FROM inventory WHERE kind = 'declarative_status'")
        self.assertEqual(
            json.loads(stored[0]),
            {
                "StatusItems": {
                    "device": {"operating-system": {"version": "15.2", "build-version": "24B83"}},
                    "management": {"client-capabilities": {"supported-versions": ["1.0.0"]}},
                },
                "Errors": [],
            },
        )
        self.assertEqual(len(self.events("checkin.declarative_status")), 2)

        before = (self.count("events"), query(self.db, "SELECT data FROM inventory"))
        for data in (b"not json", b"[1, 2]", b'{"a": NaN}', b"[" * 5000 + b"]" * 5000, None):
            reply = await device.declarative_management("status", data)
            self.assertEqual(reply.code, 400, data)
        after = (self.count("events"), query(self.db, "SELECT data FROM inventory"))
        self.assertEqual(after, before, "a refused report stores nothing")

    async def test_user_channels_and_user_enrollments(self) -> None:
        device = self.device(user_enrollment=True)
        await device.enroll()
        await device.token_update(user_id="ENROLLMENT-USER-2")
        report = json.dumps({"StatusItems": {"device": {"model": {"family": "Mac"}}}}).encode()
        for user_id in (None, "ENROLLMENT-USER-2"):
            reply = await device.declarative_management("status", report, user_id=user_id)
            self.assertEqual(reply.code, 200, reply.body)
            reply = await device.declarative_management("tokens", user_id=user_id)
            self.assertEqual(reply.code, 200, reply.body)
        rows = query(
            self.db,
            "SELECT e.user_id FROM inventory AS i JOIN enrollments AS e ON e.id = "
            "i.enrollment_id WHERE i.kind = 'declarative_status' ORDER BY e.user_id",
        )
        self.assertEqual(rows, [("",), ("ENROLLMENT-USER-2",)])
        reply = await device.declarative_management("tokens", user_id="NO-SUCH-USER")
        self.assertEqual(reply.code, 403)


#: Identities from links live 20 seconds here, so renewal is due at once.
SHORT_DAYS = 20 / 86400


class ServerCapabilities(TodayCase):
    def config_sections(self) -> dict[str, dict[str, Any]]:
        return {"enrollment": {"identity_days": SHORT_DAYS}}

    async def linked(self) -> SimulatedDevice:
        device: SimulatedDevice = await self.appliance.device_from_link()
        self.addCleanup(device.close)
        await device.enroll()
        return device

    async def test_the_payload_announces_them_and_a_renewal_keeps_the_enrolled_set(
        self,
    ) -> None:
        link, _ = await self.appliance.store.transaction(
            create_link, datetime.timedelta(days=1), "", "t"
        )
        config = self.appliance.config
        received = await fetch_profile(config.enrollment_url(link), config.pki.ca_cert)
        self.assertEqual(
            received.mdm["ServerCapabilities"],
            ["com.apple.mdm.per-user-connections", "com.apple.mdm.bootstraptoken"],
        )
        self.assertNotIn("com.apple.mdm.token", received.mdm["ServerCapabilities"])

        current, legacy = await self.linked(), await self.linked()
        # ``legacy`` enrolled before ServerCapabilities existed (migration 0012's '[]').
        await self.appliance.store.transaction(
            sql, "UPDATE enrollments SET server_capabilities = '[]' WHERE udid = ?", legacy.udid
        )
        stored = dict(query(self.db, "SELECT udid, server_capabilities FROM enrollments"))
        self.assertEqual(json.loads(stored[current.udid]), list(SERVER_CAPABILITIES))

        clock = task.Clock()
        clock.advance(time.time())
        factory = dataclasses.replace(
            profile_factory(config), identity_lifetime=datetime.timedelta(days=365)
        )
        renewals = await RenewalJob(
            self.appliance.store, factory, clock, datetime.timedelta(days=30)
        ).run_once()
        self.assertEqual(len(renewals), 2)
        for device in (current, legacy):
            self.assertEqual(len(await device.poll()), 1)
            self.assertEqual(len(device.adopted), 1, "the renewal was installed")
        self.assertEqual(current.adopted[0].mdm["ServerCapabilities"], list(SERVER_CAPABILITIES))
        self.assertNotIn("ServerCapabilities", legacy.adopted[0].mdm, "none added")
        stored = dict(query(self.db, "SELECT udid, server_capabilities FROM enrollments"))
        self.assertEqual(json.loads(stored[legacy.udid]), [], "re-Authenticate keeps the set")

        # Enrolling again (after CheckOut) is a new enrollment: today's set.
        await legacy.checkout()
        await legacy.enroll()
        stored = dict(query(self.db, "SELECT udid, server_capabilities FROM enrollments"))
        self.assertEqual(json.loads(stored[legacy.udid]), list(SERVER_CAPABILITIES))
