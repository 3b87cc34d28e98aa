"""The admin side of the tree: the admin API listener, and the command sender it queues
commands with."""

from __future__ import annotations

from typing import Any

from twisted.internet.endpoints import (
    SSL4ServerEndpoint,
    TCP4ServerEndpoint,
    TCP6ServerEndpoint,
)
from twisted.internet.ssl import CertificateOptions
from twisted.logger import Logger

from mdmappliance.admin.api import AdminAPI
from mdmappliance.admin.context import AdminContext
from mdmappliance.apns.pusher import PushService
from mdmappliance.app.enrollment_listener import profile_signer
from mdmappliance.app.graceful import DrainingSite, ListenerService
from mdmappliance.app.reactor import Reactor
from mdmappliance.commands.base import BuildContext
from mdmappliance.commands.send import CommandSender
from mdmappliance.config import Config
from mdmappliance.pki.escrow import Escrow, read_key
from mdmappliance.store import Store

log = Logger()


def admin_listener(
    reactor: Reactor,
    store: Store,
    *,
    bind: str,
    port: int,
    api_keys: dict[str, Any],
    grace: float,
    tls: CertificateOptions | None = None,
    **api_options: Any,
) -> ListenerService:
    """The admin API at ``bind``:``port`` (0 picks a free port), plain HTTP or ``tls``;
    ``api_options`` go to the routes' ``AdminContext`` as they are."""
    api = AdminAPI(
        AdminContext(store=store, clock=reactor, started_at=reactor.seconds(), **api_options)
    )
    site = DrainingSite(
        api.resource(api_keys),
        max_body_bytes=1024 * 1024,
        metrics=api.metrics,
        metrics_name="admin",
    )
    site.displayTracebacks = False
    endpoint: Any
    if tls is not None:
        endpoint = SSL4ServerEndpoint(reactor, port, tls, interface=bind)
    else:
        endpoint_type = TCP6ServerEndpoint if ":" in bind else TCP4ServerEndpoint
        endpoint = endpoint_type(reactor, port, interface=bind)
    return ListenerService(
        "admin", endpoint, site, clock=reactor, grace=grace, describe=f"{bind}:{port}"
    )


def command_sender(config: Config, store: Store, push: PushService | None = None) -> CommandSender:
    """How the admin API and CLI queue commands: checked by the catalog, profiles signed
    with the profile-signing certificate on request, UnlockTokens from escrow."""
    signer = profile_signer(config)
    return CommandSender(
        store=store,
        context=BuildContext(own_profile_identifier=config.profile_identifier()),
        sign_profile=signer.sign,
        escrow=Escrow(read_key(config.device.unlock_key_file)),
        pusher=push.pusher if push is not None else None,
    )
