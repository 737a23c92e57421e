-- Real apps: internal apps (databases, caches), a capability profile per app, and persistent
-- volumes with a hard size, counted against a per-tenant storage quota.

-- 'web' apps get routes and domains and a loopback port for HAProxy; 'internal' apps only
-- answer other apps of the same tenant, by name, on the tenant's network.
ALTER TABLE apps ADD COLUMN kind TEXT NOT NULL DEFAULT 'web' CHECK (kind IN ('web', 'internal'));
-- 'default': every capability dropped, then those that images need to start as root and drop
-- privileges added back. 'strict': none at all.
ALTER TABLE apps ADD COLUMN capabilities TEXT NOT NULL DEFAULT 'default'
    CHECK (capabilities IN ('default', 'strict'));

-- Deployments keep a snapshot of both, like the rest of the spec (rollbacks run what ran).
ALTER TABLE deployments ADD COLUMN kind TEXT NOT NULL DEFAULT 'web' CHECK (kind IN ('web', 'internal'));
ALTER TABLE deployments ADD COLUMN capabilities TEXT NOT NULL DEFAULT 'default'
    CHECK (capabilities IN ('default', 'strict'));
-- For apps with volumes (replaced stop-first): how long nothing served during the switch.
ALTER TABLE deployments ADD COLUMN gap_ms INTEGER;

-- Storage a tenant's volumes may take together, in MiB.
ALTER TABLE users ADD COLUMN max_storage_mb INTEGER NOT NULL DEFAULT 5120;

-- A tenant's volumes. `app_id` is set while the volume belongs to an app, which mounts it at
-- `path`; a volume kept after its app was deleted has no app (its last path stays, for the
-- list), and can be given to another app of the same tenant. The id names the Docker volume and
-- its file system image, so it is never reused.
CREATE TABLE volumes (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE RESTRICT,
    app_id     INTEGER REFERENCES apps (id) ON DELETE SET NULL,
    name       TEXT    NOT NULL,
    path       TEXT    NOT NULL,
    size_mb    INTEGER NOT NULL CHECK (size_mb > 0),
    created_at INTEGER NOT NULL,
    UNIQUE (user_id, name)
);
CREATE INDEX volumes_app ON volumes (app_id);
