"""``mdmappliance init``: lay out a complete installation in a data directory.

Each artifact (config, CA, server certificate, admin API key, database) is created when
missing and kept when present, so running init again changes nothing. Nothing holding a key
is ever overwritten without ``force``; with it, the old file is kept beside the new one.
"""

from __future__ import annotations

import datetime
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mdmappliance import pki
from mdmappliance.cli.errors import InitError
from mdmappliance.config import (
    AdminSection,
    Config,
    DeviceSection,
    EnrollmentSection,
    PKISection,
    WebhooksSection,
    check_topic,
    load_config,
    render_config,
)
from mdmappliance.core.files import PUBLIC_MODE, SECRET_MODE, write_atomic
from mdmappliance.core.timestamps import utc_timestamp
from mdmappliance.pki import escrow
from mdmappliance.store import Store, Tx
from mdmappliance.store.settings import INITIALIZED_AT, INSTALLATION_ID

CONFIG_NAME = "mdmappliance.toml"
CONFIG_MODE = 0o640
CONFIG_HEADER = """\
mdmappliance configuration, written by `mdmappliance init` on {date}.

Every key is listed with its help text and default; a commented key is at its default.
Relative paths are taken from [appliance] data_dir. Check the file with
`mdmappliance check-config --config {path}` after editing it."""


@dataclass
class InitRequest:
    data_dir: Path
    hostname: str
    config_path: Path | None = None
    server_cert: Path | None = None
    server_key: Path | None = None
    admin_port: int | None = None
    device_port: int | None = None
    enrollment_port: int | None = None
    #: ``[device] topic``: profiles are served with it before a push certificate exists
    #: (the demo's); pushes still need the real certificate, whose topic must match.
    topic: str | None = None
    force: bool = False


@dataclass
class InitResult:
    config: Config
    created: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.created or self.replaced)


def _set_aside(path: Path, stamp: str) -> Path:
    """Move an existing file out of the way instead of destroying it."""
    aside = path.with_name(f"{path.name}.replaced-{stamp}")
    path.rename(aside)
    return aside


class _Installer:
    """Creates what is missing, keeps what is there, and remembers which was which."""

    def __init__(self, force: bool) -> None:
        self.force = force
        self.stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
        self.created: list[str] = []
        self.kept: list[str] = []
        self.replaced: list[str] = []

    def ensure(self, label: str, paths: tuple[Path, ...], make: Callable[[], None]) -> bool:
        """Run ``make`` unless all of ``paths`` exist; with force, set them aside first.

        Returns whether ``make`` ran.
        """
        present = [p for p in paths if p.exists()]
        if present and not self.force:
            if len(present) != len(paths):
                missing = ", ".join(str(p) for p in paths if not p.exists())
                raise InitError(
                    f"{label}: {present[0]} exists but {missing} does not; restore it, or run "
                    "init with --force to make a new pair"
                )
            self.kept.append(f"{label}: {paths[0]}")
            return False
        for path in present:
            aside = _set_aside(path, self.stamp)
            self.replaced.append(f"{label}: {path} (the old one is now {aside.name})")
        if not present:
            self.created.append(f"{label}: {paths[0]}")
        make()
        return True

    def ensure_issued(
        self,
        label: str,
        cert_path: Path,
        key_path: Path,
        ca_paths: tuple[Path, Path],
        new_ca: bool,
        issue: Callable[[pki.IssuedPair], pki.IssuedPair],
    ) -> None:
        """A certificate and key from the appliance CA; reissued when the CA is new (a new CA
        cannot vouch for the old certificate)."""

        def make() -> None:
            issued = issue(pki.read_issuer(*ca_paths))
            write_atomic(key_path, pki.private_key_pem(issued.key), SECRET_MODE)
            write_atomic(cert_path, pki.certificate_pem(issued.certificate), PUBLIC_MODE)

        if new_ca and cert_path.exists():
            self.reissue(label, (cert_path, key_path), make)
        else:
            self.ensure(label, (cert_path, key_path), make)

    def reissue(self, label: str, paths: tuple[Path, ...], make: Callable[[], None]) -> None:
        """Replace ``paths`` even without force: what they hold is no longer valid."""
        for path in paths:
            if path.exists():
                aside = _set_aside(path, self.stamp)
                self.replaced.append(f"{label}: {path} (reissued; the old one is {aside.name})")
        make()


def _check_own_server_pair(request: InitRequest) -> None:
    assert request.server_cert is not None and request.server_key is not None
    try:
        cert = pki.read_certificate(request.server_cert)
        key = pki.read_private_key(request.server_key)
    except OSError as e:
        raise InitError(f"cannot read {e.filename}: {e.strerror}") from None
    except pki.PKIError as e:
        raise InitError(str(e)) from None
    if not pki.key_matches_certificate(key, cert):
        raise InitError(f"{request.server_key} is not the private key of {request.server_cert}")
    if not pki.certificate_covers_hostname(cert, request.hostname):
        names = ", ".join(pki.certificate_names(cert)) or "none"
        raise InitError(
            f"{request.server_cert} does not name {request.hostname!r} in its subjectAltName "
            f"(it names: {names}); devices would refuse it"
        )


def _check_request(request: InitRequest) -> None:
    """Refuse a request that cannot make a working installation before anything is written."""
    own_server = request.server_cert is not None or request.server_key is not None
    if own_server and (request.server_cert is None or request.server_key is None):
        raise InitError("--server-cert and --server-key go together")
    if own_server:
        _check_own_server_pair(request)
    if request.topic is not None:
        try:
            check_topic(request.topic)
        except ValueError as e:
            raise InitError(f"--topic {e}") from None


def _make_data_dir(request: InitRequest) -> Path:
    """The data directory, made if missing, as an absolute path (the config stores it)."""
    data_dir = request.data_dir.absolute()
    if data_dir.exists() and not data_dir.is_dir():
        raise InitError(f"{data_dir} exists and is not a directory")
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
    return data_dir


def _ensure_ca(inst: _Installer, hostname: str, ca_cert: Path, ca_key: Path) -> bool:
    """The appliance CA; returns whether it was made now (what it issued must then be too)."""

    def make_ca() -> None:
        ca = pki.create_ca(f"mdmappliance CA ({hostname})")
        write_atomic(ca_key, pki.private_key_pem(ca.key), SECRET_MODE)
        write_atomic(ca_cert, pki.certificate_pem(ca.certificate), PUBLIC_MODE)

    return inst.ensure("appliance CA", (ca_cert, ca_key), make_ca)


def _ensure_server_certificate(
    inst: _Installer,
    request: InitRequest,
    data_dir: Path,
    ca_paths: tuple[Path, Path],
    new_ca: bool,
) -> dict[str, object]:
    """The server's TLS pair: the operator's own (returned as the [pki] keys pointing at it,
    nothing written), or one issued by the appliance CA (no [pki] keys: the defaults)."""
    if request.server_cert is not None and request.server_key is not None:
        return {
            "server_cert": str(request.server_cert.absolute()),
            "server_key": str(request.server_key.absolute()),
        }
    defaults = PKISection()
    server_cert, server_key = data_dir / defaults.server_cert, data_dir / defaults.server_key

    inst.ensure_issued(
        "server certificate",
        server_cert,
        server_key,
        ca_paths,
        new_ca,
        lambda ca: pki.issue_server_certificate(ca, request.hostname),
    )
    return {}


def _ensure_config_file(
    inst: _Installer,
    request: InitRequest,
    data_dir: Path,
    config_path: Path,
    pki_values: dict[str, object],
) -> None:
    """The config file, holding only what differs from the defaults."""

    def make_config() -> None:
        values: dict[str, dict[str, object]] = {
            "appliance": {"data_dir": str(data_dir), "hostname": request.hostname},
        }
        if pki_values:
            values["pki"] = pki_values
        if request.admin_port is not None:
            values["admin"] = {"port": request.admin_port}
        device: dict[str, object] = {}
        if request.device_port is not None:
            device["port"] = request.device_port
        if request.topic:
            device["topic"] = request.topic
        if device:
            values["device"] = device
        if request.enrollment_port is not None:
            values["enrollment"] = {"port": request.enrollment_port}
        header = CONFIG_HEADER.format(date=datetime.date.today().isoformat(), path=config_path)
        write_atomic(config_path, render_config(values, header).encode(), CONFIG_MODE)

    inst.ensure("config file", (config_path,), make_config)


def initialize(request: InitRequest) -> InitResult:
    """Create what is missing of an installation and return what was done."""
    _check_request(request)
    data_dir = _make_data_dir(request)
    config_path = (request.config_path or data_dir / CONFIG_NAME).absolute()
    inst = _Installer(request.force)
    defaults = PKISection()
    ca_cert, ca_key = data_dir / defaults.ca_cert, data_dir / defaults.ca_key
    new_ca = _ensure_ca(inst, request.hostname, ca_cert, ca_key)
    pki_values = _ensure_server_certificate(inst, request, data_dir, (ca_cert, ca_key), new_ca)

    api_key_path = data_dir / AdminSection().api_key_file

    def make_api_key() -> None:
        write_atomic(api_key_path, (secrets.token_urlsafe(32) + "\n").encode(), SECRET_MODE)

    inst.ensure("admin API key", (api_key_path,), make_api_key)

    webhook_secret_path = data_dir / WebhooksSection().secret_file

    def make_webhook_secret() -> None:
        write_atomic(webhook_secret_path, (secrets.token_hex(32) + "\n").encode(), SECRET_MODE)

    inst.ensure("webhook signing secret", (webhook_secret_path,), make_webhook_secret)

    signing = EnrollmentSection()
    signing_cert, signing_key = data_dir / signing.signing_cert, data_dir / signing.signing_key

    inst.ensure_issued(
        "profile-signing certificate",
        signing_cert,
        signing_key,
        (ca_cert, ca_key),
        new_ca,
        lambda ca: pki.issue_signing_certificate(
            ca, f"mdmappliance profile signing ({request.hostname})"
        ),
    )

    unlock_key_path = data_dir / DeviceSection().unlock_key_file
    inst.ensure(
        "UnlockToken escrow key",
        (unlock_key_path,),
        lambda: write_atomic(unlock_key_path, escrow.new_key(), SECRET_MODE),
    )

    _ensure_config_file(inst, request, data_dir, config_path, pki_values)
    config = load_config(config_path)
    _initialize_database(config, request.hostname, inst)
    return InitResult(config, inst.created, inst.kept, inst.replaced)


def _initialize_database(config: Config, hostname: str, inst: _Installer) -> None:
    store = Store.configured(config.store)
    existed = config.store.path.exists()
    report = store.open()
    try:
        store.transaction_now(_record_installation, hostname)
    finally:
        store.close()
    label = f"database: {config.store.path}"
    if not existed:
        inst.created.append(f"{label} (schema {report.to_version})")
    elif report.upgraded:
        inst.replaced.append(
            f"{label} upgraded from schema {report.from_version} to {report.to_version} "
            f"(backup: {report.backup})"
        )
    else:
        inst.kept.append(f"{label} (schema {report.to_version})")


def _record_installation(tx: Tx, hostname: str) -> None:
    if tx.settings.get(INSTALLATION_ID) is not None:
        return
    tx.settings.set(INSTALLATION_ID, str(uuid.uuid4()))
    tx.settings.set(INITIALIZED_AT, utc_timestamp())
    tx.events.record("appliance.initialized", detail={"hostname": hostname})
