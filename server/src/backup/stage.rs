//! The staging area under the backup directory: volumes mounted for reading or writing, a
//! restore's copy of a snapshot, and cleaning up what a stop left there.

use super::*;

/// Unmounts every mount under `stage` (deepest first) and removes the empty directories.
pub(super) async fn unmount_all(pier: &Pier, stage: &Path) {
    for p in mounts_under(stage)
        .into_iter()
        .filter(|p| Path::new(p) != stage)
    {
        if let Err(e) = pier.runtime().unmount_volume(Path::new(&p)).await {
            tracing::warn!(mount = %p, error = %e, "could not unmount a backup mount");
        }
    }
    if let Ok(entries) = std::fs::read_dir(stage) {
        for e in entries.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.starts_with("staged-") {
                // A restore's copy, left by a stop.
                remove_staged(&e.path());
            } else if name.starts_with("dump-") {
                let _ = std::fs::remove_file(e.path());
            } else {
                remove_mount_dirs(&e.path());
            }
        }
    }
}

/// Removes an app's mount directory and its `v<id>` mount points, if empty: never anything
/// inside a volume (an rmdir of a mount point still mounted fails, and nothing deeper is read).
pub(super) fn remove_mount_dirs(root: &Path) {
    if let Ok(entries) = std::fs::read_dir(root) {
        for e in entries.flatten() {
            let _ = std::fs::remove_dir(e.path());
        }
    }
    let _ = std::fs::remove_dir(root);
}

/// The app's volumes mounted under one directory, `v<id>` each; unmounted when dropped by
/// [`Mounted::release`].
pub(super) struct Mounted {
    pub(super) root: PathBuf,
    pub(super) points: Vec<(i64, PathBuf)>,
}

impl Mounted {
    pub(super) async fn new(pier: &Pier, stage: &Path, app_id: i64) -> Result<Mounted, String> {
        let instance = pier.instance_id().await.map_err(|e| e.to_string())?;
        let vols = repo::volumes::for_app(pier.db(), app_id)
            .await
            .map_err(|e| e.to_string())?;
        if vols.is_empty() {
            return Err("This app has no volumes.".into());
        }
        // On a machine restored from a backup the volumes do not exist yet.
        crate::engine::start_volumes(pier, &instance, &vols, app_id)
            .await
            .map_err(|e| format!("the app's volumes could not be prepared: {e}"))?;
        let root = stage.join(format!("app-{app_id}"));
        let mut m = Mounted {
            root: root.clone(),
            points: Vec::new(),
        };
        for v in vols {
            let at = root.join(format!("v{}", v.id));
            if let Err(e) = std::fs::create_dir_all(&at) {
                m.release(pier).await;
                return Err(format!("could not make a mount point: {e}"));
            }
            if let Err(e) = pier
                .runtime()
                .mount_volume(&volume_name(&instance, v.id), &at)
                .await
            {
                m.release(pier).await;
                return Err(format!("volume {} could not be read: {e}", v.name));
            }
            m.points.push((v.id, at));
        }
        Ok(m)
    }

    pub(super) async fn release(self, pier: &Pier) {
        for (_, at) in &self.points {
            if let Err(e) = pier.runtime().unmount_volume(at).await {
                tracing::warn!(mount = %at.display(), error = %e, "could not unmount");
            }
        }
        remove_mount_dirs(&self.root);
    }
}

/// Replaces the contents of the mounted volume `at` with those of `from`: owners, modes, times,
/// links and extended attributes as restic restored them (`cp -a`, the paths Pier's own).
pub(super) async fn copy_in(from: &Path, at: &Path) -> Result<(), String> {
    empty(at).map_err(|e| format!("could not empty the volume: {e}"))?;
    let out = tokio::process::Command::new("cp")
        .arg("-a")
        .arg("--")
        .arg(from.join("."))
        .arg(at)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .output()
        .await
        .map_err(|e| format!("cp could not be run: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "the files could not be copied into the volume: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The mount points at or under `dir`, deepest first.
pub(super) fn mounts_under(dir: &Path) -> Vec<String> {
    let Ok(table) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let exact = dir.display().to_string();
    let prefix = format!("{exact}/");
    let mut points: Vec<String> = table
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .filter(|p| *p == exact || p.starts_with(&prefix))
        .map(str::to_owned)
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    points
}

/// Removes a restore's staging directory, unless something is mounted in it (then it is left:
/// removing it would reach into a volume).
pub(super) fn remove_staged(dir: &Path) {
    if !dir.exists() {
        return;
    }
    if !mounts_under(dir).is_empty() {
        tracing::warn!(dir = %dir.display(), "a mount is inside a staging directory; left");
        return;
    }
    if let Err(e) = std::fs::remove_dir_all(dir) {
        tracing::warn!(dir = %dir.display(), error = %e, "could not remove a staging directory");
    }
}

/// Removes everything inside `dir`, keeping `dir`.
pub(super) fn empty(dir: &Path) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if e.file_type()?.is_dir() {
            std::fs::remove_dir_all(e.path())?;
        } else {
            std::fs::remove_file(e.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_under_a_directory_not_beside_it() {
        // The root is mounted; nothing is mounted under a directory that does not exist.
        assert!(!mounts_under(Path::new("/")).is_empty());
        assert!(mounts_under(Path::new("/no/such/dir/here")).is_empty());
    }
}
