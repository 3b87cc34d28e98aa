"""What the device handlers need besides the store, and what they answer."""

from __future__ import annotations

import json
import plistlib
from dataclasses import dataclass
from typing import Any

from mdmappliance.commands.queue import RESULT_BYTES
from mdmappliance.device.digest import DigestAuthority
from mdmappliance.pki.escrow import Escrow

EMPTY = b""
PLIST_TYPE = "application/xml; charset=UTF-8"
JSON_TYPE = "application/json"


@dataclass(frozen=True)
class ChannelPolicy:
    """The escrow key, the push topic the server pushes on, local network users, and how
    much of its answers an enrollment may keep."""

    escrow: Escrow
    topic: str = ""
    digest: DigestAuthority | None = None
    #: The bound on raw answers kept per enrollment (``[retention]``).
    max_result_bytes: int = RESULT_BYTES


@dataclass(frozen=True)
class Handled:
    """The reply body (a plist, JSON, or empty), and the CommandUUID the device answered
    NotNow to (not offered again on this connection). ``status`` is for answers the protocol
    documents as other than 200 (GetToken's 403 error body), which still commit."""

    body: bytes
    not_now: str | None = None
    status: int = 200
    content_type: str = PLIST_TYPE


def plist_reply(value: dict[str, Any]) -> bytes:
    return plistlib.dumps(value, fmt=plistlib.FMT_XML)


def json_reply(value: dict[str, Any], status: int = 200) -> Handled:
    return Handled(
        json.dumps(value, sort_keys=True).encode(), status=status, content_type=JSON_TYPE
    )
