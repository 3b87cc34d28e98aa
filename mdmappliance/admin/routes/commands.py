"""Commands: ``POST /v1/commands`` (queue one command for devices), ``GET`` and ``DELETE
/v1/commands/{uuid}`` (show, cancel)."""

from __future__ import annotations

from typing import Any

from klein import Klein
from twisted.web.iweb import IRequest

from mdmappliance.admin.context import AdminContext
from mdmappliance.admin.http import actor, json_body, unknown_fields, write_json
from mdmappliance.admin.queries import command_detail
from mdmappliance.commands.errors import CommandInvalid, CommandRejected
from mdmappliance.commands.inventory import command_status
from mdmappliance.commands.queue import cancel
from mdmappliance.commands.send import SendResult, resolve_udids
from mdmappliance.store import Tx

OPTIONS = ("all", "push", "partial", "sign_profile", "confirm_clear_passcode", "unchecked")


def _all_enrolled(tx: Tx) -> list[int]:
    return tx.enrollments.all_enrolled()


def _udids_of(tx: Tx, enrollment_ids: list[int]) -> dict[int, str]:
    return tx.enrollments.udids_of(enrollment_ids)


def _read_send(body: dict[str, Any], errors: list[str]) -> dict[str, bool]:
    """The options of a send (``push`` defaults to true), checking the body's shape."""
    options = {key: body.get(key, False) for key in OPTIONS}
    options["push"] = body.get("push", True)
    for key, value in options.items():
        if not isinstance(value, bool):
            errors.append(f"{key}: must be true or false")
    udids = body.get("udids", [])
    if not isinstance(udids, list) or not all(isinstance(u, str) and u for u in udids):
        errors.append("udids: must be an array of UDID strings")
    elif bool(udids) == bool(options["all"]):
        errors.append("udids: give the devices' UDIDs, or all: true (one of the two)")
    if not isinstance(body.get("command"), dict):
        errors.append("command: must be an object with a RequestType")
    errors += unknown_fields(body, {"udids", "command", *options})
    return options


async def _targets(
    ctx: AdminContext, body: dict[str, Any], *, all_devices: bool
) -> tuple[list[int], dict[int, str], list[str]]:
    """The enrollment ids to send to, their UDIDs when the caller named them, and the
    named UDIDs that are not enrolled here."""
    if all_devices:
        return await ctx.store.run(_all_enrolled), {}, []
    found, unknown = await ctx.store.run(resolve_udids, body["udids"])
    return list(found.values()), {v: k for k, v in found.items()}, unknown


def _sent(result: SendResult, by_id: dict[int, str], unknown: list[str]) -> dict[str, Any]:
    """The reply to a send: what was queued, refused, unknown, and the warnings."""
    return {
        "commands": [{"udid": by_id.get(i), "command_uuid": u} for i, u in result.queued.items()],
        "refused": [{"udid": by_id.get(i), "reason": r} for i, r in result.refused.items()],
        "unknown_udids": unknown,
        "warnings": sorted(result.warnings),
    }


async def send(ctx: AdminContext, request: IRequest) -> bytes:
    """Queue one command for devices: ``{"udids": [...] | "all": true, "command": {...}}``."""
    body, errors = json_body(request)
    options = _read_send(body, errors)
    if errors or ctx.sender is None:
        return write_json(request, 400, {"errors": errors or ["commands are not available"]})
    try:
        # The command first: a wrong one is reported as such, whatever the targets.
        prepared = ctx.sender.prepare(
            body["command"], sign_profile=options["sign_profile"], unchecked=options["unchecked"]
        )
    except CommandInvalid as e:
        return write_json(request, 400, {"errors": e.problems})
    except CommandRejected as e:
        return write_json(request, 400, {"errors": [str(e)]})
    targets, by_id, unknown = await _targets(ctx, body, all_devices=options["all"])
    if unknown and not options["partial"]:
        return write_json(request, 400, {"errors": [f"{u}: no such device" for u in unknown]})
    if not targets:
        return write_json(request, 400, {"errors": ["no enrolled device to send to"]})
    try:
        result = await ctx.sender.send(
            targets,
            prepared,
            actor=actor(request),
            push=options["push"],
            partial=options["partial"],
            confirm_clear_passcode=options["confirm_clear_passcode"],
        )
    except CommandInvalid as e:
        return write_json(request, 400, {"errors": e.problems})
    except CommandRejected as e:
        return write_json(request, 400, {"errors": [str(e)]})
    if not by_id:
        by_id = await ctx.store.run(_udids_of, list(result.queued))
    return write_json(request, 201, _sent(result, by_id, unknown))


def register(app: Klein, ctx: AdminContext) -> None:
    @app.route("/v1/commands", methods=["POST"])
    async def send_commands(request: IRequest) -> bytes:
        return await send(ctx, request)

    @app.route("/v1/commands/<string:command_uuid>", methods=["GET"])
    async def command(request: IRequest, command_uuid: str) -> bytes:
        found = await ctx.store.run(command_detail, command_uuid)
        if found is None:
            return write_json(request, 404, {"error": f"no command {command_uuid}"})
        return write_json(request, 200, found)

    @app.route("/v1/commands/<string:command_uuid>", methods=["DELETE"])
    async def cancel_command(request: IRequest, command_uuid: str) -> bytes:
        if await ctx.store.transaction(cancel, command_uuid, actor=actor(request)):
            return write_json(request, 200, {"uuid": command_uuid, "state": "canceled"})
        found = await ctx.store.run(command_status, command_uuid)
        if found is None:
            return write_json(request, 404, {"error": f"no command {command_uuid}"})
        return write_json(
            request, 409, {"error": f"the command is {found['state']}; it cannot be canceled"}
        )
