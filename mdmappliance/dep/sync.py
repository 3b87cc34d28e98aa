"""The DEP poller: Fetch Devices page by page, then Sync Devices from the saved cursor.

- Each page's devices and the cursor that came with it are written in **one** transaction:
  a crash between pages resumes from the last page written, nothing lost or doubled.
- Fetch pages while ``more_to_follow``; 400 EXHAUSTED_CURSOR means the fetch is complete,
  so sync. EXPIRED_CURSOR / INVALID_CURSOR: one fetch from scratch (never a loop).
- Sync changes are applied per serial in ``op_date`` order; a change older than the one
  already applied (the service repeats devices across pages) is ignored. "modified" with
  profile_status "removed" for a device whose profile this server did not remove is a
  device moved to another server.
- The default profile goes to every assigned device without one, new or synced.
- DEPStopped (T&C not signed, access denied, a token refused) records an alert and stops the
  run; the next runs are ``[dep] sync_interval`` apart, so it cannot loop hot.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from mdmappliance.core.errors import ApplianceError
from mdmappliance.core.periodic import PeriodicJob
from mdmappliance.core.timestamps import utc_timestamp
from mdmappliance.dep.client import (
    DEPBusy,
    DEPClient,
    DEPError,
    DEPRequestError,
    DEPStopped,
    more_to_follow,
)
from mdmappliance.store import Store, Tx

log = Logger()
#: Pages one run reads at most (1,000 devices each: a million devices), so a service that
#: never stops saying more_to_follow cannot keep a run going for ever.
MAX_PAGES = 1000
ASSIGN_BATCH = 1000


@dataclass
class SyncReport:
    fetched: int = 0
    added: int = 0
    modified: int = 0
    deleted: int = 0
    moved: int = 0
    ignored: int = 0
    assigned: int = 0
    refetched: bool = False
    alert: str | None = None
    #: Seconds Apple asked to wait (429/503), when it did.
    retry_after: float | None = None
    pages: int = 0
    errors: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, Any]:
        return {
            k: v
            for k, v in self.__dict__.items()
            if k not in ("errors", "retry_after") and v not in (0, False, None)
        }


def _devices(page: dict[str, Any]) -> list[dict[str, Any]]:
    devices = page.get("devices") or []
    if not isinstance(devices, list):
        raise DEPError("Apple's page has no devices list")
    good = []
    for device in devices:
        if (
            isinstance(device, dict)
            and isinstance(device.get("serial_number"), str)
            and device["serial_number"]
        ):
            good.append(device)
    return good


def _cursor(page: dict[str, Any]) -> str | None:
    cursor = page.get("cursor")
    return cursor if isinstance(cursor, str) and cursor else None


def apply_fetch_page(tx: Tx, devices: list[dict[str, Any]], cursor: str | None, phase: str) -> int:
    """A Fetch Devices page: every device is assigned to this server; the cursor with it."""
    now = utc_timestamp()
    for device in devices:
        tx.dep.upsert(device, "assigned", now)
    tx.dep.save_cursor(cursor, phase, now)
    return len(devices)


def apply_sync_page(
    tx: Tx, devices: list[dict[str, Any]], cursor: str | None, report: SyncReport
) -> None:
    """A Sync Devices page, per serial in op_date order; duplicates and stale repeats
    ignored; the cursor with it."""
    now = utc_timestamp()
    ordered = sorted(devices, key=lambda d: (d["serial_number"], str(d.get("op_date") or "")))
    known = tx.dep.existing(d["serial_number"] for d in ordered)
    for device in ordered:
        serial = device["serial_number"]
        op = str(device.get("op_type") or "").lower()
        op_date = str(device.get("op_date") or "")
        previous = known.get(serial)
        # Strictly older only: two changes in one second share an op_date, and the later in
        # the page is the newer; a repeat of one already applied is the same record.
        if previous is not None and previous[1] and op_date and op_date < previous[1]:
            report.ignored += 1
            continue
        if op == "deleted":
            state, counter = "deleted", "deleted"
        elif op == "added":
            state, counter = "assigned", "added"
        elif op in ("modified", "updated"):
            ours = tx.dep.get(serial)
            removed_here = ours is not None and ours.profile_status == "removed"
            if device.get("profile_status") == "removed" and not removed_here:
                state, counter = "moved", "moved"
            else:
                state, counter = "assigned", "modified"
        else:
            report.ignored += 1
            continue
        tx.dep.upsert(device, state, now)
        known[serial] = (state, op_date)
        setattr(report, counter, getattr(report, counter) + 1)
        if state in ("deleted", "moved"):
            tx.events.record(f"dep.device_{state}", subject=serial, detail={"op_date": op_date})
    tx.dep.save_cursor(cursor, "sync", now)


def record_assignment(tx: Tx, profile_uuid: str, results: dict[str, Any]) -> int:
    succeeded = [s for s, outcome in results.items() if outcome == "SUCCESS"]
    tx.dep.set_profile(succeeded, profile_uuid, "assigned", utc_timestamp())
    if succeeded:
        tx.events.record(
            "dep.profile_assigned",
            actor="dep-sync",
            subject=profile_uuid,
            detail={"devices": len(succeeded), "failed": len(results) - len(succeeded)},
        )
    return len(succeeded)


def save_cursor(tx: Tx, cursor: str | None, phase: str) -> None:
    tx.dep.save_cursor(cursor, phase, utc_timestamp())


def finish_run(tx: Tx, report: SyncReport) -> None:
    now = utc_timestamp()
    tx.dep.record_run(now, success=report.alert is None and not report.errors, alert=report.alert)
    tx.events.record("dep.synced", actor="dep-sync", detail=report.counts())


class DEPSync(PeriodicJob):
    """One run fetches or syncs until the service has nothing more, then assigns the
    default profile; never raises (failures are in the report and the log)."""

    description = "DEP sync"

    def __init__(
        self,
        store: Store,
        client_factory: Callable[[], Awaitable[DEPClient | None]],
        clock: IReactorTime,
        *,
        page_size: int = 1000,
        default_profile: Callable[[DEPClient], Awaitable[str | None]] | None = None,
    ) -> None:
        self.store = store
        self.client_factory = client_factory
        self.clock = clock
        self.page_size = page_size
        self.default_profile = default_profile
        self.running = False
        self.last: SyncReport | None = None
        #: After a 429/503, no request before this (clock seconds): Retry-After honoured.
        self.not_before = 0.0

    async def run_once(self) -> SyncReport:
        report = SyncReport()
        if self.running:
            report.errors.append("a DEP sync is already running")
            return report
        wait = self.not_before - self.clock.seconds()
        if wait > 0:
            report.retry_after = wait
            report.errors.append(f"Apple asked to wait: the next request in {wait:.0f} s")
            return report
        self.running = True
        try:
            try:
                client = await self.client_factory()
            except ApplianceError as e:  # an unreadable token file: the admin must act
                report.alert = f"DEP sync stopped: {e}"
                await self.store.transaction(finish_run, report)
                return report
            if client is None:
                report.errors.append("no DEP server token: `mdmappliance dep token import`")
                return report
            try:
                await self._pages(client, report)
                await self._assign_default(client, report)
            except DEPStopped as e:
                report.alert = f"DEP sync stopped: {e}"
                log.error("{alert}", alert=report.alert)
            except DEPBusy as e:
                self.not_before = self.clock.seconds() + e.retry_after
                report.retry_after = e.retry_after
                report.errors.append(str(e))
                log.warn("DEP sync paused: {error}", error=str(e))
            except DEPError as e:
                report.errors.append(str(e))
                log.warn("DEP sync failed: {error}", error=str(e))
            except ApplianceError as e:  # the default profile file, say: the admin must act
                report.alert = f"DEP sync stopped: {e}"
                log.error("{alert}", alert=report.alert)
            await self.store.transaction(finish_run, report)
            self.last = report
            return report
        finally:
            self.running = False

    async def _pages(self, client: DEPClient, report: SyncReport) -> None:
        state = await self.store.run(lambda tx: tx.dep.sync_state())
        cursor, phase = state.cursor, state.phase
        for _ in range(MAX_PAGES):
            report.pages += 1
            if phase == "fetch":
                try:
                    page = await client.fetch_devices(cursor, self.page_size)
                except DEPRequestError as e:
                    if e.code == "EXHAUSTED_CURSOR":
                        phase = "sync"
                        await self.store.transaction(save_cursor, cursor, "sync")
                        continue
                    if e.code in ("INVALID_CURSOR", "EXPIRED_CURSOR") and not report.refetched:
                        report.refetched = True
                        cursor = None
                        continue
                    raise
                devices = _devices(page)
                more = more_to_follow(page)
                cursor = _cursor(page) or cursor
                phase = "fetch" if more else "sync"
                report.fetched += await self.store.transaction(
                    apply_fetch_page, devices, cursor, phase
                )
                if not more:
                    return
            else:
                if cursor is None:
                    phase = "fetch"
                    continue
                try:
                    page = await client.sync_devices(cursor, self.page_size)
                except DEPRequestError as e:
                    if (
                        e.code in ("EXPIRED_CURSOR", "INVALID_CURSOR", "CURSOR_REQUIRED")
                        and not report.refetched
                    ):
                        log.warn(
                            "DEP cursor refused ({code}): fetching every device again", code=e.code
                        )
                        report.refetched = True
                        cursor, phase = None, "fetch"
                        await self.store.transaction(save_cursor, None, "fetch")
                        continue
                    raise
                devices = _devices(page)
                cursor = _cursor(page) or cursor
                await self.store.transaction(apply_sync_page, devices, cursor, report)
                if not more_to_follow(page):
                    return
        report.errors.append(f"stopped after {MAX_PAGES} pages; the next run carries on")

    async def _assign_default(self, client: DEPClient, report: SyncReport) -> None:
        if self.default_profile is None:
            return
        profile_uuid = await self.default_profile(client)
        if profile_uuid is None:
            return
        for _ in range(MAX_PAGES):
            serials = await self.store.run(lambda tx: tx.dep.without_profile(ASSIGN_BATCH))
            if not serials:
                return
            answer = await client.assign_profile(profile_uuid, serials)
            found = answer.get("devices")
            results: dict[str, Any] = found if isinstance(found, dict) else {}
            assigned = await self.store.transaction(record_assignment, profile_uuid, results)
            report.assigned += assigned
            if assigned == 0:
                report.errors.append(
                    "Apple assigned the default profile to none of the devices asked"
                )
                return
