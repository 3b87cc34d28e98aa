"""``GET /v1/health``: version, uptime, the database, APNs; 503 when something is down."""

from __future__ import annotations

from typing import Any

from klein import Klein
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest

from mdmappliance._version import __version__
from mdmappliance.admin.context import AdminContext
from mdmappliance.admin.http import write_json

HEALTH_DB_TIMEOUT = 2.0


def register(app: Klein, ctx: AdminContext) -> None:
    @app.route("/v1/health", methods=["GET"])
    def health(request: IRequest) -> Any:
        body: dict[str, Any] = {
            "version": __version__,
            "uptime_seconds": round(ctx.clock.seconds() - ctx.started_at, 3),
        }
        checked = ctx.store.schema_version()
        checked.addTimeout(HEALTH_DB_TIMEOUT, ctx.clock)
        body["apns"] = ctx.push.status() if ctx.push is not None else {"enabled": False}

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
