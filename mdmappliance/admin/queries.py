"""What the admin API and the CLI read: devices, their commands, and the pages they come in.

Plain functions run on the store thread. Pages use the row id as cursor: stable while rows
are added, and cheap with the primary key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from mdmappliance.commands.inventory import command_status
from mdmappliance.store import Tx
from mdmappliance.store.commands import STATES, CommandListed, CommandStatus
from mdmappliance.store.fleet import DeviceSummary

Row = TypeVar("Row", bound=Mapping[str, Any])
MAX_PAGE = 1000
DEVICE_STATES = ("enrolled", "authenticated", "checked_out", "retired", "inactive")
COMMAND_STATES = STATES


def _page(rows: list[Row], limit: int, key: str) -> tuple[list[Row], Any]:
    """The first ``limit`` rows, and the cursor of the next page (None: this is the last)."""
    page = rows[:limit]
    return page, (page[-1][key] if len(rows) > limit else None)


def list_devices(
    tx: Tx,
    *,
    state: str | None = None,
    platform: str | None = None,
    serial: str | None = None,
    after: int = 0,
    limit: int = 100,
) -> tuple[list[DeviceSummary], int | None]:
    """Device channels, filtered, by enrollment id after ``after``; and the next cursor."""
    limit = max(1, min(limit, MAX_PAGE))
    rows = tx.fleet.devices(state=state, platform=platform, serial=serial, after=after, limit=limit)
    return _page(rows, limit, "enrollment_id")


def device_commands(
    tx: Tx, *, udid: str, state: str | None = None, after: int = 0, limit: int = 100
) -> tuple[list[CommandListed], int | None]:
    """The commands of a device's channels, oldest first, after the cursor ``after``."""
    limit = max(1, min(limit, MAX_PAGE))
    return _page(tx.commands.of_device(udid, state=state, after=after, limit=limit), limit, "id")


def command_detail(tx: Tx, command_uuid: str) -> CommandStatus | None:
    """``command_status`` with the device's whole answer, decoded to JSON."""
    return command_status(tx, command_uuid, answer=True)
