"""The schema of push notifications: the APNs gateway, the push certificate and timings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mdmappliance.config.fields import check_gateway, in_range, setting


@dataclass(frozen=True)
class APNsSection:
    """Push notifications through Apple's HTTP/2 provider API, with the push certificate
    from `mdmappliance pushcert import`."""

    gateway: str = setting(
        "https://api.push.apple.com",
        doc="The APNs gateway: https://api.push.apple.com (production, the only one the "
        "Apple Push Certificates Portal's MDM certificates work with), "
        "https://api.sandbox.push.apple.com (development), or a test server.",
        check=check_gateway,
    )
    ca_file: str = setting(
        "",
        doc="CA certificates (PEM) that the gateway's certificate must chain to. Empty: the "
        "system's trust store.",
    )
    cert_file: Path = setting(
        Path("push/push.pem"),
        doc="The MDM push certificate; `mdmappliance pushcert import` writes it. Missing: no "
        "pushes (devices are still served when they poll).",
    )
    key_file: Path = setting(
        Path("push/push.key"), doc="The push certificate's private key (mode 0600)."
    )
    priority: int = setting(
        10,
        doc="apns-priority: 10 delivers at once, 5 when the device's power allows.",
        check=in_range(5, 10),
    )
    expiration_hours: float = setting(
        72.0,
        doc="apns-expiration: how long APNs keeps a push for a device that is offline (0: "
        "deliver now or never).",
        check=in_range(0, 720),
    )
    coalesce_seconds: float = setting(
        1.0,
        doc="Pushes asked for one enrollment within this window become one push (APNs keeps "
        "only the last one anyway).",
        check=in_range(0, 60),
    )
    retries: int = setting(
        5,
        doc="Attempts after a 429 or 5xx answer before giving up on that push.",
        check=in_range(0, 20),
    )
    retry_base_seconds: float = setting(
        1.0,
        doc="The first retry delay; each next one doubles (with jitter), up to 5 minutes.",
        check=in_range(0.01, 300),
    )
    ping_interval: float = setting(
        60.0,
        doc="An idle connection is pinged after this many seconds...",
        check=in_range(1, 3600),
    )
    ping_timeout: float = setting(
        20.0,
        doc="...and dropped when the ping is not answered within this many seconds.",
        check=in_range(1, 600),
    )
    inactive_push_hours: float = setting(
        24.0,
        doc="Enrollments not seen for this long are pushed, to see if they still listen "
        '("Detecting Inactive Devices").',
        check=in_range(0.01, 24 * 365),
    )
    inactive_days: float = setting(
        7.0,
        doc="Enrollments not seen for this long are marked inactive (an event); their next "
        "contact makes them active again.",
        check=in_range(0.001, 3650),
    )
    inactivity_interval: float = setting(
        3600.0,
        doc="How often, in seconds, the inactive-device job runs.",
        check=in_range(1, 86400),
    )
