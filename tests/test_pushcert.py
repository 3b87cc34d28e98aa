"""The push certificate: topic from real and mock certificates, `pushcert import` with its
refusals, the customer's CSR, and the vendor's signing checked independently by openssl."""

from __future__ import annotations

import base64
import contextlib
import io
import plistlib
import subprocess
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from twisted.trial.unittest import SynchronousTestCase, TestCase

from mdmappliance import pki
from mdmappliance.cli.main import main
from mdmappliance.config import load_config
from mdmappliance.pki.pushcert import PushCertError, pem_64, read_push_certificate, topic_of
from tests.pushcerts import push_certificate
from tests.support import make_installation, query, testdata


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(list(argv))
    return status, out.getvalue(), err.getvalue()


class Topics(SynchronousTestCase):
    def test_topic_of_a_real_apple_push_certificate(self) -> None:
        push = read_push_certificate(testdata("nanomdm/test/e2e/testdata/push.pem"))
        self.assertEqual(push.topic, "com.apple.mgmt.External.e0bd1eac-1f17-4c8e-8a63-dd17d3dd35d9")
        self.assertLess(push.days_left(), 0, "it expired in 2022")

    def test_mock_certificates(self) -> None:
        base = "micromdm/pkg/crypto/testdata"
        good = pki.read_certificates(testdata(f"{base}/mock_push_cert.pem"))[0]
        self.assertTrue(topic_of(good).startswith("com.apple.mgmt.External."))
        for name, words in (
            ("mock_push_cert_no_uid.pem", "no UID"),
            ("mock_push_cert_wrong_uid_prefix.pem", "does not start with 'com.apple.mgmt.'"),
        ):
            with self.subTest(name=name):
                cert = pki.read_certificates(testdata(f"{base}/{name}"))[0]
                with self.assertRaises(PushCertError) as caught:
                    topic_of(cert)
                self.assertIn(words, str(caught.exception))


class Import(TestCase):
    def setUp(self) -> None:
        self.dir = Path(self.mktemp())
        self.config_path = make_installation(
            self.dir, port=18443, sections={"device": {"topic": ""}}
        )
        self.ca = pki.create_ca("Test Apple Push CA")
        self.files = self.dir / "incoming"
        self.files.mkdir()

    def write_pair(self, pair: pki.IssuedPair, name: str = "push") -> tuple[Path, Path]:
        cert, key = self.files / f"{name}.pem", self.files / f"{name}.key"
        cert.write_bytes(pki.certificate_pem(pair.certificate))
        key.write_bytes(pki.private_key_pem(pair.key))
        return cert, key

    def import_(self, *argv: str) -> tuple[int, str, str]:
        return run_cli("pushcert", "import", *argv, "--config", str(self.config_path))

    def enroll_on(self, topic: str) -> None:
        import sqlite3

        config = load_config(self.config_path)
        conn = sqlite3.connect(config.store.path)
        conn.execute(
            "INSERT INTO devices (udid, first_seen, updated_at) VALUES ('U-0000001', 'x', 'x')"
        )
        conn.execute(
            "INSERT INTO enrollments (udid, topic, state, created_at, updated_at) "
            "VALUES ('U-0000001', ?, 'enrolled', 'x', 'x')",
            (topic,),
        )
        conn.commit()
        conn.close()

    def test_pem_pair_is_imported(self) -> None:
        pair = push_certificate(self.ca, "com.apple.mgmt.External.aaaa")
        status, out, err = self.import_(*map(str, self.write_pair(pair)))
        self.assertEqual(status, 0, err)
        self.assertIn("topic com.apple.mgmt.External.aaaa", out)
        config = load_config(self.config_path)
        self.assertEqual(
            read_push_certificate(config.apns.cert_file).topic, "com.apple.mgmt.External.aaaa"
        )
        self.assertEqual(config.apns.key_file.stat().st_mode & 0o777, 0o600)
        self.assertEqual(
            query(config.store.path, "SELECT kind FROM events WHERE kind = 'pushcert.imported'"),
            [("pushcert.imported",)],
        )

    def test_pkcs12_is_imported(self) -> None:
        pair = push_certificate(self.ca, "com.apple.mgmt.External.p12")
        p12 = self.files / "push.p12"
        p12.write_bytes(
            pkcs12.serialize_key_and_certificates(
                b"push",
                pair.key,
                pair.certificate,
                None,
                serialization.BestAvailableEncryption(b"secret"),
            )
        )
        password = self.files / "password"
        password.write_text("secret\n")
        status, out, err = self.import_(str(p12), "--password-file", str(password))
        self.assertEqual(status, 0, err)
        self.assertIn("com.apple.mgmt.External.p12", out)

    def test_key_of_another_certificate_is_refused(self) -> None:
        cert, _ = self.write_pair(push_certificate(self.ca), "one")
        _, other_key = self.write_pair(push_certificate(self.ca), "two")
        status, _, err = self.import_(str(cert), str(other_key))
        self.assertEqual(status, 1)
        self.assertIn("does not belong to this certificate", err)
        self.assertFalse(load_config(self.config_path).apns.cert_file.exists(), "nothing written")

    def test_certificate_without_mgmt_topic_is_refused(self) -> None:
        cert, key = self.write_pair(push_certificate(self.ca, "wrong.prefix.example"))
        status, _, err = self.import_(str(cert), str(key))
        self.assertEqual(status, 1)
        self.assertIn("com.apple.mgmt.", err)

    def test_a_different_topic_is_refused_unless_forced(self) -> None:
        self.enroll_on("com.apple.mgmt.External.old")
        cert, key = self.write_pair(push_certificate(self.ca, "com.apple.mgmt.External.new"))
        status, _, err = self.import_(str(cert), str(key))
        self.assertEqual(status, 1)
        self.assertIn("silently strands every enrolled device", err)
        self.assertIn("com.apple.mgmt.External.old", err)
        status, out, err = self.import_(str(cert), str(key), "--force")
        self.assertEqual(status, 0, err)
        self.assertIn("forced", out)

    def test_the_same_topic_is_a_renewal(self) -> None:
        self.enroll_on("com.apple.mgmt.External.same")
        cert, key = self.write_pair(push_certificate(self.ca, "com.apple.mgmt.External.same"))
        self.assertEqual(self.import_(str(cert), str(key))[0], 0)

    def test_expiring_soon_warns_and_expired_is_refused(self) -> None:
        cert, key = self.write_pair(push_certificate(self.ca, days=10))
        status, out, _ = self.import_(str(cert), str(key))
        self.assertEqual(status, 0)
        self.assertIn("warning: the certificate expires in", out)
        self.assertIn("expires in", " ".join(load_config(self.config_path).warnings))
        expired = testdata("nanomdm/test/e2e/testdata/push.pem")
        status, _, _err = self.import_(str(expired), str(key))
        self.assertEqual(status, 1)


class VendorSigning(TestCase):
    def setUp(self) -> None:
        self.dir = Path(self.mktemp())
        self.dir.mkdir()

    def vendor_material(self) -> tuple[pki.IssuedPair, pki.IssuedPair]:
        """A stand-in Apple root and an MDM vendor signing certificate, written as files."""
        root = pki.create_ca("Test Apple Root CA")
        vendor = pki.issue_signing_certificate(root, "MDM Vendor: Example")
        for name, data in (
            ("vendor.pem", pki.certificate_pem(vendor.certificate)),
            ("vendor.key", pki.private_key_pem(vendor.key)),
            ("root.pem", pki.certificate_pem(root.certificate)),
        ):
            (self.dir / name).write_bytes(data)
        return root, vendor

    def vendor_sign(self, out: str) -> tuple[int, str, str]:
        return run_cli(
            "pushcert",
            "vendor-sign",
            "--csr",
            str(self.dir / "push-request.csr"),
            "--vendor-cert",
            str(self.dir / "vendor.pem"),
            "--vendor-key",
            str(self.dir / "vendor.key"),
            "--chain",
            str(self.dir / "root.pem"),
            "--out",
            str(self.dir / out),
        )

    def openssl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["openssl", *args], capture_output=True, text=True, timeout=60, cwd=self.dir
        )

    def test_csr_then_vendor_signature_verify_with_openssl(self) -> None:
        status, _, err = run_cli(
            "pushcert", "csr", "--out", str(self.dir), "--organization", "Example"
        )
        self.assertEqual(status, 0, err)
        key_path = self.dir / "push-request.key"
        self.assertEqual(key_path.stat().st_mode & 0o777, 0o600)
        self.assertEqual(
            self.openssl("req", "-in", "push-request.csr", "-verify", "-noout").returncode, 0
        )

        root, vendor = self.vendor_material()
        status, _out, err = self.vendor_sign("PushCertWebRequest")
        self.assertEqual(status, 0, err)

        request = plistlib.loads(base64.b64decode((self.dir / "PushCertWebRequest").read_bytes()))
        self.assertEqual(
            set(request), {"PushCertRequestCSR", "PushCertCertificateChain", "PushCertSignature"}
        )
        csr_der = base64.b64decode(request["PushCertRequestCSR"])
        (self.dir / "csr.der").write_bytes(csr_der)
        (self.dir / "signature.bin").write_bytes(base64.b64decode(request["PushCertSignature"]))
        (self.dir / "vendor-public.pem").write_bytes(
            vendor.certificate.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        checked = self.openssl(
            "dgst",
            "-sha1",
            "-verify",
            "vendor-public.pem",
            "-signature",
            "signature.bin",
            "csr.der",
        )
        self.assertEqual(checked.stdout.strip(), "Verified OK", checked.stderr)
        self.assertEqual(
            self.openssl("req", "-inform", "DER", "-in", "csr.der", "-verify", "-noout").returncode,
            0,
        )
        self.assertEqual(
            x509.load_der_x509_csr(csr_der).public_bytes(serialization.Encoding.PEM),
            (self.dir / "push-request.csr").read_bytes(),
            "the customer's own CSR",
        )
        chain = request["PushCertCertificateChain"]
        (self.dir / "chain.pem").write_text(chain)
        certs = x509.load_pem_x509_certificates(chain.encode())
        self.assertEqual(
            certs, [vendor.certificate, root.certificate], "vendor first, then the chain"
        )
        verified = self.openssl("verify", "-CAfile", "root.pem", "vendor.pem")
        self.assertIn("OK", verified.stdout, verified.stderr)
        for block in chain.split("-----END CERTIFICATE-----")[:-1]:
            lines = [line for line in block.splitlines() if line and not line.startswith("-----")]
            self.assertTrue(all(len(line) == 64 for line in lines[:-1]))
            self.assertLessEqual(len(lines[-1]), 64)

    def test_pem_64_lines(self) -> None:
        root = pki.create_ca("Test Root")
        text = pem_64(root.certificate)
        body = text.splitlines()[1:-1]
        self.assertTrue(all(len(line) == 64 for line in body[:-1]))
        self.assertEqual(x509.load_pem_x509_certificate(text.encode()), root.certificate)

    def test_a_vendor_key_of_another_certificate_is_refused(self) -> None:
        run_cli("pushcert", "csr", "--out", str(self.dir))
        root, _ = self.vendor_material()
        (self.dir / "vendor.key").write_bytes(pki.private_key_pem(root.key))  # wrong key
        status, _, err = self.vendor_sign("out")
        self.assertEqual(status, 1)
        self.assertIn("vendor key does not belong", err)
