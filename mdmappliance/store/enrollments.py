"""Devices, their enrollments (the device channel and user channels) and the identity
certificates bound to them.

What the device channel reads and writes on every request, what the lifecycle jobs (renewal,
retirement, inactivity) need, and the lookups by UDID; the admin side's listings are in
``fleet``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mdmappliance.store.family import Family, id_list

#: The devices columns that device facts may set (anything else is refused, so no caller
#: string ever becomes SQL).
DEVICE_COLUMNS = frozenset(
    {
        "serial_number",
        "model",
        "model_name",
        "product_name",
        "device_name",
        "os_version",
        "build_version",
        "imei",
        "meid",
        "supervised",
        "activation_lock",
        "platform",
    }
)


def _columns(names: Sequence[str]) -> Sequence[str]:
    unknown = set(names) - DEVICE_COLUMNS
    if unknown:
        raise ValueError(f"not device columns: {', '.join(sorted(unknown))}")
    return names


@dataclass(frozen=True)
class Enrollment:
    id: int
    udid: str
    user_id: str
    state: str
    topic: str
    auth_token_sha256: str | None
    #: When the enrollment was last heard from, and since when it counts as inactive.
    last_seen: str | None = None
    inactive_since: str | None = None


@dataclass(frozen=True)
class BoundIdentity:
    """A device channel and the certificate presented for it, as ``bound_check`` finds them:
    ``device`` is None for an unknown UDID; ``owner`` is the UDID the certificate is bound to
    (None: never seen), ``current`` whether it is that device's current one;
    ``user_enrollment`` whether the device is known by an EnrollmentID."""

    device: Enrollment | None
    owner: str | None
    current: bool
    revoked_at: str | None
    user_enrollment: bool = False


@dataclass(frozen=True)
class IdentityOwner:
    udid: str
    revoked_at: str | None


@dataclass(frozen=True)
class BoundCertificate:
    """An identity certificate to bind, as the identities table keeps it."""

    sha256: str
    subject: str
    issuer: str
    serial: str
    not_before: str
    not_after: str


@dataclass(frozen=True)
class TokenUpdateRow:
    """What a TokenUpdate sets on its enrollment."""

    topic: str
    token: bytes
    push_magic: str
    unlock_token_sealed: bytes | None
    not_on_console: bool | None
    awaiting_configuration: bool | None


@dataclass(frozen=True)
class DueIdentity:
    udid: str
    enrollment_id: int
    sha256: str
    not_after: str
    #: The MDM payload's ServerCapabilities the device enrolled with (a renewal keeps them).
    server_capabilities: tuple[str, ...] = ()


@dataclass(frozen=True)
class Stale:
    enrollment_id: int
    udid: str
    user_id: str
    last_seen: str


_ENROLLMENT = "id, udid, user_id, state, topic, auth_token_sha256, last_seen, inactive_since"


class Enrollments(Family):
    __slots__ = ()

    # Reading
    def get(self, udid: str, user_id: str = "") -> Enrollment | None:
        row = self._conn.execute(
            f"SELECT {_ENROLLMENT} FROM enrollments WHERE udid = ? AND user_id = ?",
            (udid, user_id),
        ).fetchone()
        return None if row is None else Enrollment(*row)

    def current_identity(self, udid: str) -> str | None:
        row = self._conn.execute(
            "SELECT sha256 FROM identities WHERE udid = ? AND current = 1", (udid,)
        ).fetchone()
        return None if row is None else str(row[0])

    def identity_owner(self, sha256: str) -> IdentityOwner | None:
        row = self._conn.execute(
            "SELECT udid, revoked_at FROM identities WHERE sha256 = ?", (sha256,)
        ).fetchone()
        return None if row is None else IdentityOwner(*row)

    def bound_check(self, sha256: str, udid: str) -> BoundIdentity:
        """The device channel of ``udid`` and what is known of the certificate ``sha256``,
        in one statement (this runs on every device request)."""
        row = self._conn.execute(
            "SELECT e.id, e.udid, e.user_id, e.state, e.topic, e.auth_token_sha256, e.last_seen, "
            "e.inactive_since, i.udid, i.current, i.revoked_at, d.user_enrollment "
            "FROM (SELECT ? AS sha256) AS presented "
            "LEFT JOIN enrollments AS e ON e.udid = ? AND e.user_id = '' "
            "LEFT JOIN devices AS d ON d.udid = e.udid "
            "LEFT JOIN identities AS i ON i.sha256 = presented.sha256",
            (sha256, udid),
        ).fetchone()
        device = Enrollment(*row[:8]) if row[0] is not None else None
        return BoundIdentity(device, row[8], row[9] == 1, row[10], row[11] == 1)

    def user_enrollment(self, udid: str) -> bool | None:
        """Whether the device is known by an EnrollmentID (None: no such device)."""
        row = self._conn.execute(
            "SELECT user_enrollment FROM devices WHERE udid = ?", (udid,)
        ).fetchone()
        return None if row is None else row[0] == 1

    def bootstrap_token_sealed(self, enrollment_id: int) -> bytes | None:
        row = self._conn.execute(
            "SELECT bootstrap_token_sealed FROM enrollments WHERE id = ?", (enrollment_id,)
        ).fetchone()
        return None if row is None or row[0] is None else bytes(row[0])

    def server_capabilities(self, udid: str) -> tuple[str, ...] | None:
        """The ServerCapabilities the device channel enrolled with (None: no such device)."""
        row = self._conn.execute(
            "SELECT server_capabilities FROM enrollments WHERE udid = ? AND user_id = ''",
            (udid,),
        ).fetchone()
        return None if row is None else tuple(json.loads(row[0]))

    def unlock_token_sealed(self, udid: str) -> bytes | None:
        row = self._conn.execute(
            "SELECT unlock_token_sealed FROM enrollments WHERE udid = ? AND user_id = ''",
            (udid,),
        ).fetchone()
        return None if row is None or row[0] is None else bytes(row[0])

    def topics_in_use(self) -> list[str]:
        """The topics current enrollments listen on (checked-out and retired ones excluded)."""
        rows = self._conn.execute(
            "SELECT DISTINCT topic FROM enrollments WHERE state IN ('authenticated', "
            "'enrolled') ORDER BY topic"
        ).fetchall()
        return [row[0] for row in rows]

    def resolve(self, udids: Sequence[str], user_id: str = "") -> dict[str, int]:
        """Enrollment ids of the device channels (or ``user_id``'s channels) of ``udids``."""
        rows = self._conn.execute(
            "SELECT e.udid, e.id FROM (SELECT DISTINCT value AS udid FROM json_each(?)) AS "
            "wanted JOIN enrollments AS e ON e.udid = wanted.udid AND e.user_id = ?",
            (id_list(udids), user_id),
        ).fetchall()
        return {udid: enrollment_id for udid, enrollment_id in rows}

    def udids_of(self, enrollment_ids: Sequence[int]) -> dict[int, str]:
        rows = self._conn.execute(
            "SELECT id, udid FROM enrollments WHERE id IN (SELECT value FROM json_each(?))",
            (id_list(enrollment_ids),),
        ).fetchall()
        return {row[0]: row[1] for row in rows}

    def all_enrolled(self) -> list[int]:
        """Every enrolled device channel (the target of "all devices")."""
        rows = self._conn.execute(
            "SELECT id FROM enrollments WHERE user_id = '' AND state = 'enrolled' ORDER BY id"
        ).fetchall()
        return [row[0] for row in rows]

    # Check-in
    def upsert_device(
        self, udid: str, facts: Mapping[str, str], now: str, user_enrollment: bool = False
    ) -> None:
        """The device record with the facts an Authenticate carries (whether it is a User
        Enrollment is set when it is created: the device channel refuses a change)."""
        columns = _columns(list(facts))
        names = "".join(f", {c}" for c in columns)
        updates = ", ".join(
            [f"{c} = excluded.{c}" for c in columns] + ["updated_at = excluded.updated_at"]
        )
        self._conn.execute(
            f"INSERT INTO devices (udid, user_enrollment, first_seen, updated_at{names}) "
            f"VALUES (?, ?, ?, ?{', ?' * len(columns)}) ON CONFLICT (udid) DO UPDATE SET "
            f"{updates}",
            (udid, int(user_enrollment), now, now, *facts.values()),
        )

    def set_platform(self, udid: str, platform: str | None) -> None:
        self._conn.execute(
            "UPDATE devices SET platform = coalesce(?, platform) WHERE udid = ?", (platform, udid)
        )

    def authenticate(
        self, udid: str, topic: str, now: str, server_capabilities: Sequence[str]
    ) -> None:
        """Create or refresh the device channel: authenticated, not pushable until its
        first TokenUpdate.

        A new enrollment (a new device, or one that had checked out or was retired) records
        the ``server_capabilities`` of the profile it enrolled with and starts without a
        Bootstrap Token; a still-enrolled device keeps both."""
        self._conn.execute(
            "INSERT INTO enrollments (udid, user_id, topic, state, created_at, updated_at, "
            "last_seen, server_capabilities) VALUES (?, '', ?, 'authenticated', ?, ?, ?, ?) "
            "ON CONFLICT (udid, user_id) DO UPDATE SET "
            "server_capabilities = CASE WHEN state IN ('checked_out', 'retired') "
            "THEN excluded.server_capabilities ELSE server_capabilities END, "
            "bootstrap_token_sealed = CASE WHEN state IN ('checked_out', 'retired') "
            "THEN NULL ELSE bootstrap_token_sealed END, "
            "bootstrap_token_at = CASE WHEN state IN ('checked_out', 'retired') "
            "THEN NULL ELSE bootstrap_token_at END, "
            "topic = excluded.topic, state = 'authenticated', token_valid = 0, "
            "checked_out_at = NULL, updated_at = excluded.updated_at, "
            "last_seen = excluded.last_seen",
            (udid, topic, now, now, now, json.dumps(list(server_capabilities))),
        )

    def adopt_issued_rights(self, udid: str, sha256: str) -> None:
        """The AccessRights of the profile that carried this identity, if the appliance
        issued it."""
        self._conn.execute(
            "UPDATE enrollments SET access_rights = (SELECT access_rights FROM "
            "issued_identities WHERE sha256 = ?) WHERE udid = ? AND user_id = ''",
            (sha256, udid),
        )

    def add_user_channel(
        self,
        udid: str,
        user_id: str,
        short_name: str | None,
        long_name: str | None,
        topic: str,
        now: str,
    ) -> None:
        """A user channel (kept if it exists; its names are refreshed when given)."""
        self._conn.execute(
            "INSERT INTO enrollments (udid, user_id, user_short_name, user_long_name, topic, "
            "state, created_at, updated_at) VALUES (?, ?, ?, ?, ?, 'authenticated', ?, ?) "
            "ON CONFLICT (udid, user_id) DO UPDATE SET "
            "user_short_name = coalesce(excluded.user_short_name, user_short_name), "
            "user_long_name = coalesce(excluded.user_long_name, user_long_name)",
            (udid, user_id, short_name, long_name, topic, now, now),
        )

    def token_update(self, enrollment_id: int, update: TokenUpdateRow, now: str) -> None:
        """Enrolled, with a valid push token (the UnlockToken and flags kept when absent)."""
        self._conn.execute(
            "UPDATE enrollments SET topic = ?, push_token = ?, push_magic = ?, token_valid = 1, "
            "token_updated_at = ?, unlock_token_sealed = coalesce(?, unlock_token_sealed), "
            "not_on_console = coalesce(?, not_on_console), "
            "awaiting_configuration = coalesce(?, awaiting_configuration), state = 'enrolled', "
            "enrolled_at = coalesce(enrolled_at, ?), checked_out_at = NULL, updated_at = ?, "
            "last_seen = ? WHERE id = ?",
            (
                update.topic,
                update.token,
                update.push_magic,
                now,
                update.unlock_token_sealed,
                update.not_on_console,
                update.awaiting_configuration,
                now,
                now,
                now,
                enrollment_id,
            ),
        )

    def check_out(self, udid: str, user_id: str | None, now: str) -> None:
        """Unenrolled, no more pushes: one user channel, or (``user_id`` None) the device
        channel and all its users."""
        where, args = (
            ("udid = ?", (udid,))
            if user_id is None
            else (
                "udid = ? AND user_id = ?",
                (udid, user_id),
            )
        )
        self._conn.execute(
            "UPDATE enrollments SET state = 'checked_out', token_valid = 0, checked_out_at = ?, "
            "bootstrap_token_sealed = NULL, bootstrap_token_at = NULL, "
            f"updated_at = ?, last_seen = ? WHERE {where}",
            (now, now, now, *args),
        )

    def set_bootstrap_token(self, enrollment_id: int, sealed: bytes | None, now: str) -> None:
        """Escrow the sealed Bootstrap Token (None: remove it)."""
        self._conn.execute(
            "UPDATE enrollments SET bootstrap_token_sealed = ?, bootstrap_token_at = ?, "
            "updated_at = ? WHERE id = ?",
            (sealed, None if sealed is None else now, now, enrollment_id),
        )

    def set_awaiting_configuration(
        self, enrollment_id: int, awaiting: bool | None, now: str
    ) -> None:
        """Record AwaitingConfiguration as TokenUpdate does (kept when absent)."""
        if awaiting is None:
            return
        self._conn.execute(
            "UPDATE enrollments SET awaiting_configuration = ?, updated_at = ? WHERE id = ?",
            (awaiting, now, enrollment_id),
        )

    def set_auth_token(
        self,
        udid: str,
        user_id: str,
        short_name: str,
        long_name: str | None,
        topic: str,
        token_sha256: str,
        now: str,
    ) -> None:
        """The AuthToken a user channel must present from now on (the channel is created if
        it does not exist yet)."""
        self._conn.execute(
            "INSERT INTO enrollments (udid, user_id, user_short_name, user_long_name, topic, "
            "state, auth_token_sha256, created_at, updated_at) VALUES (?, ?, ?, ?, ?, "
            "'authenticated', ?, ?, ?) ON CONFLICT (udid, user_id) DO UPDATE SET "
            "auth_token_sha256 = excluded.auth_token_sha256, updated_at = excluded.updated_at",
            (udid, user_id, short_name, long_name, topic, token_sha256, now, now),
        )

    def bind_identity(self, udid: str, cert: BoundCertificate, now: str) -> None:
        """Make ``cert`` the one bound to ``udid`` (the previous one stays, not current)."""
        self._conn.execute(
            "UPDATE identities SET current = 0 WHERE udid = ? AND current = 1", (udid,)
        )
        self._conn.execute(
            "INSERT INTO identities (sha256, udid, subject, issuer, serial, not_before, "
            "not_after, bound_at, current) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1) "
            "ON CONFLICT (sha256) DO UPDATE SET current = 1, bound_at = excluded.bound_at",
            (
                cert.sha256,
                udid,
                cert.subject,
                cert.issuer,
                cert.serial,
                cert.not_before,
                cert.not_after,
                now,
            ),
        )

    def touch(self, enrollment_id: int, now: str) -> str | None:
        """Record that the enrollment was just heard from; its UDID if that made an inactive
        one active again (one statement in the common case)."""
        active = self._conn.execute(
            "UPDATE enrollments SET last_seen = ? WHERE id = ? AND inactive_since IS NULL",
            (now, enrollment_id),
        )
        if active.rowcount:
            return None
        woke = self._conn.execute(
            "UPDATE enrollments SET last_seen = ?, inactive_since = NULL WHERE id = ? "
            "RETURNING udid",
            (now, enrollment_id),
        ).fetchone()
        return None if woke is None else str(woke[0])

    # Lifecycle
    def revoke_identities(self, udid: str, now: str) -> int:
        """Deny every identity bound to ``udid`` (and remember whose issued ones they were);
        how many were revoked."""
        cursor = self._conn.execute(
            "UPDATE identities SET revoked_at = ? WHERE udid = ? AND revoked_at IS NULL",
            (now, udid),
        )
        self._conn.execute(
            "UPDATE issued_identities SET udid = coalesce(udid, ?) WHERE sha256 IN "
            "(SELECT sha256 FROM identities WHERE udid = ?)",
            (udid, udid),
        )
        return cursor.rowcount

    def set_retire_command(self, enrollment_id: int, command_uuid: str) -> None:
        self._conn.execute(
            "UPDATE enrollments SET retire_command_uuid = ? WHERE id = ?",
            (command_uuid, enrollment_id),
        )

    def is_retire_command(self, udid: str, command_uuid: str) -> bool:
        """``command_uuid`` is the RemoveProfile that retires this device."""
        row = self._conn.execute(
            "SELECT 1 FROM enrollments WHERE udid = ? AND user_id = '' AND retire_command_uuid = ?",
            (udid, command_uuid),
        ).fetchone()
        return row is not None

    def mark_retired(self, udid: str, now: str) -> None:
        self._conn.execute(
            "UPDATE enrollments SET state = 'retired', token_valid = 0, updated_at = ?, "
            "bootstrap_token_sealed = NULL, bootstrap_token_at = NULL WHERE udid = ?",
            (now, udid),
        )

    def identities_due(self, cutoff: str, limit: int = 100) -> list[DueIdentity]:
        """Bound, unrevoked identities of enrolled devices expiring before ``cutoff`` that
        have no renewal queued yet."""
        rows = self._conn.execute(
            "SELECT i.udid, e.id, i.sha256, i.not_after, e.server_capabilities "
            "FROM identities AS i "
            "JOIN enrollments AS e ON e.udid = i.udid AND e.user_id = '' "
            "WHERE i.current = 1 AND i.revoked_at IS NULL AND e.state = 'enrolled' "
            "AND e.retire_command_uuid IS NULL AND i.not_after <= ? "
            "AND NOT EXISTS (SELECT 1 FROM renewals AS r WHERE r.old_sha256 = i.sha256) "
            "ORDER BY i.not_after LIMIT ?",
            (cutoff, limit),
        ).fetchall()
        return [
            DueIdentity(udid, enrollment_id, sha256, not_after, tuple(json.loads(capabilities)))
            for udid, enrollment_id, sha256, not_after, capabilities in rows
        ]

    # Inactivity
    def quiet(self, seen_before: str, after_id: int, limit: int) -> list[int]:
        """Enrolled channels with a valid token, silent since ``seen_before`` and not pushed
        since then either; a page at a time."""
        rows = self._conn.execute(
            "SELECT id FROM enrollments WHERE state = 'enrolled' AND token_valid = 1 "
            "AND last_seen < ? AND (push_at IS NULL OR push_at < ?) AND id > ? ORDER BY id "
            "LIMIT ?",
            (seen_before, seen_before, after_id, limit),
        ).fetchall()
        return [row[0] for row in rows]

    def stale(self, seen_before: str, limit: int) -> list[Stale]:
        """Enrolled channels not yet marked inactive, silent since ``seen_before``."""
        rows = self._conn.execute(
            "SELECT id, udid, user_id, last_seen FROM enrollments WHERE state = 'enrolled' "
            "AND inactive_since IS NULL AND last_seen < ? LIMIT ?",
            (seen_before, limit),
        ).fetchall()
        return [Stale(*row) for row in rows]

    def reserve_result_bytes(self, enrollment_id: int, size: int, limit: int) -> bool:
        """Count ``size`` more bytes of raw answers against the enrollment, if that keeps it
        within ``limit``; False (and nothing counted) if it would not."""
        cursor = self._conn.execute(
            "UPDATE enrollments SET result_bytes = result_bytes + ? WHERE id = ? "
            "AND result_bytes + ? <= ?",
            (size, enrollment_id, size, limit),
        )
        return bool(cursor.rowcount)

    def mark_inactive(self, enrollment_id: int, now: str) -> None:
        self._conn.execute(
            "UPDATE enrollments SET inactive_since = ? WHERE id = ?", (now, enrollment_id)
        )

    # Results
    def update_facts(
        self, udid: str, facts: Mapping[str, Any], columns: Mapping[str, Any], now: str
    ) -> None:
        """Merge ``facts`` (JSON) into the device's facts and set the device ``columns``."""
        names = _columns(list(columns))
        assignments = "".join(f", {column} = ?" for column in names)
        self._conn.execute(
            "UPDATE devices SET facts = json_patch(facts, ?), facts_at = ?, updated_at = ?"
            f"{assignments} WHERE udid = ?",
            (json.dumps(facts), now, now, *columns.values(), udid),
        )
