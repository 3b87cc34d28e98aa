"""What a device or an API client sends never produces a 5xx (issue 12, cases 2, 3 and 5):
each case here got 500 before; now it is refused with a clear 4xx, or kept raw and the queue
moves on. A refusal changes nothing."""

from __future__ import annotations

import base64
import datetime
import json
import time
from typing import Any

import treq
from twisted.internet import task
from twisted.web.client import HTTPConnectionPool

from mdmappliance.app.reactor import global_reactor
from mdmappliance.app.retention import RetentionJob
from mdmappliance.simulator.device import SimulatedDevice, detached_signature
from tests.support import local_users_sections, query, sql
from tests.test_devicechannel import DeviceChannelCase

PLIST_HEAD = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN"'
    b' "http://www.apple.com/DTDs/PropertyList-1.0.dtd">\n<plist version="1.0">'
)


def plist(inner: bytes) -> bytes:
    return PLIST_HEAD + inner + b"</plist>"


class HostileCase(DeviceChannelCase):
    """A device channel case (an appliance, a device, ``enqueue``) for hostile input."""

    timeout = 120

    async def enrolled(self) -> SimulatedDevice:
        device: SimulatedDevice = await self.appliance.enrolled(self)
        return device

    def state(self, command_uuid: str) -> str:
        return self.command_state(command_uuid)[0]


class PoisonResults(HostileCase):
    async def test_a_number_json_cannot_hold_is_kept_raw_and_the_queue_moves_on(self) -> None:
        device = await self.enrolled()
        for number in (b"nan", b"inf", b"-inf", b"1e400"):
            first = await self.enqueue(device, {"RequestType": "DeviceInformation"})
            behind = await self.enqueue(device, {"RequestType": "ProfileList"})
            offered = (await device.report("Idle")).plist()
            self.assertEqual(offered["CommandUUID"], first)
            body = plist(
                b"<dict><key>UDID</key><string>" + device.udid.encode() + b"</string>"
                b"<key>Status</key><string>Acknowledged</string>"
                b"<key>CommandUUID</key><string>" + first.encode() + b"</string>"
                b"<key>QueryResponses</key><dict><key>BatteryLevel</key><real>"
                + number
                + b"</real></dict></dict>"
            )
            reply = await device.put(device.server_path, body)
            self.assertEqual(reply.code, 200, (number, reply.body))
            self.assertEqual(reply.plist()["CommandUUID"], behind, "the queue moved on")
            self.assertEqual(self.state(first), "acknowledged")
            summary, raw = query(
                self.db,
                "SELECT r.summary, r.raw FROM command_results AS r JOIN commands AS c "
                "ON c.id = r.command_id WHERE c.uuid = ?",
                first,
            )[0]
            self.assertIn("cannot hold", json.loads(summary)["unreadable"])
            self.assertEqual(bytes(raw), body, "kept raw")
            ack = await device.report("Acknowledged", behind, ProfileList=[])
            self.assertEqual((ack.code, ack.body), (200, b""))
        unreadable = query(
            self.db, "SELECT count(*) FROM events WHERE kind = 'command.result_unreadable'"
        )
        self.assertEqual(unreadable, [(4,)])
        facts = query(self.db, "SELECT facts FROM devices WHERE udid = ?", device.udid)
        self.assertNotIn("BatteryLevel", json.loads(facts[0][0]), "the inventory is untouched")


class MalformedBodies(HostileCase):
    async def test_an_unreadable_date_is_a_400(self) -> None:
        device = await self.enrolled()
        before = query(self.db, "SELECT count(*) FROM events")
        for body in (
            plist(b"<dict><key>UDID</key><date>nope</date></dict>"),
            plist(
                b"<dict><key>MessageType</key><string>Authenticate</string>"
                b"<key>Date</key><date>2026-13-99</date></dict>"
            ),
        ):
            for path in (device.checkin_path, device.server_path):
                reply = await device.put(path, body)
                self.assertEqual(reply.code, 400, reply.body)
                self.assertIn(b"not a valid XML plist", reply.body)
        self.assertEqual(query(self.db, "SELECT count(*) FROM events"), before, "nothing written")


class MangledSignatures(HostileCase):
    async def test_a_signature_whose_certificate_does_not_parse_is_a_403(self) -> None:
        """Found fuzzing the SCEP server, which shares the CMS code: a signer certificate
        with an impossible version or key type raised past the CMS checks (a 500)."""
        device = await self.enrolled()
        assert device.identity is not None
        body = plist(
            b"<dict><key>UDID</key><string>" + device.udid.encode() + b"</string>"
            b"<key>Status</key><string>Idle</string></dict>"
        )
        signature = base64.b64decode(detached_signature(device.identity, body))
        version = b"\xa0\x03\x02\x01\x02"  # [0] EXPLICIT INTEGER 2: an X.509 v3 certificate
        rsa_oid = bytes.fromhex("06092a864886f70d010101")
        self.assertIn(version, signature)
        for mangled in (
            signature.replace(version, b"\xa0\x03\x02\x01\x57", 1),
            signature.replace(rsa_oid, bytes.fromhex("06092a864886f70d017101"), 1),
        ):
            reply = await device.put(
                device.server_path,
                body,
                headers={"Mdm-Signature": base64.b64encode(mangled)},
            )
            self.assertEqual(reply.code, 403, reply.body)


class DigestWithNonASCII(HostileCase):
    def config_sections(self) -> dict[str, dict[str, Any]]:
        return local_users_sections(self)

    async def test_a_non_ascii_response_is_a_wrong_password(self) -> None:
        device = await self.enrolled()
        user = "A522C2FB-D0BA-487E-BBC6-BE0DB2DC7883"
        challenge = (await device.user_authenticate(user)).plist()["DigestChallenge"]
        nonce = challenge.split('nonce="', 1)[1].split('"', 1)[0]
        response = (
            f'Digest username="cjoe", realm="mdmappliance", nonce="{nonce}", '
            'uri="/mdm/checkin", qop=auth, nc=00000001, cnonce="abc", response="ñø"'
        )
        reply = await device.user_authenticate(user, response)
        self.assertEqual(reply.code, 200, reply.body)
        self.assertEqual(reply.plist(), {"AuthToken": ""})


class AdminInput(HostileCase):
    async def call(self, method: str, path: str, body: bytes | None = None) -> tuple[int, Any]:
        pool = HTTPConnectionPool(global_reactor(), persistent=False)
        self.addCleanup(pool.closeCachedConnections)
        key = self.appliance.config.read_admin_api_key()
        headers: dict[bytes | str, bytes | str] = {
            "Authorization": f"Bearer {key}",
            "Content-Type": "application/json",
        }
        response = await treq.request(
            method, self.appliance.config.admin_url() + path, data=body, headers=headers, pool=pool
        )
        return response.code, json.loads(await response.content())

    async def test_bad_numbers_in_queries_are_400(self) -> None:
        for path in (
            "/v1/events?after=%C2%B9",
            "/v1/events?limit=%C2%B2",
            "/v1/devices?cursor=%C2%B3",
            "/v1/devices?limit=99999999999999999999999",
        ):
            code, body = await self.call("GET", path)
            self.assertEqual(code, 400, (path, body))
            self.assertTrue(body["errors"][0].split(":")[0] in ("after", "limit", "cursor"))

    async def test_a_huge_link_id_is_404(self) -> None:
        code, body = await self.call("DELETE", "/v1/enrollment-tokens/99999999999999999999999")
        self.assertEqual(code, 404, body)

    async def test_a_huge_lifetime_is_400(self) -> None:
        code, body = await self.call(
            "POST", "/v1/enrollment-tokens", b'{"expires": "99999999999999999999d"}'
        )
        self.assertEqual(code, 400, body)
        self.assertIn("expires:", body["errors"][0])
        self.assertEqual(query(self.db, "SELECT count(*) FROM enrollment_tokens"), [(0,)])

    async def test_deep_nesting_is_400(self) -> None:
        code, body = await self.call("POST", "/v1/commands", b"[" * 100_000 + b"]" * 100_000)
        self.assertEqual(code, 400, body)
        self.assertIn("nests too deep", body["errors"][0])

    async def test_nan_is_not_json(self) -> None:
        device = await self.enrolled()
        for constant in (b"NaN", b"Infinity", b"-Infinity"):
            body = (
                b'{"udids": ["' + device.udid.encode() + b'"], "unchecked": true, '
                b'"command": {"RequestType": "Future", "Value": ' + constant + b"}}"
            )
            code, reply = await self.call("POST", "/v1/commands", body)
            self.assertEqual(code, 400, reply)
            self.assertIn("not a JSON number", reply["errors"][0])
        self.assertEqual(query(self.db, "SELECT count(*) FROM commands"), [(0,)])


class StorageBound(HostileCase):
    """A device cannot fill the disk (case 1): NotNow keeps no body, and each enrollment's
    raw answers are bounded; past the bound answers are still read, their bodies dropped."""

    def config_sections(self) -> dict[str, dict[str, Any]]:
        return {"retention": {"result_bytes_per_enrollment": 65536}}

    def raw_sizes(self, command_uuid: str) -> list[int]:
        rows = query(
            self.db,
            "SELECT length(r.raw) FROM command_results AS r JOIN commands AS c "
            "ON c.id = r.command_id WHERE c.uuid = ? ORDER BY r.id",
            command_uuid,
        )
        return [row[0] for row in rows]

    async def test_not_now_keeps_no_body(self) -> None:
        device = await self.enrolled()
        command_uuid = await self.enqueue(device, {"RequestType": "ProfileList"})
        padding = "x" * 1_000_000
        for _ in range(5):
            offered = (await device.report("Idle")).plist()
            self.assertEqual(offered["CommandUUID"], command_uuid)
            reply = await device.report("NotNow", command_uuid, Padding=padding)
            self.assertEqual((reply.code, reply.body), (200, b""))
            await device.close()  # a new connection: the command is offered again
        self.assertEqual(self.raw_sizes(command_uuid), [0] * 5)
        self.assertEqual(query(self.db, "SELECT result_bytes FROM enrollments"), [(0,)])

    async def test_answers_past_the_bound_are_read_and_their_bodies_dropped(self) -> None:
        device = await self.enrolled()
        profiles = [
            {"PayloadIdentifier": f"com.example.p{n}", "PayloadUUID": "U" * 1000} for n in range(30)
        ]
        uuids = [await self.enqueue(device, {"RequestType": "ProfileList"}) for _ in range(3)]
        reply = await device.report("Idle")
        for command_uuid in uuids:
            self.assertEqual(reply.plist()["CommandUUID"], command_uuid)
            reply = await device.report("Acknowledged", command_uuid, ProfileList=profiles)
            self.assertEqual(reply.code, 200)
        kept, dropped, also_dropped = (self.raw_sizes(u) for u in uuids)
        self.assertGreater(kept[0], 30_000)
        self.assertEqual((dropped, also_dropped), ([0], [0]))
        events = query(self.db, "SELECT detail FROM events WHERE kind = 'command.result_dropped'")
        self.assertEqual([json.loads(d)["command_uuid"] for (d,) in events], uuids[1:])
        summary = query(
            self.db,
            "SELECT r.summary FROM command_results AS r JOIN commands AS c "
            "ON c.id = r.command_id WHERE c.uuid = ?",
            uuids[2],
        )[0][0]
        self.assertIn("raw_dropped", json.loads(summary))
        self.assertEqual(json.loads(summary)["profiles"], 30, "still read")
        inventory = query(self.db, "SELECT command_uuid FROM inventory WHERE kind = 'profiles'")
        self.assertEqual(inventory, [(uuids[2],)], "the inventory follows the latest answer")
        self.assertEqual(query(self.db, "SELECT result_bytes FROM enrollments"), [(kept[0],)])

        # Retention gives the room back: once old answers are pruned, bodies are kept again.
        await self.appliance.store.transaction(
            sql, "UPDATE commands SET updated_at = '2000-01-01T00:00:00.000Z'"
        )
        clock = task.Clock()
        clock.advance(time.time())
        job = RetentionJob(self.appliance.store, clock, datetime.timedelta(days=90))
        self.assertEqual((await job.run_once())["commands"], 3)
        self.assertEqual(query(self.db, "SELECT result_bytes FROM enrollments"), [(0,)])
        again = await self.enqueue(device, {"RequestType": "ProfileList"})
        reply = await device.report("Idle")
        self.assertEqual(reply.plist()["CommandUUID"], again)
        await device.report("Acknowledged", again, ProfileList=profiles)
        self.assertGreater(self.raw_sizes(again)[0], 30_000)


class TodaysCheckinTypes(HostileCase):
    """The check-in types of today's devices (issue 16), each with a key of the wrong type,
    size or form: 400, and nothing written."""

    async def test_mangled_messages_are_400_and_change_nothing(self) -> None:
        device = await self.enrolled()
        base = {"UDID": device.udid}
        deep = b"[" * 10_000 + b"]" * 10_000
        cases: list[dict[str, Any]] = [
            {"MessageType": "SetBootstrapToken", "BootstrapToken": "a string"},
            {"MessageType": "SetBootstrapToken", "BootstrapToken": b"x" * (16 * 1024 + 1)},
            {"MessageType": "SetBootstrapToken", "BootstrapToken": b"t", "UserID": "501"},
            {"MessageType": "SetBootstrapToken", "AwaitingConfiguration": "yes"},
            {"MessageType": "GetBootstrapToken", "AwaitingConfiguration": 1},
            {"MessageType": "GetToken"},
            {"MessageType": "GetToken", "TokenServiceType": "com.apple.other"},
            {
                "MessageType": "GetToken",
                "TokenServiceType": "com.apple.maid",
                "TokenParameters": [],
            },
            {
                "MessageType": "GetToken",
                "TokenServiceType": "com.apple.watch.pairing",
                "TokenParameters": {"PhoneUDID": 7},
            },
            {"MessageType": "DeclarativeManagement"},
            {"MessageType": "DeclarativeManagement", "Endpoint": "status"},
            {"MessageType": "DeclarativeManagement", "Endpoint": "status", "Data": "{}"},
            {"MessageType": "DeclarativeManagement", "Endpoint": "status", "Data": deep},
            {"MessageType": "DeclarativeManagement", "Endpoint": "status", "Data": b"\xff\xfe"},
            {"MessageType": "DeclarativeManagement", "Endpoint": "status", "Data": b'{"a": 1e999}'},
            {
                "MessageType": "DeclarativeManagement",
                "Endpoint": "status",
                "Data": b"{" * 40 + b"}" * 40,
            },
            {"MessageType": "DeclarativeManagement", "Endpoint": "../../etc"},
            {
                "MessageType": "DeclarativeManagement",
                "Endpoint": "tokens",
                "Data": b"x" * (1024 * 1024 + 1),
            },
        ]
        before = query(self.db, "SELECT count(*) FROM events")
        for case in cases:
            reply = await device.put(device.checkin_path, {**base, **case})
            self.assertEqual(reply.code, 400, (case.get("MessageType"), reply.body[:200]))
        for identifier in ("short", "has spaces in it", "x" * 200, "-leading-hyphen"):
            message = {"MessageType": "Authenticate", "EnrollmentID": identifier}
            reply = await device.put(device.checkin_path, {**message, "Topic": device.topic})
            self.assertEqual(reply.code, 400, identifier)
        self.assertEqual(query(self.db, "SELECT count(*) FROM events"), before, "nothing written")
        self.assertEqual(query(self.db, "SELECT count(*) FROM inventory"), [(0,)])
