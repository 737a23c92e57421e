//! What the engine says of itself: isolation, storage, whether published ports go through
//! `docker-proxy`.

use pier_core::runtime::EngineInfo;

/// Whether the dockerd on this host uses `docker-proxy` for published ports: its command line
/// (`--userland-proxy=false`) or `/etc/docker/daemon.json` (`"userland-proxy": false`) says it
/// does not; None when no dockerd runs here (a remote `DOCKER_HOST`).
pub(super) fn local_userland_proxy() -> Option<bool> {
    let cmdline = std::fs::read_dir("/proc")
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        })
        .find_map(|e| {
            let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
            (comm.trim() == "dockerd")
                .then(|| std::fs::read(e.path().join("cmdline")).ok())
                .flatten()
        })?;
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let config = std::fs::read_to_string("/etc/docker/daemon.json").unwrap_or_default();
    Some(userland_proxy_from(&args, &config))
}

/// The flag wins over the configuration file; Docker's default is on.
pub(super) fn userland_proxy_from(args: &[String], daemon_json: &str) -> bool {
    for (i, a) in args.iter().enumerate() {
        if let Some(v) = a.strip_prefix("--userland-proxy=") {
            return v != "false";
        }
        if a == "--userland-proxy" {
            return args.get(i + 1).is_none_or(|v| v != "false");
        }
    }
    serde_json::from_str::<serde_json::Value>(daemon_json)
        .ok()
        .and_then(|j| j.get("userland-proxy").and_then(|v| v.as_bool()))
        .unwrap_or(true)
}

/// Docker's answer when `--storage-opt size` cannot be honoured ("--storage-opt is supported
/// only for overlay over xfs with 'pquota' mount option", "quota ... not enabled", …).
pub(super) fn refuses_layer_size(why: &str) -> bool {
    let w = why.to_ascii_lowercase();
    w.contains("storage-opt") || w.contains("storage opt") || w.contains("quota")
}

/// Isolation facts from `docker info`: user namespaces show as a security option, and the
/// root directory of a remapped engine ends in `<uid>.<gid>` of container root.
pub(super) fn engine_info(
    version: String,
    security: &[String],
    root_dir: &str,
    driver: &str,
    driver_status: &[Vec<String>],
) -> EngineInfo {
    let backing_fs = driver_status
        .iter()
        .find(|kv| kv.first().map(String::as_str) == Some("Backing Filesystem"))
        .and_then(|kv| kv.get(1))
        .cloned()
        .unwrap_or_default();
    let layer_limit =
        matches!(driver, "btrfs" | "zfs") || (driver == "overlay2" && backing_fs == "xfs");
    let userns = security
        .iter()
        .any(|o| o.split(',').any(|kv| kv == "name=userns"));
    let (uid, gid) = root_dir
        .rsplit('/')
        .next()
        .and_then(|last| last.split_once('.'))
        .and_then(|(u, g)| Some((u.parse().ok()?, g.parse().ok()?)))
        .filter(|_| userns)
        .unwrap_or((0, 0));
    EngineInfo {
        version,
        root_dir: root_dir.to_owned(),
        user_namespaces: userns,
        root_uid: uid,
        root_gid: gid,
        storage_driver: driver.to_owned(),
        backing_fs,
        layer_limit,
        userland_proxy: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_namespaces_from_docker_info() {
        let i = engine_info(
            "20.10.24".into(),
            &[
                "name=apparmor".into(),
                "name=seccomp,profile=default".into(),
                "name=userns".into(),
            ],
            "/var/lib/docker/100000.100000",
            "overlay2",
            &[vec!["Backing Filesystem".into(), "extfs".into()]],
        );
        assert!(i.user_namespaces);
        assert_eq!((i.root_uid, i.root_gid), (100000, 100000));
        let plain = engine_info(
            "20.10.24".into(),
            &["name=seccomp,profile=default".into()],
            "/var/lib/docker",
            "overlay2",
            &[vec!["Backing Filesystem".into(), "xfs".into()]],
        );
        assert!(!plain.user_namespaces);
        assert_eq!((plain.root_uid, plain.root_gid), (0, 0));
        // Writable layers: bounded on overlay2 over xfs, not over ext4.
        assert!(plain.layer_limit);
        assert!(!i.layer_limit);
        assert_eq!(
            (i.storage_driver.as_str(), i.backing_fs.as_str()),
            ("overlay2", "extfs")
        );
    }

    #[test]
    fn userland_proxy_from_flags_and_config() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(userland_proxy_from(&args(&["dockerd"]), ""));
        assert!(!userland_proxy_from(
            &args(&[
                "dockerd",
                "--userns-remap=default",
                "--userland-proxy=false"
            ]),
            ""
        ));
        assert!(!userland_proxy_from(
            &args(&["dockerd"]),
            r#"{"userland-proxy": false}"#
        ));
        assert!(userland_proxy_from(
            &args(&["dockerd", "--userland-proxy=true"]),
            r#"{"userland-proxy": false}"#
        ));
    }

    #[test]
    fn a_refused_layer_size_is_recognised() {
        assert!(refuses_layer_size(
            "--storage-opt is supported only for overlay over xfs with 'pquota' mount option"
        ));
        assert!(refuses_layer_size("Filesystem does not support quota"));
        assert!(!refuses_layer_size("No such image: x"));
    }
}
