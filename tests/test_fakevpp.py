"""The fake VPP service follows the chapter: a minimal client over real TLS on 127.0.0.1.

The client reads the service URLs from VPPServiceConfigSrv first, as the chapter recommends,
and re-reads them after a 9617, so these tests also show what the product's client must do.
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import treq
from twisted.internet import ssl
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, HTTPConnectionPool
from twisted.web.http_headers import Headers

from mdmappliance.app.reactor import global_reactor
from tests.fakevpp import (
    CONFIG_PATH,
    ERROR_MESSAGES,
    JSON_TYPE,
    SERVICE_URL_FIELDS,
    FakeVPP,
    parse_exp_date,
)

reactor = global_reactor()
DAY = 86400.0
EXP_DATE = "2030-01-01T00:00:00-0000"
UNSET: Any = object()


class Reply:
    """What came back: status, Content-Type, the raw body and its JSON."""

    def __init__(self, code: int, headers: Headers, body: bytes) -> None:
        self.code = code
        self.content_type = (headers.getRawHeaders("content-type") or [""])[0]
        self.raw = body
        self.json: Any = json.loads(body) if self.content_type == JSON_TYPE else None


def nulls(value: Any) -> bool:
    """Whether a null appears anywhere in a JSON value."""
    if value is None:
        return True
    if isinstance(value, dict):
        return any(nulls(v) for v in value.values())
    if isinstance(value, list):
        return any(nulls(v) for v in value)
    return False


class FakeVPPCase(TestCase):
    """A started fake with a clock the test moves, and a minimal VPP client for it."""

    def setUp(self) -> Deferred[None]:  # type: ignore[override]  # trial waits for it
        return Deferred.fromCoroutine(self.start())

    async def start(self) -> None:
        self.now = parse_exp_date(EXP_DATE) - 365 * DAY
        self.fake = FakeVPP(Path(self.mktemp()), clock=lambda: self.now)
        await self.fake.start()
        self.addCleanup(self.fake.stop)
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        trust = ssl.Certificate.loadPEM(self.fake.ca_file.read_bytes())
        self.http = treq.client.HTTPClient(
            Agent(reactor, contextFactory=BrowserLikePolicyForHTTPS(trust), pool=self.pool)
        )
        self.token = self.fake.stoken(EXP_DATE)
        self.urls: dict[str, str] = {}
        await self.read_config()

    async def send(self, method: str, url: str, data: bytes | None = None, **headers: str) -> Reply:
        raw = Headers({k.replace("_", "-"): [v] for k, v in headers.items()})
        response = await self.http.request(method, url, headers=raw, data=data)
        return Reply(response.code, response.headers, await response.content())

    async def read_config(self) -> dict[str, Any]:
        """GET VPPServiceConfigSrv (no sToken) and keep the service URLs it gives."""
        reply = await self.send("GET", self.fake.service_config_url)
        self.assertEqual(reply.code, 200)
        config: dict[str, Any] = reply.json
        self.urls = {name: config[key] for name, key in SERVICE_URL_FIELDS.items()}
        return config

    async def post(self, service: str, body: Any, **headers: str) -> Reply:
        headers.setdefault("Content_Type", "application/json")
        return await self.send("POST", self.urls[service], json.dumps(body).encode(), **headers)

    async def call(self, service: str, sToken: Any = UNSET, **params: Any) -> dict[str, Any]:
        """One service call with this test's sToken; the answer's JSON (no nulls, ever)."""
        params["sToken"] = self.token if sToken is UNSET else sToken
        if params["sToken"] is None:
            del params["sToken"]
        reply = await self.post(service, params)
        self.assertEqual((reply.code, reply.content_type), (200, JSON_TYPE))
        self.assertFalse(nulls(reply.json), reply.json)
        answer: dict[str, Any] = reply.json
        return answer

    async def ok(self, service: str, **params: Any) -> dict[str, Any]:
        answer = await self.call(service, **params)
        self.assertEqual(answer["status"], 0, answer)
        return answer

    async def error(self, code: int, service: str, **params: Any) -> dict[str, Any]:
        """An error answer, spelt as the services' tables spell it."""
        answer = await self.call(service, **params)
        self.assertEqual((answer["status"], answer.get("ErrorCode")), (-1, code), answer)
        self.assertIsInstance(answer["errorMessage"], str)
        return answer

    async def list_all(self, service: str, key: str, **params: Any) -> tuple[list[Any], str]:
        """Every batch of a listing (bounded); its records and the closing sinceModifiedToken."""
        records: list[Any] = []
        for _ in range(100):
            answer = await self.ok(service, **params)
            records += answer[key]
            if "batchToken" not in answer:
                return records, answer["sinceModifiedToken"]
            self.assertNotIn("sinceModifiedToken", answer)
            params = {"batchToken": answer["batchToken"]}
        self.fail("the listing did not end")


class ServiceConfig(FakeVPPCase):
    async def test_config_first_no_token_urls_here_error_list(self) -> None:
        reply = await self.send("GET", self.fake.url + CONFIG_PATH)
        self.assertEqual(reply.code, 200)
        self.assertIn(b"https:\\/\\/127.0.0.1", reply.raw)  # JSON escapes "/" as the chapter says
        config = reply.json
        self.assertEqual(config["status"], 0)
        for name, key in SERVICE_URL_FIELDS.items():
            self.assertEqual(config[key], f"{self.fake.url}/WebObjects/MZFinance.woa/wa/{name}")
        self.assertIn("%inviteCode%", config["invitationEmailUrl"])
        self.assertEqual(config["vppWebsiteUrl"], "https://vpp.itunes.apple.com/")
        codes = config["errorCodes"]
        self.assertEqual([c["errorNumber"] for c in codes], list(range(9600, 9624)))
        self.assertEqual({c["errorMessage"] for c in codes}, set(ERROR_MESSAGES.values()))
        post = await self.send("POST", self.fake.service_config_url, b"")
        self.assertEqual(post.json["status"], 0)
        self.assertEqual(self.fake.log[-1], (CONFIG_PATH, "VPPServiceConfigSrv", {}))

    async def test_unknown_paths_and_methods(self) -> None:
        self.assertEqual((await self.send("GET", self.fake.url + "/nothing")).code, 404)
        get = await self.send("GET", self.urls["getVPPUsersSrv"])
        self.assertEqual(get.code, 405)
        moved = self.fake.url + "/moved1/WebObjects/MZFinance.woa/wa/getVPPUsersSrv"
        self.assertEqual((await self.send("POST", moved, b"{}")).code, 404)  # not yet moved


class Users(FakeVPPCase):
    async def test_register_returns_the_active_record(self) -> None:
        answer = await self.ok("registerVPPUserSrv", clientUserIdStr="200002", email="a@b.c")
        user = answer["user"]
        self.assertEqual(user["status"], "Registered")
        self.assertEqual((user["clientUserIdStr"], user["email"]), ("200002", "a@b.c"))
        self.assertEqual(
            user["inviteUrl"],
            f"{self.fake.url}/WebObjects/MZFinance.woa/wa/associateVPPUserWithITSAccount"
            f"?inviteCode={user['inviteCode']}&mt=8",
        )
        self.assertNotIn("itsIdHash", user)
        self.assertNotIn("licenses", user)
        again = await self.ok("registerVPPUserSrv", clientUserIdStr=200002)  # a number: a string
        self.assertEqual(again["user"]["userId"], user["userId"])
        self.fake.associate_itunes(user["userId"])
        associated = await self.ok("registerVPPUserSrv", clientUserIdStr="200002")
        self.assertEqual(associated["user"]["userId"], user["userId"])
        self.assertEqual(associated["user"]["status"], "Associated")
        self.assertNotIn("inviteUrl", associated["user"])
        self.assertIn("itsIdHash", associated["user"])
        answer = await self.error(9600, "registerVPPUserSrv", email="x@y.z")
        self.assertEqual(answer["errorMessage"], '"clientUserIdStr" is required input parameter')

    async def test_retired_never_associated_is_registered_again(self) -> None:
        user_id = (await self.ok("registerVPPUserSrv", clientUserIdStr="u1"))["user"]["userId"]
        retired = await self.ok("retireVPPUserSrv", clientUserIdStr="u1")
        self.assertEqual(retired["user"]["status"], "Retired")
        self.assertNotIn("inviteCode", retired["user"])
        await self.error(9618, "retireVPPUserSrv", userId=user_id)
        await self.error(9618, "retireVPPUserSrv", clientUserIdStr="u1")
        await self.error(9604, "getVPPUserSrv", clientUserIdStr="u1")  # none active
        back = await self.ok("registerVPPUserSrv", clientUserIdStr="u1")
        self.assertEqual((back["user"]["userId"], back["user"]["status"]), (user_id, "Registered"))

    async def test_retired_associated_gets_a_new_record_then_deleted(self) -> None:
        """Retire an associated user; the same iTunes account on the new record: Deleted."""
        old_id = (await self.ok("registerVPPUserSrv", clientUserIdStr="u2"))["user"]["userId"]
        self.fake.associate_itunes(old_id, "C2Wwd8LcIaE2v6f2/mvu82Gs/Lc=")
        book, app = self.fake.add_licenses(1, 111, irrevocable=True) + self.fake.add_licenses(1)
        await self.ok("associateVPPLicenseWithVPPUserSrv", userId=old_id, licenseId=book)
        await self.ok("associateVPPLicenseWithVPPUserSrv", userId=old_id, licenseId=app)
        retired = (await self.ok("retireVPPUserSrv", userId=str(old_id)))["user"]
        self.assertEqual([lic["licenseId"] for lic in retired["licenses"]], [book])
        self.assertTrue(retired["licenses"][0]["isIrrevocable"])
        self.assertNotIn("userId", self.fake.licenses[app])  # the revocable one was released
        new = (await self.ok("registerVPPUserSrv", clientUserIdStr="u2"))["user"]
        self.assertNotEqual(new["userId"], old_id)
        self.assertEqual(new["status"], "Registered")
        got = await self.ok("getVPPUserSrv", clientUserIdStr="u2")
        self.assertEqual(got["user"]["userId"], new["userId"])
        old = await self.ok(
            "getVPPUserSrv", clientUserIdStr="u2", itsIdHash="C2Wwd8LcIaE2v6f2/mvu82Gs/Lc="
        )
        self.assertEqual((old["user"]["userId"], old["user"]["status"]), (old_id, "Retired"))
        self.fake.associate_itunes(new["userId"], "C2Wwd8LcIaE2v6f2/mvu82Gs/Lc=")
        deleted = await self.ok("getVPPUserSrv", userId=old_id)
        self.assertEqual(deleted["user"]["status"], "Deleted")
        self.assertNotIn("licenses", deleted["user"])
        moved = (await self.ok("getVPPUserSrv", userId=new["userId"]))["user"]
        self.assertEqual(moved["status"], "Associated")
        self.assertEqual([lic["licenseId"] for lic in moved["licenses"]], [book])
        await self.error(9620, "retireVPPUserSrv", userId=old_id)
        listed, _ = await self.list_all("getVPPUsersSrv", "users", includeRetired=1)
        self.assertEqual([u["userId"] for u in listed], [new["userId"]])  # Deleted: never listed

    async def test_get_and_edit(self) -> None:
        user_id = (await self.ok("registerVPPUserSrv", clientUserIdStr="u3"))["user"]["userId"]
        await self.error(9604, "getVPPUserSrv", userId=999)
        await self.error(9600, "getVPPUserSrv")
        edited = await self.ok("editVPPUserSrv", clientUserIdStr="u3", email="new@test.com")
        self.assertEqual(edited["user"]["email"], "new@test.com")
        unchanged = await self.ok("editVPPUserSrv", userId=user_id)
        self.assertEqual(unchanged["user"]["email"], "new@test.com")
        answer = await self.error(9600, "editVPPUserSrv", email="x@y.z")
        self.assertEqual(answer["errorMessage"], 'Missing "userId" input parameter')
        await self.error(9609, "editVPPUserSrv", userId=999)

    async def test_paging_250_users_then_since_modified(self) -> None:
        ids = self.fake.add_users(250)
        first = await self.ok("getVPPUsersSrv")
        self.assertEqual((len(first["users"]), first["totalCount"]), (100, 250))
        self.assertNotIn("sinceModifiedToken", first)
        second = await self.ok("getVPPUsersSrv", batchToken=first["batchToken"])
        self.assertEqual(len(second["users"]), 100)
        self.assertNotIn("totalCount", second)  # only for requests without a batchToken
        third = await self.ok("getVPPUsersSrv", batchToken=second["batchToken"])
        self.assertEqual(len(third["users"]), 50)
        self.assertNotIn("batchToken", third)
        every = [u["userId"] for u in first["users"] + second["users"] + third["users"]]
        self.assertEqual(every, ids)
        for user in first["users"]:
            fields = {"userId", "clientUserIdStr", "status", "inviteCode", "inviteUrl"}
            self.assertEqual(set(user), fields)  # no email, no itsIdHash, no licenses
        since = third["sinceModifiedToken"]
        quiet = await self.ok("getVPPUsersSrv", sinceModifiedToken=since)
        self.assertEqual((quiet["users"], quiet["totalCount"]), ([], 0))
        self.assertIn("sinceModifiedToken", quiet)  # even when nothing came back
        self.fake.touch_user(ids[137], email="touched@test.com")
        changed = await self.ok("getVPPUsersSrv", sinceModifiedToken=since)
        self.assertEqual([u["userId"] for u in changed["users"]], [ids[137]])
        self.assertEqual(changed["users"][0]["email"], "touched@test.com")
        later = await self.ok("getVPPUsersSrv", sinceModifiedToken=changed["sinceModifiedToken"])
        self.assertEqual(later["users"], [])

    async def test_include_retired_and_the_since_listing(self) -> None:
        ids = self.fake.add_users(3)
        _, since = await self.list_all("getVPPUsersSrv", "users")
        await self.ok("retireVPPUserSrv", userId=ids[1])
        active, _ = await self.list_all("getVPPUsersSrv", "users", includeRetired=0)
        self.assertEqual([u["userId"] for u in active], [ids[0], ids[2]])
        every, _ = await self.list_all("getVPPUsersSrv", "users", includeRetired="1")
        self.assertEqual([u["userId"] for u in every], ids)
        # A sinceModified listing includes retired users, whatever includeRetired says.
        changed, _ = await self.list_all(
            "getVPPUsersSrv", "users", sinceModifiedToken=since, includeRetired=0
        )
        self.assertEqual([(u["userId"], u["status"]) for u in changed], [(ids[1], "Retired")])
        # The batchToken keeps includeRetired: a different one on the next request is ignored.
        self.fake.batch_size = 1
        first = await self.ok("getVPPUsersSrv", includeRetired=True)
        rest, _ = await self.list_all(
            "getVPPUsersSrv", "users", batchToken=first["batchToken"], includeRetired=0
        )
        self.assertEqual([u["userId"] for u in first["users"] + rest], ids)
        await self.error(9602, "getVPPUsersSrv", includeRetired="maybe")

    async def test_bad_listing_tokens_are_9604(self) -> None:
        self.fake.add_users(2)
        self.fake.add_licenses(2)
        self.fake.batch_size = 1
        users = await self.ok("getVPPUsersSrv")
        licenses = await self.ok("getVPPLicensesSrv")
        for token in ["garbled", "Z2FyYmxlZA==", users["batchToken"][:-8] + "AAAAAAA="]:
            await self.error(9604, "getVPPUsersSrv", batchToken=token)
            await self.error(9604, "getVPPUsersSrv", sinceModifiedToken=token)
        await self.error(9604, "getVPPUsersSrv", batchToken=licenses["batchToken"])
        await self.error(9604, "getVPPLicensesSrv", batchToken=users["batchToken"])
        _, since = await self.list_all("getVPPUsersSrv", "users")
        await self.error(9604, "getVPPUsersSrv", batchToken=since)  # a since token is no batch
        await self.error(9604, "getVPPLicensesSrv", sinceModifiedToken=since)


class Licenses(FakeVPPCase):
    async def test_paging_licenses_and_filters(self) -> None:
        apps = self.fake.add_licenses(230)
        books = self.fake.add_licenses(5, 497799835, pricing_param="PLUS")
        first = await self.ok("getVPPLicensesSrv")
        self.assertEqual((len(first["licenses"]), first["totalCount"]), (100, 235))
        listed, since = await self.list_all("getVPPLicensesSrv", "licenses")
        self.assertEqual([lic["licenseId"] for lic in listed], apps + books)
        self.assertEqual(
            set(listed[0]),
            {"licenseId", "adamId", "productTypeId", "pricingParam", "productTypeName"}
            | {"isIrrevocable"},
        )
        stdq = await self.ok("getVPPLicensesSrv", adamId="497799835")  # STDQ assumed: none
        self.assertEqual((stdq["licenses"], stdq["totalCount"]), ([], 0))
        plus = await self.ok("getVPPLicensesSrv", adamId=497799835, pricingParam="PLUS")
        self.assertEqual([lic["licenseId"] for lic in plus["licenses"]], books)
        user = self.fake.add_users(1)[0]
        self.fake.associate_itunes(user)
        await self.ok("associateVPPLicenseWithVPPUserSrv", userId=user, licenseId=apps[7])
        changed = await self.ok("getVPPLicensesSrv", sinceModifiedToken=since)
        self.assertEqual(len(changed["licenses"]), 1)
        lic = changed["licenses"][0]
        self.assertEqual((lic["licenseId"], lic["userId"]), (apps[7], user))
        self.assertEqual(lic["clientUserIdStr"], self.fake.users[user]["clientUserIdStr"])
        self.assertEqual(lic["itsIdHash"], self.fake.users[user]["itsIdHash"])
        # The filters travel in the token: a since listing of PLUS does not see the STDQ change.
        _, plus_since = await self.list_all(
            "getVPPLicensesSrv", "licenses", adamId=497799835, pricingParam="PLUS"
        )
        await self.ok("associateVPPLicenseWithVPPUserSrv", userId=user, licenseId=apps[8])
        plus_changed = await self.ok("getVPPLicensesSrv", sinceModifiedToken=plus_since, adamId=1)
        self.assertEqual(plus_changed["licenses"], [])

    async def test_associate_disassociate_irrevocable(self) -> None:
        first, second = self.fake.add_users(2)
        app, app2 = self.fake.add_licenses(2)
        (book,) = self.fake.add_licenses(1, 111, irrevocable=True)
        answer = await self.ok(
            "associateVPPLicenseWithVPPUserSrv", userId=str(first), licenseId=str(app)
        )
        self.assertEqual(
            (answer["license"]["licenseId"], answer["license"]["userId"]), (app, first)
        )
        self.assertEqual(answer["user"]["userId"], first)
        self.assertNotIn("itsIdHash", answer["license"])  # not associated with iTunes yet
        self.assertNotIn("licenses", answer["user"])
        await self.error(9616, "associateVPPLicenseWithVPPUserSrv", userId=first, licenseId=app)
        await self.error(9616, "associateVPPLicenseWithVPPUserSrv", userId=second, licenseId=app)
        await self.error(9609, "associateVPPLicenseWithVPPUserSrv", userId=999, licenseId=app2)
        await self.error(9610, "associateVPPLicenseWithVPPUserSrv", userId=first, licenseId=999)
        await self.error(9602, "associateVPPLicenseWithVPPUserSrv", userId=first, licenseId="x")
        await self.error(9600, "associateVPPLicenseWithVPPUserSrv", userId=first)
        await self.error(9600, "associateVPPLicenseWithVPPUserSrv", licenseId=app2)
        got = await self.ok("getVPPUserSrv", userId=first)
        self.assertEqual([lic["licenseId"] for lic in got["user"]["licenses"]], [app])
        self.assertNotIn("userId", got["user"]["licenses"][0])  # no cycle
        # By adamId: the lowest free license of it; one the user already holds: 9616.
        by_adam = await self.ok(
            "associateVPPLicenseWithVPPUserSrv",
            clientUserIdStr=self.fake.users[second]["clientUserIdStr"],
            adamId=408709785,
        )
        self.assertEqual(by_adam["license"]["licenseId"], app2)
        await self.error(9616, "associateVPPLicenseWithVPPUserSrv", userId=second, adamId=408709785)
        await self.error(9610, "associateVPPLicenseWithVPPUserSrv", userId=second, adamId=555)
        # Disassociate: the license without its user, the former user beside it.
        gone = await self.ok("disassociateVPPLicenseFromVPPUserSrv", licenseId=str(app))
        self.assertNotIn("userId", gone["license"])
        self.assertEqual(gone["user"]["userId"], first)
        await self.error(9619, "disassociateVPPLicenseFromVPPUserSrv", licenseId=app)
        await self.error(9610, "disassociateVPPLicenseFromVPPUserSrv", licenseId=999)
        await self.error(9600, "disassociateVPPLicenseFromVPPUserSrv")
        await self.ok("associateVPPLicenseWithVPPUserSrv", userId=first, licenseId=book)
        await self.error(9607, "disassociateVPPLicenseFromVPPUserSrv", licenseId=book)
        self.assertEqual(self.fake.licenses[book]["userId"], first)
        await self.ok("retireVPPUserSrv", userId=first)
        await self.error(9618, "associateVPPLicenseWithVPPUserSrv", userId=first, licenseId=app)


class Protocol(FakeVPPCase):
    async def test_9617_then_new_urls(self) -> None:
        old = dict(self.urls)
        self.fake.move_next = True
        await self.error(9617, "getVPPUsersSrv")
        await self.error(9617, "registerVPPUserSrv", clientUserIdStr="u")  # old URLs stay moved
        config = await self.read_config()
        self.assertEqual(self.fake.service_config_url, self.fake.url + CONFIG_PATH)  # fixed
        for name in SERVICE_URL_FIELDS:
            self.assertNotEqual(self.urls[name], old[name])
            self.assertEqual(self.urls[name], config[SERVICE_URL_FIELDS[name]])
        await self.ok("getVPPUsersSrv")
        await self.ok("registerVPPUserSrv", clientUserIdStr="u")
        self.assertEqual(self.fake.users[1]["clientUserIdStr"], "u")

    async def test_token_errors(self) -> None:
        answer = await self.error(9601, "getVPPUsersSrv", sToken=None)
        self.assertEqual(answer["errorMessage"], "Login required")
        for garbled in ["not base64!", base64.b64encode(b"[1]").decode(), 42]:
            await self.error(9622, "getVPPUsersSrv", sToken=garbled)
        blob = json.loads(base64.b64decode(self.token))
        forged = base64.b64encode(
            json.dumps({**blob, "expDate": "2099-01-01T00:00:00-0000"}).encode()
        )
        await self.error(9622, "getVPPUsersSrv", sToken=forged.decode())
        self.fake.invalid_token = True
        answer = await self.error(9622, "getVPPUsersSrv")
        self.assertEqual(answer["errorMessage"], "The authentication token is invalid.")
        self.fake.invalid_token = False
        self.fake.expired = True
        await self.error(9621, "VPPClientConfigSrv")
        self.fake.expired = False
        await self.ok("VPPClientConfigSrv")
        past = self.fake.stoken("2014-08-15T18:13:52-0700", "ORG.2009071600")
        await self.error(9621, "getVPPLicensesSrv", sToken=past)

    async def test_token_exp_date_within_15_days(self) -> None:
        answer = await self.ok("getVPPUsersSrv")
        self.assertNotIn("tokenExpDate", answer)
        self.now = parse_exp_date(EXP_DATE) - 15 * DAY - 1
        self.assertNotIn("tokenExpDate", await self.ok("getVPPUsersSrv"))
        self.now += 2
        self.assertEqual((await self.ok("getVPPUsersSrv"))["tokenExpDate"], EXP_DATE)
        answer = await self.error(9604, "getVPPUserSrv", userId=1)  # on errors too
        self.assertEqual(answer["tokenExpDate"], EXP_DATE)
        reply = await self.send("GET", self.fake.service_config_url)
        self.assertNotIn("tokenExpDate", reply.json)  # not an authenticated service
        self.now = parse_exp_date(EXP_DATE)
        await self.error(9621, "getVPPUsersSrv")

    async def test_body_rules(self) -> None:
        reply = await self.post("getVPPUsersSrv", {"sToken": self.token}, Content_Type="text/plain")
        self.assertEqual(reply.json["ErrorCode"], 9602)
        reply = await self.send(
            "POST", self.urls["getVPPUsersSrv"], b"[1, 2]", Content_Type="application/json"
        )
        self.assertEqual(reply.json["ErrorCode"], 9602)
        self.fake.require_json_content_type = False
        reply = await self.post("getVPPUsersSrv", {"sToken": self.token}, Content_Type="text/plain")
        self.assertEqual(reply.json["status"], 0)

    async def test_error_keys_knob(self) -> None:
        self.fake.error_keys = ("errorNumber", "errorMessage")
        answer = await self.call("getVPPUserSrv", userId=5)
        self.assertEqual(
            answer, {"status": -1, "errorNumber": 9604, "errorMessage": "Result not found"}
        )

    async def test_fail_next_answers_first(self) -> None:
        self.fake.fail_next = [(503, b"busy", {"Retry-After": "2"}), (429, b"")]
        first = await self.post("getVPPUsersSrv", {"sToken": self.token})
        self.assertEqual((first.code, first.raw), (503, b"busy"))
        self.assertEqual((await self.post("getVPPUsersSrv", {"sToken": self.token})).code, 429)
        self.assertEqual((await self.post("getVPPUsersSrv", {"sToken": self.token})).code, 200)
        self.assertEqual([entry[1] for entry in self.fake.log[-3:]], ["getVPPUsersSrv"] * 3)

    async def test_primitives_as_strings_and_the_log(self) -> None:
        (user,) = self.fake.add_users(1)
        (lic,) = self.fake.add_licenses(1)
        await self.ok("associateVPPLicenseWithVPPUserSrv", userId=f"{user}", licenseId=f"{lic}")
        await self.ok("disassociateVPPLicenseFromVPPUserSrv", licenseId=lic)
        await self.ok("getVPPUserSrv", userId=str(user))
        await self.ok("getVPPUsersSrv", includeRetired="0")
        await self.ok("getVPPLicensesSrv", adamId="408709785", pricingParam="STDQ")
        await self.error(9602, "getVPPUserSrv", userId="1.0")
        await self.error(9602, "getVPPUserSrv", userId=1.5)
        await self.error(9602, "getVPPUserSrv", userId={"id": 1})
        path, service, params = self.fake.log[-1]
        self.assertEqual((path, service), (self.fake.service_path(service), "getVPPUserSrv"))
        self.assertEqual(params, {"userId": {"id": 1}, "sToken": self.token})

    async def test_null_fields_omitted(self) -> None:
        user = (await self.ok("registerVPPUserSrv", clientUserIdStr="n1"))["user"]
        self.assertNotIn("email", user)
        answer = await self.ok("VPPClientConfigSrv")
        self.assertEqual(answer, {"status": 0})  # no clientContext yet: no field at all
        self.assertNotIn(
            "licenses", (await self.ok("getVPPUserSrv", userId=user["userId"]))["user"]
        )

    async def test_client_config(self) -> None:
        answer = await self.ok("VPPClientConfigSrv", clientContext='{"mdm": "here"}')
        self.assertEqual(answer["clientContext"], '{"mdm": "here"}')
        self.assertEqual(self.fake.client_context, '{"mdm": "here"}')
        self.assertEqual((await self.ok("VPPClientConfigSrv"))["clientContext"], '{"mdm": "here"}')
        await self.error(9602, "VPPClientConfigSrv", clientContext="x" * 256)
        await self.ok("VPPClientConfigSrv", clientContext="x" * 255)
        self.assertNotIn("clientContext", await self.ok("VPPClientConfigSrv", clientContext=""))
        self.assertIsNone(self.fake.client_context)
        await self.error(9623, "VPPClientConfigSrv", apnToken="short")
        hex_token = "1c206fd1df78f675a50502dbf3a1373e96f434aebf41ea7953ae2f0d0e0f1011"
        await self.ok("VPPClientConfigSrv", apnToken=hex_token)
        await self.ok("VPPClientConfigSrv", apnToken="HCBv0d949nWlBQLb86E3Ppb0NK6/Qep5U64vDauQ6dU=")
        self.assertEqual(self.fake.apn_token, "HCBv0d949nWlBQLb86E3Ppb0NK6/Qep5U64vDauQ6dU=")
        await self.ok("VPPClientConfigSrv", apnToken="")
        self.assertIsNone(self.fake.apn_token)


class Lifecycle(TestCase):
    async def test_stoken_decodes_as_the_chapter_shows(self) -> None:
        fake = FakeVPP(Path(self.mktemp()), clock=time.time)
        blob = json.loads(base64.b64decode(fake.stoken("2014-08-15T18:13:52-0700", "ORG")))
        self.assertEqual(set(blob), {"token", "expDate", "orgName"})
        self.assertEqual((blob["expDate"], blob["orgName"]), ("2014-08-15T18:13:52-0700", "ORG"))
        self.assertRaises(ValueError, fake.stoken, "tomorrow")
        await fake.start()
        self.assertTrue(fake.url.startswith("https://127.0.0.1:"))
        await fake.stop()
        await fake.stop()
