"""DEP enrollment through the ConfigurationURL: the real MachineInfo capture, the serial
check ("MDM Me Maybe"), then SCEP and Authenticate with the MachineInfo's UDID."""

from __future__ import annotations

import base64
import datetime
import plistlib
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs7
from twisted.trial.unittest import TestCase
from twisted.web.http_headers import Headers

from mdmappliance import pki
from mdmappliance.commands.queue import enqueue_for_device
from mdmappliance.core.timestamps import utc_timestamp
from mdmappliance.simulator.device import (
    SimulatedDevice,
    digest_response,
    install_profile,
    tls_client,
)
from mdmappliance.store import Tx
from tests.support import InProcessAppliance, local_users_sections, query, testdata

CAPTURE = ("zentral", "tests", "mdm", "testdata", "ota_playload_phase_2")
SERIAL = "ZDL2M9PTJ3"
UDID = "78897E40-F532-5DE0-A7DC-56BAC5CEEB9C"
PROFILE_UUID = "0B5938EBA130466FBFA5BFA950500D03"


def assign(tx: Tx, serial: str, profile_uuid: str | None = PROFILE_UUID) -> None:
    now = utc_timestamp()
    tx.dep.add_profile(PROFILE_UUID, "ours", {"profile_name": "ours"}, True, now)
    device: dict[str, Any] = {"serial_number": serial, "profile_status": "assigned"}
    if profile_uuid:
        device["profile_uuid"] = profile_uuid
    tx.dep.upsert(device, "assigned", now)


async def post_machine_info(
    case: TestCase,
    url: str,
    ca_cert: Path,
    body: bytes | None,
    headers: dict[bytes, list[bytes]] | None = None,
) -> tuple[int, bytes, str]:
    """POST a MachineInfo as a device in Setup Assistant does; status, body, content type."""
    client = tls_client(case, ca_cert)
    all_headers = {b"content-type": [b"application/pkcs7-signature"], **(headers or {})}
    response = await client.post(url, data=body or b"", headers=Headers(all_headers))
    content = await response.content()
    content_type = (response.headers.getRawHeaders("content-type") or [""])[0]
    return response.code, content, content_type


class ConfigurationURL(TestCase):
    timeout = 120

    def setUp(self) -> None:
        self.appliance = InProcessAppliance(Path(self.mktemp()))
        self.addCleanup(self.appliance.stop)
        self.config = self.appliance.config
        self.capture = testdata(*CAPTURE).read_bytes()
        self.url = self.config.dep_enroll_url().replace("localhost", "127.0.0.1")

    async def post(
        self, body: bytes | None, headers: dict[bytes, list[bytes]] | None = None
    ) -> tuple[int, bytes, str]:
        return await post_machine_info(self, self.url, self.config.pki.ca_cert, body, headers)

    def nothing_issued(self) -> None:
        db = self.config.store.path
        self.assertEqual(query(db, "SELECT count(*) FROM scep_challenges"), [(0,)])
        self.assertEqual(query(db, "SELECT count(*) FROM issued_identities"), [(0,)])

    async def test_an_assigned_device_enrolls_through_scep_and_authenticates(self) -> None:
        await self.appliance.store.transaction(assign, SERIAL)
        code, body, content_type = await self.post(self.capture)
        self.assertEqual((code, content_type), (200, "application/x-apple-aspen-config"), body)
        received = await install_profile(body, self.config.pki.ca_cert)
        assert received.identity is not None
        challenge_udid = query(self.config.store.path, "SELECT udid FROM scep_challenges")
        self.assertEqual(challenge_udid, [(UDID,)], "the challenge is bound to the UDID")

        device = SimulatedDevice(
            ca_cert=self.config.pki.ca_cert, udid=UDID, **received.device_arguments()
        )
        self.addCleanup(device.close)
        await device.enroll()
        command_uuid = await self.appliance.store.transaction(
            enqueue_for_device, UDID, {"RequestType": "ProfileList"}
        )
        self.assertEqual(await device.poll(), [command_uuid])

        # The identity serves that UDID only.
        impostor = self.appliance.device(identity=received.identity)
        self.addCleanup(impostor.close)
        self.assertEqual((await impostor.authenticate()).code, 403)

    async def test_the_header_of_the_web_auth_flow_works_too(self) -> None:
        await self.appliance.store.transaction(assign, SERIAL)
        header = base64.b64encode(self.capture)
        code, body, _ = await self.post(None, {b"x-apple-aspen-deviceinfo": [header]})
        self.assertEqual(code, 200, body)

    async def test_an_unassigned_serial_gets_403_and_nothing(self) -> None:
        code, body, _ = await self.post(self.capture)
        self.assertEqual(code, 403, body)
        self.assertIn(b"not assigned", body)
        self.nothing_issued()
        # In the table but with another server's (or no) profile: still 403.
        await self.appliance.store.transaction(assign, SERIAL, "SOMEONE-ELSES-PROFILE")
        code, _, _ = await self.post(self.capture)
        self.assertEqual(code, 403)
        self.nothing_issued()

    async def test_a_tampered_or_foreign_machine_info_gets_403_and_nothing(self) -> None:
        await self.appliance.store.transaction(assign, SERIAL)
        tampered = bytearray(self.capture)
        at = self.capture.find(SERIAL.encode())
        self.assertGreater(at, 0)
        tampered[at] = ord("X")
        ca = pki.create_ca("not Apple")
        leaf = pki.issue_device_identity(ca, "a device", lifetime=datetime.timedelta(days=1))
        plist = plistlib.dumps({"UDID": UDID, "SERIAL": SERIAL})
        foreign = (
            pkcs7.PKCS7SignatureBuilder()
            .set_data(plist)
            .add_signer(leaf.certificate, leaf.key, hashes.SHA256())
            .sign(serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary])
        )
        for body in (bytes(tampered), foreign, b"garbage", b""):
            code, answer, _ = await self.post(body)
            self.assertEqual(code, 403, answer)
        self.nothing_issued()

    async def test_an_os_below_the_minimum_is_told_to_update(self) -> None:
        ca = pki.create_ca("test device CA")
        leaf = pki.issue_device_identity(ca, "a device", lifetime=datetime.timedelta(days=1))
        routes = self.appliance.service.getServiceNamed("enrollment").site.routes
        routes.configuration_url.chain = (ca.certificate,)
        routes.configuration_url.minimum_os = "17.4"
        await self.appliance.store.transaction(assign, "TESTSERIAL1")
        for version, expected in (("16.7.2", 403), ("17.4.1", 200)):
            plist = plistlib.dumps(
                {
                    "UDID": UDID,
                    "SERIAL": "TESTSERIAL1",
                    "OS_VERSION": version,
                    "PRODUCT": "iPhone15,2",
                }
            )
            signed = (
                pkcs7.PKCS7SignatureBuilder()
                .set_data(plist)
                .add_signer(leaf.certificate, leaf.key, hashes.SHA256())
                .sign(serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary])
            )
            code, body, content_type = await self.post(signed)
            self.assertEqual(code, expected, (version, body))
            if expected == 403:
                self.assertEqual(content_type, "application/json")
                self.assertIn(b"com.apple.softwareupdate.required", body)
                self.assertIn(b"17.4", body)


class Login(TestCase):
    """``[dep] require_login``: HTTP Digest (POST) against the local users file."""

    timeout = 60

    async def test_a_login_is_asked_for_and_checked(self) -> None:
        sections = local_users_sections(self)
        sections["dep"] = {"require_login": True}
        appliance = InProcessAppliance(Path(self.mktemp()), **sections)
        self.addCleanup(appliance.stop)
        config = appliance.config
        await appliance.store.transaction(assign, SERIAL)
        url = config.dep_enroll_url().replace("localhost", "127.0.0.1")
        capture = testdata(*CAPTURE).read_bytes()
        code, body, _ = await post_machine_info(self, url, config.pki.ca_cert, capture)
        self.assertEqual(code, 401, body)
        self.assertEqual(query(config.store.path, "SELECT count(*) FROM scep_challenges"), [(0,)])
        for password, expected in (("wrong", 401), ("s3cret", 200)):
            challenge = await self.challenge(url, config.pki.ca_cert, capture)
            answer = digest_response(
                "cjoe", password, "mdmappliance", challenge, config.dep.enroll_path, "POST"
            )
            code, body, _ = await post_machine_info(
                self, url, config.pki.ca_cert, capture, {b"authorization": [answer.encode()]}
            )
            self.assertEqual(code, expected, (password, body))

    async def challenge(self, url: str, ca_cert: Path, capture: bytes) -> str:
        response = await tls_client(self, ca_cert).post(url, data=capture)
        await response.content()
        return str((response.headers.getRawHeaders("www-authenticate") or [""])[0])
