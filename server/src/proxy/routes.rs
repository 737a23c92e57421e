//! Routes: host → loopback port, kept in the map file (so a reload or restart keeps them) and
//! changed in the running HAProxy through its runtime API; many changes at once, or a runtime
//! change that failed, rewrite the map file and reload instead.

use std::collections::BTreeMap;

use super::{config::render_map, runtime, Proxy};
use crate::files::write_atomic;

impl Proxy {
    /// Makes HAProxy route exactly `want` (host → loopback port): the map file first, then the
    /// running process through the runtime API, without a reload.
    pub async fn set_routes(&self, want: BTreeMap<String, u16>) -> anyhow::Result<()> {
        let want = only_routable(want);
        let mut routes = self.routes.lock().await;
        if routes.map == want && !routes.stale {
            return Ok(());
        }
        let changes = diff(&routes.map, &want);
        write_atomic(
            &self.cfg.hosts_map,
            render_map_sorted(&want).as_bytes(),
            0o600,
        )?;
        let old = std::mem::replace(&mut routes.map, want);
        let ok = !routes.stale && self.apply(&changes).await;
        if !ok {
            routes.stale = true;
            // The reload reads the map file, which already says what we want.
            self.reload_locked().await?;
            routes.stale = false;
        }
        tracing::debug!(
            changes = changes.len(),
            routes = routes.map.len(),
            previously = old.len(),
            "routes applied"
        );
        // Only the count changed; the supervisor refreshes the workers every second.
        self.status.lock().expect("status lock").routes = routes.map.len();
        Ok(())
    }

    /// Route changes through the runtime API; false when there are too many for that or one
    /// failed (the caller reloads instead, from the map file).
    async fn apply(&self, changes: &[Change]) -> bool {
        if changes.len() > MAX_RUNTIME_CHANGES {
            return false;
        }
        let (socket, map) = (&self.cfg.stats_socket, &self.cfg.hosts_map);
        for change in changes {
            let r = match change {
                Change::Set(h, p) => runtime::set_route(socket, map, h, *p).await,
                Change::Remove(h) => runtime::remove_route(socket, map, h).await,
            };
            if let Err(e) = r {
                tracing::warn!(error = %e, "runtime route change failed; reloading HAProxy");
                return false;
            }
        }
        true
    }

    /// The routes as Pier last set them.
    pub async fn routes(&self) -> BTreeMap<String, u16> {
        self.routes.lock().await.map.clone()
    }

    pub(super) async fn resync_if_stale(&self) {
        let mut routes = self.routes.lock().await;
        if !routes.stale {
            return;
        }
        // Compare with what the running process has, and fix the difference.
        let have = match runtime::command(
            &self.cfg.stats_socket,
            &format!("show map {}", self.cfg.hosts_map.display()),
        )
        .await
        {
            Ok(out) => parse_show_map(&out),
            Err(e) => {
                tracing::warn!(error = %e, "could not read HAProxy's routes");
                return;
            }
        };
        let want = routes.map.clone();
        let changes = diff(&have, &want);
        if self.apply(&changes).await || self.reload_locked().await.is_ok() {
            routes.stale = false;
        }
    }
}

/// Above this many changes at once, the map file is rewritten and HAProxy reloaded instead.
const MAX_RUNTIME_CHANGES: usize = 500;

/// Names were checked when they were registered; checked again before they reach a file. A bad
/// one (say a platform name with a label over 63 characters) is left out with a warning: one
/// name must not stop every other route from changing.
fn only_routable(mut want: BTreeMap<String, u16>) -> BTreeMap<String, u16> {
    want.retain(|h, _| {
        let ok = is_routable(h);
        if !ok {
            tracing::warn!(host = ?h, "not routing an invalid host name");
        }
        ok
    });
    want
}

/// A host name as stored: normalised, and valid under the domain grammar (wildcards included).
pub(super) fn is_routable(h: &str) -> bool {
    pier_core::validate::domain(h, true).is_ok_and(|n| n == h)
}

#[derive(Debug, PartialEq, Eq)]
enum Change {
    Set(String, u16),
    Remove(String),
}

fn diff(have: &BTreeMap<String, u16>, want: &BTreeMap<String, u16>) -> Vec<Change> {
    let mut out: Vec<Change> = want
        .iter()
        .filter(|(h, p)| have.get(*h) != Some(p))
        .map(|(h, p)| Change::Set(h.clone(), *p))
        .collect();
    out.extend(
        have.keys()
            .filter(|h| !want.contains_key(*h))
            .map(|h| Change::Remove(h.clone())),
    );
    out
}

fn render_map_sorted(routes: &BTreeMap<String, u16>) -> String {
    let v: Vec<(String, u16)> = routes.iter().map(|(h, p)| (h.clone(), *p)).collect();
    render_map(&v)
}

/// The map file's `host 127.0.0.1:port` lines (anything else is skipped).
pub(super) fn parse_map(text: &str) -> BTreeMap<String, u16> {
    text.lines()
        .filter_map(|l| {
            let (h, v) = l.split_once(' ')?;
            let port = v.trim().strip_prefix("127.0.0.1:")?.parse().ok()?;
            Some((h.to_owned(), port))
        })
        .collect()
}

/// `show map`: `0x55d… host 127.0.0.1:port` lines.
fn parse_show_map(text: &str) -> BTreeMap<String, u16> {
    parse_map(
        &text
            .lines()
            .filter_map(|l| l.split_once(' ').map(|(_, rest)| rest))
            .collect::<Vec<_>>()
            .join("\n"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex as StdMutex;

    use tokio::sync::Mutex;

    use crate::proxy::{Files, Routes, Status};

    #[test]
    fn route_diff_sets_and_removes() {
        let have = BTreeMap::from([("a.io".to_string(), 1u16), ("b.io".to_string(), 2)]);
        let want = BTreeMap::from([
            ("a.io".to_string(), 1u16),
            ("b.io".to_string(), 3),
            ("c.io".to_string(), 4),
        ]);
        assert_eq!(
            diff(&have, &want),
            vec![Change::Set("b.io".into(), 3), Change::Set("c.io".into(), 4)]
        );
        assert_eq!(diff(&want, &BTreeMap::new()).len(), 3);
        assert!(diff(&want, &want).is_empty());
    }

    #[test]
    fn only_valid_host_names_are_routable() {
        for ok in ["a.example.com", "*.example.com", "xn--bcher-kva.example"] {
            assert!(is_routable(ok), "{ok}");
        }
        for bad in [
            "a.example.com\nbind :1",
            "a.example.com 127.0.0.1:1",
            "A.example.com",
            "a.example.com#",
            "%[req.hdr(host)]",
            "a\\.example.com",
            "",
            "com",
        ] {
            assert!(!is_routable(bad), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn a_bad_host_never_reaches_the_map_file() {
        let dir = std::env::temp_dir().join(format!("pier-proxy-unit-{}", std::process::id()));
        let files = Files::in_dir(&dir);
        let cfg = files.config(
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
            "127.0.0.1:3".parse().unwrap(),
            None,
        );
        // Never started: a bad name is dropped before touching HAProxy or its files (nothing
        // else is left to route, so nothing is written).
        let proxy = Proxy {
            files,
            cfg: cfg.clone(),
            routes: Mutex::new(Routes::default()),
            child: StdMutex::new(None),
            status: StdMutex::new(Status::default()),
        };
        let want = BTreeMap::from([("ok.example.com\nbackend x".to_string(), 1u16)]);
        assert!(proxy.set_routes(want).await.is_ok());
        assert!(!cfg.hosts_map.exists());
    }

    #[test]
    fn one_bad_host_does_not_stop_the_others() {
        let long = format!("{}.apps.example.com", "a".repeat(64));
        let want = BTreeMap::from([
            ("a.example.com".to_string(), 40001u16),
            (long, 40002),
            (format!("{}.example.com", "b.".repeat(130)), 40003),
            ("c.example.com".to_string(), 40004),
        ]);
        assert_eq!(
            only_routable(want),
            BTreeMap::from([
                ("a.example.com".to_string(), 40001u16),
                ("c.example.com".to_string(), 40004),
            ])
        );
    }

    #[test]
    fn map_files_and_show_map_parse_back() {
        let m = BTreeMap::from([
            ("a.io".to_string(), 40001u16),
            ("*.b.io".to_string(), 40002),
        ]);
        assert_eq!(parse_map(&render_map_sorted(&m)), m);
        let shown = "0x5581 a.io 127.0.0.1:40001\n0x5582 *.b.io 127.0.0.1:40002\n";
        assert_eq!(parse_show_map(shown), m);
        assert!(parse_map("junk\nx 10.0.0.1:80\n").is_empty());
    }
}
