"""The fake DEP service follows the chapter: a minimal client over real TLS on 127.0.0.1.

The client signs with oauthlib while the fake verifies by hand (RFC 5849), so a good /session
here means two implementations agree on the signature base string.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote

import treq
from oauthlib.oauth1 import SIGNATURE_HMAC, SIGNATURE_PLAINTEXT, Client
from twisted.internet import ssl
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, HTTPConnectionPool
from twisted.web.http_headers import Headers

from mdmappliance.app.reactor import global_reactor
from tests.fakedep import JSON_TYPE, TEXT_TYPE, FakeDEP, hmac_sha1, signature_base_string

reactor = global_reactor()
USER_AGENT = "mdmappliance-tests/1.0"


class Reply:
    """What came back: status, headers, body (JSON decoded when it is JSON)."""

    def __init__(self, code: int, headers: Headers, body: bytes) -> None:
        self.code = code
        self.headers = headers
        self.raw = body
        self.content_type = (headers.getRawHeaders("content-type") or [""])[0]
        self.json: Any = json.loads(body) if self.content_type == JSON_TYPE else None
        self.text = body.decode()

    def header(self, name: str) -> str | None:
        values = self.headers.getRawHeaders(name)
        return values[0] if values else None


class FakeDEPCase(TestCase):
    """A started fake with a clock the test moves, and a minimal DEP client for it."""

    def setUp(self) -> Deferred[None]:  # type: ignore[override]  # trial waits for it
        return Deferred.fromCoroutine(self.start())

    async def start(self) -> None:
        directory = Path(self.mktemp())
        self.now = time.time()
        self.fake = FakeDEP(directory, clock=lambda: self.now)
        await self.fake.start()
        self.addCleanup(self.fake.stop)
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        trust = ssl.Certificate.loadPEM(self.fake.ca_file.read_bytes())
        self.http = treq.client.HTTPClient(
            Agent(reactor, contextFactory=BrowserLikePolicyForHTTPS(trust), pool=self.pool)
        )
        self.token: str | None = None

    def oauth(self, **overrides: Any) -> str:
        """An Authorization header for GET /session, signed as the spec says (or not)."""
        fake = self.fake
        client_key = overrides.pop("client_key", fake.consumer_key)
        options: dict[str, Any] = {
            "client_secret": fake.consumer_secret,
            "resource_owner_key": fake.access_token,
            "resource_owner_secret": fake.access_secret,
            "signature_method": SIGNATURE_HMAC,
            "realm": "ADM",
            "timestamp": str(int(self.now)),
        }
        options.update(overrides)
        client = Client(client_key, **options)
        _, headers, _ = client.sign(fake.url + "/session", http_method="GET")
        return str(headers["Authorization"])

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: dict[str, str | None] | None = None,
        data: bytes | None = None,
    ) -> Reply:
        sent: dict[str, str | None] = {
            "User-Agent": USER_AGENT,
            "X-Server-Protocol-Version": "7",
            "X-ADM-Auth-Session": self.token,
        }
        if body is not None or data is not None:
            sent["Content-Type"] = "application/json;charset=UTF8"
        sent.update(headers or {})
        raw = Headers({k: [v] for k, v in sent.items() if v is not None})
        if body is not None:
            data = json.dumps(body).encode()
        response = await self.http.request(method, self.fake.url + path, headers=raw, data=data)
        return Reply(response.code, response.headers, await response.content())

    async def session(self, authorization: str | None = None) -> Reply:
        reply = await self.request(
            "GET",
            "/session",
            headers={"Authorization": authorization or self.oauth(), "X-ADM-Auth-Session": None},
        )
        if reply.code == 200:
            self.token = reply.json["auth_session_token"]
        return reply

    def assertPlainError(self, reply: Reply, status: int, code: str) -> None:
        self.assertEqual((reply.code, reply.text), (status, code))
        self.assertEqual(reply.content_type, TEXT_TYPE)


class Session(FakeDEPCase):
    async def test_good_session_then_account(self) -> None:
        reply = await self.session()
        self.assertEqual(reply.code, 200)
        self.assertEqual(reply.content_type, JSON_TYPE)
        self.assertEqual(set(reply.json), {"auth_session_token"})
        self.assertEqual(self.fake.session_requests, 1)
        account = await self.request("GET", "/account")
        self.assertEqual(account.code, 200)
        self.assertEqual(account.content_type, JSON_TYPE)
        self.assertEqual(
            set(account.json),
            {
                "server_name",
                "server_uuid",
                "facilitator_id",
                "org_name",
                "org_email",
                "org_phone",
                "org_address",
            },
        )
        self.assertEqual(account.header("X-ADM-Auth-Session"), self.token)
        self.assertEqual(self.fake.log, [("GET", "/session", 200), ("GET", "/account", 200)])

    async def test_token_json(self) -> None:
        token = self.fake.token_json("2031-02-03T04:05:06Z")
        self.assertEqual(
            set(token),
            {"consumer_key", "consumer_secret", "access_token", "access_secret"}
            | {"access_token_expiry"},
        )
        for key, prefix in [
            ("consumer_key", "CK_"),
            ("consumer_secret", "CS_"),
            ("access_token", "AT_"),
            ("access_secret", "AS_"),
        ]:
            self.assertTrue(token[key].startswith(prefix), key)
        self.assertEqual(token["access_token_expiry"], "2031-02-03T04:05:06Z")

    async def test_header_signed_by_hand(self) -> None:
        """The spec's header layout (multi-line, oauth_version), signed without oauthlib."""
        fake = self.fake
        params = [
            ("oauth_consumer_key", fake.consumer_key),
            ("oauth_token", fake.access_token),
            ("oauth_signature_method", "HMAC-SHA1"),
            ("oauth_timestamp", str(int(self.now))),
            ("oauth_nonce", "4572616e48616d6d65724c61686176"),
            ("oauth_version", "1.0"),
        ]
        base = signature_base_string("GET", fake.url + "/session", params)
        signature = hmac_sha1(base, fake.consumer_secret, fake.access_secret)
        quoted = quote(signature, safe="")
        header = 'OAuth realm="ADM",\n        ' + ",\n        ".join(
            f'{k}="{v}"' for k, v in [*params, ("oauth_signature", quoted)]
        )
        self.assertEqual((await self.session(header)).code, 200)

    async def test_bad_signature_reused_nonce_stale_timestamp_are_401(self) -> None:
        bad = await self.session(self.oauth(client_secret="CS_wrong"))
        self.assertEqual((bad.code, bad.text), (401, "oauth_problem=signature_invalid"))
        header = self.oauth(nonce="0123456789abcdef0123456789abcdef")
        self.assertEqual((await self.session(header)).code, 200)
        again = await self.session(header)
        self.assertEqual((again.code, again.text), (401, "oauth_problem=nonce_used"))
        stale = await self.session(self.oauth(timestamp=str(int(self.now) - 301)))
        self.assertEqual((stale.code, stale.text), (401, "oauth_problem=timestamp_refused"))
        future = await self.session(self.oauth(timestamp=str(int(self.now) + 301)))
        self.assertEqual(future.code, 401)
        unknown = await self.session(self.oauth(client_key="CK_unknown"))
        self.assertEqual((unknown.code, unknown.text), (401, "oauth_problem=consumer_key_unknown"))
        token = await self.session(self.oauth(resource_owner_key="AT_other"))
        self.assertEqual((token.code, token.text), (401, "oauth_problem=token_rejected"))
        self.assertEqual(self.fake.session_requests, 1)

    async def test_expired_server_token_is_401(self) -> None:
        self.fake.token_json("2001-01-01T00:00:00Z")
        reply = await self.session()
        self.assertEqual((reply.code, reply.text), (401, "oauth_problem=token_rejected"))

    async def test_protocol_errors_are_400(self) -> None:
        good = self.oauth()
        plaintext = await self.session(self.oauth(signature_method=SIGNATURE_PLAINTEXT))
        self.assertEqual(plaintext.text, "oauth_problem=signature_method_rejected")
        for header, problem in [
            (good.replace('oauth_nonce="', 'oauth_x="'), "parameter_rejected"),  # unsupported
            (", ".join(p for p in good.split(", ") if "oauth_nonce" not in p), "parameter_absent"),
            (good + ', oauth_nonce="again"', "parameter_rejected"),  # duplicated
            (self.oauth(realm=None), "parameter_rejected"),
            (self.oauth(realm="Other"), "parameter_rejected"),
            (good.replace('oauth_version="1.0"', 'oauth_version="2.0"'), "version_rejected"),
            (good.replace('oauth_timestamp="', 'oauth_timestamp="x'), "parameter_rejected"),
            ("Basic dXNlcjpwYXNz", "parameter_absent"),
        ]:
            reply = await self.session(header)
            self.assertPlainError(reply, 400, f"oauth_problem={problem}")
        self.assertEqual(self.fake.session_requests, 0)

    async def test_session_expiry_is_the_spec_401(self) -> None:
        await self.session()
        self.now += self.fake.session_lifetime + 1
        reply = await self.request("GET", "/account")
        self.assertPlainError(reply, 401, "UNAUTHORIZED")
        self.assertEqual(reply.header("WWW-Authenticate"), "ADM-Auth-Token")
        self.assertEqual((await self.request("GET", "/account")).code, 401)  # stays 401
        self.token = None
        self.assertPlainError(await self.request("GET", "/account"), 401, "UNAUTHORIZED")
        self.token = "87a235815b8d6661ac73329f75815b8d6661ac73329f815"  # never issued
        self.assertPlainError(await self.request("GET", "/account"), 403, "FORBIDDEN")
        self.assertEqual((await self.session()).code, 200)
        self.assertEqual((await self.request("GET", "/account")).code, 200)

    async def test_rotation_sends_a_new_session_and_the_old_one_still_works(self) -> None:
        self.fake.rotate_session_every = 2
        await self.session()
        old = self.token
        first = await self.request("GET", "/account")
        self.assertEqual(first.header("X-ADM-Auth-Session"), old)
        second = await self.request("GET", "/account")
        new = second.header("X-ADM-Auth-Session")
        self.assertNotIn(new, (None, old))
        self.assertEqual((await self.request("GET", "/account")).code, 200)  # old still good
        self.token = new
        self.assertEqual((await self.request("GET", "/account")).code, 200)
        self.assertEqual(self.fake.session_requests, 1)

    async def test_terms_not_signed_and_access_denied_are_403(self) -> None:
        self.fake.t_and_c_signed = False
        self.assertEqual((await self.session()).code, 200)
        self.assertPlainError(await self.request("GET", "/account"), 403, "T_C_NOT_SIGNED")
        fetch = await self.request("POST", "/server/devices", {})
        self.assertPlainError(fetch, 403, "T_C_NOT_SIGNED")
        self.fake.forbid_session_too = True
        self.assertPlainError(await self.session(self.oauth(nonce="n2")), 403, "T_C_NOT_SIGNED")
        self.fake.t_and_c_signed = True
        self.fake.access_denied = True
        self.assertPlainError(await self.request("GET", "/account"), 403, "ACCESS_DENIED")


class RequestChecks(FakeDEPCase):
    async def test_required_headers_body_and_method(self) -> None:
        await self.session()
        no_agent = await self.request("GET", "/account", headers={"User-Agent": ""})
        self.assertPlainError(no_agent, 400, "USER_AGENT_INVALID")
        no_version = await self.request(
            "GET", "/account", headers={"X-Server-Protocol-Version": None}
        )
        self.assertPlainError(no_version, 400, "X_SERVER_PROTOCOL_VERSION_INVALID")
        form = await self.request(
            "POST", "/server/devices", data=b"limit=5", headers={"Content-Type": "text/plain"}
        )
        self.assertEqual(form.code, 415)
        broken = await self.request("POST", "/server/devices", data=b"{not json")
        self.assertPlainError(broken, 400, "MALFORMED_REQUEST_BODY")
        self.assertEqual((await self.request("DELETE", "/account")).code, 405)
        self.assertEqual((await self.request("GET", "/nowhere")).code, 404)

    async def test_stop_drops_keep_alive_connections(self) -> None:
        """Clients with persistent pools leave connections open; stop() must not hang on them."""
        pool = HTTPConnectionPool(reactor, persistent=True)
        self.addCleanup(pool.closeCachedConnections)
        trust = ssl.Certificate.loadPEM(self.fake.ca_file.read_bytes())
        self.http = treq.client.HTTPClient(
            Agent(reactor, contextFactory=BrowserLikePolicyForHTTPS(trust), pool=pool)
        )
        await self.session()
        self.assertEqual((await self.request("GET", "/account")).code, 200)
        await self.fake.stop()
        await self.fake.stop()  # twice is harmless (the cleanup calls it again)

    async def test_fail_next_answers_first(self) -> None:
        await self.session()
        self.fake.fail_next = [(503, "", {"Retry-After": "2"}), (429, "", {"Retry-After": "1"})]
        busy = await self.request("GET", "/account")
        self.assertEqual((busy.code, busy.header("Retry-After")), (503, "2"))
        self.assertEqual((await self.request("GET", "/account")).code, 429)
        self.assertEqual((await self.request("GET", "/account")).code, 200)
        self.assertEqual([s for _, _, s in self.fake.log], [200, 503, 429, 200])


class Devices(FakeDEPCase):
    async def fetch(self, **body: Any) -> Reply:
        return await self.request("POST", "/server/devices", body)

    async def sync(self, **body: Any) -> Reply:
        return await self.request("POST", "/devices/sync", body)

    async def test_fetch_pages_then_exhausted(self) -> None:
        serials = self.fake.add_devices(250)
        await self.session()
        seen: list[str] = []
        cursor = None
        for expected, more in [(100, True), (100, True), (50, False)]:
            reply = await self.fetch(limit=100, **({"cursor": cursor} if cursor else {}))
            self.assertEqual(reply.code, 200)
            self.assertEqual(len(reply.json["devices"]), expected)
            self.assertIs(reply.json["more_to_follow"], more)
            self.assertNotEqual(reply.json["cursor"], cursor)
            self.assertIn("fetched_until", reply.json)
            for device in reply.json["devices"]:
                self.assertNotIn("op_type", device)
                self.assertEqual(device["profile_status"], "empty")
            seen += [d["serial_number"] for d in reply.json["devices"]]
            cursor = reply.json["cursor"]
            int(cursor, 16)
        self.assertEqual(seen, serials)  # oldest first, each once
        self.assertPlainError(await self.fetch(cursor=cursor), 400, "EXHAUSTED_CURSOR")
        self.assertPlainError(await self.fetch(cursor="1ac73329f75815"), 400, "INVALID_CURSOR")
        self.assertPlainError(await self.fetch(cursor="not hex"), 400, "INVALID_CURSOR")
        everything = await self.fetch()
        self.assertEqual(len(everything.json["devices"]), 100)  # the default limit

    async def test_limit_out_of_range_is_400(self) -> None:
        self.fake.add_devices(3)
        await self.session()
        for limit in (0, -1, 1001, "10", 2.5, True):
            self.assertPlainError(await self.fetch(limit=limit), 400, "INVALID_LIMIT")
        exact = await self.fetch(limit=3)
        self.assertEqual((len(exact.json["devices"]), exact.json["more_to_follow"]), (3, False))
        self.assertEqual((await self.fetch(limit=1000)).code, 200)
        cursor = (await self.fetch(limit=1)).json["cursor"]
        self.assertPlainError(await self.sync(cursor=cursor, limit=1001), 400, "INVALID_LIMIT")

    async def test_sync_returns_the_changes_since_the_cursor(self) -> None:
        a, b, c = self.fake.add_devices(3)
        await self.session()
        cursor = (await self.fetch()).json["cursor"]
        self.now += 60
        (d,) = self.fake.add_devices(1)
        self.fake.modify(a, asset_tag="NEW-TAG")
        self.fake.remove(b)
        reply = await self.sync(cursor=cursor)
        self.assertEqual(reply.code, 200)
        changes = [(x["serial_number"], x["op_type"]) for x in reply.json["devices"]]
        self.assertEqual(changes, [(d, "added"), (a, "modified"), (b, "deleted")])
        for device in reply.json["devices"]:
            self.assertRegex(device["op_date"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        added = reply.json["devices"][0]
        self.assertEqual(added["op_date"], added["device_assigned_date"])
        self.assertEqual(reply.json["devices"][1]["asset_tag"], "NEW-TAG")
        self.assertIs(reply.json["more_to_follow"], False)
        quiet = await self.sync(cursor=reply.json["cursor"])
        self.assertEqual((quiet.json["devices"], quiet.json["more_to_follow"]), ([], False))
        self.assertNotIn(b, self.fake.devices)
        self.assertEqual(set(self.fake.devices), {a, c, d})

    async def test_sync_pages_repeat_a_device(self) -> None:
        """Added then modified: the same serial in two pages, as the chapter warns."""
        self.fake.add_devices(1)
        await self.session()
        cursor = (await self.fetch()).json["cursor"]
        (new,) = self.fake.add_devices(1)
        self.fake.modify(new, profile_status="removed")  # moved to another server
        first = await self.sync(cursor=cursor, limit=1)
        self.assertIs(first.json["more_to_follow"], True)
        second = await self.sync(cursor=first.json["cursor"], limit=1)
        self.assertIs(second.json["more_to_follow"], False)
        pages = [first.json["devices"], second.json["devices"]]
        self.assertEqual(
            [(p[0]["serial_number"], p[0]["op_type"]) for p in pages],
            [(new, "added"), (new, "modified")],
        )
        self.assertEqual(pages[1][0]["profile_status"], "removed")

    async def test_sync_cursor_errors(self) -> None:
        self.fake.add_devices(1)
        self.fake.session_lifetime = 30 * 86400.0
        await self.session()
        cursor = (await self.fetch()).json["cursor"]
        self.assertPlainError(await self.sync(), 400, "CURSOR_REQUIRED")
        self.assertPlainError(await self.sync(cursor="00ff"), 400, "INVALID_CURSOR")
        self.now += 6 * 86400
        fresh = (await self.sync(cursor=cursor)).json["cursor"]
        self.now += 86400 + 1
        self.assertPlainError(await self.sync(cursor=cursor), 400, "EXPIRED_CURSOR")
        self.assertEqual((await self.sync(cursor=fresh)).code, 200)  # a day old

    async def test_details_and_disown(self) -> None:
        a, b = self.fake.add_devices(2)
        self.fake.failing_serials.add(b)
        await self.session()
        cursor = (await self.fetch()).json["cursor"]
        details = await self.request("POST", "/devices", {"devices": [a, "NOPE"]})
        self.assertEqual(details.json["devices"]["NOPE"], {"response_status": "NOT_FOUND"})
        self.assertEqual(details.json["devices"][a]["response_status"], "SUCCESS")
        self.assertEqual(details.json["devices"][a]["model"], self.fake.devices[a]["model"])
        no_devices = await self.request("POST", "/devices", {"devices": []})
        self.assertPlainError(no_devices, 400, "DEVICE_ID_REQUIRED")
        disown = await self.request("POST", "/devices/disown", {"devices": [a, b, "NOPE"]})
        self.assertEqual(
            disown.json, {"devices": {a: "SUCCESS", b: "FAILED", "NOPE": "NOT_ACCESSIBLE"}}
        )
        self.assertEqual(self.fake.disowned, [a])
        sync = await self.sync(cursor=cursor)
        self.assertEqual([x["op_type"] for x in sync.json["devices"]], ["deleted"])
        empty = await self.request("POST", "/devices/disown", {})
        self.assertPlainError(empty, 400, "DEVICE_ID_REQUIRED")


class Profiles(FakeDEPCase):
    PROFILE: ClassVar[dict[str, Any]] = {
        "profile_name": "Test Profile",
        "url": "https://mdm.example.com/getconfig",
        "is_supervised": True,
        "is_mdm_removable": False,
        "department": "IT Department",
        "support_phone_number": "1-555-555-555",
        "org_magic": "913FABBB-0032-4E13-9966-D6BBAC900331",
        "skip_setup_items": ["Location", "Siri"],
    }

    async def test_define_fetch_assign_remove(self) -> None:
        a, b = self.fake.add_devices(2)
        await self.session()
        cursor = (await self.request("POST", "/server/devices", {})).json["cursor"]
        define = await self.request("POST", "/profile", {**self.PROFILE, "devices": [a, "NOPE"]})
        self.assertEqual(define.code, 200)
        uuid = define.json["profile_uuid"]
        int(uuid, 16)
        self.assertEqual(define.json["devices"], {a: "SUCCESS", "NOPE": "NOT_ACCESSIBLE"})
        self.assertEqual(self.fake.devices[a]["profile_uuid"], uuid)
        self.assertEqual(self.fake.devices[a]["profile_status"], "assigned")

        fetched = await self.request("GET", f"/profile?profile_uuid={uuid}")
        self.assertEqual(
            fetched.json,
            {**self.PROFILE, "profile_uuid": uuid, "allow_pairing": True} | {"is_mandatory": False},
        )
        self.assertEqual(self.fake.profiles[uuid]["profile_name"], "Test Profile")

        assign = await self.request(
            "PUT", "/profile/devices", {"profile_uuid": uuid, "devices": [b]}
        )
        self.assertEqual(assign.json, {"profile_uuid": uuid, "devices": {b: "SUCCESS"}})
        device = self.fake.devices[b]
        self.assertEqual((device["profile_status"], device["profile_uuid"]), ("assigned", uuid))
        self.assertIn("profile_assign_time", device)
        noop = await self.request("PUT", "/profile/devices", {"profile_uuid": uuid, "devices": []})
        self.assertEqual(noop.json["devices"], {})

        remove = await self.request("DELETE", "/profile/devices", {"devices": [a, "NOPE"]})
        self.assertEqual(remove.json, {"devices": {a: "SUCCESS", "NOPE": "NOT_ACCESSIBLE"}})
        self.assertEqual(self.fake.devices[a]["profile_status"], "removed")
        self.assertNotIn("profile_uuid", self.fake.devices[a])

        sync = await self.request("POST", "/devices/sync", {"cursor": cursor})
        self.assertEqual(
            [(x["serial_number"], x["op_type"], x["profile_status"]) for x in sync.json["devices"]],
            [(a, "modified", "assigned"), (b, "modified", "assigned"), (a, "modified", "removed")],
        )

    async def test_profile_errors(self) -> None:
        await self.session()

        async def define(**changes: Any) -> Reply:
            body = {k: v for k, v in {**self.PROFILE, **changes}.items() if v is not None}
            return await self.request("POST", "/profile", body)

        self.assertPlainError(await define(url=None), 400, "CONFIG_URL_REQUIRED")
        self.assertPlainError(await define(profile_name=""), 400, "CONFIG_NAME_REQUIRED")
        self.assertPlainError(await define(department=None), 400, "DEPARTMENT_REQUIRED")
        phone = await define(support_phone_number=None)
        self.assertPlainError(phone, 400, "SUPPORT_PHONE_REQUIRED")
        bad_fields: list[dict[str, Any]] = [
            {"is_supervised": "true"},
            {"skip_setup_items": "Siri"},
            {"anchor_certs": ["-----BEGIN CERTIFICATE-----"]},
            {"supervising_host certs": []},
            {"url": "http://mdm.example.com/getconfig"},
            {"devices": [1]},
        ]
        for bad in bad_fields:
            self.assertPlainError(await define(**bad), 400, "MALFORMED_REQUEST_BODY")
        self.assertEqual(self.fake.profiles, {})
        anchor = self.fake.ca_file.read_text().split("-----")[2].replace("\n", "")
        self.assertEqual((await define(anchor_certs=[anchor])).code, 200)

        missing = await self.request("GET", "/profile")
        self.assertPlainError(missing, 400, "PROFILE_UUID_REQUIRED")
        unknown = await self.request(
            "GET", "/profile?profile_uuid=88fc4e378fea4021a94b2d7268fbf767"
        )
        self.assertPlainError(unknown, 404, "PROFILE_NOT_FOUND")
        assign = await self.request(
            "PUT", "/profile/devices", {"profile_uuid": "x", "devices": ["A"]}
        )
        self.assertPlainError(assign, 404, "PROFILE_NOT_FOUND")
        no_uuid = await self.request("PUT", "/profile/devices", {"devices": ["A"]})
        self.assertPlainError(no_uuid, 400, "PROFILE_UUID_REQUIRED")
        no_devices = await self.request("PUT", "/profile/devices", {"profile_uuid": "x"})
        self.assertPlainError(no_devices, 400, "DEVICE_ID_REQUIRED")
        remove = await self.request("DELETE", "/profile/devices", {"devices": []})
        self.assertPlainError(remove, 400, "DEVICE_ID_REQUIRED")
