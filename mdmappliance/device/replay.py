"""Replayed Mdm-Signatures: a signed check-in that changes state (Authenticate, TokenUpdate,
CheckOut) is taken once. Its signature is remembered for as long as its signingTime could
still pass (twice ``[device] signature_clock_skew``); the same signature again is a replay.

What this does not cover, proxy mode being plain HTTP behind the proxy: a replayed signed
Idle or result is answered like the original (README, "Reliability").
"""

from __future__ import annotations

from collections.abc import Callable

#: Signatures remembered at most (oldest dropped first): a bound on memory, far above what
#: a fleet sends within the window.
CAPACITY = 200_000


class ReplayGuard:
    def __init__(self, now: Callable[[], float], window: float, capacity: int = CAPACITY) -> None:
        self.now = now
        self.window = window
        self.capacity = capacity
        self._expiry: dict[bytes, float] = {}

    def taken(self, signature_digest: bytes) -> bool:
        """This signature's message was taken within the window: another is a replay."""
        expiry = self._expiry.get(signature_digest)
        return expiry is not None and expiry > self.now()

    def remember(self, signature_digest: bytes) -> None:
        """The message was taken (committed); a failed one is not remembered, so a device
        retrying after a 503 is not taken for a replay."""
        now = self.now()
        if len(self._expiry) >= self.capacity:
            self._forget(now)
        self._expiry[signature_digest] = now + self.window

    def _forget(self, now: float) -> None:
        """Drop expired signatures, then the oldest ones until there is room (insertion
        order is expiry order: the window is the same for all)."""
        self._expiry = {d: e for d, e in self._expiry.items() if e > now}
        while len(self._expiry) >= self.capacity:
            del self._expiry[next(iter(self._expiry))]
