"""Periodic jobs (identity renewal, inactive devices, ...): each runs from a TimerService on
an injected clock and never raises, since a TimerService whose function raises stops for good."""

from __future__ import annotations

import datetime
from typing import Any

from twisted.application.internet import TimerService
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

log = Logger()


class PeriodicJob:
    """A job's ``run_once`` is what tests call; ``__call__`` is what the TimerService calls."""

    description = "periodic job"
    clock: IReactorTime

    def now(self) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(self.clock.seconds(), datetime.UTC)

    async def run_once(self) -> Any:
        raise NotImplementedError

    def __call__(self) -> Deferred[Any]:
        """A failure is logged, and the job runs again next time."""
        done = Deferred.fromCoroutine(self.run_once())
        done.addErrback(lambda f: log.failure("{job} failed", f, job=self.description))
        return done


def timer_service(
    job: PeriodicJob, interval: float, clock: IReactorTime, name: str
) -> TimerService:
    service = TimerService(interval, job)
    service.clock = clock
    service.setName(name)
    return service
