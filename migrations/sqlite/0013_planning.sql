-- Resumable planning (issue 11 §2): a warning for 50,000 people commits the incident and a
-- first slice of call-outs at once, and the rest in further transactions. `planning` is how
-- far that got: `done` of `total` call-outs written (the cursor, in plan order), with what a
-- restart needs to decide the same plan again (the warning, the colour it was planned at
-- after any response level raised it, the instant it was decided at). A `plan` job in the
-- one queue continues it; `finished_at` is set by the transaction that writes the last slice.
CREATE TABLE planning (
    incident_id  BIGINT PRIMARY KEY REFERENCES incidents (id),
    warning_id   BIGINT NOT NULL REFERENCES warnings (id),
    colour       TEXT,
    planned_at   BIGINT NOT NULL,
    deadline_at  BIGINT NOT NULL,
    total        BIGINT NOT NULL,
    done         BIGINT NOT NULL,
    finished_at  BIGINT
);
-- Finding who an incident has called already, when a restart resumes its plan.
CREATE INDEX callouts_incident_contact ON callouts (incident_id, contact_id);

-- The roster's version (issue 11 §6): bumped by every transaction that changes regions,
-- boundaries, contacts, risk points or duty shifts, so a daemon keeps its roster index in
-- memory and rebuilds it only when another instance's import made it stale.
CREATE TABLE roster_version (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    version  BIGINT NOT NULL
);
INSERT INTO roster_version (id, version) VALUES (1, 1);
