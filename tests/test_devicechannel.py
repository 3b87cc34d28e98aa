"""The device channel over real mTLS on loopback, driven by the device simulator."""

from __future__ import annotations

import plistlib
import sqlite3
from pathlib import Path
from typing import Any

from twisted.trial.unittest import TestCase
from twisted.web.client import ResponseNeverReceived

from mdmappliance.commands.queue import enqueue, next_command
from mdmappliance.core.timestamps import utc_timestamp
from mdmappliance.device.binding import LAST_SEEN_EVERY
from mdmappliance.device.routes import utc_now
from mdmappliance.pki.escrow import Escrow, read_key
from mdmappliance.simulator.device import SimulatedDevice
from mdmappliance.store import Tx
from mdmappliance.store.commands import EXPIRY_DUE
from tests.support import (
    TESTDATA,
    InProcessAppliance,
    get_enrollment,
    local_users_sections,
    query,
    sql,
    testdata,
)


def dump(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


class DeviceChannelCase(TestCase):
    def config_sections(self) -> dict[str, dict[str, Any]]:
        """Config keys this case sets beyond a fresh installation's."""
        return {}

    def setUp(self) -> None:
        self.appliance = InProcessAppliance(Path(self.mktemp()), **self.config_sections())
        self.addCleanup(self.appliance.stop)
        self.db = self.appliance.config.store.path

    def device(self, **kw: Any) -> SimulatedDevice:
        device: SimulatedDevice = self.appliance.device(**kw)
        self.addCleanup(device.close)
        return device

    async def enqueue(
        self, device: SimulatedDevice, command: dict[str, Any], user_id: str = "", **kw: Any
    ) -> str:
        def add(tx: Tx) -> str:
            enrollment = get_enrollment(tx, device.udid, user_id)
            assert enrollment is not None
            return enqueue(tx, enrollment.id, command, **kw)

        result: str = await self.appliance.store.transaction(add)
        return result

    def command_state(self, command_uuid: str) -> tuple[str, int, int]:
        rows = query(
            self.db,
            "SELECT state, not_now_count, send_count FROM commands WHERE uuid = ?",
            command_uuid,
        )
        return rows[0]

    def identity_of(self, device: SimulatedDevice) -> Any:
        assert device.identity is not None
        return device.identity

    async def settle(self) -> None:
        """Wait for writes queued on the store thread (audit events follow the reply)."""
        await self.appliance.store.run(lambda conn: None)

    def events(self, kind: str) -> list[tuple[Any, ...]]:
        return query(self.db, "SELECT actor, subject, detail FROM events WHERE kind = ?", kind)


class Enrollment(DeviceChannelCase):
    def config_sections(self) -> dict[str, dict[str, Any]]:
        return {"device": {"topic": ""}}

    async def test_authenticate_token_update_checkout(self) -> None:
        device = self.device()
        reply = await device.authenticate()
        self.assertEqual((reply.code, reply.body), (200, b""))
        state = query(
            self.db, "SELECT state, token_valid FROM enrollments WHERE udid = ?", device.udid
        )
        self.assertEqual(state, [("authenticated", 0)], "not pushable before TokenUpdate")
        facts = query(
            self.db,
            "SELECT serial_number, os_version, model FROM devices WHERE udid = ?",
            device.udid,
        )
        self.assertEqual(facts, [("SIM" + device.udid[:9], "17.1", "iPhone14,2")])
        bound = query(self.db, "SELECT udid FROM identities WHERE current = 1")
        self.assertEqual(bound, [(device.udid,)])

        unlock = b"\x01UNLOCK-TOKEN-SECRET" * 10
        reply = await device.token_update(unlock_token=unlock)
        self.assertEqual(reply.code, 200)
        row = query(
            self.db,
            "SELECT state, token_valid, push_token, push_magic, "
            "unlock_token_sealed FROM enrollments WHERE udid = ?",
            device.udid,
        )
        state, valid, token, magic, sealed = row[0]
        self.assertEqual(
            (state, valid, token, magic), ("enrolled", 1, device.token, device.push_magic)
        )
        self.assertNotIn(b"UNLOCK-TOKEN-SECRET", sealed, "escrowed encrypted, never in clear")
        escrow = Escrow(read_key(self.appliance.config.device.unlock_key_file))
        self.assertEqual(escrow.open(sealed, device.udid), unlock)

        reply = await device.report("Idle")
        self.assertEqual((reply.code, reply.body), (200, b""), "zero-length when nothing queued")

        reply = await device.checkout()
        self.assertEqual(reply.code, 200)
        self.assertEqual(
            query(
                self.db, "SELECT state, token_valid FROM enrollments WHERE udid = ?", device.udid
            ),
            [("checked_out", 0)],
        )
        reply = await device.report("Idle")
        self.assertEqual(reply.code, 401, "a checked-out device is not managed")
        kinds = [k for (k,) in query(self.db, "SELECT kind FROM events ORDER BY id")]
        for kind in ("checkin.authenticate", "checkin.token_update", "checkin.checkout"):
            self.assertIn(kind, kinds)

    async def test_reenrollment_after_checkout(self) -> None:
        device = self.device()
        await device.enroll()
        await device.checkout()
        await device.enroll()
        reply = await device.report("Idle")
        self.assertEqual(reply.code, 200)

    async def test_real_capture_authenticate(self) -> None:
        capture = testdata("commandment", "testdata", "Authenticate", "iOS-11.3.1-cell.xml")
        message = plistlib.loads(capture.read_bytes())
        device = self.device(udid=message["UDID"])
        reply = await device.put(device.checkin_path, capture.read_bytes())
        self.assertEqual(reply.code, 200, reply.body)
        row = query(
            self.db, "SELECT imei, product_name FROM devices WHERE udid = ?", message["UDID"]
        )
        self.assertEqual(row, [(message.get("IMEI"), message.get("ProductName"))])

    async def test_any_mgmt_topic_until_one_is_configured(self) -> None:
        device = self.device(topic="com.apple.mgmt.External.other")
        await device.authenticate()
        self.assertEqual((await device.token_update()).code, 200)
        self.assertEqual(
            query(self.db, "SELECT topic FROM enrollments"), [("com.apple.mgmt.External.other",)]
        )


class ConfiguredTopic(DeviceChannelCase):
    def config_sections(self) -> dict[str, dict[str, Any]]:
        return {"device": {"topic": "com.apple.mgmt.External.test-topic"}}

    async def test_token_update_for_another_topic_is_refused(self) -> None:
        device = self.device(topic="com.apple.mgmt.External.other")
        await device.authenticate()
        before = query(self.db, "SELECT state, token_valid FROM enrollments")
        reply = await device.token_update()
        self.assertEqual(reply.code, 403)
        self.assertIn(b"this server pushes on", reply.body)
        self.assertEqual(query(self.db, "SELECT state, token_valid FROM enrollments"), before)


class Queue(DeviceChannelCase):
    async def test_fifo_results_stored(self) -> None:
        device = self.device()
        await device.enroll()
        uuids = [
            await self.enqueue(
                device, {"RequestType": "DeviceInformation", "Queries": ["SerialNumber", str(n)]}
            )
            for n in range(3)
        ]
        received = await device.poll()
        self.assertEqual(received, uuids)
        for command_uuid in uuids:
            self.assertEqual(self.command_state(command_uuid), ("acknowledged", 0, 1))
        results = query(
            self.db,
            "SELECT c.uuid, r.status, r.raw FROM command_results r "
            "JOIN commands c ON c.id = r.command_id ORDER BY r.id",
        )
        self.assertEqual([(u, s) for u, s, _ in results], [(u, "Acknowledged") for u in uuids])
        self.assertEqual(plistlib.loads(results[0][2])["CommandUUID"], uuids[0])

    async def test_priority_goes_first(self) -> None:
        device = self.device()
        await device.enroll()
        low = await self.enqueue(device, {"RequestType": "ProfileList"})
        high = await self.enqueue(device, {"RequestType": "DeviceLock"}, priority=10)
        self.assertEqual(await device.poll(), [high, low])

    async def test_command_payload(self) -> None:
        device = self.device()
        await device.enroll()
        command_uuid = await self.enqueue(
            device, {"RequestType": "InstallProfile", "Payload": b"\x00profile"}
        )
        reply = await device.report("Idle")
        self.assertEqual(
            reply.plist(),
            {
                "CommandUUID": command_uuid,
                "Command": {"RequestType": "InstallProfile", "Payload": b"\x00profile"},
            },
        )
        self.assertEqual(reply.code, 200)

    async def test_error_with_error_chain(self) -> None:
        device = self.device()
        await device.enroll()
        command_uuid = await self.enqueue(
            device, {"RequestType": "RemoveProfile", "Identifier": "x"}
        )
        chain = [
            {
                "ErrorCode": 12013,
                "ErrorDomain": "MCMDMErrorDomain",
                "LocalizedDescription": "The profile is not managed by MDM.",
                "USEnglishDescription": "The profile is not managed by MDM.",
            }
        ]
        await device.poll(lambda command: ("Error", {"ErrorChain": chain}))
        self.assertEqual(self.command_state(command_uuid)[0], "error")
        stored = query(self.db, "SELECT error_chain FROM command_results")
        self.assertIn("12013", stored[0][0])

    async def test_not_now_is_not_offered_again_on_the_same_connection(self) -> None:
        device = self.device()
        await device.enroll()
        first = await self.enqueue(
            device, {"RequestType": "InstallApplication", "iTunesStoreID": 1}
        )
        second = await self.enqueue(device, {"RequestType": "ProfileList"})

        def not_now_first(command: dict[str, Any]) -> tuple[str, dict[str, Any]]:
            return ("NotNow", {}) if command["CommandUUID"] == first else ("Acknowledged", {})

        self.assertEqual(await device.poll(not_now_first), [first, second])
        self.assertEqual(self.command_state(first), ("not_now", 1, 1))
        self.assertEqual(self.command_state(second)[0], "acknowledged")
        # The same connection: the NotNow command is not offered again.
        self.assertEqual((await device.report("Idle")).body, b"")
        # A later poll, on a new connection, gets it again with the same UUID.
        await device.close()
        self.assertEqual(await device.poll(), [first])
        self.assertEqual(self.command_state(first), ("acknowledged", 1, 2))

    async def test_not_now_without_keepalive_is_not_offered_in_the_reply(self) -> None:
        device = self.device(persistent=False)
        await device.enroll()
        only = await self.enqueue(device, {"RequestType": "ProfileList"})
        received = await device.poll(lambda command: ("NotNow", {}))
        self.assertEqual(received, [only])
        self.assertEqual(self.command_state(only), ("not_now", 1, 1))

    async def test_sent_but_unanswered_is_resent_with_the_same_uuid(self) -> None:
        device = self.device()
        await device.enroll()
        command_uuid = await self.enqueue(device, {"RequestType": "ProfileList"})
        first = await device.report("Idle")
        self.assertEqual(first.plist()["CommandUUID"], command_uuid)
        self.assertEqual(self.command_state(command_uuid)[0], "sent")
        await device.close()  # the device lost the reply and polls again later
        self.assertEqual(await device.poll(), [command_uuid])

    async def test_duplicate_result_is_idempotent(self) -> None:
        device = self.device()
        await device.enroll()
        command_uuid = await self.enqueue(device, {"RequestType": "ProfileList"})
        await device.poll()
        tables = ("commands", "command_results", "inventory")
        before = [query(self.db, f"SELECT * FROM {table}") for table in tables]
        reply = await device.report("Acknowledged", command_uuid, ProfileList=[])
        self.assertEqual((reply.code, reply.body), (200, b""))
        self.assertEqual([query(self.db, f"SELECT * FROM {table}") for table in tables], before)

    async def test_result_for_unknown_or_foreign_command_changes_no_queue(self) -> None:
        device, other = self.device(), self.device()
        await device.enroll()
        await other.enroll()
        theirs = await self.enqueue(other, {"RequestType": "ProfileList"})
        queue_before = query(self.db, "SELECT uuid, state FROM commands")
        for command_uuid in ("00000000-0000-0000-0000-000000000000", theirs):
            reply = await device.report("Acknowledged", command_uuid)
            self.assertEqual(reply.code, 200)
        self.assertEqual(query(self.db, "SELECT uuid, state FROM commands"), queue_before)
        self.assertEqual(len(self.events("command.result_unmatched")), 2)

    async def test_expired_command_is_not_sent(self) -> None:
        device = self.device()
        await device.enroll()
        stale = await self.enqueue(
            device, {"RequestType": "ProfileList"}, expires_at="2000-01-01T00:00:00.000Z"
        )
        fresh = await self.enqueue(device, {"RequestType": "CertificateList"})
        self.assertEqual(await device.poll(), [fresh])
        self.assertEqual(self.command_state(stale)[0], "expired")
        self.assertEqual(len(self.events("command.expired")), 1)

    async def test_a_due_command_behind_the_next_one_is_expired_at_the_same_poll(self) -> None:
        # The poll reads the next command and whether any is due in one statement; one due
        # behind the command sent still expires at this poll, with its event.
        device = self.device()
        await device.enroll()
        fresh = await self.enqueue(device, {"RequestType": "CertificateList"})
        stale = await self.enqueue(
            device, {"RequestType": "ProfileList"}, expires_at="2000-01-01T00:00:00.000Z"
        )
        self.assertEqual(await device.poll(), [fresh])
        self.assertEqual(self.command_state(stale)[0], "expired")
        self.assertEqual(len(self.events("command.expired")), 1)

    async def test_the_next_command_says_when_expiry_is_due_even_if_all_are_skipped(
        self,
    ) -> None:
        device = self.device()
        await device.enroll()
        stale = await self.enqueue(
            device, {"RequestType": "ProfileList"}, expires_at="2000-01-01T00:00:00.000Z"
        )
        now = "2026-01-01T00:00:00.000Z"

        def ask(tx: Tx) -> tuple[object, object]:
            enrollment = get_enrollment(tx, device.udid)
            assert enrollment is not None
            skipped = tx.commands.next_pending(enrollment.id, [stale], now)
            return skipped, next_command(tx, enrollment.id, [stale])

        skipped, sent = await self.appliance.store.transaction(ask)
        self.assertIs(skipped, EXPIRY_DUE, "nothing to send, but a skipped one is due")
        self.assertIsNone(sent)
        self.assertEqual(self.command_state(stale), ("expired", 0, 0))
        self.assertEqual(len(self.events("command.expired")), 1)


class Identity(DeviceChannelCase):
    async def test_another_devices_certificate_is_refused_and_audited(self) -> None:
        victim, attacker = self.device(), self.device()
        await victim.enroll()
        await attacker.enroll()
        impostor = self.device(udid=victim.udid, identity=attacker.identity)
        before = query(self.db, "SELECT * FROM enrollments WHERE udid = ?", victim.udid)
        for attempt in (
            impostor.token_update,
            lambda: impostor.report("Idle"),
            impostor.checkout,
            impostor.authenticate,
        ):
            reply = await attempt()
            self.assertEqual(reply.code, 403)
        self.assertEqual(
            query(self.db, "SELECT * FROM enrollments WHERE udid = ?", victim.udid), before
        )
        await self.settle()
        self.assertEqual(len(self.events("device.refused")), 4)

    async def test_unknown_device_gets_401(self) -> None:
        stranger = self.device()
        for attempt in (stranger.token_update, lambda: stranger.report("Idle"), stranger.checkout):
            self.assertEqual((await attempt()).code, 401)
        self.assertEqual(query(self.db, "SELECT count(*) FROM enrollments"), [(0,)])

    async def test_only_a_renewal_rebinds_a_managed_device(self) -> None:
        from mdmappliance.enrollment.links import record_issued

        device = self.device()
        await device.enroll()
        intruder = self.device(udid=device.udid)  # a fresh identity from the same CA
        for attempt in (lambda: intruder.report("Idle"), intruder.authenticate):
            self.assertEqual((await attempt()).code, 403, "no takeover of a managed UDID")
        self.assertEqual((await device.report("Idle")).code, 200, "the device is untouched")

        renewed = self.device(udid=device.udid)
        certificate = self.identity_of(renewed).certificate
        await self.appliance.store.transaction(record_issued, certificate, udid=device.udid)
        self.assertEqual((await renewed.report("Idle")).code, 403, "not before Authenticate")
        await renewed.enroll()
        self.assertEqual((await renewed.report("Idle")).code, 200)
        self.assertEqual((await device.report("Idle")).code, 403, "the old one is unbound")
        self.assertEqual(
            query(self.db, "SELECT count(*) FROM identities WHERE udid = ?", device.udid), [(2,)]
        )

    async def test_after_checkout_any_trusted_certificate_enrolls_again(self) -> None:
        device = self.device()
        await device.enroll()
        await device.checkout()
        again = self.device(udid=device.udid)
        await again.enroll()
        self.assertEqual((await again.report("Idle")).code, 200)

    async def test_one_certificate_never_serves_two_udids(self) -> None:
        device = self.device()
        await device.enroll()
        twin = self.device(identity=device.identity)
        reply = await twin.authenticate()
        self.assertEqual(reply.code, 403)
        self.assertEqual(query(self.db, "SELECT count(*) FROM devices"), [(1,)])

    async def test_tls_demands_a_certificate_from_a_trusted_ca(self) -> None:
        anonymous = self.device(identity=None)
        with self.assertRaises(ResponseNeverReceived):
            await anonymous.authenticate()
        from mdmappliance import pki
        from mdmappliance.simulator.device import issue_device_identity

        elsewhere = Path(self.mktemp())
        elsewhere.mkdir()
        other_ca = pki.create_ca("someone else")
        (elsewhere / "ca.pem").write_bytes(pki.certificate_pem(other_ca.certificate))
        (elsewhere / "ca.key").write_bytes(pki.private_key_pem(other_ca.key))
        foreign = self.device(
            identity=issue_device_identity(elsewhere / "ca.pem", elsewhere / "ca.key", "X" * 40)
        )
        with self.assertRaises(ResponseNeverReceived):
            await foreign.authenticate()
        self.assertEqual(query(self.db, "SELECT count(*) FROM devices"), [(0,)])


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = [value]
    return value


class BadInput(DeviceChannelCase):
    """Each bad input gets its status, and the database stays exactly as it was."""

    async def test_each_bad_input(self) -> None:
        device = self.device()
        await device.enroll()
        await self.enqueue(device, {"RequestType": "ProfileList"})
        udid = device.udid
        token_update = {
            "MessageType": "TokenUpdate",
            "UDID": udid,
            "Topic": "com.apple.mgmt.External.test-topic",
            "Token": b"t" * 32,
            "PushMagic": "magic",
        }
        checkin, server = device.checkin_path, device.server_path
        redacted = TESTDATA / "commandment" / "testdata" / "TokenUpdate" / "iOS-11.3.1.xml"
        # The redacted capture (<data>Base64=</data>) is one more case where the data is here.
        cases: list[tuple[str, str, bytes | dict[str, Any], int]] = [
            ("binary plist", checkin, plistlib.dumps(token_update, fmt=plistlib.FMT_BINARY), 400),
            ("not XML", checkin, b"<plist><dict><key>UDID</key>", 400),
            ("empty body", server, b"", 400),
            ("array, not dictionary", server, plistlib.dumps([udid]), 400),
            ("too deep", server, {"UDID": udid, "Status": "Idle", "X": nested(40)}, 400),
            ("missing UDID", server, {"Status": "Idle"}, 400),
            ("UDID form", server, {"UDID": "../../etc/passwd", "Status": "Idle"}, 400),
            ("UDID type", server, {"UDID": 12345678, "Status": "Idle"}, 400),
            ("Token too long", checkin, {**token_update, "Token": b"t" * 101}, 400),
            ("Token empty", checkin, {**token_update, "Token": b""}, 400),
            ("Token not data", checkin, {**token_update, "Token": "dGVzdA=="}, 400),
            (
                "PushMagic missing",
                checkin,
                {k: v for k, v in token_update.items() if k != "PushMagic"},
                400,
            ),
            ("Topic prefix", checkin, {**token_update, "Topic": "com.example.push"}, 400),
            ("unknown MessageType", checkin, {**token_update, "MessageType": "Enroll"}, 400),
            ("bad Status", server, {"UDID": udid, "Status": "Done", "CommandUUID": "x"}, 400),
            ("result without CommandUUID", server, {"UDID": udid, "Status": "Acknowledged"}, 400),
            (
                "ErrorChain type",
                server,
                {"UDID": udid, "Status": "Error", "CommandUUID": "x", "ErrorChain": "broken"},
                400,
            ),
            ("report at the CheckInURL", checkin, {"UDID": udid, "Status": "Idle"}, 400),
            ("neither MessageType nor Status", server, {"UDID": udid}, 400),
            ("unknown path", "/mdm/other", token_update, 404),
        ]
        if redacted.exists():
            cases.append(("invalid base64 (redacted capture)", checkin, redacted.read_bytes(), 400))
        before = dump(self.db)
        for label, path, message, status in cases:
            reply = await device.put(path, message)
            self.assertEqual(reply.code, status, f"{label}: {reply.body!r}")
            self.assertTrue(
                reply.body.endswith(b"\n") and reply.body.count(b"\n") == 1,
                f"{label}: one line of reason, got {reply.body!r}",
            )
        await self.settle()
        self.assertEqual(dump(self.db), before)

    async def test_method_must_be_put(self) -> None:
        device = self.device()
        response = await device.client.get(self.appliance.base_url + device.server_path)
        self.assertEqual(response.code, 405)
        await response.content()

    async def test_body_too_large_is_refused_before_it_is_read(self) -> None:
        limit = self.appliance.config.device.max_body_bytes
        device = self.device()
        await device.enroll()
        before = dump(self.db)
        big = plistlib.dumps({"UDID": device.udid, "Status": "Idle", "Pad": "x" * limit})
        reply = await device.put(device.server_path, big)
        self.assertEqual(reply.code, 413)
        await device.close()
        self.assertEqual((await device.report("Idle")).code, 200, "the next connection works")
        await self.settle()
        self.assertEqual(dump(self.db)[:5], before[:5])


class SignedMessages(DeviceChannelCase):
    async def test_sign_message_device(self) -> None:
        device = self.device(sign_messages=True)
        await device.enroll()
        command_uuid = await self.enqueue(device, {"RequestType": "ProfileList"})
        self.assertEqual(await device.poll(), [command_uuid])

    async def test_signature_over_another_body_is_refused(self) -> None:
        from mdmappliance.simulator.device import detached_signature

        device = self.device()
        await device.enroll()
        forged = detached_signature(self.identity_of(device), b"some other body")
        reply = await device.put(
            device.server_path, {"UDID": device.udid, "Status": "Idle"}, {"Mdm-Signature": forged}
        )
        self.assertEqual(reply.code, 403)
        self.assertIn(b"messageDigest does not match", reply.body)

    async def test_signer_must_be_the_tls_certificate(self) -> None:
        from mdmappliance.simulator.device import detached_signature

        device, other = self.device(), self.device()
        await device.enroll()
        body = plistlib.dumps({"UDID": device.udid, "Status": "Idle"})
        reply = await device.put(
            device.server_path,
            body,
            {"Mdm-Signature": detached_signature(self.identity_of(other), body)},
        )
        self.assertEqual(reply.code, 403)
        self.assertIn(b"different certificates", reply.body)

    async def test_garbage_signature_is_refused(self) -> None:
        device = self.device()
        await device.enroll()
        reply = await device.put(
            device.server_path,
            {"UDID": device.udid, "Status": "Idle"},
            {"Mdm-Signature": "bm90IGEgc2lnbmF0dXJl"},
        )
        self.assertEqual(reply.code, 403)


class UserChannels(DeviceChannelCase):
    async def test_user_channel_has_its_own_token_and_queue(self) -> None:
        device = self.device()
        await device.enroll()
        user = "A522C2FB-D0BA-487E-BBC6-BE0DB2DC7883"
        reply = await device.token_update(
            user_id=user, UserShortName="cjoe", UserLongName="Commando Joe", NotOnConsole=False
        )
        self.assertEqual(reply.code, 200)
        rows = query(self.db, "SELECT user_id, user_short_name, state FROM enrollments ORDER BY id")
        self.assertEqual(rows, [("", None, "enrolled"), (user, "cjoe", "enrolled")])
        for_user = await self.enqueue(device, {"RequestType": "ProfileList"}, user_id=user)
        for_device = await self.enqueue(device, {"RequestType": "DeviceInformation"})
        self.assertEqual(await device.poll(), [for_device])
        reply = await device.report("Idle", UserID=user)
        self.assertEqual(reply.plist()["CommandUUID"], for_user)
        reply = await device.report("Acknowledged", for_user, UserID=user)
        self.assertEqual(reply.body, b"")

    async def test_user_authenticate_without_users_is_open(self) -> None:
        device = self.device()
        await device.enroll()
        reply = await device.user_authenticate("USER-1")
        self.assertEqual(reply.plist(), {"DigestChallenge": ""})


class LocalNetworkUsers(DeviceChannelCase):
    def config_sections(self) -> dict[str, dict[str, Any]]:
        return local_users_sections(self)

    async def test_digest_flow_and_auth_token(self) -> None:
        from mdmappliance.simulator.device import digest_response

        device = self.device()
        await device.enroll()
        user = "A522C2FB-D0BA-487E-BBC6-BE0DB2DC7883"
        challenge = (await device.user_authenticate(user)).plist()["DigestChallenge"]
        self.assertIn('realm="mdmappliance"', challenge)
        wrong = digest_response("cjoe", "guess", "mdmappliance", challenge, "/mdm/checkin")
        self.assertEqual((await device.user_authenticate(user, wrong)).plist(), {"AuthToken": ""})
        replayed = (await device.user_authenticate(user, wrong)).plist()
        self.assertEqual(replayed, {"AuthToken": ""}, "a nonce is single use")

        challenge = (await device.user_authenticate(user)).plist()["DigestChallenge"]
        right = digest_response("cjoe", "s3cret", "mdmappliance", challenge, "/mdm/checkin")
        token = (await device.user_authenticate(user, right)).plist()["AuthToken"]
        self.assertGreater(len(token), 20)

        reply = await device.token_update(user_id=user)
        self.assertEqual(reply.code, 403, "the AuthToken is required from now on")
        reply = await device.token_update(user_id=user, AuthToken=token)
        self.assertEqual(reply.code, 200)
        self.assertEqual((await device.report("Idle", UserID=user)).code, 403)
        self.assertEqual((await device.report("Idle", UserID=user, AuthToken=token)).code, 200)


class ProxyMode(DeviceChannelCase):
    """Plain HTTP behind a TLS-terminating proxy: Mdm-Signature, or a trusted Client-Cert."""

    def config_sections(self) -> dict[str, dict[str, Any]]:
        from tests.support import free_port

        self.proxy_port = free_port()
        self.proxy_url = f"http://127.0.0.1:{self.proxy_port}"
        return {
            "proxy": {"enabled": True, "port": self.proxy_port, "trusted_proxies": ["127.0.0.1"]}
        }

    def client_cert_header(self, device: SimulatedDevice) -> dict[bytes | str, bytes | str]:
        import base64

        from cryptography.hazmat.primitives.serialization import Encoding

        assert device.identity is not None
        der = device.identity.certificate.public_bytes(Encoding.DER)
        return {"Client-Cert": ":" + base64.b64encode(der).decode() + ":"}

    async def test_signed_messages_through_the_proxy(self) -> None:
        device = self.device(base_url=self.proxy_url, sign_messages=True)
        await device.enroll()
        command_uuid = await self.enqueue(device, {"RequestType": "ProfileList"})
        self.assertEqual(await device.poll(), [command_uuid])

    async def test_unsigned_message_without_identity_is_refused(self) -> None:
        device = self.device(base_url=self.proxy_url)
        reply = await device.authenticate()
        self.assertEqual(reply.code, 403)
        self.assertIn(b"no device identity", reply.body)

    async def test_client_cert_header_from_a_trusted_proxy(self) -> None:
        device = self.device(base_url=self.proxy_url)
        device.extra_headers.update(self.client_cert_header(device))
        await device.enroll()
        self.assertEqual((await device.report("Idle")).code, 200)

    async def test_a_revoked_client_cert_is_refused_at_once(self) -> None:
        """The proxy's Client-Cert is chain-checked once per certificate, but revocation is
        the store's, read on every request."""
        device = self.device(base_url=self.proxy_url)
        device.extra_headers.update(self.client_cert_header(device))
        await device.enroll()
        self.assertEqual((await device.report("Idle")).code, 200)
        await self.appliance.store.transaction(
            lambda tx: tx.enrollments.revoke_identities(device.udid, "2026-12-02T00:00:00Z")
        )
        reply = await device.report("Idle")
        self.assertEqual(reply.code, 403)
        self.assertIn(b"revoked", reply.body)

    async def test_client_cert_header_from_elsewhere_is_ignored(self) -> None:
        device = self.device(base_url=self.proxy_url, bind_address="127.0.0.2")
        device.extra_headers.update(self.client_cert_header(device))
        reply = await device.authenticate()
        self.assertEqual(reply.code, 403)
        self.assertIn(b"no device identity", reply.body)
        self.assertEqual(query(self.db, "SELECT count(*) FROM devices"), [(0,)])

    async def test_client_cert_header_is_ignored_on_the_tls_listener(self) -> None:
        device, other = self.device(), self.device()
        await device.enroll()
        device.extra_headers.update(self.client_cert_header(other))
        self.assertEqual((await device.report("Idle")).code, 200, "TLS identity, header unused")


class Details(DeviceChannelCase):
    async def test_cancel_and_enqueue_by_udid(self) -> None:
        from mdmappliance.commands.errors import CommandRejected
        from mdmappliance.commands.queue import cancel, enqueue_for_device

        device = self.device()
        await device.enroll()
        store = self.appliance.store
        kept = await store.transaction(
            enqueue_for_device, device.udid, {"RequestType": "ProfileList"}
        )
        dropped = await store.transaction(
            enqueue_for_device, device.udid, {"RequestType": "DeviceLock"}
        )
        self.assertTrue(await store.transaction(cancel, dropped, actor="admin"))
        self.assertEqual(await device.poll(), [kept])
        self.assertFalse(await store.transaction(cancel, kept), "answered: too late")
        self.assertEqual(self.command_state(dropped)[0], "canceled")
        with self.assertRaises(CommandRejected):
            await store.transaction(
                enqueue_for_device, "UNKNOWN-UDID", {"RequestType": "ProfileList"}
            )
        with self.assertRaises(CommandRejected):
            await store.transaction(enqueue_for_device, device.udid, {"Queries": []})

    async def test_last_seen_is_recorded(self) -> None:
        device = self.device()
        await device.enroll()
        await self.appliance.store.run(sql, "UPDATE enrollments SET last_seen = '2000-01-01'")
        await device.report("Idle")
        (seen,) = query(self.db, "SELECT last_seen FROM enrollments")[0]
        self.assertGreater(seen, "2026")

    async def test_last_seen_is_rewritten_at_most_every_few_seconds(self) -> None:
        """A poll within ``LAST_SEEN_EVERY`` of the last one leaves the row alone (an empty
        Idle is then no write at all); an older one, or an inactive enrollment, is written."""
        device = self.device()
        await device.enroll()
        recent = utc_timestamp(utc_now() - LAST_SEEN_EVERY / 2)
        await self.appliance.store.run(sql, "UPDATE enrollments SET last_seen = ?", recent)
        await device.report("Idle")
        self.assertEqual(query(self.db, "SELECT last_seen FROM enrollments")[0][0], recent)
        stale = utc_timestamp(utc_now() - LAST_SEEN_EVERY * 2)
        await self.appliance.store.run(sql, "UPDATE enrollments SET last_seen = ?", stale)
        await device.report("Idle")
        self.assertGreater(query(self.db, "SELECT last_seen FROM enrollments")[0][0], recent)
        await self.appliance.store.run(
            sql, "UPDATE enrollments SET last_seen = ?, inactive_since = ?", recent, stale
        )
        await device.report("Idle")
        self.assertEqual(
            query(self.db, "SELECT inactive_since FROM enrollments"), [(None,)], "woken at once"
        )
        self.assertEqual(
            len(query(self.db, "SELECT id FROM events WHERE kind = ?", "enrollment.active")), 1
        )

    async def test_retired_enrollment_gets_401(self) -> None:
        device = self.device()
        await device.enroll()
        await self.appliance.store.transaction(sql, "UPDATE enrollments SET state = 'retired'")
        self.assertEqual((await device.report("Idle")).code, 401)
        self.assertEqual((await device.token_update()).code, 401)

    async def test_content_type_does_not_matter(self) -> None:
        device = self.device()
        await device.enroll()
        body = plistlib.dumps({"UDID": device.udid, "Status": "Idle"})
        for content_type in ("", "application/octet-stream", "text/plain"):
            reply = await device.put(device.server_path, body, {"Content-Type": content_type})
            self.assertEqual(reply.code, 200, content_type)

    async def test_http2_is_not_negotiated(self) -> None:
        """A client offering h2 gets HTTP/1.1 (twisted.web's HTTP/2 loses the peer cert)."""
        from OpenSSL import crypto
        from twisted.internet import ssl
        from twisted.internet.defer import Deferred
        from twisted.internet.endpoints import SSL4ClientEndpoint, connectProtocol
        from twisted.internet.interfaces import IHandshakeListener
        from twisted.internet.protocol import Protocol
        from zope.interface import implementer

        from mdmappliance.app.reactor import global_reactor

        @implementer(IHandshakeListener)
        class Handshake(Protocol):
            def __init__(self) -> None:
                self.done: Deferred[None] = Deferred()

            def handshakeCompleted(self) -> None:
                self.done.callback(None)

        identity = self.identity_of(self.device())
        options = ssl.optionsForClientTLS(
            "localhost",
            trustRoot=ssl.Certificate.loadPEM(self.appliance.config.pki.ca_cert.read_bytes()),
            clientCertificate=ssl.PrivateCertificate.fromCertificateAndKeyPair(
                ssl.Certificate(crypto.X509.from_cryptography(identity.certificate)),
                ssl.KeyPair(crypto.PKey.from_cryptography_key(identity.key)),
            ),
            acceptableProtocols=[b"h2", b"http/1.1"],
        )
        endpoint = SSL4ClientEndpoint(
            global_reactor(), "127.0.0.1", self.appliance.config.device.port, options
        )
        protocol = await connectProtocol(endpoint, Handshake())
        await protocol.done
        transport: Any = protocol.transport
        self.assertEqual(transport.negotiatedProtocol, b"http/1.1")
        transport.loseConnection()


class ExtraTrustedCA(DeviceChannelCase):
    """Devices enrolled under another CA are trusted when that CA is in extra_ca_files."""

    def config_sections(self) -> dict[str, dict[str, Any]]:
        from mdmappliance import pki

        self.other = Path(self.mktemp()).absolute()
        self.other.mkdir()
        ca = pki.create_ca("previous MDM server CA")
        (self.other / "ca.pem").write_bytes(pki.certificate_pem(ca.certificate))
        (self.other / "ca.key").write_bytes(pki.private_key_pem(ca.key))
        return {"device": {"extra_ca_files": [str(self.other / "ca.pem")]}}

    async def test_device_from_the_extra_ca(self) -> None:
        from mdmappliance.simulator.device import SimulatedDevice

        config = self.appliance.config
        device = SimulatedDevice.issued(
            self.appliance.base_url,
            config.pki.ca_cert,
            config.pki.ca_key,
            issuer=(self.other / "ca.pem", self.other / "ca.key"),
            sign_messages=True,
        )
        self.addCleanup(device.close)
        await device.enroll()
        command_uuid = await self.enqueue(device, {"RequestType": "ProfileList"})
        self.assertEqual(await device.poll(), [command_uuid])
