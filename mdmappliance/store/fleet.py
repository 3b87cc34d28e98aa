"""The fleet as the admin side reads it: devices with their device channel, one device in
full, and counts by state. Pages use the enrollment id as cursor: stable while rows are
added, and cheap with the primary key."""

from __future__ import annotations

import json
from typing import Any, TypedDict, cast

from mdmappliance.store.family import Family
from mdmappliance.store.inventory import Inventory

#: A device as listed: (column, field name).
_DEVICE = (
    ("e.id", "enrollment_id"),
    ("d.udid", "udid"),
    ("d.serial_number", "serial_number"),
    ("d.device_name", "device_name"),
    ("d.model", "model"),
    ("d.product_name", "product_name"),
    ("d.platform", "platform"),
    ("d.os_version", "os_version"),
    ("d.build_version", "build_version"),
    ("d.supervised", "supervised"),
    ("e.state", "state"),
    ("e.enrolled_at", "enrolled_at"),
    ("e.last_seen", "last_seen"),
    ("e.inactive_since", "inactive_since"),
    ("e.push_status", "push_status"),
    ("e.token_valid", "push_token_valid"),
)
DEVICE_FIELDS = tuple(name for _, name in _DEVICE)
_DEVICE_COLUMNS = ", ".join(column for column, _ in _DEVICE)
_JOINED = "FROM enrollments AS e JOIN devices AS d ON d.udid = e.udid"
#: An enrolled channel not heard from for ``[apns] inactive_days`` reads as "inactive".
_STATE = (
    "CASE WHEN e.inactive_since IS NOT NULL AND e.state = 'enrolled' THEN 'inactive' "
    "ELSE e.state END"
)


class DeviceSummary(TypedDict):
    """A device channel as listed (``state`` says "inactive" for a quiet enrolled one)."""

    enrollment_id: int
    udid: str
    serial_number: str | None
    device_name: str | None
    model: str | None
    product_name: str | None
    platform: str | None
    os_version: str | None
    build_version: str | None
    supervised: bool | None
    state: str
    enrolled_at: str | None
    last_seen: str | None
    inactive_since: str | None
    push_status: str | None
    push_token_valid: bool | None


class DeviceDetail(DeviceSummary):
    """One device in full: facts, identity, inventory by kind, user channels."""

    facts: dict[str, Any]
    facts_reported_at: str | None
    access_rights: int | None
    unlock_token_escrowed: bool
    #: Known by an EnrollmentID (User Enrollment), not a UDID.
    user_enrollment: bool
    bootstrap_token_escrowed: bool
    identity: dict[str, Any] | None
    inventory: dict[str, dict[str, Any]]
    user_channels: list[dict[str, Any]]


def _device(row: tuple[Any, ...]) -> DeviceSummary:
    device: dict[str, Any] = dict(zip(DEVICE_FIELDS, row, strict=True))
    for key in ("supervised", "push_token_valid"):
        if device[key] is not None:
            device[key] = bool(device[key])
    if device["inactive_since"] and device["state"] == "enrolled":
        device["state"] = "inactive"
    return cast(DeviceSummary, device)


class Fleet(Family):
    __slots__ = ()

    def devices(
        self,
        *,
        state: str | None = None,
        platform: str | None = None,
        serial: str | None = None,
        after: int = 0,
        limit: int = 100,
    ) -> list[DeviceSummary]:
        """Device channels, filtered, by enrollment id after ``after``: up to ``limit + 1``
        (one more when there is another page)."""
        where = ["e.user_id = ''", "e.id > ?"]
        args: list[Any] = [after]
        if state is not None:
            where.append(f"{_STATE} = ?")
            args.append(state)
        if platform is not None:
            where.append("d.platform = ?")
            args.append(platform)
        if serial is not None:
            where.append("d.serial_number = ?")
            args.append(serial)
        rows = self._conn.execute(
            f"SELECT {_DEVICE_COLUMNS} {_JOINED} WHERE {' AND '.join(where)} ORDER BY e.id LIMIT ?",
            (*args, limit + 1),
        ).fetchall()
        return [_device(row) for row in rows]

    def device(self, udid: str) -> DeviceDetail | None:
        """One device: its enrollment, identity, facts, inventory and user channels."""
        row = self._conn.execute(
            f"SELECT {_DEVICE_COLUMNS}, d.facts, d.facts_at, e.access_rights, "
            "e.unlock_token_sealed IS NOT NULL, d.user_enrollment, "
            f"e.bootstrap_token_sealed IS NOT NULL {_JOINED} WHERE e.udid = ? AND e.user_id = ''",
            (udid,),
        ).fetchone()
        if row is None:
            return None
        summary = _device(row[: len(DEVICE_FIELDS)])
        facts, facts_at, access_rights, escrowed, user_enrollment, bootstrap = row[
            len(DEVICE_FIELDS) :
        ]
        identity = self._conn.execute(
            "SELECT subject, issuer, not_after, revoked_at FROM identities WHERE udid = ? "
            "AND current = 1",
            (udid,),
        ).fetchone()
        users = self._conn.execute(
            "SELECT id, user_id, user_short_name, state, last_seen FROM enrollments "
            "WHERE udid = ? AND user_id != '' ORDER BY id",
            (udid,),
        ).fetchall()
        return DeviceDetail(
            **summary,
            facts=json.loads(facts),
            facts_reported_at=facts_at,
            access_rights=access_rights,
            unlock_token_escrowed=bool(escrowed),
            user_enrollment=bool(user_enrollment),
            bootstrap_token_escrowed=bool(bootstrap),
            identity=None
            if identity is None
            else dict(zip(("subject", "issuer", "not_after", "revoked_at"), identity, strict=True)),
            inventory=Inventory(self._conn).of(summary["enrollment_id"]),
            user_channels=[
                dict(
                    zip(
                        ("enrollment_id", "user_id", "user_short_name", "state", "last_seen"),
                        user,
                        strict=True,
                    )
                )
                for user in users
            ],
        )

    def enrollment_counts(self) -> dict[str, int]:
        """Enrollments (device and user channels) by state, "inactive" apart."""
        return dict(
            self._conn.execute(f"SELECT {_STATE}, count(*) FROM enrollments AS e GROUP BY 1")
        )
