"""The schema of the built-in SCEP server, on the enrollment listener."""

from __future__ import annotations

from dataclasses import dataclass

from mdmappliance.config.fields import (
    check_https_url_or_empty,
    check_url_path,
    in_range,
    one_of,
    setting,
)

EC_CURVES = ("P-256", "P-384")


def check_curves(values: tuple[str, ...]) -> None:
    for value in values:
        one_of(EC_CURVES)(value)


@dataclass(frozen=True)
class SCEPSection:
    """SCEP (RFC 8894) at <enrollment listener><path>: devices make their own key pair and
    get their identity from the appliance CA with a one-time challenge."""

    enabled: bool = setting(
        True,
        doc='Serve SCEP. Needed by [enrollment] identity = "scep" (the default) and by '
        "renewals of SCEP identities.",
    )
    path: str = setting("/scep", doc="URL path of the SCEP endpoint.", check=check_url_path)
    url: str = setting(
        "",
        doc="SCEP URL put in profiles; empty: https://<hostname>:<enrollment port><path>. Set "
        "it when devices reach the appliance through a proxy.",
        check=check_https_url_or_empty,
    )
    challenge_hours: float = setting(
        24.0,
        doc="How long the one-time challenge in a downloaded profile stays valid, in hours "
        "(the profile must be installed within it). A renewal's lasts until the identity it "
        "renews expires.",
        check=in_range(0.05, 24 * 30),
    )
    rsa_min_bits: int = setting(
        2048,
        doc="Smallest RSA key a device may ask a certificate for (profiles ask for this size, "
        "at least 2048).",
        check=in_range(2048, 8192),
    )
    ec_curves: tuple[str, ...] = setting(
        (),
        doc="Elliptic curves a CSR's key may use (P-256, P-384); empty: RSA only. Replies "
        "are encrypted to the signer's key, so an EC request must be signed with an RSA "
        "certificate (RenewalReq).",
        check=check_curves,
        example=("P-256",),
    )
    identity_days: float = setting(
        0.0,
        doc="Validity of identities issued by SCEP, in days; 0: [enrollment] identity_days.",
        check=in_range(0, 3650),
    )
    retries: int = setting(
        3,
        doc="Retries in the profile: how often a device retries a PENDING request.",
        check=in_range(0, 100),
    )
    retry_delay: int = setting(
        10,
        doc="RetryDelay in the profile: seconds between those retries.",
        check=in_range(0, 3600),
    )
