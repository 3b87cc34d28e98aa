"""Timestamps as the appliance stores and shows them."""

from __future__ import annotations

import datetime


def utc_timestamp(moment: datetime.datetime | None = None) -> str:
    """ISO 8601 UTC with milliseconds; sorts as text in time order."""
    moment = moment or datetime.datetime.now(datetime.UTC)
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_timestamp(text: str) -> datetime.datetime:
    """A timestamp ``utc_timestamp`` wrote, back as an aware datetime."""
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
