"""The local JSON admin API (Klein): one route module per resource under ``routes/``, the
bearer-key check in front of them, and the one place that maps errors to statuses.

Every request must carry ``Authorization: Bearer <admin API key>``; anything else gets a bare
401 before routing (``auth.BearerAuth``).
"""

from __future__ import annotations

from typing import Any

from klein import Klein
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource
from werkzeug.exceptions import MethodNotAllowed, NotFound

from mdmappliance.admin.auth import BearerAuth
from mdmappliance.admin.context import AdminContext
from mdmappliance.admin.http import BadQuery, write_json
from mdmappliance.admin.routes import (
    commands,
    dep,
    devices,
    docs,
    events,
    health,
    links,
    push,
    vpp,
)
from mdmappliance.store.errors import StoreUnavailable

RESOURCES = (health, links, devices, commands, push, events, dep, vpp, docs)


class AdminAPI:
    """The admin routes, bound to the store, the clock and the services they drive."""

    def __init__(self, context: AdminContext) -> None:
        self.context = context
        self.metrics = context.metrics
        self.app = Klein()
        # A path with "//" is a JSON 404 like any unknown path, not werkzeug's HTML redirect.
        self.app.url_map.merge_slashes = False
        for resource in RESOURCES:
            resource.register(self.app, self.context)
        self._errors(self.app)

    def resource(self, api_keys: dict[str, Any]) -> IResource:
        return BearerAuth(self.app.resource(), api_keys)

    @staticmethod
    def _errors(app: Klein) -> None:
        @app.handle_errors(BadQuery)
        def bad_query(request: IRequest, failure: Failure) -> bytes:
            return write_json(request, 400, {"errors": [failure.getErrorMessage()]})

        @app.handle_errors(StoreUnavailable)
        def store_unavailable(request: IRequest, failure: Failure) -> bytes:
            reason = failure.getErrorMessage()
            return write_json(request, 503, {"error": f"the database is unavailable: {reason}"})

        @app.handle_errors(NotFound)
        def not_found(request: IRequest, failure: Failure) -> bytes:
            return write_json(request, 404, {"error": f"no such resource: {request.path.decode()}"})

        @app.handle_errors(MethodNotAllowed)
        def not_allowed(request: IRequest, failure: Failure) -> bytes:
            method = request.method.decode()
            return write_json(request, 405, {"error": f"method {method} not allowed"})
