"""Timestamps as the appliance stores and shows them."""

from __future__ import annotations

import datetime
import time

#: The second last formatted for "now", and its text up to the seconds: a device message
#: asks for the time three or four times, and strftime was most of what that cost.
_last_second: tuple[int, str] = (-1, "")


def utc_timestamp(moment: datetime.datetime | None = None) -> str:
    """ISO 8601 UTC with milliseconds (truncated); sorts as text in time order."""
    if moment is not None:
        return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    global _last_second
    now = time.time()
    second = int(now)
    micros = round((now - second) * 1e6)  # as datetime.fromtimestamp rounds it
    if micros >= 1_000_000:
        second, micros = second + 1, micros - 1_000_000
    cached, prefix = _last_second  # one read: another thread may replace it meanwhile
    if cached != second:
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _last_second = (second, prefix)
    return f"{prefix}.{micros // 1000:03d}Z"


def parse_timestamp(text: str) -> datetime.datetime:
    """A timestamp ``utc_timestamp`` wrote, back as an aware datetime."""
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
