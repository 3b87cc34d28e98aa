"""DEP in the tree: the runtime (client from the token on disk, sync job, default profile)
and the timer that runs the sync every ``[dep] sync_interval``."""

from __future__ import annotations

from twisted.application.internet import TimerService
from twisted.internet.defer import Deferred

from mdmappliance.app.enrollment_listener import profile_trust_chain
from mdmappliance.app.reactor import Reactor
from mdmappliance.config import Config
from mdmappliance.dep.client import DEPClient
from mdmappliance.dep.service import DEPRuntime
from mdmappliance.dep.token import ServerToken
from mdmappliance.store import Store


def dep_runtime(config: Config, reactor: Reactor, store: Store) -> DEPRuntime:
    d = config.dep

    def connect(token: ServerToken) -> DEPClient:
        return DEPClient.connect(
            token,
            reactor,
            base_url=d.base_url,
            ca_file=config.dep_ca_file(),
            protocol_version=d.protocol_version,
        )

    return DEPRuntime(
        store,
        reactor,
        token_file=d.token_file,
        connect=connect,
        page_size=d.page_size,
        default_profile=config.dep_default_profile(),
        enroll_url=config.dep_enroll_url(),
        anchors=profile_trust_chain(config),
    )


class DEPTimer(TimerService):
    """The sync timer; stopping it also closes the DEP client's connections."""

    def __init__(self, runtime: DEPRuntime, interval: float, reactor: Reactor) -> None:
        super().__init__(interval, runtime.job)
        self.clock = reactor
        self.runtime = runtime
        self.setName("dep-sync")

    def stopService(self) -> Deferred[None]:
        stopped: Deferred[None] = super().stopService()
        return stopped.addCallback(lambda _: Deferred.fromCoroutine(self.runtime.close()))


def dep_timer(config: Config, runtime: DEPRuntime, reactor: Reactor) -> TimerService:
    return DEPTimer(runtime, config.dep.sync_interval, reactor)
