"""The device routes (Klein): CheckInURL and ServerURL, PUT with XML plist bodies.

Per request: identity (TLS certificate, Mdm-Signature or trusted proxy header) → parse and
validate the plist → one store transaction (``handlers.handle_message``) → reply: a plist
(JSON for declarative management and GetToken's error body), or 200 with a zero-length body.
Refusals map to their status in one place, ``_refused``.
The body limit (413 before the body is read) is the listener's (``app.graceful``).
"""

from __future__ import annotations

import datetime
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource
from werkzeug import exceptions as routing

from mdmappliance.core.routing import remembering_klein
from mdmappliance.device.handlers import handle_message
from mdmappliance.device.identity import IdentityResolver
from mdmappliance.device.policy import ChannelPolicy, Handled
from mdmappliance.device.replay import ReplayGuard
from mdmappliance.mdm.errors import IdentityRefused, MDMError, MethodNotAllowed, NotFound
from mdmappliance.mdm.messages import (
    Authenticate,
    CheckOut,
    SetBootstrapToken,
    TokenUpdate,
    message_kind,
    parse_message,
    parse_plist,
)
from mdmappliance.pki.identity import DeviceIdentity
from mdmappliance.store import Store, record_event
from mdmappliance.store.errors import StoreUnavailable

log = Logger()

#: Signed check-ins that change state: each is taken once (``replay``).
STATE_CHANGING = (Authenticate, TokenUpdate, CheckOut, SetBootstrapToken)
#: Seconds a device is asked to wait when the store cannot take its request (503).
RETRY_AFTER = b"30"


@dataclass
class _Seen:
    """What a request had shown before it was refused, for the log and the audit event."""

    identity: DeviceIdentity | None = None
    payload: dict[str, Any] | None = None


class DeviceEndpoint:
    def __init__(
        self,
        *,
        store: Store,
        resolver: IdentityResolver,
        policy: ChannelPolicy,
        checkin_path: str,
        server_path: str,
        max_plist_depth: int,
        count_message: Callable[[str], None] | None = None,
        replays: ReplayGuard | None = None,
    ) -> None:
        self.store = store
        self.resolver = resolver
        self.policy = policy
        self.max_plist_depth = max_plist_depth
        self.count_message = count_message
        self.replays = replays or ReplayGuard(
            time.monotonic, 2 * resolver.trust.clock_skew.total_seconds()
        )
        self.paths = (checkin_path, server_path)
        #: CommandUUIDs a device answered NotNow to, per connection: not offered again on it.
        self._not_now: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()
        self._seen: weakref.WeakKeyDictionary[IRequest, _Seen] = weakref.WeakKeyDictionary()
        self.app = remembering_klein()
        self._routes(checkin_path, server_path)

    def resource(self) -> IResource:
        return self.app.resource()

    def _routes(self, checkin_path: str, server_path: str) -> None:
        app = self.app

        @app.route(server_path, methods=["PUT"])
        def server(request: IRequest) -> Any:
            return self.handle(request, checkin_only=False)

        if checkin_path != server_path:

            @app.route(checkin_path, methods=["PUT"])
            def checkin(request: IRequest) -> Any:
                return self.handle(request, checkin_only=True)

        @app.handle_errors(routing.NotFound)
        def not_found(request: IRequest, failure: Failure) -> bytes:
            path = request.path.decode(errors="replace")
            return self._refused(request, NotFound(f"no device endpoint at {path}"))

        @app.handle_errors(routing.MethodNotAllowed)
        def not_put(request: IRequest, failure: Failure) -> bytes:
            method = request.method.decode(errors="replace")
            return self._refused(request, MethodNotAllowed(f"method {method} is not PUT"))

        @app.handle_errors(MDMError)
        def refused(request: IRequest, failure: Failure) -> bytes:
            error = failure.value
            assert isinstance(error, MDMError)
            return self._refused(request, error)

        @app.handle_errors(StoreUnavailable)
        def busy(request: IRequest, failure: Failure) -> bytes:
            log.warn("device request answered 503: {reason}", reason=failure.getErrorMessage())
            request.setHeader(b"retry-after", RETRY_AFTER)
            return _text(request, 503, b"the server cannot take this now; try again later\n")

        @app.handle_errors(Exception)
        def failed(request: IRequest, failure: Failure) -> bytes:
            log.failure("device request failed", failure)
            return _text(request, 500, b"internal error\n")

    def handle(self, request: IRequest, *, checkin_only: bool) -> Deferred[bytes]:
        """One device message (the routes call it): the reply body, or a failure the
        routes' error handlers answer."""
        seen = self._seen[request] = _Seen()
        body = request.content.read() if request.content is not None else b""
        resolved = self.resolver.resolve(request, body)
        identity = seen.identity = resolved.identity
        payload = seen.payload = parse_plist(body, self.max_plist_depth)
        message = parse_message(payload, body, checkin_only=checkin_only)
        once = resolved.signature if isinstance(message, STATE_CHANGING) else None
        if once is not None and self.replays.taken(once):
            raise IdentityRefused("replayed Mdm-Signature: this signed check-in was taken already")
        if self.count_message is not None:
            self.count_message(message_kind(message))
        connection = request.channel  # type: ignore[attr-defined]
        skip = frozenset(self._not_now.get(connection, ()))
        done = self.store.transaction(handle_message, message, identity, self.policy, skip)
        # Klein cancels what a route returns when the device hangs up; the transaction
        # carries on regardless, so the route returns its own Deferred.
        reply: Deferred[bytes] = Deferred()

        def settled(result: Handled | Failure) -> None:
            if isinstance(result, Failure):
                if not reply.called:
                    reply.errback(result)
                elif result.check(MDMError):
                    self._refused(request, result.value, hung_up=True)  # type: ignore[arg-type]
                elif result.check(StoreUnavailable):
                    log.warn("store unavailable: {reason}", reason=result.getErrorMessage())
                else:
                    log.failure("device request failed after the device hung up", result)
                return
            if once is not None:
                self.replays.remember(once)
            if result.not_now:
                self._not_now.setdefault(connection, set()).add(result.not_now)
            if not reply.called:  # else the device hung up: its result is stored, the reply moot
                reply.callback(_reply(request, result))

        done.addBoth(settled)
        return reply

    def _refused(self, request: IRequest, error: MDMError, hung_up: bool = False) -> bytes:
        """Log a refusal (and audit the ones that are security events); the reply body."""
        seen = self._seen.get(request) or _Seen()
        payload = seen.payload or {}
        udid = payload.get("UDID") or payload.get("EnrollmentID")
        peer = getattr(request.getClientAddress(), "host", "?")
        log.warn(
            "device request refused with {status}: {reason} (peer {peer}, UDID {udid})",
            status=error.status,
            reason=str(error),
            peer=peer,
            udid=str(udid),
        )
        if error.audited:
            detail = {
                "status": error.status,
                "reason": str(error),
                "peer": peer,
                "udid": str(udid) if udid else None,
                "certificate_sha256": seen.identity.sha256 if seen.identity else None,
            }
            self.store.transaction(
                record_event,
                "device.refused",
                actor=f"peer:{peer}",
                subject=str(udid) if isinstance(udid, str) else None,
                detail=detail,
            ).addErrback(lambda f: log.failure("could not audit a refusal", f))
        if hung_up:
            return b""
        # 401 makes the device remove its MDM profile; it gets no reason to show.
        return _text(request, error.status, b"" if error.status == 401 else f"{error}\n".encode())


def _reply(request: IRequest, handled: Handled) -> bytes:
    """The handler's answer (200 with a plist or JSON, or with a zero-length body when there
    is nothing to send; or the status it documents)."""
    body = handled.body
    request.setResponseCode(handled.status)
    if body:
        request.setHeader(b"content-type", handled.content_type.encode())
    request.setHeader(b"content-length", str(len(body)).encode())
    return body


def _text(request: IRequest, status: int, body: bytes) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    request.setHeader(b"content-length", str(len(body)).encode())
    return body


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)
