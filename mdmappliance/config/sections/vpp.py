"""The schema of VPP App Assignment: the sToken, the service, and the sync looping call."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mdmappliance.config.fields import in_range, setting


def check_https_url(value: str) -> None:
    if not value.startswith("https://") or " " in value:
        raise ValueError(f"must be an https:// URL, got {value!r}")


@dataclass(frozen=True)
class VPPSection:
    """Apple's Volume Purchase Program (VPP App Assignment services): `mdmappliance vpp token
    import` of the sToken file; the sync runs once a token is in place."""

    enabled: bool = setting(True, doc="Run the VPP sync when an sToken is imported.")
    service_config_url: str = setting(
        "https://vpp.itunes.apple.com/WebObjects/MZFinance.woa/wa/VPPServiceConfigSrv",
        doc="VPPServiceConfigSrv, the only fixed URL (the others come from it).",
        check=check_https_url,
    )
    ca_file: str = setting(
        "",
        doc="CA certificates (PEM) the VPP service's certificate must chain to. Empty: the "
        "system's trust store.",
    )
    token_file: Path = setting(
        Path("vpp/stoken"), doc="The sToken (`vpp token import` writes it, mode 0600)."
    )
    sync_interval: float = setting(
        3600.0,
        doc="Seconds between VPP syncs (POST /v1/vpp/sync or `mdmappliance vpp sync` runs one "
        "at once).",
        check=in_range(60, 86400),
    )
    retry_base_seconds: float = setting(
        30.0,
        doc="First wait after Apple answered 503/429 or could not be reached; it doubles up "
        "to the sync interval.",
        check=in_range(1, 3600),
    )
