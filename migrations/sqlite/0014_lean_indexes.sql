-- Fewer index entries per call-out (issue 11 §1): every call-out writes its row, two jobs and
-- an attempt, and each index on them is one more b-tree write per row.
-- `callouts_incident_contact` (incident_id, contact_id) serves every lookup by incident.
DROP INDEX callouts_incident;
-- By person only: a person has few call-outs, their states are filtered from the rows, and
-- a call-out's state change no longer rewrites an index entry.
DROP INDEX callouts_contact;
CREATE INDEX callouts_contact ON callouts (contact_id);
-- Only singleton jobs have a key: sends and deadlines (two per call-out) no longer write an
-- entry for their NULL key.
DROP INDEX jobs_dedupe;
CREATE UNIQUE INDEX jobs_dedupe ON jobs (dedupe_key) WHERE dedupe_key IS NOT NULL;
