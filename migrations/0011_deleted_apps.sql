-- Apps deleted here: the backup worker removes their snapshots from the repositories. Only these
-- (not every app id the database does not know): a database restored from an older backup does
-- not know apps made after it, and their snapshots must stay.
CREATE TABLE deleted_apps (
    app_id     INTEGER PRIMARY KEY,
    deleted_at INTEGER NOT NULL
);
