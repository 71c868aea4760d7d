-- One job queue for all time-based work, and attempts written before their network call.
--
-- attempts: `sending` until the gateway answers (finished_at NULL until then); `job_id` and
-- `message_key` (the SPEC §5 `ref`, the same on every try of one message) let a restarted
-- worker see which sends were in flight when the daemon died. SQLite cannot drop a NOT NULL,
-- so the table is rebuilt.
CREATE TABLE attempts_new (
    id           INTEGER PRIMARY KEY,
    callout_id   BIGINT NOT NULL REFERENCES callouts (id),
    job_id       BIGINT,
    message_key  TEXT,
    channel      TEXT NOT NULL,
    gateway      TEXT NOT NULL,
    address      TEXT NOT NULL,
    body         TEXT NOT NULL,
    gateway_ref  TEXT,
    result       TEXT NOT NULL,     -- sending | sent | transient | permanent | lost
    detail       TEXT,
    started_at   BIGINT NOT NULL,
    finished_at  BIGINT
);
INSERT INTO attempts_new (id, callout_id, channel, gateway, address, body, gateway_ref, result, detail,
                          started_at, finished_at)
    SELECT id, callout_id, channel, gateway, address, body, gateway_ref, result, detail, started_at, finished_at
    FROM attempts;
DROP TABLE attempts;
ALTER TABLE attempts_new RENAME TO attempts;
CREATE INDEX attempts_callout ON attempts (callout_id);
-- Only the attempts in flight, so a restarted worker finds them at no cost to every send.
CREATE INDEX attempts_sending ON attempts (job_id) WHERE result = 'sending';

-- jobs: kinds send | deadline | notice | response_expiry | feed_poll. A job that must exist
-- once (a feed's poll, a response's expiry) has a dedupe_key, so two instances starting at
-- once insert it once.
ALTER TABLE jobs ADD COLUMN dedupe_key TEXT;
CREATE UNIQUE INDEX jobs_dedupe ON jobs (dedupe_key);

-- A deadline names the ladder rung it is for: a deadline that fires twice, or after the
-- call-out moved on, does nothing.
UPDATE jobs SET payload = json_object('rung', (SELECT rung FROM callouts WHERE callouts.id = jobs.callout_id))
    WHERE kind = 'deadline';

-- Response levels with an `until` lapse through the queue, not a loop beside it.
INSERT INTO jobs (kind, callout_id, payload, due_at, created_at, dedupe_key)
    SELECT 'response_expiry', NULL, json_object('response', id), until_at, started_at, 'response-expiry:' || id
    FROM responses WHERE until_at IS NOT NULL AND ended_at IS NULL;
