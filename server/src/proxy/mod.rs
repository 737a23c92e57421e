//! HAProxy, the only thing facing the internet. Pier owns it: it writes its files into the data
//! dir, starts it in master-worker mode, restarts it when it dies, changes routes through the
//! runtime API (and in the map file, so a reload or restart keeps them), and reloads it — after
//! `haproxy -c` accepted the new configuration — only when the configuration's shape changes.
//!
//! When Pier stops, HAProxy keeps serving (like the containers); the next Pier adopts it through
//! its master socket.

pub mod config;
pub mod runtime;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Stdio,
    sync::{Arc, Mutex as StdMutex},
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use tokio::sync::Mutex;

use self::config::{render, render_map, ProxyConfig};
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
    /// Host → loopback port, exactly as in the map file (and, unless `stale`, in HAProxy).
    routes: Mutex<Routes>,
    /// The process when this Pier started it (None when adopted).
    child: StdMutex<Option<tokio::process::Child>>,
    status: StdMutex<Status>,
}

#[derive(Default)]
struct Routes {
    map: BTreeMap<String, u16>,
    /// A runtime change failed: HAProxy may differ from the file until it reloads.
    stale: bool,
}

/// Above this many changes at once, the map file is rewritten and HAProxy reloaded instead.
const MAX_RUNTIME_CHANGES: usize = 500;

impl Proxy {
    /// Prepares the directory (0700), the default self-signed certificate and the certificate
    /// list; then adopts a running HAProxy of this directory or starts one.
    pub async fn start(files: Files, cfg: ProxyConfig) -> anyhow::Result<Arc<Proxy>> {
        prepare_dir(&files, &cfg)?;
        let map = std::fs::read_to_string(&cfg.hosts_map)
            .map(|t| parse_map(&t))
            .unwrap_or_default();
        let proxy = Arc::new(Proxy {
            files,
            cfg,
            routes: Mutex::new(Routes { map, stale: false }),
            child: StdMutex::new(None),
            status: StdMutex::new(Status::default()),
        });
        let rendered = render(&proxy.cfg);
        if proxy.workers().await.is_ok() {
            tracing::info!(dir = %proxy.files.dir.display(), "adopting the running HAProxy");
            let on_disk = std::fs::read_to_string(&proxy.files.cfg).unwrap_or_default();
            if on_disk != rendered {
                // The settings changed while Pier was down.
                if let Err(e) = proxy.reload().await {
                    tracing::error!(error = %e, "HAProxy keeps its previous configuration");
                }
            } else {
                // Its routes may trail the map file (Pier stopped between file and socket).
                proxy.routes.lock().await.stale = true;
            }
            proxy.resync_if_stale().await;
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
        let routes = self.routes.lock().await.map.len();
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
        let _routes = self.routes.lock().await;
        self.reload_locked().await
    }

    async fn reload_locked(&self) -> anyhow::Result<()> {
        let before = self.workers().await?;
        if let Err(e) = write_checked(&self.files, &render(&self.cfg)) {
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

    /// Serves `name` with this certificate from now on: the PEM file (chain then key, mode 0600)
    /// is written and listed in the certificate list first, then the running HAProxy gets it
    /// through the runtime API (`set ssl cert` + `commit ssl cert` for a name it has, `new ssl
    /// cert` and `add ssl crt-list` for a new one). No reload; if the runtime API fails, a
    /// validated reload from the files.
    pub async fn install_certificate(
        &self,
        name: &str,
        chain: &str,
        key: &str,
    ) -> anyhow::Result<()> {
        if !is_routable(name) || name.starts_with("*.") {
            bail!("refusing a certificate file for {name:?}");
        }
        let bundle: String = format!("{chain}\n{key}")
            .lines()
            .map(str::trim_end)
            .filter(|l| !l.is_empty())
            .map(|l| format!("{l}\n"))
            .collect();
        let routes = self.routes.lock().await;
        let dir = self.files.dir.join("certs");
        private_dir(&dir)?;
        let path = dir.join(format!("{name}.pem"));
        let file = runtime::checked_path(&path)?;
        let list = std::fs::read_to_string(&self.cfg.crt_list).unwrap_or_default();
        let listed = list.lines().any(|l| l.trim() == file);
        if std::fs::read_to_string(&path).is_ok_and(|old| old == bundle) && listed {
            // Already there; HAProxy loaded it (at start or when it was installed).
            return Ok(());
        }
        write_atomic(&path, bundle.as_bytes(), 0o600)?;
        if !listed {
            write_atomic(
                &self.cfg.crt_list,
                format!("{list}{file}\n").as_bytes(),
                0o600,
            )?;
        }
        let socket = &self.cfg.stats_socket;
        let crt_list = runtime::checked_path(&self.cfg.crt_list)?;
        let live = async {
            let exists = runtime::command(socket, &format!("show ssl cert {file}"))
                .await
                .map(|a| a.contains("Serial:"))?;
            if !exists {
                expect_ok(
                    runtime::command(socket, &format!("new ssl cert {file}")).await?,
                    "New empty certificate",
                )?;
            }
            expect_ok(
                runtime::command_with_pem(socket, &format!("set ssl cert {file}"), &bundle).await?,
                "Transaction created",
            )?;
            expect_ok(
                runtime::command(socket, &format!("commit ssl cert {file}")).await?,
                "Success!",
            )?;
            if !exists {
                expect_ok(
                    runtime::command(socket, &format!("add ssl crt-list {crt_list} {file}"))
                        .await?,
                    "Success!",
                )?;
            }
            anyhow::Ok(())
        }
        .await;
        if let Err(e) = live {
            tracing::warn!(
                error = format!("{e:#}"),
                domain = name,
                "runtime certificate update failed; reloading HAProxy"
            );
            let _ = runtime::command(socket, &format!("abort ssl cert {file}")).await;
            self.reload_locked().await?;
        }
        drop(routes);
        Ok(())
    }

    /// The names with a certificate file of their own (`<dir>/certs/<name>.pem`).
    pub fn installed_certificates(&self) -> anyhow::Result<Vec<String>> {
        let dir = self.files.dir.join("certs");
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).context("reading the certificate directory"),
        };
        let mut names = Vec::new();
        for entry in entries {
            let file = entry?.file_name();
            if let Some(name) = file.to_str().and_then(|f| f.strip_suffix(".pem")) {
                names.push(name.to_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    /// Stops serving `name`'s certificate: out of the running HAProxy (`del ssl crt-list`, `del
    /// ssl cert`), out of the certificate list and off the disk. HTTPS for the name falls back
    /// to the default certificate. A runtime failure is repaired by a validated reload.
    pub async fn remove_certificate(&self, name: &str) -> anyhow::Result<()> {
        if !is_routable(name) || name.starts_with("*.") {
            bail!("refusing a certificate file for {name:?}");
        }
        let routes = self.routes.lock().await;
        let path = self.files.dir.join("certs").join(format!("{name}.pem"));
        let file = runtime::checked_path(&path)?;
        let list = std::fs::read_to_string(&self.cfg.crt_list).unwrap_or_default();
        let kept: String = list
            .lines()
            .filter(|l| l.trim() != file)
            .map(|l| format!("{l}\n"))
            .collect();
        if kept != list {
            write_atomic(&self.cfg.crt_list, kept.as_bytes(), 0o600)?;
        }
        let socket = &self.cfg.stats_socket;
        let crt_list = runtime::checked_path(&self.cfg.crt_list)?;
        let live = async {
            let listed = runtime::command(socket, &format!("show ssl crt-list {crt_list}"))
                .await?
                .lines()
                .any(|l| l.split_whitespace().next() == Some(file.as_str()));
            if listed {
                expect_ok(
                    runtime::command(socket, &format!("del ssl crt-list {crt_list} {file}"))
                        .await?,
                    "deleted",
                )?;
            }
            let loaded = runtime::command(socket, &format!("show ssl cert {file}"))
                .await
                .map(|a| a.contains("Serial:"))?;
            if loaded {
                expect_ok(
                    runtime::command(socket, &format!("del ssl cert {file}")).await?,
                    "deleted",
                )?;
            }
            anyhow::Ok(())
        }
        .await;
        if let Err(e) = live {
            tracing::warn!(
                error = format!("{e:#}"),
                domain = name,
                "runtime certificate removal failed; reloading HAProxy"
            );
            self.reload_locked().await?;
        }
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).context("removing a certificate file"),
        }
        drop(routes);
        Ok(())
    }

    /// The routes as Pier last set them.
    pub async fn routes(&self) -> BTreeMap<String, u16> {
        self.routes.lock().await.map.clone()
    }

    async fn resync_if_stale(&self) {
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
            // The files already say everything: the map is written before every change.
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

/// A runtime API answer that must contain `want`.
fn expect_ok(answer: String, want: &str) -> anyhow::Result<()> {
    if answer.contains(want) {
        Ok(())
    } else {
        bail!("HAProxy answered: {answer}")
    }
}

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
fn is_routable(h: &str) -> bool {
    pier_core::validate::domain(h, true).is_ok_and(|n| n == h)
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
fn parse_map(text: &str) -> BTreeMap<String, u16> {
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
