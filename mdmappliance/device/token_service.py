"""GetToken (iOS 17, macOS 14): a device asks the server for a token of some service
(``com.apple.maid``, ``com.apple.watch.pairing``). The appliance issues none, and its MDM
payload does not announce ``com.apple.mdm.token``; a device asking anyway gets a 403 with an
error body in the shape of Apple's (``{"code", "description"}``, JSON), so it knows why.

This is an answer, not an identity failure: the request is checked like any other (the
bound identity first), the refusal is an event of its own, committed with the answer.
"""

from __future__ import annotations

from mdmappliance.device import binding
from mdmappliance.device.checkin import checkin_event
from mdmappliance.device.policy import Handled, json_reply
from mdmappliance.mdm.messages import GetToken
from mdmappliance.pki.identity import DeviceIdentity
from mdmappliance.store import Tx

UNSUPPORTED = "com.github.mdmappliance.token.unsupported"
REFUSED_STATUS = 403


def handle_get_token(tx: Tx, message: GetToken, identity: DeviceIdentity) -> Handled:
    channel = message.channel
    device = binding.require_bound_identity(tx, channel, identity)
    target = binding.require_user_channel(tx, channel) if channel.is_user else device
    binding.touch(tx, target)
    checkin_event(
        tx,
        "checkin.get_token_refused",
        channel,
        {"user_id": channel.user_id, "token_service_type": message.service_type},
    )
    return json_reply(
        {
            "code": UNSUPPORTED,
            "description": f"this server issues no {message.service_type} tokens",
        },
        status=REFUSED_STATUS,
    )
