"""The MachineInfo a DEP device POSTs to its ConfigurationURL, with a real device capture.

Zentral's ``ota_playload_phase_2`` is a macOS VM's (VirtualMac2,1, build 22A380) signed plist:
indefinite-length BER, SHA-1 with RSA, no signed attributes, signed by a device identity of
the Apple iPhone Device CA and carrying the whole chain up to the Apple Root CA. Commandment's
``dep/profile.xml`` is the bare (unsigned) MachineInfo plist of an iPad; micromdm's
``appleca_signed*.pem`` are two device identities issued by the iPhone Device CA.
"""

from __future__ import annotations

import base64
import datetime
import functools
import plistlib
from collections.abc import Callable, Sequence
from typing import Any

from asn1crypto import cms as acms
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7
from cryptography.x509.oid import NameOID
from twisted.trial.unittest import SynchronousTestCase

from mdmappliance import pki
from mdmappliance.dep.machineinfo import (
    MAX_CHAIN,
    MachineInfo,
    MachineInfoRefused,
    apple_device_chain,
    chain_to_apple_root,
    machine_info_from_header,
    read_machine_info,
)
from mdmappliance.pki.cms import verify_signed_data
from tests.support import REPO, testdata

CAPTURE = ("zentral", "tests", "mdm", "testdata", "ota_playload_phase_2")
CAPTURE_UDID = "78897E40-F532-5DE0-A7DC-56BAC5CEEB9C"
CAPTURE_SERIAL = "ZDL2M9PTJ3"
#: Apple Root CA, as Apple publishes it (https://www.apple.com/certificateauthority/).
APPLE_ROOT_SHA256 = "b0b1730ecbc7ff4505142c49f1295e6eda6bcaed7e2c68c5be91b5a11001f024"
DEVICE_CA = "Apple iPhone Device CA"
IPHONE_CA = "Apple iPhone Certification Authority"
ROOT = "Apple Root CA"
MACHINE_INFO = {
    "UDID": "00008030-001A35E01A38802E",
    "SERIAL": "F9FXK1ABCD",
    "PRODUCT": "iPad13,1",
    "VERSION": "22A3354",
    "OS_VERSION": "18.0",
    "IMEI": "",
    "LANGUAGE": "en-AU",
    "SOFTWARE_UPDATE_DEVICE_ID": "J307AP",
    "SUPPLEMENTAL_BUILD_VERSION": "22A3354",
}


def capture() -> bytes:
    return testdata(*CAPTURE).read_bytes()


def common_name(cert: x509.Certificate) -> str:
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def keep_certificates(der: bytes, keep: Callable[[int], bool]) -> bytes:
    """The CMS with only the certificates whose index ``keep`` accepts. The certificates are
    outside what the device signed, so the signature still holds (what a sender may strip)."""
    info = acms.ContentInfo.load(der)
    signed = info["content"]
    kept = [c for i, c in enumerate(signed["certificates"]) if keep(i)]
    signed["certificates"] = acms.CertificateSet(kept)
    dumped: bytes = info.dump(force=True)
    return dumped


@functools.cache
def own_ca() -> pki.IssuedPair:
    return pki.create_ca("MachineInfo test CA", bits=2048)


@functools.cache
def own_device() -> pki.IssuedPair:
    return pki.issue_device_identity(
        own_ca(), "device identity", lifetime=datetime.timedelta(days=1)
    )


def sign(
    content: bytes,
    signer: pki.IssuedPair | None = None,
    extra: Sequence[x509.Certificate] = (),
    attributes: bool = True,
) -> bytes:
    """``content`` CMS-signed as a device would, by default by a test CA's identity and with
    the signed attributes ``cryptography`` adds (contentType, signingTime, messageDigest)."""
    signer = signer or own_device()
    builder = pkcs7.PKCS7SignatureBuilder().set_data(content)
    builder = builder.add_signer(signer.certificate, signer.key, hashes.SHA256())
    for cert in extra:
        builder = builder.add_certificate(cert)
    options = [pkcs7.PKCS7Options.Binary]
    if not attributes:
        options.append(pkcs7.PKCS7Options.NoAttributes)
    return builder.sign(Encoding.DER, options)


def plist(fields: dict[str, Any], fmt: plistlib.PlistFormat = plistlib.FMT_XML) -> bytes:
    return plistlib.dumps(fields, fmt=fmt)


def read_test_signed_der(der: bytes) -> MachineInfo:
    return read_machine_info(der, chain=(own_ca().certificate,))


def read_test_signed(content: bytes, **kwargs: Any) -> MachineInfo:
    return read_test_signed_der(sign(content, **kwargs))


def ca_certificate(
    subject: x509.Name, issuer: x509.Name, key: pki.PrivateKey, public: Any
) -> x509.Certificate:
    """A CA certificate for ``public`` with any names, signed by ``key``."""
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )


class TheRealCapture(SynchronousTestCase):
    def test_is_indefinite_length_ber_sha1_without_signed_attributes(self) -> None:
        """What a device really sends: the shapes ``verify_signed_data`` must take."""
        der = capture()
        self.assertEqual(der[:2], b"\x30\x80")
        signer_info = acms.ContentInfo.load(der)["content"]["signer_infos"][0]
        self.assertEqual(signer_info["digest_algorithm"]["algorithm"].native, "sha1")
        signed = verify_signed_data(der)
        self.assertIsNone(signed.signed_attrs)
        self.assertEqual(
            [common_name(c) for c in signed.certificates],
            ["0B5938EB-A130-466F-BFA5-BFA950500D03", DEVICE_CA, IPHONE_CA, ROOT],
        )

    def test_verifies_to_apple_root_ca(self) -> None:
        """Although every certificate below the root, the device's own included, has expired."""
        now = datetime.datetime.now(datetime.UTC)
        self.assertTrue(all(c.not_valid_after_utc < now for c in apple_device_chain()[:2]))
        self.assertLess(verify_signed_data(capture()).signer.not_valid_after_utc, now)
        info = read_machine_info(capture())
        self.assertEqual(info.udid, CAPTURE_UDID)
        self.assertEqual(info.serial, CAPTURE_SERIAL)
        self.assertEqual(info.product, "VirtualMac2,1")
        self.assertEqual(info.version, "22A380")
        self.assertIsNone(info.os_version)
        self.assertIsNone(info.language)

    def test_empty_imei_and_meid_are_none_but_kept_in_fields(self) -> None:
        info = read_machine_info(capture())
        self.assertIsNone(info.imei)
        self.assertIsNone(info.meid)
        self.assertEqual(info.fields["IMEI"], "")
        self.assertEqual(info.fields["UserShortName"], "admin")
        self.assertEqual(len(info.fields["CHALLENGE"]), 64)

    def test_the_path_ends_at_the_shipped_root(self) -> None:
        signer = verify_signed_data(capture()).signer
        path = chain_to_apple_root(signer, verify_signed_data(capture()).certificates)
        self.assertEqual([common_name(c) for c in path[1:]], [DEVICE_CA, IPHONE_CA, ROOT])
        self.assertEqual(path[-1], apple_device_chain()[-1])

    def test_macos_shape_leaf_and_device_ca_only(self) -> None:
        """macOS sends the leaf and the iPhone Device CA; the rest comes from the shipped chain."""
        der = keep_certificates(capture(), lambda i: i < 2)
        self.assertEqual(len(verify_signed_data(der).certificates), 2)
        self.assertEqual(read_machine_info(der).serial, CAPTURE_SERIAL)

    def test_leaf_only_takes_the_intermediates_from_the_chain(self) -> None:
        der = keep_certificates(capture(), lambda i: i == 0)
        self.assertEqual(read_machine_info(der).udid, CAPTURE_UDID)

    def test_leaf_only_without_intermediates_in_the_chain_is_refused(self) -> None:
        der = keep_certificates(capture(), lambda i: i == 0)
        root_only = apple_device_chain()[-1:]
        e = self.assertRaises(MachineInfoRefused, read_machine_info, der, root_only)
        self.assertIn(DEVICE_CA, str(e))

    def test_base64_header_is_the_same_der(self) -> None:
        value = base64.b64encode(capture())
        self.assertEqual(machine_info_from_header(value), capture())
        header = f" {value.decode()}\r\n"
        self.assertEqual(read_machine_info(machine_info_from_header(header)).serial, CAPTURE_SERIAL)


class TamperedCaptures(SynchronousTestCase):
    def test_tampered_content_byte(self) -> None:
        der = capture()
        at = der.index(CAPTURE_SERIAL.encode()) + len(CAPTURE_SERIAL) - 1
        tampered = der[:at] + b"4" + der[at + 1 :]
        self.assertNotEqual(tampered, der)
        e = self.assertRaises(MachineInfoRefused, read_machine_info, tampered)
        self.assertIn("does not verify", str(e))

    def test_tampered_signature(self) -> None:
        der = capture()
        signature = acms.ContentInfo.load(der)["content"]["signer_infos"][0]["signature"].native
        at = der.index(signature) + 40
        tampered = der[:at] + bytes([der[at] ^ 0x01]) + der[at + 1 :]
        e = self.assertRaises(MachineInfoRefused, read_machine_info, tampered)
        self.assertIn("does not verify", str(e))

    def test_truncated(self) -> None:
        der = capture()
        for length in (1, 2, 100, len(der) // 2, len(der) - 200, len(der) - 2, len(der) - 1):
            with self.subTest(length=length):
                self.assertRaises(MachineInfoRefused, read_machine_info, der[:length])

    def test_garbage(self) -> None:
        for junk in (b"", b"garbage", b"\x30\x80", b"\x30\x03\x02\x01\x01", b"\xff" * 64):
            with self.subTest(junk=junk):
                e = self.assertRaises(MachineInfoRefused, read_machine_info, junk)
                self.assertNotIn("\n", str(e), "a refusal is one line")

    def test_unsigned_plist(self) -> None:
        """Commandment's MachineInfo of an iPad, as a device would send it were it unsigned."""
        body = testdata("commandment", "testdata", "dep", "profile.xml").read_bytes()
        self.assertIn(b"<key>SERIAL</key>", body)
        self.assertRaises(MachineInfoRefused, read_machine_info, body)

    def test_oversized(self) -> None:
        self.assertRaises(MachineInfoRefused, read_machine_info, capture() + b"\0" * 65536)


class ForeignSigners(SynchronousTestCase):
    def test_signer_under_another_root(self) -> None:
        der = sign(plist(MACHINE_INFO), extra=[own_ca().certificate])
        e = self.assertRaises(MachineInfoRefused, read_machine_info, der)
        self.assertIn("chains to O=mdmappliance,CN=MachineInfo test CA, not to the trusted", str(e))
        without_the_ca = sign(plist(MACHINE_INFO))
        e = self.assertRaises(MachineInfoRefused, read_machine_info, without_the_ca)
        self.assertIn("does not chain", str(e))

    def test_forged_apple_names_do_not_help(self) -> None:
        """A fake "Apple iPhone Device CA" (right names, someone else's key) in the signature."""
        apple_device_ca, apple_iphone_ca = apple_device_chain()[:2]
        fake_key = ec.generate_private_key(ec.SECP256R1())
        fake_ca = ca_certificate(
            apple_device_ca.subject, apple_iphone_ca.subject, fake_key, fake_key.public_key()
        )
        device = pki.issue_device_identity(
            pki.IssuedPair(fake_ca, fake_key), "forged", lifetime=datetime.timedelta(days=1)
        )
        der = sign(plist(MACHINE_INFO), signer=device, extra=[fake_ca])
        e = self.assertRaises(MachineInfoRefused, read_machine_info, der)
        self.assertIn(IPHONE_CA, str(e))

    def test_an_end_entity_cannot_issue(self) -> None:
        """A device identity (CA:FALSE) of the trusted CA signing a certificate of its own."""
        device, sub_key = own_device(), ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "issued by a device")])
        sub = ca_certificate(name, device.certificate.subject, device.key, sub_key.public_key())
        der = sign(plist(MACHINE_INFO), pki.IssuedPair(sub, sub_key), [device.certificate])
        e = self.assertRaises(MachineInfoRefused, read_test_signed_der, der)
        self.assertIn("CN=issued by a device does not chain", str(e))

    def test_chain_without_root(self) -> None:
        e = self.assertRaises(
            MachineInfoRefused, read_machine_info, capture(), apple_device_chain()[:2]
        )
        self.assertIn("no root", str(e))

    def test_overlong_chain(self) -> None:
        keys = [ec.generate_private_key(ec.SECP256R1()) for _ in range(MAX_CHAIN + 1)]
        names = [x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"CA {i}")]) for i in range(6)]
        certs = [ca_certificate(names[0], names[0], keys[0], keys[0].public_key())]
        for i in range(1, len(keys)):
            certs.append(ca_certificate(names[i], names[i - 1], keys[i - 1], keys[i].public_key()))
        self.assertEqual(len(chain_to_apple_root(certs[-2], certs, certs[:1])), MAX_CHAIN)
        e = self.assertRaises(MachineInfoRefused, chain_to_apple_root, certs[-1], certs, certs[:1])
        self.assertIn("longer", str(e))


class TestCASigned(SynchronousTestCase):
    """Blobs signed by a test CA, read with ``chain=`` that CA: the plist and CMS shapes."""

    def test_signed_attributes_are_accepted(self) -> None:
        der = sign(plist(MACHINE_INFO))
        attributes = verify_signed_data(der).signed_attrs
        assert attributes is not None
        self.assertIn("message_digest", [a["type"].native for a in attributes])
        info = read_test_signed_der(der)
        self.assertEqual(
            (info.udid, info.serial, info.os_version, info.imei, info.language),
            (MACHINE_INFO["UDID"], MACHINE_INFO["SERIAL"], "18.0", None, "en-AU"),
        )
        self.assertEqual(info.fields, MACHINE_INFO)

    def test_without_signed_attributes(self) -> None:
        info = read_test_signed(plist(MACHINE_INFO), attributes=False)
        self.assertEqual(info.product, "iPad13,1")

    def test_binary_plist(self) -> None:
        info = read_test_signed(plist(MACHINE_INFO, plistlib.FMT_BINARY))
        self.assertEqual(info.serial, MACHINE_INFO["SERIAL"])

    def test_commandment_machine_info(self) -> None:
        """A real iPad MachineInfo plist (identifiers redacted by commandment), signed here."""
        body = testdata("commandment", "testdata", "dep", "profile.xml").read_bytes()
        info = read_test_signed(body)
        self.assertEqual((info.serial, info.product), ("BLXLN1111111", "iPad4,1"))
        self.assertEqual((info.version, info.language), ("15A5278f", "en-AU"))

    def test_without_udid(self) -> None:
        fields = {k: v for k, v in MACHINE_INFO.items() if k != "UDID"}
        e = self.assertRaises(MachineInfoRefused, read_test_signed, plist(fields))
        self.assertIn("UDID", str(e))

    def test_bad_identifiers(self) -> None:
        for key, value in [
            ("UDID", ""),
            ("UDID", "not a udid"),
            ("UDID", 1234567890),
            ("SERIAL", ""),
            ("SERIAL", "F9FX\nK1AB"),
            ("SERIAL", " F9FXK1ABCD"),
            ("SERIAL", "F" * 65),
            ("SERIAL", ["F9FXK1ABCD"]),
            ("PRODUCT", 7),
            ("LANGUAGE", "x" * 1025),
        ]:
            with self.subTest(key=key, value=value):
                body = plist({**MACHINE_INFO, key: value})
                e = self.assertRaises(MachineInfoRefused, read_test_signed, body)
                self.assertIn(key, str(e))

    def test_not_a_dictionary(self) -> None:
        self.assertRaises(MachineInfoRefused, read_test_signed, plistlib.dumps(["UDID"]))
        self.assertRaises(MachineInfoRefused, read_test_signed, b"<plist><dict>")
        self.assertRaises(MachineInfoRefused, read_test_signed, b"bplist00junk")

    def test_entity_declarations_are_refused(self) -> None:
        body = (
            b'<?xml version="1.0"?>\n<!DOCTYPE plist [<!ENTITY a "F9FXK1ABCD">]>\n'
            b"<plist><dict><key>UDID</key><string>00008030-001A35E01A38802E</string>"
            b"<key>SERIAL</key><string>&a;</string></dict></plist>"
        )
        e = self.assertRaises(MachineInfoRefused, read_test_signed, body)
        self.assertIn("entity", str(e))

    def test_deep_nesting_is_refused(self) -> None:
        deep: Any = "x"
        for _ in range(20):
            deep = [deep]
        body = plist({**MACHINE_INFO, "SUPPLEMENTAL_DEEP": deep})
        self.assertRaises(MachineInfoRefused, read_test_signed, body)


class Headers(SynchronousTestCase):
    def test_bad_base64(self) -> None:
        for value in ("not base64!", b"QUJD*", "QUJ", "é", b"", "   "):
            with self.subTest(value=value):
                self.assertRaises(MachineInfoRefused, machine_info_from_header, value)

    def test_base64_of_garbage_is_refused_when_read(self) -> None:
        der = machine_info_from_header(base64.b64encode(b"garbage"))
        self.assertRaises(MachineInfoRefused, read_machine_info, der)


class TheShippedChain(SynchronousTestCase):
    def test_three_apple_certificates_ending_at_apple_root_ca(self) -> None:
        chain = apple_device_chain()
        self.assertEqual([common_name(c) for c in chain], [DEVICE_CA, IPHONE_CA, ROOT])
        self.assertEqual(chain[-1].fingerprint(hashes.SHA256()).hex(), APPLE_ROOT_SHA256)
        self.assertIs(apple_device_chain(), chain)

    def test_sha1_and_expired_as_the_docstring_says(self) -> None:
        device_ca, iphone_ca, _ = apple_device_chain()
        self.assertIsInstance(device_ca.signature_hash_algorithm, hashes.SHA1)
        self.assertEqual(device_ca.not_valid_after_utc.year, 2014)
        self.assertEqual(iphone_ca.not_valid_after_utc.year, 2022)

    def test_byte_identical_to_zentral(self) -> None:
        shipped = REPO / "mdmappliance" / "dep" / "apple" / "apple-iphone-device-ca-chain.pem"
        zentral = testdata(
            "zentral", "zentral", "contrib", "mdm", "assets", "Apple_iPhone_Device_CA_Fullchain.pem"
        )
        self.assertEqual(shipped.read_bytes(), zentral.read_bytes())
        notice = (shipped.parent / "NOTICE").read_text()
        self.assertIn("0e191465b2b385ae409b0b817083915ab5f7da3c", notice)
        self.assertTrue((shipped.parent / "LICENSE-zentral").exists())

    def test_apple_issued_device_identities_chain_to_the_root(self) -> None:
        """micromdm's two device identities: SHA-1 (2018) and SHA-256 (valid 2024-2027)."""
        for name in ("appleca_signed.pem", "appleca_signed_newer.pem"):
            with self.subTest(name=name):
                path = testdata("micromdm", "pkg", "crypto", "testdata", name)
                leaf = x509.load_pem_x509_certificate(path.read_bytes())
                chain = chain_to_apple_root(leaf)
                self.assertEqual([common_name(c) for c in chain[1:]], [DEVICE_CA, IPHONE_CA, ROOT])
