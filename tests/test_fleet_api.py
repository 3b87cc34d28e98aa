"""Running the fleet through the admin API and the CLI: list devices, send DeviceInformation
to all of them with one command, watch the results, read an Error in plain words."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import treq
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import reactor, task
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool

from mdmappliance.cli.main import main
from mdmappliance.simulator.device import SimulatedDevice
from mdmappliance.simulator.model import DeviceModel
from tests.support import InProcessAppliance, free_port, query


def run_cli_capture(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(list(argv))
    return status, out.getvalue(), err.getvalue()


class FleetCase(TestCase):
    timeout = 120

    def setUp(self) -> None:
        self.appliance = InProcessAppliance(Path(self.mktemp()))
        self.addCleanup(self.appliance.stop)
        self.config = self.appliance.config
        self.store = self.appliance.store
        self.url = self.config.admin_url()
        self.headers: dict[bytes | str, bytes | str] = {
            "Authorization": f"Bearer {self.config.read_admin_api_key()}"
        }
        self.http = treq.client.HTTPClient(
            Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False))
        )

    async def enrolled(self) -> tuple[SimulatedDevice, DeviceModel]:
        device = await self.appliance.device_from_link()
        self.addCleanup(device.close)
        await device.enroll()
        return device, DeviceModel(udid=device.udid)

    async def api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        response = await self.http.request(method, self.url + path, json=body, headers=self.headers)
        return response.code, await response.json()

    def cli(self, *argv: str) -> Deferred[tuple[int, str, str]]:
        """The CLI in a thread (it blocks on HTTP while this reactor serves the API)."""
        return deferToThread(run_cli_capture, *argv, "--config", str(self.config.path))


class AdminAPI(FleetCase):
    async def test_devices_commands_results_and_events(self) -> None:
        (first, first_model), (second, second_model) = [await self.enrolled() for _ in range(2)]
        code, listed = await self.api("GET", "/v1/devices")
        self.assertEqual(code, 200)
        self.assertEqual({d["udid"] for d in listed["devices"]}, {first.udid, second.udid})
        code, page = await self.api("GET", "/v1/devices?limit=1")
        self.assertEqual(len(page["devices"]), 1)
        code, rest = await self.api("GET", f"/v1/devices?limit=1&cursor={page['next_cursor']}")
        self.assertEqual((len(rest["devices"]), rest["next_cursor"]), (1, None))

        code, sent = await self.api(
            "POST", "/v1/commands", {"all": True, "command": {"RequestType": "DeviceInformation"}}
        )
        self.assertEqual(code, 201, sent)
        self.assertEqual({c["udid"] for c in sent["commands"]}, {first.udid, second.udid})
        await first.poll(first_model.answer)
        await second.poll(second_model.answer)
        for entry in sent["commands"]:
            code, status = await self.api("GET", f"/v1/commands/{entry['command_uuid']}")
            self.assertEqual((code, status["state"]), (200, "acknowledged"))
            self.assertEqual(status["result"]["answer"]["QueryResponses"]["UDID"], entry["udid"])
        code, device = await self.api("GET", f"/v1/devices/{first.udid}")
        self.assertEqual(device["serial_number"], first_model.facts()["SerialNumber"])
        self.assertIn("device_information", device["inventory"])
        self.assertEqual(device["access_rights"], 8191)

        code, sent = await self.api(
            "POST",
            "/v1/commands",
            {"udids": [first.udid], "command": {"RequestType": "RemoveProfile", "Identifier": "x"}},
        )
        (entry,) = sent["commands"]
        await first.poll(first_model.answer)
        code, status = await self.api("GET", f"/v1/commands/{entry['command_uuid']}")
        self.assertEqual(status["state"], "error")
        self.assertEqual(
            status["result"]["errors"], ["MCMDMErrorDomain 12013: Profile not managed"]
        )

        code, commands = await self.api("GET", f"/v1/devices/{first.udid}/commands?state=error")
        self.assertEqual([c["request_type"] for c in commands["commands"]], ["RemoveProfile"])

        code, events = await self.api("GET", "/v1/events?limit=5")
        self.assertEqual(len(events["events"]), 5)
        code, later = await self.api("GET", f"/v1/events?after={events['next_cursor']}")
        self.assertGreater(later["events"][0]["id"], events["events"][-1]["id"])
        self.assertIn(
            "api:admin", {e["actor"] for e in later["events"] if e["kind"] == "command.queued"}
        )

    async def test_bad_requests_are_400_with_a_message_per_problem(self) -> None:
        device, _ = await self.enrolled()
        cases = [
            (
                {"udids": [device.udid], "command": {"RequestType": "DeviceLock", "PIN": "1"}},
                "PIN must be 4 or 6 characters",
            ),
            (
                {"udids": ["NO-SUCH-DEVICE"], "command": {"RequestType": "ProfileList"}},
                "NO-SUCH-DEVICE: no such device",
            ),
            ({"command": {"RequestType": "ProfileList"}}, "udids: give the devices' UDIDs"),
            ({"udids": [device.udid], "command": "ProfileList"}, "command: must be an object"),
            ({"udids": [device.udid], "command": {"RequestType": "Nope"}}, "is not a request type"),
            (
                {"udids": [device.udid], "command": {"RequestType": "ProfileList"}, "x": 1},
                "x: unknown field",
            ),
        ]
        for body, words in cases:
            with self.subTest(body=body):
                code, answer = await self.api("POST", "/v1/commands", body)
                self.assertEqual(code, 400)
                self.assertIn(words, " ".join(answer["errors"]))
        code, partial = await self.api(
            "POST",
            "/v1/commands",
            {
                "udids": [device.udid, "NO-SUCH-DEVICE"],
                "partial": True,
                "command": {"RequestType": "ProfileList"},
            },
        )
        self.assertEqual((code, partial["unknown_udids"]), (201, ["NO-SUCH-DEVICE"]))
        for path in ("/v1/devices?state=bogus", "/v1/devices?limit=0", "/v1/events?after=x"):
            with self.subTest(path=path):
                self.assertEqual((await self.api("GET", path))[0], 400)
        self.assertEqual((await self.api("GET", "/v1/devices/NOPE-0000"))[0], 404)
        self.assertEqual((await self.api("GET", "/v1/commands/NOPE"))[0], 404)

    async def test_cancel(self) -> None:
        device, model = await self.enrolled()
        _code, sent = await self.api(
            "POST",
            "/v1/commands",
            {"udids": [device.udid], "command": {"RequestType": "ProfileList"}},
        )
        command_uuid = sent["commands"][0]["command_uuid"]
        self.assertEqual((await self.api("DELETE", f"/v1/commands/{command_uuid}"))[0], 200)
        self.assertEqual((await self.api("DELETE", f"/v1/commands/{command_uuid}"))[0], 409)
        self.assertEqual((await self.api("DELETE", "/v1/commands/NOPE"))[0], 404)
        self.assertEqual(await device.poll(model.answer), [], "a canceled command is not sent")


class CommandLine(FleetCase):
    async def test_an_admin_runs_the_fleet_from_the_cli(self) -> None:
        (first, first_model), (second, second_model) = [await self.enrolled() for _ in range(2)]
        status, out, err = await self.cli("devices", "list")
        self.assertEqual(status, 0, err)
        self.assertIn(first.udid, out)
        self.assertIn("2 device(s)", out)

        # One command to all of them, watching the results arrive while the devices poll.
        waiting = self.cli("command", "send", "DeviceInformation", "--all", "--wait", "60")
        for _ in range(200):
            if query(self.config.store.path, "SELECT count(*) FROM commands") == [(2,)]:
                break
            await task.deferLater(reactor, 0.05, lambda: None)
        await first.poll(first_model.answer)
        await second.poll(second_model.answer)
        status, out, err = await waiting
        self.assertEqual(status, 0, err)
        rows = [line.split() for line in out.splitlines()[1:]]
        self.assertEqual(sorted(row[0] for row in rows), sorted([first.udid, second.udid]))
        self.assertEqual({row[2] for row in rows}, {"acknowledged"})

        status, out, err = await self.cli(
            "command",
            "send",
            "RemoveProfile",
            "--udid",
            first.udid,
            "--Identifier",
            "com.example.none",
            "--wait",
            "1",
            "--no-push",
        )
        self.assertEqual(status, 1, "no answer yet: the wait ends unfinished")
        sent = [line.split()[1] for line in out.splitlines()[1:] if line.startswith(first.udid)]
        await first.poll(first_model.answer)
        status, out, err = await self.cli("command", "show", sent[0])
        self.assertEqual(status, 0, err)
        self.assertIn("error          MCMDMErrorDomain 12013: Profile not managed", out)

        status, out, _ = await self.cli("command", "list", "--udid", first.udid, "--json")
        listed = json.loads(out)
        self.assertEqual(
            [c["request_type"] for c in listed["commands"]], ["DeviceInformation", "RemoveProfile"]
        )
        status, out, _ = await self.cli("devices", "show", first.udid)
        self.assertIn("inventory device_information", out)
        status, out, _ = await self.cli("events", "--limit", "3")
        self.assertEqual(len(out.splitlines()), 1 + 3, "the header, then three events")

    async def test_bad_keys_and_failures_are_one_line(self) -> None:
        device, _ = await self.enrolled()
        status, _, err = await self.cli(
            "command", "send", "RequestMirroring", "--udid", device.udid, "--ScanTime", "5"
        )
        self.assertEqual(status, 1)
        self.assertEqual(len(err.strip().splitlines()), 1)
        self.assertIn("ScanTime must be between 10 and 300", err)
        config = self.config.path.read_text().replace(
            f"port = {self.config.admin.port}", f"port = {free_port()}", 1
        )
        elsewhere = self.config.path.with_name("elsewhere.toml")
        elsewhere.write_text(config)
        result = await deferToThread(run_cli_capture, "devices", "list", "--config", str(elsewhere))
        self.assertEqual(result[0], 1)
        self.assertIn("does not answer", result[2])


class NamedKeys(TestCase):
    timeout = 60

    async def test_read_only_keys_get_403_on_writes_and_writes_name_their_key(self) -> None:
        keys = Path(self.mktemp()).absolute()
        keys.mkdir()
        secrets = {"monitor": "m" * 40, "helpdesk": "h" * 40}
        for name, value in secrets.items():
            (keys / name).write_text(value + "\n")
            (keys / name).chmod(0o600)
        appliance = InProcessAppliance(
            Path(self.mktemp()),
            admin={
                "extra_keys": [f"monitor:read:{keys}/monitor", f"helpdesk:full:{keys}/helpdesk"]
            },
        )
        self.addCleanup(appliance.stop)
        http = treq.client.HTTPClient(
            Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False))
        )
        url = appliance.config.admin_url()

        async def call(name: str, method: str, path: str, body: Any = None) -> int:
            headers: dict[bytes | str, bytes | str] = {"Authorization": f"Bearer {secrets[name]}"}
            response = await http.request(method, url + path, json=body, headers=headers)
            await response.content()
            return int(response.code)

        self.assertEqual(await call("monitor", "GET", "/v1/devices"), 200)
        self.assertEqual(await call("monitor", "POST", "/v1/enrollment-tokens", {}), 403)
        self.assertEqual(await call("helpdesk", "POST", "/v1/enrollment-tokens", {}), 201)
        self.assertEqual(
            query(
                appliance.config.store.path,
                "SELECT actor FROM events WHERE kind = 'enrollment_link.created'",
            ),
            [("api:helpdesk",)],
        )

    def test_a_malformed_entry_is_a_config_error(self) -> None:
        from mdmappliance.config import load_config
        from mdmappliance.config.errors import ConfigError
        from tests.support import make_installation

        path = make_installation(
            Path(self.mktemp()), sections={"admin": {"extra_keys": ["monitor:admin:x"]}}
        )
        with self.assertRaises(ConfigError) as caught:
            load_config(path)
        self.assertIn("admin.extra_keys", str(caught.exception))


class Metrics(FleetCase):
    async def test_prometheus_text(self) -> None:
        device, _ = await self.enrolled()
        await self.api(
            "POST",
            "/v1/commands",
            {"udids": [device.udid], "command": {"RequestType": "ProfileList"}},
        )
        await self.api(
            "POST",
            "/v1/commands",
            {"udids": [device.udid], "command": {"RequestType": "SecurityInfo"}},
        )
        await device.poll(lambda envelope: ("NotNow", {}))
        self.assertEqual((await self.api("GET", "/v1/devices/UNKNOWN-UDID-1"))[0], 404)
        response = await self.http.get(self.url + "/metrics", headers=self.headers)
        self.assertEqual(response.code, 200)
        self.assertTrue(response.headers.getRawHeaders("content-type")[0].startswith("text/plain"))
        text = (await response.content()).decode()
        # Read by Prometheus' own parser: label order in the text is not part of a series.
        samples = {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

        def sample(name: str, **labels: str) -> float:
            return samples[(name, frozenset(labels.items()))]

        self.assertEqual(
            sample(
                "mdmappliance_http_requests_total",
                listener="admin",
                endpoint="/v1/commands",
                status="201",
            ),
            2,
        )
        self.assertEqual(
            sample(
                "mdmappliance_http_requests_total",
                listener="admin",
                endpoint="/v1/devices/{udid}",
                status="404",
            ),
            1,
            "labelled by route, not by UDID",
        )
        self.assertGreaterEqual(
            sample("mdmappliance_device_messages_total", type="Authenticate"), 1
        )
        self.assertGreaterEqual(
            sample("mdmappliance_device_messages_total", type="Status:NotNow"), 1
        )
        self.assertEqual(sample("mdmappliance_queue_depth"), 2)
        self.assertEqual(sample("mdmappliance_commands", state="not_now"), 2)
        self.assertEqual(sample("mdmappliance_enrollments", state="enrolled"), 1)
        for line in text.splitlines():
            if line.startswith("# TYPE"):
                self.assertIn(line.split()[-1], ("counter", "gauge"))


class AdminOverTLS(TestCase):
    timeout = 60

    async def test_the_cli_talks_tls_and_plain_http_is_refused(self) -> None:
        appliance = InProcessAppliance(Path(self.mktemp()), admin={"tls": True})
        self.addCleanup(appliance.stop)
        self.assertTrue(appliance.config.admin_url().startswith("https://"))
        status, out, err = await deferToThread(
            run_cli_capture, "devices", "list", "--config", str(appliance.config.path)
        )
        self.assertEqual(status, 0, err)
        self.assertIn("0 device(s)", out)
        plain = appliance.config.admin_url().replace("https://", "http://")
        from mdmappliance.cli.client import AdminClient, APIError

        client = AdminClient(plain, appliance.config.read_admin_api_key(), timeout=5)
        with self.assertRaises(APIError):
            await deferToThread(client.call, "GET", "/v1/health")
