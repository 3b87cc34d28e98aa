"""The schema of the event history: webhook deliveries and how long history is kept."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mdmappliance.config.fields import check_webhook_urls, in_range, setting


@dataclass(frozen=True)
class WebhooksSection:
    """Signed JSON POSTs of every check-in message and command result (see README)."""

    urls: tuple[str, ...] = setting(
        (),
        doc="Receivers. Each gets every event, in order, signed with secret_file's key; "
        "empty: no webhooks.",
        check=check_webhook_urls,
        example=("https://hooks.example.com/mdm",),
    )
    secret_file: Path = setting(
        Path("webhook-secret"),
        doc="The HMAC-SHA256 key receivers verify signatures with (made by init; mode 0600).",
    )
    timeout: float = setting(
        10.0, doc="Seconds a receiver has to answer one delivery.", check=in_range(1, 300)
    )
    retry_base_seconds: float = setting(
        1.0,
        doc="First retry delay after a failed delivery; it doubles (with jitter) up to 5 minutes, "
        "and deliveries never give up.",
        check=in_range(0.01, 300),
    )
    poll_interval: float = setting(
        1.0,
        doc="How often, in seconds, new events are looked for when all are delivered.",
        check=in_range(0.01, 60),
    )


@dataclass(frozen=True)
class RetentionSection:
    """How long history is kept: command results, answered commands and events."""

    days: float = setting(
        90.0,
        doc="Command results, answered commands and events older than this are pruned. "
        "Unanswered commands are never pruned; events a webhook receiver has not acknowledged "
        "are kept.",
        check=in_range(1, 36500),
    )
    interval: float = setting(
        3600.0, doc="How often, in seconds, the retention job runs.", check=in_range(10, 86400)
    )
    batch: int = setting(
        500,
        doc="Rows per transaction: small batches never hold check-ins up for long.",
        check=in_range(10, 100_000),
    )
    result_bytes_per_enrollment: int = setting(
        32 * 1024 * 1024,
        doc="Raw answers kept per enrollment, in bytes, until retention prunes them. Past it, "
        "a device's answers are still read into inventory and summarised, but their raw "
        "bodies are dropped (an event says so): a device cannot fill the disk.",
        check=in_range(64 * 1024, 2**40),
    )
