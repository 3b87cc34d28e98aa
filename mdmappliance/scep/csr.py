"""The PKCS#10 request inside a PKCSReq or RenewalReq: signed by its own key, a key type
and size the appliance accepts, for the key that signed the pkiMessage."""

from __future__ import annotations

from dataclasses import dataclass

from asn1crypto import csr as acsr
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import AttributeOID

from mdmappliance.pki.cms import DIGESTS, PARSE_ERRORS
from mdmappliance.scep.attributes import FailInfo, SCEPFailure

CURVES = {"secp256r1": "P-256", "secp384r1": "P-384"}
MAX_CHALLENGE = 255


@dataclass(frozen=True)
class KeyPolicy:
    rsa_min_bits: int = 2048
    ec_curves: tuple[str, ...] = ()

    def check(self, public: object) -> None:
        if isinstance(public, rsa.RSAPublicKey):
            if public.key_size < self.rsa_min_bits:
                raise SCEPFailure(
                    FailInfo.BAD_ALG,
                    f"an RSA key of {public.key_size} bits is below the {self.rsa_min_bits} "
                    "this CA accepts",
                )
            return
        if isinstance(public, ec.EllipticCurvePublicKey):
            curve = CURVES.get(public.curve.name, public.curve.name)
            if curve not in self.ec_curves:
                raise SCEPFailure(FailInfo.BAD_ALG, f"EC keys on {curve} are not accepted")
            return
        raise SCEPFailure(FailInfo.BAD_ALG, f"{type(public).__name__} keys are not accepted")


@dataclass(frozen=True)
class CheckedCSR:
    subject: x509.Name
    public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey
    challenge: str | None


def _signature_valid(request: acsr.CertificationRequest, public: object) -> bool:
    """The CSR's self-signature over its CertificationRequestInfo, as it was sent."""
    algorithm = request["signature_algorithm"]
    try:
        digest = DIGESTS[algorithm.hash_algo]()
        signed = request["certification_request_info"].dump()
        signature = request["signature"].native
        if isinstance(public, rsa.RSAPublicKey) and algorithm.signature_algo == "rsassa_pkcs1v15":
            public.verify(signature, signed, asym_padding.PKCS1v15(), digest)
        elif isinstance(public, ec.EllipticCurvePublicKey) and algorithm.signature_algo == "ecdsa":
            public.verify(signature, signed, ec.ECDSA(digest))
        else:
            return False
    except (KeyError, ValueError, InvalidSignature):
        return False
    return True


def _as_version_1(request: acsr.CertificationRequest) -> bytes:
    """The same CSR with version 0 (v1), which is all ``cryptography`` reads. Some Apple
    clients send version 2 (seen in micromdm/scep's PKCSReq.der capture); the signature was
    checked on the original first."""
    info = request["certification_request_info"].copy()
    info["version"] = "v1"
    patched = acsr.CertificationRequest(
        {
            "certification_request_info": info,
            "signature_algorithm": request["signature_algorithm"],
            "signature": request["signature"],
        }
    )
    return bytes(patched.dump(force=True))


def _challenge(csr: x509.CertificateSigningRequest) -> str | None:
    try:
        raw = csr.attributes.get_attribute_for_oid(AttributeOID.CHALLENGE_PASSWORD).value
    except x509.AttributeNotFound:
        return None
    return challenge_text(raw)


def challenge_text(raw: bytes | str) -> str:
    """A challengePassword as text, within bounds."""
    try:
        text = raw if isinstance(raw, str) else raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SCEPFailure(FailInfo.BAD_REQUEST, "the challengePassword is not text") from None
    if len(text) > MAX_CHALLENGE:
        raise SCEPFailure(FailInfo.BAD_REQUEST, "the challengePassword is too long")
    return text


def check_csr(der: bytes, policy: KeyPolicy) -> CheckedCSR:
    """The CSR, once it is shown to be self-signed, for an accepted key, with a subject."""
    try:
        request = acsr.CertificationRequest.load(der)
        version = request["certification_request_info"]["version"].native
        csr = x509.load_der_x509_csr(der if version == "v1" else _as_version_1(request))
        public = csr.public_key()
        subject = csr.subject
        challenge = _challenge(csr)
    except SCEPFailure:
        raise
    except UnsupportedAlgorithm as e:
        raise SCEPFailure(FailInfo.BAD_ALG, f"the CSR's key is of no known type ({e})") from None
    except PARSE_ERRORS as e:
        raise SCEPFailure(FailInfo.BAD_REQUEST, f"the CSR does not parse ({e})") from None
    if not _signature_valid(request, public):
        raise SCEPFailure(FailInfo.BAD_MESSAGE_CHECK, "the CSR's self-signature does not verify")
    policy.check(public)
    assert isinstance(public, rsa.RSAPublicKey | ec.EllipticCurvePublicKey)
    if not len(subject):
        raise SCEPFailure(FailInfo.BAD_REQUEST, "the CSR has an empty subject")
    return CheckedCSR(subject, public, challenge)


def same_key(a: object, b: object) -> bool:
    def spki(k: object) -> bytes:
        assert isinstance(k, rsa.RSAPublicKey | ec.EllipticCurvePublicKey)
        return k.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)

    return spki(a) == spki(b)
