-- One person, one call per step (SPEC §2): an escalation that reaches someone already called in
-- the incident joins that person's open call-out (the host) instead of calling them again. The
-- places waiting on the host are kept here, the host's own first, so that its next message
-- names them all and the report can list each one.
CREATE TABLE callout_joins (
    host_id    BIGINT NOT NULL REFERENCES callouts (id),
    joined_id  BIGINT REFERENCES callouts (id),   -- the escalated call-out; NULL for the host's own place
    place      TEXT NOT NULL,
    at         BIGINT NOT NULL
);
CREATE INDEX callout_joins_host ON callout_joins (host_id);
