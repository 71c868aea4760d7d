-- Feed polling: HTTP validators per source and URL (so a restart asks "changed since?"
-- instead of refetching), and the index entries already taken.
CREATE TABLE feed_validators (
    source         TEXT NOT NULL,
    url            TEXT NOT NULL,
    etag           TEXT,
    last_modified  TEXT,
    updated_at     BIGINT NOT NULL,
    PRIMARY KEY (source, url)
);

CREATE TABLE feed_entries (
    source   TEXT NOT NULL,
    entry    TEXT NOT NULL,
    seen_at  BIGINT NOT NULL,
    PRIMARY KEY (source, entry)
);
