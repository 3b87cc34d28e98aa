"""``mdmappliance simulate``: a fleet of simulated iPhones and Macs against a running
appliance, so that devices, inventory and command results can be seen without Apple hardware.

Each device enrolls as a real one does: it downloads the profile from its one-time link,
checks the signature, gets its identity by SCEP, then Authenticate and TokenUpdate over mTLS.
Then every device polls (Idle) each ``interval`` seconds, as a device woken by a push would,
and answers every command it receives (``model.DeviceModel``: Apple's schema for the request
types it does not perform itself). Nothing is kept: another run enrolls new devices.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.internet import task

from mdmappliance.simulator.device import SimulatedDevice, SimulatorError, reactor
from mdmappliance.simulator.model import DeviceModel

Say = Callable[[str], None]


@dataclass(frozen=True)
class Kind:
    """What one kind of simulated device says of itself at Authenticate."""

    name: str
    platform: str
    product_name: str
    model_name: str
    os_version: str
    build_version: str


IPHONE = Kind("iPhone", "ios", "iPhone17,1", "iPhone", "18.1", "22B83")
MAC = Kind("Mac", "macos", "Mac16,1", "MacBook Pro", "15.1", "24B83")


@dataclass
class Simulated:
    device: SimulatedDevice
    model: DeviceModel
    name: str


def kinds_for(devices: int, macs: int | None = None) -> list[Kind]:
    """``devices`` kinds, ``macs`` of them Macs (by default one in five, at least one in a
    fleet of two or more)."""
    if macs is None:
        macs = max(devices // 5, 1 if devices >= 2 else 0)
    macs = min(macs, devices)
    return [IPHONE] * (devices - macs) + [MAC] * macs


async def enroll(url: str, ca_cert: Path, kind: Kind, number: int) -> Simulated:
    """One device through its enrollment link, as a device does; SimulatorError if the
    appliance refuses it."""
    device = await SimulatedDevice.from_enrollment_link(url, ca_cert)
    name = f"Simulated {kind.name} {number}"
    facts = {
        "DeviceName": name,
        "ProductName": kind.product_name,
        "Model": kind.product_name,
        "ModelName": kind.model_name,
        "OSVersion": kind.os_version,
        "BuildVersion": kind.build_version,
        "SerialNumber": "SIM" + device.udid[:9],
    }
    try:
        await device.enroll(facts, unlock_token=secrets.token_bytes(32))
    except SimulatorError:
        await device.close()
        raise
    model = DeviceModel(
        platform=kind.platform,
        udid=device.udid,
        os_version=kind.os_version,
        supervised=False,
        settings={"DeviceName": name},
    )
    return Simulated(device, model, name)


def answering(simulated: Simulated, say: Say) -> Callable[[dict[str, Any]], tuple[str, Any]]:
    """The model's answer, told as one line per command."""

    def answer(envelope: dict[str, Any]) -> tuple[str, Any]:
        status, extra = simulated.model.answer(envelope)
        request_type = envelope.get("Command", {}).get("RequestType", "?")
        say(f"{simulated.name}: {request_type} {envelope.get('CommandUUID')} -> {status}")
        return status, extra

    return answer


async def run_fleet(
    links: list[str],
    kinds: list[Kind],
    ca_cert: Path,
    say: Say,
    *,
    interval: float = 5.0,
    rounds: int | None = None,
) -> list[Simulated]:
    """Enroll a device through each link, then poll ``rounds`` times (None: until the
    reactor stops), ``interval`` seconds apart. Returns the devices, closed."""
    fleet: list[Simulated] = []
    try:
        for number, (url, kind) in enumerate(zip(links, kinds, strict=True), start=1):
            simulated = await enroll(url, ca_cert, kind, number)
            fleet.append(simulated)
            say(f"enrolled {simulated.name} ({kind.os_version}), UDID {simulated.device.udid}")
        done = 0
        while rounds is None or done < rounds:
            for simulated in fleet:
                await simulated.device.poll(answering(simulated, say))
            done += 1
            if rounds is None or done < rounds:
                await task.deferLater(reactor, interval, lambda: None)
    finally:
        for simulated in fleet:
            await simulated.device.close()
    return fleet
