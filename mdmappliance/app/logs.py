"""Logging through twisted.logger: readable text on a terminal, or one JSON object a line.

JSON records carry time, level, namespace and the formatted message, plus the event's own
fields when they are plain values, so a log shipper can index ``udid`` or ``error``.
"""

from __future__ import annotations

import datetime
import json
import sys
from typing import IO, Any, cast

from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    formatEvent,
    globalLogBeginner,
    textFileLogObserver,
)
from zope.interface import provider

_PLAIN = (str, int, float, bool, type(None))


def json_record(event: dict[str, Any]) -> dict[str, Any]:
    """The JSON-friendly form of one log event."""
    moment = datetime.datetime.fromtimestamp(event.get("log_time", 0), datetime.UTC)
    level = event.get("log_level")
    record: dict[str, Any] = {
        "time": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "level": level.name if isinstance(level, type(LogLevel.info)) else "info",
        "namespace": event.get("log_namespace", ""),
        "message": formatEvent(event),
    }
    failure = event.get("log_failure")
    if failure is not None:
        record["error"] = failure.getErrorMessage()
        record["traceback"] = failure.getTraceback()
    for key, value in event.items():
        if not key.startswith("log_") and key not in record and isinstance(value, _PLAIN):
            record[key] = value
    return record


def json_observer(stream: IO[str]) -> ILogObserver:
    @provider(ILogObserver)
    def observe(event: dict[str, Any]) -> None:
        stream.write(json.dumps(json_record(event), default=str) + "\n")
        stream.flush()

    return cast(ILogObserver, observe)


def make_observer(log_format: str, level: str, stream: IO[str]) -> ILogObserver:
    """An observer in ``log_format`` ("text" or "json") dropping events below ``level``."""
    base: ILogObserver = (
        json_observer(stream) if log_format == "json" else textFileLogObserver(stream)
    )
    predicate = LogLevelFilterPredicate(defaultLogLevel=LogLevel.levelWithName(level))
    return FilteringLogObserver(base, [predicate])


def start_logging(log_format: str, level: str, stream: IO[str] | None = None) -> None:
    observer = make_observer(log_format, level, stream or sys.stdout)
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)


#: Set by the twistd plugin's options, read by ``twistd_observer`` (twistd takes the
#: observer factory by name and calls it without arguments).
twistd_settings = {"format": "text", "level": "info"}


def twistd_observer() -> ILogObserver:
    return make_observer(twistd_settings["format"], twistd_settings["level"], sys.stdout)
