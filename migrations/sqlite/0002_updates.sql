-- Updates, cancels and drills (issue 3 item 5). Keep in step with migrations/postgres.

-- The incident a warning was applied to: an incident has its first warning and every Update
-- or Cancel that joined it.
ALTER TABLE warnings ADD COLUMN incident_id BIGINT;
CREATE INDEX warnings_incident ON warnings (incident_id);

-- `references` naming a warning not received yet, resolved when that warning arrives.
CREATE TABLE warning_refs (
    id              INTEGER PRIMARY KEY,
    warning_id      BIGINT NOT NULL REFERENCES warnings (id),
    ref_sender      TEXT NOT NULL,
    ref_identifier  TEXT NOT NULL,
    ref_sent        TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    resolved_at     BIGINT
);
CREATE INDEX warning_refs_target ON warning_refs (ref_sender, ref_identifier, ref_sent);

-- A call-out made again because the colour rose: what changed ("暴雨橙色→红色预警"), shown as 【升级】.
ALTER TABLE callouts ADD COLUMN upgrade TEXT;
