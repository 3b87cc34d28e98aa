"""The schema of the admin API: its listener and the API keys it accepts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mdmappliance.config.fields import check_ip_address, in_range, setting

MIN_API_KEY_LENGTH = 32


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
