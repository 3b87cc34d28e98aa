"""One device request, one transaction: ``handle_message`` runs on the store thread inside
``Store.transaction`` and hands the message to its handler. An MDMError raised there rolls
everything back, so a refused request leaves the database as it was."""

from __future__ import annotations

from collections.abc import Collection

from mdmappliance.device.bootstrap import handle_get_bootstrap_token, handle_set_bootstrap_token
from mdmappliance.device.checkin import (
    handle_authenticate,
    handle_checkout,
    handle_token_update,
    handle_user_authenticate,
)
from mdmappliance.device.declarative import handle_declarative_management
from mdmappliance.device.policy import ChannelPolicy, Handled
from mdmappliance.device.reports import handle_report
from mdmappliance.device.token_service import handle_get_token
from mdmappliance.mdm.messages import (
    Authenticate,
    CheckOut,
    DeclarativeManagement,
    GetBootstrapToken,
    GetToken,
    Message,
    Report,
    SetBootstrapToken,
    TokenUpdate,
    UserAuthenticate,
)
from mdmappliance.pki.identity import DeviceIdentity
from mdmappliance.store import Tx


def handle_message(
    tx: Tx,
    message: Message,
    identity: DeviceIdentity,
    policy: ChannelPolicy,
    skip: Collection[str],
) -> Handled:
    if isinstance(message, Report):
        return handle_report(tx, message, identity, policy, skip)
    if isinstance(message, Authenticate):
        return handle_authenticate(tx, message, identity)
    if isinstance(message, TokenUpdate):
        return handle_token_update(tx, message, identity, policy)
    if isinstance(message, CheckOut):
        return handle_checkout(tx, message, identity)
    if isinstance(message, UserAuthenticate):
        return handle_user_authenticate(tx, message, identity, policy)
    if isinstance(message, SetBootstrapToken):
        return handle_set_bootstrap_token(tx, message, identity, policy)
    if isinstance(message, GetBootstrapToken):
        return handle_get_bootstrap_token(tx, message, identity, policy)
    if isinstance(message, GetToken):
        return handle_get_token(tx, message, identity)
    assert isinstance(message, DeclarativeManagement)
    return handle_declarative_management(tx, message, identity)
