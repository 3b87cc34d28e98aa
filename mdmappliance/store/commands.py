"""Commands, their results, and the shared reply bodies of batches.

A command is pending (queued, sent or not_now) until a final result; the queue's rules are
in ``commands.queue``, the batch rules in ``commands.send``: here is only how rows are kept.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, NotRequired, TypedDict, cast

from mdmappliance.store.family import Family, id_list

#: A command is pending until a final state: answered by the device, or ended here.
PENDING = ("queued", "sent", "not_now")
ANSWERED = ("acknowledged", "error", "format_error")
FINAL = (*ANSWERED, "expired", "canceled")
STATES = (*PENDING, *FINAL)
_PENDING_SQL = "('queued', 'sent', 'not_now')"

#: state, access_rights, platform, supervised, has_unlock_token, is_user, OS version, User
#: Enrollment: what decides how a command fits an enrollment (``commands.send`` fits it once
#: per kind; a fleet has few OS versions).
Kind = tuple[str, int | None, str | None, int | None, int, int, str | None, int]

#: The targets of a batch, with what decides how a command fits each of them.
_TARGETS = (
    "FROM enrollments AS e JOIN devices AS d ON d.udid = e.udid "
    "LEFT JOIN enrollments AS dc ON dc.udid = e.udid AND dc.user_id = '' "
    "WHERE e.id IN (SELECT value FROM json_each(:ids))"
)
_KIND_COLUMNS = (
    "e.state",
    "coalesce(e.access_rights, dc.access_rights)",
    "d.platform",
    "d.supervised",
    "dc.unlock_token_sealed IS NOT NULL",
    "e.user_id != ''",
    "d.os_version",
    "d.user_enrollment",
)


def _kinds_match(count: int) -> str:
    """Targets of any of ``count`` kinds (parameters ``:k<kind>_<column>``)."""
    one = [
        " AND ".join(f"{column} IS :k{k}_{i}" for i, column in enumerate(_KIND_COLUMNS))
        for k in range(count)
    ]
    return "(" + " OR ".join(f"({match})" for match in one) + ")"


#: The rest of a CommandUUID, made by SQLite for each row: variant bits and the counter's top
#: 14 bits, then its low 16 bits and 32 random bits. A batch's UUIDs sort in the order they
#: are made, so they go in at the end of the uuid index rather than at random places.
_UUID_TAIL = (
    "printf('%04X-%04X%08X', 32768 | ((:start + n) >> 16 & 16383), (:start + n) & 65535, "
    "random() & 4294967295)"
)


class _Command(TypedDict):
    """The columns of a command an admin reads (``COMMAND_FIELDS``), and its channel's user."""

    uuid: str
    request_type: str
    state: str
    created_at: str
    sent_at: str | None
    result_at: str | None
    not_now_count: int
    user_id: str


class CommandStatus(_Command):
    """A command as an admin reads it; ``result`` is the latest result, when there is one."""

    udid: str
    result: NotRequired[dict[str, Any]]


class CommandListed(_Command):
    """A command in a device's list (``id`` is the page cursor)."""

    id: int


class ExpiryDue(enum.Enum):
    """``next_pending``'s answer when expired commands must be marked before sending."""

    EXPIRY_DUE = "expiry due"


EXPIRY_DUE = ExpiryDue.EXPIRY_DUE


@dataclass(frozen=True)
class Pending:
    """A pending command as it is sent: its reply plist (sealed or not)."""

    id: int
    uuid: str
    payload: bytes
    sealed: bool


@dataclass(frozen=True)
class CommandRef:
    """What a device's report about a command needs to know of it."""

    id: int
    enrollment_id: int
    state: str
    request_type: str
    sealed: bool


@dataclass(frozen=True)
class Expired:
    uuid: str
    enrollment_id: int


@dataclass(frozen=True)
class NewCommand:
    """One command for one enrollment, with its reply plist."""

    uuid: str
    enrollment_id: int
    request_type: str
    payload: bytes
    priority: int
    created_at: str
    expires_at: str | None
    batch_event_id: int | None = None
    sealed: bool = False


@dataclass(frozen=True)
class Batch:
    """The rows of a batch of one kind: they share a reply body and an admin event."""

    request_type: str
    priority: int
    created_at: str
    expires_at: str | None
    event_id: int
    body_id: int
    uuid_prefix: str
    counter_start: int


@dataclass(frozen=True)
class TargetSet:
    """A batch's enrollment ids, encoded once for every statement that reads them (a batch
    may have 100,000)."""

    ids: str

    @classmethod
    def of(cls, enrollment_ids: Sequence[int]) -> TargetSet:
        return cls(id_list(sorted(set(enrollment_ids))))


@dataclass(frozen=True)
class Member:
    enrollment_id: int
    udid: str
    user_id: str


def _reply(payload: Any, head: Any, tail: Any, command_uuid: str) -> bytes:
    """The reply plist: the row's own, or the batch body around the CommandUUID."""
    if head is not None:
        return bytes(head) + command_uuid.encode("ascii") + bytes(tail)
    return bytes(payload)


def _kind_args(ids: str, kinds: Sequence[Kind]) -> dict[str, Any]:
    args: dict[str, Any] = {"ids": ids}
    for k, kind in enumerate(kinds):
        args.update({f"k{k}_{i}": value for i, value in enumerate(kind)})
    return args


class Commands(Family):
    __slots__ = ()

    # Queueing
    def insert(self, command: NewCommand) -> None:
        self._conn.execute(
            "INSERT INTO commands (uuid, enrollment_id, request_type, payload, priority, state, "
            "created_at, expires_at, updated_at, batch_event_id, sealed) "
            "VALUES (?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?, ?)",
            (
                command.uuid,
                command.enrollment_id,
                command.request_type,
                command.payload,
                command.priority,
                command.created_at,
                command.expires_at,
                command.created_at,
                command.batch_event_id,
                int(command.sealed),
            ),
        )

    def target_kinds(self, targets: TargetSet) -> list[tuple[Kind, int]]:
        """The kinds among these enrollments, and how many of each."""
        groups = self._conn.execute(
            f"SELECT {', '.join(_KIND_COLUMNS)}, count(*) {_TARGETS} "
            f"GROUP BY {', '.join(str(i + 1) for i in range(len(_KIND_COLUMNS)))}",
            {"ids": targets.ids},
        ).fetchall()
        return [(cast(Kind, tuple(columns)), members) for *columns, members in groups]

    def members(self, targets: TargetSet, *kinds: Kind) -> list[Member]:
        rows = self._conn.execute(
            f"SELECT e.id, e.udid, e.user_id {_TARGETS} AND {_kinds_match(len(kinds))} "
            "ORDER BY e.id",
            _kind_args(targets.ids, kinds),
        ).fetchall()
        return [Member(*row) for row in rows]

    def missing_enrollments(self, targets: TargetSet) -> list[int]:
        rows = self._conn.execute(
            "SELECT value FROM json_each(?) WHERE value NOT IN (SELECT id FROM enrollments)",
            (targets.ids,),
        ).fetchall()
        return [row[0] for row in rows]

    def add_body(self, head: bytes, tail: bytes) -> int:
        cursor = self._conn.execute(
            "INSERT INTO command_bodies (head, tail) VALUES (?, ?)", (head, tail)
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def insert_batch(
        self, targets: TargetSet, kinds: Sequence[Kind], batch: Batch
    ) -> list[tuple[int, str]]:
        """One row per enrollment of ``kinds`` (those the command fits alike), CommandUUIDs
        made in SQL; (enrollment id, CommandUUID) of each, in enrollment order. One pass over
        the targets per call, however many kinds."""
        rows = self._conn.execute(
            "INSERT INTO commands (uuid, enrollment_id, payload, request_type, priority, "
            "state, created_at, expires_at, updated_at, batch_event_id, body_id) "
            f"SELECT :prefix || {_UUID_TAIL}, id, x'', :request_type, :priority, "
            "'queued', :now, :expires_at, :now, :event_id, :body_id "
            "FROM (SELECT e.id AS id, row_number() OVER (ORDER BY e.id) AS n "
            f"{_TARGETS} AND {_kinds_match(len(kinds))}) RETURNING enrollment_id, uuid",
            {
                **_kind_args(targets.ids, kinds),
                "prefix": batch.uuid_prefix,
                "start": batch.counter_start,
                "request_type": batch.request_type,
                "priority": batch.priority,
                "now": batch.created_at,
                "expires_at": batch.expires_at,
                "event_id": batch.event_id,
                "body_id": batch.body_id,
            },
        ).fetchall()
        return [(row[0], row[1]) for row in rows]

    # The device side
    def next_pending(
        self, enrollment_id: int, skip: Collection[str], now: str
    ) -> Pending | ExpiryDue | None:
        """The first pending command of the enrollment but ``skip``, marked sent; or
        ``EXPIRY_DUE`` (nothing marked) when a pending command of it is past its expiry, to
        be expired first. One statement answers both on a device's every poll."""
        placeholders = ",".join("?" * len(skip))
        excluded = f"AND c.uuid NOT IN ({placeholders})" if skip else ""
        due, command_id, command_uuid, payload, sealed, head, tail = self._conn.execute(
            "SELECT EXISTS (SELECT 1 FROM commands WHERE enrollment_id = ? AND state IN "
            f"{_PENDING_SQL} AND expires_at IS NOT NULL AND expires_at <= ?), n.* "
            "FROM (SELECT 1) LEFT JOIN (SELECT c.id, c.uuid, c.payload, c.sealed, b.head, "
            "b.tail FROM commands AS c LEFT JOIN command_bodies AS b ON b.id = c.body_id "
            f"WHERE c.enrollment_id = ? AND c.state IN {_PENDING_SQL} {excluded} "
            "ORDER BY c.priority DESC, c.id LIMIT 1) AS n ON 1",
            (enrollment_id, now, enrollment_id, *skip),
        ).fetchone()
        if due:
            return EXPIRY_DUE
        if command_id is None:
            return None
        self._conn.execute(
            "UPDATE commands SET state = 'sent', sent_at = ?, send_count = send_count + 1, "
            "updated_at = ? WHERE id = ?",
            (now, now, command_id),
        )
        return Pending(
            command_id, command_uuid, _reply(payload, head, tail, command_uuid), bool(sealed)
        )

    def payload(self, command_uuid: str) -> tuple[bytes, bool] | None:
        """The reply plist of a command as stored (sealed or not), or None if unknown."""
        row = self._conn.execute(
            "SELECT c.payload, c.sealed, b.head, b.tail FROM commands AS c "
            "LEFT JOIN command_bodies AS b ON b.id = c.body_id WHERE c.uuid = ?",
            (command_uuid,),
        ).fetchone()
        if row is None:
            return None
        payload, sealed, head, tail = row
        return _reply(payload, head, tail, command_uuid), bool(sealed)

    def find(self, command_uuid: str) -> CommandRef | None:
        row = self._conn.execute(
            "SELECT id, enrollment_id, state, request_type, sealed FROM commands WHERE uuid = ?",
            (command_uuid,),
        ).fetchone()
        return None if row is None else CommandRef(row[0], row[1], row[2], row[3], bool(row[4]))

    def mark_not_now(self, command_id: int, now: str) -> None:
        self._conn.execute(
            "UPDATE commands SET state = 'not_now', not_now_count = not_now_count + 1, "
            "updated_at = ? WHERE id = ?",
            (now, command_id),
        )

    def mark_answered(self, command_id: int, state: str, now: str) -> None:
        self._conn.execute(
            "UPDATE commands SET state = ?, result_at = ?, updated_at = ? WHERE id = ?",
            (state, now, now, command_id),
        )

    def add_result(
        self,
        command_id: int,
        status: str,
        error_chain: list[dict[str, Any]] | None,
        raw: bytes,
        now: str,
    ) -> int:
        chain = json.dumps(error_chain, default=str) if error_chain else None
        cursor = self._conn.execute(
            "INSERT INTO command_results (command_id, status, error_chain, raw, received_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (command_id, status, chain, raw, now),
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def set_summary(self, result_id: int, summary: dict[str, Any]) -> None:
        self._conn.execute(
            "UPDATE command_results SET summary = ? WHERE id = ?",
            (json.dumps(summary), result_id),
        )

    # Ending
    def cancel(self, command_uuid: str, now: str) -> bool:
        """Cancel a command that has no result yet; False if it has one (or is unknown)."""
        cursor = self._conn.execute(
            f"UPDATE commands SET state = 'canceled', updated_at = ? WHERE uuid = ? "
            f"AND state IN {_PENDING_SQL}",
            (now, command_uuid),
        )
        return bool(cursor.rowcount)

    def expire_due(
        self, now: str, *, enrollment_id: int | None = None, limit: int = -1
    ) -> list[Expired]:
        """Mark pending commands whose expiry passed as expired (of one enrollment, or all);
        which they were."""
        scope, args = ("AND enrollment_id = ?", (enrollment_id,)) if enrollment_id else ("", ())
        rows = self._conn.execute(
            f"SELECT id, uuid, enrollment_id FROM commands WHERE state IN {_PENDING_SQL} "
            f"AND expires_at IS NOT NULL AND expires_at <= ? {scope} LIMIT ?",
            (now, *args, limit),
        ).fetchall()
        for command_id, _, _ in rows:
            self._conn.execute(
                "UPDATE commands SET state = 'expired', updated_at = ? WHERE id = ?",
                (now, command_id),
            )
        return [Expired(uuid, owner) for _, uuid, owner in rows]

    def prune_answered(self, before: str, limit: int) -> int:
        """Answered (or expired, or canceled) commands last changed before ``before``, with
        their results and unused bodies; how many commands."""
        ids = [
            row[0]
            for row in self._conn.execute(
                f"SELECT id FROM commands WHERE state NOT IN {_PENDING_SQL} "
                "AND updated_at < ? ORDER BY id LIMIT ?",
                (before, limit),
            )
        ]
        if not ids:
            return 0
        listed = id_list(ids)
        # What the pruned answers counted against their enrollments' bound.
        self._conn.execute(
            "UPDATE enrollments SET result_bytes = max(0, result_bytes - (SELECT "
            "coalesce(sum(length(r.raw)), 0) FROM command_results AS r JOIN commands AS c "
            "ON c.id = r.command_id WHERE c.enrollment_id = enrollments.id "
            "AND c.id IN (SELECT value FROM json_each(:ids)))) WHERE id IN (SELECT "
            "enrollment_id FROM commands WHERE id IN (SELECT value FROM json_each(:ids)))",
            {"ids": listed},
        )
        self._conn.execute(
            "DELETE FROM command_results WHERE command_id IN (SELECT value FROM json_each(?))",
            (listed,),
        )
        self._conn.execute(
            "DELETE FROM commands WHERE id IN (SELECT value FROM json_each(?))", (listed,)
        )
        self._conn.execute(
            "DELETE FROM command_bodies WHERE id NOT IN "
            "(SELECT body_id FROM commands WHERE body_id IS NOT NULL)"
        )
        return len(ids)

    # Reading
    def status(self, command_uuid: str) -> CommandStatus | None:
        """A command as an admin reads it (without its result): uuid, request type, state,
        times, NotNow count, and the enrollment's UDID and UserID."""
        row = self._conn.execute(
            f"SELECT {', '.join('c.' + f for f in COMMAND_FIELDS)}, e.udid, e.user_id "
            "FROM commands AS c JOIN enrollments AS e ON e.id = c.enrollment_id "
            "WHERE c.uuid = ?",
            (command_uuid,),
        ).fetchone()
        if row is None:
            return None
        fields = (*COMMAND_FIELDS, "udid", "user_id")
        return cast(CommandStatus, dict(zip(fields, row, strict=True)))

    def last_result(self, command_uuid: str, *, raw: bool = False) -> LastResult | None:
        """The command's latest result; ``raw`` reads the device's whole answer too."""
        row = self._conn.execute(
            "SELECT r.status, r.error_chain, r.summary, r.received_at, "
            f"{'r.raw' if raw else 'NULL'} FROM command_results AS r "
            "JOIN commands AS c ON c.id = r.command_id WHERE c.uuid = ? ORDER BY r.id DESC LIMIT 1",
            (command_uuid,),
        ).fetchone()
        if row is None:
            return None
        status, chain, summary, received_at, answer = row
        return LastResult(
            status,
            json.loads(chain) if chain else None,
            json.loads(summary) if summary else {},
            received_at,
            None if answer is None else bytes(answer),
        )

    def of_device(
        self, udid: str, *, state: str | None, after: int, limit: int
    ) -> list[CommandListed]:
        """The commands of a device's channels after the cursor ``after``, oldest first, one
        more than ``limit`` when there is another page."""
        where, args = ["e.udid = ?", "c.id > ?"], [udid, after]
        if state is not None:
            where.append("c.state = ?")
            args.append(state)
        rows = self._conn.execute(
            f"SELECT c.id, {', '.join('c.' + f for f in COMMAND_FIELDS)}, e.user_id "
            "FROM commands AS c JOIN enrollments AS e ON e.id = c.enrollment_id "
            f"WHERE {' AND '.join(where)} ORDER BY c.id LIMIT ?",
            (*args, limit + 1),
        ).fetchall()
        fields = ("id", *COMMAND_FIELDS, "user_id")
        return [cast(CommandListed, dict(zip(fields, row, strict=True))) for row in rows]

    def count_by_state(self) -> dict[str, int]:
        return dict(self._conn.execute("SELECT state, count(*) FROM commands GROUP BY state"))


#: The columns of a command an admin reads.
COMMAND_FIELDS = (
    "uuid",
    "request_type",
    "state",
    "created_at",
    "sent_at",
    "result_at",
    "not_now_count",
)


@dataclass(frozen=True)
class LastResult:
    status: str
    error_chain: list[dict[str, Any]] | None
    summary: dict[str, Any]
    received_at: str
    raw: bytes | None
