"""The service tree: one MultiService that later issues add listeners and pollers to.

Children start in the order they were added and stop in reverse, one after another: the
listeners drain first, the store closes last, so no request ever finds the database gone.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path
from typing import Any, cast

from cryptography import x509
from OpenSSL import crypto
from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.endpoints import (
    SSL4ServerEndpoint,
    TCP4ServerEndpoint,
    TCP6ServerEndpoint,
)
from twisted.internet.interfaces import (
    IReactorCore,
    IReactorFromThreads,
    IReactorTCP,
    IReactorTime,
)
from twisted.internet.ssl import CertificateOptions, TLSVersion
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from mdmappliance import pki
from mdmappliance._version import __version__
from mdmappliance.admin.api import AdminAPI
from mdmappliance.admin.context import AdminContext
from mdmappliance.admin.metrics import Metrics
from mdmappliance.admin.webhooks import webhook_service
from mdmappliance.apns.client import APNsClient
from mdmappliance.apns.pusher import Pusher, PushService
from mdmappliance.app.listeners import DrainingSite, ListenerService
from mdmappliance.app.retention import RetentionJob
from mdmappliance.commands.base import BuildContext
from mdmappliance.commands.send import CommandSender
from mdmappliance.config import Config
from mdmappliance.core.periodic import timer_service
from mdmappliance.device.digest import DigestAuthority
from mdmappliance.device.identity import IdentityResolver
from mdmappliance.device.inactivity import InactivityJob, inactivity_service
from mdmappliance.device.policy import ChannelPolicy
from mdmappliance.device.routes import DeviceEndpoint, utc_now
from mdmappliance.enrollment.factory import ProfileFactory
from mdmappliance.enrollment.profile import MDMSettings
from mdmappliance.enrollment.renewal import RenewalJob, renewal_service
from mdmappliance.enrollment.routes import EnrollmentEndpoint
from mdmappliance.pki.escrow import Escrow, read_key
from mdmappliance.pki.pushcert import read_push_certificate
from mdmappliance.pki.signing import ProfileSigner
from mdmappliance.pki.trust import TrustStore
from mdmappliance.pki.users import read_users_file
from mdmappliance.store import Store, record_event

log = Logger()


class Reactor(IReactorTCP, IReactorTime, IReactorFromThreads, IReactorCore):
    """What the service tree needs of a reactor (for type checking only)."""


def global_reactor() -> Reactor:
    """The installed reactor, typed as what the service tree uses of it."""
    from twisted.internet import reactor

    return cast(Reactor, reactor)


class ApplianceService(MultiService):
    """A MultiService whose children stop one at a time, newest first."""

    def stopService(self) -> Deferred[None]:
        Service.stopService(self)
        chain: Deferred[Any] = succeed(None)
        for child in reversed(list(self)):
            chain.addCallback(_stop, child)
            chain.addErrback(self._stop_failed, child)
        return chain

    @staticmethod
    def _stop_failed(failure: Failure, child: IService) -> None:
        log.failure("stopping {service} failed", failure, service=child.name)


def _stop(_: object, child: IService) -> Deferred[Any]:
    return maybeDeferred(child.stopService)


class LifecycleEvents(Service):
    """Records the appliance's starts and stops in the event log."""

    name = "lifecycle-events"

    def __init__(self, store: Store, describe: dict[str, Any]) -> None:
        self.store = store
        self.describe = describe

    def startService(self) -> None:
        super().startService()
        detail = {"version": __version__, "pid": os.getpid(), **self.describe}
        self.store.transaction(record_event, "service.started", detail=detail).addErrback(
            lambda f: log.failure("could not record the start event", f)
        )

    def stopService(self) -> Deferred[None]:
        super().stopService()
        recorded = self.store.transaction(record_event, "service.stopped")
        recorded.addErrback(lambda f: log.failure("could not record the stop event", f))
        return recorded.addCallback(lambda _: None)


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


def server_tls_options(config: Config, client_cas: list[Path] | None) -> CertificateOptions:
    """The server certificate over TLS 1.2+, HTTP/1.1 only (with HTTP/2 twisted.web loses
    the peer certificate); with ``client_cas``, a client certificate from one of them is
    demanded."""
    server_chain = pki.read_certificates(config.pki.server_cert)
    key = pki.read_private_key(config.pki.server_key)
    anchors = [c for path in client_cas or [] for c in pki.read_certificates(path)]
    return CertificateOptions(
        privateKey=crypto.PKey.from_cryptography_key(key),
        certificate=crypto.X509.from_cryptography(server_chain[0]),
        extraCertChain=[crypto.X509.from_cryptography(c) for c in server_chain[1:]],
        verify=bool(anchors),
        requireCertificate=bool(anchors),
        caCerts=[crypto.X509.from_cryptography(c) for c in anchors] or None,
        acceptableProtocols=[b"http/1.1"],
        raiseMinimumTo=TLSVersion.TLSv1_2,
    )


def device_tls_options(config: Config) -> CertificateOptions:
    return server_tls_options(config, device_ca_files(config))


def profile_trust_chain(config: Config) -> tuple[x509.Certificate, ...]:
    """The CA certificates a device needs to trust the server certificate, when configured:
    the chain in the server certificate file, plus the appliance CA when it issued it."""
    if not config.enrollment.include_server_ca:
        return ()
    server_chain = pki.read_certificates(config.pki.server_cert)
    appliance_ca = pki.read_certificate(config.pki.ca_cert)
    chain = [c for c in server_chain[1:] if pki.is_ca_certificate(c)]
    if server_chain[0].issuer == appliance_ca.subject and appliance_ca not in chain:
        chain.append(appliance_ca)
    return tuple(chain)


def profile_signer(config: Config) -> ProfileSigner:
    e = config.enrollment
    return ProfileSigner.from_files(e.signing_cert, e.signing_key, config.pki.ca_cert)


def profile_factory(config: Config) -> ProfileFactory:
    e = config.enrollment
    return ProfileFactory(
        issuer=pki.read_issuer(config.pki.ca_cert, config.pki.ca_key),
        signer=profile_signer(config),
        identifier=config.profile_identifier(),
        display_name=f"Device management ({config.appliance.hostname})",
        organization=e.organization,
        trust_chain=profile_trust_chain(config),
        identity_lifetime=datetime.timedelta(days=e.identity_days),
        settings=lambda: MDMSettings.from_config(config, config.push_topic()),
    )


def enrollment_listener(
    config: Config,
    reactor: Reactor,
    store: Store,
    factory: ProfileFactory,
    metrics: Metrics | None = None,
) -> ListenerService:
    e = config.enrollment
    routes = EnrollmentEndpoint(store=store, factory=factory)
    site = DrainingSite(
        routes.resource(),
        max_body_bytes=64 * 1024,
        metrics=metrics,
        metrics_name="enrollment",
    )
    site.routes = routes
    site.displayTracebacks = False
    endpoint = SSL4ServerEndpoint(
        reactor, e.port, server_tls_options(config, None), interface=e.bind
    )
    return ListenerService(
        "enrollment",
        endpoint,
        site,
        clock=reactor,
        grace=config.appliance.shutdown_grace,
        describe=f"{e.bind}:{e.port}",
    )


def device_ca_files(config: Config) -> list[Path]:
    return [config.pki.ca_cert, *config.device.extra_ca_files]


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
    )


def device_endpoint(
    config: Config,
    reactor: Reactor,
    store: Store,
    policy: ChannelPolicy,
    trusted_proxies: tuple[str, ...] = (),
    metrics: Metrics | None = None,
) -> DeviceEndpoint:
    trust = TrustStore.from_files(device_ca_files(config), config.device.signature_clock_skew)
    resolver = IdentityResolver(trust, now=utc_now, trusted_proxies=frozenset(trusted_proxies))
    return DeviceEndpoint(
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
    # Device traffic is high-volume and already in the event log: access lines at debug.
    site = DrainingSite(
        endpoint.resource(),
        max_body_bytes=config.device.max_body_bytes,
        access_log_level=LogLevel.debug,
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
    site = _device_site(
        device_endpoint(config, reactor, store, policy, metrics=metrics), config, "device", metrics
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
        )
    ]
    p = config.proxy
    if p.enabled:
        proxied = device_endpoint(config, reactor, store, policy, p.trusted_proxies, metrics)
        endpoint_type = TCP6ServerEndpoint if ":" in p.bind else TCP4ServerEndpoint
        listeners.append(
            ListenerService(
                "proxy",
                endpoint_type(reactor, p.port, interface=p.bind),
                _device_site(proxied, config, "proxy", metrics),
                clock=reactor,
                grace=config.appliance.shutdown_grace,
                describe=f"{p.bind}:{p.port}",
            )
        )
    return listeners


def make_service(config: Config, reactor: Reactor) -> ApplianceService:
    """Build the tree and open (and migrate) the database; raises ApplianceError on trouble."""
    top = ApplianceService()
    metrics = Metrics()
    store = Store.configured(config.store, reactor)
    report = store.open()
    if report.upgraded:
        log.info(
            "database {path} upgraded from schema {old} to {new} (backup: {backup})",
            path=str(store.path),
            old=report.from_version,
            new=report.to_version,
            backup=str(report.backup) if report.backup else "none, it was new",
        )
    for warning in config.warnings:
        log.warn("config {path}: {problem}", path=str(config.path), problem=warning)
    store.setServiceParent(top)
    admin_url = config.admin_url()
    LifecycleEvents(store, {"admin_url": admin_url}).setServiceParent(top)
    push = push_service(config, reactor, store)
    if push is not None:
        push.setServiceParent(top)
    inactivity = InactivityJob(
        store,
        push.pusher if push is not None else None,
        reactor,
        push_after=datetime.timedelta(hours=config.apns.inactive_push_hours),
        inactive_after=datetime.timedelta(days=config.apns.inactive_days),
    )
    inactivity_service(inactivity, config.apns.inactivity_interval, reactor).setServiceParent(top)
    retention = RetentionJob(
        store,
        reactor,
        datetime.timedelta(days=config.retention.days),
        webhook_urls=config.webhooks.urls,
        batch=config.retention.batch,
    )
    timer_service(retention, config.retention.interval, reactor, "retention").setServiceParent(top)
    if config.webhooks.urls:
        webhook_service(
            store,
            config.webhooks.urls,
            config.read_webhook_secret(),
            reactor,
            timeout=config.webhooks.timeout,
            retry_base=config.webhooks.retry_base_seconds,
            poll_interval=config.webhooks.poll_interval,
        ).setServiceParent(top)
    admin_listener(
        reactor,
        store,
        bind=config.admin.bind,
        port=config.admin.port,
        api_keys=dict(config.api_keys()),
        grace=config.appliance.shutdown_grace,
        link_url=config.enrollment_url,
        link_lifetime=datetime.timedelta(days=config.enrollment.link_days),
        profile_identifier=config.profile_identifier(),
        push=push,
        sender=command_sender(config, store, push),
        webhook_urls=config.webhooks.urls,
        metrics=metrics,
        tls=server_tls_options(config, None) if config.admin.tls else None,
    ).setServiceParent(top)
    for listener in device_listeners(config, reactor, store, metrics):
        listener.setServiceParent(top)
    factory = profile_factory(config)
    enrollment_listener(config, reactor, store, factory, metrics).setServiceParent(top)
    job = RenewalJob(
        store, factory, reactor, datetime.timedelta(days=config.enrollment.renew_within_days)
    )
    renewal_service(job, config.enrollment.renewal_interval, reactor).setServiceParent(top)
    return top


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


def urls(config: Config) -> dict[str, str]:
    """The URLs the service answers on, for start-up messages."""
    found = {
        "admin API": f"{config.admin_url()}/v1/health",
        "device CheckInURL": config.device_url(config.device.checkin_path),
        "device ServerURL": config.device_url(config.device.server_path),
        "enrollment links": config.enrollment_url("<token>"),
    }
    if config.proxy.enabled:
        found["proxy listener"] = f"http://{config.proxy.bind}:{config.proxy.port}"
    return found
