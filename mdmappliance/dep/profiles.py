"""DEP profiles: checked before they are sent to Apple, and the default profile.

The checks are the spec's ("Define Profile") and the field's: the url must be https (Apple
answers INVALID_URL_SCHEME otherwise, after the round trip), skip_setup_items must be names
Apple knows, and a self-signed appliance CA must be in anchor_certs or the device will not
trust the ConfigurationURL (micromdm#628).
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from mdmappliance.core.errors import ApplianceError

#: Setup panes Apple documents (the 2014 reference's list and the ones added since, from
#: Apple's device-management schema).
SKIP_SETUP_ITEMS = frozenset(
    {
        "Passcode",
        "Location",
        "Restore",
        "AppleID",
        "TOS",
        "Siri",
        "Diagnostics",
        "Biometric",
        "Payment",
        "Zoom",
        "FileVault",
        "DisplayTone",
        "Android",
        "HomeButtonSensitivity",
        "iMessageAndFaceTime",
        "OnBoarding",
        "ScreenTime",
        "SoftwareUpdate",
        "SIMSetup",
        "Privacy",
        "ScreenSaver",
        "TapToSetup",
        "TVHomeScreenSync",
        "TVProviderSignIn",
        "TVRoom",
        "WatchMigration",
        "Welcome",
        "Appearance",
        "RestoreCompleted",
        "UpdateCompleted",
        "Accessibility",
        "UnlockWithWatch",
        "iCloudDiagnostics",
        "iCloudStorage",
        "Keyboard",
        "DeviceToDeviceMigration",
        "MessagingActivationUsingPhoneNumber",
        "SpokenLanguage",
        "Safety",
        "TermsOfAddress",
        "Wallpaper",
        "Intelligence",
        "EnableLockdownMode",
        "Registration",
        "Avatar",
        "AppStore",
        "Multitasking",
        "WebContentFiltering",
        "PreferredLanguage",
        "AgeBasedSafetySettings",
        "CameraButton",
        "OSShowcase",
        "ActionButton",
        "Anonymous",
    }
)
BOOLEANS = (
    "allow_pairing",
    "is_supervised",
    "is_multi_user",
    "is_mandatory",
    "await_device_configured",
    "is_mdm_removable",
    "auto_advance_setup",
    "is_return_to_service",
    "do_not_use_profile_from_backup",
)
STRINGS = (
    "profile_name",
    "url",
    "support_phone_number",
    "support_email_address",
    "department",
    "org_magic",
    "language",
    "region",
    "configuration_web_url",
)
LISTS = ("anchor_certs", "supervising_host_certs", "skip_setup_items", "devices")


class ProfileInvalid(ApplianceError):
    """A DEP profile Apple would refuse, or that would not work; the message says which key."""


def _check_types(profile: dict[str, Any]) -> None:
    known = set(BOOLEANS) | set(STRINGS) | set(LISTS)
    for key in profile:
        if key not in known:
            raise ProfileInvalid(f"{key!r} is not a DEP profile key")
    for key in ("profile_name", "url"):
        if not isinstance(profile.get(key), str) or not profile[key].strip():
            raise ProfileInvalid(f"{key} is required")
    for key in STRINGS:
        if key in profile and (not isinstance(profile[key], str) or len(profile[key]) > 2048):
            raise ProfileInvalid(f"{key} must be a string")
    for key in BOOLEANS:
        if key in profile and not isinstance(profile[key], bool):
            raise ProfileInvalid(f"{key} must be true or false")
    for key in LISTS:
        values = profile.get(key, [])
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise ProfileInvalid(f"{key} must be an array of strings")


def _check_certificates(profile: dict[str, Any]) -> None:
    for key in ("anchor_certs", "supervising_host_certs"):
        for n, value in enumerate(profile.get(key, [])):
            try:
                x509.load_der_x509_certificate(base64.b64decode(value, validate=True))
            except ValueError:
                raise ProfileInvalid(f"{key}[{n}] is not a base64 DER certificate") from None


def check_profile(profile: Any) -> dict[str, Any]:
    """The profile if Apple would accept it; ProfileInvalid naming the first bad key."""
    if not isinstance(profile, dict):
        raise ProfileInvalid("a DEP profile is a JSON object")
    _check_types(profile)
    for key in ("url", "configuration_web_url"):
        if key in profile and not profile[key].startswith("https://"):
            raise ProfileInvalid(f"{key} must be an https:// URL, got {profile[key]!r}")
    for item in profile.get("skip_setup_items", []):
        if item not in SKIP_SETUP_ITEMS:
            raise ProfileInvalid(f"skip_setup_items: {item!r} is not a setup pane Apple knows")
    _check_certificates(profile)
    if len(profile.get("devices", [])) > 1000:
        raise ProfileInvalid("devices: at most 1000 serials per request")
    return profile


def complete_profile(
    profile: dict[str, Any], *, url: str, anchors: tuple[x509.Certificate, ...]
) -> dict[str, Any]:
    """The profile with this appliance's ConfigurationURL and, when the server certificate
    chains to a private CA, that CA as an anchor (unless the admin set either)."""
    completed = dict(profile)
    completed.setdefault("url", url)
    if anchors and "anchor_certs" not in completed:
        completed["anchor_certs"] = [
            base64.b64encode(c.public_bytes(Encoding.DER)).decode() for c in anchors
        ]
    return check_profile(completed)


def read_profile_file(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ProfileInvalid(f"cannot read {path}: {e.strerror}") from None
    except (UnicodeDecodeError, ValueError) as e:
        raise ProfileInvalid(f"{path} is not JSON ({e})") from None
    if not isinstance(document, dict):
        raise ProfileInvalid(f"{path} must hold one JSON object")
    return document


def profile_digest(profile: dict[str, Any]) -> str:
    """What tells a changed default profile from the one already defined."""
    return hashlib.sha256(json.dumps(profile, sort_keys=True).encode()).hexdigest()
