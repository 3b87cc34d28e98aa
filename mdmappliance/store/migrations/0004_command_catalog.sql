-- 0004: the command catalog: what the appliance knows about each device and enrollment
-- to check commands against, and the inventory built from command results.

-- Platform (ios, macos, tvos) from check-in facts or DeviceInformation; NULL: not known.
ALTER TABLE devices ADD COLUMN platform TEXT
    CHECK (platform IS NULL OR platform IN ('ios', 'macos', 'tvos'));
ALTER TABLE devices ADD COLUMN supervised INTEGER;
ALTER TABLE devices ADD COLUMN activation_lock INTEGER;
-- Every DeviceInformation answer (and derived security facts), merged, newest value wins.
ALTER TABLE devices ADD COLUMN facts TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(facts));
ALTER TABLE devices ADD COLUMN facts_at TEXT;

-- AccessRights of the MDM payload the enrollment was made with (NULL: not known, e.g. a
-- device enrolled through another CA). Recorded for every identity the appliance issues.
ALTER TABLE enrollments ADD COLUMN access_rights INTEGER;
ALTER TABLE issued_identities ADD COLUMN access_rights INTEGER;

-- sealed: the payload is sealed with the escrow key (ClearPasscode carries an UnlockToken).
ALTER TABLE commands ADD COLUMN sealed INTEGER NOT NULL DEFAULT 0 CHECK (sealed IN (0, 1));
-- The admin action (its event) that queued the command, one event for a whole batch.
ALTER TABLE commands ADD COLUMN batch_event_id INTEGER REFERENCES events (id);

-- A batch stores its reply plist once, split around the CommandUUID: the command's reply
-- is head || uuid || tail, and its own payload column is then empty. 100,000 copies of
-- the same command would otherwise be 100,000 copies of the same bytes.
CREATE TABLE command_bodies (
    id      INTEGER PRIMARY KEY,
    head    BLOB NOT NULL,
    tail    BLOB NOT NULL
) STRICT;
ALTER TABLE commands ADD COLUMN body_id INTEGER REFERENCES command_bodies (id);

-- What a result meant, as JSON: ErrorChain in words, per-item Settings statuses, counts.
ALTER TABLE command_results ADD COLUMN summary TEXT
    CHECK (summary IS NULL OR json_valid(summary));

-- The current state of each kind (profiles, certificates, installed_apps, security, ...) per
-- enrollment: replaced by the next answer of that kind, with the time it was reported.
CREATE TABLE inventory (
    enrollment_id   INTEGER NOT NULL REFERENCES enrollments (id),
    kind            TEXT NOT NULL,
    data            TEXT NOT NULL CHECK (json_valid(data)),
    command_uuid    TEXT NOT NULL,
    reported_at     TEXT NOT NULL,
    PRIMARY KEY (enrollment_id, kind)
) STRICT, WITHOUT ROWID;

CREATE INDEX commands_batch ON commands (batch_event_id) WHERE batch_event_id IS NOT NULL;
