"""The DEP client and poller against the fake DEP service (tests/fakedep.py): session rules,
fetch then sync with cursors, cursor refusals, crashes between pages, the default profile,
and the server token's formats."""

from __future__ import annotations

import datetime
import json
import subprocess
import time
from pathlib import Path
from typing import Any, ClassVar

from twisted.internet import task
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase, TestCase

from mdmappliance import pki
from mdmappliance.app.reactor import global_reactor
from mdmappliance.core.periodic import timer_service
from mdmappliance.dep.client import DEPBusy, DEPClient, DEPStopped
from mdmappliance.dep.service import DEPRuntime
from mdmappliance.dep.sync import DEPSync
from mdmappliance.dep.token import (
    ServerToken,
    TokenError,
    make_keypair,
    parse_token_file,
    parse_token_json,
    store_token,
)
from tests.fakedep import FakeDEP
from tests.support import query

reactor = global_reactor()


class Clock:
    """The fake service's clock: real time plus what a test adds (OAuth timestamps stay
    within the service's five minutes)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


class DEPCase(TestCase):
    timeout = 120

    def setUp(self) -> Any:
        from mdmappliance.store import Store

        self.dir = Path(self.mktemp()).absolute()
        self.dir.mkdir()
        self.clock = Clock()
        self.fake = FakeDEP(self.dir / "fake", clock=self.clock)
        self.fake.require_department = False
        self.fake.require_support_phone = False
        self.token = ServerToken(**self.fake.token_json())
        self.store = Store(self.dir / "dep.db", reactor=reactor)
        self.store.startService()
        self.addCleanup(self.store.stopService)
        self.clients: list[DEPClient] = []
        self.addCleanup(self.fake.stop)
        return Deferred.fromCoroutine(self.fake.start())

    def client(self) -> DEPClient:
        client = DEPClient.connect(
            self.token,
            reactor,
            base_url=self.fake.url,
            ca_file=self.fake.ca_file,
            protocol_version=7,
        )
        self.clients.append(client)
        self.addCleanup(client.close)
        return client

    def job(self, client: DEPClient | None = None, **kw: Any) -> DEPSync:
        chosen = client or self.client()

        async def factory() -> DEPClient:
            return chosen

        return DEPSync(self.store, factory, reactor, **kw)

    def paths(self, path: str) -> list[int]:
        return [status for _, p, status in self.fake.log if p.split("?")[0] == path]

    def devices(self) -> dict[str, str]:
        rows = query(self.dir / "dep.db", "SELECT serial, state FROM dep_devices")
        return {serial: state for serial, state in rows}


class Sessions(DEPCase):
    async def test_a_rotated_session_is_adopted(self) -> None:
        self.fake.rotate_session_every = 1
        client = self.client()
        for _ in range(4):
            await client.account()
        self.assertEqual(self.fake.session_requests, 1, "one /session only")
        self.assertEqual(len(self.paths("/account")), 4)
        rotated = {tuple(h.get("x-adm-auth-session", [])) for h in self.fake.request_headers[-3:]}
        self.assertEqual(len(rotated), 3, "each call used the token the last answer rotated to")

    async def test_an_expired_session_costs_one_401_one_session_and_one_retry(self) -> None:
        self.fake.session_lifetime = 60
        client = self.client()
        await client.account()
        self.clock.offset += 120
        before = len(self.fake.log)
        await client.account()
        self.assertEqual(
            [(p, s) for _, p, s in self.fake.log[before:]],
            [("/account", 401), ("/session", 200), ("/account", 200)],
        )

    async def test_terms_not_signed_stops_with_an_alert_and_stays_quiet(self) -> None:
        self.fake.t_and_c_signed = False
        job = self.job()
        report = await job.run_once()
        self.assertIn("T_C_NOT_SIGNED", report.alert or "")
        self.assertIn("Terms and Conditions", report.alert or "")
        calls = len(self.fake.log)
        self.assertLessEqual(calls, 2, self.fake.log)  # /session and the refused call
        state = await self.store.run(lambda tx: tx.dep.sync_state())
        self.assertIn("T_C_NOT_SIGNED", state.alert or "")
        # Under its timer the poller asks again only at the next interval.
        clock = task.Clock()
        timer = timer_service(job, 1800, clock, "dep-sync")
        timer.startService()
        self.addCleanup(timer.stopService)
        await task.deferLater(reactor, 0.2, lambda: None)
        first = len(self.fake.log)
        for _ in range(29):
            clock.advance(60)
        await task.deferLater(reactor, 0.2, lambda: None)
        self.assertEqual(len(self.fake.log), first, "quiet until the next interval")

    async def test_busy_apple_is_asked_again_only_after_retry_after(self) -> None:
        self.fake.add_devices(5)
        clock = task.Clock()
        clock.advance(1000)
        client = self.client()

        async def factory() -> DEPClient:
            return client

        job = DEPSync(self.store, factory, clock)
        await client.account()  # the session first, so the 503 is the fetch's
        self.fake.fail_next = [(503, "", {"Retry-After": "120"})]
        report = await job.run_once()
        self.assertIn("retry after 120", " ".join(report.errors))
        calls = len(self.fake.log)
        clock.advance(60)
        report = await job.run_once()
        self.assertEqual(len(self.fake.log), calls, "nothing asked before Retry-After")
        clock.advance(61)
        report = await job.run_once()
        self.assertEqual(report.fetched, 5)

    async def test_a_retry_after_that_is_no_number_waits_the_default(self) -> None:
        self.fake.fail_next = [(503, "", {"Retry-After": "nan"})]
        with self.assertRaises(DEPBusy) as caught:
            await self.client().account()
        self.assertEqual(caught.exception.retry_after, 60.0)

    async def test_a_busy_session_endpoint_is_busy_not_a_refused_token(self) -> None:
        self.fake.fail_next = [(503, "", {"Retry-After": "9"})]
        with self.assertRaises(DEPBusy) as caught:
            await self.client().account()
        self.assertEqual(caught.exception.retry_after, 9)

    async def test_a_refused_token_stops_the_poller(self) -> None:
        self.token = ServerToken(**{**self.fake.token_json(), "access_secret": "AS_wrong"})
        with self.assertRaises(DEPStopped):
            await self.client().account()
        report = await self.job().run_once()
        self.assertIn("token", report.alert or "")


class FetchAndSync(DEPCase):
    async def test_first_fetch_pages_then_sync_applies_changes_without_a_refetch(self) -> None:
        serials = self.fake.add_devices(2500)
        job = self.job(page_size=1000)
        report = await job.run_once()
        self.assertEqual(report.fetched, 2500)
        self.assertEqual(len(self.paths("/server/devices")), 3)
        self.assertEqual(len(self.devices()), 2500)
        state = await self.store.run(lambda tx: tx.dep.sync_state())
        self.assertEqual(state.phase, "sync")

        added = self.fake.add_devices(3, prefix="NEW")
        self.fake.modify(serials[0], description="now with a new name")
        self.fake.remove(serials[1])
        self.fake.modify(serials[2], profile_status="removed")  # moved to another server
        fetches = len(self.paths("/server/devices"))
        report = await job.run_once()
        self.assertEqual(len(self.paths("/server/devices")), fetches, "no refetch")
        self.assertEqual((report.added, report.deleted, report.moved), (3, 1, 1))
        self.assertGreaterEqual(report.modified, 1)
        found = self.devices()
        self.assertEqual(len(found), 2503)
        self.assertEqual(found[serials[1]], "deleted")
        self.assertEqual(found[serials[2]], "moved")
        self.assertTrue(all(found[s] == "assigned" for s in added))
        description = query(
            self.dir / "dep.db", "SELECT description FROM dep_devices WHERE serial = ?", serials[0]
        )
        self.assertEqual(description, [("now with a new name",)])

    async def test_duplicates_across_pages_apply_once_in_op_date_order(self) -> None:
        serials = self.fake.add_devices(5)
        job = self.job(page_size=2)
        await job.run_once()
        for n in range(3):
            self.fake.modify(serials[0], description=f"edit {n}")
        report = await job.run_once()
        self.assertGreaterEqual(report.modified + report.ignored, 3)
        description = query(
            self.dir / "dep.db", "SELECT description FROM dep_devices WHERE serial = ?", serials[0]
        )
        self.assertEqual(description, [("edit 2",)], "the newest change wins")

    async def test_an_expired_cursor_causes_exactly_one_fetch_from_scratch(self) -> None:
        self.fake.add_devices(2500)
        self.fake.cursor_lifetime = 60
        job = self.job(page_size=1000)
        await job.run_once()
        self.clock.offset += 120
        fetches = len(self.paths("/server/devices"))
        report = await job.run_once()
        self.assertTrue(report.refetched)
        self.assertEqual(self.paths("/devices/sync").count(400), 1)
        self.assertEqual(len(self.paths("/server/devices")) - fetches, 3, "one full fetch")
        self.assertEqual(len(self.devices()), 2500, "nothing doubled")

    async def test_a_crash_between_pages_resumes_from_the_saved_cursor(self) -> None:
        self.fake.add_devices(2500)

        class Crashing(DEPClient):
            pages = 0

            async def fetch_devices(self, cursor: str | None, limit: int) -> dict[str, Any]:
                Crashing.pages += 1
                if Crashing.pages == 2:
                    raise SystemExit("the process died here")
                return await super().fetch_devices(cursor, limit)

        crashing = Crashing(
            self.token,
            base_url=self.fake.url,
            http=self.client().http,
            protocol_version=7,
        )
        with self.assertRaises(SystemExit):
            await self.job(crashing, page_size=1000).run_once()
        self.assertEqual(len(self.devices()), 1000, "the first page and its cursor are durable")
        first_cursor = (await self.store.run(lambda tx: tx.dep.sync_state())).cursor
        # After the restart: a new store connection, a new client.
        await self.store.stopService()
        from mdmappliance.store import Store

        self.store = Store(self.dir / "dep.db", reactor=reactor)
        self.store.startService()
        self.addCleanup(self.store.stopService)
        report = await self.job(page_size=1000).run_once()
        self.assertEqual(report.fetched, 1500, "resumed after the first page")
        self.assertEqual(len(self.devices()), 2500, "no device lost or doubled")
        self.assertIsNotNone(first_cursor)

    async def test_default_profile_goes_to_new_and_synced_devices_without_one(self) -> None:
        serials = self.fake.add_devices(30)
        profile_file = self.dir / "default-profile.json"
        profile_file.write_text(
            json.dumps({"profile_name": "Everyone", "is_supervised": True, "department": "IT"})
        )
        token_file = self.dir / "token.json"
        store_token(token_file, self.token)
        ca = pki.create_ca("appliance CA")
        runtime = DEPRuntime(
            self.store,
            reactor,
            token_file=token_file,
            connect=lambda token: self.client(),
            page_size=10,
            default_profile=profile_file,
            enroll_url="https://mdm.example.com/dep/enroll",
            anchors=(ca.certificate,),
        )
        report = await runtime.sync_now()
        self.assertEqual(report.assigned, 30, report)
        (profile,) = self.fake.profiles.values()
        self.assertEqual(profile["url"], "https://mdm.example.com/dep/enroll")
        self.assertEqual(len(profile["anchor_certs"]), 1, "the private CA is an anchor")
        self.assertTrue(all(self.fake.devices[s]["profile_status"] == "assigned" for s in serials))
        # A device that comes with no profile later, or loses its profile, gets it too.
        new = self.fake.add_devices(2, prefix="LATE")
        report = await runtime.sync_now()
        self.assertEqual(report.assigned, 2)
        self.assertEqual(len(self.fake.profiles), 1, "the unchanged default is not defined again")
        self.assertTrue(all(self.fake.devices[s]["profile_status"] == "assigned" for s in new))
        status = await runtime.status()
        self.assertEqual(status["devices"], {"assigned": 32})
        self.assertNotIn("alert", status)


class Tokens(SynchronousTestCase):
    FIVE: ClassVar[dict[str, str]] = {
        "consumer_key": "CK_1",
        "consumer_secret": "CS_2",
        "access_token": "AT_3",
        "access_secret": "AS_4",
        "access_token_expiry": "2030-09-09T02:24:28Z",
    }

    def test_the_seed_json(self) -> None:
        token = parse_token_json(json.dumps(self.FIVE).encode())
        self.assertEqual(token.consumer_key, "CK_1")
        self.assertGreater(token.days_left(), 0)

    def test_an_expiry_without_a_zone_is_utc(self) -> None:
        token = parse_token_json(
            json.dumps({**self.FIVE, "access_token_expiry": "2030-01-01"}).encode()
        )
        self.assertGreater(token.days_left(), 0)
        self.assertEqual(token.expiry().utcoffset(), datetime.timedelta(0))

    def test_missing_or_bad_fields(self) -> None:
        for broken in (
            {k: v for k, v in self.FIVE.items() if k != "access_secret"},
            {**self.FIVE, "access_token": 5},
            {**self.FIVE, "access_token_expiry": "next tuesday"},
            {**self.FIVE, "consumer_key": "two words"},
        ):
            with self.assertRaises(TokenError):
                parse_token_json(json.dumps(broken).encode())
        for garbage in (b"", b"[]", b"\xff\xfe", b"{not json"):
            with self.assertRaises(TokenError):
                parse_token_json(garbage)

    def test_the_portal_p7m_made_by_openssl_in_aes_and_3des(self) -> None:
        directory = Path(self.mktemp()).absolute()
        directory.mkdir()
        cert = make_keypair(directory / "dep.key", directory / "dep.pem", "mdmappliance test")
        self.assertEqual((directory / "dep.key").stat().st_mode & 0o777, 0o600)
        key = pki.read_private_key(directory / "dep.key")
        inner = (
            b"Content-Type: text/plain;charset=UTF8\r\nContent-Transfer-Encoding: 7bit\r\n\r\n"
            b"-----BEGIN MESSAGE-----\r\n" + json.dumps(self.FIVE).encode() + b"\r\n"
            b"-----END MESSAGE-----\r\n"
        )
        (directory / "inner.txt").write_bytes(inner)
        for cipher in ("-aes256", "-aes128", "-des3"):
            out = directory / f"token{cipher}.p7m"
            inner_path, cert_path = str(directory / "inner.txt"), str(directory / "dep.pem")
            done = subprocess.run(
                ["openssl", "smime", "-encrypt", cipher, "-binary", "-in", inner_path,
                 "-out", str(out), cert_path],
                capture_output=True, text=True, timeout=30,
            )  # fmt: skip
            self.assertEqual(done.returncode, 0, done.stderr)
            token = parse_token_file(out.read_bytes(), key, cert)
            self.assertEqual(token.access_secret, "AS_4", cipher)
        other = make_keypair(directory / "other.key", directory / "other.pem", "someone else")
        with self.assertRaises(TokenError) as caught:
            parse_token_file(
                (directory / "token-aes256.p7m").read_bytes(),
                pki.read_private_key(directory / "other.key"),
                other,
            )
        self.assertIn("does not decrypt", str(caught.exception))
        with self.assertRaises(TokenError):
            parse_token_file(b"MIME-Version: 1.0\n\n!!!not base64!!!", key, cert)


class Services(DEPCase):
    async def test_define_fetch_assign_remove_details_and_disown(self) -> None:
        serials = self.fake.add_devices(3)
        client = self.client()
        defined = await client.define_profile(
            {"profile_name": "Lab", "url": "https://mdm.example.com/dep/enroll", "devices": []}
        )
        profile_uuid = defined["profile_uuid"]
        fetched = await client.fetch_profile(profile_uuid)
        self.assertEqual(fetched["profile_name"], "Lab")
        assigned = await client.assign_profile(profile_uuid, serials[:2])
        self.assertEqual(assigned["devices"], {s: "SUCCESS" for s in serials[:2]})
        details = await client.device_details(serials[:1])
        self.assertEqual(details["devices"][serials[0]]["profile_uuid"], profile_uuid)
        removed = await client.remove_profile(serials[:1])
        self.assertEqual(removed["devices"], {serials[0]: "SUCCESS"})
        self.assertEqual(self.fake.devices[serials[0]]["profile_status"], "removed")
        disowned = await client.disown(serials[2:])
        self.assertEqual(disowned["devices"], {serials[2]: "SUCCESS"})
        account = await client.account()
        self.assertIn("server_name", account)
