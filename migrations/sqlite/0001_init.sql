-- jiaoying schema (SQLite; keep in step with migrations/postgres). Times are Unix milliseconds (BIGINT) so that SQLite and
-- PostgreSQL share every query; flags are BIGINT 0/1 for the same reason.

CREATE TABLE regions (
    code        TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    level       TEXT NOT NULL,
    parent      TEXT,
    lat         DOUBLE PRECISION,
    lon         DOUBLE PRECISION,
    boundary    TEXT,               -- GeoJSON geometry (Polygon/MultiPolygon), [lon, lat]
    updated_at  BIGINT NOT NULL
);

CREATE TABLE contacts (
    id            INTEGER PRIMARY KEY,
    key           TEXT NOT NULL UNIQUE,
    name          TEXT NOT NULL,
    phone         TEXT,
    email         TEXT,
    role          TEXT NOT NULL,
    region_code   TEXT NOT NULL,
    backup_key    TEXT,
    superior_key  TEXT,
    channels      TEXT NOT NULL DEFAULT '',
    updated_at    BIGINT NOT NULL
);
CREATE INDEX contacts_phone ON contacts (phone);
CREATE INDEX contacts_region ON contacts (region_code);

CREATE TABLE risk_points (
    id           INTEGER PRIMARY KEY,
    key          TEXT NOT NULL UNIQUE,
    kind         TEXT NOT NULL,
    name         TEXT NOT NULL,
    lat          DOUBLE PRECISION NOT NULL,
    lon          DOUBLE PRECISION NOT NULL,
    region_code  TEXT NOT NULL,
    people       BIGINT NOT NULL DEFAULT 0,
    updated_at   BIGINT NOT NULL
);

CREATE TABLE warnings (
    id           INTEGER PRIMARY KEY,
    sender       TEXT NOT NULL,
    identifier   TEXT NOT NULL,
    sent         TEXT NOT NULL,
    sent_at      BIGINT NOT NULL,
    msg_type     TEXT NOT NULL,
    status       TEXT NOT NULL,
    event        TEXT NOT NULL,
    headline     TEXT,
    colour       TEXT,
    hazard       TEXT NOT NULL,
    expires_at   BIGINT,
    source       TEXT NOT NULL,
    raw          BLOB NOT NULL,
    parsed       TEXT NOT NULL,      -- the parsed alert as JSON
    received_at  BIGINT NOT NULL,
    UNIQUE (sender, identifier, sent)
);

-- Refused CAP input, kept verbatim with the reason (SPEC §8: the raw message is kept).
CREATE TABLE warning_rejects (
    id           INTEGER PRIMARY KEY,
    source       TEXT NOT NULL,
    reason       TEXT NOT NULL,
    raw          BLOB NOT NULL,
    received_at  BIGINT NOT NULL
);

CREATE TABLE incidents (
    id          INTEGER PRIMARY KEY,
    code        TEXT NOT NULL,
    warning_id  BIGINT REFERENCES warnings (id),
    title       TEXT NOT NULL,
    event       TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    colour      TEXT,
    hazard      TEXT NOT NULL,
    policy      TEXT NOT NULL,      -- the policy applied, as JSON
    instruction TEXT NOT NULL DEFAULT '',
    drill       BIGINT NOT NULL DEFAULT 0,
    state       TEXT NOT NULL,      -- active | closed
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT,
    closed_at   BIGINT
);
CREATE INDEX incidents_code ON incidents (code);

CREATE TABLE callouts (
    id           INTEGER PRIMARY KEY,
    incident_id  BIGINT NOT NULL REFERENCES incidents (id),
    contact_id   BIGINT NOT NULL REFERENCES contacts (id),
    parent_id    BIGINT REFERENCES callouts (id),
    rung         BIGINT NOT NULL DEFAULT 0,   -- ladder steps already taken
    region_code  TEXT NOT NULL,
    place        TEXT NOT NULL,
    role         TEXT NOT NULL,
    reason       TEXT NOT NULL,
    state        TEXT NOT NULL,
    deadline_at  BIGINT NOT NULL,
    created_at   BIGINT NOT NULL,
    sent_at      BIGINT,
    delivered_at BIGINT,
    acked_at     BIGINT,
    ack_late     BIGINT NOT NULL DEFAULT 0,
    updated_at   BIGINT NOT NULL
);
CREATE INDEX callouts_incident ON callouts (incident_id);
CREATE INDEX callouts_contact ON callouts (contact_id, state);

CREATE TABLE attempts (
    id           INTEGER PRIMARY KEY,
    callout_id   BIGINT NOT NULL REFERENCES callouts (id),
    channel      TEXT NOT NULL,
    gateway      TEXT NOT NULL,
    address      TEXT NOT NULL,
    body         TEXT NOT NULL,
    gateway_ref  TEXT,
    result       TEXT NOT NULL,     -- sent | transient | permanent
    detail       TEXT,
    started_at   BIGINT NOT NULL,
    finished_at  BIGINT NOT NULL
);
CREATE INDEX attempts_callout ON attempts (callout_id);

CREATE TABLE acks (
    id           INTEGER PRIMARY KEY,
    callout_id   BIGINT NOT NULL UNIQUE REFERENCES callouts (id),
    method       TEXT NOT NULL,     -- sms | link | voice | operator
    at           BIGINT NOT NULL,
    late         BIGINT NOT NULL DEFAULT 0,
    note         TEXT,
    actor        TEXT,
    inbound_id   BIGINT
);

CREATE TABLE evacuations (
    id           INTEGER PRIMARY KEY,
    incident_id  BIGINT NOT NULL REFERENCES incidents (id),
    callout_id   BIGINT REFERENCES callouts (id),
    reporter     TEXT NOT NULL,     -- contact key or operator name; a later report supersedes
    region_code  TEXT NOT NULL,
    moved        BIGINT NOT NULL,
    threatened   BIGINT,
    method       TEXT NOT NULL,
    at           BIGINT NOT NULL
);
CREATE INDEX evacuations_incident ON evacuations (incident_id);

CREATE TABLE inbound (
    id           INTEGER PRIMARY KEY,
    gateway      TEXT NOT NULL,
    kind         TEXT NOT NULL,     -- sms | status | voice
    sender       TEXT,
    body         TEXT NOT NULL,
    outcome      TEXT NOT NULL,     -- ack | evacuation | duplicate | unparsed | unknown-number | no-open-callout | …
    callout_id   BIGINT,
    received_at  BIGINT NOT NULL
);

-- The durable job table: every piece of time-based work is a row (DESIGN §Principles 1).
CREATE TABLE jobs (
    id            INTEGER PRIMARY KEY,
    kind          TEXT NOT NULL,    -- send | deadline | notice
    callout_id    BIGINT,
    payload       TEXT NOT NULL DEFAULT '{}',
    due_at        BIGINT NOT NULL,
    claimed_by    TEXT,
    claimed_until BIGINT,
    attempts      BIGINT NOT NULL DEFAULT 0,
    last_error    TEXT,
    created_at    BIGINT NOT NULL
);
CREATE INDEX jobs_due ON jobs (due_at);
CREATE INDEX jobs_callout ON jobs (callout_id);

-- Append-only, hash-chained record of every change (written in the same transaction).
CREATE TABLE ledger (
    seq        BIGINT PRIMARY KEY,
    at         BIGINT NOT NULL,
    kind       TEXT NOT NULL,
    subject    TEXT NOT NULL,
    body       TEXT NOT NULL,
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL
);
-- The chain's head, locked by each writer so that entries from concurrent transactions
-- chain in commit order.
CREATE TABLE ledger_head (
    id    BIGINT PRIMARY KEY,
    seq   BIGINT NOT NULL,
    hash  TEXT NOT NULL
);
INSERT INTO ledger_head (id, seq, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

-- Block id allocation for batched inserts (PostgreSQL uses its sequences).
CREATE TABLE id_counters (
    name  TEXT PRIMARY KEY,
    next  BIGINT NOT NULL
);
INSERT INTO id_counters (name, next) VALUES ('callouts', 1), ('attempts', 1);
