"""The SCEP vocabulary (RFC 8894 section 3.2): message types, statuses, failure reasons and
the signed attributes that carry them, read from and written to asn1crypto structures."""

from __future__ import annotations

import enum
from typing import Any

from asn1crypto import cms as acms
from asn1crypto import core

from mdmappliance.pki.cms import PARSE_ERRORS

MESSAGE_TYPE = "2.16.840.1.113733.1.9.2"
PKI_STATUS = "2.16.840.1.113733.1.9.3"
FAIL_INFO = "2.16.840.1.113733.1.9.4"
SENDER_NONCE = "2.16.840.1.113733.1.9.5"
RECIPIENT_NONCE = "2.16.840.1.113733.1.9.6"
TRANSACTION_ID = "2.16.840.1.113733.1.9.7"
#: RFC 8894 3.2.1.4.1: a human-readable reason beside failInfo.
FAIL_INFO_TEXT = "1.3.6.1.5.5.7.24.1"
#: PKCS#9 challengePassword: Apple's mdmclient also puts it among the pkiMessage's signed
#: attributes (seen in the commandment capture), beside the CSR's.
CHALLENGE_PASSWORD = "1.2.840.113549.1.9.7"

_SPECS: dict[str, type[core.Asn1Value]] = {
    MESSAGE_TYPE: core.PrintableString,
    PKI_STATUS: core.PrintableString,
    FAIL_INFO: core.PrintableString,
    SENDER_NONCE: core.OctetString,
    RECIPIENT_NONCE: core.OctetString,
    TRANSACTION_ID: core.PrintableString,
    FAIL_INFO_TEXT: core.UTF8String,
}


class MessageType(enum.IntEnum):
    CERT_REP = 3
    RENEWAL_REQ = 17
    UPDATE_REQ = 18
    PKCS_REQ = 19
    CERT_POLL = 20
    GET_CERT = 21
    GET_CRL = 22


class PKIStatus(enum.IntEnum):
    SUCCESS = 0
    FAILURE = 2
    PENDING = 3


class FailInfo(enum.IntEnum):
    BAD_ALG = 0
    BAD_MESSAGE_CHECK = 1
    BAD_REQUEST = 2
    BAD_TIME = 3
    BAD_CERT_ID = 4


class SCEPFailure(ValueError):
    """A request the CA answers with a CertRep FAILURE: what went wrong, in words, and the
    failInfo the client is told."""

    def __init__(self, fail_info: FailInfo, reason: str) -> None:
        super().__init__(reason)
        self.fail_info = fail_info


def _directory_string(value: core.Asn1Value) -> str | None:
    """A DirectoryString's text, whichever string type it came as."""
    if not isinstance(value, core.Any):
        return str(value.native) if isinstance(value.native, str) else None
    for spec in (core.PrintableString, core.UTF8String, core.IA5String, core.BMPString):
        try:
            parsed = value.parse(spec).native
        except (ValueError, TypeError):
            continue
        if isinstance(parsed, str):
            return parsed
    return None


def read_attributes(attributes: acms.CMSAttributes | None) -> dict[str, Any]:
    """The SCEP attributes present, by OID, as Python values (str for strings, bytes for
    nonces). An attribute with more or fewer than one value is malformed."""
    found: dict[str, Any] = {}
    if attributes is None:
        return found
    for attribute in attributes:
        oid = attribute["type"].dotted
        if oid == CHALLENGE_PASSWORD:
            texts = [_directory_string(v) for v in attribute["values"]]
            if len(texts) == 1 and texts[0] is not None:
                found[oid] = texts[0]
            continue
        spec = _SPECS.get(oid)
        if spec is None:
            continue
        values = list(attribute["values"])
        if len(values) != 1:
            raise SCEPFailure(FailInfo.BAD_REQUEST, f"attribute {oid} has {len(values)} values")
        value = values[0]
        try:
            parsed = value.parse(spec) if isinstance(value, core.Any) else value
            found[oid] = parsed.native
        except PARSE_ERRORS as e:
            raise SCEPFailure(FailInfo.BAD_REQUEST, f"attribute {oid} is malformed ({e})") from None
    return found


def attribute(oid: str, value: str | bytes) -> acms.CMSAttribute:
    """One signed attribute with one value, typed as RFC 8894 says."""
    return acms.CMSAttribute({"type": acms.CMSAttributeType(oid), "values": [_SPECS[oid](value)]})
