-- Apps that follow their image tag: Pier asks the registry for the tag's digest (a HEAD on the
-- manifest, through the engine) on a schedule or when the app's webhook is called, and deploys a
-- digest it has not deployed yet through the normal rollout. One row per app that was ever set.
CREATE TABLE tag_follow (
    app_id          INTEGER PRIMARY KEY REFERENCES apps (id) ON DELETE CASCADE,
    enabled         BOOLEAN NOT NULL DEFAULT FALSE,
    -- The last check: when, what the registry said, and why it failed if it did.
    checked_at      INTEGER,
    remote_digest   TEXT,
    error           TEXT,
    -- The webhook's URL carries a keyed hash of (app, generation); a new URL bumps it.
    hook_generation INTEGER NOT NULL DEFAULT 0
);
