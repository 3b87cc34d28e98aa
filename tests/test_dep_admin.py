"""DEP through the admin API and the command line, against the fake DEP service: the sync
now, the device table, /v1/health, profiles, disown, the account, read-only keys, and the
offline `dep keypair` / `dep token import` commands."""

from __future__ import annotations

import base64
import contextlib
import datetime
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, cast

import treq
from cryptography.hazmat.primitives.serialization import Encoding
from twisted.application.internet import TimerService
from twisted.internet.defer import Deferred
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import Agent, HTTPConnectionPool

from mdmappliance import pki
from mdmappliance.app.reactor import global_reactor
from mdmappliance.dep.sync import DEPSync
from mdmappliance.dep.token import ServerToken, read_token, store_token
from tests.fakedep import FakeDEP, iso8601
from tests.support import InProcessAppliance, make_installation, query, run_cli, subprocess_env

reactor = global_reactor()
READ_KEY = "r" * 40


def in_days(days: float) -> str:
    """An access_token_expiry ``days`` from now, as Apple writes it."""
    now = datetime.datetime.now(datetime.UTC).timestamp()
    return iso8601(now + days * 86400)


class DEPAdminCase(TestCase):
    """One appliance on the fake DEP service, with no server token yet, and a read-only key."""

    timeout = 60

    def setUp(self) -> Any:
        return Deferred.fromCoroutine(self._set_up())

    async def _set_up(self) -> None:
        directory = Path(self.mktemp()).absolute()
        directory.mkdir()
        self.fake = FakeDEP(directory / "fake")
        self.fake.require_department = False
        self.fake.require_support_phone = False
        await self.fake.start()
        self.addCleanup(self.fake.stop)
        keys = directory / "keys"
        keys.mkdir()
        (keys / "monitor").write_text(READ_KEY + "\n")
        (keys / "monitor").chmod(0o600)
        self.appliance = InProcessAppliance(
            directory / "appliance",
            dep={"base_url": self.fake.url, "ca_file": str(self.fake.ca_file)},
            admin={"extra_keys": [f"monitor:read:{keys / 'monitor'}"]},
        )
        self.addCleanup(self.appliance.stop)  # which closes the DEP client's connections too
        self.config = self.appliance.config
        self.url = self.config.admin_url()
        self.key = self.config.read_admin_api_key()
        self.http = treq.client.HTTPClient(
            Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False))
        )

    def sync_job(self) -> DEPSync:
        """The appliance's own DEP sync job (what its timer runs)."""
        timer = cast(TimerService, self.appliance.service.getServiceNamed("dep-sync"))
        return cast(DEPSync, timer.call[0])

    def import_token(self, expiry: str = "2030-01-01T00:00:00Z") -> None:
        """What `dep token import` leaves on disk; the runtime reads it at its next call."""
        store_token(self.config.dep.token_file, ServerToken(**self.fake.token_json(expiry)))

    async def api(
        self, method: str, path: str, body: Any = None, key: str | None = None
    ) -> tuple[int, Any, Any]:
        """Status, headers and JSON body of one admin API call."""
        headers: dict[bytes | str, bytes | str] = {"Authorization": f"Bearer {key or self.key}"}
        response = await self.http.request(method, self.url + path, json=body, headers=headers)
        content = await response.content()
        return response.code, response.headers, json.loads(content) if content else None

    async def synced(self, devices: int) -> list[str]:
        """``devices`` new devices on the fake, a token, and one sync that fetched them."""
        serials = self.fake.add_devices(devices)
        self.import_token()
        code, _, body = await self.api("POST", "/v1/dep/sync")
        self.assertEqual((code, body.get("fetched")), (200, devices), body)
        return serials

    async def events(self, kind: str) -> list[dict[str, Any]]:
        code, _, body = await self.api("GET", "/v1/events?limit=1000")
        self.assertEqual(code, 200)
        return [e for e in body["events"] if e["kind"] == kind]

    def sent(self, method: str, path: str) -> int:
        """How many such requests reached the fake."""
        return sum(1 for m, p, _ in self.fake.log if (m, p) == (method, path))


class SyncAndDevices(DEPAdminCase):
    async def test_no_token_is_409_naming_the_command(self) -> None:
        """An appliance without a token says what to run, in one line, and calls nobody."""
        for method, path in (("POST", "/v1/dep/sync"), ("GET", "/v1/dep/account")):
            code, _, body = await self.api(method, path)
            self.assertEqual(code, 409, body)
            self.assertIn("dep token import", body["error"])
            self.assertNotIn("\n", body["error"])
        self.assertEqual(self.fake.log, [])

    async def test_sync_then_page_the_devices_and_read_one(self) -> None:
        """150 devices come in one sync; the table pages 100 then 50 and each is readable."""
        serials = await self.synced(150)
        code, _, first = await self.api("GET", "/v1/dep/devices?limit=100")
        self.assertEqual((code, len(first["devices"])), (200, 100))
        self.assertEqual(first["next"], first["devices"][-1]["serial"])
        code, _, rest = await self.api("GET", f"/v1/dep/devices?limit=100&after={first['next']}")
        self.assertEqual((code, len(rest["devices"])), (200, 50))
        self.assertNotIn("next", rest)
        listed = [d["serial"] for d in first["devices"] + rest["devices"]]
        self.assertEqual(listed, sorted(serials))
        self.assertEqual({d["state"] for d in first["devices"] + rest["devices"]}, {"assigned"})

        code, _, device = await self.api("GET", f"/v1/dep/devices/{serials[7]}")
        self.assertEqual(code, 200)
        fake = self.fake.devices[serials[7]]
        self.assertEqual(
            (device["serial"], device["state"], device["model"], device["profile_status"]),
            (serials[7], "assigned", fake["model"], "empty"),
        )
        for unknown in ("C02NOSUCH0000", "C02%27%3B--", "C02%20X", "..", "A" * 65, "C02-1"):
            code, _, body = await self.api("GET", f"/v1/dep/devices/{unknown}")
            self.assertEqual(code, 404, unknown)
            self.assertIn("no DEP device", body["error"])

        (synced,) = await self.events("dep.synced")
        self.assertEqual((synced["actor"], synced["detail"]["fetched"]), ("dep-sync", 150))

    async def test_a_second_sync_while_one_runs_is_409(self) -> None:
        """A sync asked for while the timer's runs is told to try again, and none is doubled."""
        self.fake.add_devices(5)
        self.import_token()
        running = Deferred.fromCoroutine(self.sync_job().run_once())  # running until it awaits
        code, _, body = await self.api("POST", "/v1/dep/sync")
        self.assertEqual(code, 409, body)
        self.assertIn("running", body["error"])
        self.assertEqual((await running).fetched, 5)
        self.assertEqual(len(await self.events("dep.synced")), 1)

    async def test_a_read_only_key_reads_but_cannot_sync(self) -> None:
        """A monitoring key sees the table but cannot start a sync (nor reach Apple)."""
        await self.synced(3)
        calls = len(self.fake.log)
        code, _, body = await self.api("POST", "/v1/dep/sync", key=READ_KEY)
        self.assertEqual(code, 403, body)
        self.assertIn("read-only", body["error"])
        code, _, _ = await self.api("GET", "/v1/dep/devices", key=READ_KEY)
        self.assertEqual(code, 200)
        self.assertEqual(len(self.fake.log), calls)
        self.assertEqual(len(await self.events("dep.synced")), 1)


class Refusals(DEPAdminCase):
    async def test_a_corrupt_token_file_is_a_409_in_json(self) -> None:
        self.config.dep.token_file.parent.mkdir(parents=True, exist_ok=True)
        self.config.dep.token_file.write_text("{not json")
        for method, path in (("POST", "/v1/dep/sync"), ("GET", "/v1/dep/account")):
            code, _, body = await self.api(method, path)
            self.assertEqual(code, 409, body)
            self.assertIn("token", body["error"])

    async def test_apple_busy_during_a_sync_is_503_with_retry_after(self) -> None:
        self.import_token()
        self.fake.fail_next = [(503, "", {"Retry-After": "7"})]
        code, headers, body = await self.api("POST", "/v1/dep/sync")
        self.assertEqual(code, 503, body)
        self.assertEqual(headers.getRawHeaders("retry-after"), ["7"])
        sent = len(self.fake.log)
        code, headers, body = await self.api("POST", "/v1/dep/sync")
        self.assertEqual(code, 503, "still inside Retry-After")
        self.assertEqual(len(self.fake.log), sent, "and Apple is not asked")

    async def test_an_apple_failure_during_a_sync_is_502_in_words(self) -> None:
        self.fake.add_devices(2)
        self.import_token()
        code, _, body = await self.api("GET", "/v1/dep/account")  # the session first
        self.assertEqual(code, 200, body)
        self.fake.fail_next = [(500, "INTERNAL_ERROR", {})]
        code, _, body = await self.api("POST", "/v1/dep/sync")
        self.assertEqual(code, 502, body)
        self.assertIn("INTERNAL_ERROR", body["error"])

    async def test_a_default_profile_defined_over_the_api_reaches_new_devices(self) -> None:
        self.import_token()
        code, _, body = await self.api(
            "POST",
            "/v1/dep/profiles",
            {"profile": {"profile_name": "API default"}, "default": True},
        )
        self.assertEqual(code, 201, body)
        serials = self.fake.add_devices(3)
        code, _, body = await self.api("POST", "/v1/dep/sync")
        self.assertEqual((code, body.get("assigned")), (200, 3), body)
        self.assertTrue(all(self.fake.devices[s]["profile_status"] == "assigned" for s in serials))
        (defined,) = await self.events("dep.profile_defined")
        self.assertEqual(defined["actor"], "api:admin")


class Health(DEPAdminCase):
    async def test_expiry_warning_then_terms_not_signed_degrades_until_accepted(self) -> None:
        """Health shows the token's expiry, warns near it (still 200), and goes 503 while
        Apple refuses the sync for unsigned terms."""
        code, _, body = await self.api("GET", "/v1/health")
        self.assertEqual((code, body["dep"]), (200, {"enabled": True, "token": None}))

        await self.synced(2)
        code, _, body = await self.api("GET", "/v1/health")
        self.assertEqual((code, body["status"]), (200, "ok"), body)
        self.assertEqual(body["dep"]["token"], {"access_token_expiry": "2030-01-01T00:00:00Z"})
        self.assertNotIn("warning", body["dep"])
        self.assertEqual(body["dep"]["devices"], {"assigned": 2})
        self.assertIsNotNone(body["dep"]["sync"]["last_success_at"])

        soon = in_days(10)
        self.import_token(soon)
        code, _, body = await self.api("GET", "/v1/health")
        self.assertEqual((code, body["status"]), (200, "ok"), body)
        self.assertEqual(body["dep"]["token"]["access_token_expiry"], soon)
        self.assertIn("expires in 10 days", body["dep"]["warning"])

        self.fake.t_and_c_signed = False
        code, _, body = await self.api("POST", "/v1/dep/sync")
        self.assertEqual(code, 502, body)
        self.assertIn("T_C_NOT_SIGNED", body["alert"])
        code, _, body = await self.api("GET", "/v1/health")
        self.assertEqual((code, body["status"]), (503, "degraded"), body)
        self.assertIn("T_C_NOT_SIGNED", body["dep"]["alert"])
        self.assertIn("Apple Business Manager", body["dep"]["alert"])

        self.fake.t_and_c_signed = True
        code, _, body = await self.api("POST", "/v1/dep/sync")
        self.assertEqual(code, 200, body)
        code, _, body = await self.api("GET", "/v1/health")
        self.assertEqual((code, body["status"]), (200, "ok"), body)
        self.assertNotIn("alert", body["dep"])

    async def test_an_expired_token_is_an_alert(self) -> None:
        """A token past its expiry stops every DEP call: health says so loudly."""
        self.import_token(in_days(-1))
        code, _, body = await self.api("GET", "/v1/health")
        self.assertEqual((code, body["status"]), (503, "degraded"), body)
        self.assertIn("expired", body["dep"]["alert"])


GOOD_PROFILE = {
    "profile_name": "Corp",
    "is_supervised": True,
    "is_mdm_removable": False,
    "skip_setup_items": ["Siri", "Privacy"],
    "department": "IT",
}


class Profiles(DEPAdminCase):
    async def test_bad_profiles_are_400_naming_the_key_and_reach_nobody(self) -> None:
        """Apple would refuse these after a round trip (or take one that cannot work)."""
        self.import_token()
        cases: list[tuple[dict[str, Any], str]] = [
            ({"profile": {"profile_name": "x", "colour": "red"}}, "'colour'"),
            ({"profile": {"profile_name": "x", "url": "http://mdm.example.com/e"}}, "url"),
            ({"profile": {"profile_name": "x", "skip_setup_items": ["Nope"]}}, "skip_setup_items"),
            ({"profile": {"profile_name": "x", "is_supervised": "yes"}}, "is_supervised"),
            ({"profile": {"is_supervised": True}}, "profile_name"),
            ({"profile": ["profile_name"]}, "profile:"),
            ({"profile": GOOD_PROFILE, "default": "yes"}, "default"),
            ({"profile": GOOD_PROFILE, "extra": 1}, "extra: unknown field"),
        ]
        for body, named in cases:
            code, _, answer = await self.api("POST", "/v1/dep/profiles", body)
            self.assertEqual(code, 400, body)
            self.assertTrue(any(named in e for e in answer["errors"]), (named, answer))
        self.assertEqual(self.fake.profiles, {})
        self.assertEqual(self.sent("POST", "/profile"), 0)
        code, _, listed = await self.api("GET", "/v1/dep/profiles")
        self.assertEqual((code, listed), (200, {"profiles": []}))

    async def test_define_a_default_profile_then_assign_it(self) -> None:
        """The profile goes to Apple with this appliance's ConfigurationURL and CA, is listed
        as the default, and assigning it maps the devices at Apple and here."""
        serials = await self.synced(3)
        code, _, answer = await self.api(
            "POST", "/v1/dep/profiles", {"profile": GOOD_PROFILE, "default": True}
        )
        self.assertEqual(code, 201, answer)
        profile_uuid = answer["profile_uuid"]
        at_apple = self.fake.profiles[profile_uuid]
        self.assertEqual(at_apple["url"], self.config.dep_enroll_url())
        self.assertEqual(at_apple["skip_setup_items"], ["Siri", "Privacy"])
        ca_der = pki.read_certificate(self.config.pki.ca_cert).public_bytes(Encoding.DER)
        self.assertIn(base64.b64encode(ca_der).decode(), at_apple["anchor_certs"])

        code, _, listed = await self.api("GET", "/v1/dep/profiles")
        self.assertEqual(code, 200)
        (profile,) = listed["profiles"]
        self.assertEqual((profile["profile_uuid"], profile["default"]), (profile_uuid, True))
        self.assertEqual(profile["name"], "Corp")

        path = f"/v1/dep/profiles/{profile_uuid}/devices"
        code, _, answer = await self.api("PUT", path, {"devices": serials[:2]})
        self.assertEqual(code, 200, answer)
        self.assertEqual(answer["devices"], dict.fromkeys(serials[:2], "SUCCESS"))
        for serial in serials[:2]:
            self.assertEqual(self.fake.devices[serial]["profile_status"], "assigned")
            self.assertEqual(self.fake.devices[serial]["profile_uuid"], profile_uuid)
            code, _, device = await self.api("GET", f"/v1/dep/devices/{serial}")
            self.assertEqual(
                (device["profile_uuid"], device["profile_status"]), (profile_uuid, "assigned")
            )
        self.assertEqual(self.fake.devices[serials[2]]["profile_status"], "empty")
        (assigned,) = await self.events("dep.profile_assigned")
        self.assertEqual((assigned["actor"], assigned["subject"]), ("api:admin", profile_uuid))

        puts = self.sent("PUT", "/profile/devices")
        bad: tuple[dict[str, Any], ...] = (
            {"devices": ["C02 0001"]},
            {"devices": []},
            {"devices": serials[0]},
            {"devices": [1]},
            {"devices": [f"C02{n:09d}" for n in range(1001)]},
            {"devices": serials[:1], "profile_uuid": profile_uuid},
            {},
        )
        for body in bad:
            code, _, answer = await self.api("PUT", path, body)
            self.assertEqual(code, 400, body)
            self.assertTrue(answer["errors"], body)
        code, _, answer = await self.api(
            "PUT", "/v1/dep/profiles/not_a_uuid!/devices", {"devices": serials[:1]}
        )
        self.assertEqual(code, 400, answer)
        self.assertIn("profile_uuid", answer["errors"][0])
        self.assertEqual(self.sent("PUT", "/profile/devices"), puts)

        code, _, answer = await self.api(
            "PUT", "/v1/dep/profiles/0000AAAA/devices", {"devices": serials[:1]}
        )
        self.assertEqual(code, 502, answer)
        self.assertIn("PROFILE_NOT_FOUND", answer["error"])


class Disown(DEPAdminCase):
    async def test_disown_needs_the_confirmation_then_the_device_is_deleted(self) -> None:
        """Disowning is for good at Apple: it takes the explicit word, then the table says
        deleted (and a later sync keeps it so)."""
        serials = await self.synced(3)
        for body in (
            {"devices": serials[:1]},
            {"devices": serials[:1], "confirm": "yes"},
            {"devices": serials[:1], "confirm": True},
        ):
            code, _, answer = await self.api("POST", "/v1/dep/disown", body)
            self.assertEqual(code, 400, body)
            self.assertTrue(any(e.startswith("confirm:") for e in answer["errors"]), answer)
        code, _, answer = await self.api("POST", "/v1/dep/disown", {"devices": ["bad!"]})
        self.assertEqual(code, 400, answer)
        self.assertEqual(self.fake.disowned, [])
        self.assertEqual(self.sent("POST", "/devices/disown"), 0)

        code, _, answer = await self.api(
            "POST", "/v1/dep/disown", {"devices": serials[:1], "confirm": "disown"}
        )
        self.assertEqual(code, 200, answer)
        self.assertEqual(answer["devices"], {serials[0]: "SUCCESS"})
        self.assertEqual(self.fake.disowned, serials[:1])
        code, _, device = await self.api("GET", f"/v1/dep/devices/{serials[0]}")
        self.assertEqual((code, device["state"]), (200, "deleted"))
        code, _, other = await self.api("GET", f"/v1/dep/devices/{serials[1]}")
        self.assertEqual(other["state"], "assigned")
        (event,) = await self.events("dep.disowned")
        self.assertEqual(event["actor"], "api:admin")
        self.assertEqual(event["detail"]["results"], {serials[0]: "SUCCESS"})

        code, _, _ = await self.api("POST", "/v1/dep/sync")
        self.assertEqual(code, 200)
        code, _, device = await self.api("GET", f"/v1/dep/devices/{serials[0]}")
        self.assertEqual(device["state"], "deleted")


class Account(DEPAdminCase):
    async def test_account_then_apple_busy_is_503_with_retry_after(self) -> None:
        """Apple's account as Apple sends it; Apple busy passes its Retry-After on."""
        self.import_token()
        code, _, body = await self.api("GET", "/v1/dep/account")
        self.assertEqual((code, body), (200, self.fake.account))

        self.fake.fail_next = [(503, "", {"Retry-After": "7"})]
        code, headers, body = await self.api("GET", "/v1/dep/account")
        self.assertEqual(code, 503, body)
        self.assertEqual(headers.getRawHeaders("retry-after"), ["7"])
        self.assertIn("7", body["error"])

        self.fake.fail_next = [(429, "", {})]
        code, headers, _ = await self.api("GET", "/v1/dep/account")
        self.assertEqual(code, 503)
        self.assertEqual(headers.getRawHeaders("retry-after"), ["60"])

        self.fake.fail_next = [(500, "INTERNAL_ERROR", {})]
        code, headers, body = await self.api("GET", "/v1/dep/account")
        self.assertEqual(code, 502, body)
        self.assertIn("INTERNAL_ERROR", body["error"])
        self.assertIsNone(headers.getRawHeaders("retry-after"))

        code, _, body = await self.api("GET", "/v1/dep/account")
        self.assertEqual((code, body), (200, self.fake.account))


class SyncCommand(DEPAdminCase):
    async def cli(self, *args: str) -> tuple[str, str, int]:
        """The command in a child process while this reactor serves the admin API."""
        out, err, code = await getProcessOutputAndValue(
            sys.executable,
            ["-m", "mdmappliance", *args, "--config", str(self.config.path)],
            env=subprocess_env(),
        )
        return out.decode(), err.decode(), code

    async def test_dep_sync_prints_the_json_report(self) -> None:
        """`dep sync --json` is the API's report, one JSON line; without a token, one line
        saying what to run."""
        out, err, code = await self.cli("dep", "sync", "--json")
        self.assertNotEqual(code, 0)
        self.assertEqual(len(err.strip().splitlines()), 1, err)
        self.assertIn("dep token import", err)
        self.assertNotIn("Traceback", err)

        self.fake.add_devices(4)
        self.import_token()
        out, err, code = await self.cli("dep", "sync", "--json")
        self.assertEqual(code, 0, err)
        self.assertEqual(len(out.strip().splitlines()), 1, out)
        self.assertEqual(json.loads(out), {"fetched": 4, "pages": 1, "errors": []})
        out, err, code = await self.cli("dep", "devices", "--json")
        self.assertEqual(code, 0, err)
        self.assertEqual(len(json.loads(out)["devices"]), 4)


INNER = (
    "Content-Type: text/plain;charset=UTF8\r\n\r\n-----BEGIN MESSAGE-----\r\n{}\r\n"
    "-----END MESSAGE-----\r\n"
)


class OfflineCommands(SynchronousTestCase):
    """`dep keypair` and `dep token import` work on files, with no appliance running."""

    def setUp(self) -> None:
        self.dir = Path(self.mktemp()).absolute()
        self.dir.mkdir()
        self.config_path = make_installation(self.dir / "install")
        from mdmappliance.config import load_config

        self.dep = load_config(self.config_path).dep
        self.fake = FakeDEP(self.dir / "fake")

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_cli("dep", *args, "--config", str(self.config_path))

    def cli_here(self, *args: str) -> subprocess.CompletedProcess[str]:
        """The same command in this process (a child costs most of a second): an exception
        that would be a traceback fails the test here."""
        from mdmappliance.cli.main import main

        argv = ["dep", *args, "--config", str(self.config_path)]
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = main(argv)
        return subprocess.CompletedProcess(argv, status, out.getvalue(), err.getvalue())

    def assertOneLineFailure(self, result: subprocess.CompletedProcess[str], *words: str) -> None:
        self.assertNotEqual(result.returncode, 0, result)
        self.assertNotIn("Traceback", result.stderr)
        self.assertEqual(len(result.stderr.strip().splitlines()), 1, result.stderr)
        self.assertTrue(result.stderr.startswith("mdmappliance: "), result.stderr)
        for word in words:
            self.assertIn(word, result.stderr)

    def write(self, name: str, data: bytes | str) -> str:
        path = self.dir / name
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        return str(path)

    def p7m(self, name: str, document: dict[str, Any], recipient: Path) -> str:
        """What Apple's portal returns: the token JSON in S/MIME, encrypted to ``recipient``."""
        inner = self.write(name + ".txt", INNER.format(json.dumps(document)))
        out = self.dir / name
        subprocess.run(
            [
                *("openssl", "smime", "-encrypt", "-aes256", "-binary"),
                *("-in", inner, "-out", str(out), str(recipient)),
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )
        return str(out)

    def test_keypair_once_then_only_with_force(self) -> None:
        """A second key pair would orphan the certificate already at Apple: --force only."""
        result = self.cli("keypair")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(self.dep.key_file.stat().st_mode & 0o777, 0o600)
        pki.read_private_key(self.dep.key_file)
        pki.read_certificate(self.dep.cert_file)
        self.assertIn(str(self.dep.cert_file), result.stdout)
        key = self.dep.key_file.read_bytes()

        self.assertOneLineFailure(self.cli("keypair"), "--force")
        self.assertEqual(self.dep.key_file.read_bytes(), key)
        result = self.cli("keypair", "--force")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertNotEqual(self.dep.key_file.read_bytes(), key)
        self.assertEqual(self.dep.key_file.stat().st_mode & 0o777, 0o600)

    def test_token_import_p7m_json_another_server_and_garbage(self) -> None:
        """The portal's .p7m and plain JSON import (0600); another server's token needs
        --force; garbage is one line and leaves the token alone."""
        self.assertEqual(self.cli("keypair").returncode, 0)
        document = self.fake.token_json()
        result = self.cli("token", "import", self.p7m("token.p7m", document, self.dep.cert_file))
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(read_token(self.dep.token_file), ServerToken(**document))
        self.assertEqual(self.dep.token_file.stat().st_mode & 0o777, 0o600)

        again = {**document, "access_token_expiry": "2031-01-01T00:00:00Z"}
        result = self.cli("token", "import", self.write("again.json", json.dumps(again)))
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(read_token(self.dep.token_file), ServerToken(**again))
        self.assertEqual(self.dep.token_file.stat().st_mode & 0o777, 0o600)

        other = {**document, "consumer_key": "CK_another_server"}
        other_file = self.write("other.json", json.dumps(other))
        self.assertOneLineFailure(
            self.cli("token", "import", other_file), "--force", "devices assigned"
        )
        self.assertEqual(read_token(self.dep.token_file), ServerToken(**again))
        result = self.cli("token", "import", other_file, "--force")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(read_token(self.dep.token_file), ServerToken(**other))
        imported = query(
            self.dep_db(), "SELECT detail FROM events WHERE kind = 'dep.token_imported'"
        )
        self.assertEqual([json.loads(d)["other_server"] for (d,) in imported], [False, False, True])

        binary = self.write("binary", b"\x00\xff\xfegarbage\x80")
        self.assertOneLineFailure(self.cli("token", "import", binary))
        for name, garbage in (
            ("words", b"this is not a token\n"),
            ("broken.json", b'{"consumer_key": '),
            ("partial.json", json.dumps({"consumer_key": "CK_1"}).encode()),
            ("base64", b"aGVsbG8gd29ybGQh\n"),
            ("empty", b""),
        ):
            self.assertOneLineFailure(self.cli_here("token", "import", self.write(name, garbage)))
        foreign = self.p7m("foreign.p7m", document, self.fake.ca_file)
        self.assertOneLineFailure(self.cli_here("token", "import", foreign), "decrypt")
        self.assertOneLineFailure(self.cli_here("token", "import", str(self.dir / "missing.p7m")))
        self.assertEqual(read_token(self.dep.token_file), ServerToken(**other))

    def test_a_p7m_before_the_keypair_says_to_make_one(self) -> None:
        """Without the key pair a .p7m cannot be opened: the message names the command."""
        self.assertOneLineFailure(
            self.cli("token", "import", self.write("t.p7m", b"MIME-Version: 1.0\n\nMIIB\n")),
            "dep keypair",
        )
        self.assertFalse(self.dep.token_file.exists())

    def dep_db(self) -> Path:
        from mdmappliance.config import load_config

        return load_config(self.config_path).store.path
