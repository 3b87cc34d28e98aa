"""The MachineInfo a DEP device POSTs to a ConfigurationURL: check who signed it, then read it.

During Setup Assistant the device POSTs a plist (UDID, SERIAL, PRODUCT, VERSION, OS_VERSION,
IMEI, MEID, LANGUAGE, SOFTWARE_UPDATE_DEVICE_ID, SUPPLEMENTAL_* ...) CMS-signed with its
device identity, as ``application/pkcs7-signature``; the web-auth flow sends the same DER in
base64 in the ``x-apple-aspen-deviceinfo`` header. Before a word of it is believed:

- the CMS signature must verify over the content (``pki.cms.verify_signed_data``, which also
  checks the messageDigest when there are signed attributes: iPadOS sends them, fleet#20879;
  the macOS capture in the tests has none);
- the signer's certificate must chain, link by link (names and signatures), to exactly the
  Apple Root CA shipped in ``apple/``, through Apple's iPhone Device CA. Intermediates come
  from the signature and from the shipped chain, because macOS sends only the leaf and the
  iPhone Device CA;
- the plist must be a dictionary with a sane UDID and SERIAL.

A valid signature proves only that some genuine Apple device signed this, not that it is the
device named: the identity's subject is a random UUID, bound to no serial, so a genuine (say
jailbroken) device can claim any SERIAL. That is Duo Labs' "MDM Me Maybe" (Black Hat 2018):
knowing an organisation's serial numbers was enough to get its DEP profile and enroll a device
of one's own in its MDM. So the caller must hand out a profile only for a SERIAL that Apple's
DEP service has assigned to this server; this module does not know that list.
"""

from __future__ import annotations

import base64
import binascii
import functools
import plistlib
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding

from mdmappliance import pki
from mdmappliance.mdm.errors import BadMessage
from mdmappliance.mdm.messages import UDID_FORM, parse_plist
from mdmappliance.pki.cms import PARSE_ERRORS, CMSError, verify_signed_data

CHAIN_DIR = "apple"
CHAIN_FILE = "apple-iphone-device-ca-chain.pem"
#: A real MachineInfo is about 5 KB (four certificates and a short plist).
MAX_BYTES = 64 * 1024
#: Device identity, iPhone Device CA, iPhone Certification Authority, Apple Root CA: four,
#: and one to spare.
MAX_CHAIN = 5
MAX_CERTIFICATES = 10
MAX_PLIST_DEPTH = 8
MAX_SERIAL = 64
MAX_FIELD = 1024
OPTIONAL_FIELDS = ("PRODUCT", "VERSION", "OS_VERSION", "IMEI", "MEID", "LANGUAGE")
#: What a signature check raises when ``issuer`` did not sign, or either certificate is odd.
_NOT_SIGNED_BY: tuple[type[Exception], ...] = (InvalidSignature, *PARSE_ERRORS)


class MachineInfoRefused(ValueError):
    """The MachineInfo is malformed, not signed by a device Apple certified, or incomplete;
    ``str(e)`` is one line saying which."""


@dataclass(frozen=True)
class MachineInfo:
    """What the device says about itself, once its signature is checked. Optional keys a
    device sends empty (a Mac has no IMEI) are None here; ``fields`` keeps them as sent."""

    udid: str
    serial: str
    product: str | None
    version: str | None
    os_version: str | None
    imei: str | None
    meid: str | None
    language: str | None
    #: Every key of the plist as sent (SOFTWARE_UPDATE_DEVICE_ID, SUPPLEMENTAL_* ...).
    fields: dict[str, Any]


@functools.cache
def apple_device_chain() -> tuple[x509.Certificate, ...]:
    """Apple iPhone Device CA, Apple iPhone Certification Authority and Apple Root CA, from
    the package data (read once)."""
    data = (resources.files("mdmappliance.dep") / CHAIN_DIR / CHAIN_FILE).read_bytes()
    return tuple(x509.load_pem_x509_certificates(data))


def machine_info_from_header(value: bytes | str) -> bytes:
    """The DER the web-auth flow sends base64-encoded in ``x-apple-aspen-deviceinfo``."""
    try:
        der = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):  # ValueError: a str with non-ASCII characters
        raise MachineInfoRefused("the device info header is not base64") from None
    if not der:
        raise MachineInfoRefused("the device info header is empty")
    return der


def read_machine_info(der: bytes, chain: Sequence[x509.Certificate] | None = None) -> MachineInfo:
    """Verify the CMS signature and its chain to the Apple Root CA, then read the plist.

    ``chain`` holds the root to accept (its self-issued certificate) and any intermediates;
    by default Apple's (``apple_device_chain()``). Validity dates are not checked on this
    chain: Apple's iPhone Device CA expired in 2014 and the iPhone Certification Authority in
    2022, yet current devices' identities are still issued under them, so a date check would
    refuse every genuine device. (The identity's own dates are not checked either: Apple's
    signature is what counts, and a MachineInfo has no nonce, so freshness cannot come from
    it anyway: one more reason the caller must check the serial.)
    """
    if len(der) > MAX_BYTES:
        raise MachineInfoRefused(f"the MachineInfo is larger than {MAX_BYTES} bytes")
    try:
        signed = verify_signed_data(der)
    except CMSError as e:
        raise MachineInfoRefused(f"the MachineInfo signature is refused: {_one_line(e)}") from None
    if len(signed.certificates) > MAX_CERTIFICATES:
        raise MachineInfoRefused(f"the signature carries more than {MAX_CERTIFICATES} certificates")
    chain_to_apple_root(signed.signer, signed.certificates, chain)
    return _machine_info(_parse(signed.content))


def chain_to_apple_root(
    certificate: x509.Certificate,
    intermediates: Sequence[x509.Certificate] = (),
    chain: Sequence[x509.Certificate] | None = None,
) -> tuple[x509.Certificate, ...]:
    """The path from ``certificate`` up to the root of ``chain`` (Apple's by default), or
    MachineInfoRefused. Each issuer is found among ``intermediates`` and ``chain`` by name
    and proven by its signature; the root is matched by its DER; dates are not checked
    (see ``read_machine_info``)."""
    chain = apple_device_chain() if chain is None else tuple(chain)
    roots = {c.public_bytes(Encoding.DER) for c in chain if c.subject == c.issuer}
    if not roots:
        raise MachineInfoRefused("the trusted chain has no root certificate")
    pool = [*intermediates, *chain]
    path = [certificate]
    while path[-1].public_bytes(Encoding.DER) not in roots:
        if len(path) >= MAX_CHAIN:
            raise MachineInfoRefused(f"the signer's chain is longer than {MAX_CHAIN}")
        path.append(_issuer(path[-1], [c for c in pool if c not in path]))
    return tuple(path)


def _issuer(cert: x509.Certificate, candidates: Sequence[x509.Certificate]) -> x509.Certificate:
    for candidate in candidates:
        if _is_ca(candidate) and _signed_by(cert, candidate):
            return candidate
    if cert.subject == cert.issuer:
        raise MachineInfoRefused(f"the signer chains to {_name(cert)}, not to the trusted root")
    raise MachineInfoRefused(
        f"{_name(cert)} does not chain to the trusted root: no CA certificate named "
        f"{_name(cert, issuer=True)} in the signature or the trusted chain signed it"
    )


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return pki.is_ca_certificate(cert)
    except PARSE_ERRORS:  # unreadable extensions
        return False


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Names match and ``issuer``'s key made ``cert``'s signature, with the algorithm ``cert``
    names. By hand, not ``verify_directly_issued_by``: that refuses SHA-1, and Apple's device
    CA chain is SHA-1 with RSA."""
    if cert.issuer != issuer.subject:
        return False
    try:
        public = issuer.public_key()
        algorithm = cert.signature_hash_algorithm
        if algorithm is None:
            return False
        if isinstance(public, rsa.RSAPublicKey):
            parameters = cert.signature_algorithm_parameters
            pad = parameters if isinstance(parameters, padding.PSS) else padding.PKCS1v15()
            public.verify(cert.signature, cert.tbs_certificate_bytes, pad, algorithm)
        elif isinstance(public, ec.EllipticCurvePublicKey):
            public.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(algorithm))
        else:
            return False
    except _NOT_SIGNED_BY:
        return False
    return True


def _name(cert: x509.Certificate, *, issuer: bool = False) -> str:
    return (cert.issuer if issuer else cert.subject).rfc4514_string() or "(empty name)"


def _one_line(error: Exception) -> str:
    """asn1crypto's messages span lines; a refusal is logged as one."""
    return " ".join(str(error).split())


def _parse(content: bytes) -> dict[str, Any]:
    """The signed plist, XML (what devices send) or binary, through the same strict parser
    as check-ins (no entity declarations, a dictionary, bounded nesting)."""
    if content.startswith(b"bplist"):
        content = _binary_as_xml(content)
    try:
        return parse_plist(content, MAX_PLIST_DEPTH)
    except BadMessage as e:
        raise MachineInfoRefused(
            f"the signed MachineInfo is not a plist dictionary: {_one_line(e)}"
        ) from None


def _binary_as_xml(content: bytes) -> bytes:
    """A binary plist re-encoded as XML, so that it meets ``parse_plist``'s checks."""
    try:
        return plistlib.dumps(plistlib.loads(content, fmt=plistlib.FMT_BINARY))
    except Exception as e:  # plistlib's zoo, RecursionError for a cyclic one included
        raise MachineInfoRefused(
            f"the signed MachineInfo is not a valid binary plist ({type(e).__name__})"
        ) from None


def _machine_info(fields: dict[str, Any]) -> MachineInfo:
    udid = _required(fields, "UDID", MAX_FIELD)
    if not UDID_FORM.match(udid):
        raise MachineInfoRefused(f"UDID {udid!r} is not a device UDID")
    optional = {key: _optional(fields, key) for key in OPTIONAL_FIELDS}
    return MachineInfo(
        udid=udid,
        serial=_required(fields, "SERIAL", MAX_SERIAL),
        product=optional["PRODUCT"],
        version=optional["VERSION"],
        os_version=optional["OS_VERSION"],
        imei=optional["IMEI"],
        meid=optional["MEID"],
        language=optional["LANGUAGE"],
        fields=fields,
    )


def _required(fields: dict[str, Any], key: str, max_len: int) -> str:
    value = _optional(fields, key, max_len)
    if value is None:
        raise MachineInfoRefused(f"the MachineInfo has no {key}")
    if not value.isprintable() or value != value.strip():
        raise MachineInfoRefused(f"{key} {value!r} is not a printable identifier")
    return value


def _optional(fields: dict[str, Any], key: str, max_len: int = MAX_FIELD) -> str | None:
    """A string key; None when absent or empty."""
    value = fields.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise MachineInfoRefused(f"{key} must be a string, not {type(value).__name__}")
    if len(value) > max_len:
        raise MachineInfoRefused(f"{key} is longer than {max_len} characters")
    return value
