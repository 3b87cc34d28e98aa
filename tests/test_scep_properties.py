"""Property-based fuzzing of the SCEP server's parsing: a PKIOperation body, valid or mangled
anywhere, is either not a pkiMessage (MalformedMessage: 400) or gets a named SCEPFailure (a
CertRep FAILURE); nothing else escapes (which would be a 5xx)."""

from __future__ import annotations

import datetime

from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from mdmappliance import pki
from mdmappliance.scep import client as scep_client
from mdmappliance.scep.attributes import SCEPFailure
from mdmappliance.scep.csr import KeyPolicy, check_csr
from mdmappliance.scep.envelope import open_envelope, seal_envelope
from mdmappliance.scep.message import MalformedMessage, read_header
from mdmappliance.scep.service import SCEPService

CA = pki.create_ca("fuzz CA", bits=2048)
KEY = pki.new_rsa_key(2048)
SUBJECT = scep_client.common_name_subject("fuzzed device")
VALID = scep_client.request_message(
    scep_client.make_csr(KEY, SUBJECT, "a challenge"),
    signer=scep_client.self_signed(KEY, SUBJECT),
    key=KEY,
    ca=CA.certificate,
).der
SERVICE = SCEPService(
    store=None,  # type: ignore[arg-type]  # only the crypto stage runs here
    ca=CA,
    policy=KeyPolicy(),
    lifetime=datetime.timedelta(days=1),
)
EXAMPLES = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def outcome(body: bytes) -> str:
    try:
        header = read_header(body)
    except MalformedMessage:
        return "400"
    try:
        SERVICE.prepare(body, header)
    except SCEPFailure:
        return "failure"
    return "ok"


class Fuzz(SynchronousTestCase):
    def test_the_valid_request_passes(self) -> None:
        self.assertEqual(outcome(VALID), "ok")

    @EXAMPLES
    @given(st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(1, 255)), max_size=4))
    def test_mangled_bytes(self, flips: list[tuple[int, int]]) -> None:
        body = bytearray(VALID)
        for position, mask in flips:
            body[position] ^= mask
        self.assertIn(outcome(bytes(body)), ("400", "failure", "ok"))

    @EXAMPLES
    @given(st.integers(0, len(VALID)), st.binary(max_size=64))
    def test_truncated_and_padded(self, cut: int, tail: bytes) -> None:
        self.assertIn(outcome(VALID[:cut] + tail), ("400", "failure", "ok"))

    @EXAMPLES
    @given(st.binary(max_size=2048))
    def test_random_bytes(self, body: bytes) -> None:
        self.assertIn(outcome(body), ("400", "failure"))


CSR = scep_client.make_csr(KEY, SUBJECT, "a challenge").public_bytes(Encoding.DER)
ENVELOPE = seal_envelope(CSR, CA.certificate, "aes256_cbc")


def csr_outcome(body: bytes) -> str:
    try:
        check_csr(body, KeyPolicy())
    except SCEPFailure:
        return "failure"
    return "ok"


def envelope_outcome(body: bytes) -> str:
    assert isinstance(CA.key, rsa.RSAPrivateKey)
    try:
        open_envelope(body, (CA.certificate,), CA.key)
    except SCEPFailure:
        return "failure"
    return "ok"


class FuzzInside(SynchronousTestCase):
    """What is inside the envelope (once decrypted) and the envelope itself."""

    @EXAMPLES
    @given(st.lists(st.tuples(st.integers(0, len(CSR) - 1), st.integers(1, 255)), max_size=4))
    def test_mangled_csr(self, flips: list[tuple[int, int]]) -> None:
        body = bytearray(CSR)
        for position, mask in flips:
            body[position] ^= mask
        self.assertIn(csr_outcome(bytes(body)), ("failure", "ok"))

    @EXAMPLES
    @given(st.integers(0, len(CSR)), st.binary(max_size=600))
    def test_truncated_or_random_csr(self, cut: int, tail: bytes) -> None:
        self.assertIn(csr_outcome(CSR[:cut] + tail), ("failure", "ok"))
        self.assertEqual(csr_outcome(tail), "failure")

    @EXAMPLES
    @given(st.lists(st.tuples(st.integers(0, len(ENVELOPE) - 1), st.integers(1, 255)), max_size=4))
    def test_mangled_envelope(self, flips: list[tuple[int, int]]) -> None:
        body = bytearray(ENVELOPE)
        for position, mask in flips:
            body[position] ^= mask
        self.assertIn(envelope_outcome(bytes(body)), ("failure", "ok"))
