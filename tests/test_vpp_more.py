"""More of VPP, tried against the fake VPP service and variants of it that answer the way the
spec allows: primitives as strings, either error spelling, licenses with a nested user object,
retired users, refused batch and since tokens, 9617 twice, 503/429/unreachable backoff without
a hot loop, tokenExpDate and dates without a zone in health, the clientContext claim, every
admin route's bad input (never a 5xx, Apple not asked), read-only keys, and the CLI."""

from __future__ import annotations

import base64
import datetime
import json
import sys
from pathlib import Path
from typing import Any

import treq
from twisted.internet import task, utils
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import Agent, HTTPConnectionPool

from mdmappliance.app.reactor import global_reactor
from mdmappliance.config import load_config
from mdmappliance.store import Store, Tx
from mdmappliance.vpp.client import (
    LegacyVPPClient,
    VPPBusy,
    VPPRequestError,
    VPPStopped,
    error_of,
)
from mdmappliance.vpp.service import VPPRuntime
from mdmappliance.vpp.sync import VPPSync
from mdmappliance.vpp.token import STokenError, parse_apple_date, parse_stoken, store_stoken
from tests.fakevpp import Answer, FakeVPP
from tests.fakevpp import VPPError as FakeError
from tests.support import (
    InProcessAppliance,
    free_port,
    make_installation,
    query,
    run_cli,
    subprocess_env,
)

reactor = global_reactor()
READ_KEY = "m" * 40


def apple_date(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S-0000")


def blob(document: Any) -> bytes:
    """An sToken file's content: base64 of the JSON document."""
    return base64.b64encode(json.dumps(document).encode())


def _stringify(value: Any) -> Any:
    """Every primitive as a string, as the spec lets the services write them."""
    if isinstance(value, dict):
        return {k: _stringify(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_stringify(v) for v in value]
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


class StringlyVPP(FakeVPP):
    """Answers with every number and boolean as a string ("userId": "5", "status": "0")."""

    def _json(self, body: dict[str, Any]) -> Answer:
        return super()._json(_stringify(body))


class NestedUserVPP(FakeVPP):
    """Licenses carry their user as a nested object (the prose's "user object")."""

    def _license_json(self, lic: dict[str, Any], *, with_user: bool = True) -> dict[str, Any]:
        out = super()._license_json(lic, with_user=with_user)
        user = {k: out.pop(k) for k in ("userId", "clientUserIdStr", "itsIdHash") if k in out}
        if user:
            out["user"] = user
        return out


class RefusingVPP(FakeVPP):
    """Refuses the first batchToken it is given (9604), as a service that lost the listing."""

    refused = False

    def _getVPPUsersSrv(self, params: dict[str, Any]) -> dict[str, Any]:
        if "batchToken" in params and not self.refused:
            self.refused = True
            raise FakeError(9604)
        return super()._getVPPUsersSrv(params)


class AlwaysMovedVPP(FakeVPP):
    """getVPPUserSrv answers 9617 even at the URL VPPServiceConfigSrv just gave."""

    def _getVPPUserSrv(self, params: dict[str, Any]) -> dict[str, Any]:
        raise FakeError(9617)


def save_token_exp_date(tx: Tx, value: str) -> None:
    """What a sync leaves after an answer carried ``tokenExpDate``."""
    tx.vpp.save_state("2026-01-01T00:00:00Z", token_exp_date=value)


def save_since_tokens(tx: Tx, token: str) -> None:
    for kind in ("users", "licenses"):
        tx.vpp.save_tokens(kind, None, token, "2026-01-01T00:00:00Z")


class ClientCase(TestCase):
    """A store and a fake VPP service (its class chosen by the test), for the client and sync."""

    timeout = 60

    def setUp(self) -> None:
        self.dir = Path(self.mktemp()).absolute()
        self.dir.mkdir()
        self.store = Store(self.dir / "vpp.db", reactor=reactor)
        self.store.startService()
        self.addCleanup(self.store.stopService)

    async def fake(self, kind: type[FakeVPP] = FakeVPP) -> FakeVPP:
        fake = kind(self.dir / "fake")
        fake.batch_size = 10
        await fake.start()
        self.addCleanup(fake.stop)
        return fake

    def client(self, fake: FakeVPP, url: str | None = None) -> LegacyVPPClient:
        client = LegacyVPPClient.connect(
            parse_stoken(fake.stoken().encode()),
            reactor,
            service_config_url=url or fake.service_config_url,
            ca_file=fake.ca_file,
        )
        self.addCleanup(client.close)
        return client

    def job(self, client: LegacyVPPClient, clock: Any = None) -> VPPSync:
        async def factory() -> LegacyVPPClient:
            return client

        return VPPSync(self.store, factory, clock or reactor)

    def rows(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        return query(self.dir / "vpp.db", sql, *args)


class Answers(ClientCase):
    async def test_primitives_as_strings_are_read_as_numbers_and_booleans(self) -> None:
        fake = await self.fake(StringlyVPP)
        users = fake.add_users(25)
        fake.associate_itunes(users[0])
        (app,) = fake.add_licenses(1)
        (book,) = fake.add_licenses(1, adam_id=1234, irrevocable=True)
        client = self.client(fake)
        await client.call(
            "associateVPPLicenseWithVPPUserSrv", {"userId": users[0], "licenseId": app}
        )
        report = await self.job(client).run_once()
        self.assertEqual((report.users, report.licenses, report.errors), (25, 2, []), report)
        self.assertEqual(self.rows("SELECT count(*) FROM vpp_users"), [(25,)])
        found = self.rows(
            "SELECT license_id, adam_id, is_irrevocable, user_id FROM vpp_licenses "
            "ORDER BY license_id"
        )
        self.assertEqual(found, [(app, 408709785, 0, users[0]), (book, 1234, 1, None)])
        # "status": "-1" and "ErrorCode": "9617" are read too: one refresh, then the answer.
        fake.move_next = True
        client = self.client(fake)
        answer = await client.call("getVPPUserSrv", {"userId": users[0]})
        self.assertEqual(answer["user"]["userId"], str(users[0]))
        self.assertEqual(client.config_requests, 2)
        fake.expired = True
        with self.assertRaises(VPPStopped) as caught:
            await client.call("getVPPUserSrv", {"userId": users[0]})
        self.assertEqual(caught.exception.code, 9621)

    async def test_either_error_spelling_gives_the_code(self) -> None:
        fake = await self.fake()
        client = self.client(fake)
        spellings = (
            ("ErrorCode", "errorMessage"),
            ("errorNumber", "errorMessage"),
            ("ErrorCode", "ErrorMessage"),
        )
        for keys in spellings:
            fake.error_keys = keys
            with self.assertRaises(VPPRequestError) as caught:
                await client.call("getVPPUserSrv", {"userId": 12345})
            self.assertEqual(caught.exception.code, 9604, keys)
            self.assertIn("Result not found", str(caught.exception))
        self.assertEqual(error_of({"status": 0, "users": []}), None)
        self.assertEqual(error_of({"status": "-1"}), (0, ""))

    async def test_licenses_with_a_nested_user_object_keep_their_user(self) -> None:
        fake = await self.fake(NestedUserVPP)
        (user,) = fake.add_users(1)
        fake.associate_itunes(user)
        (license_id, free) = fake.add_licenses(2)
        client = self.client(fake)
        await client.call(
            "associateVPPLicenseWithVPPUserSrv", {"userId": user, "licenseId": license_id}
        )
        report = await self.job(client).run_once()
        self.assertEqual(report.licenses, 2, report)
        client_id = fake.users[user]["clientUserIdStr"]
        self.assertEqual(
            self.rows("SELECT license_id, user_id, client_user_id FROM vpp_licenses ORDER BY 1"),
            [(license_id, user, client_id), (free, None, None)],
        )

    async def test_9617_twice_gives_up_after_one_refresh(self) -> None:
        fake = await self.fake(AlwaysMovedVPP)
        client = self.client(fake)
        with self.assertRaises(VPPRequestError) as caught:
            await client.call("getVPPUserSrv", {"userId": 1})
        self.assertEqual(caught.exception.code, 9617)
        self.assertEqual(client.config_requests, 2, "the first, then one refresh; no loop")
        self.assertEqual([s for _, s, _ in fake.log].count("getVPPUserSrv"), 2)

    async def test_a_deleted_user_is_read_by_user_id(self) -> None:
        fake = await self.fake()
        (old,) = fake.add_users(1)
        fake.associate_itunes(old, its_id_hash="SAME=")
        client = self.client(fake)
        await client.call("retireVPPUserSrv", {"userId": old})
        answer = await client.call(
            "registerVPPUserSrv", {"clientUserIdStr": fake.users[old]["clientUserIdStr"]}
        )
        new = answer["user"]["userId"]
        self.assertNotEqual(new, old, "a new record: the old one was associated")
        fake.associate_itunes(new, its_id_hash="SAME=")
        answer = await client.call("getVPPUserSrv", {"userId": old})
        self.assertEqual(answer["user"]["status"], "Deleted")
        report = await self.job(client).run_once()
        self.assertEqual(report.users, 1, "getVPPUsersSrv lists no Deleted user")


class Listing(ClientCase):
    async def test_retired_users_are_listed_and_a_retirement_comes_as_a_change(self) -> None:
        fake = await self.fake()
        users = fake.add_users(3)
        fake.touch_user(users[0], status="Retired")
        client = self.client(fake)
        job = self.job(client)
        await job.run_once()
        first = next(p for _, s, p in fake.log if s == "getVPPUsersSrv")
        self.assertEqual(first.get("includeRetired"), 1)
        self.assertEqual(
            self.rows("SELECT status FROM vpp_users WHERE user_id = ?", users[0]), [("Retired",)]
        )
        await client.call("retireVPPUserSrv", {"userId": users[1]})
        report = await job.run_once()
        self.assertEqual(report.users, 1)
        self.assertEqual(
            self.rows("SELECT status FROM vpp_users WHERE user_id = ?", users[1]), [("Retired",)]
        )

    async def test_a_batch_token_refused_mid_listing_starts_over_once(self) -> None:
        fake = await self.fake(RefusingVPP)
        fake.add_users(25)
        report = await self.job(self.client(fake)).run_once()
        self.assertEqual(report.restarted, ["users"])
        self.assertEqual(report.errors, [])
        self.assertEqual(self.rows("SELECT count(*) FROM vpp_users"), [(25,)])
        calls = [p for _, s, p in fake.log if s == "getVPPUsersSrv"]
        self.assertEqual(set(calls[2]) - {"sToken"}, {"includeRetired"}, "from the start")

    async def test_a_saved_since_token_refused_lists_everything_again(self) -> None:
        fake = await self.fake()
        fake.add_users(5)
        fake.add_licenses(3)
        await self.store.transaction(save_since_tokens, base64.b64encode(b"not ours").decode())
        report = await self.job(self.client(fake)).run_once()
        self.assertEqual(report.restarted, ["users", "licenses"])
        self.assertEqual((report.users, report.licenses, report.errors), (5, 3, []))
        tokens = await self.store.run(lambda tx: tx.vpp.tokens("users"))
        self.assertIsNone(tokens.batch_token)
        self.assertTrue(tokens.since_token)


class Backoff(ClientCase):
    async def test_503_with_retry_after_waits_that_long_without_asking_apple(self) -> None:
        fake = await self.fake()
        fake.add_users(2)
        clock = task.Clock()
        clock.advance(1000)
        job = self.job(self.client(fake), clock)
        fake.fail_next = [(503, b"busy", {"Retry-After": "120"})]
        report = await job.run_once()
        self.assertEqual(report.retry_after, 120)
        asked = len(fake.log)
        for _ in range(50):
            report = await job.run_once()
            self.assertIsNotNone(report.retry_after)
        self.assertEqual(len(fake.log), asked, "no request while backing off")
        clock.advance(121)
        report = await job.run_once()
        self.assertEqual((report.users, report.errors), (2, []))

    async def test_429_without_retry_after_doubles_from_the_base(self) -> None:
        fake = await self.fake()
        clock = task.Clock()
        job = self.job(self.client(fake), clock)
        waits = []
        for _ in range(3):
            fake.fail_next = [(429, b"slow down")]
            report = await job.run_once()
            waits.append(report.retry_after)
            clock.advance(report.retry_after or 0)
        self.assertEqual(waits, [30.0, 60.0, 120.0])
        state = await self.store.run(lambda tx: tx.vpp.state())
        self.assertIsNone(state.alert, "busy is not an alert")
        self.assertIsNone(state.last_success_at)

    async def test_an_unreachable_service_backs_off(self) -> None:
        fake = await self.fake()
        url = f"https://127.0.0.1:{free_port()}/WebObjects/MZFinance.woa/wa/VPPServiceConfigSrv"
        client = self.client(fake, url)
        with self.assertRaises(VPPBusy):
            await client.call("getVPPUserSrv", {"userId": 1})
        report = await self.job(client, task.Clock()).run_once()
        self.assertEqual(report.retry_after, 30.0)
        self.assertIn("could not be reached", report.errors[0])

    async def test_the_client_context_is_written_once_then_only_read(self) -> None:
        fake = await self.fake()
        job = self.job(self.client(fake))
        await job.run_once()
        context = fake.client_context or ""
        self.assertTrue(context.startswith("mdmappliance:"))
        self.assertLess(len(context.encode()), 256)
        before = len(fake.log)
        report = await job.run_once()
        calls = [p for _, s, p in fake.log[before:] if s == "VPPClientConfigSrv"]
        self.assertEqual([set(p) for p in calls], [{"sToken"}], "read, not written again")
        self.assertIsNone(report.shared_with)


class Health(ClientCase):
    def runtime(self, exp_date: str) -> VPPRuntime:
        token_file = self.dir / "stoken"
        token_file.write_bytes(blob({"token": "t", "expDate": exp_date, "orgName": "Org"}))

        def connect(token: Any) -> Any:
            raise AssertionError("status() asks nobody")

        return VPPRuntime(self.store, reactor, token_file=token_file, connect=connect)

    async def test_dates_without_a_zone_do_not_crash_health(self) -> None:
        runtime = self.runtime("2030-01-01T00:00:00")
        status = await runtime.status()
        self.assertEqual(status["token"]["exp_date"], "2030-01-01T00:00:00")
        self.assertNotIn("alert", status)
        for value in ("2030-01-01T00:00:00", "not a date"):
            await self.store.transaction(save_token_exp_date, value)
            status = await runtime.status()
            self.assertEqual(status["token"]["token_exp_date"], value)
            self.assertNotIn("alert", status)
            self.assertIn("expires", status["warning"])

    async def test_an_expired_or_expiring_token(self) -> None:
        now = datetime.datetime.now(datetime.UTC)
        status = await self.runtime(apple_date(now - datetime.timedelta(days=1))).status()
        self.assertIn("expired", status["alert"])
        status = await self.runtime(apple_date(now + datetime.timedelta(days=10))).status()
        self.assertNotIn("alert", status)
        self.assertIn("expires", status["warning"])
        status = await self.runtime(apple_date(now + datetime.timedelta(days=100))).status()
        self.assertNotIn("warning", status)

    async def test_a_bad_token_file_is_an_alert_not_a_crash(self) -> None:
        runtime = self.runtime("2030-01-01T00:00:00Z")
        for content in (b"garbage \xff", b"", blob([1]), blob({"token": "t"})):
            runtime.token_file.write_bytes(content)
            status = await runtime.status()
            self.assertIsNone(status["token"])
            self.assertIn("sToken", status["alert"])
        runtime.token_file.unlink()
        runtime.token_file.mkdir()
        status = await runtime.status()
        self.assertIn("cannot read", status["alert"])


class Dates(SynchronousTestCase):
    def test_apple_dates(self) -> None:
        utc = datetime.UTC
        self.assertEqual(
            parse_apple_date("2014-08-15T18:13:52-0700"),
            datetime.datetime(2014, 8, 16, 1, 13, 52, tzinfo=utc),
        )
        for text in ("2014-08-16T01:13:52Z", "2014-08-16T01:13:52", "2014-08-16T01:13:52+00:00"):
            self.assertEqual(
                parse_apple_date(text), datetime.datetime(2014, 8, 16, 1, 13, 52, tzinfo=utc)
            )
        with self.assertRaises(STokenError):
            parse_stoken(blob({"token": "t", "expDate": "tomorrow", "orgName": "O"}))
        with self.assertRaises(STokenError):
            parse_stoken(blob({"token": "t", "expDate": 20300101, "orgName": "O"}))


class Appliance(TestCase):
    """The admin routes and the CLI on a running appliance on the fake VPP service."""

    timeout = 120

    def setUp(self) -> Any:
        return Deferred.fromCoroutine(self._set_up())

    async def _set_up(self) -> None:
        directory = Path(self.mktemp()).absolute()
        directory.mkdir()
        self.fake = FakeVPP(directory / "fake")
        await self.fake.start()
        self.addCleanup(self.fake.stop)
        keys = directory / "keys"
        keys.mkdir()
        (keys / "monitor").write_text(READ_KEY + "\n")
        (keys / "monitor").chmod(0o600)
        self.appliance = InProcessAppliance(
            directory / "appliance",
            vpp={
                "service_config_url": self.fake.service_config_url,
                "ca_file": str(self.fake.ca_file),
            },
            admin={"extra_keys": [f"monitor:read:{keys / 'monitor'}"]},
        )
        self.addCleanup(self.appliance.stop)
        self.config = self.appliance.config
        store_stoken(self.config.vpp.token_file, parse_stoken(self.fake.stoken().encode()))
        self.http = treq.client.HTTPClient(
            Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False))
        )

    async def raw(
        self, method: str, path: str, data: bytes | None = None, key: str | None = None
    ) -> tuple[int, Any, Any]:
        headers: dict[bytes | str, bytes | str] = {
            "Authorization": f"Bearer {key or self.config.read_admin_api_key()}"
        }
        if data is not None:
            headers["Content-Type"] = "application/json"
        response = await self.http.request(
            method, self.config.admin_url() + path, headers=headers, data=data
        )
        content = await response.content()
        ctype = (response.headers.getRawHeaders(b"content-type") or [b""])[0]
        self.assertEqual(ctype, b"application/json", (method, path, data, content[:200]))
        return response.code, response.headers, json.loads(content)

    async def api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        code, _, answer = await self.raw(
            method, path, json.dumps(body).encode() if body is not None else None
        )
        return code, answer

    async def test_bad_input_to_every_route_is_a_4xx_and_asks_apple_nothing(self) -> None:
        bodies: list[bytes | None] = [
            None, b"not json", b"[]", b'"x"', b"null", b'{"x": NaN}',
            b"[" * 5000 + b"]" * 5000, b"\xff\xfe", b'{"bogus": 1}', b'{"udid": 5}',
            b'{"udid": "' + b"A" * 101 + b'"}', b'{"udid": "X", "invite": "yes"}',
            b'{"udid": "X", "email": 5}', b'{"udid": "X", "adam_id": 1e400}',
            b'{"udid": "X", "adam_id": 99999999999999999999999}', b'{"udid": "X", "adam_id": -1}',
            b'{"udid": "X", "adam_id": true}', b'{"udid": "X", "adam_id": 1, "pricing_param": {}}',
            b'{"email": 5}', b'{"email": "' + b"a" * 400 + b'"}', b'{"email": "a@b", "x": 1}',
            b'{"user_id": "abc"}', b'{"user_id": 0}', b'{"user_id": 99999999999999999999999}',
            b'{"user_id": true}', b'{"user_id": 1.5}', b'{"user_id": "\\u0663"}',
            b'{"client_user_id": 5}', b'{"client_user_id": "a b"}', b'{"client_user_id": ""}',
            b'{"user_id": 1, "extra": 1}',
        ]  # fmt: skip
        routes = [
            "/v1/vpp/users", "/v1/vpp/install", "/v1/vpp/users/1/edit",
            "/v1/vpp/licenses/1/associate", "/v1/vpp/users/99999999999999999999999/retire",
            "/v1/vpp/licenses/99999999999999999999999/disassociate", "/v1/vpp/users/0/retire",
        ]  # fmt: skip
        for path in routes:
            for body in bodies:
                code, _, answer = await self.raw("POST", path, body)
                self.assertEqual(code, 400, (path, body, answer))
                self.assertTrue(answer["errors"], answer)
        for path in ("/v1/vpp/licenses/-1/disassociate", "/v1/vpp/users/1.5/retire"):
            code, _ = await self.api("POST", path)
            self.assertEqual(code, 404)
        for path in (
            "/v1/vpp/users?after=-1", "/v1/vpp/users?limit=0", "/v1/vpp/users?limit=1001",
            "/v1/vpp/users?after=99999999999999999999999", "/v1/vpp/licenses?user_id=%FF",
            "/v1/vpp/licenses?user_id=%D9%A3", "/v1/vpp/licenses?user_id=",
        ):  # fmt: skip
            code, answer = await self.api("GET", path)
            self.assertEqual(code, 400, (path, answer))
        for method, path in (("GET", "/v1/vpp/sync"), ("PUT", "/v1/vpp/users")):
            code, _ = await self.api(method, path)
            self.assertEqual(code, 405)
        self.assertEqual(self.fake.log, [], "nothing bad reached Apple")

    async def test_read_only_keys_read_and_never_write(self) -> None:
        (user,) = self.fake.add_users(1)
        writes = [
            "/v1/vpp/sync", "/v1/vpp/users", "/v1/vpp/install", f"/v1/vpp/users/{user}/retire",
            f"/v1/vpp/users/{user}/edit", "/v1/vpp/licenses/1/associate",
            "/v1/vpp/licenses/1/disassociate",
        ]  # fmt: skip
        for path in writes:
            code, _, answer = await self.raw("POST", path, b"{}", key=READ_KEY)
            self.assertEqual(code, 403, (path, answer))
            self.assertIn("read-only", answer["error"])
        self.assertEqual(self.fake.log, [])
        await self.api("POST", "/v1/vpp/sync")
        for path in ("/v1/vpp/users", "/v1/vpp/licenses", "/v1/health"):
            code, _, answer = await self.raw("GET", path, key=READ_KEY)
            self.assertEqual(code, 200, (path, answer))

    async def test_apple_errors_on_the_routes(self) -> None:
        (user,) = self.fake.add_users(1)
        self.fake.associate_itunes(user)
        (license_id,) = self.fake.add_licenses(1)
        # documented refusals: 409 in words
        for path, body, code_word in (
            (f"/v1/vpp/licenses/{license_id}/disassociate", None, "9619"),
            ("/v1/vpp/licenses/999/disassociate", None, "9610"),
            (f"/v1/vpp/licenses/{license_id}/associate", {"client_user_id": "nobody"}, "9609"),
            ("/v1/vpp/licenses/999/associate", {"user_id": user}, "9610"),
        ):
            code, answer = await self.api("POST", path, body)
            self.assertEqual(code, 409, (path, answer))
            self.assertTrue(answer["error"].startswith(code_word), answer)
        # busy: 503 with Apple's Retry-After
        self.fake.fail_next = [(503, b"busy", {"Retry-After": "120"})]
        edit = f"/v1/vpp/users/{user}/edit"
        code, headers, answer = await self.raw("POST", edit, b'{"email": "a@b"}')
        self.assertEqual(code, 503, answer)
        self.assertEqual(headers.getRawHeaders(b"retry-after"), [b"120"])
        # not JSON: 502 naming Apple
        self.fake.fail_next = [(200, b"<html>maintenance</html>")]
        code, answer = await self.api("POST", f"/v1/vpp/users/{user}/edit", {"email": "a@b"})
        self.assertEqual(code, 502, answer)
        self.assertIn("not JSON", answer["error"])
        # the sync: busy is 503 with Retry-After, and then it backs off without asking
        self.fake.fail_next = [(429, b"slow down", {"Retry-After": "90"})]
        code, headers, answer = await self.raw("POST", "/v1/vpp/sync")
        self.assertEqual(code, 503, answer)
        self.assertEqual(headers.getRawHeaders(b"retry-after"), [b"90"])
        asked = len(self.fake.log)
        code, headers, answer = await self.raw("POST", "/v1/vpp/sync")
        self.assertEqual(code, 503, answer)
        self.assertIn("backing off", answer["error"])
        self.assertEqual(len(self.fake.log), asked)

    async def test_an_expired_token_is_an_alert_in_health_and_the_sync(self) -> None:
        self.fake.expired = True
        code, answer = await self.api("POST", "/v1/vpp/sync")
        self.assertEqual(code, 502, answer)
        self.assertIn("vpp token import", answer["error"])
        self.assertNotIn("\n", answer["error"])
        code, answer = await self.api("GET", "/v1/health")
        self.assertEqual((code, answer["status"]), (503, "degraded"))
        self.assertIn("9621", answer["vpp"]["alert"])
        self.config.vpp.token_file.write_bytes(b"garbage")
        code, answer = await self.api("GET", "/v1/health")
        self.assertEqual(code, 503)
        self.assertIn("not an sToken", answer["vpp"]["alert"])
        for path in ("/v1/vpp/sync", "/v1/vpp/users/1/retire"):
            code, answer = await self.api("POST", path)
            self.assertEqual(code, 409, (path, answer))
            self.assertIn("sToken", answer["error"])

    async def test_the_cli_fails_in_one_line(self) -> None:
        async def cli(*args: str) -> tuple[int, str, str]:
            out, err, code = await utils.getProcessOutputAndValue(
                sys.executable,
                ["-m", "mdmappliance", "vpp", *args, "--config", str(self.config.path)],
                env=subprocess_env(),
                reactor=reactor,
            )
            return code, out.decode(), err.decode()

        code, out, err = await cli("users", "--limit", "5000")
        self.assertEqual((code, out), (1, ""))
        self.assertEqual(err, "mdmappliance: limit: must be an integer from 1 to 1000\n")
        code, out, err = await cli("disassociate", "999")
        self.assertEqual(code, 1)
        self.assertTrue(err.startswith("mdmappliance: 9610: "), err)
        self.assertEqual(err.count("\n"), 1)
        self.assertNotIn("Traceback", err)


class TokenImport(SynchronousTestCase):
    """``vpp token import`` offline: a good file is stored 0600, a bad one is one line."""

    def test_good_and_garbage_files(self) -> None:
        directory = Path(self.mktemp()).absolute()
        config_path = make_installation(directory / "installation")
        good = directory / "good.vpptoken"
        good.write_bytes(
            blob({"token": "t", "expDate": "2030-01-01T00:00:00-0700", "orgName": "Org"}) + b"\r\n"
        )
        result = run_cli("vpp", "token", "import", str(good), "--config", str(config_path))
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("VPP sToken imported for Org", result.stdout)
        stored = load_config(config_path).vpp.token_file
        self.assertEqual(stored.stat().st_mode & 0o777, 0o600)
        self.assertEqual(parse_stoken(stored.read_bytes()).org_name, "Org")
        bad = directory / "bad"
        for content, words in (
            (b"\x00garbage\xff", "not an sToken"),
            (b"", "empty"),
            (base64.b64encode(b"[1, 2]"), "not an object"),
            (blob({"token": "t", "expDate": "soon", "orgName": "O"}), "not ISO 8601"),
        ):
            bad.write_bytes(content)
            result = run_cli("vpp", "token", "import", str(bad), "--config", str(config_path))
            self.assertEqual(result.returncode, 1, result)
            self.assertTrue(result.stderr.startswith("mdmappliance: "), result.stderr)
            self.assertIn(words, result.stderr)
            self.assertEqual(result.stderr.count("\n"), 1, result.stderr)
        result = run_cli(
            "vpp", "token", "import", str(directory / "missing"), "--config", str(config_path)
        )
        self.assertEqual(result.returncode, 1)
        self.assertNotIn("Traceback", result.stderr)
        self.assertEqual(parse_stoken(stored.read_bytes()).org_name, "Org", "left as it was")
