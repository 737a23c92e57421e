-- Backups of apps' volumes: a policy per app (no row: never scheduled), and the snapshots and
-- restores, which are also the worker's queue. The data is in a restic repository; a row names
-- its snapshot there.

CREATE TABLE backup_policies (
    app_id      INTEGER PRIMARY KEY REFERENCES apps (id) ON DELETE CASCADE,
    schedule    TEXT    NOT NULL CHECK (schedule IN ('off', 'hourly', 'daily', 'weekly')),
    -- Minutes after midnight UTC (daily, weekly); hourly runs at this minute past each hour
    -- (modulo 60).
    at_minute   INTEGER NOT NULL CHECK (at_minute BETWEEN 0 AND 1439),
    -- 0 = Monday … 6 = Sunday (weekly).
    weekday     INTEGER NOT NULL CHECK (weekday BETWEEN 0 AND 6),
    -- pause: the container is frozen while its files are read; stop: stopped and started
    -- again; command: reserved for a dump command run inside the container.
    mode        TEXT    NOT NULL CHECK (mode IN ('pause', 'stop', 'command')),
    keep_last   INTEGER NOT NULL CHECK (keep_last BETWEEN 1 AND 1000),
    keep_daily  INTEGER NOT NULL CHECK (keep_daily BETWEEN 0 AND 1000),
    keep_weekly INTEGER NOT NULL CHECK (keep_weekly BETWEEN 0 AND 1000),
    updated_at  INTEGER NOT NULL
);

CREATE TABLE snapshots (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    app_id      INTEGER NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    trigger     TEXT    NOT NULL CHECK (trigger IN ('manual', 'schedule')),
    mode        TEXT    NOT NULL CHECK (mode IN ('pause', 'stop', 'command')),
    state       TEXT    NOT NULL DEFAULT 'queued'
        CHECK (state IN ('queued', 'running', 'done', 'failed')),
    reason      TEXT,
    -- The restic snapshot, once taken.
    restic_id   TEXT,
    -- Progress while running; totals when done.
    bytes       INTEGER NOT NULL DEFAULT 0,
    total_bytes INTEGER NOT NULL DEFAULT 0,
    files       INTEGER NOT NULL DEFAULT 0,
    -- What this snapshot added to the repository (after deduplication and compression).
    added_bytes INTEGER,
    -- How long the app's container was paused or stopped, in ms.
    paused_ms   INTEGER,
    created_at  INTEGER NOT NULL,
    started_at  INTEGER,
    finished_at INTEGER
);
CREATE INDEX snapshots_app ON snapshots (app_id, id);
CREATE INDEX snapshots_state ON snapshots (state);

CREATE TABLE restores (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    app_id      INTEGER NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    snapshot_id INTEGER NOT NULL REFERENCES snapshots (id) ON DELETE CASCADE,
    state       TEXT    NOT NULL DEFAULT 'queued'
        CHECK (state IN ('queued', 'running', 'done', 'failed')),
    reason      TEXT,
    created_at  INTEGER NOT NULL,
    started_at  INTEGER,
    finished_at INTEGER
);
CREATE INDEX restores_app ON restores (app_id, id);
CREATE INDEX restores_state ON restores (state);

-- Backups of Pier itself (its database and secret key), taken daily and by `pier backup`.
-- A row is written once the snapshot is taken (or failed), so the copy of the database inside
-- the snapshot never holds a half-written one.
CREATE TABLE panel_backups (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    trigger     TEXT    NOT NULL CHECK (trigger IN ('manual', 'schedule')),
    state       TEXT    NOT NULL CHECK (state IN ('done', 'failed')),
    reason      TEXT,
    restic_id   TEXT,
    bytes       INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL,
    finished_at INTEGER NOT NULL
);

-- When the operator last gave the backup repository a passphrase of their own (a second
-- restic key): with it, a fresh machine can open the backups without the secret key.
ALTER TABLE instance ADD COLUMN backup_passphrase_at INTEGER;
