"""The enrollment endpoint: ``GET /enroll/<token>`` answers with a signed enrollment profile.

TLS without a client certificate (the device has none yet). Each download issues a fresh
device identity; the link is consumed in the same transaction that records that identity.
A link that cannot be used gets 403 and one line a person can act on; nothing is issued.

Interrupted downloads: if the client is gone before the link is consumed, nothing was handed
out, the new identity is dropped and the link stays usable. Once consumed, the profile is being
written; if the transfer breaks after that the link is used up (the identity may have reached
the client), and the admin makes a new link.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.threads import deferToThread
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from mdmappliance import pki
from mdmappliance.enrollment.factory import ProfileFactory
from mdmappliance.enrollment.links import LinkRefused, check_link, consume_link
from mdmappliance.store.engine import Store

log = Logger()

PROFILE_TYPE = b"application/x-apple-aspen-config"
PREFIX = b"/enroll/"


class EnrollmentEndpoint(Resource):
    isLeaf = True

    def __init__(self, *, store: Store, factory: ProfileFactory) -> None:
        super().__init__()
        self.store = store
        self.factory = factory

    def render_GET(self, request: Request) -> Any:
        path = request.path
        if not path.startswith(PREFIX) or path.count(b"/") != 2:
            return _text(request, 404, "No enrollment here.")
        token = path[len(PREFIX) :].decode("ascii", "replace")
        peer = getattr(request.getClientAddress(), "host", "?")
        try:
            self.factory.settings().check()
        except ValueError as e:
            log.error("enrollment profile cannot be served: {problem}", problem=str(e))
            return _text(request, 503, "Enrollment is not available yet; ask your IT team.")
        finished: list[bool] = []
        request.notifyFinish().addBoth(lambda _: finished.append(True))
        checked = self.store.run(check_link, token)
        made = checked.addCallback(
            lambda _: deferToThread(self.factory.make, f"mdmappliance device ({peer})")
        )

        def consume(built: tuple[pki.IssuedPair, bytes]) -> Any:
            identity, signed = built
            if finished:
                # Gone before anything was handed out: the identity is dropped unrecorded
                # and the link stays usable.
                log.info("enrollment download from {peer} abandoned; link kept", peer=peer)
                return None
            used = self.store.transaction(
                consume_link,
                token,
                identity.certificate,
                peer,
                self.factory.settings().access_rights,
            )
            return used.addCallback(lambda _: signed)

        def reply(signed: bytes | None) -> None:
            if finished or signed is None:
                return
            request.setResponseCode(200)
            request.setHeader(b"content-type", PROFILE_TYPE)
            request.setHeader(b"content-disposition", b'attachment; filename="enroll.mobileconfig"')
            request.setHeader(b"content-length", str(len(signed)).encode())
            request.write(signed)
            request.finish()

        def failed(failure: Failure) -> None:
            if failure.check(LinkRefused):
                log.info(
                    "enrollment link refused for {peer}: {reason}",
                    peer=peer,
                    reason=failure.getErrorMessage(),
                )
                status, message = 403, failure.getErrorMessage()
            else:
                log.failure("enrollment failed", failure)
                status, message = 500, "Enrollment failed; ask your IT team."
            if not finished:
                _finish(request, status, message)

        made.addCallback(consume).addCallbacks(reply, failed)
        return NOT_DONE_YET


def _text(request: Request, status: int, message: str) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    return (message + "\n").encode()


def _finish(request: Request, status: int, message: str) -> None:
    body = _text(request, status, message)
    request.setHeader(b"content-length", str(len(body)).encode())
    request.write(body)
    request.finish()
