"""RequestMirroring and StopMirroring: AirPlay mirroring (iOS 7 and later)."""

from __future__ import annotations

import re

from mdmappliance.commands.base import Checker, CommandSpec, MacSupport, no_keys, one_answer

MIRRORING_RESULTS = ("Prompting", "DestinationNotFound", "Cancelled", "Unknown")
HARDWARE_ADDRESS = re.compile(r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5,7}$")


def _address(value: str) -> str | None:
    if HARDWARE_ADDRESS.match(value):
        return None
    return "must be a hardware address like xx:xx:xx:xx:xx:xx"


def build_request(checker: Checker) -> None:
    name = checker.string("DestinationName", max_len=255)
    device_id = checker.string("DestinationDeviceID", check=_address)
    # The spec types ScanTime as a String of seconds; devices read an integer (Apple's own
    # schema says integer), so numeric text is accepted and sent as an integer.
    checker.integer("ScanTime", low=10, high=300, from_text=True)
    checker.string("Password", max_len=255)
    if (
        name is None
        and device_id is None
        and not any(key in checker.source for key in ("DestinationName", "DestinationDeviceID"))
    ):
        checker.problem("DestinationName", "or DestinationDeviceID is required")
    if name is not None and device_id is not None:
        checker.warn("both DestinationName and DestinationDeviceID given: the device uses the ID")


SPECS = (
    CommandSpec(
        "RequestMirroring",
        "mirroring",
        build_request,
        mac=MacSupport.NONE,
        parse=one_answer("MirroringResult", MIRRORING_RESULTS),
    ),
    CommandSpec(
        "StopMirroring",
        "mirroring",
        no_keys,
        mac=MacSupport.NONE,
        supervised_only=True,
    ),
)
