"""The schema of enrollment: its listener and the profiles it serves."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mdmappliance.config.fields import (
    check_access_rights,
    check_https_url_or_empty,
    check_ip_address,
    in_range,
    one_of,
    setting,
)


@dataclass(frozen=True)
class EnrollmentSection:
    """The enrollment listener (TLS, no client certificate) and the profiles it serves."""

    bind: str = setting(
        "0.0.0.0", doc="Address of the enrollment listener.", check=check_ip_address
    )
    port: int = setting(8444, doc="TCP port of the enrollment listener.", check=in_range(1, 65535))
    max_connections: int = setting(
        256,
        doc="Open connections the enrollment listener holds at most; more are closed at once.",
        check=in_range(1, 1_000_000),
    )
    max_connections_per_address: int = setting(
        32,
        doc="Open enrollment connections from one address at most; more are closed at once.",
        check=in_range(1, 1_000_000),
    )
    link_days: float = setting(
        7.0,
        doc="How long a new enrollment link stays valid, in days (enroll-link --expires "
        "overrides it).",
        check=in_range(0.001, 365),
    )
    identity: str = setting(
        "scep",
        doc='How a profile gives the device its identity: "scep" (the device makes its key '
        "and gets a certificate from the built-in SCEP server with a one-time challenge; the "
        'key never leaves the device) or "pkcs12" (the appliance makes the key and ships it '
        "in the profile, for clients without SCEP).",
        check=one_of(("scep", "pkcs12")),
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
