"""The schema of DEP: Apple's device enrollment service, its server token, the sync poller
and the ConfigurationURL devices enroll through."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from mdmappliance.config.fields import check_url_path, in_range, setting

#: NanoDEP sends 7 today (it sent 3 until 2024-01); the 2014 reference says 1.
PROTOCOL_VERSION = 7


def check_base_url(value: str) -> None:
    if not re.fullmatch(r"https://[A-Za-z0-9.-]+(:\d{1,5})?", value.rstrip("/")):
        raise ValueError(f"must be https://host[:port] without a path, got {value!r}")


def check_os_version(value: str) -> None:
    if value and not re.fullmatch(r"\d{1,3}(\.\d{1,3}){0,2}", value):
        raise ValueError(f"must be empty or a version like 17 or 17.4.1, got {value!r}")


@dataclass(frozen=True)
class DEPSection:
    """Apple's Device Enrollment Program: `mdmappliance dep keypair`, then `dep token import`
    of what Apple's portal returns; the poller runs once a token is in place."""

    enabled: bool = setting(True, doc="Run the DEP sync poller when a server token is imported.")
    base_url: str = setting(
        "https://mdmenrollment.apple.com",
        doc="Apple's DEP service (a test or staging service in tests).",
        check=check_base_url,
    )
    ca_file: str = setting(
        "",
        doc="CA certificates (PEM) the DEP service's certificate must chain to. Empty: the "
        "system's trust store.",
    )
    protocol_version: int = setting(
        PROTOCOL_VERSION,
        doc="X-Server-Protocol-Version sent with every request.",
        check=in_range(1, 100),
    )
    sync_interval: float = setting(
        1800.0,
        doc="Seconds between device syncs (POST /v1/dep/sync or `mdmappliance dep sync` runs "
        "one at once).",
        check=in_range(60, 86400),
    )
    page_size: int = setting(
        1000,
        doc="Devices asked for per Fetch/Sync request (Apple allows 1 to 1000).",
        check=in_range(1, 1000),
    )
    token_file: Path = setting(
        Path("dep/token.json"),
        doc="The server token (`dep token import` writes it, mode 0600).",
    )
    key_file: Path = setting(
        Path("dep/dep.key"),
        doc="Private key of the certificate uploaded to Apple's portal (`dep keypair`, 0600).",
    )
    cert_file: Path = setting(
        Path("dep/dep.pem"),
        doc="The certificate uploaded to Apple's portal (`dep keypair` makes it).",
    )
    default_profile: str = setting(
        "",
        doc="A DEP profile (JSON file of Apple's profile keys) defined and assigned to every "
        "device that has none, new or synced. Empty: no automatic assignment. url and "
        "anchor_certs are filled in when absent.",
    )
    enroll_path: str = setting(
        "/dep/enroll",
        doc="The ConfigurationURL path on the enrollment listener.",
        check=check_url_path,
    )
    minimum_os: str = setting(
        "",
        doc="Oldest OS version a device may enroll with (older ones are told "
        "com.apple.softwareupdate.required); empty: any.",
        check=check_os_version,
    )
    require_login: bool = setting(
        False,
        doc="Ask for a login (HTTP Digest against [device] users_file) at the ConfigurationURL.",
    )
