"""DEP in the tree: the runtime (client from the token on disk, sync job, default profile)
and the timer that runs the sync every ``[dep] sync_interval``."""

from __future__ import annotations

from twisted.application.internet import TimerService

from mdmappliance.app.enrollment_listener import profile_trust_chain
from mdmappliance.app.reactor import Reactor
from mdmappliance.config import Config
from mdmappliance.core.periodic import timer_service
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


def dep_timer(config: Config, runtime: DEPRuntime, reactor: Reactor) -> TimerService:
    return timer_service(runtime.job, config.dep.sync_interval, reactor, "dep-sync")
