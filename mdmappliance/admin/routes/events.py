"""``GET /v1/events``: the audit log, a page at a time after a cursor."""

from __future__ import annotations

import dataclasses

from klein import Klein
from twisted.web.iweb import IRequest

from mdmappliance.admin.context import AdminContext
from mdmappliance.admin.http import int_arg, write_json
from mdmappliance.admin.queries import MAX_PAGE
from mdmappliance.store import Tx
from mdmappliance.store.events import Event


def _events_after(tx: Tx, after: int, limit: int) -> list[Event]:
    return tx.events.after(after, limit)


def register(app: Klein, ctx: AdminContext) -> None:
    @app.route("/v1/events", methods=["GET"])
    async def events(request: IRequest) -> bytes:
        after = int_arg(request, "after", 0, 0, 2**62)
        limit = int_arg(request, "limit", 100, 1, MAX_PAGE)
        found = await ctx.store.run(_events_after, after, limit)
        return write_json(
            request,
            200,
            {
                "events": [dataclasses.asdict(event) for event in found],
                "next_cursor": found[-1].id if found else after,
            },
        )
