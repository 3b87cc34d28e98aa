-- 0001: the foundation: appliance settings and the append-only event log.

-- 'MDMA': lets the appliance refuse an SQLite file that some other program wrote.
PRAGMA application_id = 1296321857;

-- Small appliance-wide facts (installation id, when it was initialized, ...).
CREATE TABLE settings (
    key         TEXT PRIMARY KEY NOT NULL,
    value       TEXT NOT NULL,
    updated_at  TEXT NOT NULL
) STRICT;

-- What happened, in order: check-ins, results, admin actions, service starts and stops.
-- The source of the audit log, the events API and the webhook outbox. Rows are never
-- updated; retention may delete the oldest.
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
