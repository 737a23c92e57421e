//! Volumes with a hard size. Plain Docker volumes on overlay2 have no size limit, so each Pier
//! volume is an ext4 file system in a sparse image file of exactly its size, attached to a loop
//! device; writing past it fails inside the container with "No space left on device" and
//! nothing else on the host fills up.
//!
//! Docker mounts the file system itself (a `local` volume of type ext4), through a link whose
//! name never changes (`<volume>.dev` → `/dev/loopN`): loop devices get other numbers after a
//! reboot, and a volume's options cannot change. Before any link is used it is checked against
//! the kernel's record of what backs its loop device, so a stale link never mounts another
//! volume's data; [`Storage::sweep`] removes every stale link at start, before any device is
//! attached.
//!
//! The tools are Debian's (`e2fsprogs`, `util-linux`). Every argument is a path Pier made from
//! the volume's engine name, which is checked against a strict grammar first.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
};

use pier_core::runtime::{RuntimeError, VolumeUsage};
use tokio::process::Command;

const MIB: u64 = 1024 * 1024;

pub struct Storage {
    dir: PathBuf,
    /// One change at a time: attaching loop devices and swapping links must not interleave.
    lock: tokio::sync::Mutex<()>,
}

/// Volume names are Pier's own (`pier-<instance>-v<id>`); anything else is refused before it
/// becomes part of a path or an argument.
fn checked(name: &str) -> Result<&str, RuntimeError> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && name.starts_with("pier-")
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(name)
    } else {
        Err(RuntimeError::Failed(format!(
            "{name:?} is not a Pier volume name"
        )))
    }
}

fn failed(what: &str, e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Failed(format!("{what}: {e}"))
}

/// Runs a tool; its standard output, or its standard error as the failure.
async fn run(program: &str, args: &[&str]) -> Result<String, RuntimeError> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| failed(&format!("running {program}"), e))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(RuntimeError::Failed(format!(
            "{program} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// The file behind loop device `dev` (`/dev/loopN`), as the kernel records it.
fn backing_file(dev: &Path) -> Option<PathBuf> {
    let n = dev.file_name()?.to_str()?;
    if !n.starts_with("loop") || !n[4..].chars().all(|c| c.is_ascii_digit()) || n.len() == 4 {
        return None;
    }
    let text = std::fs::read_to_string(format!("/sys/block/{n}/loop/backing_file")).ok()?;
    Some(PathBuf::from(text.trim_end()))
}

impl Storage {
    pub fn new(dir: PathBuf) -> Self {
        Storage {
            dir,
            lock: tokio::sync::Mutex::new(()),
        }
    }

    fn image(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.img"))
    }

    /// The stable path Docker mounts the volume's device through.
    pub fn device_link(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.dev"))
    }

    /// The loop device a link points at, if that device is backed by the link's own image.
    fn attached(&self, name: &str) -> Option<PathBuf> {
        let dev = std::fs::read_link(self.device_link(name)).ok()?;
        let image = std::fs::canonicalize(self.image(name)).ok()?;
        (backing_file(&dev)? == image).then_some(dev)
    }

    /// Removes every link that does not point at a loop device backed by its own image (after
    /// a reboot, all of them): run at start, before any device is attached.
    pub fn sweep(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for e in entries.flatten() {
            let file = e.file_name();
            let Some(name) = file.to_str().and_then(|f| f.strip_suffix(".dev")) else {
                continue;
            };
            if self.attached(name).is_none() {
                tracing::info!(volume = name, "removing a stale volume device link");
                let _ = std::fs::remove_file(e.path());
            }
        }
    }

    /// Makes the volume's file system (once) and attaches it (again after a reboot). Returns the
    /// stable device path for Docker. `owner` is the host uid/gid of container root, so that it
    /// owns the file system's root under user namespaces too.
    pub async fn ensure(
        &self,
        name: &str,
        size_mb: i64,
        owner: (u32, u32),
    ) -> Result<PathBuf, RuntimeError> {
        let name = checked(name)?;
        let _one = self.lock.lock().await;
        crate::files::private_dir(&self.dir).map_err(|e| failed("volume directory", e))?;
        let image = self.image(name);
        if !image.exists() {
            self.make(name, size_mb, owner).await?;
        }
        self.attach(name).await
    }

    /// Attaches the volume's image to a loop device unless it is; the stable link to it. The
    /// caller holds the lock.
    async fn attach(&self, name: &str) -> Result<PathBuf, RuntimeError> {
        let image = self.image(name);
        let link = self.device_link(name);
        if self.attached(name).is_some() {
            return Ok(link);
        }
        // Gone first: while it points at a device of unknown backing, nothing may mount it.
        let _ = std::fs::remove_file(&link);
        let image_arg = image.to_string_lossy().into_owned();
        // Attached already (Pier restarted, the link was lost)? Else a new loop device.
        let found = run("losetup", &["-n", "-O", "NAME", "-j", &image_arg]).await?;
        let dev = match found
            .lines()
            .next()
            .map(str::trim)
            .filter(|l| !l.is_empty())
        {
            Some(d) => d.to_owned(),
            None => run("losetup", &["--find", "--show", &image_arg])
                .await?
                .trim()
                .to_owned(),
        };
        let tmp = self.dir.join(format!("{name}.dev.tmp"));
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&dev, &tmp).map_err(|e| failed("device link", e))?;
        std::fs::rename(&tmp, &link).map_err(|e| failed("device link", e))?;
        tracing::info!(volume = name, device = %dev, "volume attached");
        Ok(link)
    }

    /// A sparse image of exactly `size_mb`, formatted ext4 with no reserved blocks and no
    /// `lost+found` (databases refuse a data directory that is not empty).
    async fn make(&self, name: &str, size_mb: i64, owner: (u32, u32)) -> Result<(), RuntimeError> {
        let tmp = self.dir.join(format!("{name}.img.tmp"));
        let size = u64::try_from(size_mb).unwrap_or(0).max(1) * MIB;
        {
            let f = std::fs::File::create(&tmp).map_err(|e| failed("volume image", e))?;
            f.set_len(size).map_err(|e| failed("volume image", e))?;
        }
        let tmp_arg = tmp.to_string_lossy().into_owned();
        let owner_opt = format!("root_owner={}:{}", owner.0, owner.1);
        let made = async {
            run(
                "mkfs.ext4",
                &["-q", "-F", "-m", "0", "-E", &owner_opt, &tmp_arg],
            )
            .await?;
            run("debugfs", &["-w", "-R", "rmdir lost+found", &tmp_arg]).await
        }
        .await;
        if let Err(e) = made {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        std::fs::rename(&tmp, self.image(name)).map_err(|e| failed("volume image", e))?;
        tracing::info!(volume = name, size_mb, "volume file system made");
        Ok(())
    }

    /// Mounts the volume's file system at `at` as well (a second mount of the same file system
    /// is safe while a container has it mounted: the kernel shares one instance). Nothing from
    /// it can be executed or become setuid through this mount.
    pub async fn mount(&self, name: &str, at: &Path) -> Result<(), RuntimeError> {
        let name = checked(name)?;
        let dev = {
            let _one = self.lock.lock().await;
            if !self.image(name).exists() {
                return Err(RuntimeError::Failed(format!(
                    "volume {name} has no data on this machine"
                )));
            }
            self.attach(name).await?;
            self.attached(name)
                .ok_or_else(|| failed("attaching the volume", "its device is gone"))?
        };
        run(
            "mount",
            &[
                "-t",
                "ext4",
                "-o",
                "nosuid,nodev,noexec",
                &dev.to_string_lossy(),
                &at.to_string_lossy(),
            ],
        )
        .await
        .map(|_| ())
    }

    pub async fn unmount(&self, at: &Path) -> Result<(), RuntimeError> {
        run("umount", &[&at.to_string_lossy()]).await.map(|_| ())
    }

    /// Detaches and deletes the volume's file system: its data is gone.
    pub async fn remove(&self, name: &str) -> Result<(), RuntimeError> {
        let name = checked(name)?;
        let _one = self.lock.lock().await;
        let image = self.image(name);
        if image.exists() {
            let image_arg = image.to_string_lossy().into_owned();
            let found = run("losetup", &["-n", "-O", "NAME", "-j", &image_arg]).await?;
            for dev in found.lines().map(str::trim).filter(|l| !l.is_empty()) {
                run("losetup", &["-d", dev]).await?;
            }
        }
        let _ = std::fs::remove_file(self.device_link(name));
        match std::fs::remove_file(&image) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(failed("removing the volume image", e)),
        }
        tracing::info!(volume = name, "volume data deleted");
        Ok(())
    }

    /// The names of the volumes that have an image here.
    pub fn names(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|f| f.strip_suffix(".img"))
                    .map(str::to_owned)
            })
            .collect()
    }

    /// Used and total space: from the mounted file system when Docker has it mounted, else from
    /// the file system's own superblock (exact when it is not mounted).
    pub async fn usage(&self, name: &str) -> Result<Option<VolumeUsage>, RuntimeError> {
        let name = checked(name)?;
        let image = self.image(name);
        if !image.exists() {
            return Ok(None);
        }
        if let Some(dev) = self.attached(name) {
            // The mount table names the source as Docker gave it: the link, or the device.
            let link = self.device_link(name);
            if let Some(mountpoint) = mount_point(&[dev.as_path(), link.as_path()]) {
                let out = run("df", &["-B1", "--output=used,size", &mountpoint]).await?;
                let nums: Vec<u64> = out
                    .lines()
                    .nth(1)
                    .unwrap_or_default()
                    .split_whitespace()
                    .filter_map(|n| n.parse().ok())
                    .collect();
                if let [used, total] = nums[..] {
                    return Ok(Some(VolumeUsage {
                        used_bytes: used,
                        total_bytes: total,
                    }));
                }
            }
        }
        let out = run("dumpe2fs", &["-h", &image.to_string_lossy()]).await?;
        let field = |key: &str| -> Option<u64> {
            out.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().parse().ok())
        };
        match (
            field("Block count:"),
            field("Free blocks:"),
            field("Block size:"),
        ) {
            (Some(count), Some(free), Some(bs)) => Ok(Some(VolumeUsage {
                used_bytes: count.saturating_sub(free) * bs,
                total_bytes: count * bs,
            })),
            _ => Ok(None),
        }
    }
}

/// Where a file system mounted from one of `sources` is mounted, from this process's mount
/// table.
fn mount_point(sources: &[&Path]) -> Option<String> {
    let table = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    table.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        let source = unescape(right.split_whitespace().nth(1)?);
        sources
            .iter()
            .any(|s| s.to_str() == Some(source.as_str()))
            .then(|| left.split_whitespace().nth(4).map(unescape))?
    })
}

/// Mount table paths escape spaces and the like as octal (`\040`).
fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let code = rest
            .get(i + 1..i + 4)
            .and_then(|o| u8::from_str_radix(o, 8).ok());
        match code {
            Some(n) => {
                out.push(char::from(n));
                rest = &rest[i + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_pier_volume_names_become_paths() {
        assert!(checked("pier-abc123-v7").is_ok());
        for bad in [
            "",
            "v7",
            "pier-../x",
            "pier-a/b",
            "pier-A",
            "pier-a b",
            "pier-a\n",
        ] {
            assert!(checked(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn mount_table_escapes() {
        assert_eq!(unescape("/a\\040b"), "/a b");
        assert_eq!(unescape("/plain"), "/plain");
    }

    #[test]
    fn loop_devices_only() {
        assert_eq!(backing_file(Path::new("/dev/sda")), None);
        assert_eq!(backing_file(Path::new("/dev/loop")), None);
        assert_eq!(backing_file(Path::new("/dev/loopx")), None);
    }
}
