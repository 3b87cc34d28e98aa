-- 0009: DEP. The devices Apple's DEP service says are assigned to this server, by serial,
-- with the last change applied to each; the DEP profiles this server defined; and where the
-- device sync is (its cursor is written in the transaction that writes the devices of the
-- page it came with, so a crash between pages resumes from the last page written).
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
