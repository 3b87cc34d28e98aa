-- 0003: enrollment links, the identities handed out in enrollment profiles, identity
-- revocation, and the renewals queued for identities about to expire.

-- One-time enrollment links. Only a hash of the token is kept: a database copy cannot
-- be used to enroll.
CREATE TABLE enrollment_tokens (
    id              INTEGER PRIMARY KEY,
    token_sha256    TEXT NOT NULL UNIQUE,
    note            TEXT NOT NULL DEFAULT '',
    created_by      TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    expires_at      TEXT NOT NULL,
    used_at         TEXT,
    used_by         TEXT,
    revoked_at      TEXT
) STRICT;

-- Every device identity the appliance issued: from a link, or as a renewal of another.
CREATE TABLE issued_identities (
    sha256          TEXT PRIMARY KEY NOT NULL,
    token_id        INTEGER REFERENCES enrollment_tokens (id),
    renews_sha256   TEXT,
    udid            TEXT,
    subject         TEXT NOT NULL,
    serial          TEXT NOT NULL,
    not_after       TEXT NOT NULL,
    issued_at       TEXT NOT NULL
) STRICT;

-- A revoked certificate is refused on every listener, whatever it is bound to.
ALTER TABLE identities ADD COLUMN revoked_at TEXT;

-- Renewals queued by the renewal job: one per expiring identity.
CREATE TABLE renewals (
    old_sha256      TEXT PRIMARY KEY NOT NULL,
    new_sha256      TEXT NOT NULL,
    udid            TEXT NOT NULL,
    command_uuid    TEXT NOT NULL,
    queued_at       TEXT NOT NULL
) STRICT;

-- An admin asked to retire the enrollment: RemoveProfile is queued, 401 follows.
ALTER TABLE enrollments ADD COLUMN retire_command_uuid TEXT;
