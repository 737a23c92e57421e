-- The audit log: one row per state change a person or a token asked for, whatever its outcome.
-- Rows are only ever inserted, and removed by the retention sweep; nothing in Pier edits them.
-- No foreign keys: an entry outlives the user, token and object it names (their names are
-- copied in), so deleting a user keeps the record of what they did.
CREATE TABLE audit_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          INTEGER NOT NULL,
    -- Who: the person (NULL for the command line or an unknown e-mail), as they were then.
    actor_id    INTEGER,
    actor_email TEXT    NOT NULL,
    -- The API token the request carried (NULL for the browser and the command line).
    token_id    INTEGER,
    -- The client's address as Pier's HAProxy saw it.
    address     TEXT,
    -- What: a dotted action ("app.create"), the kind and name of the object, and the person
    -- whose object it is (the tenant, or the user an admin changed).
    action      TEXT    NOT NULL,
    object_kind TEXT    NOT NULL,
    object_name TEXT    NOT NULL,
    owner_id    INTEGER,
    -- A summary of the change; never a secret value.
    summary     TEXT    NOT NULL,
    -- "ok", or the error code the request got ("invalid", "forbidden", …) and its message.
    outcome     TEXT    NOT NULL,
    message     TEXT
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_actor ON audit_log (actor_id, id);
CREATE INDEX audit_log_owner ON audit_log (owner_id, id);

-- How long entries are kept, set by an admin.
ALTER TABLE instance ADD COLUMN audit_retention_days INTEGER NOT NULL DEFAULT 365;
