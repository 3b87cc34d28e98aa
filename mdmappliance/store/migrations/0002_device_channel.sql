-- 0002: the device channel: devices, enrollments (device and user channels), the
-- certificates bound to them, and the command queue with its results.

-- The hardware and the facts it reports about itself (Authenticate, later inventory).
CREATE TABLE devices (
    udid            TEXT PRIMARY KEY NOT NULL,
    serial_number   TEXT,
    model           TEXT,
    model_name      TEXT,
    product_name    TEXT,
    device_name     TEXT,
    os_version      TEXT,
    build_version   TEXT,
    imei            TEXT,
    meid            TEXT,
    first_seen      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
) STRICT;

-- One management channel: the device channel (user_id = '') or a user channel.
-- state: authenticated (Authenticate seen), enrolled (TokenUpdate seen: pushable),
-- checked_out (CheckOut seen), retired (the admin ended it).
CREATE TABLE enrollments (
    id                      INTEGER PRIMARY KEY,
    udid                    TEXT NOT NULL REFERENCES devices (udid),
    user_id                 TEXT NOT NULL DEFAULT '',
    user_short_name         TEXT,
    user_long_name          TEXT,
    topic                   TEXT NOT NULL,
    state                   TEXT NOT NULL
        CHECK (state IN ('authenticated', 'enrolled', 'checked_out', 'retired')),
    push_token              BLOB,
    push_magic              TEXT,
    token_valid             INTEGER NOT NULL DEFAULT 0,
    token_updated_at        TEXT,
    unlock_token_sealed     BLOB,
    auth_token_sha256       TEXT,
    not_on_console          INTEGER,
    awaiting_configuration  INTEGER,
    created_at              TEXT NOT NULL,
    updated_at              TEXT NOT NULL,
    enrolled_at             TEXT,
    checked_out_at          TEXT,
    last_seen               TEXT,
    UNIQUE (udid, user_id)
) STRICT;

-- Client certificates bound to a device; exactly one is current per device.
-- A certificate (its SHA-256) never belongs to two devices: the primary key says so.
CREATE TABLE identities (
    sha256      TEXT PRIMARY KEY NOT NULL,
    udid        TEXT NOT NULL REFERENCES devices (udid),
    subject     TEXT NOT NULL,
    issuer      TEXT NOT NULL,
    serial      TEXT NOT NULL,
    not_before  TEXT NOT NULL,
    not_after   TEXT NOT NULL,
    bound_at    TEXT NOT NULL,
    current     INTEGER NOT NULL DEFAULT 1 CHECK (current IN (0, 1))
) STRICT;

CREATE UNIQUE INDEX identities_current ON identities (udid) WHERE current = 1;

-- The command queue. payload is the whole reply plist ({CommandUUID, Command}), ready
-- to send. state: queued, sent (waiting for its result), not_now, then one of
-- acknowledged, error, format_error, expired, canceled.
CREATE TABLE commands (
    id              INTEGER PRIMARY KEY,
    uuid            TEXT NOT NULL UNIQUE,
    enrollment_id   INTEGER NOT NULL REFERENCES enrollments (id),
    request_type    TEXT NOT NULL,
    payload         BLOB NOT NULL,
    priority        INTEGER NOT NULL DEFAULT 0,
    state           TEXT NOT NULL CHECK (state IN ('queued', 'sent', 'not_now', 'acknowledged',
                                                   'error', 'format_error', 'expired',
                                                   'canceled')),
    created_at      TEXT NOT NULL,
    expires_at      TEXT,
    sent_at         TEXT,
    send_count      INTEGER NOT NULL DEFAULT 0,
    not_now_count   INTEGER NOT NULL DEFAULT 0,
    result_at       TEXT,
    updated_at      TEXT NOT NULL
) STRICT;

CREATE INDEX commands_pending ON commands (enrollment_id, priority DESC, id)
    WHERE state IN ('queued', 'sent', 'not_now');

-- Finding expired commands must not scan every pending one on each poll.
CREATE INDEX commands_expiring ON commands (enrollment_id, expires_at)
    WHERE state IN ('queued', 'sent', 'not_now') AND expires_at IS NOT NULL;

-- Every report a device sent about a command: the raw plist and what it said.
CREATE TABLE command_results (
    id              INTEGER PRIMARY KEY,
    command_id      INTEGER NOT NULL REFERENCES commands (id),
    status          TEXT NOT NULL,
    error_chain     TEXT CHECK (error_chain IS NULL OR json_valid(error_chain)),
    raw             BLOB NOT NULL,
    received_at     TEXT NOT NULL
) STRICT;

CREATE INDEX command_results_command ON command_results (command_id, id);
