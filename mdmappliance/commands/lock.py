"""DeviceLock, ClearPasscode and EraseDevice.

ClearPasscode carries the device's UnlockToken, the equivalent of a master passcode
("Securing the ClearPasscode command"): the caller never supplies it; the appliance takes it
from escrow when the caller confirms explicitly, and the queued command is kept sealed.
"""

from __future__ import annotations

from typing import Any

from mdmappliance.commands import rights
from mdmappliance.commands.base import Checker, CommandSpec, Fitted, MacSupport, Target
from mdmappliance.mdm.platforms import Platform


def _pin(value: str) -> str | None:
    return None if len(value) in (4, 6) else f"must be 4 or 6 characters long, not {len(value)}"


def build_device_lock(checker: Checker) -> None:
    checker.string("PIN", check=_pin)
    checker.string("Message", max_len=1024)
    checker.string("PhoneNumber", max_len=64)


def build_erase(checker: Checker) -> None:
    checker.string("PIN", check=_pin)


def build_clear_passcode(checker: Checker) -> None:
    if "UnlockToken" in checker.source:
        checker.problem("UnlockToken", "is filled in by the appliance from escrow; do not send one")


def fit_pin(command: dict[str, Any], target: Target, fitted: Fitted) -> None:
    """The Find My Mac PIN: required by OS X. iOS ignores it (the spec): Apple's schema has it
    for macOS only, so ``catalog.fit`` leaves it out there, with a warning."""
    if target.platform is Platform.MACOS and "PIN" not in command:
        fitted.command = None
        fitted.refusal = "PIN (the Find My Mac PIN, 4 or 6 characters) is required for OS X"


def fit_clear_passcode(command: dict[str, Any], target: Target, fitted: Fitted) -> None:
    if not target.has_unlock_token:
        fitted.command = None
        fitted.refusal = "no UnlockToken was escrowed for this device (its TokenUpdate had none)"


SPECS = (
    CommandSpec(
        "DeviceLock",
        "lock",
        build_device_lock,
        rights=rights.LOCK_AND_PASSCODE,
        mac_channel="device",
        fit=fit_pin,
        ignored_where_unsupported=("PIN",),
    ),
    CommandSpec(
        "ClearPasscode",
        "lock",
        build_clear_passcode,
        rights=rights.LOCK_AND_PASSCODE,
        mac=MacSupport.NONE,
        fit=fit_clear_passcode,
        filled_here=("UnlockToken",),
    ),
    CommandSpec(
        "EraseDevice",
        "lock",
        build_erase,
        rights=rights.ERASE,
        mac_channel="device",
        fit=fit_pin,
        ignored_where_unsupported=("PIN",),
    ),
)
