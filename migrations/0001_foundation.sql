-- Users, invites and browser sessions. Timestamps are Unix seconds (BIGINT on Postgres).

CREATE TABLE users (
    id              INTEGER PRIMARY KEY,
    email           TEXT    NOT NULL UNIQUE,
    password_hash   TEXT,
    role            TEXT    NOT NULL CHECK (role IN ('admin', 'member')),
    disabled        BOOLEAN NOT NULL DEFAULT FALSE,
    max_apps        INTEGER NOT NULL,
    max_memory_mb   INTEGER NOT NULL,
    max_cpus_milli  INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    last_sign_in_at INTEGER
);

-- Invite links (first password, or password reset). Only a SHA-256 of the token is stored.
CREATE TABLE invites (
    id          INTEGER PRIMARY KEY,
    user_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash  TEXT    NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    used_at     INTEGER
);
CREATE INDEX invites_user ON invites (user_id);

-- tower-sessions records, with the owning user pulled out so that a user's sessions can be
-- listed and ended (sign out elsewhere, disable).
CREATE TABLE sessions (
    id           TEXT    PRIMARY KEY,
    user_id      INTEGER REFERENCES users (id) ON DELETE CASCADE,
    data         TEXT    NOT NULL,
    expires_at   INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    user_agent   TEXT,
    ip           TEXT
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_expiry ON sessions (expires_at);
