"""APNs in the tree: the push service, when a push certificate is installed."""

from __future__ import annotations

from twisted.logger import Logger

from mdmappliance.apns.client import APNsClient
from mdmappliance.apns.pusher import Pusher, PushService
from mdmappliance.app.reactor import Reactor
from mdmappliance.config import Config
from mdmappliance.pki.pushcert import read_push_certificate
from mdmappliance.store import Store

log = Logger()


def push_service(config: Config, reactor: Reactor, store: Store) -> PushService | None:
    """APNs, when a push certificate is installed (else None: devices poll on their own)."""
    a = config.apns
    if not a.cert_file.exists():
        log.warn(
            "no push certificate ({path}): pushes are off until `mdmappliance pushcert import`",
            path=str(a.cert_file),
        )
        return None
    certificate = read_push_certificate(a.cert_file)
    client = APNsClient(
        reactor,
        a.gateway,
        a.cert_file.read_bytes(),
        a.key_file.read_bytes(),
        ca_file=config.apns_ca_file(),
        ping_interval=a.ping_interval,
        ping_timeout=a.ping_timeout,
    )
    pusher = Pusher(
        store,
        client,
        reactor,
        certificate.topic,
        priority=a.priority,
        expiration_seconds=a.expiration_hours * 3600,
        coalesce_seconds=a.coalesce_seconds,
        retries=a.retries,
        retry_base_seconds=a.retry_base_seconds,
    )
    return PushService(client, pusher, certificate)
