-- Notifications: what happened (once per occurrence), and its delivery to each channel with
-- retries. Per person: e-mail to their address (through the operator's SMTP server) and a
-- webhook (JSON, signed with HMAC-SHA-256 under a secret Pier makes, sealed at rest).
CREATE TABLE notify_settings (
    user_id        INTEGER PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    email          INTEGER NOT NULL DEFAULT 1,
    webhook_url    TEXT,
    webhook_secret TEXT
);

-- The operator's mail server (one row). The password is sealed with the operator's key.
CREATE TABLE smtp_settings (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    host         TEXT    NOT NULL,
    port         INTEGER NOT NULL,
    security     TEXT    NOT NULL CHECK (security IN ('starttls', 'tls', 'none')),
    username     TEXT,
    password     TEXT,
    from_address TEXT    NOT NULL
);

CREATE TABLE notifications (
    id         INTEGER PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind       TEXT    NOT NULL,
    -- One notification per occurrence: e.g. "deployment.failed:42".
    dedupe_key TEXT    NOT NULL,
    subject    TEXT    NOT NULL,
    body       TEXT    NOT NULL,
    -- The event's facts as JSON, what a webhook receives.
    details    TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (user_id, dedupe_key)
);

CREATE TABLE deliveries (
    id              INTEGER PRIMARY KEY,
    notification_id INTEGER NOT NULL REFERENCES notifications (id) ON DELETE CASCADE,
    channel         TEXT    NOT NULL CHECK (channel IN ('email', 'webhook')),
    status          TEXT    NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT,
    sent_at         INTEGER
);
CREATE INDEX deliveries_due ON deliveries (status, next_attempt_at);
CREATE INDEX notifications_user ON notifications (user_id, id);
