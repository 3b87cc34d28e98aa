"""The enrollment endpoint: ``GET /enroll/<token>`` answers with a signed enrollment profile.

TLS without a client certificate (the device has none yet). Each download carries a fresh
one-time SCEP challenge (or, with ``identity = "pkcs12"``, a fresh device identity); the link
is consumed in the same transaction that records it.
A link that cannot be used gets 403 and one line a person can act on; nothing is issued.

Interrupted downloads: if the client is gone before the link is consumed, nothing was handed
out, the new identity or challenge is dropped and the link stays usable. Once consumed, the
profile is being written; if the transfer breaks after that the link is used up (the
identity may have reached the client), and the admin makes a new link.
"""

from __future__ import annotations

import datetime
from typing import Any

from klein import Klein
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThread
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource
from werkzeug import exceptions as routing

from mdmappliance.enrollment.configuration_url import ConfigurationURL
from mdmappliance.enrollment.factory import MadeProfile, ProfileFactory
from mdmappliance.enrollment.links import LinkRefused, check_link, consume_link
from mdmappliance.scep.routes import SCEPEndpoint
from mdmappliance.store import Store
from mdmappliance.store.errors import StoreUnavailable

log = Logger()

PROFILE_TYPE = b"application/x-apple-aspen-config"
PREFIX = "/enroll/"


def masked_token_path(path: str) -> str:
    """A path as the access log shows it: a link's token is a secret until it is used."""
    return PREFIX + "{token}" if path.startswith(PREFIX) and path != PREFIX else path


class EnrollmentEndpoint:
    def __init__(
        self,
        *,
        store: Store,
        factory: ProfileFactory,
        scep: SCEPEndpoint | None = None,
        scep_path: str = "/scep",
        configuration_url: ConfigurationURL | None = None,
        configuration_path: str = "/dep/enroll",
    ) -> None:
        self.store = store
        self.factory = factory
        self.app = Klein()
        self._routes()
        if scep is not None:
            scep.install(self.app, scep_path)
        self.configuration_url = configuration_url
        if configuration_url is not None:
            configuration_url.install(self.app, configuration_path)

    def resource(self) -> IResource:
        return self.app.resource()

    def _routes(self) -> None:
        app = self.app

        @app.route("/enroll/", methods=["GET"], defaults={"token": ""})
        @app.route("/enroll/<string:token>", methods=["GET"])
        def enroll(request: IRequest, token: str) -> Any:
            return self._enroll(request, token)

        @app.handle_errors(routing.NotFound)
        def not_found(request: IRequest, failure: Failure) -> bytes:
            return _text(request, 404, "No enrollment here.")

        @app.handle_errors(routing.MethodNotAllowed)
        def not_allowed(request: IRequest, failure: Failure) -> bytes:
            error = failure.value
            assert isinstance(error, routing.MethodNotAllowed)
            allowed = error.valid_methods or ["GET", "HEAD"]
            request.setHeader(b"allow", ", ".join(sorted(allowed)).encode())
            return _text(request, 405, "Method not allowed.")

        @app.handle_errors(LinkRefused)
        def refused(request: IRequest, failure: Failure) -> bytes:
            log.info(
                "enrollment link refused for {peer}: {reason}",
                peer=_peer(request),
                reason=failure.getErrorMessage(),
            )
            return _text(request, 403, failure.getErrorMessage())

        @app.handle_errors(StoreUnavailable)
        def busy(request: IRequest, failure: Failure) -> bytes:
            log.warn("enrollment answered 503: {reason}", reason=failure.getErrorMessage())
            request.setHeader(b"retry-after", b"30")
            return _text(request, 503, "Enrollment is not available right now; try again soon.")

        @app.handle_errors(Exception)
        def failed(request: IRequest, failure: Failure) -> bytes:
            log.failure("enrollment failed", failure)
            return _text(request, 500, "Enrollment failed; ask your IT team.")

    def _challenge_expires(self) -> datetime.datetime | None:
        if self.factory.scep is None:
            return None
        return datetime.datetime.now(datetime.UTC) + self.factory.scep.challenge_lifetime

    def _enroll(self, request: IRequest, token: str) -> Any:
        peer = _peer(request)
        try:
            self.factory.settings().check()
        except ValueError as e:
            log.error("enrollment profile cannot be served: {problem}", problem=str(e))
            return _text(request, 503, "Enrollment is not available yet; ask your IT team.")
        finished: list[bool] = []
        request.notifyFinish().addBoth(  # type: ignore[attr-defined]
            lambda _: finished.append(True)
        )
        checked = self.store.run(check_link, token)
        made = checked.addCallback(
            lambda _: deferToThread(self.factory.make, f"mdmappliance device ({peer})")
        )

        def consume(made: MadeProfile) -> Any:
            if finished:
                # Gone before anything was handed out: the identity is dropped unrecorded
                # and the link stays usable.
                log.info("enrollment download from {peer} abandoned; link kept", peer=peer)
                return None
            used = self.store.transaction(
                consume_link,
                token,
                made,
                peer,
                self.factory.settings().access_rights,
                self._challenge_expires(),
            )
            return used.addCallback(lambda _: made.signed)

        # Klein cancels what a route returns when the client hangs up; the work above
        # carries on regardless (and decides what happens to the link), so the route returns
        # its own Deferred.
        reply: Deferred[bytes] = Deferred()

        def settled(result: bytes | Failure | None) -> None:
            if reply.called:
                if isinstance(result, Failure) and not result.check(LinkRefused):
                    log.failure("enrollment failed after the client hung up", result)
                return
            if isinstance(result, Failure):
                reply.errback(result)
            elif result is not None:
                reply.callback(_profile(request, result))

        made.addCallback(consume).addBoth(settled)
        return reply


def _peer(request: IRequest) -> str:
    return getattr(request.getClientAddress(), "host", "?")


def _profile(request: IRequest, signed: bytes) -> bytes:
    request.setResponseCode(200)
    request.setHeader(b"content-type", PROFILE_TYPE)
    request.setHeader(b"content-disposition", b'attachment; filename="enroll.mobileconfig"')
    request.setHeader(b"content-length", str(len(signed)).encode())
    return signed


def _text(request: IRequest, status: int, message: str) -> bytes:
    body = (message + "\n").encode()
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    request.setHeader(b"content-length", str(len(body)).encode())
    return body
