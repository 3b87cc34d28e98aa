"""Webhook cursors: per receiver URL, the last event it acknowledged, and delivery counts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mdmappliance.store.family import Family


@dataclass(frozen=True)
class Cursor:
    last_event_id: int
    delivered: int
    failures: int
    last_error: str | None


class Webhooks(Family):
    __slots__ = ()

    def cursor(self, url: str) -> Cursor:
        row = self._conn.execute(
            "SELECT last_event_id, delivered, failures, last_error FROM webhook_cursors "
            "WHERE url = ?",
            (url,),
        ).fetchone()
        return Cursor(*row) if row else Cursor(0, 0, 0, None)

    def delivered_up_to(self, urls: Sequence[str]) -> int | None:
        """The last event every one of ``urls`` has (None: no receivers)."""
        if not urls:
            return None
        return min(self.cursor(url).last_event_id for url in urls)

    def record(self, url: str, event_id: int | None, error: str | None, now: str) -> None:
        """Move the cursor past a delivered event, or count a failure."""
        self._conn.execute(
            "INSERT INTO webhook_cursors (url, last_event_id, updated_at) VALUES (?, 0, ?) "
            "ON CONFLICT (url) DO NOTHING",
            (url, now),
        )
        if error is None:
            self._conn.execute(
                "UPDATE webhook_cursors SET last_event_id = max(last_event_id, ?), "
                "delivered = delivered + 1, last_error = NULL, updated_at = ? WHERE url = ?",
                (event_id, now, url),
            )
        else:
            self._conn.execute(
                "UPDATE webhook_cursors SET failures = failures + 1, last_error = ?, "
                "updated_at = ? WHERE url = ?",
                (error[:500], now, url),
            )
