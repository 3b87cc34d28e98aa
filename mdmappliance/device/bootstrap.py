"""The Bootstrap Token of a macOS device channel (SetBootstrapToken, GetBootstrapToken).

The token lets a Mac grant a secure token to accounts and authorise software updates, so
it is escrowed as the UnlockToken is: sealed at rest with the escrow key, bound to the
enrollment's UDID, opened only to be returned. It is returned only to the enrollment that
set it (the bound identity, as for every message) and ends with the enrollment: CheckOut,
retirement and a new enrollment clear it (``store.enrollments``).

Parsing (``mdm.messages``) has refused user channels and User Enrollments already.
"""

from __future__ import annotations

from mdmappliance.core.timestamps import utc_timestamp
from mdmappliance.device import binding
from mdmappliance.device.checkin import checkin_event
from mdmappliance.device.policy import EMPTY, ChannelPolicy, Handled, plist_reply
from mdmappliance.mdm.messages import GetBootstrapToken, SetBootstrapToken
from mdmappliance.pki.identity import DeviceIdentity
from mdmappliance.store import Tx


def handle_set_bootstrap_token(
    tx: Tx, message: SetBootstrapToken, identity: DeviceIdentity, policy: ChannelPolicy
) -> Handled:
    """Escrow the token sealed (a missing or empty one removes it)."""
    channel = message.channel
    device = binding.require_bound_identity(tx, channel, identity)
    now = utc_timestamp()
    sealed = None if message.token is None else policy.escrow.seal(message.token, channel.udid)
    tx.enrollments.set_bootstrap_token(device.id, sealed, now)
    tx.enrollments.set_awaiting_configuration(device.id, message.awaiting_configuration, now)
    binding.touch(tx, device)
    checkin_event(
        tx,
        "checkin.bootstrap_token_set",
        channel,
        {"bootstrap_token": "removed" if sealed is None else "escrowed"},
    )
    return Handled(EMPTY)


def handle_get_bootstrap_token(
    tx: Tx, message: GetBootstrapToken, identity: DeviceIdentity, policy: ChannelPolicy
) -> Handled:
    """``{"BootstrapToken": <data>}``, or an empty dictionary when none is escrowed."""
    channel = message.channel
    device = binding.require_bound_identity(tx, channel, identity)
    now = utc_timestamp()
    tx.enrollments.set_awaiting_configuration(device.id, message.awaiting_configuration, now)
    binding.touch(tx, device)
    sealed = tx.enrollments.bootstrap_token_sealed(device.id)
    checkin_event(tx, "checkin.bootstrap_token_get", channel, {"returned": sealed is not None})
    if sealed is None:
        return Handled(plist_reply({}))
    return Handled(plist_reply({"BootstrapToken": policy.escrow.open(sealed, channel.udid)}))
