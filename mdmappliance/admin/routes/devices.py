"""Devices: ``/v1/devices`` (list, one device, its commands) and the lifecycle actions
``revoke`` and ``retire``."""

from __future__ import annotations

from functools import partial

from klein import Klein
from twisted.web.iweb import IRequest

from mdmappliance.admin.context import AdminContext
from mdmappliance.admin.http import actor, arg, int_arg, json_body, unknown_fields, write_json
from mdmappliance.admin.queries import (
    COMMAND_STATES,
    DEVICE_STATES,
    MAX_PAGE,
    device_commands,
    list_devices,
)
from mdmappliance.commands.errors import CommandRejected
from mdmappliance.enrollment.retirement import retire_device, revoke_device
from mdmappliance.mdm.platforms import PLATFORMS
from mdmappliance.store import Tx
from mdmappliance.store.fleet import DeviceDetail


def device_detail(tx: Tx, udid: str) -> DeviceDetail | None:
    return tx.fleet.device(udid)


def _is_device(tx: Tx, udid: str) -> bool:
    """A device channel exists for ``udid`` (its device record does too: a foreign key)."""
    return tx.enrollments.get(udid) is not None


def register(app: Klein, ctx: AdminContext) -> None:
    @app.route("/v1/devices", methods=["GET"])
    async def devices(request: IRequest) -> bytes:
        query = partial(
            list_devices,
            state=arg(request, "state", DEVICE_STATES),
            platform=arg(request, "platform", PLATFORMS),
            serial=arg(request, "serial"),
            after=int_arg(request, "cursor", 0, 0, 2**62),
            limit=int_arg(request, "limit", 100, 1, MAX_PAGE),
        )
        found, cursor = await ctx.store.run(query)
        return write_json(request, 200, {"devices": found, "next_cursor": cursor})

    @app.route("/v1/devices/<string:udid>", methods=["GET"])
    async def device(request: IRequest, udid: str) -> bytes:
        found = await ctx.store.run(device_detail, udid)
        if found is None:
            return write_json(request, 404, {"error": f"no device {udid}"})
        return write_json(request, 200, dict(found))

    @app.route("/v1/devices/<string:udid>/commands", methods=["GET"])
    async def commands_of_device(request: IRequest, udid: str) -> bytes:
        state = arg(request, "state", COMMAND_STATES)
        after = int_arg(request, "cursor", 0, 0, 2**62)
        limit = int_arg(request, "limit", 100, 1, MAX_PAGE)
        if not await ctx.store.run(_is_device, udid):
            return write_json(request, 404, {"error": f"no device {udid}"})
        found, cursor = await ctx.store.run(
            partial(device_commands, udid=udid, state=state, after=after, limit=limit)
        )
        return write_json(request, 200, {"commands": found, "next_cursor": cursor})

    @app.route("/v1/devices/<string:udid>/revoke", methods=["POST"])
    async def revoke(request: IRequest, udid: str) -> bytes:
        count = await ctx.store.transaction(revoke_device, udid, actor(request))
        if not count:
            return write_json(request, 404, {"error": f"no unrevoked identity bound to {udid}"})
        return write_json(request, 200, {"udid": udid, "revoked_identities": count})

    @app.route("/v1/devices/<string:udid>/retire", methods=["POST"])
    async def retire(request: IRequest, udid: str) -> bytes:
        body, errors = json_body(request)
        now = body.get("now", False)
        if not isinstance(now, bool):
            errors.append("now: must be true or false")
        errors += unknown_fields(body, {"now"})
        if errors:
            return write_json(request, 400, {"errors": errors})
        try:
            command_uuid = await ctx.store.transaction(
                retire_device, udid, ctx.profile_identifier, actor(request), now=now
            )
        except CommandRejected as e:
            return write_json(request, 404, {"error": str(e)})
        state = "retiring" if command_uuid else "retired"
        return write_json(
            request, 200, {"udid": udid, "state": state, "command_uuid": command_uuid}
        )
