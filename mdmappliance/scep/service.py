"""The SCEP CA: GetCACaps, GetCACert and PKIOperation, answered from the appliance CA.

A PKIOperation is worked in three steps: the crypto (signature, envelope, CSR, and the
certificate the request would get) on a worker thread; the decision (challenge or signer,
recorded with the identity) in one store transaction; the CertRep on a worker thread. Any
refusal is a signed CertRep FAILURE with its failInfo, and nothing issued.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding
from twisted.internet.threads import deferToThread
from twisted.logger import Logger

from mdmappliance import pki
from mdmappliance.pki.identity import DeviceIdentity
from mdmappliance.scep.attributes import FailInfo, MessageType, PKIStatus, SCEPFailure
from mdmappliance.scep.csr import KeyPolicy, check_csr, same_key
from mdmappliance.scep.envelope import open_envelope, reply_cipher, seal_envelope
from mdmappliance.scep.issuance import (
    Candidate,
    issue_renewal,
    issue_with_challenge,
    previously_issued,
)
from mdmappliance.scep.message import (
    Header,
    Request,
    cert_rep,
    degenerate_certificates,
    read_header,
    verify_request,
)
from mdmappliance.store import Store

log = Logger()

#: RFC 8894 3.5.2. Renewal: RenewalReq; SHA-1 only for clients that know nothing newer.
CAPABILITIES = (
    "POSTPKIOperation",
    "SHA-256",
    "SHA-512",
    "AES",
    "DES3",
    "SCEPStandard",
    "Renewal",
    "SHA-1",
)


@dataclass(frozen=True)
class Prepared:
    """A request whose crypto checked out, and what the store is asked to approve."""

    request: Request
    cipher: str
    candidate: Candidate | None = None
    challenge: str | None = None
    renews: str | None = None


class SCEPService:
    def __init__(
        self,
        *,
        store: Store,
        ca: pki.IssuedPair,
        policy: KeyPolicy,
        lifetime: datetime.timedelta,
        now: Callable[[], datetime.datetime] | None = None,
        in_thread: Callable[..., Any] = deferToThread,
    ) -> None:
        if not isinstance(ca.key, rsa.RSAPrivateKey):
            raise pki.PKIError("the SCEP CA needs an RSA key: clients encrypt requests to it")
        self.store = store
        self.ca = ca
        self.ca_key: rsa.RSAPrivateKey = ca.key
        self.policy = policy
        self.lifetime = lifetime
        self.now = now or (lambda: datetime.datetime.now(datetime.UTC))
        self.in_thread = in_thread
        self.ca_der = ca.certificate.public_bytes(Encoding.DER)

    def capabilities(self) -> bytes:
        return "\n".join(CAPABILITIES).encode() + b"\n"

    async def pki_operation(self, der: bytes, peer: str = "?") -> bytes:
        """The CertRep for a pkiMessage. MalformedMessage when it is not one (nothing can be
        addressed to it); StoreUnavailable when the decision cannot be recorded now."""
        header = read_header(der)
        try:
            prepared: Prepared = await self.in_thread(self.prepare, der, header, peer)
            certificate = await self._decide(prepared)
        except SCEPFailure as failure:
            log.info(
                "SCEP {type} from {peer} refused ({info}): {reason}",
                type=_type_name(header.message_type),
                peer=peer,
                info=failure.fail_info.name,
                reason=str(failure),
            )
            reply: bytes = await self.in_thread(self._failure, header, failure)
            return reply
        success: bytes = await self.in_thread(
            self._success, header, prepared.request.signer, prepared.cipher, certificate
        )
        return success

    async def _decide(self, prepared: Prepared) -> bytes:
        request = prepared.request
        if prepared.candidate is None:  # CertPoll
            found = await self.store.run(
                previously_issued, request.header.transaction_id, request.signer_sha256
            )
            if found is None:
                raise SCEPFailure(FailInfo.BAD_CERT_ID, "no certificate for this transaction")
            return found
        if prepared.challenge is not None:
            issued: bytes = await self.store.transaction(
                issue_with_challenge, prepared.candidate, prepared.challenge
            )
            return issued
        assert prepared.renews is not None
        renewed: bytes = await self.store.transaction(
            issue_renewal, prepared.candidate, prepared.renews
        )
        return renewed

    # The crypto, on a worker thread.
    def prepare(self, der: bytes, header: Header, peer: str = "?") -> Prepared:
        """The crypto of a request: SCEPFailure when anything in it is wrong, else what the
        store is asked to approve (with the certificate already made)."""
        kind = header.message_type
        if kind not in (MessageType.PKCS_REQ, MessageType.RENEWAL_REQ, MessageType.CERT_POLL):
            raise SCEPFailure(FailInfo.BAD_REQUEST, f"messageType {kind} is not supported here")
        request = verify_request(der, header)
        if not isinstance(request.signer.public_key(), rsa.RSAPublicKey):
            # The CertRep is encrypted to the signer; key transport needs RSA.
            raise SCEPFailure(FailInfo.BAD_ALG, "the request must be signed with an RSA key")
        opened = open_envelope(request.envelope, (self.ca.certificate,), self.ca_key)
        if kind == MessageType.CERT_POLL:
            return Prepared(request, opened.cipher)
        csr = check_csr(opened.content, self.policy)
        if kind == MessageType.PKCS_REQ:
            if not same_key(csr.public_key, request.signer.public_key()):
                raise SCEPFailure(
                    FailInfo.BAD_REQUEST, "the CSR's key is not the key that signed the request"
                )
            challenge = csr.challenge or request.signed_challenge
            if not challenge:
                raise SCEPFailure(FailInfo.BAD_REQUEST, "the CSR has no challengePassword")
            return Prepared(
                request,
                opened.cipher,
                self._candidate(request, csr.subject, csr.public_key, peer),
                challenge=challenge,
            )
        self._check_renewal_signer(request.signer, csr.subject)
        return Prepared(
            request,
            opened.cipher,
            self._candidate(request, csr.subject, csr.public_key, peer),
            renews=DeviceIdentity.of(request.signer, "scep").sha256,
        )

    def _check_renewal_signer(self, signer: x509.Certificate, subject: x509.Name) -> None:
        try:
            signer.verify_directly_issued_by(self.ca.certificate)
        except (ValueError, TypeError, InvalidSignature):
            raise SCEPFailure(
                FailInfo.BAD_CERT_ID, "a RenewalReq must be signed by an identity this CA issued"
            ) from None
        now = self.now()
        if not signer.not_valid_before_utc <= now <= signer.not_valid_after_utc:
            raise SCEPFailure(FailInfo.BAD_TIME, "the signing identity is not valid now")
        if signer.subject != subject:
            raise SCEPFailure(
                FailInfo.BAD_REQUEST,
                f"a renewal keeps the subject {signer.subject.rfc4514_string()!r}, the CSR asks "
                f"for {subject.rfc4514_string()!r}",
            )

    def _candidate(self, request: Request, subject: x509.Name, public: Any, peer: str) -> Candidate:
        certificate = pki.certify_device_key(
            self.ca, subject, public, lifetime=self.lifetime, now=self.now()
        )
        return Candidate(request.header.transaction_id, request.signer_sha256, certificate, peer)

    def _success(
        self, header: Header, recipient: x509.Certificate, cipher: str, certificate: bytes
    ) -> bytes:
        issued = x509.load_der_x509_certificate(certificate)
        envelope = seal_envelope(degenerate_certificates([issued]), recipient, reply_cipher(cipher))
        return cert_rep(self.ca, header, status=PKIStatus.SUCCESS, envelope=envelope)

    def _failure(self, header: Header, failure: SCEPFailure) -> bytes:
        return cert_rep(
            self.ca,
            header,
            status=PKIStatus.FAILURE,
            fail_info=failure.fail_info,
            fail_text=str(failure),
        )


def _type_name(message_type: int) -> str:
    try:
        return MessageType(message_type).name
    except ValueError:
        return f"messageType {message_type}"
