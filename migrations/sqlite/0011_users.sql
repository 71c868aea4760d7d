-- Console users and their sessions (SPEC §6). Passwords are argon2 PHC strings; a session is
-- known only by the SHA-256 of its cookie value, so a copy of the database logs nobody in.
CREATE TABLE users (
    name         TEXT PRIMARY KEY,
    role         TEXT NOT NULL,     -- admin | operator | viewer
    hash         TEXT NOT NULL,
    disabled     BIGINT NOT NULL DEFAULT 0,
    created_at   BIGINT NOT NULL,
    created_by   TEXT NOT NULL
);
CREATE TABLE sessions (
    id_hash      TEXT PRIMARY KEY,
    user_name    TEXT NOT NULL REFERENCES users (name),
    csrf         TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    last_seen    BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL    -- the absolute limit (console.session_max)
);
CREATE INDEX sessions_user ON sessions (user_name);
-- Failed logins by the name typed, known user or not (so a lockout does not tell which names
-- exist); cleared by a successful login.
CREATE TABLE login_failures (
    name         TEXT PRIMARY KEY,
    failures     BIGINT NOT NULL,
    last_at      BIGINT NOT NULL,
    locked_until BIGINT NOT NULL DEFAULT 0
);
