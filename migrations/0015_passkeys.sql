-- Passkeys (WebAuthn): several per account, each a second factor on its own and a way to sign
-- in without the password. `passkey` is webauthn-rs's credential (public key, signature
-- counter, flags) as JSON: nothing in it is secret, and it is replaced when the counter moves.
CREATE TABLE passkeys (
    id            INTEGER PRIMARY KEY,
    user_id       INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name          TEXT    NOT NULL,
    -- The credential id, base64url: what the browser names when it signs in.
    credential_id TEXT    NOT NULL UNIQUE,
    passkey       TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    last_used_at  INTEGER
);
CREATE INDEX passkeys_user ON passkeys (user_id);
