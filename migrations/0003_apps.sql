-- The apps engine: what each tenant wants running (apps), every rollout of it (deployments),
-- and the registry credentials used to pull private images.
--
-- App and deployment ids are AUTOINCREMENT: they name containers and label them, so an id must
-- never come back after a delete (a new app could otherwise inherit a deleted one's container).

-- One row: this installation's id, put on every container and network Pier creates so that
-- several installations (or test runs) can share one Docker engine without touching each
-- other's containers.
CREATE TABLE instance (
    id         TEXT    PRIMARY KEY,
    created_at INTEGER NOT NULL
);
INSERT INTO instance (id, created_at) VALUES (lower(hex(randomblob(6))), CAST(strftime('%s', 'now') AS INTEGER));

-- An app's spec is what the next deployment will run. `env` is JSON:
-- [{"name": "A", "value": "plain"} | {"name": "B", "sealed": "<ciphertext>"}] — secret values are
-- encrypted with the operator's key, bound to the tenant, app and variable name.
CREATE TABLE apps (
    id                    INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id               INTEGER NOT NULL REFERENCES users (id) ON DELETE RESTRICT,
    name                  TEXT    NOT NULL,
    image                 TEXT    NOT NULL,
    port                  INTEGER NOT NULL CHECK (port BETWEEN 1 AND 65535),
    env                   TEXT    NOT NULL DEFAULT '[]',
    memory_mb             INTEGER NOT NULL CHECK (memory_mb > 0),
    cpus_milli            INTEGER NOT NULL CHECK (cpus_milli > 0),
    health_path           TEXT,
    read_only             BOOLEAN NOT NULL DEFAULT FALSE,
    -- What the tenant asked for: 'running' or 'stopped'.
    desired               TEXT    NOT NULL DEFAULT 'running' CHECK (desired IN ('running', 'stopped')),
    -- The deployment that serves (the last one rolled out successfully).
    current_deployment_id INTEGER,
    -- Why the engine could not do what was asked the last time it tried (shown on the app page).
    last_error            TEXT,
    created_at            INTEGER NOT NULL,
    updated_at            INTEGER NOT NULL,
    UNIQUE (user_id, name)
);

-- Every rollout, with a snapshot of the spec it ran. `status` moves
-- queued → pulling → starting → running → superseded, or ends in failed / cancelled.
CREATE TABLE deployments (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    app_id      INTEGER NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    number      INTEGER NOT NULL,
    cause       TEXT    NOT NULL,
    image       TEXT    NOT NULL,
    digest      TEXT,
    env         TEXT    NOT NULL,
    port        INTEGER NOT NULL,
    memory_mb   INTEGER NOT NULL,
    cpus_milli  INTEGER NOT NULL,
    health_path TEXT,
    read_only   BOOLEAN NOT NULL,
    status      TEXT    NOT NULL CHECK (status IN ('queued', 'pulling', 'starting', 'running', 'superseded', 'failed', 'cancelled')),
    error       TEXT,
    created_at  INTEGER NOT NULL,
    finished_at INTEGER,
    UNIQUE (app_id, number)
);
CREATE INDEX deployments_active ON deployments (status) WHERE status IN ('queued', 'pulling', 'starting');

-- Credentials for pulling from a registry that needs a login; the password is encrypted.
CREATE TABLE registry_credentials (
    id         INTEGER PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    registry   TEXT    NOT NULL,
    username   TEXT    NOT NULL,
    password   TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (user_id, registry)
);
