"""Bearer keys: every admin request needs ``Authorization: Bearer <key>``; anything else gets
a bare 401 before routing, so an unauthenticated caller learns nothing, not even which routes
exist. Read-only keys get 403 on every write."""

from __future__ import annotations

import hmac

from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource

from mdmappliance.admin.http import write_json


class BearerAuth(Resource):
    """Let a request through to ``wrapped`` only with a known bearer key."""

    isLeaf = True

    def __init__(self, wrapped: IResource, keys: dict[str, str | tuple[str, str]]) -> None:
        """``keys``: name → key (full rights), or name → (key, 'full' | 'read')."""
        super().__init__()
        self._wrapped = wrapped
        self._keys = {
            name: (
                (value if isinstance(value, str) else value[0]).encode("utf-8"),
                "full" if isinstance(value, str) else value[1],
            )
            for name, value in keys.items()
        }

    def key_name(self, request: IRequest) -> tuple[str, str] | None:
        """(name, role) of the presented key, or None."""
        header = request.getHeader(b"authorization") or b""
        scheme, _, presented = header.partition(b" ")
        if scheme.lower() != b"bearer" or not presented:
            return None
        found = None
        for name, (key, role) in self._keys.items():
            if hmac.compare_digest(presented.strip(), key):
                found = (name, role)
        return found

    def render(self, request: IRequest) -> bytes | int:
        found = self.key_name(request)
        if found is None:
            request.setHeader(b"www-authenticate", b'Bearer realm="mdmappliance"')
            return write_json(request, 401, {"error": "missing or invalid API key"})
        name, role = found
        if role == "read" and request.method not in (b"GET", b"HEAD"):
            return write_json(request, 403, {"error": f"the API key {name!r} is read-only"})
        request.api_key_name = name  # type: ignore[attr-defined]
        result: bytes | int = self._wrapped.render(request)
        return result
