"""Protocol pieces without sockets: message parsing on real captures, CMS on an Apple-signed
sample, the trust store, HTTP Digest, UnlockToken escrow, and group commit in the store."""

from __future__ import annotations

import base64
import datetime
from pathlib import Path
from typing import Any, cast

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.iweb import IRequest
from twisted.web.test.requesthelper import DummyChannel, DummyRequest

from mdmappliance import pki
from mdmappliance.app.reactor import global_reactor
from mdmappliance.device.digest import DigestAuthority, md5_hex, parse_digest
from mdmappliance.device.identity import CLIENT_CERT_RECHECK, IdentityResolver
from mdmappliance.mdm.errors import BadMessage, IdentityRefused
from mdmappliance.mdm.messages import (
    Authenticate,
    CheckOut,
    TokenUpdate,
    parse_message,
    parse_plist,
)
from mdmappliance.pki.cms import CMSError, verify_signed_data
from mdmappliance.pki.escrow import Escrow, EscrowError, new_key
from mdmappliance.pki.trust import TrustStore, UntrustedCertificate
from mdmappliance.pki.users import read_users_file
from mdmappliance.simulator.device import detached_signature, digest_response
from mdmappliance.store import Store, Tx
from tests.support import get_setting, set_setting, testdata

NOW = datetime.datetime.now(datetime.UTC)


def capture(*parts: str) -> bytes:
    return testdata(*parts).read_bytes()


class RealCaptures(SynchronousTestCase):
    def parse(self, *parts: str) -> object:
        return self.parse_body(capture(*parts))

    def parse_body(self, body: bytes) -> object:
        return parse_message(parse_plist(body, 32), body, checkin_only=True)

    def test_authenticate_captures(self) -> None:
        for name in ("10.11.x.xml", "10.12.2.xml", "IOS-11.3.1.xml", "iOS-11.3.1-cell.xml"):
            message = self.parse("commandment", "testdata", "Authenticate", name)
            self.assertIsInstance(message, Authenticate, name)
            assert isinstance(message, Authenticate)
            self.assertTrue(message.topic.startswith("com.apple.mgmt."))

    def test_user_channel_token_update(self) -> None:
        folder = testdata("commandment", "testdata", "TokenUpdate")
        names = sorted(p.name for p in folder.glob("*.xml"))
        self.assertTrue(any("user" in name.lower() for name in names), names)
        for name in names:
            if name == "iOS-11.3.1.xml":
                continue  # redacted: its <data>Base64=</data> is not base64
            message = self.parse("commandment", "testdata", "TokenUpdate", name)
            self.assertIsInstance(message, TokenUpdate, name)
            assert isinstance(message, TokenUpdate)
            if "user" in name.lower():
                self.assertTrue(message.channel.user_id)

    def test_topic_outside_com_apple_mgmt_is_bad(self) -> None:
        """This capture's topic was rewritten by its collector (io.micromdm.topic...)."""
        body = capture("commandment", "testdata", "Authenticate", "IOS-9.x.xml")
        with self.assertRaises(BadMessage) as caught:
            self.parse_body(body)
        self.assertIn("com.apple.mgmt.", str(caught.exception))

    def test_checkout_captures(self) -> None:
        for name in ("10.11.x.xml", "iOS-11.3.1.xml"):
            self.assertIsInstance(self.parse("commandment", "testdata", "CheckOut", name), CheckOut)

    def test_redacted_capture_is_bad(self) -> None:
        body = capture("commandment", "testdata", "TokenUpdate", "iOS-11.3.1.xml")
        with self.assertRaises(BadMessage):
            self.parse_body(body)


class CMS(SynchronousTestCase):
    def test_real_device_signed_payload(self) -> None:
        """zentral's OTA phase-2 payload, signed by a device under Apple's iPhone Device CA."""
        der = capture("zentral", "tests", "mdm", "testdata", "ota_playload_phase_2")
        chain = capture(
            "zentral",
            "zentral",
            "contrib",
            "mdm",
            "assets",
            "Apple_iPhone_Device_CA_Fullchain.pem",
        )
        signed = verify_signed_data(der)
        self.assertIn(b"VirtualMac2,1", signed.content)
        anchors = tuple(x509.load_pem_x509_certificates(chain))
        during = signed.signer.not_valid_before_utc + datetime.timedelta(days=1)
        # Apple's device CA expired in 2014, yet Apple still issues under it (SHA-1 signed):
        with self.assertRaises(UntrustedCertificate) as caught:
            TrustStore(anchors).verify(signed.signer, signed.certificates, during)
        self.assertIn("expired", str(caught.exception))
        TrustStore(anchors, check_validity_dates=False).verify(
            signed.signer, signed.certificates, during
        )
        with self.assertRaises(UntrustedCertificate):
            TrustStore(anchors[1:], check_validity_dates=False).verify(signed.signer, [], during)
        tampered = bytearray(der)
        tampered[tampered.find(b"VirtualMac2,1")] ^= 1
        with self.assertRaises(CMSError):
            verify_signed_data(bytes(tampered))

    def test_detached_signature_checks_the_digest(self) -> None:
        ca = pki.create_ca("test")
        leaf = pki.issue_server_certificate(ca, "device")
        body = b"<plist>body</plist>\n"
        der = base64.b64decode(detached_signature(leaf, body))
        self.assertEqual(verify_signed_data(der, body).signer, leaf.certificate)
        with self.assertRaises(CMSError) as caught:
            verify_signed_data(der, body + b" ")
        self.assertIn("messageDigest", str(caught.exception))
        with self.assertRaises(CMSError):
            verify_signed_data(b"\x30\x03\x02\x01\x01", body)
        TrustStore((ca.certificate,)).verify(leaf.certificate, [], NOW)
        with self.assertRaises(UntrustedCertificate):
            TrustStore((pki.create_ca("other").certificate,)).verify(leaf.certificate, [], NOW)
        with self.assertRaises(UntrustedCertificate):
            TrustStore((ca.certificate,)).verify(
                leaf.certificate, [], NOW + datetime.timedelta(days=1000)
            )


class Digest(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.authority = DigestAuthority({"cjoe": md5_hex("cjoe:realm:pw")}, "realm", self.clock)

    def test_round_trip_and_single_use(self) -> None:
        challenge = self.authority.challenge("UDID", "USER")
        answer = digest_response("cjoe", "pw", "realm", challenge, "/mdm/checkin")
        self.assertEqual(self.authority.verify("UDID", "USER", answer), "cjoe")
        self.assertIsNone(self.authority.verify("UDID", "USER", answer), "nonce used up")

    def test_nonce_is_bound_and_expires(self) -> None:
        challenge = self.authority.challenge("UDID", "USER")
        answer = digest_response("cjoe", "pw", "realm", challenge, "/mdm/checkin")
        self.assertIsNone(self.authority.verify("OTHER", "USER", answer))
        challenge = self.authority.challenge("UDID", "USER")
        answer = digest_response("cjoe", "pw", "realm", challenge, "/mdm/checkin")
        self.clock.advance(301)
        self.assertIsNone(self.authority.verify("UDID", "USER", answer))

    def test_parse(self) -> None:
        self.assertEqual(
            parse_digest('Digest a="x, y", b=z, c="q\\"r"'), {"a": "x, y", "b": "z", "c": 'q"r'}
        )

    def test_users_file(self) -> None:
        path = Path(self.mktemp())
        path.write_text(f"# users\ncjoe:realm:{'a' * 32}\nother:elsewhere:{'b' * 32}\n")
        self.assertEqual(read_users_file(path, "realm"), {"cjoe": "a" * 32})
        path.write_text("cjoe:realm:nothex\n")
        with self.assertRaises(ValueError):
            read_users_file(path, "realm")


class EscrowTests(SynchronousTestCase):
    def test_sealed_token_opens_only_for_its_udid_and_key(self) -> None:
        escrow = Escrow(new_key())
        sealed = escrow.seal(b"unlock", "UDID-1")
        self.assertNotIn(b"unlock", sealed)
        self.assertEqual(escrow.open(sealed, "UDID-1"), b"unlock")
        with self.assertRaises(EscrowError):
            escrow.open(sealed, "UDID-2")
        with self.assertRaises(EscrowError):
            Escrow(new_key()).open(sealed, "UDID-1")


class GroupCommit(TestCase):
    async def test_jobs_waiting_together_commit_together_each_whole(self) -> None:
        directory = Path(self.mktemp())
        directory.mkdir()
        store = Store(directory / "group.db", reactor=global_reactor())
        store.startService()
        self.addCleanup(store.stopService)

        def write(tx: Tx, n: int) -> int:
            set_setting(tx, f"k{n}", str(n))
            if n == 7:
                raise ValueError("job 7 fails")
            return n

        submitted = [store.transaction(write, n) for n in range(20)]
        seen = store.run(get_setting, "k19")  # queued after the writes: sees them
        results = await defer.DeferredList(submitted, consumeErrors=True)
        self.assertEqual([ok for ok, _ in results], [n != 7 for n in range(20)])
        self.assertEqual(await seen, "19")
        values = [await store.run(get_setting, f"k{n}") for n in range(20)]
        self.assertEqual(values, [None if n == 7 else str(n) for n in range(20)])

    async def test_a_job_that_breaks_the_transaction_does_not_wedge_the_store(self) -> None:
        directory = Path(self.mktemp())
        directory.mkdir()
        store = Store(directory / "wedge.db", reactor=global_reactor())
        store.startService()
        self.addCleanup(store.stopService)

        def rogue(tx: Tx) -> None:
            set_setting(tx, "rogue", "1")
            tx.conn.execute("ROLLBACK")

        batch = [store.transaction(set_setting, "before", "1"), store.transaction(rogue)]
        results = await defer.DeferredList(batch, consumeErrors=True)
        self.assertEqual([ok for ok, _ in results], [False, False], "the batch failed whole")
        await store.transaction(set_setting, "after", "1")
        self.assertEqual(await store.run(get_setting, "after"), "1")
        self.assertIsNone(await store.run(get_setting, "rogue"))


class ClientCertHeaders(SynchronousTestCase):
    """Proxy mode: a Client-Cert is chain-checked once per certificate, not per request; it
    is checked again after CLIENT_CERT_RECHECK, and never believed past its expiry."""

    def setUp(self) -> None:
        self.ca = pki.create_ca("proxy test")
        self.now = NOW
        self.checks = 0
        case = self

        class CountingTrust(TrustStore):
            def verify(self, *args: Any, **kw: Any) -> None:
                case.checks += 1
                super().verify(*args, **kw)

        self.resolver = IdentityResolver(
            CountingTrust((self.ca.certificate,)),
            now=lambda: self.now,
            trusted_proxies=frozenset({"127.0.0.1"}),
        )

    def request(self, leaf: pki.IssuedPair, peer: str = "127.0.0.1") -> IRequest:
        request = DummyRequest([b"mdm", b"connect"])
        der = leaf.certificate.public_bytes(Encoding.DER)
        request.requestHeaders.setRawHeaders(b"client-cert", [b":" + base64.b64encode(der) + b":"])
        request.client = IPv4Address("TCP", peer, 40000)
        request.channel = DummyChannel()  # type: ignore[attr-defined]  # plain HTTP
        return cast(IRequest, request)

    def test_one_check_per_certificate_then_again_after_the_recheck_time(self) -> None:
        month = datetime.timedelta(days=30)
        first = pki.issue_device_identity(self.ca, "device 1", lifetime=month)
        second = pki.issue_device_identity(self.ca, "device 2", lifetime=month)
        for _ in range(3):
            resolved = self.resolver.resolve(self.request(first), b"")
            self.assertEqual(resolved.identity.certificate, first.certificate)
        self.assertEqual(self.checks, 1)
        self.assertEqual(
            self.resolver.resolve(self.request(second), b"").identity.certificate,
            second.certificate,
        )
        self.assertEqual(self.checks, 2, "another certificate is checked on its own")
        self.now = NOW + CLIENT_CERT_RECHECK + datetime.timedelta(seconds=1)
        self.resolver.resolve(self.request(first), b"")
        self.assertEqual(self.checks, 3)

    def test_an_expired_or_untrusted_certificate_is_never_believed(self) -> None:
        leaf = pki.issue_device_identity(self.ca, "device", lifetime=datetime.timedelta(days=1))
        self.resolver.resolve(self.request(leaf), b"")
        self.now = NOW + datetime.timedelta(days=2)
        with self.assertRaises(IdentityRefused):
            self.resolver.resolve(self.request(leaf), b"")
        stranger = pki.issue_device_identity(
            pki.create_ca("other"), "device", lifetime=datetime.timedelta(days=30)
        )
        for _ in range(2):
            with self.assertRaises(IdentityRefused):
                self.resolver.resolve(self.request(stranger), b"")
        with self.assertRaises(IdentityRefused):  # not from the proxy: not believed at all
            self.resolver.resolve(self.request(leaf, peer="192.0.2.7"), b"")
