"""The admin API over a real loopback socket: health, and nothing without the key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import treq
from twisted.trial.unittest import TestCase
from twisted.web.client import HTTPConnectionPool

from mdmappliance._version import __version__
from mdmappliance.app.admin_listener import admin_listener
from mdmappliance.app.reactor import global_reactor
from mdmappliance.store import Store
from tests.support import SCHEMA_VERSION

reactor = global_reactor()

KEY = "k" * 40


class AdminHealth(TestCase):
    def setUp(self) -> None:
        directory = Path(self.mktemp())
        directory.mkdir()
        self.store = Store(directory / "admin.db", reactor=reactor)
        self.store.startService()
        self.listener = admin_listener(
            reactor, self.store, bind="127.0.0.1", port=0, api_keys={"admin": KEY}, grace=1.0
        )
        self.listener.startService()
        self.base = f"http://127.0.0.1:{self.listener.bound_port}"
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        self.addCleanup(lambda: self.store.stopService() if self.store.running else None)
        self.addCleanup(self.listener.stopService)

    async def get(
        self, path: str, authorization: str | None = None, method: str = "GET"
    ) -> tuple[int, Any, Any]:
        headers: dict[bytes | str, bytes | str] = (
            {"Authorization": authorization} if authorization else {}
        )
        response = await treq.request(method, self.base + path, headers=headers, pool=self.pool)
        body = await response.content()
        return response.code, response.headers, json.loads(body) if body else None

    async def test_health(self) -> None:
        code, headers, body = await self.get("/v1/health", f"Bearer {KEY}")
        self.assertEqual(code, 200)
        self.assertEqual(headers.getRawHeaders("content-type"), ["application/json"])
        self.assertEqual(body["status"], "ok")
        self.assertEqual(body["version"], __version__)
        self.assertEqual(body["database"], {"ok": True, "schema_version": SCHEMA_VERSION})
        self.assertTrue(0 <= body["uptime_seconds"] < 60, body["uptime_seconds"])

    async def test_no_key_wrong_key_wrong_scheme(self) -> None:
        for authorization in (
            None,
            f"Bearer {KEY}x",
            "Bearer ",
            f"Basic {KEY}",
            KEY,
            f"Bearer {KEY[:-1]}",
        ):
            for path in ("/v1/health", "/no/such/route"):
                code, headers, body = await self.get(path, authorization)
                self.assertEqual(code, 401, (authorization, path))
                self.assertEqual(body, {"error": "missing or invalid API key"})
                self.assertEqual(
                    headers.getRawHeaders("www-authenticate"), ['Bearer realm="mdmappliance"']
                )

    async def test_scheme_is_case_insensitive(self) -> None:
        code, _, _ = await self.get("/v1/health", f"bearer {KEY}")
        self.assertEqual(code, 200)

    async def test_unknown_route_and_method(self) -> None:
        code, _, body = await self.get("/v1/nothing", f"Bearer {KEY}")
        self.assertEqual((code, body), (404, {"error": "no such resource: /v1/nothing"}))
        code, _, body = await self.get("/v1/health", f"Bearer {KEY}", method="DELETE")
        self.assertEqual((code, body), (405, {"error": "method DELETE not allowed"}))

    async def test_database_down_is_503(self) -> None:
        await self.store.stopService()
        code, _, body = await self.get("/v1/health", f"Bearer {KEY}")
        self.assertEqual(code, 503)
        self.assertEqual(body["status"], "unavailable")
        self.assertFalse(body["database"]["ok"])
        self.assertIn("not running", body["database"]["error"])
