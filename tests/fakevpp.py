"""A fake of Apple's legacy VPP App Assignment web services (MZFinance.woa) for tests.

The product's VPP client is tested against it, so it is a strict peer of the "VPP App
Assignment" chapter of the MDM protocol reference: JSON parameters in a POST body (primitives
or strings), an sToken that is base64 JSON {token, expDate, orgName} it decodes and checks,
``status`` 0 or -1, null fields left out, ``tokenExpDate`` within 15 days of expiry, the
9600-9623 error codes, batchToken / sinceModifiedToken paging, and service URLs that can move
(9617) so a client must re-read VPPServiceConfigSrv. HTTPS on 127.0.0.1 with a certificate from
its own CA (``ca_file``). Answers, errors too, are HTTP 200 JSON unless ``fail_next`` says
otherwise (or the path or method is not a service's: 404, 405).

Where the chapter is silent or contradicts itself the fake picks one answer and says so here:

- Error fields: each service's field table shows ``errorMessage`` and ``ErrorCode`` (the prose
  says ErrorCode/ErrorMessage, the VPPServiceConfigSrv errorCodes list errorNumber/errorMessage),
  so errors are ``{"status": -1, "ErrorCode": n, "errorMessage": text}``; ``error_keys``
  switches to another spelling. Messages are those of the errorCodes list (typos kept), so an
  errorMessage maps to one code, as the chapter promises.
- Not found: getVPPUserSrv answers 9604 (its text says "result not found"); the others 9609
  for a user and 9610 for a license. An unknown, garbled or other-service batchToken or
  sinceModifiedToken answers 9604, the only error the two list services' tables show.
- Retire by clientUserIdStr whose records are all retired: 9618, as by userId; a Deleted
  user: 9620. Edit and associate refuse retired (9618) and deleted (9620) users too.
- Associate by adamId picks the lowest free license of that adamId and pricingParam; none free:
  9610; one already the user's: 9616.
- Re-association with an old iTunes account (``associate_itunes(its_id_hash=...)``): the old
  retired record becomes Deleted and its irrevocable licenses move to the new one (the
  getVPPUserSrv text); ``revive_old=True`` does the registerVPPUserSrv text instead (the new
  record is Retired, the old one Associated again).
- inviteCode and inviteUrl only for Registered users; a retired user keeps its itsIdHash. User
  objects carry ``licenses`` for register, get, edit and retire, not in getVPPUsersSrv or the
  associate/disassociate answers (as the examples show); a license carries its user as flat
  userId, clientUserIdStr and itsIdHash fields (the examples, not the prose's "user object").
- getVPPLicensesSrv filters by pricingParam ("STDQ" if missing) only with an adamId, or when
  pricingParam alone is passed; with neither it lists every license.
- The sinceModifiedToken of a listing covers changes from when its first batch was asked, so a
  record changed while paging is reported again next time rather than lost.
- The Content-Type must contain application/json (``require_json_content_type``), else 9602;
  a body that is not a JSON object: 9602. The sToken is taken as sent (no whitespace trimmed).
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import hmac
import json
import re
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from twisted.web.server import Request

from tests.fakeserver import TLSListener, tls_material

JSON_TYPE = "application/json;charset=UTF-8"
TEXT_TYPE = "text/plain;charset=UTF-8"
WA = "/WebObjects/MZFinance.woa/wa/"
CONFIG_SERVICE = "VPPServiceConfigSrv"
CONFIG_PATH = WA + CONFIG_SERVICE
INVITE_PATH = WA + "associateVPPUserWithITSAccount"
WARNING_PERIOD = 15 * 86400.0
MAX_CLIENT_CONTEXT = 256  # bytes; the context must be shorter
DEFAULT_ADAM_ID = 408709785

REGISTERED, ASSOCIATED, RETIRED, DELETED = "Registered", "Associated", "Retired", "Deleted"
ACTIVE = (REGISTERED, ASSOCIATED)

#: The service names and the VPPServiceConfigSrv field that gives each one's URL.
SERVICE_URL_FIELDS = {
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

#: The errorCodes list of the VPPServiceConfigSrv example, its spelling kept.
ERROR_MESSAGES = {
    9600: "Missing required argument",
    9601: "Login required",
    9602: "Invalid argument",
    9603: "Internal error",
    9604: "Result not found",
    9605: "Account storefront incorrect",
    9606: "Error constructing token",
    9607: "License irrevocable",
    9608: "Empty SharedData response",
    9609: "User not found",
    9610: "Lincese not found",
    9611: "Admin user not found",
    9612: "Fail creating SAPFeeder job for claim",
    9613: "Fail creating SAPFeeder job for unclaim",
    9614: "Invalid date formate",
    9615: "orgCountry not found",
    9616: "License already assigned to the iTunes account",
    9617: "The URL has been moved. Please call VPPServiceConfigSrv to find the new URL.",
    9618: "User already retired",
    9619: "License not associated",
    9620: "User already deleted",
    9621: "The token has expired. You need to generate a new token online using your "
    "organization's account at https://vpp.itunes.apple.com.",
    9622: "The authentication token is invalid.",
    9623: "The APN token is invalid.",
}

#: The fields a user record may have (touch_user accepts these).
USER_FIELDS = frozenset({"clientUserIdStr", "email", "status", "inviteCode", "itsIdHash"})
LICENSE_FIELDS = (
    "licenseId",
    "adamId",
    "productTypeId",
    "pricingParam",
    "productTypeName",
    "isIrrevocable",
)
_LONG = re.compile(r"[+-]?[0-9]{1,18}")
_HEX_APN = re.compile(r"[0-9a-fA-F]{64}")
_TAG = 16


class VPPError(Exception):
    """An error answer: an ErrorCode and its message (the errorCodes list's unless given)."""

    def __init__(self, code: int, message: str | None = None) -> None:
        super().__init__(f"{code} {message or ERROR_MESSAGES[code]}")
        self.code = code
        self.message = message or ERROR_MESSAGES[code]
        self.extra: dict[str, Any] = {}


@dataclass
class Answer:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Listing:
    """What a batchToken or sinceModifiedToken stands for."""

    kind: str  # "users" or "licenses"
    since: int  # records changed after this change number (0: every record)
    start: int  # the change number when the listing began: the next sinceModifiedToken's
    after: int  # the last id returned
    include_retired: bool = False
    adam_id: int | None = None
    pricing_param: str | None = None


def parse_exp_date(text: str) -> float:
    """The sToken's expDate, ISO 8601 as the chapter writes it: 2014-08-15T18:13:52-0700."""
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S%z").timestamp()


def dumps(body: dict[str, Any]) -> bytes:
    """JSON without null fields, "/" escaped as the service does (https:\\/\\/...)."""
    return json.dumps(_prune(body), separators=(",", ":")).replace("/", "\\/").encode()


def _prune(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _prune(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_prune(v) for v in value]
    return value


# -- parameters: "all primitive types are converted to string type first" ------------------


def param_string(params: dict[str, Any], name: str) -> str | None:
    """A parameter as the service sees it: a string, or None when absent or null."""
    value = params.get(name)
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    raise VPPError(9602, f'"{name}" is not a valid value')


def param_long(params: dict[str, Any], name: str) -> int | None:
    """A long parameter: 1 or "1"; "" counts as absent; anything else is 9602."""
    text = param_string(params, name)
    if text is None or text == "":
        return None
    if not _LONG.fullmatch(text):
        raise VPPError(9602, f'"{name}" is not a valid value')
    return int(text)


def param_flag(params: dict[str, Any], name: str) -> bool | None:
    """includeRetired: 1 or 0 (true/false too, as their string forms)."""
    text = param_string(params, name)
    if text is None or text == "":
        return None
    if text in ("1", "true"):
        return True
    if text in ("0", "false"):
        return False
    raise VPPError(9602, f'"{name}" is not a valid value')


def param_id_string(params: dict[str, Any], name: str) -> str | None:
    """An identifier string (clientUserIdStr, itsIdHash): "" counts as absent."""
    return param_string(params, name) or None


def valid_apn_token(text: str) -> bool:
    """Base64 of 32 bytes (44 characters) or 64 hexadecimal characters."""
    if _HEX_APN.fullmatch(text):
        return True
    if len(text) != 44:
        return False
    try:
        return len(base64.b64decode(text, validate=True)) == 32
    except binascii.Error:
        return False


class FakeVPP:
    """Apple's legacy VPP App Assignment services for one organization, on 127.0.0.1 over TLS."""

    def __init__(self, directory: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.directory = directory
        self.clock = clock
        ca_pem, cert_pem, key_pem = tls_material("Fake VPP CA")
        directory.mkdir(parents=True, exist_ok=True)
        self.ca_file = directory / "fakevpp-ca.pem"
        self.ca_file.write_bytes(ca_pem)
        self._listener_pem = cert_pem + key_pem
        self.url = ""
        self.service_config_url = ""
        # data
        self.users: dict[int, dict[str, Any]] = {}
        self.licenses: dict[int, dict[str, Any]] = {}
        self.client_context: str | None = None
        self.apn_token: str | None = None
        # knobs
        self.batch_size = 100
        self.expired = False
        self.invalid_token = False
        self.move_next = False
        #: (HTTP status, body) or (status, body, headers) for the next requests.
        self.fail_next: list[tuple[int, bytes] | tuple[int, bytes, dict[str, str]]] = []
        #: (code field, message field) of error answers: the services' tables spell them so.
        self.error_keys: tuple[str, str] = ("ErrorCode", "errorMessage")
        self.require_json_content_type = True
        # observed
        self.log: list[tuple[str, str, dict[str, Any]]] = []
        self.moves = 0
        self._tokens: dict[str, tuple[str, str]] = {}  # inner token -> (expDate, orgName)
        self._changed: dict[tuple[str, int], int] = {}  # (kind, id) -> change number
        self._change_count = 0
        self._next_user_id = 1
        self._next_license_id = 1
        self._listing_key = secrets.token_bytes(32)
        self._listener = TLSListener(self, self._listener_pem)

    # -- the sToken and the listener --------------------------------------------------------

    def stoken(self, exp_date: str = "2030-01-01T00:00:00-0000", org_name: str = "Test Org") -> str:
        """A new sToken as the VPP website hands it out: base64 of {token, expDate, orgName}."""
        parse_exp_date(exp_date)  # the fake issues only dates it can read back
        token = base64.b64encode(secrets.token_bytes(64)).decode()
        self._tokens[token] = (exp_date, org_name)
        blob = json.dumps({"token": token, "expDate": exp_date, "orgName": org_name})
        return base64.b64encode(blob.encode()).decode()

    async def start(self) -> None:
        """Listen on 127.0.0.1, an ephemeral port, TLS (HTTP/1.1)."""
        self.url = await self._listener.start()
        self.service_config_url = self.url + CONFIG_PATH

    async def stop(self) -> None:
        """Stop listening and drop open connections, so the reactor is clean after a test."""
        await self._listener.stop()

    def service_path(self, service: str) -> str:
        """Where a service is served now (VPPServiceConfigSrv never moves)."""
        if service == CONFIG_SERVICE:
            return CONFIG_PATH
        prefix = f"/moved{self.moves}" if self.moves else ""
        return prefix + WA + service

    def service_url(self, service: str) -> str:
        return self.url + self.service_path(service)

    @property
    def invitation_email_url(self) -> str:
        return self.url + INVITE_PATH + "?inviteCode=%inviteCode%&mt=8"

    # -- the organization's users and licenses ----------------------------------------------

    def _changed_now(self, kind: str, record_id: int) -> None:
        self._change_count += 1
        self._changed[(kind, record_id)] = self._change_count

    def _new_user(self, client_user_id: str, email: str | None = None) -> dict[str, Any]:
        user_id = self._next_user_id
        self._next_user_id += 1
        user: dict[str, Any] = {
            "userId": user_id,
            "clientUserIdStr": client_user_id,
            "status": REGISTERED,
            "inviteCode": uuid.uuid4().hex,
        }
        if email is not None:
            user["email"] = email
        self.users[user_id] = user
        self._changed_now("users", user_id)
        return user

    def add_users(self, count: int) -> list[int]:
        """Registered users (no email), each with a GUID clientUserIdStr."""
        return [self._new_user(str(uuid.uuid4()).upper())["userId"] for _ in range(count)]

    def associate_itunes(
        self, user_id: int, its_id_hash: str | None = None, *, revive_old: bool = False
    ) -> None:
        """The user accepted the invitation: Associated, with an itsIdHash.

        Given the itsIdHash of a retired record of the same clientUserIdStr (the same iTunes
        account again), that record becomes Deleted and its irrevocable licenses move here; with
        ``revive_old`` the old record is Associated again and this one Retired instead."""
        user = self.users[user_id]
        if user["status"] != REGISTERED:
            raise ValueError(f"user {user_id} is {user['status']}, not Registered")
        its = its_id_hash or base64.b64encode(secrets.token_bytes(20)).decode()
        old = next(
            (
                u
                for u in self.users.values()
                if u["clientUserIdStr"] == user["clientUserIdStr"]
                and u["status"] == RETIRED
                and u.get("itsIdHash") == its
            ),
            None,
        )
        if old is not None and revive_old:
            self.touch_user(user_id, status=RETIRED)
            self.touch_user(old["userId"], status=ASSOCIATED)
            return
        if old is not None:
            self.touch_user(old["userId"], status=DELETED)
            for license_id, lic in self.licenses.items():
                if lic.get("userId") == old["userId"] and lic["isIrrevocable"]:
                    self._assign(license_id, user_id)
        self.touch_user(user_id, status=ASSOCIATED, itsIdHash=its)

    def add_licenses(
        self,
        count: int,
        adam_id: int = DEFAULT_ADAM_ID,
        irrevocable: bool = False,
        *,
        pricing_param: str = "STDQ",
    ) -> list[int]:
        """Purchased licenses, unassigned: apps (Software, 7) or, irrevocable, books (10)."""
        ids = []
        for _ in range(count):
            license_id = self._next_license_id
            self._next_license_id += 1
            self.licenses[license_id] = {
                "licenseId": license_id,
                "adamId": adam_id,
                "productTypeId": 10 if irrevocable else 7,
                "pricingParam": pricing_param,
                "productTypeName": "Publication" if irrevocable else "Software",
                "isIrrevocable": irrevocable,
            }
            self._changed_now("licenses", license_id)
            ids.append(license_id)
        return ids

    def touch_user(self, user_id: int, **fields: Any) -> None:
        """Change a user's fields (None drops one): a change sinceModifiedToken reports."""
        unknown = set(fields) - USER_FIELDS
        if unknown:
            raise ValueError(f"not user fields: {sorted(unknown)}")
        user = self.users[user_id]
        for name, value in fields.items():
            if value is None:
                user.pop(name, None)
            else:
                user[name] = value
        self._changed_now("users", user_id)

    def _assign(self, license_id: int, user_id: int | None) -> None:
        lic = self.licenses[license_id]
        if user_id is None:
            lic.pop("userId", None)
        else:
            lic["userId"] = user_id
        self._changed_now("licenses", license_id)

    def _user_json(self, user: dict[str, Any], *, licenses: bool) -> dict[str, Any]:
        """A user object as the services answer it (null fields dropped later)."""
        out = {
            "userId": user["userId"],
            "email": user.get("email"),
            "status": user["status"],
            "clientUserIdStr": user["clientUserIdStr"],
            "itsIdHash": user.get("itsIdHash"),
        }
        if user["status"] == REGISTERED:
            code = user["inviteCode"]
            out["inviteUrl"] = self.invitation_email_url.replace("%inviteCode%", code)
            out["inviteCode"] = code
        if licenses:
            owned = [
                self._license_json(lic, with_user=False)
                for lic in self.licenses.values()
                if lic.get("userId") == user["userId"]
            ]
            out["licenses"] = owned or None
        return out

    def _license_json(self, lic: dict[str, Any], *, with_user: bool = True) -> dict[str, Any]:
        out = {name: lic[name] for name in LICENSE_FIELDS}
        user = self.users.get(lic.get("userId", -1))
        if with_user and user is not None:
            out["userId"] = user["userId"]
            out["clientUserIdStr"] = user["clientUserIdStr"]
            out["itsIdHash"] = user.get("itsIdHash")
        return out

    # -- batchToken and sinceModifiedToken: opaque base64 the fake can verify ---------------

    def _token(self, kind: str, listing: Listing) -> str:
        payload = json.dumps({"t": kind, **asdict(listing)}, separators=(",", ":")).encode()
        tag = hmac.new(self._listing_key, payload, hashlib.sha256).digest()[:_TAG]
        return base64.b64encode(payload + tag).decode()

    def _read_token(self, text: str, kind: str, listing_kind: str) -> Listing:
        """A token this fake issued for this service; anything else is 9604."""
        not_found = VPPError(9604)
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise not_found from None
        payload, tag = raw[:-_TAG], raw[-_TAG:]
        expected = hmac.new(self._listing_key, payload, hashlib.sha256).digest()[:_TAG]
        if len(raw) <= _TAG or not hmac.compare_digest(tag, expected):
            raise not_found
        fields = json.loads(payload)
        if fields.pop("t") != kind or fields["kind"] != listing_kind:
            raise not_found
        return Listing(**fields)

    # -- dispatch ---------------------------------------------------------------------------

    def handle(self, request: Request) -> Answer:
        """Answer one request: fail_next first, then the path, the body, the sToken."""
        path = request.path.decode("utf-8", "replace")
        service = path.rsplit("/", 1)[-1]
        assert request.content is not None
        raw = request.content.read()
        params = _loose_json(raw)
        self.log.append((path, service, params if params is not None else {}))
        if self.fail_next:
            status, body, *rest = self.fail_next.pop(0)
            headers = {"Content-Type": TEXT_TYPE, **(rest[0] if rest else {})}
            return Answer(status, body, headers)
        method = request.method.decode("ascii", "replace")
        if path == CONFIG_PATH:
            if method not in ("GET", "POST"):
                return Answer(405, b"Method Not Allowed", {"Allow": "GET, POST"})
            return self._json({"status": 0, **self._service_config()})
        match = re.fullmatch(r"(?:/moved([1-9][0-9]*))?" + re.escape(WA) + r"(\w+)", path)
        if match is None or service not in SERVICE_URL_FIELDS or service == CONFIG_SERVICE:
            return Answer(404, b"Not Found", {"Content-Type": TEXT_TYPE})
        generation = int(match.group(1) or 0)
        if generation > self.moves:
            return Answer(404, b"Not Found", {"Content-Type": TEXT_TYPE})
        if method != "POST":
            return Answer(405, b"Method Not Allowed", {"Allow": "POST"})
        try:
            return self._json(self._service(request, service, generation, params))
        except VPPError as e:
            return self._json({"status": -1, **e.extra, **self._error_fields(e)})

    def _error_fields(self, e: VPPError) -> dict[str, Any]:
        code_key, message_key = self.error_keys
        return {code_key: e.code, message_key: e.message}

    def _service(
        self, request: Request, service: str, generation: int, params: dict[str, Any] | None
    ) -> dict[str, Any]:
        """9617 for a moved URL, then the body and the sToken, then the service itself."""
        if generation < self.moves:
            raise VPPError(9617)
        if self.move_next:
            self.move_next = False
            self.moves += 1
            raise VPPError(9617)
        content_type = (request.getHeader("content-type") or "").lower()
        if self.require_json_content_type and "application/json" not in content_type:
            raise VPPError(9602, "Content-Type must contain application/json")
        if params is None:
            raise VPPError(9602, "The request body is not a JSON object")
        warning = self._authenticate(params)
        handler = getattr(self, "_" + service)
        try:
            body: dict[str, Any] = handler(params)
        except VPPError as e:
            e.extra["tokenExpDate"] = warning
            raise
        return {"status": 0, **body, "tokenExpDate": warning}

    def _authenticate(self, params: dict[str, Any]) -> str | None:
        """9601 without an sToken, 9622 for one the fake did not issue, 9621 once expired;
        answers the expDate when it is within the warning period (tokenExpDate)."""
        stoken = params.get("sToken")
        if stoken is None or stoken == "":
            raise VPPError(9601)
        if not isinstance(stoken, str):
            raise VPPError(9622)
        try:
            blob = json.loads(base64.b64decode(stoken, validate=True))
        except (binascii.Error, ValueError):
            raise VPPError(9622) from None
        if not isinstance(blob, dict) or set(blob) != {"token", "expDate", "orgName"}:
            raise VPPError(9622)
        issued = self._tokens.get(blob["token"]) if isinstance(blob["token"], str) else None
        if issued is None or issued != (blob["expDate"], blob["orgName"]) or self.invalid_token:
            raise VPPError(9622)
        exp_date = issued[0]
        left = parse_exp_date(exp_date) - self.clock()
        if self.expired or left <= 0:
            raise VPPError(9621)
        return exp_date if left <= WARNING_PERIOD else None

    def _json(self, body: dict[str, Any]) -> Answer:
        return Answer(200, dumps(body), {"Content-Type": JSON_TYPE})

    def _service_config(self) -> dict[str, Any]:
        """The example's fields: every service URL (here), the invitation URL, the errors."""
        urls = {key: self.service_url(name) for name, key in SERVICE_URL_FIELDS.items()}
        return {
            **urls,
            "invitationEmailUrl": self.invitation_email_url,
            "vppWebsiteUrl": "https://vpp.itunes.apple.com/",
            "errorCodes": [
                {"errorMessage": message, "errorNumber": code}
                for code, message in ERROR_MESSAGES.items()
            ],
        }

    # -- finding users ----------------------------------------------------------------------

    def _records(self, client_user_id: str) -> list[dict[str, Any]]:
        return [u for u in self.users.values() if u["clientUserIdStr"] == client_user_id]

    def _active(self, client_user_id: str) -> dict[str, Any] | None:
        return next((u for u in self._records(client_user_id) if u["status"] in ACTIVE), None)

    def _target_user(self, params: dict[str, Any], missing: str) -> dict[str, Any]:
        """The user of retire, edit and associate: userId first, else the active record of
        clientUserIdStr; 9600 without either, 9609 unknown, 9618 retired, 9620 deleted."""
        user_id = param_long(params, "userId")
        client_user_id = param_id_string(params, "clientUserIdStr")
        if user_id is not None:
            user = self.users.get(user_id)
        elif client_user_id is not None:
            records = self._records(client_user_id)
            user = self._active(client_user_id) or next(
                (u for u in records if u["status"] == RETIRED), None
            )
        else:
            raise VPPError(9600, missing)
        if user is None:
            raise VPPError(9609)
        if user["status"] == RETIRED:
            raise VPPError(9618)
        if user["status"] == DELETED:
            raise VPPError(9620)
        return user

    # -- the services -----------------------------------------------------------------------

    def _registerVPPUserSrv(self, params: dict[str, Any]) -> dict[str, Any]:
        """Active record: returned. Retired, never associated: Registered again. Else new."""
        client_user_id = param_id_string(params, "clientUserIdStr")
        email = param_string(params, "email")
        if client_user_id is None:
            raise VPPError(9600, '"clientUserIdStr" is required input parameter')
        user = self._active(client_user_id)
        if user is None:
            unassociated = next(
                (
                    u
                    for u in self._records(client_user_id)
                    if u["status"] == RETIRED and "itsIdHash" not in u
                ),
                None,
            )
            if unassociated is not None:
                self.touch_user(unassociated["userId"], status=REGISTERED)
                user = unassociated
            else:
                user = self._new_user(client_user_id, email or None)
        return {"user": self._user_json(user, licenses=True)}

    def _getVPPUserSrv(self, params: dict[str, Any]) -> dict[str, Any]:
        """By userId any status (Deleted too); by clientUserIdStr the active record, or with
        itsIdHash that account's record; 9604 when there is none."""
        user_id = param_long(params, "userId")
        client_user_id = param_id_string(params, "clientUserIdStr")
        its_id_hash = param_id_string(params, "itsIdHash")
        user: dict[str, Any] | None
        if user_id is not None:
            user = self.users.get(user_id)
        elif client_user_id is None:
            raise VPPError(9600, '"userId" or "clientUserIdStr" is required input parameter')
        elif its_id_hash is None:
            user = self._active(client_user_id)
        else:
            user = next(
                (
                    u
                    for u in self._records(client_user_id)
                    if u.get("itsIdHash") == its_id_hash and u["status"] != DELETED
                ),
                None,
            )
        if user is None:
            raise VPPError(9604)
        return {"user": self._user_json(user, licenses=True)}

    def _getVPPUsersSrv(self, params: dict[str, Any]) -> dict[str, Any]:
        listing, first = self._listing(params, "users")
        users = sorted(
            uid
            for uid, u in self.users.items()
            if u["status"] != DELETED
            and (listing.include_retired or u["status"] != RETIRED)
            and self._changed[("users", uid)] > listing.since
            and uid > listing.after
        )
        page, body = self._batch(listing, users, first)
        return {"users": [self._user_json(self.users[uid], licenses=False) for uid in page], **body}

    def _getVPPLicensesSrv(self, params: dict[str, Any]) -> dict[str, Any]:
        listing, first = self._listing(params, "licenses")
        licenses = sorted(
            lid
            for lid, lic in self.licenses.items()
            if listing.adam_id in (None, lic["adamId"])
            and listing.pricing_param in (None, lic["pricingParam"])
            and self._changed[("licenses", lid)] > listing.since
            and lid > listing.after
        )
        page, body = self._batch(listing, licenses, first)
        return {"licenses": [self._license_json(self.licenses[lid]) for lid in page], **body}

    def _listing(self, params: dict[str, Any], kind: str) -> tuple[Listing, bool]:
        """The listing a request continues (batchToken), repeats (sinceModifiedToken) or
        begins; True when it is not a batchToken request (totalCount is answered)."""
        batch_token = param_id_string(params, "batchToken")
        if batch_token is not None:
            return self._read_token(batch_token, "batch", kind), False
        since_token = param_id_string(params, "sinceModifiedToken")
        if since_token is not None:
            since = self._read_token(since_token, "since", kind)
            return replace(since, start=self._change_count, after=0), True
        if kind == "users":
            include_retired = bool(param_flag(params, "includeRetired"))
            listing = Listing(kind, 0, self._change_count, 0, include_retired=include_retired)
            return listing, True
        adam_id = param_long(params, "adamId")
        pricing = param_id_string(params, "pricingParam")
        if adam_id is not None and pricing is None:
            pricing = "STDQ"
        listing = Listing(kind, 0, self._change_count, 0, adam_id=adam_id, pricing_param=pricing)
        return listing, True

    def _batch(
        self, listing: Listing, ids: list[int], first: bool
    ) -> tuple[list[int], dict[str, Any]]:
        """The ids of one batch, and totalCount and batchToken or sinceModifiedToken."""
        page = ids[: max(self.batch_size, 1)]
        body: dict[str, Any] = {"totalCount": len(ids) if first else None}
        if len(ids) > len(page):
            body["batchToken"] = self._token("batch", replace(listing, after=page[-1]))
        else:
            # A users' sinceModified listing includes retired users ("as if you had passed 1").
            since = replace(listing, since=listing.start, after=0)
            if since.kind == "users":
                since = replace(since, include_retired=True)
            body["sinceModifiedToken"] = self._token("since", since)
        return page, body

    def _retireVPPUserSrv(self, params: dict[str, Any]) -> dict[str, Any]:
        """Retired; its revocable licenses are released, irrevocable ones stay."""
        user = self._target_user(
            params, '"userId" or "clientUserIdStr" is required input parameter'
        )
        for license_id, lic in self.licenses.items():
            if lic.get("userId") == user["userId"] and not lic["isIrrevocable"]:
                self._assign(license_id, None)
        self.touch_user(user["userId"], status=RETIRED)
        return {"user": self._user_json(user, licenses=True)}

    def _associateVPPLicenseWithVPPUserSrv(self, params: dict[str, Any]) -> dict[str, Any]:
        user = self._target_user(
            params, '"userId" or "clientUserIdStr" is required input parameter'
        )
        license_id = param_long(params, "licenseId")
        if license_id is not None:
            lic = self.licenses.get(license_id)
            if lic is None:
                raise VPPError(9610)
            if "userId" in lic:
                raise VPPError(9616)
        else:
            lic = self._free_license(params, user)
        self._assign(lic["licenseId"], user["userId"])
        return {"license": self._license_json(lic), "user": self._user_json(user, licenses=False)}

    def _free_license(self, params: dict[str, Any], user: dict[str, Any]) -> dict[str, Any]:
        """adamId (and pricingParam, "STDQ" if missing): the lowest free license of it."""
        adam_id = param_long(params, "adamId")
        if adam_id is None:
            raise VPPError(9600, '"licenseId" or "adamId" is required input parameter')
        pricing = param_id_string(params, "pricingParam") or "STDQ"
        of_asset = [
            lic
            for _, lic in sorted(self.licenses.items())
            if lic["adamId"] == adam_id and lic["pricingParam"] == pricing
        ]
        if any(lic.get("userId") == user["userId"] for lic in of_asset):
            raise VPPError(9616)
        free = next((lic for lic in of_asset if "userId" not in lic), None)
        if free is None:
            raise VPPError(9610)
        return free

    def _disassociateVPPLicenseFromVPPUserSrv(self, params: dict[str, Any]) -> dict[str, Any]:
        license_id = param_long(params, "licenseId")
        if license_id is None:
            raise VPPError(9600, '"licenseId" is required input parameter')
        lic = self.licenses.get(license_id)
        if lic is None:
            raise VPPError(9610)
        user = self.users.get(lic.get("userId", -1))
        if user is None:
            raise VPPError(9619)
        if lic["isIrrevocable"]:
            raise VPPError(9607)
        self._assign(license_id, None)
        return {"license": self._license_json(lic), "user": self._user_json(user, licenses=False)}

    def _editVPPUserSrv(self, params: dict[str, Any]) -> dict[str, Any]:
        """Only the email, and only when one is passed."""
        user = self._target_user(params, 'Missing "userId" input parameter')
        email = param_string(params, "email")
        if email is not None:
            self.touch_user(user["userId"], email=email)
        return {"user": self._user_json(user, licenses=True)}

    def _VPPClientConfigSrv(self, params: dict[str, Any]) -> dict[str, Any]:
        """clientContext (< 256 bytes; "" clears) and apnToken (9623 unless valid; "" clears);
        the answer has the current clientContext."""
        context = param_string(params, "clientContext")
        apn_token = param_string(params, "apnToken")
        if context is not None and len(context.encode()) >= MAX_CLIENT_CONTEXT:
            raise VPPError(9602, '"clientContext" must be less than 256 bytes')
        if apn_token and not valid_apn_token(apn_token):
            raise VPPError(9623)
        if context is not None:
            self.client_context = context or None
        if apn_token is not None:
            self.apn_token = apn_token or None
        return {"clientContext": self.client_context}


def _loose_json(raw: bytes) -> dict[str, Any] | None:
    """The body's JSON object; {} for an empty body; None when it is not a JSON object."""
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return value if isinstance(value, dict) else None
