"""The file-system cross-checks of a parsed config: files readable, keys matching certificates."""

from __future__ import annotations

import dataclasses
import datetime
import os
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from mdmappliance import pki
from mdmappliance.config.errors import ConfigError
from mdmappliance.config.model import Config, _extra_keys, _read_api_key
from mdmappliance.config.sections.admin import MIN_API_KEY_LENGTH
from mdmappliance.pki.escrow import EscrowError, read_key
from mdmappliance.pki.pushcert import PushCertError, read_push_certificate
from mdmappliance.pki.users import UsersFileError, read_users_file


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
    warnings += _check_scep(config, ca)
    _check_dep(config)
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


def _check_ca_file(config: Config, key: str, ca_file: Path | None) -> None:
    """A CA bundle an outbound connection trusts (APNs, DEP), when one is configured."""
    if ca_file is None:
        return
    _check_readable_file(config.path, key, ca_file)
    try:
        pki.read_certificates(ca_file)
    except pki.PKIError as e:
        raise ConfigError(config.path, key, str(e)) from None


def _check_dep(config: Config) -> None:
    if config.dep.require_login and config.users_file() is None:
        raise ConfigError(
            config.path,
            "dep.require_login",
            "needs [device] users_file (the local users the login is checked against)",
        )
    profile = config.dep_default_profile()
    if profile is not None:
        _check_readable_file(config.path, "dep.default_profile", profile)
    _check_ca_file(config, "dep.ca_file", config.dep_ca_file())
    _check_ca_file(config, "vpp.ca_file", config.vpp_ca_file())


def _check_scep(config: Config, ca: x509.Certificate) -> list[str]:
    s = config.scep
    if config.enrollment.identity == "scep" and not s.enabled:
        raise ConfigError(
            config.path,
            "enrollment.identity",
            'is "scep" but [scep] enabled is false; enable SCEP or use "pkcs12"',
        )
    if not s.enabled:
        return []
    if s.path == "/enroll" or s.path.startswith("/enroll/"):
        raise ConfigError(config.path, "scep.path", f"{s.path} is the enrollment links' path")
    if not isinstance(ca.public_key(), rsa.RSAPublicKey):
        raise ConfigError(
            config.path,
            "pki.ca_key",
            "SCEP needs an RSA CA key (clients encrypt their requests to it); disable [scep] "
            'and use [enrollment] identity = "pkcs12" with this CA',
        )
    try:
        usage = ca.extensions.get_extension_for_class(x509.KeyUsage).value
        encipherment = usage.key_encipherment
    except x509.ExtensionNotFound:
        encipherment = True  # no keyUsage: every usage is allowed
    if not encipherment:
        return [
            f"pki.ca_cert: {config.pki.ca_cert} has no keyEncipherment in its keyUsage, which "
            "RFC 8894 asks of a SCEP CA (clients encrypt requests to it); strict clients may "
            "refuse it. `mdmappliance init` makes CAs with it since SCEP arrived."
        ]
    return []


def _check_apns(config: Config) -> list[str]:
    a = config.apns
    _check_ca_file(config, "apns.ca_file", config.apns_ca_file())
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
