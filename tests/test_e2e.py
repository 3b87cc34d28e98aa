"""End to end: the real command in a child process, on a free loopback port."""

from __future__ import annotations

import json
import signal
import sqlite3
import sys
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from mdmappliance.config import load_config
from tests.support import (
    SCHEMA_VERSION,
    RunningAppliance,
    free_port,
    make_installation,
    run_cli,
    twistd,
)


class EndToEnd(SynchronousTestCase):
    def start(self, command: list[str]) -> tuple[RunningAppliance, Path]:
        directory = Path(self.mktemp()).absolute()
        port = free_port()
        config_path = make_installation(directory, port=port)
        appliance = RunningAppliance(
            [part.replace("CONFIG", str(config_path)) for part in command], port, directory
        )
        self.addCleanup(appliance.kill)
        appliance.wait_until_listening()
        return appliance, config_path

    def check_lifecycle(self, command: list[str], stopped_status: int = 0) -> str:
        appliance, config_path = self.start(command)
        config = load_config(config_path)
        key = config.read_admin_api_key()

        code, body = appliance.get("/v1/health", key)
        self.assertEqual(code, 200)
        self.assertEqual(body["status"], "ok")
        self.assertEqual(body["database"], {"ok": True, "schema_version": SCHEMA_VERSION})
        code, body = appliance.get("/v1/health", None)
        self.assertEqual((code, body), (401, {"error": "missing or invalid API key"}))
        code, body = appliance.get("/v1/health", "wrong" * 8)
        self.assertEqual(code, 401)

        status, out, err = appliance.terminate()
        self.assertEqual(status, stopped_status, err + out)
        conn = sqlite3.connect(config.store.path)
        try:
            self.assertEqual(conn.execute("PRAGMA integrity_check").fetchone()[0], "ok")
            kinds = [row[0] for row in conn.execute("SELECT kind FROM events ORDER BY id")]
        finally:
            conn.close()
        self.assertEqual(kinds[-2:], ["service.started", "service.stopped"])
        return out

    def test_serve(self) -> None:
        out = self.check_lifecycle(
            [sys.executable, "-m", "mdmappliance", "serve", "--config", "CONFIG"]
        )
        self.assertIn("admin API: http://127.0.0.1:", out)
        self.assertIn("admin API key: ", out)
        self.assertIn("mdmappliance stopped", out)

    def test_serve_json_logs(self) -> None:
        out = self.check_lifecycle(
            [
                sys.executable,
                "-m",
                "mdmappliance",
                "serve",
                "--config",
                "CONFIG",
                "--log-format",
                "json",
            ]
        )
        records = [json.loads(line) for line in out.splitlines()]
        self.assertTrue(records)
        for record in records:
            self.assertTrue({"time", "level", "namespace", "message"} <= set(record), record)
        messages = [r["message"] for r in records]
        self.assertIn("mdmappliance stopped", messages)

    def test_twistd(self) -> None:
        # twistd stops cleanly, then re-raises SIGTERM on itself so its parent sees how it
        # ended (systemd counts that as a clean stop too); `serve` exits 0 instead.
        out = self.check_lifecycle(
            [
                twistd(),
                "--nodaemon",
                "--pidfile=",
                "mdmappliance",
                "--config",
                "CONFIG",
                "--log-format",
                "json",
            ],
            stopped_status=-signal.SIGTERM,
        )
        records = [json.loads(line) for line in out.splitlines() if line.strip()]
        self.assertTrue(any("Received SIGTERM" in r["message"] for r in records), out)

    def test_busy_port_is_one_line(self) -> None:
        appliance, config_path = self.start(
            [sys.executable, "-m", "mdmappliance", "serve", "--config", "CONFIG"]
        )
        second = RunningAppliance(
            [sys.executable, "-m", "mdmappliance", "serve", "--config", str(config_path)],
            appliance.port,
            config_path.parent,
        )
        self.addCleanup(second.kill)
        second.process.wait(timeout=60)
        _, err = second.output()
        self.assertEqual(second.process.returncode, 1)
        self.assertEqual(
            err.strip(),
            f"mdmappliance: admin listener cannot listen on 127.0.0.1:{appliance.port}: "
            "Address already in use",
        )

    def test_database_newer_than_the_code_is_one_line(self) -> None:
        directory = Path(self.mktemp()).absolute()
        config_path = make_installation(directory, port=free_port())
        conn = sqlite3.connect(directory / "mdmappliance.db")
        conn.execute("PRAGMA user_version = 99")
        conn.close()
        result = run_cli("serve", "--config", str(config_path))
        self.assertEqual(result.returncode, 1)
        self.assertEqual(len(result.stderr.strip().splitlines()), 1, result.stderr)
        known = f"only knows up to version {SCHEMA_VERSION}"
        self.assertIn(f"has schema version 99, but this mdmappliance {known}", result.stderr)
