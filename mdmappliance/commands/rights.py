"""The AccessRights bits of the MDM payload ("Structure of MDM Payloads"), by name.

An enrollment's rights come from the MDM payload it was enrolled with; a command needing a
bit the payload lacks would only come back as an error, so it is refused at enqueue instead.
"""

from __future__ import annotations

from collections.abc import Iterable

INSPECT_PROFILES = 1
INSTALL_PROFILES = 2
LOCK_AND_PASSCODE = 4
ERASE = 8
DEVICE_INFORMATION = 16
NETWORK_INFORMATION = 32
INSPECT_PROVISIONING = 64
INSTALL_PROVISIONING = 128
INSPECT_APPS = 256
RESTRICTIONS = 512
SECURITY = 1024
SETTINGS = 2048
APP_MANAGEMENT = 4096

ALL = 8191

#: The OS X client ignores flags above 1024: it neither needs nor checks them.
MAC_IGNORED = SETTINGS | APP_MANAGEMENT

NAMES = {
    INSPECT_PROFILES: "Inspect Profile Manifest",
    INSTALL_PROFILES: "Profile Installation and Removal",
    LOCK_AND_PASSCODE: "Device Lock and Passcode Removal",
    ERASE: "Device Erase",
    DEVICE_INFORMATION: "Device Information",
    NETWORK_INFORMATION: "Network Information",
    INSPECT_PROVISIONING: "Inspect Provisioning Profiles",
    INSTALL_PROVISIONING: "Provisioning Profile Installation and Removal",
    INSPECT_APPS: "Inspect Installed Applications",
    RESTRICTIONS: "Restriction-related queries",
    SECURITY: "Security-related queries",
    SETTINGS: "Manipulation of Settings",
    APP_MANAGEMENT: "App Management",
}


#: The names Apple's schema gives the rights (``accessrights``); others (None, n/a, Special
#: Case) need no bit of their own.
SCHEMA_NAMES = {
    "AllowInspection": INSPECT_PROFILES,
    "AllowInstallationRemoval": INSTALL_PROFILES,
    "AllowPasscodeRemovalAndLock": LOCK_AND_PASSCODE,
    "DeviceLockAndRemovePasscode": LOCK_AND_PASSCODE,
    "AllowDeviceErase": ERASE,
    "AllowQueryDeviceInformation": DEVICE_INFORMATION,
    "AllowQueryNetworkInformation": NETWORK_INFORMATION,
    "AllowProvisioningInspection": INSPECT_PROVISIONING,
    "AllowProvisioningInstallationRemoval": INSTALL_PROVISIONING,
    "AllowQueryApplications": INSPECT_APPS,
    "QueryInstalledApps": INSPECT_APPS,
    "AllowQueryRestrictions": RESTRICTIONS,
    "AllowQuerySecurity": SECURITY,
    "AllowSettings": SETTINGS,
    "AllowAppInstallation": APP_MANAGEMENT,
}


def of_schema(names: Iterable[str | None]) -> int:
    """The bits of the rights Apple's schema names (one name per OS)."""
    bits = 0
    for name in names:
        bits |= SCHEMA_NAMES.get(name or "", 0)
    return bits


def describe(bits: int) -> str:
    """``'Device Erase' (8)`` for each bit set, in the spec's order."""
    return ", ".join(f"'{name}' ({bit})" for bit, name in NAMES.items() if bits & bit)


def missing(needed: int, granted: int, *, mac: bool = False) -> int:
    """The bits of ``needed`` that ``granted`` lacks (none above 1024 on OS X)."""
    lacking = needed & ~granted
    return lacking & ~MAC_IGNORED if mac else lacking
