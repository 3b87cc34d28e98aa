"""How a config key is declared (``setting``) and the value checks keys share."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import field
from typing import Any
from urllib.parse import urlsplit

Check = Callable[[Any], None]
_REQUIRED = object()


def setting(
    default: Any = _REQUIRED, *, doc: str, check: Check | None = None, example: Any = None
) -> Any:
    """A config key: its default (absent for required keys), help text and value check."""
    metadata = {"doc": doc, "check": check, "example": example}
    if default is _REQUIRED:
        return field(metadata=metadata)
    return field(default=default, metadata=metadata)


def in_range(low: float, high: float) -> Check:
    def check(value: float) -> None:
        if not low <= value <= high:
            raise ValueError(f"must be from {low} to {high}, got {value}")

    return check


def one_of(choices: Iterable[str]) -> Check:
    allowed = tuple(choices)

    def check(value: str) -> None:
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}, got {value!r}")

    return check


_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


def check_hostname(value: str) -> None:
    """A DNS name or an IP address literal: what devices will put in their URLs."""
    try:
        ipaddress.ip_address(value)
        return
    except ValueError:
        pass
    name = value.rstrip(".")
    if not name or len(name) > 253 or not all(_HOST_LABEL.match(p) for p in name.split(".")):
        raise ValueError(f"{value!r} is not a valid DNS name or IP address")


def check_not_empty(value: str) -> None:
    if not value:
        raise ValueError("must not be empty")


def check_ip_address(value: str) -> None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address (a name is not accepted here)") from None


def check_ip_addresses(values: tuple[str, ...]) -> None:
    for value in values:
        check_ip_address(value)


def check_url_path(value: str) -> None:
    if not value.startswith("/") or any(c in value for c in "?# \t"):
        raise ValueError(f"must be a URL path starting with '/', got {value!r}")


def check_topic(value: str) -> None:
    if value and not (value.startswith("com.apple.mgmt.") and len(value) > len("com.apple.mgmt.")):
        raise ValueError(f"must be empty or start with 'com.apple.mgmt.', got {value!r}")


def check_access_rights(value: int) -> None:
    """The rules of "Structure of MDM Payloads"."""
    if value <= 0 or value > 8191:
        raise ValueError(f"must be a non-zero combination of the flags 1 to 4096, got {value}")
    if value & 2 and not value & 1:
        raise ValueError(f"{value} has 2 (install profiles) without 1 (inspect profiles)")
    if value & 128 and not value & 64:
        raise ValueError(
            f"{value} has 128 (install provisioning profiles) without 64 (inspect them)"
        )


def check_https_url_or_empty(value: str) -> None:
    if value and not (value.startswith("https://") and len(value) > len("https://")):
        raise ValueError(f"must be empty or an https:// URL, got {value!r}")


def check_gateway(value: str) -> None:
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname or parts.path not in ("", "/"):
        raise ValueError(f"must be an https:// URL with no path, got {value!r}")


def check_webhook_urls(values: tuple[str, ...]) -> None:
    for value in values:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"each must be an http:// or https:// URL, got {value!r}")
