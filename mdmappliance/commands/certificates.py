"""CertificateList: each DER certificate read into subject, issuer and validity."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from cryptography import x509

from mdmappliance.commands import rights
from mdmappliance.commands.base import CommandSpec, InventoryUpdate, Outcome, dicts, no_keys
from mdmappliance.commands.errors import ResultInvalid
from mdmappliance.core.timestamps import utc_timestamp


def describe_certificate(entry: Mapping[str, Any]) -> dict[str, Any]:
    der = entry.get("Data")
    if not isinstance(der, bytes):
        raise ResultInvalid("every CertificateList entry needs Data (a DER certificate)")
    described: dict[str, Any] = {
        "common_name": entry.get("CommonName") if isinstance(entry.get("CommonName"), str) else "",
        "is_identity": entry.get("IsIdentity") is True,
        "sha256": hashlib.sha256(der).hexdigest(),
    }
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError as e:
        described["error"] = f"not a readable certificate: {e}"
        return described
    described.update(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        serial=format(cert.serial_number, "x"),
        not_before=utc_timestamp(cert.not_valid_before_utc),
        not_after=utc_timestamp(cert.not_valid_after_utc),
    )
    return described


def parse_list(result: Mapping[str, Any], command: Mapping[str, Any]) -> Outcome:
    certificates = [describe_certificate(e) for e in dicts(result, "CertificateList")]
    return Outcome(
        inventory=[InventoryUpdate("certificates", certificates)],
        summary={"certificates": len(certificates)},
    )


SPECS = (
    CommandSpec(
        "CertificateList",
        "certificates",
        no_keys,
        rights=rights.INSPECT_PROFILES,
        parse=parse_list,
    ),
)
