"""The DEP web service client: the OAuth 1.0a session and every call the poller and the
admin make, on treq.

Session handling, as the spec and the field's bug trackers have it:

- ``GET /session`` signed with OAuth 1.0a HMAC-SHA1 (realm "ADM", a fresh nonce and
  timestamp each time, by ``oauthlib``) gives the X-ADM-Auth-Session token;
- a rotated X-ADM-Auth-Session in **any** response is adopted for the next call;
- 401 (expired session): one new session and one retry; 403 FORBIDDEN: one re-authentication;
- 403 T_C_NOT_SIGNED / ACCESS_DENIED and a /session that keeps failing raise DEPStopped: the
  poller stops with an alert until the admin acts or the next interval;
- 429 and 503 raise DEPBusy with the Retry-After; every other documented error is a
  DEPRequestError naming its code in words.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import treq
from oauthlib.oauth1 import SIGNATURE_HMAC, Client
from twisted.internet import ssl
from twisted.internet.defer import CancelledError
from twisted.internet.error import ConnectError, ConnectionLost, DNSLookupError, TimeoutError
from twisted.internet.interfaces import IReactorTime
from twisted.web._newclient import RequestNotSent
from twisted.web.client import (
    Agent,
    BrowserLikePolicyForHTTPS,
    HTTPConnectionPool,
    RequestGenerationFailed,
    RequestTransmissionFailed,
    ResponseFailed,
    ResponseNeverReceived,
)
from twisted.web.http_headers import Headers
from twisted.web.iweb import IResponse

from mdmappliance import pki
from mdmappliance.dep.token import ServerToken

USER_AGENT = "mdmappliance/1 (self-hosted MDM)"
JSON_TYPE = "application/json;charset=UTF8"
MAX_BODY = 64 * 1024 * 1024
#: Apple's words for its error codes (spec: Common Error Codes and each request's errors).
ERROR_WORDS = {
    "UNAUTHORIZED": "the session is not valid (expired, or never granted)",
    "FORBIDDEN": "the session token was refused; re-authenticating",
    "ACCESS_DENIED": "this server's token may not make this request (was it revoked or "
    "replaced in Apple's portal?)",
    "T_C_NOT_SIGNED": "the organization has not accepted Apple's latest Terms and Conditions; "
    "an administrator must accept them in Apple Business Manager",
    "MALFORMED_REQUEST_BODY": "Apple could not read the request body",
    "CURSOR_REQUIRED": "a sync needs a cursor",
    "INVALID_CURSOR": "Apple does not know the cursor",
    "EXHAUSTED_CURSOR": "the fetch cursor has returned every device",
    "EXPIRED_CURSOR": "the cursor is older than 7 days",
    "DEVICE_ID_REQUIRED": "the request names no device",
    "PROFILE_REQUIRED": "the request names no profile",
    "PROFILE_NOT_FOUND": "Apple knows no such profile",
    "INVALID_PROFILE": "Apple refused the profile",
    "CONFIG_URL_REQUIRED": "the profile needs a url",
    "INVALID_URL_SCHEME": "the profile's url must be https",
    "INVALID_DEPARTMENT": "the department is not valid",
    "FLAG_REQUIRED": "the request needs its flag",
    "INVALID_FLAG": "the flag is not valid",
    "INVALID_CONFIG_URL": "the profile's url is not valid",
    "SERVICE_UNAVAILABLE": "Apple's service is not available right now",
    "USER_AGENT_INVALID": "Apple refused the User-Agent",
    "INTERNAL_ERROR": "Apple's service failed",
}


class DEPError(Exception):
    """A DEP call failed; the message says what Apple said, in words."""


class DEPRequestError(DEPError):
    def __init__(self, status: int, code: str, message: str) -> None:
        words = ERROR_WORDS.get(code)
        super().__init__(
            f"{status} {code}"
            + (f": {words}" if words else "")
            + (f" ({message})" if message and message != code else "")
        )
        self.status = status
        self.code = code


class DEPStopped(DEPError):
    """The poller must stop until an administrator acts (or the next interval)."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code


class DEPBusy(DEPError):
    """429 or 503 (or unreachable): try again after ``retry_after`` seconds."""

    def __init__(self, status: int, retry_after: float, reason: str | None = None) -> None:
        super().__init__(reason or f"Apple answered {status}; retry after {retry_after:g} s")
        self.status = status
        self.retry_after = retry_after


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    headers: Headers

    def json(self) -> Any:
        try:
            return json.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise DEPError(
                f"Apple's answer ({self.status}) is not JSON: {self.body[:80]!r}"
            ) from None

    def code(self) -> str:
        """The error code of an error body: plain text (``EXPIRED_CURSOR``) or JSON
        (``{"code": ..., "message": ...}``)."""
        text = self.body.decode("utf-8", "replace").strip()
        if text.startswith("{"):
            try:
                found = json.loads(text)
                return str(found.get("code") or found.get("error") or text)[:100]
            except ValueError:
                pass
        return text.split()[0][:100] if text else ""


def https_agent(reactor: Any, ca_file: Path | None, pool: HTTPConnectionPool) -> Agent:
    """An agent that verifies the service's certificate: against ``ca_file`` when given, the
    system's trust store otherwise."""
    if ca_file is None:
        return Agent(reactor, pool=pool)
    trust = ssl.trustRootFromCertificates(
        [ssl.Certificate.loadPEM(pki.certificate_pem(c)) for c in pki.read_certificates(ca_file)]
    )
    return Agent(reactor, contextFactory=BrowserLikePolicyForHTTPS(trustRoot=trust), pool=pool)


#: A service that cannot be reached now (or took too long: treq cancels at ``timeout``):
#: busy, try later.
UNREACHABLE: tuple[type[Exception], ...] = (
    ConnectError,
    DNSLookupError,
    TimeoutError,
    ConnectionLost,
    ResponseFailed,
    CancelledError,
    RequestGenerationFailed,
    RequestNotSent,
)
#: The connection itself failed (a TLS certificate the CA file does not vouch for, say):
#: an error an admin must act on, not busy.
BROKEN: tuple[type[Exception], ...] = (RequestTransmissionFailed, ResponseNeverReceived)
REQUEST_TIMEOUT = 60.0


def connection_failure(e: Exception) -> str:
    reasons = "; ".join(str(r.value) for r in getattr(e, "reasons", []))[:200]
    return f"{e.__class__.__name__}" + (f" ({reasons})" if reasons else "")


def bounded_retry_after(value: bytes | str | None) -> float | None:
    """A Retry-After in seconds, from 1 to an hour; None when absent or not a number."""
    try:
        seconds = float(value or "")
    except ValueError:
        return None
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 1.0), 3600.0)


def _retry_after(headers: Headers, default: float = 60.0) -> float:
    found = bounded_retry_after((headers.getRawHeaders(b"retry-after") or [b""])[0])
    return default if found is None else found


class DEPClient:
    def __init__(
        self,
        token: ServerToken,
        *,
        base_url: str,
        http: Any,
        protocol_version: int,
        user_agent: str = USER_AGENT,
    ) -> None:
        self.token = token
        self.base_url = base_url.rstrip("/")
        self.http = http
        self.protocol_version = protocol_version
        self.user_agent = user_agent
        self.session: str | None = None
        #: How many GET /session calls succeeded (health and tests read it).
        self.sessions = 0

    @classmethod
    def connect(
        cls,
        token: ServerToken,
        reactor: IReactorTime,
        *,
        base_url: str,
        ca_file: Path | None,
        protocol_version: int,
    ) -> DEPClient:
        pool = HTTPConnectionPool(reactor, persistent=True)
        http = treq.client.HTTPClient(https_agent(reactor, ca_file, pool))
        client = cls(token, base_url=base_url, http=http, protocol_version=protocol_version)
        client.pool = pool  # type: ignore[attr-defined]
        return client

    async def close(self) -> None:
        pool = getattr(self, "pool", None)
        if pool is not None:
            await pool.closeCachedConnections()

    def _headers(self, with_session: bool = True) -> dict[str, str]:
        headers = {
            "User-Agent": self.user_agent,
            "X-Server-Protocol-Version": str(self.protocol_version),
            "Accept": JSON_TYPE,
        }
        if with_session and self.session:
            headers["X-ADM-Auth-Session"] = self.session
        return headers

    async def _send(
        self, method: str, url: str, headers: dict[str, str], body: bytes | None
    ) -> Answer:
        if body is not None:
            headers = {**headers, "Content-Type": JSON_TYPE}
        try:
            response: IResponse = await self.http.request(
                method,
                url,
                headers={k: [v] for k, v in headers.items()},
                data=body,
                timeout=REQUEST_TIMEOUT,
            )
            content = await treq.content(response)
        except UNREACHABLE as e:
            raise DEPBusy(
                0, 60.0, f"Apple's DEP service could not be reached ({connection_failure(e)})"
            ) from None
        except BROKEN as e:
            raise DEPError(
                f"the connection to Apple's DEP service failed: {connection_failure(e)}"
            ) from None
        if len(content) > MAX_BODY:
            raise DEPError("Apple's answer is too large")
        rotated = response.headers.getRawHeaders(b"x-adm-auth-session")
        if rotated and rotated[-1]:
            self.session = rotated[-1].decode("ascii", "replace")
        return Answer(response.code, content, response.headers)

    async def new_session(self) -> None:
        """GET /session with a freshly signed OAuth header; DEPStopped if refused."""
        url = self.base_url + "/session"
        oauth = Client(
            self.token.consumer_key,
            client_secret=self.token.consumer_secret,
            resource_owner_key=self.token.access_token,
            resource_owner_secret=self.token.access_secret,
            signature_method=SIGNATURE_HMAC,
            realm="ADM",
        )
        _, signed, _ = oauth.sign(url, http_method="GET")
        answer = await self._send("GET", url, {**self._headers(False), **signed}, None)
        if answer.status in (429, 503):
            raise DEPBusy(answer.status, _retry_after(answer.headers))
        if answer.status >= 500:
            raise DEPError(f"GET /session answered {answer.status}: Apple's service failed")
        if answer.status != 200:
            code = answer.code()
            raise DEPStopped(
                code or str(answer.status),
                f"GET /session answered {answer.status} {code}: the server token was refused "
                f"({ERROR_WORDS.get(code, 'check the token and the clock')}); import a valid "
                "token with `mdmappliance dep token import`",
            )
        found = answer.json()
        session = found.get("auth_session_token") if isinstance(found, dict) else None
        if not isinstance(session, str) or not session:
            raise DEPError("GET /session answered without an auth_session_token")
        self.session = session
        self.sessions += 1

    async def call(self, method: str, path: str, document: Any = None) -> Any:
        """One service call, with the session rules above; its JSON answer."""
        if self.session is None:
            await self.new_session()
        body = None if document is None else json.dumps(document).encode()
        url = self.base_url + path
        reauthenticated = False
        while True:
            answer = await self._send(method, url, self._headers(), body)
            if answer.status == 200:
                return answer.json()
            code = answer.code()
            expired = answer.status == 401 or (answer.status == 403 and code == "FORBIDDEN")
            if expired and not reauthenticated:
                reauthenticated = True
                self.session = None
                await self.new_session()
                continue
            if answer.status == 403 and code in ("T_C_NOT_SIGNED", "ACCESS_DENIED"):
                raise DEPStopped(code, f"{method} {path}: 403 {code}: {ERROR_WORDS[code]}")
            if answer.status in (401, 403):
                raise DEPStopped(
                    code or str(answer.status),
                    f"{method} {path}: {answer.status} {code}: refused again with a new session",
                )
            if answer.status in (429, 503):
                raise DEPBusy(answer.status, _retry_after(answer.headers))
            raise DEPRequestError(answer.status, code, answer.body.decode("utf-8", "replace")[:200])

    # The services
    async def account(self) -> dict[str, Any]:
        return _object(await self.call("GET", "/account"))

    async def fetch_devices(self, cursor: str | None, limit: int) -> dict[str, Any]:
        document: dict[str, Any] = {"limit": limit}
        if cursor:
            document["cursor"] = cursor
        return _object(await self.call("POST", "/server/devices", document))

    async def sync_devices(self, cursor: str, limit: int) -> dict[str, Any]:
        return _object(await self.call("POST", "/devices/sync", {"cursor": cursor, "limit": limit}))

    async def device_details(self, serials: list[str]) -> dict[str, Any]:
        return _object(await self.call("POST", "/devices", {"devices": serials}))

    async def disown(self, serials: list[str]) -> dict[str, Any]:
        return _object(await self.call("POST", "/devices/disown", {"devices": serials}))

    async def define_profile(self, profile: dict[str, Any]) -> dict[str, Any]:
        return _object(await self.call("POST", "/profile", profile))

    async def fetch_profile(self, profile_uuid: str) -> dict[str, Any]:
        query = urlencode({"profile_uuid": profile_uuid})
        return _object(await self.call("GET", f"/profile?{query}"))

    async def assign_profile(self, profile_uuid: str, serials: list[str]) -> dict[str, Any]:
        return _object(
            await self.call(
                "PUT", "/profile/devices", {"profile_uuid": profile_uuid, "devices": serials}
            )
        )

    async def remove_profile(self, serials: list[str]) -> dict[str, Any]:
        return _object(await self.call("DELETE", "/profile/devices", {"devices": serials}))


def _object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise DEPError("Apple's answer is not a JSON object")
    return value


def more_to_follow(page: dict[str, Any]) -> bool:
    """``more_to_follow`` as a boolean: the spec's own example sends the string "false"
    (and spells the key with spaces once)."""
    value = page.get("more_to_follow", page.get("more to follow", False))
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return bool(value)
