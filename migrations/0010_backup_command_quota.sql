-- Command mode: a command run inside the app's container whose standard output is the backup
-- (`pg_dump -Fc …`), and the command that reads such a backup back from its standard input
-- (`pg_restore --clean …`). Argument lists in shell-like quoting, run without a shell.
ALTER TABLE backup_policies ADD COLUMN command TEXT NOT NULL DEFAULT '';
ALTER TABLE backup_policies ADD COLUMN restore_command TEXT NOT NULL DEFAULT '';

-- A restore into a new volume beside the app's own (to look at old data): which of the
-- snapshot's volumes, and the kept volume made for it. Both NULL: a restore into the app.
ALTER TABLE restores ADD COLUMN from_volume_id INTEGER;
ALTER TABLE restores ADD COLUMN into_volume_id INTEGER REFERENCES volumes (id) ON DELETE SET NULL;

-- Backup storage: what an app's snapshots hold in the repository (measured after each snapshot
-- and its retention), counted against its owner's quota (MiB).
ALTER TABLE apps ADD COLUMN backup_bytes INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN max_backup_mb INTEGER NOT NULL DEFAULT 10240;
