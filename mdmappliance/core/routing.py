"""Klein apps whose routes are matched once per distinct request target, not on every
request.

Klein binds a werkzeug ``MapAdapter`` and walks the rule matcher for each request; counted
by callgrind that is ~33,000 instructions of the ~220,000 Klein adds to a device message.
A device listener is asked the same one or two paths all day, so ``RememberedRoutes``
keeps the adapter per (host, script, scheme, method, path) and each adapter remembers its
successful match. What does not match (404, 405, a redirect) is matched again every time,
so every error reaches the app's handlers exactly as werkzeug raises it. For routes fixed
when the app is built: ``add()`` forgets what was remembered, but a change to the map's
settings (``strict_slashes``, converters) after the first request is not seen.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, cast

from klein import Klein
from werkzeug.routing import Map, MapAdapter, Rule, RuleFactory

#: Distinct request targets remembered per app (the least recently used is dropped first).
#: A client sending a new Host header with every request only ever misses the memory.
REMEMBERED = 64


class _RememberingAdapter(MapAdapter):
    """A ``MapAdapter`` that remembers the rule its own path matched."""

    _matched: tuple[Rule, Mapping[str, Any]] | None = None

    def match(
        self,
        path_info: str | None = None,
        method: str | None = None,
        return_rule: bool = False,
        query_args: Mapping[str, Any] | str | None = None,
        websocket: bool | None = None,
    ) -> tuple[Any, Mapping[str, Any]]:
        werkzeug_match: Any = super().match
        asked = (path_info, method, query_args, websocket)
        if asked != (None, None, None, None):  # not the adapter's own path: match it as asked
            return cast(tuple[Any, Mapping[str, Any]], werkzeug_match(
                path_info, method, return_rule, query_args, websocket
            ))  # fmt: skip
        matched = self._matched
        if matched is None:
            matched = self._matched = werkzeug_match(return_rule=True)
        rule, arguments = matched
        return (rule if return_rule else rule.endpoint), dict(arguments)


class RememberedRoutes(Map):
    """A werkzeug ``Map`` that hands out one remembering adapter per request target."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Before Map's own __init__, which add()s any rules it is given.
        self._adapters: OrderedDict[tuple[str, ...], _RememberingAdapter] = OrderedDict()
        super().__init__(*args, **kwargs)

    def add(self, rulefactory: RuleFactory) -> None:
        super().add(rulefactory)
        self._adapters.clear()  # a new rule may change what a path matches

    def bind(
        self,
        server_name: str,
        script_name: str | None = None,
        subdomain: str | None = None,
        url_scheme: str = "http",
        default_method: str = "GET",
        path_info: str | None = None,
        query_args: Mapping[str, Any] | str | None = None,
    ) -> MapAdapter:
        if subdomain is not None or query_args is not None:
            return super().bind(
                server_name, script_name, subdomain, url_scheme, default_method, path_info,
                query_args,
            )  # fmt: skip
        # As werkzeug reads them: no path is "/", while "" stays "" (and matches otherwise).
        key = (
            server_name,
            "/" if script_name is None else script_name,
            url_scheme,
            default_method,
            "/" if path_info is None else path_info,
        )
        adapter = self._adapters.get(key)
        if adapter is not None:
            self._adapters.move_to_end(key)
            return adapter
        bound = super().bind(
            server_name, script_name, None, url_scheme, default_method, path_info
        )  # a bad Host raises here, every time: only what binds is remembered
        adapter = _RememberingAdapter(
            self,
            bound.server_name,
            bound.script_name,
            bound.subdomain,
            bound.url_scheme,
            bound.path_info,
            bound.default_method,
        )
        self._adapters[key] = adapter
        if len(self._adapters) > REMEMBERED:
            self._adapters.popitem(last=False)
        return adapter


def remembering_klein() -> Klein:
    """A Klein app whose routing remembers its matches (``app.url_map`` is a
    ``RememberedRoutes``; Klein keeps its map in ``_url_map`` and offers no way to pass one,
    which ``tests/test_routing.py`` watches)."""
    app = Klein()
    app._url_map = RememberedRoutes()
    return app
