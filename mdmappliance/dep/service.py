"""DEP in the running appliance: the client made from the token on disk (re-read when the
admin imports a new one), the sync job, the default profile, and what /v1/health shows."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography import x509
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from mdmappliance.core.timestamps import utc_timestamp
from mdmappliance.dep.client import DEPClient, DEPError
from mdmappliance.dep.profiles import complete_profile, profile_digest, read_profile_file
from mdmappliance.dep.sync import DEPSync, SyncReport
from mdmappliance.dep.token import WARN_BEFORE, ServerToken, TokenError, read_token
from mdmappliance.store import Store, Tx

log = Logger()


def record_profile(
    tx: Tx, profile_uuid: str, profile: dict[str, Any], default: bool, actor: str = "dep-sync"
) -> None:
    name = str(profile.get("profile_name", ""))
    tx.dep.add_profile(profile_uuid, name, profile, default, utc_timestamp())
    tx.events.record(
        "dep.profile_defined",
        actor=actor,
        subject=profile_uuid,
        detail={"name": name, "default": default, "digest": profile_digest(profile)},
    )


def default_profile_uuid(tx: Tx, digest: str) -> str | None:
    """The default profile already defined with this content, if any."""
    for profile in tx.dep.profiles():
        if profile["default"] and profile_digest(profile["body"]) == digest:
            return str(profile["profile_uuid"])
    return None


class DEPRuntime:
    def __init__(
        self,
        store: Store,
        reactor: IReactorTime,
        *,
        token_file: Path,
        connect: Callable[[ServerToken], DEPClient],
        page_size: int,
        default_profile: Path | None = None,
        enroll_url: str = "",
        anchors: tuple[x509.Certificate, ...] = (),
    ) -> None:
        self.store = store
        self.reactor = reactor
        self.token_file = token_file
        self.connect = connect
        self.default_profile_file = default_profile
        self.enroll_url = enroll_url
        self.anchors = anchors
        self._client: DEPClient | None = None
        self._token_stamp: tuple[float, int] | None = None
        self.job = DEPSync(
            store,
            self.client,
            reactor,
            page_size=page_size,
            default_profile=self.ensure_default_profile,
        )

    def token(self) -> ServerToken | None:
        return read_token(self.token_file)

    async def client(self) -> DEPClient | None:
        """The client for the token on disk; a new one after `dep token import`."""
        try:
            stat = self.token_file.stat()
        except FileNotFoundError:
            return None
        stamp = (stat.st_mtime, stat.st_size)
        if self._client is None or stamp != self._token_stamp:
            token = read_token(self.token_file)
            if token is None:
                return None
            if self._client is not None:
                await self._client.close()
            self._client = self.connect(token)
            self._token_stamp = stamp
        return self._client

    async def ensure_default_profile(self, client: DEPClient) -> str | None:
        """The default profile's UUID: ``[dep] default_profile``'s, defined with Apple when
        it is new or changed; else the one defined over the API with ``default``; else none."""
        if self.default_profile_file is None:
            return await self.store.run(lambda tx: tx.dep.default_profile())
        profile = complete_profile(
            read_profile_file(self.default_profile_file), url=self.enroll_url, anchors=self.anchors
        )
        profile.pop("devices", None)
        known = await self.store.run(default_profile_uuid, profile_digest(profile))
        if known is not None:
            return known
        answer = await client.define_profile(profile)
        profile_uuid = answer.get("profile_uuid")
        if not isinstance(profile_uuid, str) or not profile_uuid:
            raise DEPError("Apple defined the default profile but sent no profile_uuid")
        await self.store.transaction(record_profile, profile_uuid, profile, True)
        log.info("DEP default profile defined: {uuid}", uuid=profile_uuid)
        return profile_uuid

    async def close(self) -> None:
        """Close the client's connections (the service is stopping)."""
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def sync_now(self) -> SyncReport:
        return await self.job.run_once()

    async def status(self) -> dict[str, Any]:
        """What /v1/health shows of DEP; ``alert`` when the sync has stopped."""
        try:
            token = self.token()
        except TokenError as e:
            return {"enabled": True, "token": None, "alert": str(e)}
        if token is None:
            return {"enabled": True, "token": None}
        found: dict[str, Any] = {
            "enabled": True,
            "token": {"access_token_expiry": token.access_token_expiry},
        }
        now = datetime.datetime.fromtimestamp(self.reactor.seconds(), datetime.UTC)
        left = token.days_left(now)
        if left < 0:
            found["alert"] = f"the DEP server token expired on {token.access_token_expiry}"
        elif left * 86400 < WARN_BEFORE.total_seconds():
            found["warning"] = f"the DEP server token expires in {left:.0f} days"
        state = await self.store.run(lambda tx: tx.dep.sync_state())
        found["sync"] = {
            "phase": state.phase,
            "last_run_at": state.last_run_at,
            "last_success_at": state.last_success_at,
        }
        if state.alert:
            found["alert"] = state.alert
        found["devices"] = await self.store.run(lambda tx: tx.dep.count())
        return found
