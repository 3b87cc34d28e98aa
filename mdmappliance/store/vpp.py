"""VPP: users and licenses (by Apple's ids), the sync's tokens, and the service state."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from mdmappliance.store.family import Family


@dataclass(frozen=True)
class Tokens:
    batch_token: str | None
    since_token: str | None


@dataclass(frozen=True)
class VPPState:
    service_urls: dict[str, str] | None
    token_exp_date: str | None
    alert: str | None
    last_run_at: str | None
    last_success_at: str | None


def _int(value: Any) -> int | None:
    """Apple's numbers may come as strings (the spec says so); None for what is no SQLite
    integer."""
    if isinstance(value, bool):
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if -(2**63) <= number < 2**63 else None


class VPP(Family):
    __slots__ = ()

    def tokens(self, kind: str) -> Tokens:
        row = self._conn.execute(
            "SELECT batch_token, since_token FROM vpp_sync WHERE kind = ?", (kind,)
        ).fetchone()
        return Tokens(None, None) if row is None else Tokens(*row)

    def save_tokens(
        self, kind: str, batch_token: str | None, since_token: str | None, now: str
    ) -> None:
        self._conn.execute(
            "INSERT INTO vpp_sync (kind, batch_token, since_token, updated_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (kind) DO UPDATE SET batch_token = excluded.batch_token, since_token = "
            "excluded.since_token, updated_at = excluded.updated_at",
            (kind, batch_token, since_token, now),
        )

    def state(self) -> VPPState:
        row = self._conn.execute(
            "SELECT service_urls, token_exp_date, alert, last_run_at, last_success_at "
            "FROM vpp_state WHERE id = 1"
        ).fetchone()
        if row is None:
            return VPPState(None, None, None, None, None)
        urls, *rest = row
        return VPPState(json.loads(urls) if urls else None, *rest)

    def save_state(self, now: str, **fields: Any) -> None:
        """Set the given columns of the state row (service_urls as a dict)."""
        columns = ("service_urls", "token_exp_date", "alert", "last_run_at", "last_success_at")
        values = {k: v for k, v in fields.items() if k in columns}
        if "service_urls" in values and values["service_urls"] is not None:
            values["service_urls"] = json.dumps(values["service_urls"])
        self._conn.execute(
            "INSERT INTO vpp_state (id, updated_at) VALUES (1, ?) ON CONFLICT (id) DO NOTHING",
            (now,),
        )
        for column, value in values.items():
            self._conn.execute(
                f"UPDATE vpp_state SET {column} = ?, updated_at = ? WHERE id = 1", (value, now)
            )

    def upsert_user(self, user: dict[str, Any], now: str) -> bool:
        """Write one user as Apple sent it; False if it has no usable userId."""
        user_id = _int(user.get("userId"))
        if user_id is None:
            return False
        self._conn.execute(
            "INSERT INTO vpp_users (user_id, client_user_id, its_id_hash, status, email, "
            "invite_url, invite_code, data, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (user_id) DO UPDATE SET client_user_id = excluded.client_user_id, "
            "its_id_hash = excluded.its_id_hash, status = excluded.status, email = excluded.email, "
            "invite_url = CASE WHEN excluded.status = 'Registered' THEN coalesce("
            "excluded.invite_url, invite_url) END, invite_code = CASE WHEN excluded.status = "
            "'Registered' THEN coalesce(excluded.invite_code, invite_code) END, data = "
            "excluded.data, updated_at = excluded.updated_at",
            (
                user_id,
                _str(user.get("clientUserIdStr")),
                _str(user.get("itsIdHash")),
                _str(user.get("status")),
                _str(user.get("email")),
                _str(user.get("inviteUrl")),
                _str(user.get("inviteCode")),
                json.dumps(user),
                now,
            ),
        )
        return True

    def upsert_license(self, license_: dict[str, Any], now: str) -> bool:
        license_id = _int(license_.get("licenseId"))
        if license_id is None:
            return False
        found = license_.get("user")
        user: dict[str, Any] = found if isinstance(found, dict) else {}
        user_id = _int(license_.get("userId", user.get("userId")))
        client_user = _str(license_.get("clientUserIdStr", user.get("clientUserIdStr")))
        irrevocable = license_.get("isIrrevocable") in (True, "true", "True", 1, "1")
        self._conn.execute(
            "INSERT INTO vpp_licenses (license_id, adam_id, product_type_id, product_type_name, "
            "pricing_param, is_irrevocable, user_id, client_user_id, data, updated_at) VALUES "
            "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (license_id) DO UPDATE SET adam_id = "
            "excluded.adam_id, product_type_id = excluded.product_type_id, product_type_name = "
            "excluded.product_type_name, pricing_param = excluded.pricing_param, is_irrevocable = "
            "excluded.is_irrevocable, user_id = excluded.user_id, client_user_id = "
            "excluded.client_user_id, data = excluded.data, updated_at = excluded.updated_at",
            (
                license_id,
                _int(license_.get("adamId")),
                _int(license_.get("productTypeId")),
                _str(license_.get("productTypeName")),
                _str(license_.get("pricingParam")),
                int(irrevocable),
                user_id,
                client_user,
                json.dumps(license_),
                now,
            ),
        )
        return True

    def set_user_status(self, user_id: int, status: str, now: str) -> None:
        """A status Apple confirmed without sending the user back (retireVPPUserSrv)."""
        self._conn.execute(
            "UPDATE vpp_users SET status = ?, invite_url = NULL, invite_code = NULL, "
            "updated_at = ? WHERE user_id = ?",
            (status, now, user_id),
        )

    def set_license_user(
        self, license_id: int, user_id: int | None, client_user_id: str | None, now: str
    ) -> None:
        self._conn.execute(
            "UPDATE vpp_licenses SET user_id = ?, client_user_id = ?, updated_at = ? "
            "WHERE license_id = ?",
            (user_id, client_user_id, now, license_id),
        )

    def users(self, after: int, limit: int) -> list[dict[str, Any]]:
        rows = self._conn.execute(
            "SELECT user_id, client_user_id, its_id_hash, status, email, invite_url, updated_at "
            "FROM vpp_users WHERE user_id > ? ORDER BY user_id LIMIT ?",
            (after, limit),
        ).fetchall()
        keys = (
            "user_id",
            "client_user_id",
            "its_id_hash",
            "status",
            "email",
            "invite_url",
            "updated_at",
        )
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def licenses(self, after: int, limit: int, user_id: int | None = None) -> list[dict[str, Any]]:
        rows = self._conn.execute(
            "SELECT license_id, adam_id, product_type_name, pricing_param, is_irrevocable, "
            "user_id, client_user_id, updated_at FROM vpp_licenses WHERE license_id > ? "
            "AND (? IS NULL OR user_id = ?) ORDER BY license_id LIMIT ?",
            (after, user_id, user_id, limit),
        ).fetchall()
        keys = (
            "license_id",
            "adam_id",
            "product_type_name",
            "pricing_param",
            "is_irrevocable",
            "user_id",
            "client_user_id",
            "updated_at",
        )
        found = [dict(zip(keys, row, strict=True)) for row in rows]
        for item in found:
            item["is_irrevocable"] = bool(item["is_irrevocable"])
        return found

    def license(self, license_id: int) -> dict[str, Any] | None:
        found = self.licenses(license_id - 1, 1)
        return found[0] if found and found[0]["license_id"] == license_id else None

    def user_by_client_id(self, client_user_id: str) -> dict[str, Any] | None:
        row = self._conn.execute(
            "SELECT user_id FROM vpp_users WHERE client_user_id = ? AND status IN "
            "('Registered', 'Associated') ORDER BY user_id DESC LIMIT 1",
            (client_user_id,),
        ).fetchone()
        if row is None:
            return None
        found = self.users(int(row[0]) - 1, 1)
        return found[0] if found else None

    def count(self) -> dict[str, int]:
        users = self._conn.execute("SELECT count(*) FROM vpp_users").fetchone()[0]
        licenses = self._conn.execute("SELECT count(*) FROM vpp_licenses").fetchone()[0]
        return {"users": int(users), "licenses": int(licenses)}


def _str(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)
