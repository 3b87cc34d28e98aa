-- 0006: webhook delivery. The event log is the outbox: each receiver URL has a cursor,
-- the id of the last event it acknowledged (2xx). It only moves after a delivery, so a
-- restart resends at most the event that was in flight, never skips one.
CREATE TABLE webhook_cursors (
    url             TEXT PRIMARY KEY NOT NULL,
    last_event_id   INTEGER NOT NULL,
    delivered       INTEGER NOT NULL DEFAULT 0,
    failures        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    updated_at      TEXT NOT NULL
) STRICT;
