"""The first hour's rough edges, each fixed: the demo's push topic, ``MDMAPPLIANCE_CONFIG``,
command keys typed by the catalog, the command checked before its targets, ``--wait`` that
tells its progress in a log and what is still pending at its timeout."""

from __future__ import annotations

from pathlib import Path

from twisted.internet import reactor, task
from twisted.trial.unittest import SynchronousTestCase

from mdmappliance.cli.client import APIError
from mdmappliance.cli.errors import InitError
from mdmappliance.cli.fleet import command_keys
from mdmappliance.cli.installation import InitRequest, initialize
from mdmappliance.config import load_config
from tests.support import run_cli
from tests.test_fleet_api import FleetCase


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
