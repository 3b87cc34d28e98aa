-- 0008: SCEP. A challenge is made for each profile download (or renewal) and stored as its
-- SHA-256 with its expiry and what it is for: the link it came from, or the identity it
-- renews. The first successful PKCSReq consumes it. Transactions remember the certificate
-- issued for a (transactionID, signer certificate) so a resent request or a GetCertInitial
-- poll gets that certificate again instead of a second one.
CREATE TABLE scep_challenges (
    challenge_sha256    TEXT PRIMARY KEY NOT NULL,
    token_id            INTEGER REFERENCES enrollment_tokens (id),
    renews_sha256       TEXT,
    udid                TEXT,
    subject             TEXT NOT NULL,
    access_rights       INTEGER,
    created_at          TEXT NOT NULL,
    expires_at          TEXT NOT NULL,
    used_at             TEXT,
    issued_sha256       TEXT
) STRICT;

CREATE TABLE scep_transactions (
    transaction_id      TEXT NOT NULL,
    signer_sha256   TEXT NOT NULL,
    certificate         BLOB NOT NULL,
    issued_sha256       TEXT NOT NULL,
    created_at          TEXT NOT NULL,
    PRIMARY KEY (transaction_id, signer_sha256)
) STRICT;

-- A renewal queued as an InstallProfile with a SCEP payload does not know its new identity
-- until the device asks for it: new_sha256 becomes nullable (SQLite rebuilds the table).
CREATE TABLE renewals_0008 (
    old_sha256      TEXT PRIMARY KEY NOT NULL,
    new_sha256      TEXT,
    udid            TEXT NOT NULL,
    command_uuid    TEXT NOT NULL,
    queued_at       TEXT NOT NULL
) STRICT;

INSERT INTO renewals_0008 SELECT old_sha256, new_sha256, udid, command_uuid, queued_at
    FROM renewals;

DROP TABLE renewals;

ALTER TABLE renewals_0008 RENAME TO renewals;
