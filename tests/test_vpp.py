"""The VPP client, sync and admin routes against the fake VPP service (tests/fakevpp.py):
service config first, batches and sinceModifiedToken, 9617 moves, 9621 alerts, tokenExpDate,
licenses associated and taken back, a crash mid-sync, registration with InviteToProgram."""

from __future__ import annotations

import base64
import datetime
import json
from pathlib import Path
from typing import Any

import treq
from twisted.internet import task
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import Agent, HTTPConnectionPool

from mdmappliance.app.reactor import global_reactor
from mdmappliance.core.periodic import timer_service
from mdmappliance.store import Store
from mdmappliance.vpp.client import LegacyVPPClient, VPPStopped
from mdmappliance.vpp.service import VPPRuntime
from mdmappliance.vpp.sync import VPPSync
from mdmappliance.vpp.token import STokenError, parse_stoken, store_stoken
from tests.fakevpp import FakeVPP
from tests.support import InProcessAppliance, query

reactor = global_reactor()


def apple_date(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S-0000")


class VPPCase(TestCase):
    timeout = 120

    def setUp(self) -> Any:
        self.dir = Path(self.mktemp()).absolute()
        self.dir.mkdir()
        self.fake = FakeVPP(self.dir / "fake")
        self.fake.batch_size = 100
        self.store = Store(self.dir / "vpp.db", reactor=reactor)
        self.store.startService()
        self.addCleanup(self.store.stopService)
        self.addCleanup(self.fake.stop)
        return Deferred.fromCoroutine(self.fake.start())

    def client(self, stoken: str | None = None) -> LegacyVPPClient:
        client = LegacyVPPClient.connect(
            parse_stoken((stoken or self.fake.stoken()).encode()),
            reactor,
            service_config_url=self.fake.service_config_url,
            ca_file=self.fake.ca_file,
        )
        self.addCleanup(client.close)
        return client

    def job(self, client: LegacyVPPClient | None = None) -> VPPSync:
        chosen = client or self.client()

        async def factory() -> LegacyVPPClient:
            return chosen

        return VPPSync(self.store, factory, reactor)

    def services(self) -> list[str]:
        return [service for _, service, _ in self.fake.log]

    def rows(self, table: str) -> int:
        return int(query(self.dir / "vpp.db", f"SELECT count(*) FROM {table}")[0][0])


class Sync(VPPCase):
    async def test_service_config_first_then_users_in_batches_then_only_changes(self) -> None:
        user_ids = self.fake.add_users(2500)
        self.fake.add_licenses(250)
        job = self.job()
        report = await job.run_once()
        self.assertEqual(self.services()[0], "VPPServiceConfigSrv", "service config first")
        self.assertEqual((report.users, report.licenses), (2500, 250), report)
        user_calls = [p for _, s, p in self.fake.log if s == "getVPPUsersSrv"]
        self.assertEqual(len(user_calls), 25)
        self.assertTrue(all("batchToken" in p for p in user_calls[1:]), "chained by batchToken")
        self.assertEqual(self.rows("vpp_users"), 2500)

        self.fake.touch_user(user_ids[7], email="now@example.com")
        before = len(self.fake.log)
        report = await job.run_once()
        calls = [p for _, s, p in self.fake.log[before:] if s == "getVPPUsersSrv"]
        self.assertEqual(len(calls), 1)
        self.assertEqual(set(calls[0]) - {"sToken"}, {"sinceModifiedToken"})
        self.assertEqual(report.users, 1, "only the change")
        self.assertNotIn("VPPServiceConfigSrv", self.services()[before:], "the URLs are kept")
        email = query(
            self.dir / "vpp.db", "SELECT email FROM vpp_users WHERE user_id = ?", user_ids[7]
        )
        self.assertEqual(email, [("now@example.com",)])

    async def test_a_moved_url_costs_one_service_config_then_the_new_urls(self) -> None:
        self.fake.add_users(3)
        job = self.job()
        await job.run_once()
        self.fake.move_next = True
        before = len(self.fake.log)
        report = await job.run_once()
        self.assertFalse(report.errors, report.errors)
        calls = self.services()[before:]
        self.assertEqual(calls.count("VPPServiceConfigSrv"), 1)
        paths = [path for path, _, _ in self.fake.log[before:]]
        self.assertTrue(paths[-1].startswith("/moved"), paths)

    async def test_an_expired_token_raises_the_alert_and_the_sync_stays_quiet(self) -> None:
        self.fake.expired = True
        job = self.job()
        report = await job.run_once()
        self.assertIn("9621", report.alert or "")
        self.assertIn("vpp token import", report.alert or "")
        state = await self.store.run(lambda tx: tx.vpp.state())
        self.assertIn("9621", state.alert or "")
        clock = task.Clock()
        timer = timer_service(job, 3600, clock, "vpp-sync")
        timer.startService()
        self.addCleanup(timer.stopService)
        await task.deferLater(reactor, 0.2, lambda: None)
        first = len(self.fake.log)
        for _ in range(59):
            clock.advance(60)
        await task.deferLater(reactor, 0.2, lambda: None)
        self.assertEqual(len(self.fake.log), first, "quiet until the next interval")
        with self.assertRaises(VPPStopped):
            await self.client().call("getVPPUserSrv", {"userId": 1})

    async def test_a_crash_mid_sync_resumes_without_loss(self) -> None:
        self.fake.add_users(550)

        class Crashing(LegacyVPPClient):
            batches = 0

            async def users(self, params: dict[str, Any]) -> dict[str, Any]:
                Crashing.batches += 1
                if Crashing.batches == 3:
                    raise SystemExit("the process died here")
                return await super().users(params)

        base = self.client()
        crashing = Crashing(
            base.token, service_config_url=self.fake.service_config_url, http=base.http
        )
        with self.assertRaises(SystemExit):
            await self.job(crashing).run_once()
        self.assertEqual(self.rows("vpp_users"), 200, "two batches and their token are durable")
        report = await self.job().run_once()
        self.assertEqual(report.users, 350, "resumed after the second batch")
        self.assertEqual(self.rows("vpp_users"), 550, "nothing lost or doubled")

    async def test_token_exp_date_reaches_health(self) -> None:
        soon = apple_date(datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=10))
        token_file = self.dir / "stoken"
        store_stoken(token_file, parse_stoken(self.fake.stoken(exp_date=soon).encode()))
        runtime = VPPRuntime(
            self.store,
            reactor,
            token_file=token_file,
            connect=lambda token: LegacyVPPClient.connect(
                token,
                reactor,
                service_config_url=self.fake.service_config_url,
                ca_file=self.fake.ca_file,
            ),
        )
        self.addCleanup(runtime.close)
        await runtime.sync_now()
        status = await runtime.status()
        self.assertEqual(status["token"]["token_exp_date"], soon)
        self.assertIn("expires", status["warning"])
        self.assertNotIn("alert", status)

    async def test_another_mdm_server_on_the_same_token_is_noticed(self) -> None:
        self.fake.client_context = "someone-else:1234"
        report = await self.job().run_once()
        self.assertEqual(report.shared_with, "someone-else:1234")
        self.assertEqual(self.fake.client_context, "someone-else:1234", "theirs is left alone")
        self.fake.client_context = None
        await self.job().run_once()
        self.assertTrue((self.fake.client_context or "").startswith("mdmappliance:"))


class Tokens(SynchronousTestCase):
    def test_the_spec_example_and_bad_files(self) -> None:
        blob = base64.b64encode(
            json.dumps(
                {"token": "t1Xo==", "expDate": "2014-08-15T18:13:52-0700", "orgName": "ORG"}
            ).encode()
        )
        token = parse_stoken(blob[:20] + b"\n" + blob[20:] + b"\n")
        self.assertEqual(token.org_name, "ORG")
        self.assertEqual(token.expiry().utcoffset(), datetime.timedelta(hours=-7))
        for bad in (
            b"",
            b"not base64!",
            base64.b64encode(b"[1]"),
            base64.b64encode(b'{"token": 1}'),
        ):
            with self.assertRaises(STokenError):
                parse_stoken(bad)


class AdminRoutes(TestCase):
    """Licenses and users through /v1/vpp on a running appliance."""

    timeout = 120

    def setUp(self) -> Any:
        return Deferred.fromCoroutine(self._set_up())

    async def _set_up(self) -> None:
        directory = Path(self.mktemp()).absolute()
        directory.mkdir()
        self.fake = FakeVPP(directory / "fake")
        await self.fake.start()
        self.addCleanup(self.fake.stop)
        self.appliance = InProcessAppliance(
            directory / "appliance",
            vpp={
                "service_config_url": self.fake.service_config_url,
                "ca_file": str(self.fake.ca_file),
            },
        )
        self.addCleanup(self.appliance.stop)
        config = self.appliance.config
        store_stoken(config.vpp.token_file, parse_stoken(self.fake.stoken().encode()))
        self.http = treq.client.HTTPClient(
            Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False))
        )

    async def api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        config = self.appliance.config
        headers: dict[bytes | str, bytes | str] = {
            "Authorization": f"Bearer {config.read_admin_api_key()}"
        }
        response = await self.http.request(
            method,
            config.admin_url() + path,
            headers=headers,
            **({"json": body} if body is not None else {}),
        )
        content = await response.content()
        return response.code, json.loads(content) if content else None

    async def test_a_license_is_associated_shown_and_taken_back(self) -> None:
        (user_id,) = self.fake.add_users(1)
        self.fake.associate_itunes(user_id)
        (license_id,) = self.fake.add_licenses(1)
        (book,) = self.fake.add_licenses(1, adam_id=1234, irrevocable=True)
        code, body = await self.api("POST", "/v1/vpp/sync")
        self.assertEqual((code, body.get("users"), body.get("licenses")), (200, 1, 2), body)

        code, body = await self.api(
            "POST", f"/v1/vpp/licenses/{license_id}/associate", {"user_id": user_id}
        )
        self.assertEqual(code, 200, body)
        code, body = await self.api("GET", f"/v1/vpp/licenses?user_id={user_id}")
        self.assertEqual([lic["license_id"] for lic in body["licenses"]], [license_id])
        self.assertEqual(self.fake.licenses[license_id].get("userId"), user_id)

        code, body = await self.api("POST", f"/v1/vpp/licenses/{license_id}/disassociate")
        self.assertEqual(code, 200, body)
        code, body = await self.api("GET", f"/v1/vpp/licenses?user_id={user_id}")
        self.assertEqual(body["licenses"], [])
        self.assertIsNone(self.fake.licenses[license_id].get("userId"))
        code, body = await self.api("POST", f"/v1/vpp/licenses/{license_id}/disassociate")
        self.assertEqual(code, 409, "9619: not associated")

        # A book's license cannot be taken back: refused here with the spec's reason.
        await self.api("POST", f"/v1/vpp/licenses/{book}/associate", {"user_id": user_id})
        await self.api("POST", "/v1/vpp/sync")
        code, body = await self.api("POST", f"/v1/vpp/licenses/{book}/disassociate")
        self.assertEqual(code, 409, body)
        self.assertIn("irrevocable", body["error"])
        self.assertEqual(self.fake.licenses[book].get("userId"), user_id)
        events = query(
            self.appliance.config.store.path,
            "SELECT kind FROM events WHERE kind LIKE 'vpp.license_%' ORDER BY id",
        )
        self.assertEqual(
            [k for (k,) in events],
            ["vpp.license_associated", "vpp.license_disassociated", "vpp.license_associated"],
        )

    async def test_register_invites_the_device_user_then_retire(self) -> None:
        device = self.appliance.device()
        self.addCleanup(device.close)
        await device.enroll()
        code, body = await self.api("POST", "/v1/vpp/users", {"udid": device.udid})
        self.assertEqual(code, 201, body)
        user = body["user"]
        self.assertEqual(user["status"], "Registered")
        self.assertEqual(user["clientUserIdStr"], f"mdmappliance-device-{device.udid}")
        offered = (await device.report("Idle")).plist()
        command = offered["Command"]
        self.assertEqual(command["RequestType"], "InviteToProgram")
        self.assertEqual(command["ProgramID"], "com.apple.cloudvpp")
        self.assertIn("inviteCode=", command["InvitationURL"])
        self.assertEqual(offered["CommandUUID"], body["invite_command_uuid"])
        code, body = await self.api("POST", f"/v1/vpp/users/{user['userId']}/retire")
        self.assertEqual(code, 200, body)
        code, body = await self.api("GET", "/v1/vpp/users")
        self.assertEqual(body["users"][0]["status"], "Retired")

    async def test_install_assigns_the_license_then_sends_install_application(self) -> None:
        device = self.appliance.device()
        self.addCleanup(device.close)
        await device.enroll()
        code, body = await self.api("POST", "/v1/vpp/users", {"udid": device.udid, "invite": False})
        self.assertEqual(code, 201, body)
        self.fake.associate_itunes(body["user"]["userId"])
        (license_id,) = self.fake.add_licenses(1, adam_id=361285480)
        code, body = await self.api(
            "POST", "/v1/vpp/install", {"udid": device.udid, "adam_id": 361285480}
        )
        self.assertEqual(code, 201, body)
        self.assertIsNotNone(self.fake.licenses[license_id].get("userId"), "the license first")
        offered = (await device.report("Idle")).plist()
        self.assertEqual(offered["CommandUUID"], body["command_uuid"])
        command = offered["Command"]
        self.assertEqual(
            (command["RequestType"], command["iTunesStoreID"], command["Options"]),
            ("InstallApplication", 361285480, {"PurchaseMethod": 1}),
        )

    async def test_no_token_and_bad_input(self) -> None:
        self.appliance.config.vpp.token_file.unlink()
        code, body = await self.api("POST", "/v1/vpp/sync")
        self.assertEqual(code, 409)
        self.assertIn("vpp token import", body["error"])
        code, body = await self.api("POST", "/v1/vpp/licenses/1/associate", {})
        self.assertEqual(code, 400)
        code, body = await self.api("POST", "/v1/vpp/users", {"udid": "NOPE", "bogus": 1})
        self.assertEqual(code, 400)


class BrokenToken(VPPCase):
    async def test_an_unreadable_stoken_file_is_an_alert_not_a_crash(self) -> None:
        token_file = self.dir / "stoken"
        token_file.write_text("not an sToken")
        runtime = VPPRuntime(
            self.store,
            reactor,
            token_file=token_file,
            connect=lambda token: self.client(),
        )
        report = await runtime.sync_now()
        self.assertIn("sToken", report.alert or "")
        status = await runtime.status()
        self.assertIn("alert", status)


class Robustness(VPPCase):
    """What a review found: each case once got a 500, a hang, or a stale alert."""

    async def test_a_wrong_ca_is_an_error_not_busy_and_no_crash(self) -> None:
        from mdmappliance import pki
        from mdmappliance.vpp.client import VPPBusy, VPPError

        other = self.dir / "other-ca.pem"
        other.write_bytes(pki.certificate_pem(pki.create_ca("not the fake's").certificate))
        client = LegacyVPPClient.connect(
            parse_stoken(self.fake.stoken().encode()),
            reactor,
            service_config_url=self.fake.service_config_url,
            ca_file=other,
        )
        self.addCleanup(client.close)
        with self.assertRaises(VPPError) as caught:
            await client.call("getVPPUsersSrv", {})
        self.assertNotIsInstance(caught.exception, VPPBusy)

    async def test_a_server_that_never_answers_times_out_as_busy(self) -> None:
        from twisted.internet.protocol import Protocol, ServerFactory

        from mdmappliance.vpp.client import VPPBusy

        silent: Any = ServerFactory.forProtocol(Protocol)  # accepts, never answers
        port: Any = reactor.listenTCP(0, silent, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        client = LegacyVPPClient.connect(
            parse_stoken(self.fake.stoken().encode()),
            reactor,
            service_config_url=f"https://127.0.0.1:{port.getHost().port}/VPPServiceConfigSrv",
            ca_file=self.fake.ca_file,
        )
        client.timeout = 0.5
        self.addCleanup(client.close)
        with self.assertRaises(VPPBusy):
            await client.call("getVPPUsersSrv", {})

    def test_retry_after_is_bounded(self) -> None:
        from mdmappliance.dep.client import bounded_retry_after

        self.assertEqual(
            [bounded_retry_after(v) for v in (b"inf", b"nan", b"1e12", b"-5", b"7", b"x", None)],
            [3600.0, None, 3600.0, 1.0, 7.0, None, None],
        )

    async def test_a_failing_client_context_does_not_stop_the_listing(self) -> None:
        self.fake.add_users(3)
        client = self.client()
        await client.service_config()
        self.fake.fail_next = [(200, b'{"status": -1, "ErrorCode": 9603, "errorMessage": "x"}')]
        report = await self.job(client).run_once()
        self.assertEqual(report.users, 3, report)

    async def test_a_new_token_clears_the_old_expiry_warning_and_alert(self) -> None:
        soon = apple_date(datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=10))
        token_file = self.dir / "stoken"
        store_stoken(token_file, parse_stoken(self.fake.stoken(exp_date=soon).encode()))

        def connect(token: Any) -> LegacyVPPClient:
            return LegacyVPPClient.connect(
                token, reactor, service_config_url=self.fake.service_config_url,
                ca_file=self.fake.ca_file,
            )  # fmt: skip

        runtime = VPPRuntime(self.store, reactor, token_file=token_file, connect=connect)
        self.addCleanup(runtime.close)
        await runtime.sync_now()
        self.assertIn("token_exp_date", (await runtime.status())["token"])
        await self.store.transaction(lambda tx: tx.vpp.save_state("t", alert="old alert"))
        later = apple_date(datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=300))
        store_stoken(token_file, parse_stoken(self.fake.stoken(exp_date=later).encode()))
        await runtime.sync_now()
        status = await runtime.status()
        self.assertNotIn("token_exp_date", status["token"])
        self.assertNotIn("alert", status)
        self.assertNotIn("warning", status)

    async def test_a_retire_without_a_user_keeps_what_is_known(self) -> None:
        user = {"userId": 5, "clientUserIdStr": "c-5", "email": "a@b", "status": "Associated"}
        await self.store.transaction(lambda tx: tx.vpp.upsert_user(user, "t"))
        await self.store.transaction(lambda tx: tx.vpp.set_user_status(5, "Retired", "t"))
        (row,) = await self.store.run(lambda tx: tx.vpp.users(0, 10))
        self.assertEqual(
            (row["status"], row["client_user_id"], row["email"]), ("Retired", "c-5", "a@b")
        )
