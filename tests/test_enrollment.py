"""Enrollment: one-time links, signed profiles checked by openssl, devices enrolling from them."""

from __future__ import annotations

import dataclasses
import datetime
import json
import plistlib
from pathlib import Path
from typing import Any

import treq
from twisted.internet import task
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import HTTPConnectionPool

from mdmappliance.app.enrollment_listener import profile_signer
from mdmappliance.app.reactor import global_reactor
from mdmappliance.commands.queue import enqueue_for_device
from mdmappliance.enrollment.links import create_link, parse_duration, revoke_link
from mdmappliance.pki.identity import DeviceIdentity
from mdmappliance.pki.signing import ProfileError, check_profile
from mdmappliance.simulator.device import (
    EnrollmentRefused,
    SimulatedDevice,
    fetch_profile,
    get_enrollment_link,
)
from tests.support import (
    InProcessAppliance,
    make_installation,
    openssl_verify,
    query,
    testdata,
)
from tests.support import (
    run_cli as run_cli_process,
)

DAY = datetime.timedelta(days=1)


class PKCS12Profiles(TestCase):
    """``[enrollment] identity = "pkcs12"``: the identity travels in the profile."""

    async def test_profile_carries_a_pkcs12_identity_that_enrolls(self) -> None:
        appliance = InProcessAppliance(Path(self.mktemp()), enrollment={"identity": "pkcs12"})
        self.addCleanup(appliance.stop)
        token, link = await appliance.store.transaction(create_link, DAY, "p12", "test")
        received = await fetch_profile(
            appliance.config.enrollment_url(token), appliance.config.pki.ca_cert
        )
        kinds = [p["PayloadType"] for p in received.profile["PayloadContent"]]
        self.assertEqual(
            kinds, ["com.apple.security.root", "com.apple.security.pkcs12", "com.apple.mdm"]
        )
        assert received.identity is not None
        sha256 = DeviceIdentity.of(received.identity.certificate, "issued").sha256
        issued = query(
            appliance.config.store.path, "SELECT sha256, token_id FROM issued_identities"
        )
        self.assertEqual(issued, [(sha256, link.id)])
        self.assertEqual(
            query(appliance.config.store.path, "SELECT count(*) FROM scep_challenges"), [(0,)]
        )
        device = SimulatedDevice(
            ca_cert=appliance.config.pki.ca_cert, **received.device_arguments()
        )
        self.addCleanup(device.close)
        await device.enroll()


class Links(TestCase):
    def setUp(self) -> None:
        self.appliance = InProcessAppliance(Path(self.mktemp()))
        self.addCleanup(self.appliance.stop)
        self.config = self.appliance.config
        self.store = self.appliance.store

    async def new_link(self, lifetime: datetime.timedelta = DAY) -> tuple[str, int]:
        token, link = await self.store.transaction(create_link, lifetime, "test", "test")
        return self.config.enrollment_url(token), link.id

    async def test_enroll_from_a_fresh_link_and_run_a_command(self) -> None:
        url, link_id = await self.new_link()
        received = await fetch_profile(url, self.config.pki.ca_cert)
        workdir = Path(self.mktemp())
        workdir.mkdir()
        content = openssl_verify(received.signed, self.config.pki.ca_cert, workdir)
        self.assertEqual(plistlib.loads(content), received.profile)

        profile = received.profile
        self.assertEqual(profile["PayloadType"], "Configuration")
        self.assertEqual(profile["PayloadIdentifier"], self.config.profile_identifier())
        kinds = [p["PayloadType"] for p in profile["PayloadContent"]]
        self.assertEqual(
            kinds, ["com.apple.security.root", "com.apple.security.scep", "com.apple.mdm"]
        )
        mdm = received.mdm
        self.assertEqual(mdm["Topic"], self.config.device.topic)
        self.assertEqual(
            mdm["ServerURL"], f"https://localhost:{self.config.device.port}/mdm/connect"
        )
        self.assertEqual(
            mdm["CheckInURL"], f"https://localhost:{self.config.device.port}/mdm/checkin"
        )
        self.assertEqual(mdm["AccessRights"], 8191)
        for payload in [profile, *profile["PayloadContent"]]:
            for key in ("PayloadType", "PayloadVersion", "PayloadIdentifier", "PayloadUUID"):
                self.assertIn(key, payload)
        issued = query(self.config.store.path, "SELECT sha256, token_id FROM issued_identities")
        assert received.identity is not None
        sha256 = DeviceIdentity.of(received.identity.certificate, "issued").sha256
        self.assertEqual(issued, [(sha256, link_id)])

        device = SimulatedDevice(ca_cert=self.config.pki.ca_cert, **received.device_arguments())
        self.addCleanup(device.close)
        await device.enroll()
        command_uuid = await self.store.transaction(
            enqueue_for_device, device.udid, {"RequestType": "ProfileList"}
        )
        self.assertEqual(await device.poll(), [command_uuid])

    async def test_each_download_gets_a_fresh_identity_and_uuids(self) -> None:
        first = await fetch_profile((await self.new_link())[0], self.config.pki.ca_cert)
        second = await fetch_profile((await self.new_link())[0], self.config.pki.ca_cert)
        assert first.identity is not None and second.identity is not None
        self.assertNotEqual(first.identity.certificate, second.identity.certificate)
        self.assertNotEqual(first.profile["PayloadUUID"], second.profile["PayloadUUID"])
        self.assertEqual(first.profile["PayloadIdentifier"], second.profile["PayloadIdentifier"])

    async def refused(self, url: str) -> bytes:
        before = query(self.config.store.path, "SELECT count(*) FROM issued_identities")
        code, body, _ = await get_enrollment_link(url, self.config.pki.ca_cert)
        self.assertEqual(code, 403, body)
        self.assertEqual(body.count(b"\n"), 1, body)
        self.assertEqual(
            query(self.config.store.path, "SELECT count(*) FROM issued_identities"),
            before,
            "nothing is issued for a refused link",
        )
        return body

    async def test_used_unknown_expired_and_revoked_links(self) -> None:
        url, _ = await self.new_link()
        await fetch_profile(url, self.config.pki.ca_cert)
        self.assertIn(b"already used", await self.refused(url))
        self.assertIn(b"not valid", await self.refused(url[:-4] + "AAAA"))
        self.assertIn(b"not valid", await self.refused(url.rsplit("/", 1)[0] + "/x"))
        expired, _ = await self.new_link(datetime.timedelta(microseconds=1))
        self.assertIn(b"expired", await self.refused(expired))
        revoked, link_id = await self.new_link()
        self.assertTrue(await self.store.transaction(revoke_link, link_id))
        self.assertIn(b"revoked", await self.refused(revoked))

    async def test_no_client_certificate_is_asked_for(self) -> None:
        url, _ = await self.new_link()
        code, _, content_type = await get_enrollment_link(url, self.config.pki.ca_cert)
        self.assertEqual((code, content_type), (200, "application/x-apple-aspen-config"))

    async def test_admin_api_creates_lists_and_revokes(self) -> None:
        pool = HTTPConnectionPool(global_reactor(), persistent=False)
        headers: dict[bytes | str, bytes | str] = {
            "Authorization": f"Bearer {self.config.read_admin_api_key()}"
        }
        base = f"{self.config.admin_url()}/v1/enrollment-tokens"
        response = await treq.post(
            base, json={"expires": "2h", "note": "Ana's iPad"}, headers=headers, pool=pool
        )
        self.assertEqual(response.code, 201)
        created = json.loads(await response.content())
        self.assertTrue(created["url"].endswith("/enroll/" + created["token"]))
        response = await treq.post(
            base, json={"expires": "forever", "colour": "red"}, headers=headers, pool=pool
        )
        self.assertEqual(response.code, 400)
        errors = json.loads(await response.content())["errors"]
        self.assertEqual(len(errors), 2, errors)
        response = await treq.get(base, headers=headers, pool=pool)
        listed = json.loads(await response.content())["enrollment_tokens"]
        self.assertEqual(
            [(t["id"], t["status"], t["note"]) for t in listed],
            [(created["id"], "unused", "Ana's iPad")],
        )
        self.assertNotIn("token", listed[0], "tokens are shown once, at creation")
        response = await treq.delete(f"{base}/{created['id']}", headers=headers, pool=pool)
        self.assertEqual(response.code, 200)
        await response.content()
        with self.assertRaises(EnrollmentRefused):
            await fetch_profile(created["url"], self.config.pki.ca_cert)


class InterruptedDownload(TestCase):
    async def test_client_gone_before_the_profile_is_ready_keeps_the_link(self) -> None:
        import time

        from twisted.internet import ssl
        from twisted.internet.endpoints import SSL4ClientEndpoint, connectProtocol
        from twisted.internet.protocol import Protocol

        appliance = InProcessAppliance(Path(self.mktemp()))
        self.addCleanup(appliance.stop)
        config = appliance.config
        endpoint = appliance.service.getServiceNamed("enrollment").site.routes
        slow_make = endpoint.factory.make

        def make(name: str) -> Any:
            time.sleep(0.5)  # a slow profile build; the client hangs up meanwhile
            return slow_make(name)

        endpoint.factory = dataclasses.replace(endpoint.factory)
        object.__setattr__(endpoint.factory, "make", make)
        token, _ = await appliance.store.transaction(create_link, DAY, "", "test")
        options = ssl.optionsForClientTLS(
            "localhost", trustRoot=ssl.Certificate.loadPEM(config.pki.ca_cert.read_bytes())
        )
        client = await connectProtocol(
            SSL4ClientEndpoint(global_reactor(), "127.0.0.1", config.enrollment.port, options),
            Protocol(),
        )
        assert client.transport is not None
        client.transport.write(f"GET /enroll/{token} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
        await task.deferLater(global_reactor(), 0.1, lambda: None)
        client.transport.loseConnection()
        await task.deferLater(global_reactor(), 1.0, lambda: None)
        self.assertEqual(
            query(config.store.path, "SELECT used_at FROM enrollment_tokens"), [(None,)]
        )
        self.assertEqual(query(config.store.path, "SELECT count(*) FROM issued_identities"), [(0,)])
        received = await fetch_profile(config.enrollment_url(token), config.pki.ca_cert)
        self.assertEqual(received.mdm["Topic"], config.device.topic)


class WithoutTopic(TestCase):
    async def test_no_topic_means_503_and_the_link_stays_usable(self) -> None:
        appliance = InProcessAppliance(Path(self.mktemp()), device={"topic": ""})
        self.addCleanup(appliance.stop)
        token, _ = await appliance.store.transaction(create_link, DAY, "", "test")
        url = appliance.config.enrollment_url(token)
        code, body, _ = await get_enrollment_link(url, appliance.config.pki.ca_cert)
        self.assertEqual(code, 503, body)
        self.assertEqual(
            query(appliance.config.store.path, "SELECT used_at FROM enrollment_tokens"), [(None,)]
        )


class Signer(SynchronousTestCase):
    def setUp(self) -> None:
        from mdmappliance.config import load_config

        self.config = load_config(make_installation(Path(self.mktemp())))
        self.signer = profile_signer(self.config)

    def test_signs_an_admin_profile_that_openssl_verifies(self) -> None:
        profile = testdata("zentral", "tests", "mdm", "testdata", "test.mobileconfig").read_bytes()
        signed = self.signer.sign(profile)
        workdir = Path(self.mktemp())
        workdir.mkdir()
        self.assertEqual(openssl_verify(signed, self.config.pki.ca_cert, workdir), profile)

    def test_refuses_what_is_not_a_profile(self) -> None:
        good = {
            "PayloadType": "Configuration",
            "PayloadIdentifier": "x",
            "PayloadUUID": "u",
            "PayloadVersion": 1,
            "PayloadContent": [],
        }
        check_profile(plistlib.dumps(good))
        for key in ("PayloadIdentifier", "PayloadUUID", "PayloadVersion"):
            broken = {k: v for k, v in good.items() if k != key}
            with self.assertRaises(ProfileError) as caught:
                self.signer.sign(plistlib.dumps(broken))
            self.assertIn(key, str(caught.exception))
        with self.assertRaises(ProfileError):
            self.signer.sign(plistlib.dumps({**good, "PayloadType": "com.apple.mdm"}))
        with self.assertRaises(ProfileError):
            self.signer.sign(b"not a plist")

    def test_durations(self) -> None:
        self.assertEqual(parse_duration("7d"), 7 * DAY)
        self.assertEqual(parse_duration("90m"), datetime.timedelta(minutes=90))
        for bad in ("7", "1y", "0m", "400d"):
            with self.assertRaises(ValueError):
                parse_duration(bad)


class BadEnrollmentConfig(SynchronousTestCase):
    def config_error(self, **sections: dict[str, Any]) -> str:
        from mdmappliance.config import load_config
        from mdmappliance.config.errors import ConfigError

        path = make_installation(Path(self.mktemp()), sections=sections)
        with self.assertRaises(ConfigError) as caught:
            load_config(path)
        return str(caught.exception)

    def test_access_rights_rules(self) -> None:
        self.assertIn("non-zero", self.config_error(enrollment={"access_rights": 0}))
        self.assertIn(
            "2 (install profiles) without 1", self.config_error(enrollment={"access_rights": 2})
        )
        self.assertIn(
            "128 (install provisioning profiles) without 64",
            self.config_error(enrollment={"access_rights": 129}),
        )

    def test_urls_must_be_https(self) -> None:
        self.assertIn(
            "https://", self.config_error(enrollment={"server_url": "http://mdm.example.com/"})
        )

    def test_signing_certificate_must_match_its_key(self) -> None:
        message = self.config_error(enrollment={"signing_key": "pki/server.key"})
        self.assertIn("enrollment.signing_key", message)
        self.assertIn("is not the private key of", message)


class LinkCommand(TestCase):
    timeout = 120

    async def test_create_list_revoke(self) -> None:
        # The CLI goes through the admin API: a running appliance answers it.
        appliance = InProcessAppliance(Path(self.mktemp()))
        self.addCleanup(appliance.stop)
        config_path = str(appliance.config.path)

        def run_cli(*args: str) -> Any:
            return deferToThread(run_cli_process, *args)

        created = await run_cli(
            "enroll-link",
            "create",
            "--config",
            config_path,
            "--expires",
            "2h",
            "--note",
            "loaner",
            "--json",
        )
        self.assertEqual(created.returncode, 0, created.stderr)
        link = json.loads(created.stdout)
        self.assertIn("/enroll/", link["url"])
        listed = await run_cli("enroll-link", "list", "--config", config_path)
        self.assertIn("unused", listed.stdout)
        self.assertIn("loaner", listed.stdout)
        revoked = await run_cli("enroll-link", "revoke", str(link["id"]), "--config", config_path)
        self.assertEqual(revoked.returncode, 0, revoked.stderr)
        again = await run_cli("enroll-link", "revoke", str(link["id"]), "--config", config_path)
        self.assertEqual(again.returncode, 1)
        self.assertEqual(len(again.stderr.strip().splitlines()), 1)
        bad = await run_cli("enroll-link", "create", "--config", config_path, "--expires", "soon")
        self.assertEqual(bad.returncode, 2)
        self.assertIn("--expires", bad.stderr)
