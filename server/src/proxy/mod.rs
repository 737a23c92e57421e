//! HAProxy, the only thing facing the internet. Pier owns it: it writes its files into the data
//! dir, starts it in master-worker mode, restarts it when it dies, changes routes through the
//! runtime API (and in the map file, so a reload or restart keeps them), and reloads it — after
//! `haproxy -c` accepted the new configuration — only when the configuration's shape changes.
//!
//! When Pier stops, HAProxy keeps serving (like the containers); the next Pier adopts it through
//! its master socket.
//!
//! This file is the process: start or adopt, supervise, reload, stop. `routes` keeps the routes
//! (`table` is their pure part), `certs` the certificates, `config` renders the configuration,
//! `runtime` speaks the runtime API.

mod certs;
pub mod config;
mod routes;
pub mod runtime;
pub mod table;

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Stdio,
    sync::{Arc, Mutex as StdMutex},
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use tokio::sync::Mutex;

use self::config::{render, ProxyConfig};
pub use self::table::RouteTable;
use self::table::{parse_backends, parse_map, render_backends, render_map};
use crate::files::{private_dir, write_atomic};

/// Where HAProxy's files live (`<data dir>/haproxy/`).
#[derive(Debug, Clone)]
pub struct Files {
    pub dir: PathBuf,
    pub cfg: PathBuf,
    pub master_socket: PathBuf,
    pub pidfile: PathBuf,
    pub log: PathBuf,
}

impl Files {
    pub fn in_dir(dir: &Path) -> Files {
        Files {
            dir: dir.to_owned(),
            cfg: dir.join("haproxy.cfg"),
            master_socket: dir.join("master.sock"),
            pidfile: dir.join("haproxy.pid"),
            log: dir.join("haproxy.log"),
        }
    }

    /// HAProxy's admin socket (statistics, map and certificate changes).
    pub fn stats_socket(&self) -> PathBuf {
        self.dir.join("admin.sock")
    }

    /// The configuration's paths for files in this directory.
    pub fn config(
        &self,
        http_addr: std::net::SocketAddr,
        https_addr: std::net::SocketAddr,
        panel_addr: std::net::SocketAddr,
        panel_host: Option<String>,
    ) -> ProxyConfig {
        ProxyConfig {
            http_addr,
            https_addr,
            panel_addr,
            panel_host,
            stats_socket: self.stats_socket(),
            hosts_map: self.dir.join("hosts.map"),
            default_cert: self.dir.join("default.pem"),
            crt_list: self.dir.join("certs.list"),
            run_as: config::unprivileged_account(),
            threads: config::threads_for(
                std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
            ),
        }
    }
}

/// What the admin page shows about HAProxy (`error`: the last thing that went wrong, a refused
/// configuration or a failed start, while it stands).
pub use pier_core::service::ProxyStatus as Status;

/// The running HAProxy and the routes it has.
pub struct Proxy {
    files: Files,
    cfg: ProxyConfig,
    /// Exactly as in the files (and, unless `stale`, in HAProxy).
    routes: Mutex<Routes>,
    /// The process when this Pier started it (None when adopted).
    child: StdMutex<Option<tokio::process::Child>>,
    status: StdMutex<Status>,
}

#[derive(Default)]
struct Routes {
    table: RouteTable,
    /// A runtime change failed: HAProxy may differ from the file until it reloads.
    stale: bool,
    /// Servers taken out while requests were under way: in maintenance in the running HAProxy
    /// (no new requests), deleted once idle.
    retired: BTreeSet<(i64, std::net::SocketAddr)>,
}

impl Proxy {
    /// Prepares the directory (0700), the default self-signed certificate and the certificate
    /// list; then adopts a running HAProxy of this directory or starts one.
    pub async fn start(files: Files, cfg: ProxyConfig) -> anyhow::Result<Arc<Proxy>> {
        prepare_dir(&files, &cfg)?;
        let on_disk = std::fs::read_to_string(&files.cfg).unwrap_or_default();
        let map_text = std::fs::read_to_string(&cfg.hosts_map).unwrap_or_default();
        let (backends, spread) = parse_backends(&on_disk);
        let table = RouteTable {
            hosts: parse_map(&map_text),
            backends,
            spread,
        }
        .routable();
        // Lines the table left out (an older format, a host without a backend) must not come
        // back with the next reload.
        let map_now = render_map(&table.hosts);
        if map_now != map_text {
            write_atomic(&cfg.hosts_map, map_now.as_bytes(), 0o600)?;
        }
        // A HAProxy started by a Pier before apps had backends of their own: it keeps serving
        // from its own (old) configuration until the first route sync reloads it with every
        // app's backend; reloading now, with none, would answer every site 404 until then.
        let before_backends = on_disk.contains("\nbackend apps\n");
        let proxy = Arc::new(Proxy {
            files,
            cfg,
            routes: Mutex::new(Routes {
                table,
                ..Routes::default()
            }),
            child: StdMutex::new(None),
            status: StdMutex::new(Status::default()),
        });
        let rendered = proxy.render(&proxy.routes.lock().await.table);
        if proxy.workers().await.is_ok() {
            tracing::info!(dir = %proxy.files.dir.display(), "adopting the running HAProxy");
            // Its routes may trail the files (Pier stopped between file and socket, or the
            // reload below fails): read back and corrected, or reloaded by the first sync.
            proxy.routes.lock().await.stale = true;
            if !before_backends {
                if on_disk != rendered {
                    // The settings changed while Pier was down (or Pier was updated).
                    if let Err(e) = proxy.reload().await {
                        tracing::error!(error = %e, "HAProxy keeps its previous configuration");
                    }
                }
                proxy.resync_if_stale().await;
            }
        } else {
            write_checked(&proxy.files, &rendered)?;
            proxy.spawn().await?;
        }
        proxy.refresh_status().await;
        Ok(proxy)
    }

    pub fn files(&self) -> &Files {
        &self.files
    }

    pub fn config(&self) -> &ProxyConfig {
        &self.cfg
    }

    pub fn status(&self) -> Status {
        self.status.lock().expect("status lock").clone()
    }

    fn set_error(&self, e: Option<String>) {
        self.status.lock().expect("status lock").error = e;
    }

    async fn refresh_status(&self) {
        let routes = self.routes.lock().await.table.hosts.len();
        let workers = self.workers().await;
        let mut s = self.status.lock().expect("status lock");
        s.routes = routes;
        s.running = workers.as_ref().is_ok_and(|w| !w.is_empty());
        s.workers = workers.unwrap_or_default();
    }

    /// Starts `haproxy -W` on the files as they are, and waits for its first worker.
    async fn spawn(&self) -> anyhow::Result<()> {
        let _ = std::fs::remove_file(&self.files.master_socket);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.files.log)?;
        let mut cmd = tokio::process::Command::new("haproxy");
        cmd.arg("-W")
            .arg("-S")
            .arg(&self.files.master_socket)
            .arg("-f")
            .arg(&self.files.cfg)
            .arg("-p")
            .arg(&self.files.pidfile)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // Its own process group: a Ctrl-C meant for Pier does not stop the sites.
            .process_group(0);
        let mut child = cmd
            .spawn()
            .context("starting haproxy (is the haproxy package installed?)")?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(w) = self.workers().await {
                if !w.is_empty() {
                    tracing::info!(pid = child.id(), workers = ?w, "HAProxy started");
                    *self.child.lock().expect("child lock") = Some(child);
                    self.set_error(None);
                    return Ok(());
                }
            }
            if let Some(status) = child.try_wait()? {
                let tail = log_tail(&self.files.log);
                let msg = format!("haproxy exited at start ({status}): {tail}");
                self.set_error(Some(msg.clone()));
                bail!(msg);
            }
            if Instant::now() > deadline {
                let _ = child.start_kill();
                bail!(
                    "haproxy did not start a worker within 10 s: {}",
                    log_tail(&self.files.log)
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The worker pids, from the master's `show proc`.
    pub async fn workers(&self) -> anyhow::Result<Vec<u32>> {
        let out = tokio::time::timeout(
            Duration::from_secs(2),
            runtime::command(&self.files.master_socket, "show proc"),
        )
        .await
        .context("the HAProxy master did not answer")??;
        Ok(parse_workers(&out))
    }

    /// Writes the configuration (after `haproxy -c` accepted it) and reloads: the master starts
    /// new workers on the same listeners and the old ones finish their requests.
    pub async fn reload(&self) -> anyhow::Result<()> {
        let mut routes = self.routes.lock().await;
        self.reload_locked(&mut routes).await
    }

    /// The whole configuration: the settings' part and every app's backend.
    fn render(&self, table: &RouteTable) -> String {
        let mut text = render(&self.cfg);
        render_backends(&mut text, table);
        text
    }

    /// A reload with the routes locked; the new workers have no server in maintenance left.
    async fn reload_locked(&self, routes: &mut Routes) -> anyhow::Result<()> {
        let before = self.workers().await?;
        if let Err(e) = write_checked(&self.files, &self.render(&routes.table)) {
            self.set_error(Some(format!("{e:#}")));
            return Err(e);
        }
        runtime::command(&self.files.master_socket, "reload").await?;
        // 2.6 answers `reload` with nothing: the new worker's pid in `show proc` is the sign.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let now = self.workers().await.unwrap_or_default();
            if now.iter().any(|p| !before.contains(p)) {
                tracing::info!(workers = ?now, "HAProxy reloaded");
                routes.retired.clear();
                self.set_error(None);
                return Ok(());
            }
            if Instant::now() > deadline {
                let msg = format!(
                    "HAProxy did not start new workers after a reload: {}",
                    log_tail(&self.files.log)
                );
                self.set_error(Some(msg.clone()));
                bail!(msg);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Restarts HAProxy whenever it is gone (checked every second), with backoff when it will
    /// not stay up. Runs until the task is dropped.
    /// With `pier`, admins are told when HAProxy stopped (at most once an hour).
    pub async fn supervise(self: Arc<Self>, pier: Option<pier_core::Pier>) {
        let mut misses = 0u32;
        let mut failures = 0u32;
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            // Reap our own child if it exited (no zombie).
            let exited = {
                let mut c = self.child.lock().expect("child lock");
                match c.as_mut().map(|c| c.try_wait()) {
                    Some(Ok(Some(status))) => {
                        *c = None;
                        Some(status)
                    }
                    _ => None,
                }
            };
            let alive = match self.workers().await {
                Ok(w) => !w.is_empty(),
                Err(_) => false,
            };
            if alive && exited.is_none() {
                misses = 0;
                failures = 0;
                self.refresh_status().await;
                continue;
            }
            misses += 1;
            if exited.is_none() && misses < 3 {
                continue;
            }
            tracing::warn!(?exited, "HAProxy is gone; starting it again");
            if let Some(p) = &pier {
                let why = match exited {
                    Some(status) => format!("it exited: {status}"),
                    None => "it stopped answering on its control socket".into(),
                };
                let event = pier_core::notify::Event::ProxyDown {
                    at: pier_core::now(),
                    why,
                };
                p.notify_admins(event).await;
            }
            self.kill_leftover().await;
            let routes = self.routes.lock().await;
            // The files already say everything: they are written before every change.
            let r = self.spawn().await;
            drop(routes);
            match r {
                Ok(()) => {
                    misses = 0;
                    failures = 0;
                }
                Err(e) => {
                    failures = (failures + 1).min(6);
                    let wait = Duration::from_secs(1 << failures);
                    tracing::error!(error = %e, retry_in_secs = wait.as_secs(), "HAProxy would not start");
                    tokio::time::sleep(wait).await;
                }
            }
            self.refresh_status().await;
        }
    }

    /// Stops HAProxy (master and workers). Pier itself never calls this when it shuts down: the
    /// sites keep being served. Tests and `pier proxy stop` do.
    pub async fn stop(&self) {
        self.kill_leftover().await;
        let child = self.child.lock().expect("child lock").take();
        if let Some(mut c) = child {
            let _ = tokio::time::timeout(Duration::from_secs(5), c.wait()).await;
        }
    }
}

/// SIGTERM to the master named in the pid file (it stops its workers), SIGKILL if it lingers.
impl Proxy {
    /// [`kill_pidfile`] waits (up to 5 s) by sleeping: on the blocking pool, not a Tokio worker.
    async fn kill_leftover(&self) {
        let pidfile = self.files.pidfile.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || kill_pidfile(&pidfile)).await {
            tracing::error!(error = %e, "stopping the old HAProxy panicked");
        }
    }
}

pub fn kill_pidfile(pidfile: &Path) {
    let Some(pid) = std::fs::read_to_string(pidfile)
        .ok()
        .and_then(|t| t.trim().parse::<u32>().ok())
        .filter(|p| *p > 1)
    else {
        return;
    };
    let alive = |pid: u32| Path::new(&format!("/proc/{pid}")).exists() && !is_zombie(pid);
    if !alive(pid) || !is_haproxy(pid) {
        return;
    }
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if alive(pid) {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

/// A pid file can outlive its process; never signal a pid that is not haproxy.
fn is_haproxy(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "haproxy")
}

fn prepare_dir(files: &Files, cfg: &ProxyConfig) -> anyhow::Result<()> {
    private_dir(&files.dir).with_context(|| format!("creating {}", files.dir.display()))?;
    if !cfg.default_cert.exists() {
        let ck = rcgen::generate_simple_self_signed(vec!["pier.invalid".to_string()])
            .context("making the default certificate")?;
        let pem = format!("{}{}", ck.cert.pem(), ck.signing_key.serialize_pem());
        write_atomic(&cfg.default_cert, pem.as_bytes(), 0o600)?;
    }
    if !cfg.crt_list.exists() {
        write_atomic(&cfg.crt_list, b"", 0o600)?;
    }
    if !cfg.hosts_map.exists() {
        write_atomic(&cfg.hosts_map, b"", 0o600)?;
    }
    Ok(())
}

/// Writes `haproxy.cfg` only if `haproxy -c` accepts it; otherwise the old file stays and the
/// error says why.
fn write_checked(files: &Files, text: &str) -> anyhow::Result<()> {
    let candidate = files.dir.join("haproxy.cfg.new");
    write_atomic(&candidate, text.as_bytes(), 0o600)?;
    let out = std::process::Command::new("haproxy")
        .arg("-c")
        .arg("-q")
        .arg("-f")
        .arg(&candidate)
        .output()
        .context("running haproxy -c (is the haproxy package installed?)")?;
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr);
        let why: Vec<&str> = why
            .lines()
            .filter(|l| l.contains("[ALERT]"))
            .take(5)
            .collect();
        let _ = std::fs::remove_file(&candidate);
        bail!(
            "HAProxy refused the new configuration, so the previous one stays: {}",
            why.join(" | ")
        );
    }
    std::fs::rename(&candidate, &files.cfg)?;
    Ok(())
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().rev().take(3).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join(" | ")
}

/// The pids under `# workers` in the master's `show proc`.
fn parse_workers(text: &str) -> Vec<u32> {
    let mut in_workers = false;
    let mut out = Vec::new();
    for line in text.lines() {
        let l = line.trim();
        if l.starts_with('#') {
            in_workers = l == "# workers";
            continue;
        }
        if in_workers {
            if let Some(pid) = l.split_whitespace().next().and_then(|p| p.parse().ok()) {
                out.push(pid);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_from_show_proc() {
        let out = "#<PID>          <type>          <reloads>       <uptime>        <version>\n\
                   100             master          1 [failed: 0]   0d00h00m03s     2.6.12-1\n\
                   # workers\n\
                   205             worker          0               0d00h00m01s     2.6.12-1\n\
                   # old workers\n\
                   150             worker          1               0d00h00m03s     2.6.12-1\n\
                   # programs\n";
        assert_eq!(parse_workers(out), vec![205]);
        assert!(parse_workers("").is_empty());
    }
}
