"""Command reports on the ServerURL ("MDM Protocol Extensions"): record the result (or the
Idle poll), turn it into inventory, and answer with the next command or nothing.
"""

from __future__ import annotations

from collections.abc import Collection

from mdmappliance.commands.inventory import apply_result
from mdmappliance.commands.queue import next_command, record_report
from mdmappliance.core.timestamps import utc_timestamp
from mdmappliance.device import binding
from mdmappliance.device.policy import EMPTY, ChannelPolicy, Handled
from mdmappliance.mdm.errors import NotManaged
from mdmappliance.mdm.messages import FINAL_STATUSES, Report
from mdmappliance.pki.identity import DeviceIdentity
from mdmappliance.store import Tx
from mdmappliance.store.events import device_actor


def handle_report(
    tx: Tx,
    report: Report,
    identity: DeviceIdentity,
    policy: ChannelPolicy,
    skip: Collection[str],
) -> Handled:
    """Record a result (or an Idle poll) and answer with the next command or nothing."""
    channel = report.channel
    device = binding.require_bound_identity(tx, channel, identity)
    if device.state != "enrolled":
        raise NotManaged(f"device {channel.udid} has not completed enrollment (no TokenUpdate)")
    target = binding.require_user_channel(tx, channel) if channel.is_user else device
    binding.touch(tx, target)
    outcome = record_report(tx, target.id, report, max_result_bytes=policy.max_result_bytes)
    if outcome.result_id is not None and report.command_uuid is not None:
        apply_result(
            tx,
            target.id,
            channel.udid,
            outcome.result_id,
            report.command_uuid,
            report.body,
            request_type=outcome.request_type,
            sealed=outcome.sealed,
            unreadable=report.unreadable,
            raw_dropped=outcome.raw_dropped,
        )
    if report.status in FINAL_STATUSES and finish_retirement(tx, channel.udid, report.command_uuid):
        return Handled(EMPTY)  # retired: from now on this device gets 401
    excluded = set(skip)
    if outcome.not_now:
        excluded.add(outcome.not_now)
    command = next_command(tx, target.id, excluded)
    if command is None:
        return Handled(EMPTY, outcome.not_now)
    if command.sealed:  # ClearPasscode: its UnlockToken is opened only to be sent
        return Handled(policy.escrow.open(command.payload, channel.udid), outcome.not_now)
    return Handled(command.payload, outcome.not_now)


def finish_retirement(tx: Tx, udid: str, command_uuid: str | None) -> bool:
    """The answer to the retiring RemoveProfile retires the device (``enrollment.retirement``
    queued it)."""
    if command_uuid is None or not tx.enrollments.is_retire_command(udid, command_uuid):
        return False
    tx.enrollments.mark_retired(udid, utc_timestamp())
    tx.events.record("enrollment.retired", actor=device_actor(udid), subject=udid)
    return True
