"""The schema of the appliance itself: its state directory, database, PKI and logging."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mdmappliance.config.fields import check_hostname, in_range, one_of, setting

SYNCHRONOUS_MODES = ("OFF", "NORMAL", "FULL", "EXTRA")
LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("debug", "info", "warn", "error", "critical")


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
class LogSection:
    """Logging to standard output (journald under systemd)."""

    format: str = setting(
        "text",
        doc="text: readable lines. json: one JSON object per line, for log shippers. The "
        "--log-format option overrides it.",
        check=one_of(LOG_FORMATS),
    )
    level: str = setting("info", doc="The least severe level logged.", check=one_of(LOG_LEVELS))
