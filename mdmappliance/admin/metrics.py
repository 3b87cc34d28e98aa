"""Prometheus metrics through ``prometheus_client``: counters kept in memory since start
(requests, device messages) and gauges read from the store and the push and webhook services
at scrape time.

Each appliance has its own registry (tests run several in one process). Endpoints are
labelled by route, never by raw path: UDIDs and UUIDs in paths, or a scanner's random URLs,
would otherwise make a label per device.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, disable_created_metrics, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from mdmappliance.store import Tx
from mdmappliance.store.commands import PENDING

# The exposition stays what it was before prometheus_client: no *_created series.
disable_created_metrics()

CONTENT_TYPE = CONTENT_TYPE_LATEST
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


@dataclass(frozen=True)
class Snapshot:
    """What a scrape reads besides the counters: the store's gauges, the push service's
    status (None without a push certificate), and the webhook backlog by URL."""

    gauges: dict[str, dict[str, int]]
    push: dict[str, Any] | None
    webhooks: dict[str, dict[str, Any]]


def store_gauges(tx: Tx) -> dict[str, dict[str, int]]:
    """Commands and enrollments by state, from the database."""
    return {"commands": tx.commands.count_by_state(), "enrollments": tx.fleet.enrollment_counts()}


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.requests = Counter(
            "mdmappliance_http_requests",
            "HTTP requests answered, by listener, endpoint and status.",
            ("listener", "endpoint", "status"),
            registry=self.registry,
        )
        self.messages = Counter(
            "mdmappliance_device_messages",
            "Device messages, by check-in MessageType or report Status.",
            ("type",),
            registry=self.registry,
        )
        self.known = set(KNOWN)
        # The labelled children, by label values: counting is on the device hot path, and
        # ``labels()`` takes a lock and builds a key every time (the label sets are few).
        self._requests: dict[tuple[str, str, int], Any] = {}
        self._messages: dict[str, Any] = {}
        self._scrape = _ScrapeTime()
        self.registry.register(self._scrape)

    def endpoint(self, path: str) -> str:
        if path in self.known:
            return path
        for pattern, label in ROUTES:
            if pattern.match(path):
                return pattern.sub(label, path)
        return "other"

    def count_request(self, listener: str, path: str, status: int) -> None:
        endpoint = self.endpoint(path)
        child = self._requests.get((listener, endpoint, status))
        if child is None:
            child = self.requests.labels(listener, endpoint, str(status))
            self._requests[(listener, endpoint, status)] = child
        child.inc()

    def count_message(self, kind: str) -> None:
        child = self._messages.get(kind)
        if child is None:
            child = self._messages[kind] = self.messages.labels(kind)
        child.inc()

    def render(self, snapshot: Snapshot) -> bytes:
        """The Prometheus text exposition format (version 0.0.4)."""
        self._scrape.snapshot = snapshot
        try:
            return generate_latest(self.registry)
        finally:
            self._scrape.snapshot = None


class _ScrapeTime(Collector):
    """The gauges of the snapshot being rendered."""

    def __init__(self) -> None:
        self.snapshot: Snapshot | None = None

    def collect(self) -> Iterator[Metric]:
        snapshot = self.snapshot
        if snapshot is None:
            return
        commands = snapshot.gauges["commands"]
        yield _gauge(
            "mdmappliance_queue_depth",
            "Commands without a result yet.",
            {(): sum(commands.get(state, 0) for state in PENDING)},
        )
        yield _gauge(
            "mdmappliance_commands",
            "Commands in the database, by state.",
            {(state,): count for state, count in sorted(commands.items())},
            ("state",),
        )
        yield _gauge(
            "mdmappliance_enrollments",
            "Enrollments (device and user channels), by state.",
            {(state,): n for state, n in sorted(snapshot.gauges["enrollments"].items())},
            ("state",),
        )
        push = snapshot.push
        if push is not None:
            pushes = CounterMetricFamily(
                "mdmappliance_pushes", "APNs answers, by HTTP status.", labels=("status",)
            )
            for status, count in sorted(push.get("pushes_by_status", {}).items()):
                pushes.add_metric((str(status),), count)
            yield pushes
            yield _gauge(
                "mdmappliance_push_certificate_days_left",
                "Days until the push certificate expires.",
                {(): push.get("certificate_days_left", 0)},
            )
            yield _gauge(
                "mdmappliance_push_blocked",
                "1 when APNs refused the push certificate and every push has stopped.",
                {(): 1 if push.get("alert") else 0},
            )
        webhooks = sorted(snapshot.webhooks.items())
        yield _gauge(
            "mdmappliance_webhook_pending",
            "Events not yet delivered, by receiver.",
            {(url,): state["pending"] for url, state in webhooks},
            ("url",),
        )
        for name, key, help_text in (
            ("mdmappliance_webhook_delivered", "delivered", "Deliveries acknowledged."),
            ("mdmappliance_webhook_failures", "failures", "Failed delivery attempts."),
        ):
            family = CounterMetricFamily(name, help_text, labels=("url",))
            for url, state in webhooks:
                family.add_metric((url,), state[key])
            yield family


def _gauge(
    name: str, help_text: str, samples: dict[tuple[str, ...], float], labels: tuple[str, ...] = ()
) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, help_text, labels=labels)
    for values, value in samples.items():
        family.add_metric(values, value)
    return family
