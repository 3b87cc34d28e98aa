"""What describes the API and the appliance to machines: ``/openapi.json`` and ``/metrics``."""

from __future__ import annotations

from klein import Klein
from twisted.web.iweb import IRequest

from mdmappliance.admin.context import AdminContext
from mdmappliance.admin.http import write_json
from mdmappliance.admin.metrics import CONTENT_TYPE, Snapshot, store_gauges
from mdmappliance.admin.openapi import document as openapi_document
from mdmappliance.admin.webhooks import backlog


def register(app: Klein, ctx: AdminContext) -> None:
    @app.route("/openapi.json", methods=["GET"])
    def openapi(request: IRequest) -> bytes:
        return write_json(request, 200, openapi_document())

    @app.route("/metrics", methods=["GET"])
    async def prometheus(request: IRequest) -> bytes:
        """Prometheus text format (scrape with the API key as bearer token)."""
        snapshot = Snapshot(
            gauges=await ctx.store.run(store_gauges),
            push=ctx.push.status() if ctx.push is not None else None,
            webhooks=await ctx.store.run(backlog, ctx.webhook_urls),
        )
        request.setHeader(b"content-type", CONTENT_TYPE.encode())
        return ctx.metrics.render(snapshot)
