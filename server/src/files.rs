//! Files Pier writes for itself and HAProxy: private directories, and whole-file replacement.

use std::{io::Write, path::Path};

use anyhow::Context;

/// Creates `dir` (and its parents) with mode 0700 when it is absent; an existing one is left as
/// it is.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir)
}

/// Sets `path`'s mode to `mode` when it exists. `private_dir` only chooses the mode of what it
/// creates; a data dir or database left world-readable by an older Pier, a restored backup or a
/// hand-made `mkdir` would otherwise stay that way, and the database holds password hashes,
/// sealed registry logins and token hashes.
pub fn restrict(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::symlink_metadata(path) {
        // A symlink is left alone: chmod would follow it to whatever it points at.
        Ok(m) if m.file_type().is_symlink() => Ok(()),
        Ok(m) if m.permissions().mode() & 0o7777 == mode => Ok(()),
        Ok(_) => std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Write to a temporary file, then rename: readers see the old file or the new one, whole.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
