-- Two-factor sign-in: an authenticator app (TOTP, RFC 6238) and one-time recovery codes.

-- One authenticator per account. The shared secret is encrypted with the operator's key
-- (context "user:<id>:totp"); `confirmed_at` stays NULL until the person has typed a code from
-- their app, and only a confirmed authenticator is asked for at sign-in.
CREATE TABLE totp (
    user_id      INTEGER PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    secret       TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    confirmed_at INTEGER,
    -- The last 30-second step whose code was accepted: a code is good once (RFC 6238 5.2).
    last_step    INTEGER NOT NULL DEFAULT 0
);

-- Ten per account, shown once. Stored as HMAC-SHA-256 under a key derived from the
-- operator's key, so the table alone does not let anyone test guesses.
CREATE TABLE recovery_codes (
    id        INTEGER PRIMARY KEY,
    user_id   INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash TEXT    NOT NULL,
    used_at   INTEGER
);
CREATE INDEX recovery_codes_user ON recovery_codes (user_id);

-- Whether every person must sign in with two factors (set by an admin).
ALTER TABLE instance ADD COLUMN require_two_factor INTEGER NOT NULL DEFAULT 0;
