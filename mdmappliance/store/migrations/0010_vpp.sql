-- 0010: VPP. The VPP users and licenses as the last sync (or a call from here) left them,
-- and where the sync is: the batchToken of a listing still under way and the
-- sinceModifiedToken of the last one completed, for users and for licenses, each written in
-- the transaction that writes its batch (a crash mid-sync resumes from the last batch).
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
