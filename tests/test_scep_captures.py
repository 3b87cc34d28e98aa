"""Real PKIOperation captures decode (Apple's indefinite-length BER included), micromdm's
decrypts with its test CA and gets a CertRep; CertReps verify and open with ``openssl cms``."""

from __future__ import annotations

import datetime
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.trial.unittest import TestCase

from mdmappliance import pki
from mdmappliance.scep import client as scep_client
from mdmappliance.scep.attributes import FailInfo, MessageType, PKIStatus
from mdmappliance.scep.csr import KeyPolicy, check_csr
from mdmappliance.scep.envelope import open_envelope
from mdmappliance.scep.message import read_header, verify_request
from mdmappliance.scep.service import SCEPService
from tests.support import testdata

MDMCLIENT = ("commandment", "testdata", "mdmclient-PKIOperation.der")
MICROMDM = ("micromdm-scep", "testdata", "PKCSReq.der")
TESTCA = ("micromdm-scep", "testdata", "testca")
#: When micromdm's test CA (valid 2016-05-29 to 2026-05-29) was current.
PINNED = datetime.datetime(2017, 4, 6, tzinfo=datetime.UTC)


def openssl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=30)


def test_ca(directory: Path) -> pki.IssuedPair:
    """micromdm's test CA; its key is PEM-encrypted with an empty password, which only the
    openssl command reads."""
    key = directory / "testca.key"
    done = openssl(
        "rsa", "-in", str(testdata(*TESTCA, "ca.key")), "-passin", "pass:", "-out", str(key)
    )
    assert done.returncode == 0, done.stderr
    return pki.IssuedPair(
        pki.read_certificate(testdata(*TESTCA, "ca.pem")), pki.read_private_key(key)
    )


def in_line(f: Callable[..., Any], *args: Any) -> Deferred[Any]:
    """Run the service's "thread" work in line (the test has nothing else to do)."""
    return maybeDeferred(f, *args)


class Captures(TestCase):
    def test_mdmclient_capture_decodes_and_its_signature_verifies(self) -> None:
        der = testdata(*MDMCLIENT).read_bytes()
        header = read_header(der)
        self.assertEqual(header.message_type, MessageType.PKCS_REQ)
        self.assertEqual(header.transaction_id, "140BC832976B3D0300BE8F5C2E35CEDF66E73D7B")
        self.assertEqual(header.digest, "sha512")
        self.assertEqual(len(header.sender_nonce), 8)
        request = verify_request(der, header)
        self.assertIn("MDM SCEP SIGNER", request.signer.subject.rfc4514_string())
        self.assertTrue(request.envelope)
        self.assertTrue(request.signed_challenge, "mdmclient signs the challenge too")

    def test_micromdm_capture_decrypts_with_its_test_ca(self) -> None:
        directory = Path(self.mktemp()).absolute()
        directory.mkdir()
        ca = test_ca(directory)
        der = testdata(*MICROMDM).read_bytes()
        header = read_header(der)
        self.assertEqual(header.transaction_id, "A13090761A30F66664F85D37433D2065E1112BA1")
        request = verify_request(der, header)
        assert isinstance(ca.key, rsa.RSAPrivateKey)
        opened = open_envelope(request.envelope, (ca.certificate,), ca.key)
        self.assertEqual(opened.cipher, "tripledes_3key")
        # An Apple CSR of version 2 and 1024 bits: read, and refused by the default policy.
        checked = check_csr(opened.content, KeyPolicy(rsa_min_bits=1024))
        self.assertTrue(checked.subject.rfc4514_string().startswith("CN=com.apple.security.scep."))
        self.assertIsNone(checked.challenge)

    async def test_micromdm_capture_is_answered_with_a_certrep_openssl_verifies(self) -> None:
        directory = Path(self.mktemp()).absolute()
        directory.mkdir()
        ca = test_ca(directory)
        der = testdata(*MICROMDM).read_bytes()
        for policy, fail_info in (
            (KeyPolicy(), FailInfo.BAD_ALG),  # 1024 bits
            (KeyPolicy(rsa_min_bits=1024), FailInfo.BAD_REQUEST),  # no challengePassword
        ):
            service = SCEPService(
                store=None,  # type: ignore[arg-type]  # refused before the store is asked
                ca=ca,
                policy=policy,
                lifetime=datetime.timedelta(days=1),
                now=lambda: PINNED,
                in_thread=in_line,
            )
            reply = await service.pki_operation(der)
            header = read_header(der)
            outgoing = scep_client.Outgoing(der, header.transaction_id, header.sender_nonce)
            signer = verify_request(der, header).signer
            answer = scep_client.read_answer(
                reply,
                outgoing,
                ca=ca.certificate,
                signer=signer,
                key=ca.key,  # type: ignore[arg-type]
            )
            self.assertEqual((answer.status, answer.fail_info), (PKIStatus.FAILURE, fail_info))
            self.assertEqual(read_header(reply).digest, "sha1", "answered in the client's digest")
            (directory / "certrep.der").write_bytes(reply)
            (directory / "empty").write_bytes(b"")
            (directory / "ca.pem").write_bytes(pki.certificate_pem(ca.certificate))
            verified = openssl(
                "cms", "-verify", "-binary", "-inform", "DER",
                "-in", str(directory / "certrep.der"), "-content", str(directory / "empty"),
                "-CAfile", str(directory / "ca.pem"), "-attime", str(int(PINNED.timestamp())),
                "-purpose", "any", "-out", "/dev/null",
            )  # fmt: skip
            self.assertEqual(verified.returncode, 0, verified.stderr)


class CertRepWithOpenSSL(TestCase):
    async def test_success_certrep_verifies_and_decrypts_with_openssl(self) -> None:
        directory = Path(self.mktemp()).absolute()
        directory.mkdir()
        ca = pki.create_ca("SCEP test CA")
        key = pki.new_rsa_key(2048)
        subject = scep_client.common_name_subject("device 1")
        signer = scep_client.self_signed(key, subject)
        csr = scep_client.make_csr(key, subject, "challenge")
        for cipher in ("aes128_cbc", "aes256_cbc", "tripledes_3key", "des"):
            outgoing = scep_client.request_message(
                csr, signer=signer, key=key, ca=ca.certificate, cipher=cipher
            )
            service = SCEPService(
                store=None,  # type: ignore[arg-type]
                ca=ca,
                policy=KeyPolicy(),
                lifetime=datetime.timedelta(days=1),
                in_thread=in_line,
            )
            issued = pki.certify_device_key(
                ca, subject, key.public_key(), lifetime=datetime.timedelta(days=1)
            )
            reply = service._success(
                read_header(outgoing.der), signer, cipher, issued.public_bytes(Encoding.DER)
            )
            paths = {name: directory / name for name in ("rep", "ca", "env", "me", "key", "p7")}
            paths["rep"].write_bytes(reply)
            paths["ca"].write_bytes(pki.certificate_pem(ca.certificate))
            paths["me"].write_bytes(pki.certificate_pem(signer))
            paths["key"].write_bytes(pki.private_key_pem(key))
            done = openssl(
                "cms", "-verify", "-binary", "-inform", "DER", "-in", str(paths["rep"]),
                "-CAfile", str(paths["ca"]), "-purpose", "any", "-out", str(paths["env"]),
            )  # fmt: skip
            self.assertEqual(done.returncode, 0, done.stderr)
            done = openssl(
                "cms", "-decrypt", "-binary", "-inform", "DER", "-in", str(paths["env"]),
                "-recip", str(paths["me"]), "-inkey", str(paths["key"]), "-out", str(paths["p7"]),
            )  # fmt: skip
            self.assertEqual(done.returncode, 0, (cipher, done.stderr))
            shown = openssl("pkcs7", "-inform", "DER", "-in", str(paths["p7"]), "-print_certs")
            self.assertIn("CN = device 1", shown.stdout)
            listed = openssl("cms", "-cmsout", "-print", "-inform", "DER", "-in", str(paths["env"]))
            expected = "aes" if cipher.startswith("aes") else "des-ede3-cbc"
            self.assertIn(expected, listed.stdout.lower(), "the reply keeps the client's family")
            self.assertNotIn("des-cbc\n", listed.stdout.lower(), "never single DES")
