"""The device side of the tree: the mTLS device listener (and the plain-HTTP proxy listener
behind a TLS-terminating proxy) serving the device routes."""

from __future__ import annotations

import time

from twisted.internet.endpoints import (
    SSL4ServerEndpoint,
    TCP4ServerEndpoint,
    TCP6ServerEndpoint,
)
from twisted.logger import Logger, LogLevel

from mdmappliance.admin.metrics import Metrics
from mdmappliance.app.graceful import ConnectionLimits, DrainingSite, ListenerService
from mdmappliance.app.reactor import Reactor
from mdmappliance.app.tls import device_ca_files, device_tls_options
from mdmappliance.config import Config
from mdmappliance.device.digest import DigestAuthority
from mdmappliance.device.identity import IdentityResolver
from mdmappliance.device.policy import ChannelPolicy
from mdmappliance.device.replay import ReplayGuard
from mdmappliance.device.routes import DeviceEndpoint, utc_now
from mdmappliance.pki.escrow import Escrow, read_key
from mdmappliance.pki.trust import TrustStore
from mdmappliance.pki.users import read_users_file
from mdmappliance.store import Store

log = Logger()


def channel_policy(config: Config, reactor: Reactor) -> ChannelPolicy:
    users_file = config.users_file()
    digest = None
    if users_file is not None:
        users = read_users_file(users_file, config.device.users_realm)
        digest = DigestAuthority(users, config.device.users_realm, reactor)
    return ChannelPolicy(
        escrow=Escrow(read_key(config.device.unlock_key_file)),
        topic=config.push_topic(),
        digest=digest,
        max_result_bytes=config.retention.result_bytes_per_enrollment,
    )


def device_endpoint(
    config: Config,
    reactor: Reactor,
    store: Store,
    policy: ChannelPolicy,
    trusted_proxies: tuple[str, ...] = (),
    metrics: Metrics | None = None,
    replays: ReplayGuard | None = None,
) -> DeviceEndpoint:
    trust = TrustStore.from_files(device_ca_files(config), config.device.signature_clock_skew)
    resolver = IdentityResolver(trust, now=utc_now, trusted_proxies=frozenset(trusted_proxies))
    return DeviceEndpoint(
        replays=replays,
        store=store,
        resolver=resolver,
        policy=policy,
        checkin_path=config.device.checkin_path,
        server_path=config.device.server_path,
        max_plist_depth=config.device.max_plist_depth,
        count_message=metrics.count_message if metrics is not None else None,
    )


def _device_site(
    endpoint: DeviceEndpoint, config: Config, name: str, metrics: Metrics | None
) -> DrainingSite:
    # Device traffic is high-volume and already in the event log: access lines at debug,
    # and not made at all when the log leaves debug out (~4 µs a request).
    site = DrainingSite(
        endpoint.resource(),
        max_body_bytes=config.device.max_body_bytes,
        access_log_level=LogLevel.debug if config.log.level == "debug" else None,
        metrics=metrics,
        metrics_name=name,
    )
    site.routes = endpoint
    if metrics is not None:
        metrics.known.update(endpoint.paths)
    site.displayTracebacks = False
    return site


def device_listeners(
    config: Config, reactor: Reactor, store: Store, metrics: Metrics | None = None
) -> list[ListenerService]:
    """The TLS device listener, and the plain-HTTP proxy listener when enabled."""
    policy = channel_policy(config, reactor)
    d = config.device
    limits = ConnectionLimits(d.max_connections, d.max_connections_per_address)
    # One memory of signed check-ins for both listeners: a replay is one whichever it uses.
    replays = ReplayGuard(time.monotonic, 2 * config.device.signature_clock_skew)
    site = _device_site(
        device_endpoint(config, reactor, store, policy, metrics=metrics, replays=replays),
        config,
        "device",
        metrics,
    )
    tls_endpoint = SSL4ServerEndpoint(reactor, d.port, device_tls_options(config), interface=d.bind)
    listeners = [
        ListenerService(
            "device",
            tls_endpoint,
            site,
            clock=reactor,
            grace=config.appliance.shutdown_grace,
            describe=f"{d.bind}:{d.port}",
            limits=limits,
        )
    ]
    p = config.proxy
    if p.enabled:
        proxied = device_endpoint(
            config, reactor, store, policy, p.trusted_proxies, metrics, replays=replays
        )
        endpoint_type = TCP6ServerEndpoint if ":" in p.bind else TCP4ServerEndpoint
        listeners.append(
            ListenerService(
                "proxy",
                endpoint_type(reactor, p.port, interface=p.bind),
                _device_site(proxied, config, "proxy", metrics),
                clock=reactor,
                grace=config.appliance.shutdown_grace,
                describe=f"{p.bind}:{p.port}",
                limits=limits,
            )
        )
    return listeners
