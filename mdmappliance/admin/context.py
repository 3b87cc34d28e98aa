"""What the admin routes work with: the store, the clock, and the services they drive."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass, field

from twisted.internet.interfaces import IReactorTime

from mdmappliance.admin.metrics import Metrics
from mdmappliance.apns.pusher import PushService
from mdmappliance.commands.send import CommandSender
from mdmappliance.dep.service import DEPRuntime
from mdmappliance.store import Store
from mdmappliance.vpp.service import VPPRuntime


@dataclass
class AdminContext:
    store: Store
    clock: IReactorTime
    started_at: float
    link_url: Callable[[str], str] = lambda token: token
    link_lifetime: datetime.timedelta = datetime.timedelta(days=7)
    profile_identifier: str = "mdmappliance.enrollment"
    push: PushService | None = None
    sender: CommandSender | None = None
    webhook_urls: tuple[str, ...] = ()
    metrics: Metrics = field(default_factory=Metrics)
    dep: DEPRuntime | None = None
    vpp: VPPRuntime | None = None
