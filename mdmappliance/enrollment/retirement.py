"""Ending a management relationship ("Terminating a Management Relationship").

- Revocation puts a device's identities on the deny list: every request made with them is
  refused (403, audited), whatever they are bound to.
- Retirement queues a RemoveProfile for the MDM profile; once the device answers it (or at
  once, when forced), the enrollment is retired and the device gets 401 from then on.
"""

from __future__ import annotations

from mdmappliance.commands.errors import CommandRejected
from mdmappliance.commands.queue import enqueue
from mdmappliance.core.timestamps import utc_timestamp
from mdmappliance.store import Tx

RETIRE_PRIORITY = 1000


def revoke_device(tx: Tx, udid: str, actor: str) -> int:
    """Deny every identity bound to ``udid``; the number revoked (0: unknown device)."""
    count = tx.enrollments.revoke_identities(udid, utc_timestamp())
    if count:
        tx.events.record("identity.revoked", actor=actor, subject=udid, detail={"count": count})
    return count


def retire_device(
    tx: Tx, udid: str, profile_identifier: str, actor: str, *, now: bool = False
) -> str | None:
    """Queue RemoveProfile of the MDM profile (retired once answered), or retire at once.

    The device channel (``device.reports``) finishes the retirement when the answer comes.
    """
    device = tx.enrollments.get(udid)
    if device is None:
        raise CommandRejected(f"no enrollment for {udid}")
    if device.state == "retired":
        return None
    if now or device.state == "checked_out":
        tx.enrollments.mark_retired(udid, utc_timestamp())
        tx.events.record("enrollment.retired", actor=actor, subject=udid)
        return None
    command_uuid = enqueue(
        tx,
        device.id,
        {"RequestType": "RemoveProfile", "Identifier": profile_identifier},
        priority=RETIRE_PRIORITY,
        actor=actor,
    )
    tx.enrollments.set_retire_command(device.id, command_uuid)
    tx.events.record(
        "enrollment.retire_requested",
        actor=actor,
        subject=udid,
        detail={"command_uuid": command_uuid},
    )
    return command_uuid
