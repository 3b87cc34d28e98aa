"""``GET /v1/health``: version, uptime, the database, APNs, DEP, VPP; 503 when something is
down."""

from __future__ import annotations

from typing import Any

from klein import Klein
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import TimeoutError as DeferredTimeout
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest

from mdmappliance._version import __version__
from mdmappliance.admin.context import AdminContext
from mdmappliance.admin.http import write_json
from mdmappliance.store.errors import StoreClosed

HEALTH_DB_TIMEOUT = 2.0


def register(app: Klein, ctx: AdminContext) -> None:
    @app.route("/v1/health", methods=["GET"])
    def health(request: IRequest) -> Any:
        body: dict[str, Any] = {
            "version": __version__,
            "uptime_seconds": round(ctx.clock.seconds() - ctx.started_at, 3),
        }
        checked = ctx.store.probe()
        checked.addTimeout(HEALTH_DB_TIMEOUT, ctx.clock)
        body["apns"] = ctx.push.status() if ctx.push is not None else {"enabled": False}

        async def healthy(version: int) -> bytes:
            body["database"] = {"ok": True, "schema_version": version}
            body["dep"] = await ctx.dep.status() if ctx.dep is not None else {"enabled": False}
            body["vpp"] = await ctx.vpp.status() if ctx.vpp is not None else {"enabled": False}
            if any("alert" in body[part] for part in ("apns", "dep", "vpp")):
                body["status"] = "degraded"  # loud: every push, or a DEP or VPP sync, stopped
                return write_json(request, 503, body)
            body["status"] = "ok"
            return write_json(request, 200, body)

        def unhealthy(failure: Failure) -> bytes:
            if failure.check(StoreClosed):
                body["status"], reason = "unavailable", failure.getErrorMessage()
            elif failure.check(CancelledError, DeferredTimeout):
                body["status"] = "degraded"
                reason = f"the database did not take a write within {HEALTH_DB_TIMEOUT:g} s"
            else:
                body["status"], reason = "degraded", failure.getErrorMessage()
            body["database"] = {"ok": False, "error": reason}
            return write_json(request, 503, body)

        return checked.addCallbacks(
            lambda version: Deferred.fromCoroutine(healthy(version)), unhealthy
        )
