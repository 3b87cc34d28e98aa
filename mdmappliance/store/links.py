"""Enrollment links (only each token's SHA-256 is kept), the identities issued through them
or as renewals, and the renewals queued."""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509

from mdmappliance.core.timestamps import utc_timestamp
from mdmappliance.pki.identity import DeviceIdentity
from mdmappliance.store.family import Family


@dataclass(frozen=True)
class Link:
    id: int
    note: str
    created_by: str
    created_at: str
    expires_at: str
    used_at: str | None
    revoked_at: str | None

    def status(self, now: str) -> str:
        if self.revoked_at:
            return "revoked"
        if self.used_at:
            return "used"
        if self.expires_at <= now:
            return "expired"
        return "unused"


@dataclass(frozen=True)
class LinkUse:
    """What decides whether a link can be used now."""

    id: int
    expires_at: str
    used_at: str | None
    revoked_at: str | None


@dataclass(frozen=True)
class IssuedIdentity:
    sha256: str
    subject: str
    serial: str
    not_after: str
    token_id: int | None = None
    renews: str | None = None
    udid: str | None = None
    access_rights: int | None = None


class Links(Family):
    __slots__ = ()

    def create(
        self, token_sha256: str, note: str, actor: str, created_at: str, expires_at: str
    ) -> int:
        cursor = self._conn.execute(
            "INSERT INTO enrollment_tokens (token_sha256, note, created_by, created_at, "
            "expires_at) VALUES (?, ?, ?, ?, ?)",
            (token_sha256, note, actor, created_at, expires_at),
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def all(self) -> list[Link]:
        rows = self._conn.execute(
            "SELECT id, note, created_by, created_at, expires_at, used_at, revoked_at "
            "FROM enrollment_tokens ORDER BY id"
        ).fetchall()
        return [Link(*row) for row in rows]

    def revoke(self, link_id: int, now: str) -> bool:
        """Revoke a link that is neither used nor revoked; False otherwise (or unknown)."""
        cursor = self._conn.execute(
            "UPDATE enrollment_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL "
            "AND used_at IS NULL",
            (now, link_id),
        )
        return bool(cursor.rowcount)

    def find(self, token_sha256: str) -> LinkUse | None:
        row = self._conn.execute(
            "SELECT id, expires_at, used_at, revoked_at FROM enrollment_tokens "
            "WHERE token_sha256 = ?",
            (token_sha256,),
        ).fetchone()
        return None if row is None else LinkUse(*row)

    def mark_used(self, link_id: int, now: str, peer: str) -> None:
        self._conn.execute(
            "UPDATE enrollment_tokens SET used_at = ?, used_by = ? WHERE id = ?",
            (now, peer, link_id),
        )

    def record_issued(self, issued: IssuedIdentity, now: str) -> None:
        self._conn.execute(
            "INSERT INTO issued_identities (sha256, token_id, renews_sha256, udid, subject, "
            "serial, not_after, issued_at, access_rights) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                issued.sha256,
                issued.token_id,
                issued.renews,
                issued.udid,
                issued.subject,
                issued.serial,
                issued.not_after,
                now,
                issued.access_rights,
            ),
        )

    def record_certificate(
        self,
        certificate: x509.Certificate,
        now: str,
        *,
        token_id: int | None = None,
        renews: str | None = None,
        udid: str | None = None,
        access_rights: int | None = None,
    ) -> str:
        """Remember an identity the appliance issued (through a link, by SCEP, or as a
        renewal); its SHA-256."""
        sha256 = DeviceIdentity.of(certificate, "issued").sha256
        self.record_issued(
            IssuedIdentity(
                sha256=sha256,
                subject=certificate.subject.rfc4514_string(),
                serial=format(certificate.serial_number, "x"),
                not_after=utc_timestamp(certificate.not_valid_after_utc),
                token_id=token_id,
                renews=renews,
                udid=udid,
                access_rights=access_rights,
            ),
            now,
        )
        return sha256

    def issued_udid(self, sha256: str) -> str | None:
        """The UDID an identity was issued for, when it was issued for one."""
        row = self._conn.execute(
            "SELECT udid FROM issued_identities WHERE sha256 = ?", (sha256,)
        ).fetchone()
        return None if row is None or row[0] is None else str(row[0])

    def issued_for(self, sha256: str, udid: str) -> bool:
        """The appliance issued this certificate for this device (a renewal)."""
        row = self._conn.execute(
            "SELECT 1 FROM issued_identities WHERE sha256 = ? AND udid = ?", (sha256, udid)
        ).fetchone()
        return row is not None

    def renewal_issued(self, old_sha256: str, new_sha256: str) -> None:
        """The identity a SCEP renewal got (unknown when its InstallProfile was queued)."""
        self._conn.execute(
            "UPDATE renewals SET new_sha256 = ? WHERE old_sha256 = ?", (new_sha256, old_sha256)
        )

    def record_renewal(
        self, old_sha256: str, new_sha256: str | None, udid: str, command_uuid: str, now: str
    ) -> None:
        self._conn.execute(
            "INSERT INTO renewals (old_sha256, new_sha256, udid, command_uuid, queued_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (old_sha256, new_sha256, udid, command_uuid, now),
        )
