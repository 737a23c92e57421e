-- An S3-compatible bucket, set by an admin, that every snapshot is copied to after it is taken
-- (off this machine). One at most. The secret key is sealed with the operator's key.
CREATE TABLE backup_targets (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    -- http(s)://host[:port], no path.
    endpoint      TEXT    NOT NULL,
    region        TEXT    NOT NULL,
    bucket        TEXT    NOT NULL,
    access_key    TEXT    NOT NULL,
    secret_sealed TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    last_ok_at    INTEGER,
    last_error    TEXT,
    last_error_at INTEGER,
    -- Failed copies in a row (the worker backs off).
    failures      INTEGER NOT NULL DEFAULT 0
);

-- When the snapshot was copied to the bucket.
ALTER TABLE snapshots ADD COLUMN offsite_at INTEGER;

-- The operator's recovery passphrase, sealed with the operator's key: the worker adds it as a
-- key to a bucket's repository too (made later, or unreachable when it was set).
ALTER TABLE instance ADD COLUMN backup_passphrase_sealed TEXT;
ALTER TABLE backup_targets ADD COLUMN passphrase_added INTEGER NOT NULL DEFAULT 0;
