"""``POST /v1/push``: an explicit push of named devices, or of every pushable one; audited."""

from __future__ import annotations

from klein import Klein
from twisted.web.iweb import IRequest

from mdmappliance.admin.context import AdminContext
from mdmappliance.admin.http import actor, json_body, unknown_fields, write_json
from mdmappliance.commands.send import resolve_udids
from mdmappliance.store import record_event


def register(app: Klein, ctx: AdminContext) -> None:
    @app.route("/v1/push", methods=["POST"])
    async def push_devices(request: IRequest) -> bytes:
        """Push named devices (``{"udids": [...]}``) or every pushable one (``{"all": true}``)."""
        body, errors = json_body(request)
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
        errors += unknown_fields(body, {"udids", "all"})
        if errors:
            return write_json(request, 400, {"errors": errors})
        if ctx.push is None:
            return write_json(request, 409, {"error": "no push certificate is installed"})
        pusher = ctx.push.pusher
        if pusher.blocked:
            return write_json(request, 409, {"error": pusher.blocked})
        await ctx.store.transaction(
            record_event,
            "push.requested",
            actor=actor(request),
            detail={"all": True} if everyone else {"udids": udids},
        )
        if everyone:
            count = await pusher.push_all()
            return write_json(request, 202, {"pushed": count})
        found, unknown = await ctx.store.run(resolve_udids, udids)
        pusher.request(found.values())
        return write_json(request, 202, {"requested": sorted(found), "unknown": unknown})
