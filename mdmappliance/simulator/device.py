"""A device simulator that behaves like iOS toward the appliance.

Its identity from an enrollment profile (by SCEP, its own key pair, or PKCS#12) or from the
appliance CA directly, mTLS
(HTTP/1.1, keep-alive like mdmclient), Authenticate, TokenUpdate, CheckOut, UserAuthenticate,
SetBootstrapToken, GetBootstrapToken, GetToken, DeclarativeManagement, polling, and answering
commands with Acknowledged, NotNow or Error (with an ErrorChain).
With ``sign_messages`` every request carries an ``Mdm-Signature`` (SignMessage profiles).
With ``user_enrollment`` it is a User Enrollment device: its messages name it by
``EnrollmentID`` (its ``udid`` here) instead of ``UDID``, and its user channels by
``EnrollmentUserID`` instead of ``UserID``.
"""

from __future__ import annotations

import base64
import datetime
import plistlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import treq
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs7, pkcs12
from cryptography.x509.oid import NameOID
from OpenSSL import crypto
from twisted.internet import ssl
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.http_headers import Headers
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from mdmappliance import pki
from mdmappliance.app.reactor import global_reactor
from mdmappliance.device.digest import md5_hex, parse_digest
from mdmappliance.pki.cms import verify_signed_data
from mdmappliance.pki.trust import TrustStore
from mdmappliance.scep import client as scep_client
from mdmappliance.scep.attributes import MessageType

reactor = global_reactor()
TOPIC = "com.apple.mgmt.External.test-topic"
MAX_STEPS = 10_000


def issue_device_identity(
    ca_cert: Path, ca_key: Path, udid: str, days: int = 365
) -> pki.IssuedPair:
    """A device identity from a CA, as the enrollment profile would carry it."""
    return pki.issue_device_identity(
        pki.read_issuer(ca_cert, ca_key), f"device {udid}", lifetime=datetime.timedelta(days=days)
    )


@implementer(IPolicyForHTTPS)
class DeviceTLSPolicy:
    """Trust the appliance CA for the server named ``server_name``; present the identity."""

    def __init__(
        self, ca_cert: Path, identity: pki.IssuedPair | None, server_name: str = "localhost"
    ) -> None:
        self.server_name = server_name
        self.trust = ssl.Certificate.loadPEM(ca_cert.read_bytes())
        self.client: ssl.PrivateCertificate | None = None
        if identity is not None:
            self.client = ssl.PrivateCertificate.fromCertificateAndKeyPair(
                ssl.Certificate(crypto.X509.from_cryptography(identity.certificate)),
                ssl.KeyPair(crypto.PKey.from_cryptography_key(identity.key)),
            )

    def creatorForNetloc(self, hostname: bytes, port: int) -> IOpenSSLClientConnectionCreator:
        return ssl.optionsForClientTLS(
            self.server_name,
            trustRoot=self.trust,
            clientCertificate=self.client,
            acceptableProtocols=[b"http/1.1"],
        )


def detached_signature(identity: pki.IssuedPair, body: bytes) -> bytes:
    """What a SignMessage device puts in Mdm-Signature."""
    der = (
        pkcs7.PKCS7SignatureBuilder()
        .set_data(body)
        .add_signer(identity.certificate, identity.key, hashes.SHA256())
        # Binary: sign the bytes as they are. Without it cryptography signs the S/MIME
        # canonical form (LF -> CRLF), which is not what a device signs.
        .sign(
            serialization.Encoding.DER,
            [pkcs7.PKCS7Options.DetachedSignature, pkcs7.PKCS7Options.Binary],
        )
    )
    return base64.b64encode(der)


def digest_response(
    username: str, password: str, realm: str, challenge: str, uri: str, method: str = "PUT"
) -> str:
    """What a Mac computes for a UserAuthenticate DigestChallenge (or, with POST, for the
    ConfigurationURL's login)."""
    params = parse_digest(challenge)
    cnonce, nc = secrets.token_hex(8), "00000001"
    ha1 = md5_hex(f"{username}:{realm}:{password}")
    ha2 = md5_hex(f"{method}:{uri}")
    response = md5_hex(f"{ha1}:{params['nonce']}:{nc}:{cnonce}:auth:{ha2}")
    return (
        f'Digest username="{username}", realm="{realm}", nonce="{params["nonce"]}", '
        f'uri="{uri}", qop=auth, nc={nc}, cnonce="{cnonce}", response="{response}"'
    )


@dataclass
class ReceivedProfile:
    """An enrollment profile as a device unpacks it (and its identity, once obtained)."""

    signed: bytes
    profile: dict[str, Any]
    identity: pki.IssuedPair | None
    mdm: dict[str, Any]
    #: The com.apple.security.scep payload's content, when the identity comes by SCEP.
    scep: dict[str, Any] | None = None

    def device_arguments(self) -> dict[str, Any]:
        server = urlsplit(self.mdm["ServerURL"])
        checkin = urlsplit(self.mdm["CheckInURL"])
        host = (server.hostname or "").replace("localhost", "127.0.0.1")
        return {
            "base_url": f"https://{host}:{server.port or 443}",
            "server_path": server.path,
            "checkin_path": checkin.path,
            "topic": self.mdm["Topic"],
            "identity": self.identity,
            "sign_messages": self.mdm.get("SignMessage", False),
        }


def unpack_profile(signed: bytes, ca_cert: Path) -> ReceivedProfile:
    """Verify the signature against the appliance CA and take the profile apart (a SCEP
    profile's identity is still to be obtained: ``install_profile``)."""
    content = verify_signed_data(signed)
    TrustStore((pki.read_certificate(ca_cert),)).verify(
        content.signer, content.certificates, datetime.datetime.now(datetime.UTC)
    )
    profile = plistlib.loads(content.content)
    payloads = {p["PayloadType"]: p for p in profile["PayloadContent"]}
    mdm = payloads["com.apple.mdm"]
    if "com.apple.security.scep" in payloads:
        scep = payloads["com.apple.security.scep"]
        if mdm["IdentityCertificateUUID"] != scep["PayloadUUID"]:
            raise SimulatorError("the MDM payload names another identity than the SCEP one")
        return ReceivedProfile(signed, profile, None, mdm, scep["PayloadContent"])
    p12 = payloads["com.apple.security.pkcs12"]
    key, cert, _ = pkcs12.load_key_and_certificates(p12["PayloadContent"], p12["Password"].encode())
    if cert is None or key is None:
        raise SimulatorError("the PKCS#12 payload holds no identity")
    if mdm["IdentityCertificateUUID"] != p12["PayloadUUID"]:
        raise SimulatorError("the MDM payload names another identity than the PKCS#12 one")
    return ReceivedProfile(signed, profile, pki.IssuedPair(cert, key), mdm)  # type: ignore[arg-type]


class SimulatorError(Exception):
    """The server answered what a device would not accept (the message says what)."""


class SCEPRefused(SimulatorError):
    def __init__(self, answer: scep_client.Answer) -> None:
        super().__init__(f"SCEP {answer.status.name} ({answer.fail_info}): {answer.fail_text}")
        self.answer = answer


def subject_from_payload(subject: list[list[list[str]]]) -> x509.Name:
    """The SCEP payload's Subject (RDNs of [name, value] pairs) as an X.509 name."""
    names = {"CN": NameOID.COMMON_NAME, "O": NameOID.ORGANIZATION_NAME, "C": NameOID.COUNTRY_NAME}
    return x509.Name(
        [
            x509.RelativeDistinguishedName([x509.NameAttribute(names[k], v) for k, v in rdn])
            for rdn in subject
        ]
    )


async def scep_request(
    url: str, ca_cert: Path, operation: str, body: bytes | None = None
) -> tuple[int, bytes, str]:
    """One SCEP HTTP exchange over TLS (no client certificate)."""
    pool = HTTPConnectionPool(reactor, persistent=False)
    client = treq.client.HTTPClient(
        Agent(reactor, contextFactory=DeviceTLSPolicy(ca_cert, None), pool=pool)
    )
    url = url.replace("://localhost", "://127.0.0.1")
    if body is None:
        response = await client.get(url, params={"operation": operation})
    else:
        response = await client.post(
            url,
            params={"operation": operation},
            data=body,
            headers=Headers({b"content-type": [b"application/x-pki-message"]}),
        )
    content = await response.content()
    content_type = (response.headers.getRawHeaders("content-type") or [""])[0]
    await pool.closeCachedConnections()
    return response.code, content, content_type


async def scep_enroll(
    payload: dict[str, Any],
    ca_cert: Path,
    *,
    renew: pki.IssuedPair | None = None,
    key: Any = None,
    challenge: str | None = None,
) -> pki.IssuedPair:
    """Get an identity as a device does from a SCEP payload: GetCACert, a new key pair, a
    CSR with the challenge, a PKCSReq signed by a self-signed certificate (or, with
    ``renew``, a RenewalReq signed by that identity), and the certificate from the CertRep."""
    url = payload["URL"]
    code, ca_der, _ = await scep_request(url, ca_cert, "GetCACert")
    if code != 200:
        raise SimulatorError(f"SCEP GetCACert answered {code}")
    ca = x509.load_der_x509_certificate(ca_der)
    key = key or pki.new_rsa_key(payload.get("Keysize", 2048))
    subject = subject_from_payload(payload["Subject"])
    if renew is None:
        csr = scep_client.make_csr(key, subject, challenge or payload["Challenge"])
        signer, signer_key, kind = (
            scep_client.self_signed(key, subject),
            key,
            MessageType.PKCS_REQ,
        )
    else:
        csr = scep_client.make_csr(key, subject, None)
        signer, signer_key, kind = renew.certificate, renew.key, MessageType.RENEWAL_REQ
    outgoing = scep_client.request_message(
        csr, signer=signer, key=signer_key, ca=ca, message_type=kind
    )
    code, body, content_type = await scep_request(url, ca_cert, "PKIOperation", outgoing.der)
    if code != 200 or content_type != "application/x-pki-message":
        raise SimulatorError(f"SCEP PKIOperation answered {code} ({content_type})")
    answer = scep_client.read_answer(body, outgoing, ca=ca, signer=signer, key=signer_key)
    if answer.certificate is None:
        raise SCEPRefused(answer)
    return pki.IssuedPair(answer.certificate, key)


async def install_profile(signed: bytes, ca_cert: Path, **scep: Any) -> ReceivedProfile:
    """Unpack a profile and, for a SCEP one, obtain its identity as the device would."""
    received = unpack_profile(signed, ca_cert)
    if received.scep is None:
        return received
    identity = await scep_enroll(received.scep, ca_cert, **scep)
    return ReceivedProfile(received.signed, received.profile, identity, received.mdm, received.scep)


async def fetch_profile(url: str, ca_cert: Path, **scep: Any) -> ReceivedProfile:
    """GET an enrollment link over TLS (no client certificate), unpack the profile, and get
    its identity."""
    code, body, content_type = await get_enrollment_link(url, ca_cert)
    if code != 200:
        raise EnrollmentRefused(code, body)
    if content_type != "application/x-apple-aspen-config":
        raise SimulatorError(f"the enrollment link answered {content_type}, not a profile")
    return await install_profile(body, ca_cert, **scep)


class EnrollmentRefused(SimulatorError):
    def __init__(self, code: int, body: bytes) -> None:
        super().__init__(f"{code}: {body!r}")
        self.code = code
        self.body = body


def tls_client(case: Any, ca_cert: Path) -> treq.client.HTTPClient:
    """An HTTPS client without a client certificate, as a device has before it enrolls; its
    connections close when ``case`` (a test) ends."""
    pool = HTTPConnectionPool(reactor, persistent=False)
    case.addCleanup(pool.closeCachedConnections)
    return treq.client.HTTPClient(
        Agent(reactor, contextFactory=DeviceTLSPolicy(ca_cert, None), pool=pool)
    )


async def get_enrollment_link(url: str, ca_cert: Path) -> tuple[int, bytes, str]:
    pool = HTTPConnectionPool(reactor, persistent=False)
    client = treq.client.HTTPClient(
        Agent(reactor, contextFactory=DeviceTLSPolicy(ca_cert, None), pool=pool)
    )
    response = await client.get(url.replace("://localhost", "://127.0.0.1"))
    body = await response.content()
    content_type = (response.headers.getRawHeaders("content-type") or [""])[0]
    await pool.closeCachedConnections()
    return response.code, body, content_type


def _replaces_mdm_profile(command: dict[str, Any]) -> bool:
    inner = command.get("Command", {})
    return inner.get("RequestType") == "InstallProfile" and b"com.apple.mdm" in inner.get(
        "Payload", b""
    )


@dataclass
class Reply:
    code: int
    body: bytes
    headers: Any = None

    def text(self) -> str:
        """The body as one line of text, for an error message."""
        return self.body.decode("utf-8", "replace").strip()[:200]

    def plist(self) -> dict[str, Any]:
        value = plistlib.loads(self.body)
        if not isinstance(value, dict):
            raise SimulatorError(f"the reply is a {type(value).__name__}, not a dictionary")
        return value


Answer = Callable[[dict[str, Any]], tuple[str, dict[str, Any]]]


def acknowledge(command: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return "Acknowledged", {}


@dataclass
class SimulatedDevice:
    base_url: str
    ca_cert: Path
    identity: pki.IssuedPair | None
    udid: str = field(default_factory=lambda: secrets.token_hex(20).upper())
    topic: str = TOPIC
    checkin_path: str = "/mdm/checkin"
    server_path: str = "/mdm/connect"
    sign_messages: bool = False
    persistent: bool = True
    extra_headers: dict[bytes | str, bytes | str] = field(default_factory=dict)
    executed: list[str] = field(default_factory=list)
    bind_address: str | None = None
    adopted: list[ReceivedProfile] = field(default_factory=list)
    user_enrollment: bool = False

    def __post_init__(self) -> None:
        self._connect()
        self.push_magic = secrets.token_hex(16)
        self.token = secrets.token_bytes(32)

    def _connect(self) -> None:
        """A connection pool and client presenting the current identity."""
        self.pool = HTTPConnectionPool(reactor, persistent=self.persistent)
        self.pool.retryAutomatically = False
        policy = DeviceTLSPolicy(self.ca_cert, self.identity)
        self.client = treq.client.HTTPClient(
            Agent(
                reactor,
                contextFactory=policy,
                pool=self.pool,
                bindAddress=(self.bind_address, 0) if self.bind_address else None,
            )
        )

    async def adopt_profile(self, signed: bytes) -> None:
        """Install a (renewed) enrollment profile: take its identity, then check in again
        with it, as a device does when its MDM profile is replaced."""
        received = await install_profile(signed, self.ca_cert)
        await self.use_identity(received.identity)
        self.adopted.append(received)
        await self.enroll()

    async def use_identity(self, identity: pki.IssuedPair | None) -> None:
        """Present ``identity`` from the next connection on."""
        await self.close()
        self.identity = identity
        self._connect()

    @classmethod
    def issued(
        cls,
        base_url: str,
        ca_cert: Path,
        ca_key: Path,
        udid: str | None = None,
        issuer: tuple[Path, Path] | None = None,
        **kw: Any,
    ) -> SimulatedDevice:
        """A device with a fresh identity from the appliance CA (or from ``issuer``, a
        (certificate, key) pair of another CA); ``ca_cert`` is what it trusts the server by."""
        udid = udid or secrets.token_hex(20).upper()
        issuer_cert, issuer_key = issuer or (ca_cert, ca_key)
        identity = issue_device_identity(issuer_cert, issuer_key, udid)
        return cls(base_url=base_url, ca_cert=ca_cert, identity=identity, udid=udid, **kw)

    @classmethod
    async def from_enrollment_link(cls, url: str, ca_cert: Path, **kw: Any) -> SimulatedDevice:
        """Enroll the way a device does: download the profile from the link, check its
        signature, get the identity (SCEP, or the PKCS#12 payload) and take the MDM payload's
        URLs and topic."""
        device = await fetch_profile(url, ca_cert)
        return cls(ca_cert=ca_cert, **device.device_arguments(), **kw)

    async def close(self) -> None:
        await self.pool.closeCachedConnections()

    async def put(
        self,
        path: str,
        message: dict[str, Any] | bytes,
        headers: dict[bytes | str, bytes | str] | None = None,
    ) -> Reply:
        body = message if isinstance(message, bytes) else plistlib.dumps(message)
        all_headers: dict[bytes | str, bytes | str] = {
            "Content-Type": "application/x-apple-aspen-mdm",
            **self.extra_headers,
            **(headers or {}),
        }
        if self.sign_messages:
            if self.identity is None:
                raise SimulatorError("SignMessage needs an identity to sign with")
            all_headers["Mdm-Signature"] = detached_signature(self.identity, body)
        response = await self.client.put(self.base_url + path, data=body, headers=all_headers)
        return Reply(response.code, await response.content(), response.headers)

    def _identifiers(self, user_id: str | None = None) -> dict[str, Any]:
        """The keys that say which enrollment (and user channel) a message is for."""
        if not self.user_enrollment:
            return {"UDID": self.udid, **({"UserID": user_id} if user_id else {})}
        return {"EnrollmentID": self.udid, **({"EnrollmentUserID": user_id} if user_id else {})}

    def _base(self, kind: str, user_id: str | None = None) -> dict[str, Any]:
        return {"MessageType": kind, **self._identifiers(user_id), "Topic": self.topic}

    async def authenticate(self, **facts: str) -> Reply:
        message = self._base("Authenticate")
        message.update(
            {
                "DeviceName": "Simulated iPhone",
                "Model": "iPhone14,2",
                "ModelName": "iPhone",
                "OSVersion": "17.1",
                "BuildVersion": "21B80",
                "ProductName": "iPhone14,2",
                "SerialNumber": "SIM" + self.udid[:9],
            }
        )
        message.update(facts)
        return await self.put(self.checkin_path, message)

    async def token_update(
        self, user_id: str | None = None, unlock_token: bytes | None = None, **extra: Any
    ) -> Reply:
        message = self._base("TokenUpdate", user_id)
        message.update({"Token": self.token, "PushMagic": self.push_magic})
        if unlock_token is not None:
            message["UnlockToken"] = unlock_token
        message.update(extra)
        return await self.put(self.checkin_path, message)

    async def enroll(
        self, facts: dict[str, str] | None = None, unlock_token: bytes | None = None
    ) -> None:
        """Authenticate (with ``facts`` over the defaults) and TokenUpdate; SimulatorError
        if either is refused."""
        reply = await self.authenticate(**(facts or {}))
        if reply.code == 200:
            reply = await self.token_update(unlock_token=unlock_token)
            step = "TokenUpdate"
        else:
            step = "Authenticate"
        if reply.code != 200:
            raise SimulatorError(f"{step} answered {reply.code}: {reply.text()}")

    async def checkout(self, user_id: str | None = None) -> Reply:
        return await self.put(self.checkin_path, self._base("CheckOut", user_id))

    async def user_authenticate(self, user_id: str, digest_response: str | None = None) -> Reply:
        message: dict[str, Any] = {"MessageType": "UserAuthenticate"}
        message.update(self._identifiers(user_id))
        if digest_response is not None:
            message["DigestResponse"] = digest_response
        return await self.put(self.checkin_path, message)

    async def report(self, status: str, command_uuid: str | None = None, **extra: Any) -> Reply:
        message: dict[str, Any] = {**self._identifiers(), "Status": status}
        if command_uuid is not None:
            message["CommandUUID"] = command_uuid
        message.update(extra)
        return await self.put(self.server_path, message)

    async def set_bootstrap_token(self, token: bytes | None, **extra: Any) -> Reply:
        """SetBootstrapToken (macOS device channel); None sends none (remove it)."""
        message: dict[str, Any] = {"MessageType": "SetBootstrapToken", **self._identifiers()}
        if token is not None:
            message["BootstrapToken"] = token
        message.update(extra)
        return await self.put(self.checkin_path, message)

    async def get_bootstrap_token(self, user_id: str | None = None, **extra: Any) -> Reply:
        message: dict[str, Any] = {
            "MessageType": "GetBootstrapToken",
            **self._identifiers(user_id),
            **extra,
        }
        return await self.put(self.checkin_path, message)

    async def declarative_management(
        self, endpoint: str, data: bytes | None = None, user_id: str | None = None
    ) -> Reply:
        """A DeclarativeManagement request to ``endpoint`` (``data``: e.g. a status report's
        JSON)."""
        message: dict[str, Any] = {
            "MessageType": "DeclarativeManagement",
            **self._identifiers(user_id),
            "Endpoint": endpoint,
        }
        if data is not None:
            message["Data"] = data
        return await self.put(self.checkin_path, message)

    async def get_token(
        self,
        service: str,
        parameters: dict[str, Any] | None = None,
        user_id: str | None = None,
    ) -> Reply:
        message: dict[str, Any] = {
            "MessageType": "GetToken",
            **self._identifiers(user_id),
            "TokenServiceType": service,
        }
        if parameters is not None:
            message["TokenParameters"] = parameters
        return await self.put(self.checkin_path, message)

    async def poll(self, answer: Answer = acknowledge) -> list[str]:
        """Idle, then answer each command until the server replies with an empty body.

        Returns the CommandUUIDs received, in order; those answered Acknowledged or Error
        are also appended to ``executed``.
        """
        received: list[str] = []
        reply = await self.report("Idle")
        for _ in range(MAX_STEPS):
            if reply.code != 200:
                raise SimulatorError(f"the server answered {reply.code}: {reply.text()}")
            if not reply.body:
                return received
            command = reply.plist()
            command_uuid = command["CommandUUID"]
            received.append(command_uuid)
            status, extra = answer(command)
            if status == "Acknowledged" and _replaces_mdm_profile(command):
                await self.adopt_profile(command["Command"]["Payload"])
            if status in ("Acknowledged", "Error"):
                self.executed.append(command_uuid)
            reply = await self.report(status, command_uuid, **extra)
        raise SimulatorError(f"no empty reply after {MAX_STEPS} steps")
