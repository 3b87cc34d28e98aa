"""A fake of Apple's Device Enrollment Program web service (mdmenrollment.apple.com) for tests.

The product's DEP client is tested against it, so it is a strict peer: it answers the requests
of the "Device Enrollment Program" chapter of the MDM protocol reference with the documented
bodies, status codes and plain-text error codes, and refuses what the chapter does not allow
(an OAuth 1.0a request that is not exactly right, a missing header, a stale cursor, a profile
field of the wrong type). HTTPS on 127.0.0.1 with a certificate from its own CA (``ca_file``).

Where the chapter is silent the fake picks one answer and says so here:

- /session errors: 400 or 401 as the chapter lists them (a stale timestamp 401), the body
  ``oauth_problem=<name>`` of the OAuth Problem Reporting extension (signature_invalid,
  token_rejected, nonce_used ...): Apple's answers are seen to contain those names
  (fleet#47700), their exact layout is not documented.
- An X-ADM-Auth-Session that was never issued: 403 FORBIDDEN (Common Error Codes); a missing
  or expired one: 401 UNAUTHORIZED with ``WWW-Authenticate: ADM-Auth-Token``.
- No User-Agent: 400 USER_AGENT_INVALID (what Apple answers, nanodep#42). No or a non-integer
  X-Server-Protocol-Version: 400 X_SERVER_PROTOCOL_VERSION_INVALID. A body that is not
  ``application/json``: 415 UNSUPPORTED_MEDIA_TYPE. A limit outside 1..1000: 400 INVALID_LIMIT.
  A body field of the wrong type, or an unknown profile field: 400 MALFORMED_REQUEST_BODY.
- A fetch with a cursor that is not an unfinished fetch's (the last fetch page's, or a sync
  cursor): 400 EXHAUSTED_CURSOR, so a client that always starts with a fetch moves on to sync.
- Sessions last ``session_lifetime`` from issue (not from last use).
- Define Profile requires department and support_phone_number (the chapter lists
  DEPARTMENT_REQUIRED and SUPPORT_PHONE_REQUIRED); ``require_department`` and
  ``require_support_phone`` turn that off for a client that leaves them out on purpose.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import hmac
import json
import secrets
import struct
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from cryptography import x509
from twisted.web.server import Request

from tests.fakeserver import TLSListener, tls_material

JSON_TYPE = "application/json;charset=UTF8"
TEXT_TYPE = "text/plain;Charset=UTF8"
MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
OAUTH_WINDOW = 300.0  # seconds either side of clock() an oauth_timestamp may be
OAUTH_REQUIRED = (
    "oauth_consumer_key",
    "oauth_token",
    "oauth_signature_method",
    "oauth_signature",
    "oauth_timestamp",
    "oauth_nonce",
)
OAUTH_ALLOWED = {*OAUTH_REQUIRED, "oauth_version", "realm"}

#: The device fields the fake keeps (and modify() accepts).
DEVICE_FIELDS = frozenset(
    {
        "serial_number",
        "model",
        "description",
        "color",
        "asset_tag",
        "profile_status",
        "profile_uuid",
        "profile_assign_time",
        "profile_push_time",
        "device_assigned_date",
        "device_assigned_by",
        "os",
        "device_family",
    }
)
PROFILE_FIELDS = ("profile_uuid", "profile_assign_time", "profile_push_time")

#: Define Profile's fields: the chapter's, and the later ones Apple added (godep's schema).
PROFILE_STRINGS = frozenset(
    {
        "profile_name",
        "url",
        "configuration_web_url",
        "department",
        "support_phone_number",
        "support_email_address",
        "org_magic",
        "language",
        "region",
    }
)
PROFILE_BOOLEANS = {
    "allow_pairing": True,
    "is_supervised": False,
    "is_mandatory": False,
    "is_mdm_removable": True,
    "is_multi_user": None,
    "is_return_to_service": None,
    "await_device_configured": None,
    "auto_advance_setup": None,
    "do_not_use_profile_from_backup": None,
}
PROFILE_STRING_LISTS = frozenset(
    {"anchor_certs", "supervising_host_certs", "skip_setup_items", "devices"}
)

MODELS = (
    ("MacBook Pro 14-inch", "MBP 14.2 SPG/12C CPU/18C GPU", "SPACE GRAY", "OSX", "Mac"),
    ("iPad Air", "IPAD AIR WI-FI 64GB", "BLUE", "iOS", "iPad"),
    ("iPhone 15", "IPHONE 15 128GB BLACK", "BLACK", "iOS", "iPhone"),
)

_FETCH, _SYNC = 1, 2
_CURSOR = struct.Struct(">BQQd")  # kind, log position, last device returned, issued at
_TAG = 8


def iso8601(t: float) -> str:
    """Time stamps as the chapter writes them: 2013-04-05T14:30:00Z."""
    return datetime.datetime.fromtimestamp(t, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso8601(text: str) -> float:
    return (
        datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ")
        .replace(tzinfo=datetime.UTC)
        .timestamp()
    )


def percent_encode(value: str) -> str:
    """RFC 5849 3.6: everything but ALPHA, DIGIT, '-', '.', '_' and '~' as %XX of UTF-8."""
    return quote(value.encode("utf-8"), safe="-._~")


class DEPError(Exception):
    """An error answer: a status and a plain-text code, as the chapter shows them."""

    def __init__(self, status: int, code: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {code}")
        self.status = status
        self.code = code
        self.headers = headers or {}


def _oauth_problem(status: int, problem: str) -> DEPError:
    return DEPError(status, f"oauth_problem={problem}")


@dataclass
class Answer:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Change:
    """One entry of the account's change log, which cursors point into."""

    seq: int
    op_type: str
    serial: str
    snapshot: dict[str, Any]
    op_date: str


@dataclass(frozen=True)
class Cursor:
    kind: int
    position: int
    after: int
    issued: float


@dataclass
class Session:
    token: str
    issued: float


def parse_oauth_header(values: list[str] | None) -> list[tuple[str, str]]:
    """The Authorization header's parameters in order, duplicates kept (RFC 5849 3.5.1)."""
    if not values:
        raise _oauth_problem(400, "parameter_absent")
    if len(values) > 1:
        raise _oauth_problem(400, "parameter_rejected")
    scheme, _, rest = values[0].strip().partition(" ")
    if scheme.lower() != "oauth":
        raise _oauth_problem(400, "parameter_absent")
    params = []
    for item in rest.split(","):
        name, sep, quoted = item.strip().partition("=")
        if not sep or len(quoted) < 2 or quoted[0] != '"' or quoted[-1] != '"':
            raise _oauth_problem(400, "parameter_rejected")
        params.append((unquote(name), unquote(quoted[1:-1])))
    return params


def oauth_parameters(request: Request) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The query's and the Authorization header's parameters, after the chapter's 400 checks:
    unsupported, missing or duplicated parameters, a method other than HMAC-SHA1."""
    header = [
        v.decode("latin-1") for v in request.requestHeaders.getRawHeaders(b"authorization") or []
    ]
    params = parse_oauth_header(header)
    names = [name for name, _ in params]
    query_params = parse_qsl(urlsplit(request.uri.decode("latin-1")).query, keep_blank_values=True)
    if len(set(names)) != len(names) or any(k.startswith("oauth_") for k, _ in query_params):
        raise _oauth_problem(400, "parameter_rejected")  # a duplicated protocol parameter
    oauth = dict(params)
    if set(oauth) - OAUTH_ALLOWED or oauth.get("realm") != "ADM":
        raise _oauth_problem(400, "parameter_rejected")
    if any(not oauth.get(name) for name in OAUTH_REQUIRED):
        raise _oauth_problem(400, "parameter_absent")
    if oauth["oauth_signature_method"] != "HMAC-SHA1":
        raise _oauth_problem(400, "signature_method_rejected")
    if oauth.get("oauth_version", "1.0") != "1.0":
        raise _oauth_problem(400, "version_rejected")
    if not oauth["oauth_timestamp"].isdigit():
        raise _oauth_problem(400, "parameter_rejected")
    return query_params, params


def signature_base_string(method: str, base_uri: str, params: list[tuple[str, str]]) -> str:
    """RFC 5849 3.4.1: METHOD & base URI & the sorted, encoded parameters."""
    encoded = sorted((percent_encode(k), percent_encode(v)) for k, v in params)
    normalized = "&".join(f"{k}={v}" for k, v in encoded)
    return "&".join(
        [percent_encode(method.upper()), percent_encode(base_uri), percent_encode(normalized)]
    )


def hmac_sha1(base_string: str, consumer_secret: str, token_secret: str) -> str:
    """RFC 5849 3.4.2."""
    key = f"{percent_encode(consumer_secret)}&{percent_encode(token_secret)}"
    digest = hmac.new(key.encode(), base_string.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


class FakeDEP:
    """Apple's DEP service for one MDM server's account, on 127.0.0.1 over TLS."""

    def __init__(self, directory: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.directory = directory
        self.clock = clock
        self.consumer_key = "CK_" + secrets.token_hex(16)
        self.consumer_secret = "CS_" + secrets.token_hex(20)
        self.access_token = "AT_" + secrets.token_hex(30)
        self.access_secret = "AS_" + secrets.token_hex(20)
        #: /session refuses the access token (401 token_rejected) after this; token_json sets it.
        self.access_token_expiry = "2030-01-01T00:00:00Z"
        ca_pem, cert_pem, key_pem = tls_material("Fake DEP CA")
        directory.mkdir(parents=True, exist_ok=True)
        self.ca_file = directory / "fakedep-ca.pem"
        self.ca_file.write_bytes(ca_pem)
        self._listener_pem = cert_pem + key_pem
        self.url = ""
        self.account: dict[str, str] = {
            "server_name": "Fake DEP Server",
            "server_uuid": str(uuid.uuid4()),
            "facilitator_id": "facilitator@example.com",
            "org_name": "Example Inc",
            "org_email": "orgadmin@example.com",
            "org_phone": "111-222-3333",
            "org_address": "1 Example Way, Cupertino, California 95014",
        }
        self.devices: dict[str, dict[str, Any]] = {}
        self.profiles: dict[str, dict[str, Any]] = {}
        # knobs
        self.t_and_c_signed = True
        self.access_denied = False
        #: Apple also refuses /session with T_C_NOT_SIGNED (fleet#33405); True does that too.
        self.forbid_session_too = False
        self.session_lifetime = 3600.0
        self.rotate_session_every: int | None = None
        self.cursor_lifetime = 7 * 86400.0
        self.fail_next: list[tuple[int, str, dict[str, str]]] = []
        #: Serials for which define/assign/remove/disown answer FAILED.
        self.failing_serials: set[str] = set()
        #: The op_type of a change: Apple sends "modified"; the chapter says "updated".
        self.modified_op_type = "modified"
        #: The chapter lists DEPARTMENT_REQUIRED and SUPPORT_PHONE_REQUIRED for Define Profile.
        self.require_department = True
        self.require_support_phone = True
        # what happened
        self.session_requests = 0
        self.log: list[tuple[str, str, int]] = []
        self.request_headers: list[dict[str, list[str]]] = []
        self.disowned: list[str] = []
        self._changes: list[Change] = []
        self._added_seq: dict[str, int] = {}
        self._sessions: dict[str, Session] = {}
        self._nonces: set[tuple[str, str, int, str]] = set()
        self._authenticated_calls = 0
        self._serial_count = 0
        self._cursor_key = secrets.token_bytes(32)
        self._listener = TLSListener(self, self._listener_pem)

    # -- the server token and the listener --------------------------------------------------

    def token_json(self, expiry: str = "2030-01-01T00:00:00Z") -> dict[str, str]:
        """The decrypted server token file's JSON; /session honours its expiry."""
        self.access_token_expiry = expiry
        return {
            "consumer_key": self.consumer_key,
            "consumer_secret": self.consumer_secret,
            "access_token": self.access_token,
            "access_secret": self.access_secret,
            "access_token_expiry": expiry,
        }

    async def start(self) -> None:
        """Listen on 127.0.0.1, an ephemeral port, TLS (HTTP/1.1)."""
        self.url = await self._listener.start()

    async def stop(self) -> None:
        """Stop listening and drop open connections, so the reactor is clean after a test."""
        await self._listener.stop()

    # -- the account's devices --------------------------------------------------------------

    def add_devices(self, count: int, prefix: str = "C02") -> list[str]:
        """New devices assigned to this server, each recorded as an "added" change."""
        serials = []
        for _ in range(count):
            self._serial_count += 1
            serial = f"{prefix}{self._serial_count:0{max(12 - len(prefix), 1)}X}"
            model, description, color, os_name, family = MODELS[self._serial_count % len(MODELS)]
            self.add_device(
                serial,
                model=model,
                description=description,
                color=color,
                asset_tag=f"AT{self._serial_count:06d}",
                os=os_name,
                device_family=family,
            )
            serials.append(serial)
        return serials

    def add_device(self, serial: str, **fields: Any) -> None:
        """One device (again, after remove()), recorded as an "added" change."""
        if serial in self.devices:
            raise ValueError(f"{serial} is already assigned")
        self._check_fields(fields)
        now = iso8601(self.clock())
        device = {
            "serial_number": serial,
            "profile_status": "empty",
            "device_assigned_date": now,
            "device_assigned_by": self.account["facilitator_id"],
            **fields,
        }
        self.devices[serial] = device
        self._record("added", serial, op_date=device["device_assigned_date"])
        self._added_seq[serial] = len(self._changes)

    def modify(self, serial: str, **fields: Any) -> None:
        """Change a device's fields (None drops one), recorded as a "modified" change.

        A device moved to another server: ``modify(serial, profile_status="removed")``."""
        self._check_fields(fields)
        device = self.devices[serial]
        for name, value in fields.items():
            if value is None:
                device.pop(name, None)
            else:
                device[name] = value
        self._record(self.modified_op_type, serial)

    def remove(self, serial: str) -> None:
        """The device leaves this server (released, or reassigned): a "deleted" change."""
        self._record("deleted", serial)
        del self.devices[serial]
        del self._added_seq[serial]

    @staticmethod
    def _check_fields(fields: dict[str, Any]) -> None:
        unknown = set(fields) - DEVICE_FIELDS
        if unknown:
            raise ValueError(f"not device fields: {sorted(unknown)}")

    def _record(self, op_type: str, serial: str, op_date: str | None = None) -> None:
        self._changes.append(
            Change(
                seq=len(self._changes) + 1,
                op_type=op_type,
                serial=serial,
                snapshot=dict(self.devices[serial]),
                op_date=op_date or iso8601(self.clock()),
            )
        )

    # -- cursors: opaque hex the fake can decode --------------------------------------------

    def _cursor(self, kind: int, position: int, after: int = 0) -> str:
        payload = _CURSOR.pack(kind, position, after, self.clock())
        tag = hmac.new(self._cursor_key, payload, hashlib.sha256).digest()[:_TAG]
        return (payload + tag).hex()

    def _decode_cursor(self, text: object) -> Cursor:
        if not isinstance(text, str):
            raise DEPError(400, "INVALID_CURSOR")
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raise DEPError(400, "INVALID_CURSOR") from None
        payload, tag = raw[: _CURSOR.size], raw[_CURSOR.size :]
        expected = hmac.new(self._cursor_key, payload, hashlib.sha256).digest()[:_TAG]
        if len(raw) != _CURSOR.size + _TAG or not hmac.compare_digest(tag, expected):
            raise DEPError(400, "INVALID_CURSOR")
        cursor = Cursor(*_CURSOR.unpack(payload))
        if cursor.position > len(self._changes) or cursor.kind not in (_FETCH, _SYNC):
            raise DEPError(400, "INVALID_CURSOR")
        return cursor

    # -- dispatch ---------------------------------------------------------------------------

    def handle(self, request: Request) -> Answer:
        """Answer one request (fail_next first, then routing, headers, session, endpoint)."""
        method = request.method.decode("ascii", "replace")
        path = request.path.decode("utf-8", "replace")
        self.request_headers.append(
            {
                k.decode("latin-1").lower(): [v.decode("latin-1") for v in vs]
                for k, vs in request.requestHeaders.getAllRawHeaders()
            }
        )
        if self.fail_next:
            status, body, headers = self.fail_next.pop(0)
            answer = Answer(status, body.encode(), {"Content-Type": TEXT_TYPE, **headers})
        else:
            try:
                answer = self._route(request, method, path)
            except DEPError as e:
                answer = Answer(e.status, e.code.encode(), {"Content-Type": TEXT_TYPE, **e.headers})
        self.log.append((method, path, answer.status))
        return answer

    def _route(self, request: Request, method: str, path: str) -> Answer:
        routes: dict[str, dict[str, Callable[[Request], Answer]]] = {
            "/session": {"GET": self._session},
            "/account": {"GET": self._account},
            "/server/devices": {"POST": self._fetch_devices},
            "/devices/sync": {"POST": self._sync_devices},
            "/devices": {"POST": self._device_details},
            "/devices/disown": {"POST": self._disown},
            "/profile": {"POST": self._define_profile, "GET": self._fetch_profile},
            "/profile/devices": {"PUT": self._assign_profile, "DELETE": self._remove_profile},
        }
        if path not in routes:
            raise DEPError(404, "NOT_FOUND")
        handler = routes[path].get(method)
        if handler is None:
            raise DEPError(405, "METHOD_NOT_ALLOWED", {"Allow": ", ".join(routes[path])})
        self._check_common_headers(request)
        if path == "/session":
            return handler(request)
        session = self._authenticate(request)
        try:
            self._check_forbidden()
            answer = handler(request)
        except DEPError as e:
            e.headers["X-ADM-Auth-Session"] = session
            raise
        answer.headers["X-ADM-Auth-Session"] = session
        return answer

    def _check_common_headers(self, request: Request) -> None:
        """The headers the chapter's Web Services section requires of every request."""
        agent = request.requestHeaders.getRawHeaders(b"user-agent") or []
        if len(agent) != 1 or not agent[0].strip():
            raise DEPError(400, "USER_AGENT_INVALID")
        version = request.requestHeaders.getRawHeaders(b"x-server-protocol-version") or []
        if len(version) != 1 or not version[0].strip().isdigit() or int(version[0]) < 1:
            raise DEPError(400, "X_SERVER_PROTOCOL_VERSION_INVALID")

    def _authenticate(self, request: Request) -> str:
        """The X-ADM-Auth-Session check; answers the session header to send back."""
        values = request.requestHeaders.getRawHeaders(b"x-adm-auth-session") or []
        unauthorized = DEPError(401, "UNAUTHORIZED", {"WWW-Authenticate": "ADM-Auth-Token"})
        if len(values) != 1 or not values[0]:
            raise unauthorized
        token = values[0].decode("latin-1")
        session = self._sessions.get(token)
        if session is None:
            raise DEPError(403, "FORBIDDEN")
        now = self.clock()
        if now - session.issued >= self.session_lifetime:
            raise unauthorized  # kept: an expired session stays 401, never becomes 403
        self._authenticated_calls += 1
        every = self.rotate_session_every
        if every and self._authenticated_calls % every == 0:
            return self._new_session()
        return token

    def _new_session(self) -> str:
        token = secrets.token_hex(24)
        self._sessions[token] = Session(token, self.clock())
        return token

    # -- GET /session: OAuth 1.0a, HMAC-SHA1, realm ADM -------------------------------------

    def _session(self, request: Request) -> Answer:
        """The 401s after the 400s: key, token, timestamp, signature, nonce (in that order)."""
        query_params, params = oauth_parameters(request)
        oauth = dict(params)
        if not hmac.compare_digest(oauth["oauth_consumer_key"], self.consumer_key):
            raise _oauth_problem(401, "consumer_key_unknown")
        now = self.clock()
        if not hmac.compare_digest(oauth["oauth_token"], self.access_token) or (
            now >= parse_iso8601(self.access_token_expiry)
        ):
            raise _oauth_problem(401, "token_rejected")
        timestamp = int(oauth["oauth_timestamp"])
        if abs(timestamp - now) > OAUTH_WINDOW:
            raise _oauth_problem(401, "timestamp_refused")
        signed = [(k, v) for k, v in params if k not in ("realm", "oauth_signature")]
        base = signature_base_string("GET", self._base_uri(request), [*query_params, *signed])
        expected = hmac_sha1(base, self.consumer_secret, self.access_secret)
        if not hmac.compare_digest(expected, oauth["oauth_signature"]):
            raise _oauth_problem(401, "signature_invalid")
        # Recorded only once the signature holds, so forged requests cannot burn nonces.
        nonce = (oauth["oauth_consumer_key"], oauth["oauth_token"], timestamp, oauth["oauth_nonce"])
        if nonce in self._nonces:
            raise _oauth_problem(401, "nonce_used")
        self._nonces = {n for n in self._nonces if abs(n[2] - now) <= 2 * OAUTH_WINDOW}
        self._nonces.add(nonce)
        if self.forbid_session_too:
            self._check_forbidden()
        self.session_requests += 1
        return self._json({"auth_session_token": self._new_session()})

    def _check_forbidden(self) -> None:
        if self.access_denied:
            raise DEPError(403, "ACCESS_DENIED")
        if not self.t_and_c_signed:
            raise DEPError(403, "T_C_NOT_SIGNED")

    @staticmethod
    def _base_uri(request: Request) -> str:
        """RFC 5849 3.4.1.2 from the Host header: https://host[:port]/path, lowercase host."""
        host = (request.getHeader("host") or "").lower()
        if host.endswith(":443"):
            host = host[:-4]
        return f"https://{host}{request.path.decode('utf-8')}"

    # -- the endpoints ----------------------------------------------------------------------

    @staticmethod
    def _json(body: dict[str, Any], status: int = 200) -> Answer:
        return Answer(status, json.dumps(body).encode(), {"Content-Type": JSON_TYPE})

    @staticmethod
    def _body(request: Request) -> dict[str, Any]:
        """The JSON dictionary of a request that has a body (Content-Type application/json)."""
        content_type = request.getHeader("content-type") or ""
        if content_type.split(";")[0].strip().lower() != "application/json":
            raise DEPError(415, "UNSUPPORTED_MEDIA_TYPE")
        assert request.content is not None
        try:
            body = json.loads(request.content.read().decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise DEPError(400, "MALFORMED_REQUEST_BODY") from None
        if not isinstance(body, dict):
            raise DEPError(400, "MALFORMED_REQUEST_BODY")
        return body

    @staticmethod
    def _limit(body: dict[str, Any]) -> int:
        limit = body.get("limit", DEFAULT_LIMIT)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
            raise DEPError(400, "INVALID_LIMIT")
        return limit

    @staticmethod
    def _serials(body: dict[str, Any], *, empty_ok: bool = False) -> list[str]:
        serials = body.get("devices")
        if serials is None or (serials == [] and not empty_ok):
            raise DEPError(400, "DEVICE_ID_REQUIRED")
        if not isinstance(serials, list) or not all(isinstance(s, str) and s for s in serials):
            raise DEPError(400, "MALFORMED_REQUEST_BODY")
        return serials

    def _account(self, request: Request) -> Answer:
        return self._json(dict(self.account))

    def _fetch_devices(self, request: Request) -> Answer:
        body = self._body(request)
        limit = self._limit(body)
        cursor_text = body.get("cursor")
        if cursor_text in (None, ""):
            cursor = Cursor(_FETCH, len(self._changes), 0, self.clock())
        else:
            cursor = self._decode_cursor(cursor_text)
            if cursor.kind != _FETCH:
                raise DEPError(400, "EXHAUSTED_CURSOR")
        # Devices assigned when the fetch began, oldest first, after the last one returned.
        remaining = sorted(
            (seq, serial)
            for serial, seq in self._added_seq.items()
            if cursor.after < seq <= cursor.position
        )
        page = remaining[:limit]
        more = len(remaining) > limit
        if more:
            next_cursor = self._cursor(_FETCH, cursor.position, page[-1][0])
        else:
            next_cursor = self._cursor(_SYNC, cursor.position)
        devices = [dict(self.devices[serial]) for _, serial in page]
        until = devices[-1]["device_assigned_date"] if devices else iso8601(self.clock())
        return self._json(
            {
                "devices": devices,
                "cursor": next_cursor,
                "fetched_until": until,
                "more_to_follow": more,
            }
        )

    def _sync_devices(self, request: Request) -> Answer:
        body = self._body(request)
        limit = self._limit(body)
        if body.get("cursor") in (None, ""):
            raise DEPError(400, "CURSOR_REQUIRED")
        cursor = self._decode_cursor(body["cursor"])
        if self.clock() - cursor.issued > self.cursor_lifetime:
            raise DEPError(400, "EXPIRED_CURSOR")
        changes = self._changes[cursor.position : cursor.position + limit]
        position = changes[-1].seq if changes else cursor.position
        devices = [
            {**change.snapshot, "op_type": change.op_type, "op_date": change.op_date}
            for change in changes
        ]
        return self._json(
            {
                "devices": devices,
                "cursor": self._cursor(_SYNC, position),
                "fetched_until": changes[-1].op_date if changes else iso8601(self.clock()),
                "more_to_follow": position < len(self._changes),
            }
        )

    def _device_details(self, request: Request) -> Answer:
        result: dict[str, dict[str, Any]] = {}
        for serial in self._serials(self._body(request)):
            device = self.devices.get(serial)
            if device is None:
                result[serial] = {"response_status": "NOT_FOUND"}
            else:
                result[serial] = {"response_status": "SUCCESS", **device}
        return self._json({"devices": result})

    def _disown(self, request: Request) -> Answer:
        result: dict[str, str] = {}
        for serial in self._serials(self._body(request)):
            if serial in self.failing_serials:
                result[serial] = "FAILED"
            elif serial not in self.devices:
                result[serial] = "NOT_ACCESSIBLE"
            else:
                self.remove(serial)
                self.disowned.append(serial)
                result[serial] = "SUCCESS"
        return self._json({"devices": result})

    def _define_profile(self, request: Request) -> Answer:
        body = self._body(request)
        profile = self._validate_profile(body)
        serials = profile.pop("devices", [])
        profile_uuid = uuid.uuid4().hex
        profile = {"profile_uuid": profile_uuid, **profile}
        self.profiles[profile_uuid] = profile
        return self._json(
            {"profile_uuid": profile_uuid, "devices": self._assign(profile_uuid, serials)}
        )

    def _validate_profile(self, body: dict[str, Any]) -> dict[str, Any]:
        """Define Profile's checks: the required fields, then every field's type."""
        if not isinstance(body.get("url"), str) or not body["url"].strip():
            raise DEPError(400, "CONFIG_URL_REQUIRED")
        if not isinstance(body.get("profile_name"), str) or not body["profile_name"].strip():
            raise DEPError(400, "CONFIG_NAME_REQUIRED")
        if self.require_department and not body.get("department"):
            raise DEPError(400, "DEPARTMENT_REQUIRED")
        if self.require_support_phone and not body.get("support_phone_number"):
            raise DEPError(400, "SUPPORT_PHONE_REQUIRED")
        url = urlsplit(body["url"])
        if url.scheme != "https" or not url.netloc:
            raise DEPError(400, "MALFORMED_REQUEST_BODY")  # the device POSTs to it over HTTPS
        for name, value in body.items():
            if not _profile_field_ok(name, value):
                raise DEPError(400, "MALFORMED_REQUEST_BODY")
        defaults = {k: v for k, v in PROFILE_BOOLEANS.items() if v is not None}
        return {**defaults, **body}

    def _fetch_profile(self, request: Request) -> Answer:
        query = parse_qsl(urlsplit(request.uri.decode("latin-1")).query, keep_blank_values=True)
        uuids = [v for k, v in query if k == "profile_uuid"]
        if len(uuids) != 1 or not uuids[0]:
            raise DEPError(400, "PROFILE_UUID_REQUIRED")
        profile = self.profiles.get(uuids[0])
        if profile is None:
            raise DEPError(404, "PROFILE_NOT_FOUND")
        return self._json(dict(profile))

    def _assign_profile(self, request: Request) -> Answer:
        body = self._body(request)
        serials = self._serials(body, empty_ok=True)
        profile_uuid = body.get("profile_uuid")
        if not profile_uuid:
            raise DEPError(400, "PROFILE_UUID_REQUIRED")
        if not isinstance(profile_uuid, str):
            raise DEPError(400, "MALFORMED_REQUEST_BODY")
        if profile_uuid not in self.profiles:
            raise DEPError(404, "PROFILE_NOT_FOUND")
        return self._json(
            {"profile_uuid": profile_uuid, "devices": self._assign(profile_uuid, serials)}
        )

    def _assign(self, profile_uuid: str, serials: list[str]) -> dict[str, str]:
        """Map the profile to each accessible device; each mapping is a "modified" change."""
        result: dict[str, str] = {}
        for serial in serials:
            if serial in self.failing_serials:
                result[serial] = "FAILED"
            elif serial not in self.devices:
                result[serial] = "NOT_ACCESSIBLE"
            else:
                self.modify(
                    serial,
                    profile_uuid=profile_uuid,
                    profile_status="assigned",
                    profile_assign_time=iso8601(self.clock()),
                    profile_push_time=None,
                )
                result[serial] = "SUCCESS"
        return result

    def _remove_profile(self, request: Request) -> Answer:
        result: dict[str, str] = {}
        for serial in self._serials(self._body(request)):
            if serial in self.failing_serials:
                result[serial] = "FAILED"
            elif serial not in self.devices:
                result[serial] = "NOT_ACCESSIBLE"
            else:
                self.modify(serial, profile_status="removed", **dict.fromkeys(PROFILE_FIELDS))
                result[serial] = "SUCCESS"
        return self._json({"devices": result})


def _profile_field_ok(name: str, value: Any) -> bool:
    """A Define Profile field has the type the chapter gives it (certificates: base64 DER)."""
    if name in PROFILE_STRINGS:
        return isinstance(value, str)
    if name in PROFILE_BOOLEANS:
        return isinstance(value, bool)
    if name not in PROFILE_STRING_LISTS:
        return False
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        return False
    if name in ("anchor_certs", "supervising_host_certs"):
        return all(_is_base64_der_certificate(item) for item in value)
    return True


def _is_base64_der_certificate(text: str) -> bool:
    try:
        x509.load_der_x509_certificate(base64.b64decode(text, validate=True))
    except (binascii.Error, ValueError):
        return False
    return True
