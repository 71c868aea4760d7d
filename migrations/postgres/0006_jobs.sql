-- One job queue for all time-based work, and attempts written before their network call.
--
-- attempts: `sending` until the gateway answers (finished_at NULL until then); `job_id` and
-- `message_key` (the SPEC §5 `ref`, the same on every try of one message) let a restarted
-- worker see which sends were in flight when the daemon died.
ALTER TABLE attempts ALTER COLUMN finished_at DROP NOT NULL;
ALTER TABLE attempts ADD COLUMN job_id BIGINT;
ALTER TABLE attempts ADD COLUMN message_key TEXT;
-- Only the attempts in flight, so a restarted worker finds them at no cost to every send.
CREATE INDEX attempts_sending ON attempts (job_id) WHERE result = 'sending';

-- jobs: kinds send | deadline | notice | response_expiry | feed_poll. A job that must exist
-- once (a feed's poll, a response's expiry) has a dedupe_key, so two instances starting at
-- once insert it once.
ALTER TABLE jobs ADD COLUMN dedupe_key TEXT;
CREATE UNIQUE INDEX jobs_dedupe ON jobs (dedupe_key);

-- A deadline names the ladder rung it is for: a deadline that fires twice, or after the
-- call-out moved on, does nothing.
UPDATE jobs SET payload = json_build_object('rung', (SELECT rung FROM callouts WHERE callouts.id = jobs.callout_id))::text
    WHERE kind = 'deadline';

-- Response levels with an `until` lapse through the queue, not a loop beside it.
INSERT INTO jobs (kind, callout_id, payload, due_at, created_at, dedupe_key)
    SELECT 'response_expiry', NULL, json_build_object('response', id)::text, until_at, started_at,
           'response-expiry:' || id
    FROM responses WHERE until_at IS NOT NULL AND ended_at IS NULL;
