"""DEP: ``/v1/dep/...`` (sync now, the DEP device table, profiles, account, disown).

Calls that reach Apple answer 502 with Apple's error in words when Apple refuses, 503 with
Retry-After when Apple is busy, and 409 when no server token is imported.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from klein import Klein
from twisted.web.iweb import IRequest

from mdmappliance.admin.context import AdminContext
from mdmappliance.admin.http import (
    actor,
    arg,
    int_arg,
    json_body,
    sync_answer,
    unknown_fields,
    write_json,
)
from mdmappliance.core.timestamps import utc_timestamp
from mdmappliance.dep.client import DEPBusy, DEPClient, DEPError
from mdmappliance.dep.profiles import ProfileInvalid, complete_profile
from mdmappliance.dep.service import record_profile
from mdmappliance.dep.token import TokenError
from mdmappliance.store import Tx

NO_TOKEN = "DEP is not set up: no server token (`mdmappliance dep token import`)"
SERIAL = re.compile(r"^[A-Za-z0-9]{1,64}$")
MAX_SERIALS = 1000


def _serials(body: dict[str, Any], errors: list[str]) -> list[str]:
    serials = body.get("devices")
    if (
        not isinstance(serials, list)
        or not serials
        or len(serials) > MAX_SERIALS
        or not all(isinstance(s, str) and SERIAL.match(s) for s in serials)
    ):
        errors.append(f"devices: 1 to {MAX_SERIALS} serial numbers (letters and digits)")
        return []
    return list(dict.fromkeys(serials))


def record_disowned(tx: Tx, serials: list[str], results: dict[str, Any], who: str) -> None:
    now = utc_timestamp()
    for serial in serials:
        if results.get(serial) == "SUCCESS":
            tx.dep.mark_state(serial, "deleted", "disowned", now)
    tx.events.record("dep.disowned", actor=who, detail={"results": results})


def record_assigned(tx: Tx, profile_uuid: str, results: dict[str, Any], who: str) -> None:
    succeeded = [s for s, outcome in results.items() if outcome == "SUCCESS"]
    tx.dep.set_profile(succeeded, profile_uuid, "assigned", utc_timestamp())
    tx.events.record(
        "dep.profile_assigned", actor=who, subject=profile_uuid, detail={"results": results}
    )


class DEPRoutes:
    def __init__(self, ctx: AdminContext) -> None:
        self.ctx = ctx

    async def with_client(
        self, request: IRequest, work: Callable[[DEPClient], Awaitable[bytes]]
    ) -> bytes:
        try:
            client = await self.ctx.dep.client() if self.ctx.dep is not None else None
        except TokenError as e:
            return write_json(request, 409, {"error": f"the DEP server token: {e}"})
        if client is None:
            return write_json(
                request,
                409,
                {"error": NO_TOKEN},
            )
        try:
            return await work(client)
        except DEPBusy as e:
            request.setHeader(b"retry-after", str(int(e.retry_after)).encode())
            return write_json(request, 503, {"error": str(e)})
        except DEPError as e:
            return write_json(request, 502, {"error": f"Apple's DEP service: {e}"})

    async def dep_sync(self, request: IRequest) -> bytes:
        """Run the sync now: 200 with what it did; 502 when Apple refused (the alert or
        error in words), 503 with Retry-After when Apple asked to wait."""
        try:
            token = self.ctx.dep.token() if self.ctx.dep is not None else None
        except TokenError as e:
            return write_json(request, 409, {"error": f"the DEP server token: {e}"})
        if self.ctx.dep is None or token is None:
            return write_json(request, 409, {"error": NO_TOKEN})
        if self.ctx.dep.job.running:
            return write_json(request, 409, {"error": "a DEP sync is running; try again soon"})
        report = await self.ctx.dep.sync_now()
        return sync_answer(request, report)

    async def dep_devices(self, request: IRequest) -> bytes:
        after = arg(request, "after") or ""
        limit = int_arg(request, "limit", 100, 1, 1000)
        devices = await self.ctx.store.run(lambda tx: tx.dep.page(after, limit))
        body: dict[str, Any] = {"devices": [d.as_json() for d in devices]}
        if len(devices) == limit:
            body["next"] = devices[-1].serial
        return write_json(request, 200, body)

    async def dep_device(self, request: IRequest, serial: str) -> bytes:
        device = (
            await self.ctx.store.run(lambda tx: tx.dep.get(serial))
            if SERIAL.match(serial)
            else None
        )
        if device is None:
            return write_json(request, 404, {"error": f"no DEP device {serial[:64]}"})
        return write_json(request, 200, device.as_json())

    async def dep_account(self, request: IRequest) -> bytes:
        async def work(client: DEPClient) -> bytes:
            return write_json(request, 200, await client.account())

        return await self.with_client(request, work)

    async def dep_profiles(self, request: IRequest) -> bytes:
        profiles = await self.ctx.store.run(lambda tx: tx.dep.profiles())
        return write_json(request, 200, {"profiles": profiles})

    async def dep_define_profile(self, request: IRequest) -> bytes:
        body, errors = json_body(request)
        errors += unknown_fields(body, {"profile", "default"})
        default = body.get("default", False)
        if not isinstance(default, bool):
            errors.append("default: must be true or false")
        raw = body.get("profile")
        profile: dict[str, Any] = {}
        if not isinstance(raw, dict):
            errors.append("profile: a JSON object of Apple's DEP profile keys")
        else:
            try:
                profile = complete_profile(
                    raw,
                    url=self.ctx.dep.enroll_url if self.ctx.dep is not None else "",
                    anchors=self.ctx.dep.anchors if self.ctx.dep is not None else (),
                )
            except ProfileInvalid as e:
                errors.append(f"profile: {e}")
        if errors:
            return write_json(request, 400, {"errors": errors})

        async def work(client: DEPClient) -> bytes:
            answer = await client.define_profile(profile)
            profile_uuid = answer.get("profile_uuid")
            if not isinstance(profile_uuid, str) or not profile_uuid:
                return write_json(request, 502, {"error": "Apple sent no profile_uuid"})
            await self.ctx.store.transaction(
                record_profile, profile_uuid, profile, bool(default), actor(request)
            )
            return write_json(request, 201, answer)

        return await self.with_client(request, work)

    async def dep_profile(self, request: IRequest, profile_uuid: str) -> bytes:
        """Fetch Profile: the profile as Apple holds it."""
        if not re.fullmatch(r"[A-Za-z0-9-]{1,64}", profile_uuid):
            return write_json(request, 404, {"error": "no such profile"})

        async def work(client: DEPClient) -> bytes:
            return write_json(request, 200, await client.fetch_profile(profile_uuid))

        return await self.with_client(request, work)

    async def dep_remove_profile(self, request: IRequest) -> bytes:
        """Remove Profile from devices."""
        body, errors = json_body(request)
        errors += unknown_fields(body, {"devices"})
        serials = _serials(body, errors)
        if errors:
            return write_json(request, 400, {"errors": errors})

        async def work(client: DEPClient) -> bytes:
            answer = await client.remove_profile(serials)
            found = answer.get("devices")
            results = found if isinstance(found, dict) else {}
            await self.ctx.store.transaction(record_removed, results, actor(request))
            return write_json(request, 200, answer)

        return await self.with_client(request, work)

    async def dep_assign(self, request: IRequest, profile_uuid: str) -> bytes:
        body, errors = json_body(request)
        errors += unknown_fields(body, {"devices"})
        serials = _serials(body, errors)
        if not re.fullmatch(r"[A-Za-z0-9-]{1,64}", profile_uuid):
            errors.append("profile_uuid: letters, digits and dashes")
        if errors:
            return write_json(request, 400, {"errors": errors})

        async def work(client: DEPClient) -> bytes:
            answer = await client.assign_profile(profile_uuid, serials)
            results = answer.get("devices") if isinstance(answer.get("devices"), dict) else {}
            await self.ctx.store.transaction(
                record_assigned, profile_uuid, results or {}, actor(request)
            )
            return write_json(request, 200, answer)

        return await self.with_client(request, work)

    async def dep_disown(self, request: IRequest) -> bytes:
        body, errors = json_body(request)
        errors += unknown_fields(body, {"devices", "confirm"})
        serials = _serials(body, errors)
        if body.get("confirm") != "disown":
            errors.append(
                'confirm: must be "disown": Apple then forgets these devices for this '
                "organization for good (only Apple's support undoes it)"
            )
        if errors:
            return write_json(request, 400, {"errors": errors})

        async def work(client: DEPClient) -> bytes:
            answer = await client.disown(serials)
            results = answer.get("devices") if isinstance(answer.get("devices"), dict) else {}
            await self.ctx.store.transaction(
                record_disowned, serials, results or {}, actor(request)
            )
            return write_json(request, 200, answer)

        return await self.with_client(request, work)


def record_removed(tx: Tx, results: dict[str, Any], who: str) -> None:
    """Profiles this server removed: a later sync then does not take them for moved devices."""
    succeeded = [s for s, outcome in results.items() if outcome == "SUCCESS"]
    tx.dep.set_profile(succeeded, None, "removed", utc_timestamp())
    tx.events.record("dep.profile_removed", actor=who, detail={"results": results})


def register(app: Klein, ctx: AdminContext) -> None:
    routes = DEPRoutes(ctx)
    app.route("/v1/dep/sync", methods=["POST"])(routes.dep_sync)
    app.route("/v1/dep/devices", methods=["GET"])(routes.dep_devices)
    app.route("/v1/dep/devices/<string:serial>", methods=["GET"])(routes.dep_device)
    app.route("/v1/dep/account", methods=["GET"])(routes.dep_account)
    app.route("/v1/dep/profiles", methods=["GET"])(routes.dep_profiles)
    app.route("/v1/dep/profiles", methods=["POST"])(routes.dep_define_profile)
    app.route("/v1/dep/profiles/<string:profile_uuid>", methods=["GET"])(routes.dep_profile)
    app.route("/v1/dep/profiles/<string:profile_uuid>/devices", methods=["PUT"])(routes.dep_assign)
    app.route("/v1/dep/remove-profile", methods=["POST"])(routes.dep_remove_profile)
    app.route("/v1/dep/disown", methods=["POST"])(routes.dep_disown)
