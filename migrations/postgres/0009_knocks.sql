-- Door-knock tasks (上门叫应), the ladder's last rung: a call-out whose `task` is 'knock' tells
-- its person to go to someone's door; its result is kept here, one row per report (a later
-- report of the same task supersedes an earlier one in the report).
ALTER TABLE callouts ADD COLUMN task TEXT;
CREATE TABLE knocks (
    id          BIGSERIAL PRIMARY KEY,
    incident_id BIGINT NOT NULL REFERENCES incidents (id),
    task_id     BIGINT NOT NULL REFERENCES callouts (id),   -- the knock task
    callout_id  BIGINT NOT NULL REFERENCES callouts (id),   -- the call-out of the person at the door
    result      TEXT NOT NULL,                              -- reached | not-home | moved
    method      TEXT NOT NULL,
    at          BIGINT NOT NULL
);
CREATE INDEX knocks_incident ON knocks (incident_id);
