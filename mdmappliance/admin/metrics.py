"""Prometheus metrics: counters kept in memory since start (requests, check-ins) and gauges
read from the store and the push and webhook services at scrape time.

Endpoints are labelled by route, never by raw path: UDIDs and UUIDs in paths, or a scanner's
random URLs, would otherwise make a label per device.
"""

from __future__ import annotations

import re
import sqlite3
from collections import Counter
from typing import Any

ROUTES = (
    (re.compile(r"^/v1/devices/[^/]+/commands$"), "/v1/devices/{udid}/commands"),
    (re.compile(r"^/v1/devices/[^/]+/(revoke|retire)$"), r"/v1/devices/{udid}/\1"),
    (re.compile(r"^/v1/devices/[^/]+$"), "/v1/devices/{udid}"),
    (re.compile(r"^/v1/commands/[^/]+$"), "/v1/commands/{uuid}"),
    (re.compile(r"^/v1/enrollment-tokens/[^/]+$"), "/v1/enrollment-tokens/{id}"),
    (re.compile(r"^/enroll/[^/]+$"), "/enroll/{token}"),
)
KNOWN = frozenset(
    (
        "/v1/health",
        "/v1/devices",
        "/v1/commands",
        "/v1/push",
        "/v1/events",
        "/v1/enrollment-tokens",
        "/metrics",
        "/openapi.json",
    )
)


class Metrics:
    def __init__(self) -> None:
        self.requests: Counter[tuple[str, str, int]] = Counter()
        self.messages: Counter[str] = Counter()
        self.known = set(KNOWN)

    def endpoint(self, path: str) -> str:
        if path in self.known:
            return path
        for pattern, label in ROUTES:
            if pattern.match(path):
                return pattern.sub(label, path)
        return "other"

    def count_request(self, listener: str, path: str, status: int) -> None:
        self.requests[(listener, self.endpoint(path), status)] += 1


def store_gauges(conn: sqlite3.Connection) -> dict[str, Any]:
    """Queue depth and commands by state, from the database."""
    by_state = dict(conn.execute("SELECT state, count(*) FROM commands GROUP BY state").fetchall())
    enrollments = dict(
        conn.execute(
            "SELECT CASE WHEN inactive_since IS NOT NULL AND state = 'enrolled' THEN 'inactive' "
            "ELSE state END, count(*) FROM enrollments GROUP BY 1"
        ).fetchall()
    )
    return {"commands": by_state, "enrollments": enrollments}


def _escape(value: Any) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _line(name: str, labels: dict[str, Any], value: float) -> str:
    inner = ",".join(f'{key}="{_escape(v)}"' for key, v in labels.items())
    return f"{name}{{{inner}}} {value}" if inner else f"{name} {value}"


def render(
    metrics: Metrics,
    gauges: dict[str, Any],
    push: dict[str, Any] | None,
    webhooks: dict[str, dict[str, Any]],
) -> str:
    """The Prometheus text exposition format (version 0.0.4)."""
    out: list[str] = []

    def family(name: str, kind: str, help_text: str, samples: list[str]) -> None:
        out.extend([f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", *samples])

    family(
        "mdmappliance_http_requests_total",
        "counter",
        "HTTP requests answered, by listener, endpoint and status.",
        [
            _line(
                "mdmappliance_http_requests_total",
                {"listener": listener, "endpoint": endpoint, "status": status},
                count,
            )
            for (listener, endpoint, status), count in sorted(metrics.requests.items())
        ],
    )
    family(
        "mdmappliance_device_messages_total",
        "counter",
        "Device messages, by check-in MessageType or report Status.",
        [
            _line("mdmappliance_device_messages_total", {"type": kind}, count)
            for kind, count in sorted(metrics.messages.items())
        ],
    )
    commands = gauges["commands"]
    pending = sum(commands.get(s, 0) for s in ("queued", "sent", "not_now"))
    family(
        "mdmappliance_queue_depth",
        "gauge",
        "Commands without a result yet.",
        [_line("mdmappliance_queue_depth", {}, pending)],
    )
    family(
        "mdmappliance_commands",
        "gauge",
        "Commands in the database, by state.",
        [_line("mdmappliance_commands", {"state": s}, n) for s, n in sorted(commands.items())],
    )
    family(
        "mdmappliance_enrollments",
        "gauge",
        "Enrollments (device and user channels), by state.",
        [
            _line("mdmappliance_enrollments", {"state": s}, n)
            for s, n in sorted(gauges["enrollments"].items())
        ],
    )
    if push is not None:
        family(
            "mdmappliance_pushes_total",
            "counter",
            "APNs answers, by HTTP status.",
            [
                _line("mdmappliance_pushes_total", {"status": status}, count)
                for status, count in sorted(push.get("pushes_by_status", {}).items())
            ],
        )
        family(
            "mdmappliance_push_certificate_days_left",
            "gauge",
            "Days until the push certificate expires.",
            [
                _line(
                    "mdmappliance_push_certificate_days_left",
                    {},
                    push.get("certificate_days_left", 0),
                )
            ],
        )
        family(
            "mdmappliance_push_blocked",
            "gauge",
            "1 when APNs refused the push certificate and every push has stopped.",
            [_line("mdmappliance_push_blocked", {}, 1 if push.get("alert") else 0)],
        )
    for metric, key, help_text in (
        ("mdmappliance_webhook_pending", "pending", "Events not yet delivered, by receiver."),
        ("mdmappliance_webhook_delivered_total", "delivered", "Deliveries acknowledged."),
        ("mdmappliance_webhook_failures_total", "failures", "Failed delivery attempts."),
    ):
        kind = "gauge" if key == "pending" else "counter"
        family(
            metric,
            kind,
            help_text,
            [_line(metric, {"url": url}, state[key]) for url, state in sorted(webhooks.items())],
        )
    return "\n".join(out) + "\n"
