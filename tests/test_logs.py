"""Log formats: one JSON object per line, text for terminals, levels filtered."""

from __future__ import annotations

import io
import json

from twisted.logger import Logger, LogPublisher
from twisted.trial.unittest import SynchronousTestCase

from mdmappliance.app.logs import make_observer


def emit(log_format: str, level: str) -> str:
    stream = io.StringIO()
    publisher = LogPublisher(make_observer(log_format, level, stream))
    log = Logger(namespace="mdmappliance.test", observer=publisher)
    log.debug("hidden at info")
    log.info("device {udid} checked in", udid="UDID-1", count=3, obj=object())
    try:
        raise ValueError("bad plist")
    except ValueError:
        log.failure("request failed")
    return stream.getvalue()


class JSONLogs(SynchronousTestCase):
    def test_one_object_per_line(self) -> None:
        lines = emit("json", "info").splitlines()
        self.assertEqual(len(lines), 2)
        first, second = (json.loads(line) for line in lines)
        self.assertEqual(first["message"], "device UDID-1 checked in")
        self.assertEqual(first["level"], "info")
        self.assertEqual(first["namespace"], "mdmappliance.test")
        self.assertEqual((first["udid"], first["count"]), ("UDID-1", 3))
        self.assertNotIn("obj", first, "only plain values are copied")
        self.assertRegex(first["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        self.assertEqual(second["level"], "critical")
        self.assertEqual(second["error"], "bad plist")
        self.assertIn("ValueError: bad plist", second["traceback"])

    def test_level_filter(self) -> None:
        self.assertIn("hidden at info", emit("json", "debug"))
        self.assertEqual(emit("json", "error").count("\n"), 1)


class TextLogs(SynchronousTestCase):
    def test_readable_lines(self) -> None:
        text = emit("text", "info")
        self.assertIn("[mdmappliance.test#info] device UDID-1 checked in", text)
        self.assertIn("ValueError: bad plist", text)
        self.assertNotIn("hidden at info", text)
