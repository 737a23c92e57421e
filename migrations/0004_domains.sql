-- Routing: the domains tenants register and attach to their apps, and each user's handle (the
-- tenant part of platform host names `<app>-<handle>.<base domain>`).

-- Users created from now on get a handle from their e-mail's local part; users that exist
-- already get `u<id>`, which is unique and a valid DNS label.
ALTER TABLE users ADD COLUMN handle TEXT;
UPDATE users SET handle = 'u' || id;
CREATE UNIQUE INDEX users_handle ON users (handle);

-- A domain name belongs to one tenant at most (unique across all tenants) and is served by at
-- most one of that tenant's apps. Names are stored IDNA-normalised (ASCII, lower case, no
-- trailing dot); `*.example.com` only when the operator allows wildcards.
CREATE TABLE domains (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name       TEXT    NOT NULL UNIQUE,
    app_id     INTEGER REFERENCES apps (id) ON DELETE SET NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX domains_user ON domains (user_id, name);
CREATE INDEX domains_app ON domains (app_id);
