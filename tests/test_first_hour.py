"""The first hour's rough edges, each fixed: the demo's push topic, ``MDMAPPLIANCE_CONFIG``,
command keys typed by the catalog, the command checked before its targets, ``--wait`` that
tells its progress in a log and what is still pending at its timeout."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

from twisted.internet import reactor, task
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SynchronousTestCase

from mdmappliance.cli.client import APIError
from mdmappliance.cli.errors import InitError
from mdmappliance.cli.fleet import command_keys
from mdmappliance.cli.installation import InitRequest, initialize
from mdmappliance.config import load_config
from tests.support import run_cli
from tests.test_fleet_api import FleetCase, run_cli_capture


class TypedKeys(SynchronousTestCase):
    def test_values_take_the_type_apples_schema_gives_the_key(self) -> None:
        self.assertEqual(command_keys(["--PIN", "123456"], "DeviceLock"), {"PIN": "123456"})
        self.assertEqual(
            command_keys(["--Message", "true", "--PhoneNumber=5550100"], "DeviceLock"),
            {"Message": "true", "PhoneNumber": "5550100"},
        )
        self.assertEqual(
            command_keys(["--Queries", '["UDID","OSVersion"]'], "DeviceInformation"),
            {"Queries": ["UDID", "OSVersion"]},
        )
        self.assertEqual(
            command_keys(["--PreserveDataPlan", "true"], "EraseDevice"), {"PreserveDataPlan": True}
        )
        self.assertEqual(command_keys(["--ScanTime", "30"], "RequestMirroring"), {"ScanTime": 30})
        with self.assertRaises(APIError) as refused:
            command_keys(["--PreserveDataPlan", "maybe"], "EraseDevice")
        self.assertIn("--PreserveDataPlan is boolean in Apple's schema", str(refused.exception))

    def test_keys_the_catalog_does_not_know_are_json_or_text(self) -> None:
        self.assertEqual(
            command_keys(["--Count", "3", "--Name", "x y"], "NotAnAppleCommand"),
            {"Count": 3, "Name": "x y"},
        )


class DemoInit(SynchronousTestCase):
    def test_init_topic_serves_profiles_before_a_push_certificate(self) -> None:
        data = Path(self.mktemp())
        result = initialize(
            InitRequest(data, "localhost", topic="com.apple.mgmt.External.mdmappliance-demo")
        )
        config = load_config(result.config.path)
        self.assertEqual(config.device.topic, "com.apple.mgmt.External.mdmappliance-demo")
        self.assertEqual(config.push_topic(), config.device.topic)
        with self.assertRaises(InitError) as refused:
            initialize(InitRequest(Path(self.mktemp()), "localhost", topic="com.example.push"))
        self.assertIn(
            "--topic must be empty or start with 'com.apple.mgmt.'", str(refused.exception)
        )

    def test_every_command_reads_mdmappliance_config(self) -> None:
        data = Path(self.mktemp())
        initialize(InitRequest(data, "localhost"))
        config = data / "mdmappliance.toml"
        found = run_cli("check-config", env={"MDMAPPLIANCE_CONFIG": str(config)})
        self.assertEqual(found.returncode, 0, found.stderr)
        self.assertIn(f"{config.absolute()}: OK", found.stdout)
        missing = run_cli("check-config", env={"MDMAPPLIANCE_CONFIG": str(data / "nope.toml")})
        self.assertNotEqual(missing.returncode, 0)
        self.assertIn("nope.toml", missing.stderr)


class FleetCommands(FleetCase):
    async def test_the_command_is_checked_before_its_targets(self) -> None:
        """With no device enrolled, a wrong command is reported as such."""
        status, _, err = await self.cli("command", "send", "EraseDevice", "--all", "--Wipe", "1")
        self.assertEqual(status, 1)
        self.assertIn("Wipe is not a key of this command in Apple's schema", err)
        status, _, err = await self.cli("command", "send", "EraseDevice", "--all")
        self.assertEqual(status, 1)
        self.assertIn("no enrolled device to send to", err)

    async def test_wait_tells_each_result_and_what_is_still_pending(self) -> None:
        polling, model = await self.enrolled()
        await self.enrolled()  # never polls
        waiting = self.cli("command", "send", "ProfileList", "--all", "--no-push", "--wait", "3")
        for _ in range(100):  # until the CLI (in its thread) has queued the command
            if await polling.poll(model.answer):
                break
            await task.deferLater(reactor, 0.05, lambda: None)
        status, out, err = await waiting
        self.assertEqual(status, 1, "a command still pending at the timeout")
        self.assertIn(f"1/2 {polling.udid} acknowledged Acknowledged", err)
        self.assertIn("still pending after 3 s (1 of 2):", err)
        self.assertIn("queued", out)


class FriendlyOutput(FleetCase):
    async def test_tables_have_headers_and_nothing_reads_none(self) -> None:
        device, _ = await self.enrolled()
        status, out, err = await self.cli("devices", "show", device.udid)
        self.assertEqual(status, 0, err)
        self.assertNotIn("None", out)
        self.assertIn("access_rights", out)
        status, out, _ = await self.cli("events")
        self.assertTrue(
            out.split("\n", 1)[0].split() == ["ID", "AT", "KIND", "ACTOR", "SUBJECT", "DETAIL"]
        )
        # One devices group: revoke and retire are in it ("device" still works).
        status, out, err = await self.cli("devices", "revoke", device.udid)
        self.assertEqual(status, 0, err)
        status, _, err = await self.cli("device", "revoke", device.udid)
        self.assertEqual(status, 1)
        self.assertIn(f"no unrevoked identity is bound to {device.udid}", err)

    async def test_a_missing_file_is_named_in_words(self) -> None:
        status, _, err = await self.cli("pushcert", "show")
        self.assertEqual(status, 1)
        self.assertIn("no push certificate yet", err)
        self.assertNotIn("Errno", err)
        self.config.admin.api_key_file.rename(self.config.admin.api_key_file.with_suffix(".gone"))
        status, _, err = await self.cli("devices", "list")
        self.assertNotEqual(status, 0)
        self.assertNotIn("Errno", err)
        self.assertIn("does not exist", err)


class Completion(SynchronousTestCase):
    def complete(self, *words: str) -> list[str]:
        script = run_cli("completion", "bash")
        self.assertEqual(script.returncode, 0, script.stderr)
        line = " ".join(shlex.quote(w) for w in words)
        done = subprocess.run(
            [
                "bash",
                "-c",
                f"{script.stdout}\nCOMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; "
                '_mdmappliance_complete; printf "%s\\n" "${COMPREPLY[@]}"',
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        self.assertEqual(done.returncode, 0, done.stderr)
        return done.stdout.split()

    def test_bash_completes_commands_actions_request_types_and_options(self) -> None:
        self.assertIn("simulate", self.complete("mdmappliance", "si"))
        self.assertEqual(
            self.complete("mdmappliance", "devices", ""), ["list", "retire", "revoke", "show"]
        )
        self.assertIn("EraseDevice", self.complete("mdmappliance", "command", "send", "Er"))
        self.assertIn("--wait", self.complete("mdmappliance", "command", "send", "X", "--w"))


class LinkWithoutTopic(FleetCase):
    async def test_a_link_that_cannot_be_served_says_so(self) -> None:
        status, _, err = await self.cli("enroll-link", "create")
        self.assertEqual(status, 0, err)
        self.assertNotIn("warning", err)
        text = self.config.path.read_text()
        self.assertIn('topic = "', text)
        without = self.config.path.with_name("without-topic.toml")
        without.write_text(
            "\n".join(line for line in text.splitlines() if not line.startswith("topic ="))
        )
        status, out, err = await deferToThread(
            run_cli_capture, "enroll-link", "create", "--config", str(without)
        )
        self.assertEqual(status, 0, err)
        self.assertIn("/enroll/", out)
        self.assertIn("warning: this link answers 503 until a push certificate is imported", err)
