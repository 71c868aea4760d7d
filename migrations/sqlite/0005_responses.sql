-- Response levels (应急响应): declared by the office for a hazard in some regions, until ended
-- or until `until_at` passes. `regions` is a JSON array of division codes.
CREATE TABLE responses (
    id           INTEGER PRIMARY KEY,
    hazard       TEXT NOT NULL,
    level        TEXT NOT NULL,     -- I | II | III | IV
    regions      TEXT NOT NULL,
    note         TEXT NOT NULL DEFAULT '',
    actor        TEXT NOT NULL,
    incident_id  BIGINT REFERENCES incidents (id),
    started_at   BIGINT NOT NULL,
    until_at     BIGINT,
    ended_at     BIGINT,
    ended_by     TEXT
);
CREATE INDEX responses_open ON responses (ended_at);
