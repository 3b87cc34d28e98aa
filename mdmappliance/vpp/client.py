"""The VPP App Assignment client (the legacy services), on treq.

- VPPServiceConfigSrv (the only fixed URL) first, and again whenever a service answers 9617
  ("URL has moved"): one refresh, one retry.
- Parameters as JSON; answers read tolerantly: primitives may be strings, null fields are
  absent, and the error fields come spelled ``errorNumber``/``errorMessage`` or
  ``ErrorCode``/``ErrorMessage`` (the spec shows both).
- 9621 (expired) and 9622 (invalid) raise VPPStopped: nothing works until a new sToken.
- 503/429 and network failures raise VPPBusy; every other code is a VPPRequestError in words.
- ``tokenExpDate`` in any answer (the token is within its 15-day warning) is kept.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

import treq
from twisted.web.client import HTTPConnectionPool

from mdmappliance.dep.client import (
    BROKEN,
    REQUEST_TIMEOUT,
    UNREACHABLE,
    bounded_retry_after,
    connection_failure,
    https_agent,
)
from mdmappliance.vpp.token import SToken

MAX_BODY = 32 * 1024 * 1024
#: The service names and the VPPServiceConfigSrv keys of their URLs.
SERVICE_KEYS = {
    "registerVPPUserSrv": "registerUserSrvUrl",
    "editVPPUserSrv": "editUserSrvUrl",
    "getVPPUserSrv": "getUserSrvUrl",
    "retireVPPUserSrv": "retireUserSrvUrl",
    "getVPPUsersSrv": "getUsersSrvUrl",
    "getVPPLicensesSrv": "getLicensesSrvUrl",
    "associateVPPLicenseWithVPPUserSrv": "associateLicenseSrvUrl",
    "disassociateVPPLicenseFromVPPUserSrv": "disassociateLicenseSrvUrl",
    "VPPClientConfigSrv": "clientConfigSrvUrl",
}
ERROR_WORDS = {
    9600: "a required argument is missing",
    9601: "login required",
    9602: "an argument is invalid",
    9603: "Apple's service failed (internal error)",
    9604: "no such record",
    9605: "the account's storefront is wrong",
    9606: "Apple could not construct the token",
    9607: "the license is irrevocable (book licenses cannot be taken back)",
    9608: "Apple's shared data service answered nothing",
    9609: "no such registered user",
    9610: "no such license",
    9611: "no such admin user",
    9612: "Apple could not create the claim job",
    9613: "Apple could not create the unclaim job",
    9614: "a date is not in the right format",
    9615: "the organization's country was not found",
    9616: "the license is already assigned",
    9617: "the service URL has moved",
    9618: "the user has already been retired",
    9619: "the license is not associated",
    9620: "the user has already been deleted",
    9621: "the sToken has expired: download a new one from the VPP portal and `mdmappliance vpp "
    "token import` it",
    9622: "the sToken is invalid: download a new one from the VPP portal and `mdmappliance vpp "
    "token import` it",
    9623: "the APNs token is invalid",
}
STOPPING = (9621, 9622)


class VPPError(Exception):
    """A VPP call failed; the message says what Apple said, in words."""


class VPPRequestError(VPPError):
    def __init__(self, code: int, message: str) -> None:
        words = ERROR_WORDS.get(code, "an error Apple has not documented")
        super().__init__(f"{code}: {words}" + (f" ({message})" if message else ""))
        self.code = code


class VPPStopped(VPPRequestError):
    """The sToken is expired or invalid: nothing works until a new one is imported."""


class VPPBusy(VPPError):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


def error_of(answer: dict[str, Any]) -> tuple[int, str] | None:
    """The error an answer carries, in any spelling the spec (or Apple) uses; None for a
    success (status 0, or no status and no error code)."""
    code = next(
        (answer[k] for k in ("errorNumber", "ErrorCode", "errorCode") if answer.get(k) is not None),
        None,
    )
    message = answer.get("errorMessage", answer.get("ErrorMessage"))
    status = str(answer.get("status", "0")).strip()
    if code is None and status in ("0", ""):
        return None
    try:
        number = int(code) if code is not None else 0
    except (TypeError, ValueError):
        number = 0
    return number, str(message or "")


class AppAssignment(Protocol):
    """What the sync and the admin API need from Apple: the legacy services implement it, and
    so will a client of "Apps and Books for Organizations"."""

    token_exp_date: str | None

    async def users(self, params: dict[str, Any]) -> dict[str, Any]: ...
    async def licenses(self, params: dict[str, Any]) -> dict[str, Any]: ...
    async def call(self, service: str, params: dict[str, Any]) -> dict[str, Any]: ...
    async def close(self) -> None: ...


class LegacyVPPClient:
    def __init__(
        self,
        token: SToken,
        *,
        service_config_url: str,
        http: Any,
        service_urls: dict[str, str] | None = None,
    ) -> None:
        self.token = token
        self.service_config_url = service_config_url
        self.http = http
        self.service_urls = service_urls
        self.token_exp_date: str | None = None
        self.pool: HTTPConnectionPool | None = None
        #: Seconds a request may take before it is given up (busy).
        self.timeout = REQUEST_TIMEOUT
        #: How many VPPServiceConfigSrv requests were made (tests and health read it).
        self.config_requests = 0

    @classmethod
    def connect(
        cls, token: SToken, reactor: Any, *, service_config_url: str, ca_file: Path | None
    ) -> LegacyVPPClient:
        pool = HTTPConnectionPool(reactor, persistent=True)
        http = treq.client.HTTPClient(https_agent(reactor, ca_file, pool))
        client = cls(token, service_config_url=service_config_url, http=http)
        client.pool = pool
        return client

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.closeCachedConnections()

    async def _post(self, url: str, params: dict[str, Any]) -> dict[str, Any]:
        try:
            response = await self.http.post(
                url,
                data=json.dumps(params).encode(),
                headers={b"content-type": [b"application/json"], b"accept": [b"application/json"]},
                timeout=self.timeout,
            )
            body = await treq.content(response)
        except UNREACHABLE as e:
            raise VPPBusy(
                f"Apple's VPP service could not be reached ({connection_failure(e)})"
            ) from None
        except BROKEN as e:  # a wrong [vpp] ca_file, say: not busy, wrong
            raise VPPError(
                f"the connection to Apple's VPP service failed: {connection_failure(e)}"
            ) from None
        if response.code in (429, 503):
            value = (response.headers.getRawHeaders(b"retry-after") or [b""])[0]
            raise VPPBusy(
                f"Apple's VPP service answered {response.code}", bounded_retry_after(value)
            )
        if response.code >= 500:
            raise VPPBusy(f"Apple's VPP service answered {response.code}")
        if len(body) > MAX_BODY:
            raise VPPError("Apple's answer is too large")
        try:
            answer = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise VPPError(f"Apple's answer ({response.code}) is not JSON: {body[:80]!r}") from None
        if not isinstance(answer, dict):
            raise VPPError("Apple's answer is not a JSON object")
        return answer

    async def service_config(self) -> dict[str, str]:
        """The service URLs (VPPServiceConfigSrv needs no token)."""
        self.config_requests += 1
        answer = await self._post(self.service_config_url, {})
        failed = error_of(answer) if "status" in answer else None
        if failed is not None:
            raise VPPRequestError(*failed)
        urls = {
            key: str(answer[key]).replace("\\/", "/")
            for key in (*SERVICE_KEYS.values(), "invitationEmailUrl")
            if isinstance(answer.get(key), str)
        }
        missing = [k for k in SERVICE_KEYS.values() if k not in urls and k != "clientConfigSrvUrl"]
        if missing:
            raise VPPError(f"VPPServiceConfigSrv gave no {', '.join(missing)}")
        self.service_urls = urls
        return urls

    async def call(self, service: str, params: dict[str, Any]) -> dict[str, Any]:
        """One service call with the sToken; its answer, or an error in words."""
        if self.service_urls is None:
            await self.service_config()
        refreshed = False
        while True:
            assert self.service_urls is not None
            url = self.service_urls.get(SERVICE_KEYS[service])
            if url is None:
                raise VPPError(f"VPPServiceConfigSrv gave no URL for {service}")
            answer = await self._post(url, {**params, "sToken": self.token.blob})
            # Present only inside the 15-day warning: its absence clears an old one.
            exp = answer.get("tokenExpDate")
            self.token_exp_date = exp if isinstance(exp, str) and exp else None
            failed = error_of(answer)
            if failed is None:
                return answer
            code, message = failed
            if code == 9617 and not refreshed:
                refreshed = True
                await self.service_config()
                continue
            if code in STOPPING:
                raise VPPStopped(code, message)
            raise VPPRequestError(code, message)

    async def users(self, params: dict[str, Any]) -> dict[str, Any]:
        return await self.call("getVPPUsersSrv", params)

    async def licenses(self, params: dict[str, Any]) -> dict[str, Any]:
        return await self.call("getVPPLicensesSrv", params)
