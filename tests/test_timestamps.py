"""``utc_timestamp``: the text the store sorts by, the same whether it formats "now" from its
memory of the current second or a given moment."""

from __future__ import annotations

import datetime
import random
import time
from types import SimpleNamespace

from twisted.trial.unittest import SynchronousTestCase

from mdmappliance.core import timestamps
from mdmappliance.core.timestamps import parse_timestamp, utc_timestamp


def by_datetime(seconds: float) -> str:
    """The timestamp as datetime writes it (milliseconds truncated)."""
    moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class UtcTimestamp(SynchronousTestCase):
    def at(self, seconds: float) -> str:
        clock = SimpleNamespace(time=lambda: seconds, gmtime=time.gmtime, strftime=time.strftime)
        self.patch(timestamps, "time", clock)
        return utc_timestamp()

    def test_now_reads_as_datetime_writes_it(self) -> None:
        for seconds in (
            0.0,
            1_700_000_000.0,
            1_700_000_000.001,
            1_700_000_000.0995,
            1_700_000_000.999,
            1_700_000_001.5,  # the next second: its own text, not the remembered one
            1_699_999_999.25,  # and back (a clock step): still right
            2_000_000_000.123456,
            4_102_444_799.999,  # the last millisecond of 2099
        ):
            self.assertEqual(self.at(seconds), by_datetime(seconds), seconds)
        draw = random.Random(20261202)
        for _ in range(20_000):
            seconds = draw.uniform(0, 4_102_444_800)
            self.assertEqual(self.at(seconds), by_datetime(seconds), repr(seconds))

    def test_the_real_clock_lies_between_two_datetime_readings(self) -> None:
        for _ in range(1000):
            before = by_datetime(time.time())
            now = utc_timestamp()
            after = by_datetime(time.time())
            self.assertTrue(before <= now <= after, (before, now, after))

    def test_a_given_moment_is_written_in_utc(self) -> None:
        east = datetime.timezone(datetime.timedelta(hours=2))
        moment = datetime.datetime(2026, 12, 2, 3, 4, 5, 678999, tzinfo=east)
        self.assertEqual(utc_timestamp(moment), "2026-12-02T01:04:05.678Z")
        self.assertEqual(parse_timestamp(utc_timestamp(moment)), moment.replace(microsecond=678000))
