"""VPP in the tree: the runtime (client from the sToken on disk, the sync job) and the timer
(the design's VPP looping call) that runs it every ``[vpp] sync_interval``."""

from __future__ import annotations

from twisted.application.internet import TimerService
from twisted.internet.defer import Deferred

from mdmappliance.app.reactor import Reactor
from mdmappliance.config import Config
from mdmappliance.store import Store
from mdmappliance.vpp.client import AppAssignment, LegacyVPPClient
from mdmappliance.vpp.service import VPPRuntime
from mdmappliance.vpp.token import SToken


def vpp_runtime(config: Config, reactor: Reactor, store: Store) -> VPPRuntime:
    v = config.vpp

    def connect(token: SToken) -> AppAssignment:
        return LegacyVPPClient.connect(
            token, reactor, service_config_url=v.service_config_url, ca_file=config.vpp_ca_file()
        )

    return VPPRuntime(
        store,
        reactor,
        token_file=v.token_file,
        connect=connect,
        retry_base=v.retry_base_seconds,
        retry_max=v.sync_interval,
    )


class VPPTimer(TimerService):
    """The sync timer; stopping it also closes the VPP client's connections."""

    def __init__(self, runtime: VPPRuntime, interval: float, reactor: Reactor) -> None:
        super().__init__(interval, runtime.job)
        self.clock = reactor
        self.runtime = runtime
        self.setName("vpp-sync")

    def stopService(self) -> Deferred[None]:
        stopped: Deferred[None] = super().stopService()
        return stopped.addCallback(lambda _: Deferred.fromCoroutine(self.runtime.close()))
