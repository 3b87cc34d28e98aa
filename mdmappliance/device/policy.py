"""What the device handlers need besides the store, and what they answer."""

from __future__ import annotations

import plistlib
from dataclasses import dataclass

from mdmappliance.commands.queue import RESULT_BYTES
from mdmappliance.device.digest import DigestAuthority
from mdmappliance.pki.escrow import Escrow

EMPTY = b""


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
    """The reply body (a plist, or empty), and the CommandUUID the device answered NotNow to
    (not offered again on this connection)."""

    body: bytes
    not_now: str | None = None


def plist_reply(value: dict[str, str]) -> bytes:
    return plistlib.dumps(value, fmt=plistlib.FMT_XML)
