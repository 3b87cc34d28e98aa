"""Results become inventory: each answer replaces the enrollment's current state of its kind,
DeviceInformation answers update the device record, and every result gets a summary.

``apply_result`` runs in the same transaction that records the device's report. A result
the catalog cannot read (wrong types) is still kept raw; the inventory is left as it was and
an event says why, so nothing the device sent is lost.
"""

from __future__ import annotations

import functools
import plistlib
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from mdmappliance.commands.base import InventoryUpdate, Outcome, json_safe
from mdmappliance.commands.catalog import CATALOG
from mdmappliance.commands.errors import ResultInvalid
from mdmappliance.commands.information import COLUMNS
from mdmappliance.core.timestamps import utc_timestamp
from mdmappliance.mdm.errorcodes import describe_chain
from mdmappliance.mdm.platforms import platform_of
from mdmappliance.store import Tx
from mdmappliance.store.commands import CommandStatus
from mdmappliance.store.events import device_actor

RAW_DROPPED = (
    "the raw answer was not kept: this enrollment's stored answers reached "
    "[retention] result_bytes_per_enrollment"
)


def apply_result(
    tx: Tx,
    enrollment_id: int,
    udid: str,
    result_id: int,
    command_uuid: str,
    result: Mapping[str, Any],
    *,
    request_type: str,
    sealed: bool,
    unreadable: str | None = None,
    raw_dropped: bool = False,
) -> dict[str, Any]:
    """Read the result of ``command_uuid`` (a ``request_type`` command; ``sealed`` ones
    carry secrets and are not parsed); store its summary, inventory and facts.

    An answer that cannot be stored as JSON (``unreadable`` says why) is kept raw only, like
    one of the wrong shape: the inventory stays as it was and the queue moves on. With
    ``raw_dropped`` the raw answer was not kept (the enrollment reached its bound): the
    summary says so."""
    summary: dict[str, Any] = {}
    if raw_dropped:
        summary["raw_dropped"] = RAW_DROPPED
    if unreadable is not None:
        _unreadable(tx, enrollment_id, udid, command_uuid, request_type, unreadable)
        summary["unreadable"] = unreadable
        tx.commands.set_summary(result_id, summary)
        return summary
    status = result.get("Status")
    if result.get("ErrorChain"):
        summary["errors"] = describe_chain(result["ErrorChain"])
    spec = CATALOG.get(request_type)
    parse = spec.parse if spec is not None and not sealed else None
    wanted = status == "Acknowledged" or (status == "Error" and spec and spec.parse_errors)
    if parse is not None and wanted:
        stored = tx.commands.payload(command_uuid)  # only read when an answer is parsed
        assert stored is not None
        command = sent_command(stored[0], command_uuid)
        try:
            outcome = parse(result, command)
        except ResultInvalid as e:
            summary["unreadable"] = str(e)
            _unreadable(tx, enrollment_id, udid, command_uuid, request_type, str(e))
        else:
            summary.update(outcome.summary)
            _store_outcome(tx, enrollment_id, udid, command_uuid, outcome)
    if summary:
        tx.commands.set_summary(result_id, summary)
    return summary


def sent_command(reply: bytes, command_uuid: str) -> Mapping[str, Any]:
    """The ``Command`` of a stored reply plist. A command sent to many devices is one body
    around each CommandUUID, so it is parsed once per body, not once per answer (parsing
    an 85-query DeviceInformation costs more than the rest of reading its answer). Shared
    between answers, so it is handed out read-only."""
    return _parsed_command(reply.replace(command_uuid.encode("ascii"), b"", 1))


@functools.lru_cache(maxsize=256)
def _parsed_command(reply_without_uuid: bytes) -> Mapping[str, Any]:
    command = plistlib.loads(reply_without_uuid).get("Command", {})
    return MappingProxyType(command if isinstance(command, dict) else {})


def _unreadable(
    tx: Tx, enrollment_id: int, udid: str, command_uuid: str, request_type: str, why: str
) -> None:
    tx.events.record(
        "command.result_unreadable",
        actor=device_actor(udid),
        subject=str(enrollment_id),
        detail={"command_uuid": command_uuid, "request_type": request_type, "why": why},
    )


def _store_outcome(
    tx: Tx, enrollment_id: int, udid: str, command_uuid: str, outcome: Outcome
) -> None:
    now = utc_timestamp()
    for update in outcome.inventory:
        _store_inventory(tx, enrollment_id, command_uuid, update, now)
    if outcome.facts:
        _store_facts(tx, udid, outcome.facts, now)
    for kind, detail in outcome.events:
        tx.events.record(
            kind,
            actor=device_actor(udid),
            subject=str(enrollment_id),
            detail={"command_uuid": command_uuid, **detail},
        )


def _store_inventory(
    tx: Tx, enrollment_id: int, command_uuid: str, update: InventoryUpdate, now: str
) -> None:
    data = update.data
    if update.merge:
        stored = tx.inventory.get(enrollment_id, update.kind)
        current = dict(stored) if isinstance(stored, dict) else {}
        for asked in update.scope:
            if asked not in data:
                current.pop(asked, None)  # asked about, not answered: no longer there
        current.update(data)
        if current == stored:  # the same answer again: only when, and by which command
            tx.inventory.mark_reported(enrollment_id, update.kind, command_uuid, now)
            return
        data = current
    tx.inventory.put(enrollment_id, update.kind, data, command_uuid, now)


def _store_facts(tx: Tx, udid: str, facts: Mapping[str, Any], now: str) -> None:
    columns: dict[str, Any] = {}
    for key, column in COLUMNS.items():
        if key in facts:
            value = facts[key]
            columns[column] = int(value) if isinstance(value, bool) else value
    platform = platform_of(facts.get("ProductName"), facts.get("ModelName"))
    if platform is not None:
        columns["platform"] = platform.value
    tx.enrollments.update_facts(udid, facts, columns, now)


def command_status(tx: Tx, command_uuid: str, *, answer: bool = False) -> CommandStatus | None:
    """A command as an admin reads it: state, times, NotNow count, and its last result with
    the summary (ErrorChain in plain words); with ``answer``, the device's whole answer as
    JSON too."""
    status = tx.commands.status(command_uuid)
    if status is None:
        return None
    result = tx.commands.last_result(command_uuid, raw=answer)
    if result is not None:
        status["result"] = {
            "status": result.status,
            "received_at": result.received_at,
            "errors": describe_chain(result.error_chain),
            **result.summary,
        }
        if answer:
            status["result"]["answer"] = _answer(result.raw)
    return status


def _answer(raw: bytes | None) -> Any:
    """The device's answer as JSON; None if it does not parse (it is kept raw regardless)."""
    try:
        return json_safe(plistlib.loads(raw or b""))
    except Exception:
        return None
