"""SCEP challenges (only each one's SHA-256 is kept) and the certificates issued per SCEP
transaction."""

from __future__ import annotations

from dataclasses import dataclass

from mdmappliance.store.family import Family


@dataclass(frozen=True)
class Challenge:
    """What a challenge is for: a link's first identity, or the renewal of one."""

    token_id: int | None
    renews_sha256: str | None
    udid: str | None
    subject: str
    access_rights: int | None
    expires_at: str
    used_at: str | None


@dataclass(frozen=True)
class RenewableIdentity:
    """What decides whether an identity may sign a RenewalReq."""

    udid: str | None
    access_rights: int | None
    bound_udid: str | None
    current: bool
    revoked_at: str | None
    state: str | None


class SCEP(Family):
    __slots__ = ()

    def add_challenge(
        self,
        challenge_sha256: str,
        *,
        subject: str,
        created_at: str,
        expires_at: str,
        token_id: int | None = None,
        renews_sha256: str | None = None,
        udid: str | None = None,
        access_rights: int | None = None,
    ) -> None:
        self._conn.execute(
            "INSERT INTO scep_challenges (challenge_sha256, token_id, renews_sha256, udid, "
            "subject, access_rights, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                challenge_sha256,
                token_id,
                renews_sha256,
                udid,
                subject,
                access_rights,
                created_at,
                expires_at,
            ),
        )

    def challenge(self, challenge_sha256: str) -> Challenge | None:
        row = self._conn.execute(
            "SELECT token_id, renews_sha256, udid, subject, access_rights, expires_at, used_at "
            "FROM scep_challenges WHERE challenge_sha256 = ?",
            (challenge_sha256,),
        ).fetchone()
        return None if row is None else Challenge(*row)

    def use_challenge(self, challenge_sha256: str, issued_sha256: str, now: str) -> bool:
        """Consume an unused challenge; False if it was used meanwhile."""
        cursor = self._conn.execute(
            "UPDATE scep_challenges SET used_at = ?, issued_sha256 = ? "
            "WHERE challenge_sha256 = ? AND used_at IS NULL",
            (now, issued_sha256, challenge_sha256),
        )
        return bool(cursor.rowcount)

    def issued_in(self, transaction_id: str, signer_sha256: str) -> bytes | None:
        """The certificate (DER) this transaction already got, if any."""
        row = self._conn.execute(
            "SELECT certificate FROM scep_transactions WHERE transaction_id = ? "
            "AND signer_sha256 = ?",
            (transaction_id, signer_sha256),
        ).fetchone()
        return None if row is None else bytes(row[0])

    def record_transaction(
        self,
        transaction_id: str,
        signer_sha256: str,
        certificate: bytes,
        issued_sha256: str,
        now: str,
    ) -> None:
        self._conn.execute(
            "INSERT INTO scep_transactions (transaction_id, signer_sha256, certificate, "
            "issued_sha256, created_at) VALUES (?, ?, ?, ?, ?)",
            (transaction_id, signer_sha256, certificate, issued_sha256, now),
        )

    def renewable(self, sha256: str) -> RenewableIdentity | None:
        """An identity this appliance issued, with its binding and device state; None if it
        did not issue it."""
        row = self._conn.execute(
            "SELECT s.udid, s.access_rights, b.udid, coalesce(b.current, 0), b.revoked_at, "
            "e.state FROM issued_identities AS s "
            "LEFT JOIN identities AS b ON b.sha256 = s.sha256 "
            "LEFT JOIN enrollments AS e ON e.udid = b.udid AND e.user_id = '' "
            "WHERE s.sha256 = ?",
            (sha256,),
        ).fetchone()
        if row is None:
            return None
        udid, rights, bound, current, revoked, state = row
        return RenewableIdentity(udid, rights, bound, bool(current), revoked, state)

    def prune(self, before: str, limit: int) -> int:
        """Forget challenges that expired before ``before`` (used or not) and transactions
        older than that, at most ``limit`` of each; how many rows went."""
        challenges = self._conn.execute(
            "DELETE FROM scep_challenges WHERE rowid IN (SELECT rowid FROM scep_challenges "
            "WHERE expires_at < ? LIMIT ?)",
            (before, limit),
        )
        transactions = self._conn.execute(
            "DELETE FROM scep_transactions WHERE rowid IN (SELECT rowid FROM scep_transactions "
            "WHERE created_at < ? LIMIT ?)",
            (before, limit),
        )
        return max(challenges.rowcount, transactions.rowcount)
