"""The service tree: one MultiService that later issues add listeners and pollers to.

Children start in the order they were added and stop in reverse, one after another: the
listeners drain first, the store closes last, so no request ever finds the database gone.
The tree tells systemd (``notify``) what it is doing, that it is ready once every child has
started, and that it is stopping before the first child stops.
"""

from __future__ import annotations

import datetime
import os
from typing import Any

from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorCore
from twisted.logger import Logger
from twisted.python.failure import Failure

from mdmappliance._version import __version__
from mdmappliance.admin.metrics import Metrics
from mdmappliance.admin.webhooks import webhook_service
from mdmappliance.app.admin_listener import admin_listener, command_sender
from mdmappliance.app.dep_service import dep_runtime, dep_timer
from mdmappliance.app.device_listener import device_listeners
from mdmappliance.app.enrollment_listener import enrollment_listener, profile_factory
from mdmappliance.app.notify import Notifier
from mdmappliance.app.push_service import push_service
from mdmappliance.app.reactor import Reactor
from mdmappliance.app.retention import RetentionJob
from mdmappliance.app.tls import server_tls_options
from mdmappliance.app.vpp_service import VPPTimer, vpp_runtime
from mdmappliance.config import Config
from mdmappliance.core.periodic import timer_service
from mdmappliance.device.inactivity import InactivityJob, inactivity_service
from mdmappliance.enrollment.renewal import RenewalJob, renewal_service
from mdmappliance.store import Store, record_event

log = Logger()


class ApplianceService(MultiService):
    """A MultiService whose children stop one at a time, newest first, and that keeps
    systemd informed: READY=1 once every child has started, STOPPING=1 before any stops."""

    def __init__(
        self,
        reactor: IReactorCore,
        notifier: Notifier | None = None,
        serving: str = "serving",
    ) -> None:
        super().__init__()
        self.reactor = reactor
        self.notifier = notifier or Notifier(None)
        #: The STATUS line while ready: what is served where.
        self.serving = serving

    def privilegedStartService(self) -> None:
        self.notifier.status("binding the listeners")
        super().privilegedStartService()

    def startService(self) -> None:
        self.notifier.status("starting the services")
        super().startService()
        # Every listener is bound now: ListenerService binds in privilegedStartService (or
        # here, when that was not called), synchronously, and the store was opened and
        # migrated by make_service. Ready is said once the reactor runs, so that a client
        # told "ready" is answered, not only accepted into the backlog.
        self.reactor.callWhenRunning(self._ready)

    def _ready(self) -> None:
        if self.running:
            self.notifier.status(self.serving)
            self.notifier.ready()

    def stopService(self) -> Deferred[None]:
        # Called from the "before shutdown" trigger (serve and twistd alike), so systemd
        # hears of it before the first listener starts draining.
        self.notifier.stopping()
        self.notifier.status("stopping: draining requests in flight, then closing the database")
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


class StartStopEvents(Service):
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


def make_service(
    config: Config, reactor: Reactor, notifier: Notifier | None = None
) -> ApplianceService:
    """Build the tree and open (and migrate) the database; raises ApplianceError on trouble.

    ``notifier`` tells systemd how start-up goes (``serve`` and the twistd plugin pass one
    from the environment; tests that run the tree in their own process need none).
    """
    notifier = notifier or Notifier(None)
    top = ApplianceService(reactor, notifier, serving_status(config))
    metrics = Metrics()
    store = Store.configured(config.store, reactor)
    notifier.status(f"opening the database {store.path} (and migrating it if it is older)")
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
    StartStopEvents(store, {"admin_url": admin_url}).setServiceParent(top)
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
    dep = dep_runtime(config, reactor, store) if config.dep.enabled else None
    if dep is not None:
        dep_timer(config, dep, reactor).setServiceParent(top)
    vpp = vpp_runtime(config, reactor, store) if config.vpp.enabled else None
    if vpp is not None:
        VPPTimer(vpp, config.vpp.sync_interval, reactor).setServiceParent(top)
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
        dep=dep,
        vpp=vpp,
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


def serving_status(config: Config) -> str:
    """The STATUS line systemd shows while the appliance serves."""
    serving = (
        f"serving devices on {config.device_url('')}, "
        f"enrollment on {config.enrollment_url('')}, admin on {config.admin_url()}"
    )
    if config.proxy.enabled:
        serving += f", proxied devices on http://{config.proxy.bind}:{config.proxy.port}"
    return serving
