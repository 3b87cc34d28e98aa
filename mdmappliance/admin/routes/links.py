"""Enrollment links: ``/v1/enrollment-tokens`` (create, list, revoke)."""

from __future__ import annotations

from klein import Klein
from twisted.web.iweb import IRequest

from mdmappliance.admin.context import AdminContext
from mdmappliance.admin.http import actor, json_body, unknown_fields, write_json
from mdmappliance.core.timestamps import utc_timestamp
from mdmappliance.enrollment.links import create_link, list_links, parse_duration, revoke_link

#: Ids are SQLite integers: a larger one names no link (and would not fit a parameter).
MAX_ID = 2**63 - 1


def register(app: Klein, ctx: AdminContext) -> None:
    @app.route("/v1/enrollment-tokens", methods=["POST"])
    async def create_enrollment_token(request: IRequest) -> bytes:
        body, errors = json_body(request)
        lifetime = ctx.link_lifetime
        expires = body.get("expires")
        if expires is not None:
            try:
                lifetime = parse_duration(str(expires))
            except ValueError as e:
                errors.append(f"expires: {e}")
        note = body.get("note", "")
        if not isinstance(note, str) or len(note) > 500:
            errors.append("note: must be a string of at most 500 characters")
        errors += unknown_fields(body, {"expires", "note"})
        if errors:
            return write_json(request, 400, {"errors": errors})
        token, link = await ctx.store.transaction(create_link, lifetime, note, actor(request))
        return write_json(
            request,
            201,
            {
                "id": link.id,
                "token": token,
                "url": ctx.link_url(token),
                "expires_at": link.expires_at,
                "note": link.note,
            },
        )

    @app.route("/v1/enrollment-tokens", methods=["GET"])
    async def list_enrollment_tokens(request: IRequest) -> bytes:
        links = await ctx.store.run(list_links)
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
    async def revoke_enrollment_token(request: IRequest, link_id: int) -> bytes:
        if link_id <= MAX_ID and await ctx.store.transaction(revoke_link, link_id, actor(request)):
            return write_json(request, 200, {"id": link_id, "status": "revoked"})
        return write_json(request, 404, {"error": f"no unused enrollment token {link_id}"})
