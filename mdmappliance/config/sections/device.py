"""The schema of the device listeners: the TLS one and the plain-HTTP one behind a proxy."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mdmappliance.config.fields import (
    check_ip_address,
    check_ip_addresses,
    check_not_empty,
    check_topic,
    check_url_path,
    in_range,
    setting,
)


@dataclass(frozen=True)
class DeviceSection:
    """The device listener: TLS demanding client certificates, for check-in and commands."""

    bind: str = setting(
        "0.0.0.0",
        doc="Address devices connect to (0.0.0.0: every IPv4 address).",
        check=check_ip_address,
    )
    port: int = setting(
        443,
        doc="TCP port of the device listener (below 1024 needs CAP_NET_BIND_SERVICE).",
        check=in_range(1, 65535),
    )
    checkin_path: str = setting(
        "/mdm/checkin",
        doc="URL path of the CheckInURL in enrollment profiles.",
        check=check_url_path,
    )
    server_path: str = setting(
        "/mdm/connect",
        doc="URL path of the ServerURL in enrollment profiles. Check-in messages are accepted "
        "here too (a profile without CheckInURL sends them to the ServerURL).",
        check=check_url_path,
    )
    extra_ca_files: tuple[Path, ...] = setting(
        (),
        doc="More CA certificates (PEM files) whose device identities are trusted besides the "
        "appliance CA's, for devices enrolled under another CA.",
    )
    topic: str = setting(
        "",
        doc="The APNs push topic (com.apple.mgmt.…). When set, a TokenUpdate for another topic "
        "is refused. Empty: not configured yet; the push certificate sets it later.",
        check=check_topic,
    )
    max_body_bytes: int = setting(
        4 * 1024 * 1024,
        doc="Largest request body accepted from a device; larger ones get 413 before the rest is "
        "read.",
        check=in_range(1024, 256 * 1024 * 1024),
    )
    max_plist_depth: int = setting(
        32,
        doc="Deepest nesting of arrays and dictionaries accepted in a device plist.",
        check=in_range(4, 256),
    )
    max_connections: int = setting(
        2048,
        doc="Open connections the device listener (and the proxy listener, each) holds at "
        "most; more are closed at once. Keep it under the process's file limit "
        "(LimitNOFILE).",
        check=in_range(1, 1_000_000),
    )
    max_connections_per_address: int = setting(
        512,
        doc="Open connections from one address at most (devices behind one NAT share it); "
        "more are closed at once.",
        check=in_range(1, 1_000_000),
    )
    signature_clock_skew: float = setting(
        300.0,
        doc="Seconds of clock difference tolerated when checking the validity dates of a "
        "certificate that signed an Mdm-Signature, and its signingTime (one outside is "
        "refused); a signed Authenticate, TokenUpdate or CheckOut is taken once within twice "
        "this.",
        check=in_range(0, 86400),
    )
    unlock_key_file: Path = setting(
        Path("unlock-token.key"),
        doc="Key that encrypts escrowed UnlockTokens at rest (32 random bytes, made by init). "
        "Losing it loses every escrowed UnlockToken.",
    )
    users_file: str = setting(
        "",
        doc="Local network users for UserAuthenticate, in htdigest format (user:realm:HA1, "
        "make it with `htdigest`). Empty: answer UserAuthenticate with an empty "
        "DigestChallenge, so no AuthToken is needed.",
    )
    users_realm: str = setting(
        "mdmappliance",
        doc="The HTTP Digest realm of users_file.",
        check=check_not_empty,
    )


@dataclass(frozen=True)
class ProxySection:
    """Optional plain-HTTP device listener, for use behind a TLS-terminating reverse proxy.

    The device identity then comes from the Mdm-Signature header (SignMessage profiles) or
    from an RFC 9440 Client-Cert header sent by one of trusted_proxies."""

    enabled: bool = setting(False, doc="Run the proxy listener.")
    bind: str = setting(
        "127.0.0.1", doc="Address the proxy listener listens on.", check=check_ip_address
    )
    port: int = setting(8080, doc="TCP port of the proxy listener.", check=in_range(1, 65535))
    trusted_proxies: tuple[str, ...] = setting(
        ("127.0.0.1", "::1"),
        doc="Proxy addresses whose Client-Cert header is believed; the header from anywhere "
        "else is ignored.",
        check=check_ip_addresses,
    )
