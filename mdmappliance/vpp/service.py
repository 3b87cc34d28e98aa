"""VPP in the running appliance: the client made from the sToken on disk (re-read when the
admin imports a new one), the sync job, and what /v1/health shows."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.internet.interfaces import IReactorTime

from mdmappliance.core.timestamps import utc_timestamp
from mdmappliance.store import Store, Tx
from mdmappliance.vpp.client import AppAssignment
from mdmappliance.vpp.sync import VPPReport, VPPSync
from mdmappliance.vpp.token import WARN_BEFORE, SToken, STokenError, parse_apple_date, read_stoken


def clear_alert(tx: Tx) -> None:
    """A new sToken: the old one's alert and warning date no longer apply."""
    tx.vpp.save_state(utc_timestamp(), alert=None, token_exp_date=None)


class VPPRuntime:
    def __init__(
        self,
        store: Store,
        reactor: IReactorTime,
        *,
        token_file: Path,
        connect: Callable[[SToken], AppAssignment],
        retry_base: float = 30.0,
        retry_max: float = 3600.0,
    ) -> None:
        self.store = store
        self.reactor = reactor
        self.token_file = token_file
        self.connect = connect
        self._client: AppAssignment | None = None
        self._retired: list[AppAssignment] = []
        self._stamp: tuple[float, int] | None = None
        self.job = VPPSync(
            store,
            self.client,
            reactor,
            retry_base=retry_base,
            retry_max=retry_max,
            retry_soon=True,
        )

    def token(self) -> SToken | None:
        return read_stoken(self.token_file)

    async def client(self) -> AppAssignment | None:
        """The client for the sToken on disk; a new one (and the old alert cleared) after
        `vpp token import`. One at a time: concurrent callers share it."""
        try:
            stat = self.token_file.stat()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise STokenError(f"cannot read {self.token_file}: {e.strerror}") from None
        stamp = (stat.st_mtime, stat.st_size)
        if self._client is not None and stamp == self._stamp:
            return self._client
        token = read_stoken(self.token_file)
        if token is None:
            return None
        if self._client is not None and stamp == self._stamp:  # another caller made it
            return self._client
        if self._client is not None:
            self._retired.append(self._client)  # in-flight calls may still use it
        self._client = self.connect(token)
        self._stamp = stamp
        self.job.not_before = 0.0  # a new token: try at once
        self.job.cancel_retry()
        await self.store.transaction(clear_alert)
        return self._client

    async def close(self) -> None:
        self.job.cancel_retry()
        for client in [*self._retired, *([self._client] if self._client else [])]:
            await client.close()
        self._retired.clear()
        self._client = None

    async def sync_now(self) -> VPPReport:
        return await self.job.run_once()

    async def status(self) -> dict[str, Any]:
        """What /v1/health shows of VPP; ``alert`` when the sync has stopped."""
        try:
            token = self.token()
        except STokenError as e:
            return {"enabled": True, "token": None, "alert": str(e)}
        if token is None:
            return {"enabled": True, "token": None}
        now = datetime.datetime.fromtimestamp(self.reactor.seconds(), datetime.UTC)
        found: dict[str, Any] = {
            "enabled": True,
            "token": {"exp_date": token.exp_date, "org_name": token.org_name},
        }
        state = await self.store.run(lambda tx: tx.vpp.state())
        left = token.days_left(now)
        if left < 0:
            found["alert"] = f"the VPP sToken expired on {token.exp_date}"
        elif state.token_exp_date or left * 86400 < WARN_BEFORE.total_seconds():
            found["warning"] = (
                f"the VPP sToken expires on {state.token_exp_date or token.exp_date}: download "
                "a new one from the VPP portal"
            )
        if state.token_exp_date:
            found["token"]["token_exp_date"] = state.token_exp_date
            try:
                if parse_apple_date(state.token_exp_date) < now:
                    found["alert"] = f"the VPP sToken expired on {state.token_exp_date}"
            except ValueError:
                pass
        if state.alert:
            found["alert"] = state.alert
        found["sync"] = {"last_run_at": state.last_run_at, "last_success_at": state.last_success_at}
        found["counts"] = await self.store.run(lambda tx: tx.vpp.count())
        if self.job.last is not None and self.job.last.shared_with:
            shared = (
                f"the VPP sToken is also used by another MDM server ({self.job.last.shared_with})"
            )
            found["warning"] = f"{found['warning']}; {shared}" if "warning" in found else shared
        return found
