"""The loaded config (``Config``), its sections in file order, and what it answers."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from mdmappliance.config.errors import ConfigError
from mdmappliance.config.sections.admin import AdminSection
from mdmappliance.config.sections.apns import APNsSection
from mdmappliance.config.sections.appliance import (
    ApplianceSection,
    LogSection,
    PKISection,
    StoreSection,
)
from mdmappliance.config.sections.dep import DEPSection
from mdmappliance.config.sections.device import DeviceSection, ProxySection
from mdmappliance.config.sections.enrollment import EnrollmentSection
from mdmappliance.config.sections.scep import SCEPSection
from mdmappliance.config.sections.vpp import VPPSection
from mdmappliance.config.sections.webhooks import RetentionSection, WebhooksSection
from mdmappliance.pki.pushcert import PushCertError, read_push_certificate

SECTIONS: dict[str, type] = {
    "appliance": ApplianceSection,
    "store": StoreSection,
    "pki": PKISection,
    "admin": AdminSection,
    "device": DeviceSection,
    "proxy": ProxySection,
    "enrollment": EnrollmentSection,
    "scep": SCEPSection,
    "dep": DEPSection,
    "vpp": VPPSection,
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
    scep: SCEPSection
    dep: DEPSection
    vpp: VPPSection
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

    def scep_url(self) -> str:
        if self.scep.url:
            return self.scep.url
        port = "" if self.enrollment.port == 443 else f":{self.enrollment.port}"
        return f"https://{self.appliance.hostname}{port}{self.scep.path}"

    def dep_ca_file(self) -> Path | None:
        if not self.dep.ca_file:
            return None
        return _resolve(self.appliance.data_dir, Path(self.dep.ca_file))

    def vpp_ca_file(self) -> Path | None:
        if not self.vpp.ca_file:
            return None
        return _resolve(self.appliance.data_dir, Path(self.vpp.ca_file))

    def dep_default_profile(self) -> Path | None:
        if not self.dep.default_profile:
            return None
        return _resolve(self.appliance.data_dir, Path(self.dep.default_profile))

    def dep_enroll_url(self) -> str:
        port = "" if self.enrollment.port == 443 else f":{self.enrollment.port}"
        return f"https://{self.appliance.hostname}{port}{self.dep.enroll_path}"

    def apns_ca_file(self) -> Path | None:
        if not self.apns.ca_file:
            return None
        return _resolve(self.appliance.data_dir, Path(self.apns.ca_file))

    def push_topic(self) -> str:
        """The push topic: ``[device] topic``, else the push certificate's (its UID)."""
        if self.device.topic:
            return self.device.topic
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


# Config's own helpers. The loader and the cross-checks use them too; they live here
# because those modules import Config, so Config cannot import them.
def _resolve(base: Path, value: Path) -> Path:
    return value if value.is_absolute() else base / value


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


def _read_api_key(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="strict").strip()
