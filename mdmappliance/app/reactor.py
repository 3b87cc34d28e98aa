"""The reactor the appliance runs on, typed as what the service tree uses of it."""

from __future__ import annotations

from typing import cast

from twisted.internet.interfaces import IReactorCore, IReactorFromThreads, IReactorTCP, IReactorTime


class Reactor(IReactorTCP, IReactorTime, IReactorFromThreads, IReactorCore):
    """What the service tree needs of a reactor (for type checking only)."""


def global_reactor() -> Reactor:
    """The installed reactor, typed as what the service tree uses of it."""
    from twisted.internet import reactor

    return cast(Reactor, reactor)
