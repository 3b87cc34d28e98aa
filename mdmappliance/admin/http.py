"""Request and reply helpers shared by the admin routes: JSON bodies, query parameters,
JSON replies, and who made a request (its API key's name)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Protocol

from twisted.web.iweb import IRequest


class BadQuery(ValueError):
    """A query parameter the route cannot use; its message names the parameter (400)."""


class _NotJSON(ValueError):
    pass


def _no_constants(name: str) -> Any:
    raise _NotJSON(f"{name} is not a JSON number")


def json_body(request: IRequest) -> tuple[dict[str, Any], list[str]]:
    """The request's JSON object body (empty allowed), and what is wrong with it.

    Strict JSON: ``NaN`` and ``Infinity`` (which Python's parser takes by default) are
    refused, as is nesting too deep to read."""
    raw = request.content.read() if request.content is not None else b""
    if not raw.strip():
        return {}, []
    try:
        body = json.loads(raw, parse_constant=_no_constants)
    except RecursionError:
        return {}, ["the body is not JSON we read: it nests too deep"]
    except (ValueError, UnicodeDecodeError) as e:
        return {}, [f"the body is not JSON: {e}"]
    if not isinstance(body, dict):
        return {}, ["the body must be a JSON object"]
    return body, []


def unknown_fields(body: dict[str, Any], known: set[str]) -> list[str]:
    return [f"{key}: unknown field" for key in sorted(set(body) - known)]


def arg(request: IRequest, name: str, choices: tuple[str, ...] | None = None) -> str | None:
    values = (request.args or {}).get(name.encode(), [])
    if not values:
        return None
    try:
        value: str = values[-1].decode("utf-8")
    except UnicodeDecodeError:
        raise BadQuery(f"{name}: not UTF-8") from None
    if choices is not None and value not in choices:
        raise BadQuery(f"{name}: must be one of {', '.join(choices)}")
    return value


def int_arg(request: IRequest, name: str, default: int, low: int, high: int) -> int:
    value = arg(request, name)
    if value is None:
        return default
    # isdigit() alone takes superscripts and other digits int() refuses.
    if not (value.isascii() and value.isdigit()) or not low <= int(value) <= high:
        raise BadQuery(f"{name}: must be an integer from {low} to {high}")
    return int(value)


def write_json(request: IRequest, status: int, body: Mapping[str, Any]) -> bytes:
    """Set status and headers for a JSON reply and return its bytes."""
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-store")
    return json.dumps(body, indent=None, sort_keys=True).encode("utf-8") + b"\n"


def actor(request: IRequest) -> str:
    """Who made a write, for the audit log: the API key's name."""
    return f"api:{getattr(request, 'api_key_name', 'admin')}"


class SyncReport(Protocol):
    """What a DEP or VPP sync run reports (dep.sync.SyncReport, vpp.sync.VPPReport)."""

    alert: str | None
    retry_after: float | None
    errors: list[str]

    def counts(self) -> dict[str, Any]: ...


def sync_answer(request: IRequest, report: SyncReport) -> bytes:
    """A sync run as the admin API answers it: 200 with what it did; 503 with Retry-After
    when Apple asked to wait; 502 with the alert or error in words when Apple refused."""
    body: dict[str, Any] = {**report.counts(), "errors": report.errors}
    if report.retry_after is not None:
        request.setHeader(b"retry-after", str(int(report.retry_after + 0.999)).encode())
        return write_json(request, 503, {**body, "error": report.errors[-1]})
    if report.alert or report.errors:
        return write_json(request, 502, {**body, "error": report.alert or report.errors[0]})
    return write_json(request, 200, body)
