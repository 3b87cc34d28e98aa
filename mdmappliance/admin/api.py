"""The local JSON admin API (Klein). This issue's routes: ``GET /v1/health``.

Every request must carry ``Authorization: Bearer <admin API key>``; anything else gets a
bare 401 before routing, so an unauthenticated caller learns nothing, not even which
routes exist.
"""

from __future__ import annotations

import dataclasses
import datetime
import hmac
import json
from collections.abc import Callable
from functools import partial
from typing import Any

from klein import Klein
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource
from werkzeug.exceptions import MethodNotAllowed, NotFound

from mdmappliance._version import __version__
from mdmappliance.admin.metrics import Metrics, render, store_gauges
from mdmappliance.admin.openapi import document as openapi_document
from mdmappliance.admin.queries import (
    COMMAND_STATES,
    DEVICE_STATES,
    MAX_PAGE,
    all_enrolled,
    command_detail,
    device_commands,
    device_detail,
    list_devices,
    udids_of,
)
from mdmappliance.admin.webhooks import backlog
from mdmappliance.apns.pusher import PushService
from mdmappliance.commands.errors import CommandInvalid, CommandRejected
from mdmappliance.commands.inventory import command_status
from mdmappliance.commands.queue import cancel
from mdmappliance.commands.send import CommandSender, resolve_udids
from mdmappliance.core.timestamps import utc_timestamp
from mdmappliance.enrollment.links import create_link, list_links, parse_duration, revoke_link
from mdmappliance.enrollment.retirement import retire_device, revoke_device
from mdmappliance.store.engine import Store
from mdmappliance.store.events import events_after, record_event

HEALTH_DB_TIMEOUT = 2.0


def _json_body(request: IRequest) -> tuple[dict[str, Any], list[str]]:
    """The request's JSON object body (empty allowed), and what is wrong with it."""
    raw = request.content.read() if request.content is not None else b""
    if not raw.strip():
        return {}, []
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        return {}, [f"the body is not JSON: {e}"]
    if not isinstance(body, dict):
        return {}, ["the body must be a JSON object"]
    return body, []


class BadQuery(ValueError):
    """A query parameter the route cannot use; its message names the parameter."""


def _arg(request: IRequest, name: str, choices: tuple[str, ...] | None = None) -> str | None:
    values = (request.args or {}).get(name.encode(), [])
    if not values:
        return None
    try:
        value: str = values[-1].decode("utf-8")
    except UnicodeDecodeError:
        raise BadQuery(f"{name}: not UTF-8") from None
    if choices is not None and value not in choices:
        raise BadQuery(f"{name}: must be one of {', '.join(choices)}")
    return value


def _int_arg(request: IRequest, name: str, default: int, low: int, high: int) -> int:
    value = _arg(request, name)
    if value is None:
        return default
    if not value.isdigit() or not low <= int(value) <= high:
        raise BadQuery(f"{name}: must be an integer from {low} to {high}")
    return int(value)


def write_json(request: IRequest, status: int, body: dict[str, Any]) -> bytes:
    """Set status and headers for a JSON reply and return its bytes."""
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-store")
    return json.dumps(body, indent=None, sort_keys=True).encode("utf-8") + b"\n"


class BearerAuth(Resource):
    """Let a request through to ``wrapped`` only with a known bearer key."""

    isLeaf = True

    def __init__(self, wrapped: IResource, keys: dict[str, str | tuple[str, str]]) -> None:
        """``keys``: name → key (full rights), or name → (key, 'full' | 'read')."""
        super().__init__()
        self._wrapped = wrapped
        self._keys = {
            name: (
                (value if isinstance(value, str) else value[0]).encode("utf-8"),
                "full" if isinstance(value, str) else value[1],
            )
            for name, value in keys.items()
        }

    def key_name(self, request: IRequest) -> tuple[str, str] | None:
        """(name, role) of the presented key, or None."""
        header = request.getHeader(b"authorization") or b""
        scheme, _, presented = header.partition(b" ")
        if scheme.lower() != b"bearer" or not presented:
            return None
        found = None
        for name, (key, role) in self._keys.items():
            if hmac.compare_digest(presented.strip(), key):
                found = (name, role)
        return found

    def render(self, request: IRequest) -> bytes | int:
        found = self.key_name(request)
        if found is None:
            request.setHeader(b"www-authenticate", b'Bearer realm="mdmappliance"')
            return write_json(request, 401, {"error": "missing or invalid API key"})
        name, role = found
        if role == "read" and request.method not in (b"GET", b"HEAD"):
            return write_json(request, 403, {"error": f"the API key {name!r} is read-only"})
        request.api_key_name = name  # type: ignore[attr-defined]
        result: bytes | int = self._wrapped.render(request)
        return result


def _audit_push(conn: Any, actor: str, detail: dict[str, Any]) -> None:
    record_event(conn, "push.requested", actor=actor, detail=detail)


class AdminAPI:
    """The admin routes, bound to the store and the clock they report on."""

    app = Klein()

    def __init__(
        self,
        *,
        store: Store,
        clock: IReactorTime,
        started_at: float,
        link_url: Callable[[str], str] = lambda token: token,
        link_lifetime: datetime.timedelta = datetime.timedelta(days=7),
        profile_identifier: str = "mdmappliance.enrollment",
        push: PushService | None = None,
        sender: CommandSender | None = None,
        webhook_urls: tuple[str, ...] = (),
        metrics: Metrics | None = None,
    ) -> None:
        self.metrics = metrics or Metrics()
        self.profile_identifier = profile_identifier
        self.push = push
        self.sender = sender
        self.webhook_urls = webhook_urls
        self.store = store
        self.clock = clock
        self.started_at = started_at
        self.link_url = link_url
        self.link_lifetime = link_lifetime

    def resource(self, api_keys: dict[str, Any]) -> IResource:
        return BearerAuth(self.app.resource(), api_keys)

    @app.route("/v1/health", methods=["GET"])
    def health(self, request: IRequest) -> Any:
        body: dict[str, Any] = {
            "version": __version__,
            "uptime_seconds": round(self.clock.seconds() - self.started_at, 3),
        }
        checked = self.store.schema_version()
        checked.addTimeout(HEALTH_DB_TIMEOUT, self.clock)

        body["apns"] = self.push.status() if self.push is not None else {"enabled": False}

        def healthy(version: int) -> bytes:
            body["database"] = {"ok": True, "schema_version": version}
            if "alert" in body["apns"]:
                body["status"] = "degraded"  # loud: every push has stopped
                return write_json(request, 503, body)
            body["status"] = "ok"
            return write_json(request, 200, body)

        def unhealthy(failure: Failure) -> bytes:
            body["status"] = "unavailable"
            body["database"] = {"ok": False, "error": failure.getErrorMessage() or "timed out"}
            return write_json(request, 503, body)

        return checked.addCallbacks(healthy, unhealthy)

    @app.route("/v1/enrollment-tokens", methods=["POST"])
    async def create_enrollment_token(self, request: IRequest) -> bytes:
        body, errors = _json_body(request)
        lifetime = self.link_lifetime
        expires = body.get("expires")
        if expires is not None:
            try:
                lifetime = parse_duration(str(expires))
            except ValueError as e:
                errors.append(f"expires: {e}")
        note = body.get("note", "")
        if not isinstance(note, str) or len(note) > 500:
            errors.append("note: must be a string of at most 500 characters")
        unknown = sorted(set(body) - {"expires", "note"})
        errors += [f"{key}: unknown field" for key in unknown]
        if errors:
            return write_json(request, 400, {"errors": errors})
        token, link = await self.store.transaction(create_link, lifetime, note, self.actor(request))
        return write_json(
            request,
            201,
            {
                "id": link.id,
                "token": token,
                "url": self.link_url(token),
                "expires_at": link.expires_at,
                "note": link.note,
            },
        )

    @app.route("/v1/enrollment-tokens", methods=["GET"])
    async def list_enrollment_tokens(self, request: IRequest) -> bytes:
        links = await self.store.run(list_links)
        now = utc_timestamp()
        return write_json(
            request,
            200,
            {
                "enrollment_tokens": [
                    {
                        "id": link.id,
                        "status": link.status(now),
                        "note": link.note,
                        "created_at": link.created_at,
                        "expires_at": link.expires_at,
                        "used_at": link.used_at,
                        "revoked_at": link.revoked_at,
                    }
                    for link in links
                ]
            },
        )

    @app.route("/v1/enrollment-tokens/<int:link_id>", methods=["DELETE"])
    async def revoke_enrollment_token(self, request: IRequest, link_id: int) -> bytes:
        if await self.store.transaction(revoke_link, link_id, self.actor(request)):
            return write_json(request, 200, {"id": link_id, "status": "revoked"})
        return write_json(request, 404, {"error": f"no unused enrollment token {link_id}"})

    @app.route("/v1/devices/<string:udid>/revoke", methods=["POST"])
    async def revoke_device(self, request: IRequest, udid: str) -> bytes:
        count = await self.store.transaction(revoke_device, udid, self.actor(request))
        if not count:
            return write_json(request, 404, {"error": f"no unrevoked identity bound to {udid}"})
        return write_json(request, 200, {"udid": udid, "revoked_identities": count})

    @app.route("/v1/devices/<string:udid>/retire", methods=["POST"])
    async def retire_device(self, request: IRequest, udid: str) -> bytes:
        body, errors = _json_body(request)
        now = body.get("now", False)
        if not isinstance(now, bool):
            errors.append("now: must be true or false")
        errors += [f"{key}: unknown field" for key in sorted(set(body) - {"now"})]
        if errors:
            return write_json(request, 400, {"errors": errors})
        try:
            command_uuid = await self.store.transaction(
                retire_device, udid, self.profile_identifier, self.actor(request), now=now
            )
        except CommandRejected as e:
            return write_json(request, 404, {"error": str(e)})
        state = "retiring" if command_uuid else "retired"
        return write_json(
            request, 200, {"udid": udid, "state": state, "command_uuid": command_uuid}
        )

    @app.route("/v1/push", methods=["POST"])
    async def push_devices(self, request: IRequest) -> bytes:
        """Push named devices (``{"udids": [...]}``) or every pushable one (``{"all": true}``)."""
        body, errors = _json_body(request)
        udids = body.get("udids", [])
        everyone = body.get("all", False)
        if not isinstance(everyone, bool):
            errors.append("all: must be true or false")
        if not isinstance(udids, list) or not all(isinstance(u, str) and u for u in udids):
            errors.append("udids: must be an array of UDID strings")
        elif not udids and not everyone:
            errors.append("udids: name at least one device, or give all: true")
        elif udids and everyone:
            errors.append("udids: give either udids or all, not both")
        errors += [f"{key}: unknown field" for key in sorted(set(body) - {"udids", "all"})]
        if errors:
            return write_json(request, 400, {"errors": errors})
        if self.push is None:
            return write_json(request, 409, {"error": "no push certificate is installed"})
        if self.push.pusher.blocked:
            return write_json(request, 409, {"error": self.push.pusher.blocked})
        await self.store.transaction(
            _audit_push, self.actor(request), {"all": True} if everyone else {"udids": udids}
        )
        if everyone:
            count = await self.push.pusher.push_all()
            return write_json(request, 202, {"pushed": count})
        found, unknown = await self.store.run(resolve_udids, udids)
        self.push.pusher.request(found.values())
        return write_json(request, 202, {"requested": sorted(found), "unknown": unknown})

    @app.route("/v1/devices", methods=["GET"])
    async def devices(self, request: IRequest) -> bytes:
        try:
            query = partial(
                list_devices,
                state=_arg(request, "state", DEVICE_STATES),
                platform=_arg(request, "platform", ("ios", "macos", "tvos")),
                serial=_arg(request, "serial"),
                after=_int_arg(request, "cursor", 0, 0, 2**62),
                limit=_int_arg(request, "limit", 100, 1, MAX_PAGE),
            )
        except BadQuery as e:
            return write_json(request, 400, {"errors": [str(e)]})
        found, cursor = await self.store.run(query)
        return write_json(request, 200, {"devices": found, "next_cursor": cursor})

    @app.route("/v1/devices/<string:udid>", methods=["GET"])
    async def device(self, request: IRequest, udid: str) -> bytes:
        found = await self.store.run(device_detail, udid)
        if found is None:
            return write_json(request, 404, {"error": f"no device {udid}"})
        return write_json(request, 200, found)

    @app.route("/v1/devices/<string:udid>/commands", methods=["GET"])
    async def commands_of_device(self, request: IRequest, udid: str) -> bytes:
        try:
            state = _arg(request, "state", COMMAND_STATES)
            after = _int_arg(request, "cursor", 0, 0, 2**62)
            limit = _int_arg(request, "limit", 100, 1, MAX_PAGE)
        except BadQuery as e:
            return write_json(request, 400, {"errors": [str(e)]})
        if await self.store.run(device_detail, udid) is None:
            return write_json(request, 404, {"error": f"no device {udid}"})
        found, cursor = await self.store.run(
            partial(device_commands, udid=udid, state=state, after=after, limit=limit)
        )
        return write_json(request, 200, {"commands": found, "next_cursor": cursor})

    @app.route("/v1/commands", methods=["POST"])
    async def send_commands(self, request: IRequest) -> bytes:
        """Queue one command for devices: ``{"udids": [...] | "all": true, "command": {...}}``."""
        body, errors = _json_body(request)
        options = {
            key: body.get(key, False)
            for key in (
                "all",
                "push",
                "partial",
                "sign_profile",
                "confirm_clear_passcode",
                "unchecked",
            )
        }
        options["push"] = body.get("push", True)
        for key, value in options.items():
            if not isinstance(value, bool):
                errors.append(f"{key}: must be true or false")
        udids = body.get("udids", [])
        if not isinstance(udids, list) or not all(isinstance(u, str) and u for u in udids):
            errors.append("udids: must be an array of UDID strings")
        elif bool(udids) == bool(options["all"]):
            errors.append("udids: give the devices' UDIDs, or all: true (one of the two)")
        command = body.get("command")
        if not isinstance(command, dict):
            errors.append("command: must be an object with a RequestType")
        known = {"udids", "command", *options}
        errors += [f"{key}: unknown field" for key in sorted(set(body) - known)]
        if errors or self.sender is None:
            return write_json(request, 400, {"errors": errors or ["commands are not available"]})
        assert isinstance(command, dict)
        if options["all"]:
            targets, unknown = await self.store.run(all_enrolled), list[str]()
            by_id: dict[int, str] = {}
        else:
            found, unknown = await self.store.run(resolve_udids, udids)
            if unknown and not options["partial"]:
                return write_json(
                    request, 400, {"errors": [f"{u}: no such device" for u in unknown]}
                )
            targets, by_id = list(found.values()), {v: k for k, v in found.items()}
        if not targets:
            return write_json(request, 400, {"errors": ["no enrolled device to send to"]})
        try:
            result = await self.sender.send(
                targets,
                command,
                actor=self.actor(request),
                push=options["push"],
                partial=options["partial"],
                sign_profile=options["sign_profile"],
                confirm_clear_passcode=options["confirm_clear_passcode"],
                unchecked=options["unchecked"],
            )
        except CommandInvalid as e:
            return write_json(request, 400, {"errors": e.problems})
        except CommandRejected as e:
            return write_json(request, 400, {"errors": [str(e)]})
        if not by_id:
            by_id = await self.store.run(udids_of, list(result.queued))
        return write_json(
            request,
            201,
            {
                "commands": [
                    {"udid": by_id.get(i), "command_uuid": u} for i, u in result.queued.items()
                ],
                "refused": [
                    {"udid": by_id.get(i), "reason": reason} for i, reason in result.refused.items()
                ],
                "unknown_udids": unknown,
                "warnings": sorted(result.warnings),
            },
        )

    @app.route("/v1/commands/<string:command_uuid>", methods=["GET"])
    async def command(self, request: IRequest, command_uuid: str) -> bytes:
        found = await self.store.run(command_detail, command_uuid)
        if found is None:
            return write_json(request, 404, {"error": f"no command {command_uuid}"})
        return write_json(request, 200, found)

    @app.route("/v1/commands/<string:command_uuid>", methods=["DELETE"])
    async def cancel_command(self, request: IRequest, command_uuid: str) -> bytes:
        if await self.store.transaction(cancel, command_uuid, actor=self.actor(request)):
            return write_json(request, 200, {"uuid": command_uuid, "state": "canceled"})
        found = await self.store.run(command_status, command_uuid)
        if found is None:
            return write_json(request, 404, {"error": f"no command {command_uuid}"})
        return write_json(
            request, 409, {"error": f"the command is {found['state']}; it cannot be canceled"}
        )

    @app.route("/v1/events", methods=["GET"])
    async def events(self, request: IRequest) -> bytes:
        try:
            after = _int_arg(request, "after", 0, 0, 2**62)
            limit = _int_arg(request, "limit", 100, 1, MAX_PAGE)
        except BadQuery as e:
            return write_json(request, 400, {"errors": [str(e)]})
        found = await self.store.run(events_after, after, limit)
        return write_json(
            request,
            200,
            {
                "events": [dataclasses.asdict(event) for event in found],
                "next_cursor": found[-1].id if found else after,
            },
        )

    def actor(self, request: IRequest) -> str:
        """Who made a write, for the audit log: the API key's name."""
        return f"api:{getattr(request, 'api_key_name', 'admin')}"

    @app.route("/openapi.json", methods=["GET"])
    def openapi(self, request: IRequest) -> bytes:
        return write_json(request, 200, openapi_document())

    @app.route("/metrics", methods=["GET"])
    async def prometheus(self, request: IRequest) -> bytes:
        """Prometheus text format (scrape with the API key as bearer token)."""
        gauges = await self.store.run(store_gauges)
        deliveries = await self.store.run(backlog, self.webhook_urls)
        push = self.push.status() if self.push is not None else None
        request.setHeader(b"content-type", b"text/plain; version=0.0.4; charset=utf-8")
        return render(self.metrics, gauges, push, deliveries).encode()

    @app.handle_errors(NotFound)
    def not_found(self, request: IRequest, failure: Failure) -> bytes:
        return write_json(request, 404, {"error": f"no such resource: {request.path.decode()}"})

    @app.handle_errors(MethodNotAllowed)
    def not_allowed(self, request: IRequest, failure: Failure) -> bytes:
        return write_json(request, 405, {"error": f"method {request.method.decode()} not allowed"})
