"""The SCEP server on the enrollment listener: operations, one-time challenges, renewal,
and every kind of bad request refused with nothing issued."""

from __future__ import annotations

import base64
import datetime
from pathlib import Path
from typing import Any

from asn1crypto import cms as acms
from asn1crypto import core
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from twisted.trial.unittest import TestCase

from mdmappliance import pki
from mdmappliance.commands.queue import enqueue_for_device
from mdmappliance.enrollment.links import create_link
from mdmappliance.pki.identity import DeviceIdentity
from mdmappliance.scep import client as scep_client
from mdmappliance.scep.attributes import FailInfo, MessageType, PKIStatus
from mdmappliance.scep.envelope import seal_envelope
from mdmappliance.simulator.device import (
    ReceivedProfile,
    SCEPRefused,
    SimulatedDevice,
    get_enrollment_link,
    scep_enroll,
    scep_request,
    subject_from_payload,
    tls_client,
    unpack_profile,
)
from tests.support import InProcessAppliance, query, sql

DAY = datetime.timedelta(days=1)


class SCEPCase(TestCase):
    """An appliance, and helpers to get a SCEP profile and count what was issued."""

    def setUp(self) -> None:
        self.appliance = InProcessAppliance(Path(self.mktemp()))
        self.addCleanup(self.appliance.stop)
        self.config = self.appliance.config
        self.ca_cert = self.config.pki.ca_cert
        self.ca = pki.read_certificate(self.ca_cert)

    async def profile(self) -> ReceivedProfile:
        token, _ = await self.appliance.store.transaction(create_link, DAY, "scep", "test")
        code, body, _ = await get_enrollment_link(self.config.enrollment_url(token), self.ca_cert)
        self.assertEqual(code, 200, body)
        received = unpack_profile(body, self.ca_cert)
        assert received.scep is not None
        return received

    def issued_count(self) -> int:
        return int(query(self.config.store.path, "SELECT count(*) FROM issued_identities")[0][0])

    async def post(self, body: bytes, operation: str = "PKIOperation") -> tuple[int, bytes, str]:
        return await scep_request(self.config.scep_url(), self.ca_cert, operation, body)

    async def refused(self, payload: dict[str, Any], **kw: Any) -> scep_client.Answer:
        """A SCEP enrollment that the server answers with a CertRep FAILURE, issuing nothing."""
        before = self.issued_count()
        with self.assertRaises(SCEPRefused) as caught:
            await scep_enroll(payload, self.ca_cert, **kw)
        self.assertEqual(self.issued_count(), before, "a refused request issues nothing")
        answer: scep_client.Answer = caught.exception.answer
        self.assertEqual(answer.status, PKIStatus.FAILURE)
        return answer

    def request(
        self, payload: dict[str, Any], *, key: Any = None, **kw: Any
    ) -> tuple[scep_client.Outgoing, x509.Certificate, Any]:
        """A PKCSReq for ``payload`` as bytes, with its signer and key."""
        key = key or pki.new_rsa_key(2048)
        subject = subject_from_payload(payload["Subject"])
        csr = scep_client.make_csr(key, subject, kw.pop("challenge", payload["Challenge"]))
        signer = kw.pop("signer", None) or scep_client.self_signed(key, subject)
        outgoing = scep_client.request_message(
            csr, signer=signer, key=kw.pop("signer_key", key), ca=kw.pop("ca", self.ca), **kw
        )
        return outgoing, signer, key


class Operations(SCEPCase):
    async def test_get_ca_caps(self) -> None:
        code, body, content_type = await scep_request(
            self.config.scep_url(), self.ca_cert, "GetCACaps"
        )
        self.assertEqual((code, content_type), (200, "text/plain"))
        caps = body.decode().split()
        for cap in ("POSTPKIOperation", "SHA-256", "SHA-512", "AES", "DES3", "SCEPStandard"):
            self.assertIn(cap, caps)
        self.assertIn("Renewal", caps)
        self.assertIn("SHA-1", caps)

    async def test_get_ca_cert_is_the_issuing_ca_alone_in_der(self) -> None:
        code, body, content_type = await scep_request(
            self.config.scep_url(), self.ca_cert, "GetCACert"
        )
        self.assertEqual((code, content_type), (200, "application/x-x509-ca-cert"))
        self.assertEqual(x509.load_der_x509_certificate(body), self.ca)
        usage = self.ca.extensions.get_extension_for_class(x509.KeyUsage).value
        self.assertTrue(usage.digital_signature and usage.key_encipherment, usage)

    async def test_unknown_or_missing_operation_is_400(self) -> None:
        for operation in ("GetNextCACert", "Nope"):
            code, body, _ = await scep_request(self.config.scep_url(), self.ca_cert, operation)
            self.assertEqual(code, 400, (operation, body))
        code, _, _ = await scep_request(self.config.scep_url(), self.ca_cert, "GetCACaps", b"x")
        self.assertEqual(code, 400, "GetCACaps is a GET")

    async def test_profile_carries_a_scep_payload_the_mdm_payload_points_at(self) -> None:
        received = await self.profile()
        payloads = {p["PayloadType"]: p for p in received.profile["PayloadContent"]}
        scep = payloads["com.apple.security.scep"]
        self.assertEqual(received.mdm["IdentityCertificateUUID"], scep["PayloadUUID"])
        content = scep["PayloadContent"]
        self.assertEqual(content["URL"], self.config.scep_url())
        self.assertTrue(content["Name"])
        self.assertEqual(content["Subject"][0][0][0], "CN")
        self.assertGreaterEqual(len(content["Challenge"]), 32)
        self.assertEqual(
            (content["Keysize"], content["Key Type"], content["Key Usage"]), (2048, "RSA", 5)
        )
        self.assertEqual((content["Retries"], content["RetryDelay"]), (3, 10))
        self.assertNotIn("com.apple.security.pkcs12", payloads)
        stored = query(self.config.store.path, "SELECT challenge_sha256 FROM scep_challenges")
        self.assertEqual(len(stored), 1)
        self.assertNotIn(content["Challenge"], repr(stored), "only the challenge's hash is kept")

    async def test_each_profile_gets_its_own_challenge(self) -> None:
        first, second = await self.profile(), await self.profile()
        assert first.scep and second.scep
        self.assertNotEqual(first.scep["Challenge"], second.scep["Challenge"])


class Challenges(SCEPCase):
    async def test_a_challenge_issues_one_identity_bound_to_its_link(self) -> None:
        received = await self.profile()
        assert received.scep
        identity = await scep_enroll(received.scep, self.ca_cert)
        rows = query(self.config.store.path, "SELECT sha256, token_id FROM issued_identities")
        sha256 = DeviceIdentity.of(identity.certificate, "issued").sha256
        self.assertEqual([r[0] for r in rows], [sha256])
        self.assertIsNotNone(rows[0][1], "the identity is recorded against its link")
        identity.certificate.verify_directly_issued_by(self.ca)
        self.assertEqual(
            identity.certificate.subject, subject_from_payload(received.scep["Subject"])
        )
        usage = identity.certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
        self.assertIn(x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH, usage.value)
        self.assertTrue(pki.key_matches_certificate(identity.key, identity.certificate))

        answer = await self.refused(received.scep)  # the same challenge, a new key
        self.assertEqual(answer.fail_info, FailInfo.BAD_REQUEST)
        self.assertIn("already used", answer.fail_text or "")

    async def test_a_challenge_among_the_signed_attributes_is_used_as_apple_sends_it(self) -> None:
        received = await self.profile()
        assert received.scep
        key = pki.new_rsa_key(2048)
        subject = subject_from_payload(received.scep["Subject"])
        signer = scep_client.self_signed(key, subject)
        challenge = acms.CMSAttribute(
            {
                "type": acms.CMSAttributeType("1.2.840.113549.1.9.7"),
                "values": [core.PrintableString(received.scep["Challenge"])],
            }
        )
        outgoing = scep_client.request_message(
            scep_client.make_csr(key, subject, None),  # the CSR carries none
            signer=signer,
            key=key,
            ca=self.ca,
            extra_attributes=(challenge,),
        )
        _, body, _ = await self.post(outgoing.der)
        answer = scep_client.read_answer(body, outgoing, ca=self.ca, signer=signer, key=key)
        self.assertIsNotNone(answer.certificate, answer)
        self.assertEqual(self.issued_count(), 1)

    async def test_wrong_challenge_issues_nothing(self) -> None:
        received = await self.profile()
        assert received.scep
        answer = await self.refused(received.scep, challenge="not-the-challenge")
        self.assertEqual(answer.fail_info, FailInfo.BAD_REQUEST)
        self.assertIn("wrong", answer.fail_text or "")
        await scep_enroll(received.scep, self.ca_cert)  # the right one still works

    async def test_expired_challenge_issues_nothing(self) -> None:
        received = await self.profile()
        assert received.scep
        await self.appliance.store.transaction(
            sql, "UPDATE scep_challenges SET expires_at = '2000-01-01T00:00:00.000Z'"
        )
        answer = await self.refused(received.scep)
        self.assertIn("expired", answer.fail_text or "")

    async def test_subject_other_than_the_profile_asked_issues_nothing(self) -> None:
        received = await self.profile()
        assert received.scep
        payload = dict(received.scep, Subject=[[["CN", "somebody else"]]])
        answer = await self.refused(payload)
        self.assertIn("subject", answer.fail_text or "")

    async def test_a_resent_request_gets_the_same_certificate_not_a_second(self) -> None:
        received = await self.profile()
        assert received.scep
        outgoing, signer, key = self.request(received.scep)
        answers = []
        for _ in range(2):
            code, body, _ = await self.post(outgoing.der)
            self.assertEqual(code, 200)
            answers.append(
                scep_client.read_answer(body, outgoing, ca=self.ca, signer=signer, key=key)
            )
        self.assertEqual(answers[0].certificate, answers[1].certificate)
        self.assertIsNotNone(answers[0].certificate)
        self.assertEqual(self.issued_count(), 1)

        # After a restart (the CertRep lost on the way, say) the resend still gets it.
        await self.appliance.stop()
        self.appliance = InProcessAppliance.reopen(self.config.path)
        self.addCleanup(self.appliance.stop)
        code, body, _ = await self.post(outgoing.der)
        again = scep_client.read_answer(body, outgoing, ca=self.ca, signer=signer, key=key)
        self.assertEqual(again.certificate, answers[0].certificate)
        self.assertEqual(self.issued_count(), 1)

    async def test_get_cert_initial_returns_the_stored_result(self) -> None:
        received = await self.profile()
        assert received.scep
        outgoing, signer, key = self.request(received.scep)
        _, body, _ = await self.post(outgoing.der)
        first = scep_client.read_answer(body, outgoing, ca=self.ca, signer=signer, key=key)
        poll, _, _ = self.request(
            received.scep,
            key=key,
            signer=signer,
            message_type=MessageType.CERT_POLL,
            transaction_id=outgoing.transaction_id,
        )
        _, body, _ = await self.post(poll.der)
        polled = scep_client.read_answer(body, poll, ca=self.ca, signer=signer, key=key)
        self.assertEqual(polled.certificate, first.certificate)

        stranger, stranger_signer, stranger_key = self.request(
            received.scep, message_type=MessageType.CERT_POLL, transaction_id="unknown"
        )
        _, body, _ = await self.post(stranger.der)
        answer = scep_client.read_answer(
            body, stranger, ca=self.ca, signer=stranger_signer, key=stranger_key
        )
        self.assertEqual(
            (answer.status, answer.fail_info), (PKIStatus.FAILURE, FailInfo.BAD_CERT_ID)
        )

    async def test_get_pki_operation_in_base64_standard_and_url_safe(self) -> None:
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            received = await self.profile()
            assert received.scep
            outgoing, signer, key = self.request(received.scep)
            response = await tls_client(self, self.ca_cert).get(
                self.config.scep_url().replace("localhost", "127.0.0.1"),
                params={"operation": "PKIOperation", "message": encode(outgoing.der).decode()},
            )
            body = await response.content()
            self.assertEqual(response.code, 200, body)
            answer = scep_client.read_answer(body, outgoing, ca=self.ca, signer=signer, key=key)
            self.assertIsNotNone(answer.certificate)


def _tlv(tag: int, body: bytes) -> bytes:
    size = len(body)
    if size < 128:
        return bytes([tag, size]) + body
    octets = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(octets)]) + octets + body


def indefinite_ber(der: bytes) -> bytes:
    """The same pkiMessage as Apple encodes it: ContentInfo, its [0], the SignedData and the
    encapsulated content in indefinite lengths, the content a constructed OCTET STRING in two
    chunks. The signed attributes stay DER (the signature covers them)."""
    info = acms.ContentInfo.load(der)
    signed = info["content"]
    envelope = signed["encap_content_info"]["content"].native
    half = len(envelope) // 2
    chunks = _tlv(0x04, envelope[:half]) + _tlv(0x04, envelope[half:])
    end = b"\x00\x00"
    encapsulated = (
        b"\x30\x80" + signed["encap_content_info"]["content_type"].dump()
        + b"\xa0\x80" + b"\x24\x80" + chunks + end + end + end
    )  # fmt: skip
    body: bytes = (
        signed["version"].dump() + signed["digest_algorithms"].dump() + encapsulated
        + signed["certificates"].dump() + signed["signer_infos"].dump()
    )  # fmt: skip
    content_type: bytes = info["content_type"].dump()
    return b"\x30\x80" + content_type + b"\xa0\x80" + b"\x30\x80" + body + end * 3


class AppleEncoding(SCEPCase):
    async def test_indefinite_length_ber_is_answered(self) -> None:
        received = await self.profile()
        assert received.scep
        outgoing, signer, key = self.request(received.scep)
        ber = indefinite_ber(outgoing.der)
        self.assertIn(b"\x30\x80", ber[:2])
        code, body, _ = await self.post(ber)
        self.assertEqual(code, 200, body)
        answer = scep_client.read_answer(
            body,
            scep_client.Outgoing(ber, outgoing.transaction_id, outgoing.sender_nonce),
            ca=self.ca,
            signer=signer,
            key=key,
        )
        self.assertIsNotNone(answer.certificate)
        self.assertEqual(self.issued_count(), 1)


class Renewal(SCEPCase):
    async def enrolled_by_scep(self) -> SimulatedDevice:
        token, _ = await self.appliance.store.transaction(create_link, DAY, "scep", "test")
        device = await SimulatedDevice.from_enrollment_link(
            self.config.enrollment_url(token), self.ca_cert
        )
        self.addCleanup(device.close)
        await device.enroll()
        return device

    async def test_renewal_req_replaces_the_identity_and_the_old_one_stops(self) -> None:
        device = await self.enrolled_by_scep()
        old = device.identity
        assert old is not None
        payload = {
            "URL": self.config.scep_url(),
            "Subject": [[["CN", old.certificate.subject.rfc4514_string()[3:]]]],
            "Keysize": 2048,
        }
        new = await scep_enroll(payload, self.ca_cert, renew=old)
        self.assertNotEqual(new.certificate, old.certificate)
        self.assertEqual(new.certificate.subject, old.certificate.subject)
        renews = query(
            self.config.store.path,
            "SELECT renews_sha256, udid FROM issued_identities WHERE sha256 = ?",
            DeviceIdentity.of(new.certificate, "issued").sha256,
        )
        self.assertEqual(renews, [(DeviceIdentity.of(old.certificate, "x").sha256, device.udid)])

        # The device re-authenticates with its new identity; the old one is then refused.
        await device.use_identity(new)
        await device.enroll()
        command_uuid = await self.appliance.store.transaction(
            enqueue_for_device, device.udid, {"RequestType": "ProfileList"}
        )
        self.assertEqual(await device.poll(), [command_uuid])
        stale = self.appliance.device(identity=old, udid=device.udid)
        self.addCleanup(stale.close)
        self.assertEqual((await stale.report("Idle")).code, 403)

        # Nor can the replaced identity renew again.
        await self.refused(payload, renew=old)

    async def test_renewal_by_revoked_or_foreign_identity_issues_nothing(self) -> None:
        device = await self.enrolled_by_scep()
        assert device.identity is not None
        subject = device.identity.certificate.subject.rfc4514_string()[3:]
        payload = {"URL": self.config.scep_url(), "Subject": [[["CN", subject]]]}
        foreign_ca = pki.create_ca("Someone else")
        foreign = pki.issue_device_identity(foreign_ca, subject, lifetime=DAY)
        answer = await self.refused(payload, renew=foreign)
        self.assertEqual(answer.fail_info, FailInfo.BAD_CERT_ID)
        # Issued by this CA, but never recorded as issued (say, made offline with its key).
        unknown = pki.issue_device_identity(
            pki.read_issuer(self.ca_cert, self.config.pki.ca_key), subject, lifetime=DAY
        )
        await self.refused(payload, renew=unknown)
        expired = pki.issue_device_identity(
            pki.read_issuer(self.ca_cert, self.config.pki.ca_key),
            subject,
            lifetime=DAY,
            now=datetime.datetime.now(datetime.UTC) - 3 * DAY,
        )
        answer = await self.refused(payload, renew=expired)
        self.assertEqual(answer.fail_info, FailInfo.BAD_TIME)
        await self.appliance.store.transaction(
            sql, "UPDATE identities SET revoked_at = '2026-01-01T00:00:00.000Z'"
        )
        answer = await self.refused(payload, renew=device.identity)
        self.assertIn("revoked", answer.fail_text or "")

    async def test_renewal_must_keep_the_subject(self) -> None:
        device = await self.enrolled_by_scep()
        assert device.identity is not None
        payload = {"URL": self.config.scep_url(), "Subject": [[["CN", "another name"]]]}
        answer = await self.refused(payload, renew=device.identity)
        self.assertIn("subject", answer.fail_text or "")


class BadInput(SCEPCase):
    """Each request is refused (400 when it is not a pkiMessage, a CertRep FAILURE when it
    is) and nothing is issued or used up."""

    async def assert_nothing_changed(self, before: tuple[int, int]) -> None:
        self.assertEqual(self.counts(), before)

    def counts(self) -> tuple[int, int]:
        used = query(
            self.config.store.path, "SELECT count(*) FROM scep_challenges WHERE used_at IS NOT NULL"
        )[0][0]
        return self.issued_count(), int(used)

    async def not_a_pki_message(self, body: bytes) -> None:
        before = self.counts()
        code, reply, content_type = await self.post(body)
        self.assertEqual(code, 400, reply)
        self.assertTrue(content_type.startswith("text/plain"))
        await self.assert_nothing_changed(before)

    async def failure(
        self, outgoing: scep_client.Outgoing, signer: x509.Certificate, key: Any
    ) -> scep_client.Answer:
        before = self.counts()
        code, reply, _ = await self.post(outgoing.der)
        self.assertEqual(code, 200, reply)
        answer = scep_client.read_answer(reply, outgoing, ca=self.ca, signer=signer, key=key)
        self.assertEqual(answer.status, PKIStatus.FAILURE)
        await self.assert_nothing_changed(before)
        return answer

    async def test_garbage_truncated_and_wrong_content_types_are_400(self) -> None:
        received = await self.profile()
        assert received.scep
        outgoing, _, _ = self.request(received.scep)
        await self.not_a_pki_message(b"")
        await self.not_a_pki_message(b"\x00" * 100)
        await self.not_a_pki_message(b"hello, this is not DER")
        await self.not_a_pki_message(outgoing.der[: len(outgoing.der) // 2])
        # A SignedData without the SCEP attributes (the signed enrollment profile itself).
        await self.not_a_pki_message(received.signed)
        # An EnvelopedData where the SignedData should be.
        envelope = seal_envelope(b"x", self.ca, "aes256_cbc")
        await self.not_a_pki_message(envelope)
        code, _, _ = await scep_request(self.config.scep_url(), self.ca_cert, "PKIOperation")
        self.assertEqual(code, 400, "a GET PKIOperation without a message")

    async def test_huge_body_is_refused_before_it_is_read(self) -> None:
        before = self.counts()
        code, _, _ = await self.post(b"\x30" * (1024 * 1024))
        self.assertEqual(code, 413)
        await self.assert_nothing_changed(before)

    async def test_unknown_message_type_gets_bad_request(self) -> None:
        received = await self.profile()
        assert received.scep
        for kind in (99, int(MessageType.GET_CRL), int(MessageType.UPDATE_REQ)):
            outgoing, signer, key = self.request(received.scep, message_type=kind)
            answer = await self.failure(outgoing, signer, key)
            self.assertEqual(answer.fail_info, FailInfo.BAD_REQUEST)

    async def test_csr_key_other_than_the_signers_issues_nothing(self) -> None:
        received = await self.profile()
        assert received.scep
        other = pki.new_rsa_key(2048)
        subject = subject_from_payload(received.scep["Subject"])
        signer = scep_client.self_signed(other, subject)
        outgoing, _, _ = self.request(received.scep, signer=signer, signer_key=other)
        answer = await self.failure(outgoing, signer, other)
        self.assertIn("not the key that signed", answer.fail_text or "")

    async def test_request_encrypted_to_another_ca_issues_nothing(self) -> None:
        received = await self.profile()
        assert received.scep
        stranger = pki.create_ca("Another CA").certificate
        outgoing, signer, key = self.request(received.scep, ca=stranger)
        answer = await self.failure(outgoing, signer, key)
        self.assertEqual(answer.fail_info, FailInfo.BAD_MESSAGE_CHECK)

    async def test_tampered_signature_issues_nothing(self) -> None:
        received = await self.profile()
        assert received.scep
        outgoing, signer, key = self.request(received.scep)
        der = bytearray(outgoing.der)
        der[-5] ^= 0x01  # inside the SignerInfo's signature, the last field
        tampered = scep_client.Outgoing(bytes(der), outgoing.transaction_id, outgoing.sender_nonce)
        answer = await self.failure(tampered, signer, key)
        self.assertEqual(answer.fail_info, FailInfo.BAD_MESSAGE_CHECK)

    async def test_small_keys_are_refused(self) -> None:
        received = await self.profile()
        assert received.scep
        small = pki.new_rsa_key(1024)
        outgoing, signer, key = self.request(received.scep, key=small)
        answer = await self.failure(outgoing, signer, key)
        self.assertEqual(answer.fail_info, FailInfo.BAD_ALG)

    async def test_bad_base64_in_get_is_400(self) -> None:
        response = await tls_client(self, self.ca_cert).get(
            self.config.scep_url().replace("localhost", "127.0.0.1"),
            params={"operation": "PKIOperation", "message": "***not base64***"},
        )
        await response.content()
        self.assertEqual(response.code, 400)


class KeyTypes(TestCase):
    """``[scep] ec_curves``: an EC key is accepted on a listed curve. The CertRep is enveloped
    to the request's signer, so an EC key comes by a RenewalReq its RSA identity signs."""

    async def test_ec_key_by_renewal_when_its_curve_is_allowed(self) -> None:
        appliance = InProcessAppliance(Path(self.mktemp()), scep={"ec_curves": ["P-256"]})
        self.addCleanup(appliance.stop)
        token, _ = await appliance.store.transaction(create_link, DAY, "ec", "test")
        device = await SimulatedDevice.from_enrollment_link(
            appliance.config.enrollment_url(token), appliance.config.pki.ca_cert
        )
        self.addCleanup(device.close)
        await device.enroll()
        assert device.identity is not None
        subject = device.identity.certificate.subject.rfc4514_string()[3:]
        payload = {"URL": appliance.config.scep_url(), "Subject": [[["CN", subject]]]}
        for curve, allowed in ((ec.SECP384R1(), False), (ec.SECP256R1(), True)):
            key = ec.generate_private_key(curve)
            if not allowed:
                with self.assertRaises(SCEPRefused) as caught:
                    await scep_enroll(
                        payload, appliance.config.pki.ca_cert, renew=device.identity, key=key
                    )
                self.assertEqual(caught.exception.answer.fail_info, FailInfo.BAD_ALG)
                continue
            new = await scep_enroll(
                payload, appliance.config.pki.ca_cert, renew=device.identity, key=key
            )
            self.assertIsInstance(new.certificate.public_key(), ec.EllipticCurvePublicKey)
            await device.use_identity(new)
            await device.enroll()  # an EC identity checks in over mTLS like any other

    async def test_ec_self_signed_pkcs_req_is_refused_with_bad_alg(self) -> None:
        appliance = InProcessAppliance(Path(self.mktemp()), scep={"ec_curves": ["P-256"]})
        self.addCleanup(appliance.stop)
        token, _ = await appliance.store.transaction(create_link, DAY, "ec", "test")
        code, body, _ = await get_enrollment_link(
            appliance.config.enrollment_url(token), appliance.config.pki.ca_cert
        )
        self.assertEqual(code, 200, body)
        received = unpack_profile(body, appliance.config.pki.ca_cert)
        assert received.scep is not None
        with self.assertRaises(SCEPRefused) as caught:
            await scep_enroll(
                received.scep,
                appliance.config.pki.ca_cert,
                key=ec.generate_private_key(ec.SECP256R1()),
            )
        self.assertEqual(caught.exception.answer.fail_info, FailInfo.BAD_ALG)
