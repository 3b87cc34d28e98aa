"""Who may be pushed, and what APNs answered for each enrollment (``push_*`` columns)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mdmappliance.store.family import Family, id_list

_PUSHABLE = (
    "state = 'enrolled' AND token_valid = 1 AND push_token IS NOT NULL AND push_magic IS NOT NULL"
)


@dataclass(frozen=True)
class PushTarget:
    enrollment_id: int
    udid: str
    token: bytes
    push_magic: str
    token_updated_at: str | None


@dataclass(frozen=True)
class PushRecord:
    """One push's answer, as kept on its enrollment."""

    enrollment_id: int
    status: str
    reason: str | None
    apns_id: str | None
    invalidate: bool


class Pushes(Family):
    __slots__ = ()

    def targets(self, enrollment_ids: Sequence[int]) -> list[PushTarget]:
        """The enrollments of ``enrollment_ids`` that may be pushed now."""
        rows = self._conn.execute(
            "SELECT id, udid, push_token, push_magic, token_updated_at FROM enrollments "
            f"WHERE id IN (SELECT value FROM json_each(?)) AND {_PUSHABLE} ORDER BY id",
            (id_list(enrollment_ids),),
        ).fetchall()
        return [PushTarget(r[0], r[1], bytes(r[2]), r[3], r[4]) for r in rows]

    def page(self, after_id: int, limit: int) -> list[int]:
        """Pushable enrollments after ``after_id``, a page at a time."""
        rows = self._conn.execute(
            f"SELECT id FROM enrollments WHERE id > ? AND {_PUSHABLE} ORDER BY id LIMIT ?",
            (after_id, limit),
        ).fetchall()
        return [row[0] for row in rows]

    def record(self, records: Sequence[PushRecord], now: str) -> None:
        """Each answer on its enrollment; an invalidating one makes the token invalid."""
        self._conn.executemany(
            "UPDATE enrollments SET push_status = ?, push_reason = ?, push_at = ?, "
            "apns_id = coalesce(?, apns_id), "
            "token_valid = CASE WHEN ? THEN 0 ELSE token_valid END WHERE id = ?",
            [(r.status, r.reason, now, r.apns_id, r.invalidate, r.enrollment_id) for r in records],
        )
