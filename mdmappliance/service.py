"""The service tree: one MultiService that later issues add listeners and pollers to.

Children start in the order they were added and stop in reverse, one after another: the
listeners drain first, the store closes last, so no request ever finds the database gone.
"""

from __future__ import annotations

import os
from typing import Any, cast

from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint
from twisted.internet.interfaces import (
    IReactorCore,
    IReactorFromThreads,
    IReactorTCP,
    IReactorTime,
)
from twisted.logger import Logger
from twisted.python.failure import Failure

from mdmappliance._version import __version__
from mdmappliance.adminapi import AdminAPI
from mdmappliance.config import Config
from mdmappliance.events import record_event
from mdmappliance.listener import DrainingSite, ListenerService
from mdmappliance.store import Store

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
    api_keys: dict[str, str],
    grace: float,
) -> ListenerService:
    """The admin API on plain HTTP at ``bind``:``port`` (0 picks a free port)."""
    api = AdminAPI(store=store, clock=reactor, started_at=reactor.seconds())
    site = DrainingSite(api.resource(api_keys))
    site.displayTracebacks = False
    endpoint_type = TCP6ServerEndpoint if ":" in bind else TCP4ServerEndpoint
    endpoint = endpoint_type(reactor, port, interface=bind)
    return ListenerService(
        "admin", endpoint, site, clock=reactor, grace=grace, describe=f"{bind}:{port}"
    )


def make_service(config: Config, reactor: Reactor) -> ApplianceService:
    """Build the tree and open (and migrate) the database; raises ApplianceError on trouble."""
    top = ApplianceService()
    store = Store(
        config.store.path,
        reactor=reactor,
        synchronous=config.store.synchronous,
        busy_timeout_ms=config.store.busy_timeout_ms,
        backup_dir=config.store.backup_dir,
    )
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
        log.warn("config {path}: {warning}", path=str(config.path), warning=warning)
    store.setServiceParent(top)
    admin_url = config.admin_url()
    LifecycleEvents(store, {"admin_url": admin_url}).setServiceParent(top)
    admin_listener(
        reactor,
        store,
        bind=config.admin.bind,
        port=config.admin.port,
        api_keys={"admin": config.read_admin_api_key()},
        grace=config.appliance.shutdown_grace,
    ).setServiceParent(top)
    return top


def urls(config: Config) -> dict[str, str]:
    """The URLs the service answers on, for start-up messages."""
    return {"admin API": f"{config.admin_url()}/v1/health"}
