"""The device endpoint: CheckInURL and ServerURL, PUT with XML plist bodies.

A raw twisted.web Resource rather than a Klein route: these are the two hot paths of the
appliance, and routing buys nothing for two fixed paths (``make bench`` measures both).

Per request: identity (TLS certificate, Mdm-Signature or trusted proxy header) → parse and
validate the plist → one store transaction (``dispatch.handle_message``) → reply: a plist,
or 200 with a zero-length body. Refusals map to their status in one place, ``_refuse``.
"""

from __future__ import annotations

import datetime
import weakref
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from mdmappliance.admin.metrics import Metrics
from mdmappliance.device.checkin import ChannelPolicy, Handled, handle_message
from mdmappliance.device.identity import IdentityResolver
from mdmappliance.mdm.errors import MDMError, MethodNotAllowed, NotFound
from mdmappliance.mdm.messages import message_kind, parse_message, parse_plist
from mdmappliance.pki.identity import DeviceIdentity
from mdmappliance.store.engine import Store
from mdmappliance.store.events import record_event

log = Logger()

PLIST_TYPE = b"application/xml; charset=UTF-8"


class DeviceEndpoint(Resource):
    isLeaf = True

    def __init__(
        self,
        *,
        store: Store,
        resolver: IdentityResolver,
        policy: ChannelPolicy,
        checkin_path: str,
        server_path: str,
        max_plist_depth: int,
        clock: IReactorTime,
        metrics: Metrics | None = None,
    ) -> None:
        super().__init__()
        self.metrics = metrics
        self.store = store
        self.resolver = resolver
        self.policy = policy
        self.checkin_path = checkin_path.encode()
        self.server_path = server_path.encode()
        self.max_plist_depth = max_plist_depth
        self.clock = clock
        #: CommandUUIDs a device answered NotNow to, per connection: not offered again on it.
        self._not_now: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()

    def render(self, request: Request) -> Any:
        try:
            if request.path not in (self.checkin_path, self.server_path):
                raise NotFound(f"no device endpoint at {request.path.decode(errors='replace')}")
            if request.method != b"PUT":
                raise MethodNotAllowed(f"method {request.method.decode()} is not PUT")
            body = request.content.read() if request.content is not None else b""
            identity = self.resolver.resolve(request, body)
            payload = parse_plist(body, self.max_plist_depth)
            checkin_only = request.path == self.checkin_path != self.server_path
            message = parse_message(payload, body, checkin_only=checkin_only)
            if self.metrics is not None:
                self.metrics.messages[message_kind(message)] += 1
        except MDMError as e:
            self._refuse(request, e, None, None)
            return NOT_DONE_YET
        except Exception:
            log.failure("device request failed before reaching the store")
            _finish(request, 500, b"internal error\n")
            return NOT_DONE_YET
        connection = request.channel
        skip = frozenset(self._not_now.get(connection, ()))
        done = self.store.transaction(handle_message, message, identity, self.policy, skip)
        finished: list[bool] = []
        request.notifyFinish().addBoth(lambda _: finished.append(True))

        def reply(handled: Handled) -> None:
            if handled.not_now:
                self._not_now.setdefault(connection, set()).add(handled.not_now)
            if finished:
                return  # the device hung up; its result is stored, the reply is moot
            request.setResponseCode(200)
            if handled.body:
                request.setHeader(b"content-type", PLIST_TYPE)
            request.setHeader(b"content-length", str(len(handled.body)).encode())
            request.write(handled.body)
            request.finish()

        def failed(failure: Failure) -> None:
            if failure.check(MDMError):
                error = failure.value
                assert isinstance(error, MDMError)
                self._refuse(request, error, identity, payload, hung_up=bool(finished))
                return
            log.failure("device request failed", failure)
            if not finished:
                _finish(request, 500, b"internal error\n")

        done.addCallbacks(reply, failed)
        return NOT_DONE_YET

    def _refuse(
        self,
        request: Request,
        error: MDMError,
        identity: DeviceIdentity | None,
        payload: dict[str, Any] | None,
        hung_up: bool = False,
    ) -> None:
        udid = payload.get("UDID") if payload else None
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
                "certificate_sha256": identity.sha256 if identity else None,
            }
            self.store.transaction(
                record_event,
                "device.refused",
                actor=f"peer:{peer}",
                subject=str(udid) if isinstance(udid, str) else None,
                detail=detail,
            ).addErrback(lambda f: log.failure("could not audit a refusal", f))
        if not hung_up:
            body = b"" if error.status == 401 else (str(error) + "\n").encode()
            _finish(request, error.status, body)


def _finish(request: Request, status: int, body: bytes) -> None:
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    request.setHeader(b"content-length", str(len(body)).encode())
    request.write(body)
    request.finish()


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)
