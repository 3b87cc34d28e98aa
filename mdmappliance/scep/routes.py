"""``/scep`` on the enrollment listener (TLS, no client certificate: macOS renewals present
only their leaf when asked for one, smallstep/certificates#746).

RFC 8894 section 4: ``GET ?operation=GetCACaps`` and ``GetCACert``; ``PKIOperation`` by POST
(the body) or by GET (``message``, base64, after URL-unescaping). Every pkiMessage that can be
read gets a CertRep, FAILURE included, with 200; only bytes that are not a pkiMessage get 400.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from klein import Klein
from twisted.logger import Logger
from twisted.web.iweb import IRequest

from mdmappliance.scep.message import MalformedMessage
from mdmappliance.scep.service import SCEPService
from mdmappliance.store.errors import StoreUnavailable

log = Logger()

CA_CERT_TYPE = b"application/x-x509-ca-cert"
PKI_MESSAGE_TYPE = b"application/x-pki-message"
#: A base64 message in a URL: far more than any CSR needs, far less than a memory problem.
MAX_GET_MESSAGE = 64 * 1024


class SCEPEndpoint:
    def __init__(self, service: SCEPService) -> None:
        self.service = service

    def install(self, app: Klein, path: str) -> None:
        """Add the SCEP routes to the enrollment listener's app at ``path``."""

        @app.route(path, methods=["GET", "POST"])
        async def scep(request: IRequest) -> bytes:
            return await self._handle(request)

    async def _handle(self, request: IRequest) -> bytes:
        operation = _arg(request, b"operation")
        method = request.method
        if operation == "GetCACaps" and method == b"GET":
            return _reply(request, 200, b"text/plain", self.service.capabilities())
        if operation == "GetCACert" and method == b"GET":
            return _reply(request, 200, CA_CERT_TYPE, self.service.ca_der)
        if operation == "PKIOperation":
            if method == b"POST":
                body = request.content.read()
            else:
                try:
                    body = _get_message(_arg(request, b"message"))
                except ValueError as e:
                    return _text(request, 400, f"PKIOperation message: {e}")
            return await self._pki_operation(request, body)
        if operation is None:
            return _text(
                request, 400, "SCEP needs ?operation= (GetCACaps, GetCACert, PKIOperation)"
            )
        return _text(
            request, 400, f"unsupported SCEP operation {operation[:40]!r} by {method.decode()}"
        )

    async def _pki_operation(self, request: IRequest, body: bytes) -> bytes:
        peer = getattr(request.getClientAddress(), "host", "?")
        try:
            reply = await self.service.pki_operation(body, peer)
        except MalformedMessage as e:
            log.info(
                "SCEP PKIOperation from {peer} is not a pkiMessage: {reason}",
                peer=peer,
                reason=str(e),
            )
            return _text(request, 400, f"not a SCEP pkiMessage: {e}")
        except StoreUnavailable as e:
            log.warn("SCEP answered 503: {reason}", reason=str(e))
            request.setHeader(b"retry-after", b"30")
            return _text(request, 503, "SCEP is not available right now; try again soon.")
        return _reply(request, 200, PKI_MESSAGE_TYPE, reply)


def _arg(request: IRequest, name: bytes) -> str | None:
    values: Any = (request.args or {}).get(name)
    if not values:
        return None
    try:
        return str(values[0].decode("utf-8"))
    except UnicodeDecodeError:
        return None


def _get_message(text: str | None) -> bytes:
    """The DER of a GET PKIOperation: base64 (standard or URL-safe, '+' turned to ' ' by
    form decoding put back, line breaks ignored)."""
    if not text:
        raise ValueError("the message parameter is missing")
    if len(text) > MAX_GET_MESSAGE:
        raise ValueError("the message parameter is too long")
    cleaned = "".join(text.replace(" ", "+").split()).replace("-", "+").replace("_", "/")
    cleaned += "=" * (-len(cleaned) % 4)
    try:
        return base64.b64decode(cleaned, validate=True)
    except binascii.Error:
        raise ValueError("the message parameter is not base64") from None


def _reply(request: IRequest, status: int, content_type: bytes, body: bytes) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"content-type", content_type)
    request.setHeader(b"content-length", str(len(body)).encode())
    return body


def _text(request: IRequest, status: int, message: str) -> bytes:
    return _reply(request, status, b"text/plain; charset=utf-8", (message + "\n").encode())
