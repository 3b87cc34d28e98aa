"""The one TOML config file: its schema, its documentation, loading and validation.

The schema is the section dataclasses below. Each key's help text lives beside it, and
``render_config`` turns the schema into the documented file that ``init`` writes and that
``conf/mdmappliance.toml`` shows, so the documentation cannot drift from what is loaded.
Unknown keys are errors: in a config file they are nearly always typos.
"""

from __future__ import annotations

import dataclasses
import datetime
import inspect
import ipaddress
import os
import re
import textwrap
import tomllib
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mdmappliance import pki
from mdmappliance.config.errors import ConfigError

Check = Callable[[Any], None]
_REQUIRED = object()

SYNCHRONOUS_MODES = ("OFF", "NORMAL", "FULL", "EXTRA")
LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("debug", "info", "warn", "error", "critical")
MIN_API_KEY_LENGTH = 32


def setting(
    default: Any = _REQUIRED, *, doc: str, check: Check | None = None, example: Any = None
) -> Any:
    """A config key: its default (absent for required keys), help text and value check."""
    metadata = {"doc": doc, "check": check, "example": example}
    if default is _REQUIRED:
        return field(metadata=metadata)
    return field(default=default, metadata=metadata)


def in_range(low: float, high: float) -> Check:
    def check(value: float) -> None:
        if not low <= value <= high:
            raise ValueError(f"must be from {low} to {high}, got {value}")

    return check


def one_of(choices: Iterable[str]) -> Check:
    allowed = tuple(choices)

    def check(value: str) -> None:
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}, got {value!r}")

    return check


_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


def check_hostname(value: str) -> None:
    """A DNS name or an IP address literal: what devices will put in their URLs."""
    try:
        ipaddress.ip_address(value)
        return
    except ValueError:
        pass
    name = value.rstrip(".")
    if not name or len(name) > 253 or not all(_HOST_LABEL.match(p) for p in name.split(".")):
        raise ValueError(f"{value!r} is not a valid DNS name or IP address")


def check_not_empty(value: str) -> None:
    if not value:
        raise ValueError("must not be empty")


def check_ip_address(value: str) -> None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address (a name is not accepted here)") from None


def check_ip_addresses(values: tuple[str, ...]) -> None:
    for value in values:
        check_ip_address(value)


def check_url_path(value: str) -> None:
    if not value.startswith("/") or any(c in value for c in "?# \t"):
        raise ValueError(f"must be a URL path starting with '/', got {value!r}")


def check_topic(value: str) -> None:
    if value and not (value.startswith("com.apple.mgmt.") and len(value) > len("com.apple.mgmt.")):
        raise ValueError(f"must be empty or start with 'com.apple.mgmt.', got {value!r}")


@dataclass(frozen=True)
class ApplianceSection:
    """Where the appliance keeps its state and the name devices reach it by."""

    data_dir: Path = setting(
        doc="Directory for the database, keys and certificates. Relative paths elsewhere in "
        "this file are taken from here; a relative data_dir is taken from this file's "
        "directory.",
        example="/var/lib/mdmappliance",
    )
    hostname: str = setting(
        doc="The DNS name (or IP address) devices use to reach this appliance. The server "
        "certificate must name it in its subjectAltName.",
        check=check_hostname,
        example="mdm.example.com",
    )
    shutdown_grace: float = setting(
        10.0,
        doc="Seconds that in-flight requests get to finish on SIGTERM before their "
        "connections are closed.",
        check=in_range(0.1, 600),
    )


@dataclass(frozen=True)
class StoreSection:
    """The embedded SQLite database."""

    path: Path = setting(Path("mdmappliance.db"), doc="The database file.")
    synchronous: str = setting(
        "FULL",
        doc="SQLite synchronous mode (the database runs in WAL mode). FULL syncs the log on "
        "every commit: an acknowledged command or result survives a power cut. NORMAL "
        "syncs only at checkpoints: several times faster to write, never corrupt, but a "
        "power cut (not a crash of the process) can lose the last transactions. OFF and "
        "EXTRA are for experts.",
        check=one_of(SYNCHRONOUS_MODES),
    )
    busy_timeout_ms: int = setting(
        5000,
        doc="How long a write waits for another process holding the database (a backup, "
        "the sqlite3 shell) before it fails, in milliseconds.",
        check=in_range(0, 600_000),
    )
    backup_dir: Path = setting(
        Path("backups"),
        doc="Where a copy of the database is written before every schema upgrade.",
    )


@dataclass(frozen=True)
class PKISection:
    """The appliance CA (it issues device identities) and the server TLS certificate."""

    ca_cert: Path = setting(Path("pki/ca.pem"), doc="The appliance CA certificate (PEM or DER).")
    ca_key: Path = setting(
        Path("pki/ca.key"), doc="The appliance CA private key, unencrypted; keep it mode 0600."
    )
    server_cert: Path = setting(
        Path("pki/server.pem"),
        doc="The TLS server certificate devices see. It must name [appliance] hostname in "
        "its subjectAltName. It may be the admin's own, from a public CA.",
    )
    server_key: Path = setting(
        Path("pki/server.key"), doc="The private key of server_cert; keep it mode 0600."
    )


@dataclass(frozen=True)
class AdminSection:
    """The local JSON admin API that the mdmappliance command and scripts use."""

    bind: str = setting(
        "127.0.0.1",
        doc="Address the admin API listens on. Keep it on loopback: it is plain HTTP.",
        check=check_ip_address,
    )
    port: int = setting(9180, doc="TCP port of the admin API.", check=in_range(1, 65535))
    api_key_file: Path = setting(
        Path("admin-api-key"),
        doc="File holding the admin API key (sent as 'Authorization: Bearer <key>'); "
        f"at least {MIN_API_KEY_LENGTH} characters, mode 0600. Its name is 'admin', with full "
        "rights.",
    )
    tls: bool = setting(
        False,
        doc="Serve the admin API over TLS with the server certificate ([pki] server_cert), for "
        "when it must listen beyond loopback. The mdmappliance command then checks the "
        "certificate against the system's CAs and [pki] ca_cert.",
    )
    extra_keys: tuple[str, ...] = setting(
        (),
        doc="More API keys, each 'NAME:ROLE:FILE': ROLE is 'full' or 'read' (read-only keys get "
        "403 on every write); FILE holds the key like api_key_file. Writes are audited with "
        "the key's name (actor 'api:NAME').",
        example=("monitoring:read:keys/monitoring", "helpdesk:full:keys/helpdesk"),
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
    signature_clock_skew: float = setting(
        300.0,
        doc="Seconds of clock difference tolerated when checking the validity dates of a "
        "certificate that signed an Mdm-Signature.",
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


def check_access_rights(value: int) -> None:
    """The rules of "Structure of MDM Payloads"."""
    if value <= 0 or value > 8191:
        raise ValueError(f"must be a non-zero combination of the flags 1 to 4096, got {value}")
    if value & 2 and not value & 1:
        raise ValueError(f"{value} has 2 (install profiles) without 1 (inspect profiles)")
    if value & 128 and not value & 64:
        raise ValueError(
            f"{value} has 128 (install provisioning profiles) without 64 (inspect them)"
        )


def check_https_url_or_empty(value: str) -> None:
    if value and not (value.startswith("https://") and len(value) > len("https://")):
        raise ValueError(f"must be empty or an https:// URL, got {value!r}")


@dataclass(frozen=True)
class EnrollmentSection:
    """The enrollment listener (TLS, no client certificate) and the profiles it serves."""

    bind: str = setting(
        "0.0.0.0", doc="Address of the enrollment listener.", check=check_ip_address
    )
    port: int = setting(8444, doc="TCP port of the enrollment listener.", check=in_range(1, 65535))
    link_days: float = setting(
        7.0,
        doc="How long a new enrollment link stays valid, in days (enroll-link --expires "
        "overrides it).",
        check=in_range(0.001, 365),
    )
    organization: str = setting("", doc="PayloadOrganization shown on the device.")
    profile_identifier: str = setting(
        "",
        doc="Top-level PayloadIdentifier of the enrollment profile; renewals reuse it so the "
        "device replaces the profile. Empty: mdmappliance.<hostname>.enrollment.",
    )
    access_rights: int = setting(
        8191,
        doc="AccessRights of the MDM payload: a non-zero OR of 1..4096; 2 needs 1, 128 needs 64.",
        check=check_access_rights,
    )
    sign_message: bool = setting(
        False, doc="SignMessage: devices add an Mdm-Signature header to every request."
    )
    check_out_when_removed: bool = setting(
        True, doc="CheckOutWhenRemoved: devices send CheckOut when the profile is removed."
    )
    use_development_apns: bool = setting(
        False,
        doc="UseDevelopmentAPNS. Keep false with a push certificate from Apple's "
        "portal, which issues production certificates only.",
    )
    include_server_ca: bool = setting(
        True,
        doc="Put the CA certificates of the server certificate's chain in the profile "
        "(needed unless the server certificate is from a public CA).",
    )
    server_url: str = setting(
        "",
        doc="ServerURL put in profiles; empty: https://<hostname>:<device port><path>. Set "
        "it when devices reach the appliance through a proxy.",
        check=check_https_url_or_empty,
    )
    checkin_url: str = setting(
        "",
        doc="CheckInURL put in profiles; empty: derived like server_url.",
        check=check_https_url_or_empty,
    )
    identity_days: float = setting(
        365.0,
        doc="Validity of the device identities issued in profiles, in days.",
        check=in_range(0.0001, 3650),
    )
    renew_within_days: int = setting(
        30,
        doc="Renew a device identity (InstallProfile of a fresh enrollment profile) this "
        "many days before it expires.",
        check=in_range(1, 365),
    )
    renewal_interval: float = setting(
        3600.0,
        doc="Seconds between runs of the identity renewal job.",
        check=in_range(10, 86400),
    )
    signing_cert: Path = setting(
        Path("pki/profile-signing.pem"),
        doc="Certificate that signs served profiles (made by init from the appliance CA, or "
        "your own).",
    )
    signing_key: Path = setting(
        Path("pki/profile-signing.key"), doc="Private key of signing_cert; keep it 0600."
    )


def check_gateway(value: str) -> None:
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname or parts.path not in ("", "/"):
        raise ValueError(f"must be an https:// URL with no path, got {value!r}")


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


def check_webhook_urls(values: tuple[str, ...]) -> None:
    for value in values:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"each must be an http:// or https:// URL, got {value!r}")


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


@dataclass(frozen=True)
class LogSection:
    """Logging to standard output (journald under systemd)."""

    format: str = setting(
        "text",
        doc="text: readable lines. json: one JSON object per line, for log shippers. The "
        "--log-format option overrides it.",
        check=one_of(LOG_FORMATS),
    )
    level: str = setting("info", doc="The least severe level logged.", check=one_of(LOG_LEVELS))


SECTIONS: dict[str, type] = {
    "appliance": ApplianceSection,
    "store": StoreSection,
    "pki": PKISection,
    "admin": AdminSection,
    "device": DeviceSection,
    "proxy": ProxySection,
    "enrollment": EnrollmentSection,
    "apns": APNsSection,
    "webhooks": WebhooksSection,
    "retention": RetentionSection,
    "log": LogSection,
}


@dataclass(frozen=True)
class Config:
    """A loaded, validated config. Paths are absolute."""

    path: Path
    appliance: ApplianceSection
    store: StoreSection
    pki: PKISection
    admin: AdminSection
    device: DeviceSection
    proxy: ProxySection
    enrollment: EnrollmentSection
    apns: APNsSection
    webhooks: WebhooksSection
    retention: RetentionSection
    log: LogSection
    warnings: tuple[str, ...] = ()

    def admin_url(self) -> str:
        host = self.admin.bind
        if ":" in host:
            host = f"[{host}]"
        scheme = "https" if self.admin.tls else "http"
        return f"{scheme}://{host}:{self.admin.port}"

    def device_url(self, path: str) -> str:
        port = "" if self.device.port == 443 else f":{self.device.port}"
        return f"https://{self.appliance.hostname}{port}{path}"

    def profile_identifier(self) -> str:
        return self.enrollment.profile_identifier or (
            f"mdmappliance.{self.appliance.hostname}.enrollment"
        )

    def enrollment_url(self, token: str) -> str:
        port = "" if self.enrollment.port == 443 else f":{self.enrollment.port}"
        return f"https://{self.appliance.hostname}{port}/enroll/{token}"

    def apns_ca_file(self) -> Path | None:
        if not self.apns.ca_file:
            return None
        return _resolve(self.appliance.data_dir, Path(self.apns.ca_file))

    def push_topic(self) -> str:
        """The push topic: ``[device] topic``, else the push certificate's (its UID)."""
        if self.device.topic:
            return self.device.topic
        from mdmappliance.pki.pushcert import PushCertError, read_push_certificate

        try:
            return read_push_certificate(self.apns.cert_file).topic
        except (PushCertError, OSError):
            return ""

    def users_file(self) -> Path | None:
        """The resolved users file, or None when local network users are not configured."""
        if not self.device.users_file:
            return None
        return _resolve(self.appliance.data_dir, Path(self.device.users_file))

    def read_webhook_secret(self) -> bytes:
        return _read_api_key(self.webhooks.secret_file).encode()

    def read_admin_api_key(self) -> str:
        return _read_api_key(self.admin.api_key_file)

    def api_keys(self) -> dict[str, tuple[str, str]]:
        """Every admin API key by name: (key, role), role 'full' or 'read'."""
        keys = {"admin": (self.read_admin_api_key(), "full")}
        for name, role, path in _extra_keys(self):
            keys[name] = (_read_api_key(path), role)
        return keys


def _type_name(annotation: Any) -> str:
    return {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "true or false",
        Path: "a path (string)",
        tuple[str, ...]: "an array of strings",
        tuple[Path, ...]: "an array of paths (strings)",
    }[annotation]


def _convert(annotation: Any, raw: Any) -> Any:
    """The TOML value as ``annotation``, or ValueError naming what was expected."""
    ok = {
        bool: isinstance(raw, bool),
        int: isinstance(raw, int) and not isinstance(raw, bool),
        float: isinstance(raw, int | float) and not isinstance(raw, bool),
        str: isinstance(raw, str),
        Path: isinstance(raw, str) and raw != "",
        tuple[str, ...]: isinstance(raw, list) and all(isinstance(v, str) for v in raw),
        tuple[Path, ...]: isinstance(raw, list) and all(isinstance(v, str) and v for v in raw),
    }[annotation]
    if not ok:
        raise ValueError(f"must be {_type_name(annotation)}, got {_describe(raw)}")
    if annotation is float:
        return float(raw)
    if annotation is Path:
        return Path(raw)
    if annotation == tuple[Path, ...]:
        return tuple(Path(v) for v in raw)
    if annotation == tuple[str, ...]:
        return tuple(raw)
    return raw


def _describe(raw: Any) -> str:
    kinds = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    for kind, name in kinds.items():
        if isinstance(raw, kind):
            return f"{name} ({raw!r})"
    if isinstance(raw, dict):
        return "a table"
    if isinstance(raw, list):
        return "an array"
    return type(raw).__name__


def _load_section(path: Path, name: str, cls: type, raw: Any) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(path, name, f"must be a table ([{name}]), got {_describe(raw)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            known = ", ".join(fields)
            raise ConfigError(path, f"{name}.{key}", f"unknown key (known keys: {known})")
    values: dict[str, Any] = {}
    for fname, f in fields.items():
        key = f"{name}.{fname}"
        if fname not in raw:
            if f.default is dataclasses.MISSING:
                raise ConfigError(path, key, "required key is missing")
            continue
        try:
            value = _convert(hints[fname], raw[fname])
            check = f.metadata["check"]
            if check is not None:
                check(value)
        except ValueError as e:
            raise ConfigError(path, key, str(e)) from None
        values[fname] = value
    return cls(**values)


def parse_config(path: Path, document: Mapping[str, Any]) -> Config:
    """Validate a parsed TOML document's shape and values (no file system checks)."""
    for name in document:
        if name not in SECTIONS:
            raise ConfigError(path, name, f"unknown section (known: {', '.join(SECTIONS)})")
    if "appliance" not in document:
        raise ConfigError(path, "appliance", "required section is missing")
    sections = {
        name: _load_section(path, name, cls, document.get(name, {}))
        for name, cls in SECTIONS.items()
    }
    return Config(path=path, **sections)


def _resolve(base: Path, value: Path) -> Path:
    return value if value.is_absolute() else base / value


def _resolve_paths(config: Config) -> Config:
    data_dir = _resolve(config.path.parent.absolute(), config.appliance.data_dir)

    def resolved(value: Any) -> Any:
        if isinstance(value, Path):
            return _resolve(data_dir, value)
        if isinstance(value, tuple) and all(isinstance(v, Path) for v in value):
            return tuple(_resolve(data_dir, v) for v in value)
        return value

    def paths_of(section: Any) -> Any:
        updates = {f.name: resolved(getattr(section, f.name)) for f in dataclasses.fields(section)}
        return dataclasses.replace(section, **updates)

    return dataclasses.replace(
        config,
        appliance=dataclasses.replace(config.appliance, data_dir=data_dir),
        store=paths_of(config.store),
        pki=paths_of(config.pki),
        admin=paths_of(config.admin),
        device=paths_of(config.device),
        enrollment=paths_of(config.enrollment),
        apns=paths_of(config.apns),
        webhooks=paths_of(config.webhooks),
    )


def _check_readable_file(config_path: Path, key: str, path: Path) -> None:
    if not path.exists():
        raise ConfigError(config_path, key, f"{path} does not exist")
    if not path.is_file():
        raise ConfigError(config_path, key, f"{path} is not a regular file")
    if not os.access(path, os.R_OK):
        raise ConfigError(config_path, key, f"{path} is not readable by this user")
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as e:
        raise ConfigError(config_path, key, f"cannot read {path}: {e.strerror}") from None


def _extra_keys(config: Config) -> list[tuple[str, str, Path]]:
    """``[admin] extra_keys`` as (name, role, resolved file)."""
    found = []
    names = {"admin"}
    for entry in config.admin.extra_keys:
        name, _, rest = entry.partition(":")
        role, _, file = rest.partition(":")
        if (
            not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name)
            or role not in ("full", "read")
            or not file
        ):
            raise ConfigError(
                config.path,
                "admin.extra_keys",
                f"{entry!r} must be 'NAME:ROLE:FILE' with ROLE full or read",
            )
        if name in names:
            raise ConfigError(config.path, "admin.extra_keys", f"the name {name!r} is used twice")
        names.add(name)
        found.append((name, role, _resolve(config.appliance.data_dir, Path(file))))
    return found


def _check_api_key_file(config: Config, key: str, path: Path) -> None:
    _check_readable_file(config.path, key, path)
    try:
        api_key = _read_api_key(path)
    except UnicodeDecodeError:
        raise ConfigError(config.path, key, f"{path} is not text") from None
    if len(api_key) < MIN_API_KEY_LENGTH or any(c.isspace() for c in api_key):
        raise ConfigError(
            config.path,
            key,
            f"{path} must hold one key of at least {MIN_API_KEY_LENGTH} characters without spaces",
        )


def _read_api_key(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="strict").strip()


def _check_pair(
    config: Config, cert_key: str, cert_path: Path, key_key: str, key_path: Path
) -> Any:
    """Load a certificate and its key, insisting they belong together."""
    _check_readable_file(config.path, cert_key, cert_path)
    _check_readable_file(config.path, key_key, key_path)
    try:
        cert = pki.read_certificate(cert_path)
    except pki.PKIError as e:
        raise ConfigError(config.path, cert_key, str(e)) from None
    try:
        key = pki.read_private_key(key_path)
    except pki.PKIError as e:
        raise ConfigError(config.path, key_key, str(e)) from None
    if not pki.key_matches_certificate(key, cert):
        raise ConfigError(config.path, key_key, f"{key_path} is not the private key of {cert_path}")
    return cert


def _private_key_mode_warning(key: str, path: Path) -> list[str]:
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        return [f"{key}: {path} is mode {mode:04o}; private keys should be 0600"]
    return []


def _cross_check(config: Config) -> Config:
    """File system checks: files exist and are readable, keys match certificates."""
    warnings: list[str] = []
    data_dir = config.appliance.data_dir
    if not data_dir.is_dir():
        raise ConfigError(config.path, "appliance.data_dir", f"{data_dir} is not a directory")
    if not os.access(data_dir, os.W_OK | os.X_OK):
        raise ConfigError(config.path, "appliance.data_dir", f"{data_dir} is not writable")
    db_dir = config.store.path.parent
    if not db_dir.is_dir():
        raise ConfigError(config.path, "store.path", f"directory {db_dir} does not exist")
    if config.store.path.exists() and not config.store.path.is_file():
        raise ConfigError(config.path, "store.path", f"{config.store.path} is not a file")

    p = config.pki
    ca = _check_pair(config, "pki.ca_cert", p.ca_cert, "pki.ca_key", p.ca_key)
    if not pki.is_ca_certificate(ca):
        raise ConfigError(
            config.path, "pki.ca_cert", f"{p.ca_cert} is not a CA certificate (basicConstraints)"
        )
    server = _check_pair(config, "pki.server_cert", p.server_cert, "pki.server_key", p.server_key)
    if not pki.certificate_covers_hostname(server, config.appliance.hostname):
        names = ", ".join(pki.certificate_names(server)) or "none"
        raise ConfigError(
            config.path,
            "pki.server_cert",
            f"{p.server_cert} does not name hostname {config.appliance.hostname!r} in its "
            f"subjectAltName (it names: {names})",
        )
    warnings += _private_key_mode_warning("pki.ca_key", p.ca_key)
    warnings += _private_key_mode_warning("pki.server_key", p.server_key)
    if server.not_valid_after_utc < datetime.datetime.now(datetime.UTC):
        warnings.append(f"pki.server_cert: {p.server_cert} expired on {server.not_valid_after_utc}")

    key_path = config.admin.api_key_file
    _check_api_key_file(config, "admin.api_key_file", key_path)
    warnings += _private_key_mode_warning("admin.api_key_file", key_path)
    for _, _, path in _extra_keys(config):
        _check_api_key_file(config, "admin.extra_keys", path)
        warnings += _private_key_mode_warning("admin.extra_keys", path)
    warnings += _check_device(config)
    warnings += _check_enrollment(config)
    warnings += _check_apns(config)
    if config.webhooks.urls:
        _check_api_key_file(config, "webhooks.secret_file", config.webhooks.secret_file)
        warnings += _private_key_mode_warning("webhooks.secret_file", config.webhooks.secret_file)
    return dataclasses.replace(config, warnings=tuple(warnings))


def _check_enrollment(config: Config) -> list[str]:
    e = config.enrollment
    _check_pair(
        config, "enrollment.signing_cert", e.signing_cert, "enrollment.signing_key", e.signing_key
    )
    if e.port == config.device.port and e.bind == config.device.bind:
        raise ConfigError(
            config.path,
            "enrollment.port",
            "the enrollment listener needs its own port (it asks for no client certificate)",
        )
    warnings = _private_key_mode_warning("enrollment.signing_key", e.signing_key)
    if not config.push_topic():
        warnings.append(
            "no push topic (device.topic is empty and there is no push certificate): "
            "enrollment profiles cannot be served until `mdmappliance pushcert import`"
        )
    return warnings


def _check_apns(config: Config) -> list[str]:
    from mdmappliance.pki.pushcert import PushCertError, read_push_certificate

    a = config.apns
    ca_file = config.apns_ca_file()
    if ca_file is not None:
        _check_readable_file(config.path, "apns.ca_file", ca_file)
        try:
            pki.read_certificates(ca_file)
        except pki.PKIError as e:
            raise ConfigError(config.path, "apns.ca_file", str(e)) from None
    if not a.cert_file.exists():
        if not config.device.topic:
            return []  # the missing push topic is already warned about, with the remedy
        return [
            f"apns.cert_file: {a.cert_file} does not exist: no pushes until "
            "`mdmappliance pushcert import` (devices are still served when they poll)"
        ]
    _check_pair(config, "apns.cert_file", a.cert_file, "apns.key_file", a.key_file)
    try:
        push = read_push_certificate(a.cert_file)
    except PushCertError as e:
        raise ConfigError(config.path, "apns.cert_file", str(e)) from None
    if config.device.topic and config.device.topic != push.topic:
        raise ConfigError(
            config.path,
            "device.topic",
            f"is {config.device.topic!r} but the push certificate's topic is {push.topic!r}; "
            "leave device.topic empty to use the certificate's",
        )
    warnings = _private_key_mode_warning("apns.key_file", a.key_file)
    days = push.days_left()
    if days < 0:
        expired = push.not_after
        warnings.append(f"apns.cert_file: the push certificate expired on {expired:%Y-%m-%d}")
    elif days < 30:
        warnings.append(f"apns.cert_file: the push certificate expires in {days:.0f} days")
    return warnings


def _check_device(config: Config) -> list[str]:
    from mdmappliance.pki.escrow import EscrowError, read_key
    from mdmappliance.pki.users import UsersFileError, read_users_file

    d = config.device
    for path in d.extra_ca_files:
        _check_readable_file(config.path, "device.extra_ca_files", path)
        try:
            certs = pki.read_certificates(path)
        except pki.PKIError as e:
            raise ConfigError(config.path, "device.extra_ca_files", str(e)) from None
        if not all(pki.is_ca_certificate(c) for c in certs):
            raise ConfigError(
                config.path, "device.extra_ca_files", f"{path} holds a certificate that is not a CA"
            )
    key_path = d.unlock_key_file
    if not key_path.exists():
        raise ConfigError(
            config.path,
            "device.unlock_key_file",
            f"{key_path} does not exist; `mdmappliance init` creates it",
        )
    _check_readable_file(config.path, "device.unlock_key_file", key_path)
    try:
        read_key(key_path)
    except EscrowError as e:
        raise ConfigError(config.path, "device.unlock_key_file", str(e)) from None
    users_file = config.users_file()
    if users_file is not None:
        _check_readable_file(config.path, "device.users_file", users_file)
        try:
            if not read_users_file(users_file, d.users_realm):
                raise ConfigError(
                    config.path,
                    "device.users_file",
                    f"{users_file} has no user in realm {d.users_realm!r}",
                )
        except (UsersFileError, UnicodeDecodeError) as e:
            raise ConfigError(config.path, "device.users_file", str(e)) from None
    if config.proxy.enabled and config.proxy.port == d.port and config.proxy.bind == d.bind:
        raise ConfigError(config.path, "proxy.port", "the proxy listener needs its own port")
    return _private_key_mode_warning("device.unlock_key_file", key_path)


def load_config(path: Path | str) -> Config:
    """Read, validate and cross-check the config file; ConfigError names the key at fault."""
    path = Path(path).absolute()
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ConfigError(path, None, f"cannot read config file: {e.strerror}") from None
    try:
        document = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(path, None, "invalid TOML: the file is not UTF-8") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(path, None, f"invalid TOML: {e}") from None
    return _cross_check(_resolve_paths(parse_config(path, document)))


def _toml_value(value: Any) -> str:
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    text = str(value)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_config(values: Mapping[str, Mapping[str, Any]], header: str) -> str:
    """The documented config file: every key with its help and default.

    Keys given in ``values`` are written out; the others stay commented at their default,
    so an admin sees every knob without the file pinning today's defaults.
    """
    out = [f"# {line}".rstrip() for line in header.splitlines()]
    for name, cls in SECTIONS.items():
        given = values.get(name, {})
        about = inspect.cleandoc(cls.__doc__ or "").splitlines()
        out += ["", *(f"# {line}".rstrip() for line in about), f"[{name}]"]
        for f in dataclasses.fields(cls):
            doc = f.metadata["doc"]
            if f.default is dataclasses.MISSING:
                doc += " Required."
            else:
                doc += f" Default: {_toml_value(f.default)}."
            out += textwrap.wrap(doc, width=98, initial_indent="# ", subsequent_indent="# ")
            if f.name in given:
                out.append(f"{f.name} = {_toml_value(given[f.name])}")
            elif f.default is dataclasses.MISSING:
                out.append(f"{f.name} = {_toml_value(f.metadata['example'])}")
            else:
                out.append(f"#{f.name} = {_toml_value(f.default)}")
    return "\n".join(out).rstrip("\n") + "\n"


EXAMPLE_HEADER = """\
mdmappliance configuration.

This is the documented example; `mdmappliance init` writes one like it for an installation.
Every key is listed with its help text and default. A commented key is at its default.
Unknown keys are refused: check spelling when the service says so.
Regenerate this file with `make conf` after changing the schema in mdmappliance/config.py."""


def render_example() -> str:
    return render_config({}, EXAMPLE_HEADER)
