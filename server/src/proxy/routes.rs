//! Routes: hosts → apps in the map file, apps → addresses as servers of each app's backend in
//! `haproxy.cfg` (so a reload or restart keeps both), changed in the running HAProxy through its
//! runtime API. A backend more or less, many changes at once, or a runtime change that failed
//! rewrite the files and reload instead.

use super::{
    runtime,
    table::{parse_running_backends, parse_show_map, render_map, steps, RouteTable, Step},
    Proxy, Routes,
};
use crate::files::write_atomic;

impl Proxy {
    /// Makes HAProxy route exactly `want`: the files first, then the running process through
    /// the runtime API, without a reload when only hosts and addresses change.
    pub async fn set_routes(&self, want: RouteTable) -> anyhow::Result<()> {
        let want = want.routable();
        let mut routes = self.routes.lock().await;
        self.retry_retired(&mut routes, &want).await;
        if routes.table == want && !routes.stale {
            return Ok(());
        }
        let plan = steps(&routes.table, &want);
        // Stale until this change is through: a write or a reload that fails part way leaves
        // the next sync to reload from the files, instead of taking them for applied.
        let was_stale = std::mem::replace(&mut routes.stale, true);
        if routes.table.hosts != want.hosts {
            write_atomic(
                &self.cfg.hosts_map,
                render_map(&want.hosts).as_bytes(),
                0o600,
            )?;
        }
        let servers_changed = routes.table.backends != want.backends;
        let old = std::mem::replace(&mut routes.table, want);
        let ok = match &plan {
            Some(steps) if !was_stale => {
                if servers_changed {
                    // The addresses only: the rest of the file is as `haproxy -c` accepted it
                    // at the last reload, and the next reload checks it again.
                    write_atomic(
                        &self.files.cfg,
                        self.render(&routes.table).as_bytes(),
                        0o600,
                    )?;
                }
                self.apply(&mut routes, steps).await
            }
            _ => false,
        };
        if !ok {
            // The reload reads the files, which already say what we want.
            self.reload_locked(&mut routes).await?;
        }
        routes.stale = false;
        tracing::debug!(
            steps = plan.as_ref().map(Vec::len),
            hosts = routes.table.hosts.len(),
            endpoints = routes.table.endpoints(),
            previously = old.hosts.len(),
            "routes applied"
        );
        // Only the count changed; the supervisor refreshes the workers every second.
        self.status.lock().expect("status lock").routes = routes.table.hosts.len();
        Ok(())
    }

    /// Route changes through the runtime API; false when there are too many for that or one
    /// failed (the caller reloads instead, from the files).
    async fn apply(&self, routes: &mut Routes, steps: &[Step]) -> bool {
        if steps.len() > MAX_RUNTIME_CHANGES {
            return false;
        }
        let (socket, map) = (&self.cfg.stats_socket, &self.cfg.hosts_map);
        for step in steps {
            let r = match step {
                Step::AddServer(app, addr) => {
                    routes.retired.remove(&(*app, *addr));
                    runtime::add_server(socket, *app, *addr).await
                }
                Step::SetHost(h, app) => runtime::set_route(socket, map, h, *app).await,
                Step::RemoveHost(h) => runtime::remove_route(socket, map, h).await,
                Step::RemoveServer(app, addr) => runtime::remove_server(socket, *app, *addr)
                    .await
                    .map(|gone| {
                        if !gone {
                            routes.retired.insert((*app, *addr));
                        }
                    }),
            };
            if let Err(e) = r {
                tracing::warn!(error = %e, "runtime route change failed; reloading HAProxy");
                return false;
            }
        }
        true
    }

    /// Servers left in maintenance because requests were still under way are deleted once they
    /// are done (a reload drops them too); one wanted again meanwhile was taken back already.
    async fn retry_retired(&self, routes: &mut Routes, want: &RouteTable) {
        let retired = std::mem::take(&mut routes.retired);
        for (app, addr) in retired {
            if want.backends.get(&app).is_some_and(|a| a.contains(&addr)) {
                continue;
            }
            match runtime::delete_server(&self.cfg.stats_socket, app, addr).await {
                Ok(true) | Err(_) => {}
                Ok(false) => {
                    routes.retired.insert((app, addr));
                }
            }
        }
    }

    /// The routes as Pier last set them.
    pub async fn routes(&self) -> RouteTable {
        self.routes.lock().await.table.clone()
    }

    /// After a failed change, or when an adopted HAProxy may trail the files: what the running
    /// process has is read back and the difference applied; a reload when that fails.
    pub(super) async fn resync_if_stale(&self) {
        let mut routes = self.routes.lock().await;
        if !routes.stale {
            return;
        }
        let have = match self.running_table().await {
            Ok(have) => have,
            Err(e) => {
                tracing::warn!(error = %e, "could not read HAProxy's routes");
                return;
            }
        };
        let want = routes.table.clone();
        // How a backend retries is not shown by the runtime API: as the files say it.
        let have = RouteTable {
            spread: want.spread.clone(),
            ..have
        };
        let applied = match steps(&have, &want) {
            Some(steps) => self.apply(&mut routes, &steps).await,
            None => false,
        };
        if applied || self.reload_locked(&mut routes).await.is_ok() {
            routes.stale = false;
        }
    }

    /// The routes the running HAProxy has, through the runtime API.
    async fn running_table(&self) -> Result<RouteTable, runtime::RuntimeApiError> {
        let socket = &self.cfg.stats_socket;
        let map = runtime::checked_path(&self.cfg.hosts_map)?;
        let hosts = parse_show_map(&runtime::command(socket, &format!("show map {map}")).await?);
        let backends = runtime::command(socket, "show backend").await?;
        let servers = runtime::command(socket, "show servers state").await?;
        Ok(RouteTable {
            hosts,
            backends: parse_running_backends(&backends, &servers),
            spread: Default::default(),
        })
    }
}

/// Above this many changes at once, the files are rewritten and HAProxy reloaded instead.
const MAX_RUNTIME_CHANGES: usize = 500;

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::Mutex as StdMutex;

    use tokio::sync::Mutex;

    use crate::proxy::{Files, Proxy, Routes, Status};

    use super::RouteTable;

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
        // Never started: a bad name is dropped before it reaches HAProxy or its files.
        let proxy = Proxy {
            files,
            cfg: cfg.clone(),
            routes: Mutex::new(Routes::default()),
            child: StdMutex::new(None),
            status: StdMutex::new(Status::default()),
        };
        // App 1 has a backend: only the name's grammar keeps the host out.
        let want = RouteTable {
            hosts: BTreeMap::from([("ok.example.com\nbackend x".to_string(), 1)]),
            backends: BTreeMap::from([(1, BTreeSet::new())]),
            spread: Default::default(),
        };
        // Not started: the new backend's reload fails, but the map file was never written.
        assert!(proxy.set_routes(want).await.is_err());
        assert!(!cfg.hosts_map.exists());
        assert!(proxy.routes.lock().await.stale, "the next sync reloads");
    }
}
