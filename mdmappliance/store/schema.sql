-- The current schema, as every migration in migrations/ together makes it (version 12).
-- Written by `make schema`; tests/test_schema.py checks the two agree. Read it to
-- learn the tables; change the schema only with a new numbered migration.

CREATE TABLE settings (
    key         TEXT PRIMARY KEY NOT NULL,
    value       TEXT NOT NULL,
    updated_at  TEXT NOT NULL
) STRICT;

CREATE TABLE events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          TEXT NOT NULL,
    kind        TEXT NOT NULL,
    actor       TEXT NOT NULL,
    subject     TEXT,
    detail      TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(detail))
) STRICT;

CREATE INDEX events_at ON events (at);

CREATE INDEX events_subject ON events (subject, id) WHERE subject IS NOT NULL;

CREATE TRIGGER events_append_only BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are append-only');
END;

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
, platform TEXT
    CHECK (platform IS NULL OR platform IN ('ios', 'macos', 'tvos')), supervised INTEGER, activation_lock INTEGER, facts TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(facts)), facts_at TEXT, user_enrollment INTEGER NOT NULL DEFAULT 0
    CHECK (user_enrollment IN (0, 1))) STRICT;

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
    last_seen               TEXT, retire_command_uuid TEXT, access_rights INTEGER, push_status TEXT, push_reason TEXT, push_at TEXT, apns_id TEXT, inactive_since TEXT, result_bytes INTEGER NOT NULL DEFAULT 0, bootstrap_token_sealed BLOB, bootstrap_token_at TEXT, server_capabilities TEXT NOT NULL DEFAULT '[]'
    CHECK (json_valid(server_capabilities)),
    UNIQUE (udid, user_id)
) STRICT;

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
, revoked_at TEXT) STRICT;

CREATE UNIQUE INDEX identities_current ON identities (udid) WHERE current = 1;

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
, sealed INTEGER NOT NULL DEFAULT 0 CHECK (sealed IN (0, 1)), batch_event_id INTEGER REFERENCES events (id), body_id INTEGER REFERENCES command_bodies (id)) STRICT;

CREATE INDEX commands_pending ON commands (enrollment_id, priority DESC, id)
    WHERE state IN ('queued', 'sent', 'not_now');

CREATE INDEX commands_expiring ON commands (enrollment_id, expires_at)
    WHERE state IN ('queued', 'sent', 'not_now') AND expires_at IS NOT NULL;

CREATE TABLE command_results (
    id              INTEGER PRIMARY KEY,
    command_id      INTEGER NOT NULL REFERENCES commands (id),
    status          TEXT NOT NULL,
    error_chain     TEXT CHECK (error_chain IS NULL OR json_valid(error_chain)),
    raw             BLOB NOT NULL,
    received_at     TEXT NOT NULL
, summary TEXT
    CHECK (summary IS NULL OR json_valid(summary))) STRICT;

CREATE INDEX command_results_command ON command_results (command_id, id);

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

CREATE TABLE issued_identities (
    sha256          TEXT PRIMARY KEY NOT NULL,
    token_id        INTEGER REFERENCES enrollment_tokens (id),
    renews_sha256   TEXT,
    udid            TEXT,
    subject         TEXT NOT NULL,
    serial          TEXT NOT NULL,
    not_after       TEXT NOT NULL,
    issued_at       TEXT NOT NULL
, access_rights INTEGER) STRICT;

CREATE TABLE command_bodies (
    id      INTEGER PRIMARY KEY,
    head    BLOB NOT NULL,
    tail    BLOB NOT NULL
) STRICT;

CREATE TABLE inventory (
    enrollment_id   INTEGER NOT NULL REFERENCES enrollments (id),
    kind            TEXT NOT NULL,
    data            TEXT NOT NULL CHECK (json_valid(data)),
    command_uuid    TEXT NOT NULL,
    reported_at     TEXT NOT NULL,
    PRIMARY KEY (enrollment_id, kind)
) STRICT, WITHOUT ROWID;

CREATE INDEX commands_batch ON commands (batch_event_id) WHERE batch_event_id IS NOT NULL;

CREATE INDEX enrollments_last_seen ON enrollments (last_seen) WHERE state = 'enrolled';

CREATE TABLE webhook_cursors (
    url             TEXT PRIMARY KEY NOT NULL,
    last_event_id   INTEGER NOT NULL,
    delivered       INTEGER NOT NULL DEFAULT 0,
    failures        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    updated_at      TEXT NOT NULL
) STRICT;

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

CREATE TABLE "renewals" (
    old_sha256      TEXT PRIMARY KEY NOT NULL,
    new_sha256      TEXT,
    udid            TEXT NOT NULL,
    command_uuid    TEXT NOT NULL,
    queued_at       TEXT NOT NULL
) STRICT;

CREATE TABLE dep_devices (
    serial              TEXT PRIMARY KEY NOT NULL,
    state               TEXT NOT NULL CHECK (state IN ('assigned', 'deleted', 'moved')),
    model               TEXT,
    description         TEXT,
    os                  TEXT,
    device_family       TEXT,
    profile_status      TEXT,
    profile_uuid        TEXT,
    profile_assign_time TEXT,
    device_assigned_date TEXT,
    op_type             TEXT,
    op_date             TEXT,
    data                TEXT NOT NULL CHECK (json_valid(data)),
    updated_at          TEXT NOT NULL
) STRICT;

CREATE INDEX dep_devices_unprofiled ON dep_devices (serial)
    WHERE state = 'assigned' AND (profile_uuid IS NULL OR profile_status IN ('empty', 'removed'));

CREATE TABLE dep_profiles (
    profile_uuid        TEXT PRIMARY KEY NOT NULL,
    name                TEXT NOT NULL,
    body                TEXT NOT NULL CHECK (json_valid(body)),
    is_default          INTEGER NOT NULL DEFAULT 0 CHECK (is_default IN (0, 1)),
    defined_at          TEXT NOT NULL
) STRICT;

CREATE TABLE dep_sync (
    id                  INTEGER PRIMARY KEY CHECK (id = 1),
    cursor              TEXT,
    phase               TEXT NOT NULL CHECK (phase IN ('fetch', 'sync')),
    last_run_at         TEXT,
    last_success_at     TEXT,
    alert               TEXT,
    updated_at          TEXT NOT NULL
) STRICT;

CREATE TABLE vpp_users (
    user_id             INTEGER PRIMARY KEY NOT NULL,
    client_user_id      TEXT,
    its_id_hash         TEXT,
    status              TEXT,
    email               TEXT,
    invite_url          TEXT,
    invite_code         TEXT,
    data                TEXT NOT NULL CHECK (json_valid(data)),
    updated_at          TEXT NOT NULL
) STRICT;

CREATE INDEX vpp_users_client ON vpp_users (client_user_id);

CREATE TABLE vpp_licenses (
    license_id          INTEGER PRIMARY KEY NOT NULL,
    adam_id             INTEGER,
    product_type_id     INTEGER,
    product_type_name   TEXT,
    pricing_param       TEXT,
    is_irrevocable      INTEGER NOT NULL DEFAULT 0 CHECK (is_irrevocable IN (0, 1)),
    user_id             INTEGER,
    client_user_id      TEXT,
    data                TEXT NOT NULL CHECK (json_valid(data)),
    updated_at          TEXT NOT NULL
) STRICT;

CREATE INDEX vpp_licenses_user ON vpp_licenses (user_id) WHERE user_id IS NOT NULL;

CREATE TABLE vpp_sync (
    kind                TEXT PRIMARY KEY NOT NULL CHECK (kind IN ('users', 'licenses')),
    batch_token         TEXT,
    since_token         TEXT,
    updated_at          TEXT NOT NULL
) STRICT;

CREATE TABLE vpp_state (
    id                  INTEGER PRIMARY KEY CHECK (id = 1),
    service_urls        TEXT CHECK (service_urls IS NULL OR json_valid(service_urls)),
    token_exp_date      TEXT,
    alert               TEXT,
    last_run_at         TEXT,
    last_success_at     TEXT,
    updated_at          TEXT NOT NULL
) STRICT;
