"""Declarative management check-ins (MessageType DeclarativeManagement), answered with an
empty declaration set until full declarative management exists.

- ``tokens``: the SyncTokens of the empty set (a token that never changes, so a device
  that has synchronised once asks for nothing more).
- ``declaration-items``: the empty manifest, with the same DeclarationsToken.
- ``status``: the device's status report, kept in inventory (kind ``declarative_status``).
  The first report is complete, later ones hold only what changed, so each is merged into
  the stored one: JSON objects key by key, at every depth; anything else (arrays included)
  replaced by the newer value. A merged report larger than ``MAX_STATUS_BYTES`` (a device
  inventing keys) is replaced by the latest report alone.
- ``declaration/<type>/<identifier>``: 404, there are no declarations.

Device and user channels alike, User Enrollments included.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from mdmappliance.core.timestamps import utc_timestamp
from mdmappliance.device import binding
from mdmappliance.device.checkin import checkin_event
from mdmappliance.device.policy import EMPTY, Handled, json_reply
from mdmappliance.mdm.errors import NotFound
from mdmappliance.mdm.messages import MAX_DECLARATIVE_DATA, DeclarativeManagement
from mdmappliance.pki.identity import DeviceIdentity
from mdmappliance.store import Tx

STATUS_KIND = "declarative_status"
#: Status reports come with no command: their inventory rows name none.
NO_COMMAND = ""
EMPTY_DECLARATIONS: dict[str, list[Any]] = {
    "Activations": [],
    "Assets": [],
    "Configurations": [],
    "Management": [],
}
#: The token of a declaration set: a digest of its manifest (stable across restarts).
DECLARATIONS_TOKEN = hashlib.sha256(
    json.dumps(EMPTY_DECLARATIONS, sort_keys=True, separators=(",", ":")).encode()
).hexdigest()
#: When the declarations last changed: the empty set never has.
DECLARATIONS_TIMESTAMP = "1970-01-01T00:00:00Z"
MAX_STATUS_BYTES = 2 * MAX_DECLARATIVE_DATA


def handle_declarative_management(
    tx: Tx, message: DeclarativeManagement, identity: DeviceIdentity
) -> Handled:
    channel = message.channel
    device = binding.require_bound_identity(tx, channel, identity)
    target = binding.require_user_channel(tx, channel) if channel.is_user else device
    binding.touch(tx, target)
    if message.endpoint == "tokens":
        return json_reply(
            {
                "SyncTokens": {
                    "DeclarationsToken": DECLARATIONS_TOKEN,
                    "Timestamp": DECLARATIONS_TIMESTAMP,
                }
            }
        )
    if message.endpoint == "declaration-items":
        return json_reply(
            {"Declarations": EMPTY_DECLARATIONS, "DeclarationsToken": DECLARATIONS_TOKEN}
        )
    if message.declaration is not None:
        kind, identifier = message.declaration
        raise NotFound(f"no {kind} declaration {identifier!r} (none are declared)")
    assert message.status is not None  # the parser knows no other Endpoint
    stored = tx.inventory.get(target.id, STATUS_KIND)
    merged = merge_status(stored if isinstance(stored, dict) else {}, message.status)
    replaced = len(json.dumps(merged)) > MAX_STATUS_BYTES
    if replaced:
        merged = message.status
    tx.inventory.put(target.id, STATUS_KIND, merged, NO_COMMAND, utc_timestamp())
    checkin_event(
        tx,
        "checkin.declarative_status",
        channel,
        {"user_id": channel.user_id, "keys": sorted(message.status), "replaced": replaced},
    )
    return Handled(EMPTY)


def merge_status(stored: dict[str, Any], report: dict[str, Any]) -> dict[str, Any]:
    """``report`` laid over ``stored``: objects merged key by key, other values replaced."""
    merged = dict(stored)
    for key, value in report.items():
        before = merged.get(key)
        if isinstance(value, dict) and isinstance(before, dict):
            merged[key] = merge_status(before, value)
        else:
            merged[key] = value
    return merged
