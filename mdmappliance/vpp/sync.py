"""The VPP looping call: users (getVPPUsersSrv, retired ones included) and licenses
(getVPPLicensesSrv), each chained by batchToken until done; the next run passes the saved
sinceModifiedToken and lists only changes.

- A batch's records and the token that came with it are written in one transaction: a crash
  mid-sync resumes from the last batch written (its batchToken), nothing lost or doubled.
- A refused token (batch or sinceModified) starts that listing over, once per run.
- ``totalCount`` (first batch only) is compared with what arrived; a difference is logged.
- 9621/9622 record an alert and stop; 503/429/unreachable back off (doubling up to the
  interval), so nothing loops hot.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from mdmappliance.core.errors import ApplianceError
from mdmappliance.core.periodic import PeriodicJob
from mdmappliance.core.timestamps import utc_timestamp
from mdmappliance.store import Store, Tx
from mdmappliance.store.settings import INSTALLATION_ID
from mdmappliance.vpp.client import AppAssignment, VPPBusy, VPPError, VPPRequestError, VPPStopped

log = Logger()
MAX_BATCHES = 10_000
#: Codes that mean "this batch or since token is no good": list from scratch.
TOKEN_REFUSED = (9602, 9604)


@dataclass
class VPPReport:
    users: int = 0
    licenses: int = 0
    batches: int = 0
    restarted: list[str] = field(default_factory=list)
    alert: str | None = None
    retry_after: float | None = None
    token_exp_date: str | None = None
    #: Another MDM server's clientContext on this sToken (VPPClientConfigSrv), if any.
    shared_with: str | None = None
    errors: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, Any]:
        return {
            k: v
            for k, v in self.__dict__.items()
            if k not in ("errors", "retry_after") and v not in (0, None, [])
        }


def apply_batch(
    tx: Tx, kind: str, records: list[dict[str, Any]], batch_token: str | None, since: str | None
) -> int:
    now = utc_timestamp()
    write = tx.vpp.upsert_user if kind == "users" else tx.vpp.upsert_license
    written = sum(1 for record in records if isinstance(record, dict) and write(record, now))
    tx.vpp.save_tokens(kind, batch_token, since, now)
    return written


def save_tokens(tx: Tx, kind: str, batch_token: str | None, since: str | None) -> None:
    tx.vpp.save_tokens(kind, batch_token, since, utc_timestamp())


def client_context(tx: Tx) -> str:
    """What this appliance writes as the sToken's clientContext (under 256 bytes)."""
    return f"mdmappliance:{tx.settings.get(INSTALLATION_ID) or 'unknown'}"


def finish_run(tx: Tx, report: VPPReport, urls: dict[str, str] | None) -> None:
    now = utc_timestamp()
    fields: dict[str, Any] = {"last_run_at": now, "alert": report.alert}
    if report.alert is None and not report.errors:
        fields["last_success_at"] = now
    if urls is not None:
        fields["service_urls"] = urls
    if report.alert is None and not report.errors:
        fields["token_exp_date"] = report.token_exp_date  # None: the warning is over
    tx.vpp.save_state(now, **fields)
    tx.events.record("vpp.synced", actor="vpp-sync", detail=report.counts())
    if report.shared_with:
        tx.events.record("vpp.token_shared", actor="vpp-sync", detail={"other": report.shared_with})


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


class VPPSync(PeriodicJob):
    description = "VPP sync"

    def __init__(
        self,
        store: Store,
        client_factory: Any,
        clock: IReactorTime,
        *,
        retry_base: float = 30.0,
        retry_max: float = 3600.0,
        retry_soon: bool = False,
    ) -> None:
        self.store = store
        #: After a backoff, run again when it ends (the runtime's timer job does); else wait
        #: for the next interval.
        self.retry_soon = retry_soon
        self.client_factory = client_factory
        self.clock = clock
        self.retry_base = retry_base
        self.retry_max = retry_max
        self.running = False
        self.not_before = 0.0
        self._backoff = retry_base
        self.last: VPPReport | None = None
        self._retry: Any = None

    async def run_once(self) -> VPPReport:
        report = VPPReport()
        if self.running:
            report.errors.append("a VPP sync is already running")
            return report
        wait = self.not_before - self.clock.seconds()
        if wait > 0:
            report.retry_after = wait
            report.errors.append(f"backing off: the next request in {wait:.0f} s")
            return report
        self.running = True
        client: AppAssignment | None = None
        try:
            try:
                client = await self.client_factory()
            except ApplianceError as e:  # an unreadable sToken file: the admin must act
                report.alert = f"VPP sync stopped: {e}"
                await self.store.transaction(finish_run, report, None)
                return report
            if client is None:
                report.errors.append("no sToken: `mdmappliance vpp token import`")
                return report
            try:
                await self._claim(client, report)
                for kind in ("users", "licenses"):
                    await self._list(client, kind, report)
                self._backoff = self.retry_base
            except VPPStopped as e:
                report.alert = f"VPP sync stopped: {e}"
                log.error("{alert}", alert=report.alert)
            except VPPBusy as e:
                delay = e.retry_after or self._backoff
                self._backoff = min(self._backoff * 2, self.retry_max)
                self.not_before = self.clock.seconds() + delay
                report.retry_after = delay
                self._schedule_retry(delay)
                report.errors.append(f"{e}; trying again in {delay:.0f} s")
                log.warn("VPP sync paused: {error}", error=report.errors[-1])
            except VPPError as e:
                report.errors.append(str(e))
                log.warn("VPP sync failed: {error}", error=str(e))
            report.token_exp_date = client.token_exp_date
            if report.token_exp_date:
                log.warn(
                    "the VPP sToken expires on {date}: download a new one from the VPP portal",
                    date=report.token_exp_date,
                )
            await self.store.transaction(finish_run, report, getattr(client, "service_urls", None))
            self.last = report
            return report
        finally:
            self.running = False

    def _schedule_retry(self, delay: float) -> None:
        """Try again after the backoff, not only at the next interval."""
        if not self.retry_soon or (self._retry is not None and self._retry.active()):
            return
        self._retry = self.clock.callLater(delay, self)

    def cancel_retry(self) -> None:
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None

    async def _claim(self, client: AppAssignment, report: VPPReport) -> None:
        """Put this appliance's clientContext on the sToken, or notice another MDM server's:
        two servers syncing one token fight over its licenses."""
        context = await self.store.run(client_context)
        try:
            answer = await client.call("VPPClientConfigSrv", {})
            current = answer.get("clientContext")
            if not current:
                await client.call("VPPClientConfigSrv", {"clientContext": context})
        except (VPPStopped, VPPBusy):
            raise
        except VPPError as e:  # advisory: the listing goes on
            log.warn("VPP clientContext not read or written: {error}", error=str(e))
            return
        if current and current != context:
            report.shared_with = str(current)[:256]
            log.warn(
                "the VPP sToken is also used by another MDM server ({other}): it may take "
                "licenses this appliance assigns",
                other=report.shared_with,
            )

    async def _list(self, client: AppAssignment, kind: str, report: VPPReport) -> None:
        tokens = await self.store.run(lambda tx: tx.vpp.tokens(kind))
        batch, since = tokens.batch_token, tokens.since_token
        expected: int | None = None
        arrived = 0
        for _ in range(MAX_BATCHES):
            params: dict[str, Any] = {}
            if batch:
                params["batchToken"] = batch
            elif since:
                params["sinceModifiedToken"] = since
            elif kind == "users":
                params["includeRetired"] = 1
            try:
                answer = await (
                    client.users(params) if kind == "users" else client.licenses(params)
                )
            except VPPRequestError as e:
                if (
                    isinstance(e, VPPStopped)
                    or e.code not in TOKEN_REFUSED
                    or not params.get("batchToken", params.get("sinceModifiedToken"))
                    or kind in report.restarted
                ):
                    raise
                log.warn(
                    "VPP refused the saved {kind} token ({error}): listing again",
                    kind=kind,
                    error=str(e),
                )
                report.restarted.append(kind)
                setattr(report, kind, getattr(report, kind) - arrived)
                batch = since = None
                arrived, expected = 0, None
                await self.store.transaction(save_tokens, kind, None, None)
                continue
            report.batches += 1
            records = answer.get(kind) if isinstance(answer.get(kind), list) else []
            if "totalCount" in answer and not batch:
                try:
                    expected = int(answer["totalCount"])
                except (TypeError, ValueError):
                    expected = None
            raw_batch = answer.get("batchToken")
            if raw_batch is not None and not isinstance(raw_batch, str):
                raise VPPError(f"{kind}: Apple's batchToken is not a string")
            next_batch = _text(raw_batch)
            next_since = _text(answer.get("sinceModifiedToken"))
            written = await self.store.transaction(
                apply_batch,
                kind,
                records or [],
                next_batch,
                next_since if not next_batch else since,
            )
            arrived += written
            setattr(report, kind, getattr(report, kind) + written)
            if next_batch is None:
                if expected is not None and expected != arrived:
                    log.warn(
                        "VPP {kind}: totalCount said {expected}, {arrived} arrived",
                        kind=kind,
                        expected=expected,
                        arrived=arrived,
                    )
                return
            batch = next_batch
        report.errors.append(
            f"{kind}: stopped after {MAX_BATCHES} batches; the next run carries on"
        )
