"""ErrorChain in plain words: every domain and code of the spec's "Error Codes" chapter.

Apple warns the codes may change between releases, so the words are for people reading a
result, never for decisions. Where the spec lists one code twice with two meanings (it does
in MCInstallationErrorDomain, MCAPNErrorDomain and MCCellularErrorDomain), both are shown;
unknown domains and codes keep their raw values and the device's own description.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

ERROR_CODES: dict[str, tuple[tuple[int, str], ...]] = {
    "MCProfileErrorDomain": (
        (1000, "Malformed profile"),
        (1001, "Unsupported profile version"),
        (1002, "Missing required field"),
        (1003, "Bad data type in field"),
        (1004, "Bad signature"),
        (1005, "Empty profile"),
        (1006, "Cannot decrypt"),
        (1007, "Non-unique UUIDs"),
        (1008, "Non-unique payload identifiers"),
        (1009, "Profile installation failure"),
        (1010, "Unsupported field value"),
    ),
    "MCPayloadErrorDomain": (
        (2000, "Malformed Payload"),
        (2001, "Unsupported payload version"),
        (2002, "Missing required field"),
        (2003, "Bad data type in field"),
        (2004, "Unsupported field value"),
    ),
    "MCRestrictionsErrorDomain": (
        (3000, "Inconsistent restriction sense (internal error)"),
        (3001, "Inconsistent value comparison sense (internal error)"),
    ),
    "MCInstallationErrorDomain": (
        (4000, "Cannot parse profile"),
        (4001, "Installation failure"),
        (4002, "Duplicate UUID"),
        (4003, "Profile not queued for installation"),
        (4004, "User cancelled installation"),
        (4005, "Passcode does not comply"),
        (4006, "Invalid input"),
        (4007, "Unrecognized file format"),
        (4008, "Mismatched certificates"),
        (4009, "Device locked"),
        (4010, "Updated profile does not have the same identifier"),
        (4011, "Final profile is not a configuration profile"),
        (4012, "Profile is not updatable"),
        (4013, "Update failed"),
        (4014, "No device identity available"),
        (4015, "Replacement profile does not contain an MDM payload"),
        (4016, "(Internal error)"),
        (4017, "Multiple global HTTPProxy payloads"),
        (4018, "Multiple APN or Cellular payloads"),
        (4019, "Multiple App Lock payloads"),
        (4000, "UI installation prohibited"),
        (4001, "Profile must be installed non-interactively"),
        (4002, "Profile must be installed using MDM"),
        (4003, "Unacceptable payload"),
        (4004, "Profile not found"),
        (4005, "Invalid supervision"),
    ),
    "MCPasscodeErrorDomain": (
        (5000, "Passcode too short"),
        (5001, "Too few unique characters"),
        (5002, "Too few complex characters"),
        (5003, "Passcode has repeating characters"),
        (5004, "Passcode has ascending descending characters"),
        (5005, "Passcode requires number"),
        (5006, "Passcode requires alpha characters"),
        (5007, "Passcode expired"),
        (5008, "Passcode too recent"),
        (5009, "(unused)"),
        (5010, "Device locked"),
        (5011, "Wrong passcode"),
        (5012, "(unused)"),
        (5013, "Cannot clear passcode"),
        (5014, "Cannot set passcode"),
        (5015, "Cannot set grace period"),
    ),
    "MCKeychainErrorDomain": (
        (6000, "Keychain system error"),
        (6001, "Empty string"),
        (6002, "Cannot create query"),
    ),
    "MCEmailErrorDomain": (
        (7000, "Host unreachable"),
        (7001, "Invalid credentials"),
        (7002, "Unknown error occurred during validation"),
        (7003, "SMIME certificate not found"),
        (7004, "SMIME certificate is bad"),
        (7005, "IMAP account is misconfigured"),
        (7006, "POP account is misconfigured"),
        (7007, "SMTP account is misconfigured"),
    ),
    "MCWebClipErrorDomain": ((8000, "Cannot install Web Clip"),),
    "MCCertificateErrorDomain": (
        (9000, "Invalid password"),
        (9001, "Too many certificates in a payload"),
        (9002, "Cannot store certificate"),
        (9003, "Cannot store WAPI data"),
        (9004, "Cannot store root certificate"),
        (9005, "Certificate is malformed"),
        (9006, "Certificate is not an identity"),
    ),
    "MCDefaultsErrorDomain": (
        (10000, "Cannot install defaults"),
        (10001, "Invalid signer"),
    ),
    "MCAPNErrorDomain": (
        (11000, "Cannot install APN"),
        (11000, "Custom APN already installed"),
    ),
    "MCMDMErrorDomain": (
        (12000, "Invalid access rights"),
        (12001, "Multiple MDM instances"),
        (12002, "Cannot check in"),
        (12003, "Invalid challenge response"),
        (12004, "Invalid push certificate"),
        (12005, "Cannot find certificate"),
        (12006, "Redirect refused"),
        (12007, "Not authorized"),
        (12008, "Malformed request"),
        (12009, "Invalid replacement profile"),
        (12010, "Internal inconsistency error"),
        (12011, "Invalid MDM configuration"),
        (12012, "MDM replacement mismatch"),
        (12013, "Profile not managed"),
        (12014, "Provisioning profile not managed"),
        (12015, "Cannot get push token"),
        (12016, "Missing identity"),
        (12017, "Cannot create escrow keybag"),
        (12018, "Cannot copy escrow keybag data"),
        (12019, "Cannot copy escrow secret"),
        (12020, "Unauthorized by server"),
        (12021, "Invalid request type"),
        (12022, "Invalid topic"),
        (12023, "Could not validate app iD"),
        (12024, "Could not validate app manifest"),
        (12025, "App already installed"),
        (12026, "App already queued"),
        (12027, "Not an app"),
        (12028, "Not waiting for redemption"),
        (12029, "App not managed"),
        (12030, "Invalid URL"),
        (12031, "App installation disabled"),
        (12032, "Too many apps in manifest"),
        (12033, "Invalid manifest"),
        (12034, "URL is not HTTPS"),
        (12035, "App cannot be purchased"),
        (12036, "Cannot remove app in current state"),
        (12037, "Invalid redemption code"),
        (12038, "App not managed"),
        (12039, "(unused)"),
        (12040, "iTunes store login required"),
        (12041, "Unknown language code"),
        (12042, "Unknown locale code"),
    ),
    "MCWiFiErrorDomain": (
        (13000, "Cannot install"),
        (13001, "Username required"),
        (13002, "Password required"),
        (13003, "Cannot create WiFi configuration"),
        (13004, "Cannot set up EAP"),
        (13005, "Cannot set up proxy"),
    ),
    "MCTunnelErrorDomain": (
        (14000, "Invalid field"),
        (14001, "Device locked"),
        (14002, "Cloud configuration already exists"),
    ),
    "MCVPNErrorDomain": (
        (15000, "Cannot install VPN"),
        (15001, "Cannot remove VPN"),
        (15002, "Cannot lock network configuration"),
        (15003, "Invalid certificate"),
    ),
    "MCSubCalErrorDomain": (
        (16000, "Cannot create subscription"),
        (16001, "No host name"),
        (16002, "Account not unique"),
    ),
    "MCCalDAVErrorDomain": (
        (17000, "Cannot create account"),
        (17001, "No host name"),
        (17002, "Account not unique"),
    ),
    "MCDAErrorDomain": (
        (18000, "Unknown error"),
        (18001, "Host unreachable"),
        (18002, "Invalid credentials"),
    ),
    "MCLDAPErrorDomain": (
        (19000, "Cannot create account"),
        (19001, "No host name"),
        (19002, "Account not unique"),
    ),
    "MCCardDAVErrorDomain": (
        (20000, "Cannot create account"),
        (20001, "No host name"),
        (20002, "Account not unique"),
    ),
    "MCEASErrorDomain": (
        (21000, "Cannot get policy from server"),
        (21001, "Cannot comply with policy from server"),
        (21002, "Cannot comply with encryption policy from server"),
        (21003, "No host name"),
        (21004, "Cannot create account"),
        (21005, "Account not unique"),
        (21006, "Cannot decrypt certificate"),
        (21007, "Cannot verify account"),
    ),
    "MCSCEPErrorDomain": (
        (22000, "Invalid key usage"),
        (22001, "Cannot generate key pair"),
        (22002, "Invalid CAResponse"),
        (22003, "Invalid RAResponse"),
        (22004, "Unsupported certificate configuration"),
        (22005, "Network error"),
        (22006, "Insufficient CACaps"),
        (22007, "Invalid signed certificate"),
        (22008, "Cannot create identity"),
        (22009, "Cannot create temporary identity"),
        (22010, "Cannot store temporary identity"),
        (22011, "Cannot generate CSR"),
        (22012, "Cannot store CACertificate"),
        (22013, "Invalid PKIOperation response"),
    ),
    "MCHTTPTransactionErrorDomain": (
        (23000, "Bad identity"),
        (23001, "Bad server response"),
        (23002, "Invalid server certificate"),
    ),
    "MCOTAProfilesErrorDomain": (
        (24000, "Cannot create attribute dictionary"),
        (24001, "Cannot sign attribute dictionary"),
        (24002, "Bad identity payload"),
        (24003, "Bad final profile"),
    ),
    "MCProvisioningProfileErrorDomain": (
        (25000, "Bad profile"),
        (25001, "Cannot install"),
        (25002, "Cannot remove"),
    ),
    "MCDeviceCapabilitiesErrorDomain": (
        (26000, "Block level encryption unsupported"),
        (26001, "File level encryption unsupported"),
    ),
    "MCSettingsErrorDomain": (
        (28000, "Unknown item"),
        (28001, "Bad wallpaper image"),
        (28002, "Cannot set wallpaper"),
    ),
    "MCChaperoneErrorDomain": (
        (29000, "Device not supervised"),
        (29003, "Bad certificate data"),
    ),
    "MCStoreErrorDomain": (
        (30000, "Authentication failed"),
        (30001, "Timed out"),
    ),
    "MCGlobalHTTPProxyErrorDomain": (
        (31000, "Cannot apply credential"),
        (31001, "Cannot apply settings"),
    ),
    "MCSingleAppErrorDomain": ((32000, "Too many apps"),),
    "MCSSOErrorDomain": (
        (34000, "Invalid app identifier match pattern"),
        (34001, "Invalid URL match pattern"),
        (34002, "Kerberos principal name missing"),
        (34003, "Kerberos principal name invalid"),
    ),
    "MCFontErrorDomain": (
        (35000, "Invalid font data"),
        (35001, "Failed font installation"),
        (35002, "Multiple fonts in a single payload"),
    ),
    "MCCellularErrorDomain": (
        (36000, "Cellular already configured"),
        (36000, "(internal error)"),
    ),
}


MEANINGS: dict[str, dict[int, tuple[str, ...]]] = {}
for _domain, _codes in ERROR_CODES.items():
    for _code, _meaning in _codes:
        MEANINGS.setdefault(_domain, {}).setdefault(_code, ())
        MEANINGS[_domain][_code] += (_meaning,)


def meaning(domain: str, code: int) -> str | None:
    """The spec's words for a domain and code ("A / B" when it gives two), or None."""
    meanings = MEANINGS.get(domain, {}).get(code)
    return " / ".join(meanings) if meanings else None


def describe_error(entry: Mapping[str, Any]) -> str:
    """One ErrorChain entry as "MCMDMErrorDomain 12021: Invalid request type"."""
    domain = entry.get("ErrorDomain")
    code = entry.get("ErrorCode")
    domain_text = domain if isinstance(domain, str) and domain else "(no domain)"
    code_text = str(code) if isinstance(code, int) and not isinstance(code, bool) else "(no code)"
    words = meaning(domain, code) if isinstance(domain, str) and isinstance(code, int) else None
    if words is None:
        device = entry.get("USEnglishDescription") or entry.get("LocalizedDescription")
        words = device if isinstance(device, str) and device else "(not in the spec's tables)"
    return f"{domain_text} {code_text}: {words}"


def describe_chain(chain: Any) -> list[str]:
    """Each entry of an ErrorChain in plain words, top-level error first."""
    if not isinstance(chain, list):
        return []
    return [describe_error(entry) for entry in chain if isinstance(entry, dict)]
