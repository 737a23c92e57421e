//! Sweeping up after a test's Pier: what it made in Docker carries its instance's label, and its
//! volumes' file systems are image files on loop devices.

use std::{path::Path, process::Command};

/// `docker rm -f`, `docker network rm` and `docker volume rm` of everything labelled with this
/// Pier instance. Containers go first: a network or volume still in use cannot.
pub fn remove_labelled(instance: &str) {
    let filter = format!("label=pier.instance={instance}");
    for (list, remove) in [
        (&["ps", "-aq"][..], &["rm", "-f"][..]),
        (&["network", "ls", "-q"][..], &["network", "rm"][..]),
        (&["volume", "ls", "-q"][..], &["volume", "rm", "-f"][..]),
    ] {
        let ids = Command::new("docker")
            .args(list)
            .args(["--filter", &filter])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
            .unwrap_or_default();
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            let _ = Command::new("docker").args(remove).args(&ids).output();
        }
    }
}

/// Deletes the files in `dir` whose names start with `prefix`, detaching first the loop devices
/// of the volume images (`.img`) among them.
pub fn remove_volume_files(dir: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with(prefix) {
            continue;
        }
        if name.ends_with(".img") {
            let _ = Command::new("sh")
                .args([
                    "-c",
                    "for d in $(losetup -n -O NAME -j \"$1\"); do losetup -d \"$d\"; done",
                    "sh",
                ])
                .arg(e.path())
                .output();
        }
        let _ = std::fs::remove_file(e.path());
    }
}
