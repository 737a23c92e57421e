//! restic, driven as a process with its JSON output: an encrypted, deduplicated repository
//! (unchanged data is never stored or uploaded twice), snapshots with tags, restores, tar
//! dumps and retention. Debian's `restic` package; the repository format is restic's own, so
//! an operator can open it with restic by hand. Its password is derived from the operator's
//! secret key (`Pier::backup_password`).
//!
//! Every argument Pier passes is its own (paths it made, tags from ids, snapshot ids restic
//! printed and checked against a strict grammar); nothing a tenant typed reaches the command
//! line. The environment is cleared, so no stray `AWS_*` or `RESTIC_*` variable of the
//! operator's shell changes where data goes.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::Stdio,
    sync::{Arc, Mutex, OnceLock},
    time::{Duration, Instant},
};

use serde::Deserialize;
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, BufReader},
    process::{Child, Command},
};

/// What went wrong, in words for the app page (restic's own last lines).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ResticError(pub String);

type Result<T> = std::result::Result<T, ResticError>;

/// Restic locks a repository exclusively while it prunes, and then every other command fails at
/// once ("already locked"; 0.14 cannot wait). Within Pier, commands take this lock first:
/// shared for reading and adding, exclusive for pruning. Another process (`pier backup` while
/// `pier serve` runs) is waited for by retrying.
fn repo_lock(repository: &str) -> Arc<tokio::sync::RwLock<()>> {
    static LOCKS: OnceLock<Mutex<HashMap<String, Arc<tokio::sync::RwLock<()>>>>> = OnceLock::new();
    LOCKS
        .get_or_init(Default::default)
        .lock()
        .expect("restic locks")
        .entry(repository.to_owned())
        .or_default()
        .clone()
}

/// How often, and how far apart, a command that found the repository locked is tried again.
const LOCK_RETRIES: u32 = 60;
const LOCK_RETRY_EVERY: Duration = Duration::from_secs(2);

fn locked(e: &ResticError) -> bool {
    e.0.contains("already locked")
}

/// A repository and how to open it.
#[derive(Clone)]
pub struct Restic {
    repository: String,
    cache: PathBuf,
    password: String,
    /// For S3: the credentials and region (AWS_* variables restic reads).
    env: Vec<(String, String)>,
}

impl std::fmt::Debug for Restic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Restic")
            .field("repository", &self.repository)
            .finish_non_exhaustive()
    }
}

/// Progress of a running backup.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    pub bytes_done: u64,
    pub total_bytes: u64,
    pub files_done: u64,
}

/// A snapshot in the repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    pub short_id: String,
    /// For a copy: the short id of the snapshot it was first copied from.
    pub original: Option<String>,
    /// Unix seconds.
    pub time: i64,
    pub tags: Vec<String>,
}

/// A finished backup.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub snapshot_id: String,
    pub bytes: u64,
    pub files: u64,
    pub data_added: u64,
}

#[derive(Deserialize)]
struct Line {
    message_type: String,
    #[serde(default)]
    bytes_done: u64,
    #[serde(default)]
    total_bytes: u64,
    #[serde(default)]
    files_done: u64,
    #[serde(default)]
    snapshot_id: String,
    #[serde(default)]
    total_bytes_processed: u64,
    #[serde(default)]
    total_files_processed: u64,
    #[serde(default)]
    data_added: u64,
}

/// One line of `backup --json`: progress, the summary, or something else.
fn parse_line(line: &str) -> Option<Result<std::result::Result<Progress, Summary>>> {
    let l: Line = serde_json::from_str(line).ok()?;
    match l.message_type.as_str() {
        "status" => Some(Ok(Ok(Progress {
            bytes_done: l.bytes_done,
            total_bytes: l.total_bytes,
            files_done: l.files_done,
        }))),
        "summary" => Some(match snapshot_id(&l.snapshot_id) {
            Some(id) => Ok(Err(Summary {
                snapshot_id: id.to_owned(),
                bytes: l.total_bytes_processed,
                files: l.total_files_processed,
                data_added: l.data_added,
            })),
            None => Err(ResticError("restic named no snapshot".into())),
        }),
        _ => None,
    }
}

/// A restic snapshot id (short or long): lowercase hex only.
pub fn snapshot_id(s: &str) -> Option<&str> {
    (8..=64).contains(&s.len()).then_some(s).filter(|s| {
        s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// The last few lines restic wrote to stderr, for a failure's reason.
fn reason(stderr: &str, status: std::process::ExitStatus) -> ResticError {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let tail = lines[lines.len().saturating_sub(3)..].join(" ");
    // Said early in restic's message, which the tail may not include: kept so it is retried.
    if stderr.contains("already locked") {
        return ResticError(format!(
            "restic failed: the repository is already locked by another restic: {}",
            tail.chars().take(300).collect::<String>()
        ));
    }
    ResticError(if tail.is_empty() {
        format!("restic failed ({status})")
    } else {
        format!(
            "restic failed: {}",
            tail.chars().take(500).collect::<String>()
        )
    })
}

/// Repositories are looked for and made one at a time: two `restic init` at once on the same
/// new repository interleave (one's key, the other's config) and leave it unreadable to one of
/// them. Rare (once per repository), so one lock for all.
static CREATING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

impl Restic {
    /// `repository`: a local directory or any restic location (`s3:…`).
    pub fn new(repository: impl Into<String>, cache: PathBuf, password: String) -> Self {
        Restic {
            repository: repository.into(),
            cache,
            password,
            env: Vec::new(),
        }
    }

    /// An S3 repository: the bucket's credentials and region go to restic in its environment.
    pub fn with_s3(mut self, access_key: &str, secret: &str, region: &str) -> Self {
        self.env = vec![
            ("AWS_ACCESS_KEY_ID".into(), access_key.into()),
            ("AWS_SECRET_ACCESS_KEY".into(), secret.into()),
            ("AWS_DEFAULT_REGION".into(), region.into()),
        ];
        self
    }

    pub fn repository(&self) -> &str {
        &self.repository
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("restic");
        c.env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("HOME", &self.cache)
            .env("RESTIC_REPOSITORY", &self.repository)
            .env("RESTIC_PASSWORD", &self.password)
            .env("RESTIC_CACHE_DIR", &self.cache)
            .env("RESTIC_PROGRESS_FPS", "2")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        c
    }

    /// Runs a command to the end, waiting for Pier's own pruning and retrying while another
    /// process has the repository locked.
    async fn output(&self, args: &[&str]) -> Result<String> {
        let exclusive = args.first() == Some(&"forget") || args.first() == Some(&"prune");
        let lock = repo_lock(&self.repository);
        let mut tries = 0;
        loop {
            let r = if exclusive {
                let _w = lock.write().await;
                self.output_once(args).await
            } else {
                let _r = lock.read().await;
                self.output_once(args).await
            };
            match r {
                Err(e) if locked(&e) && tries < LOCK_RETRIES => {
                    tries += 1;
                    tokio::time::sleep(LOCK_RETRY_EVERY).await;
                }
                other => return other,
            }
        }
    }

    async fn output_once(&self, args: &[&str]) -> Result<String> {
        let out = self
            .command(args)
            .output()
            .await
            .map_err(|e| ResticError(format!("restic could not be run: {e}")))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(reason(&String::from_utf8_lossy(&out.stderr), out.status))
        }
    }

    /// Makes the repository unless it exists, and removes locks left by a restic that died
    /// (Pier is the only one using it).
    pub async fn prepare(&self) -> Result<()> {
        let _one = CREATING.lock().await;
        if let Err(e) = self.output(&["cat", "config"]).await {
            if !e.0.contains("Is there a repository") {
                return Err(e);
            }
            crate::files::private_dir(&self.cache)
                .map_err(|e| ResticError(format!("restic's cache directory: {e}")))?;
            self.output(&["init"]).await?;
            tracing::info!(repository = %self.repository, "backup repository made");
        }
        self.output(&["unlock"]).await.map(|_| ())
    }

    /// Makes this repository (unless it exists) as a copy target of `from`: the same chunking,
    /// so what one stores is deduplicated in the other.
    pub async fn prepare_copy_of(&self, from: &Restic) -> Result<()> {
        let _one = CREATING.lock().await;
        if let Err(e) = self.output(&["cat", "config"]).await {
            if !e.0.contains("Is there a repository") {
                return Err(e);
            }
            crate::files::private_dir(&self.cache)
                .map_err(|e| ResticError(format!("restic's cache directory: {e}")))?;
            self.with_source(from)
                .output(&[
                    "init",
                    "--copy-chunker-params",
                    "--from-repo",
                    &from.repository,
                ])
                .await?;
            tracing::info!(repository = %self.repository, "backup copy repository made");
        }
        // A Pier stopped mid-prune leaves its lock behind; restic removes it once stale.
        self.unlock_stale().await;
        Ok(())
    }

    /// Removes locks whose restic is gone (same host, dead process) or older than 30 minutes.
    pub async fn unlock_stale(&self) {
        if let Err(e) = self.output(&["unlock"]).await {
            tracing::debug!(repository = %self.repository, error = %e, "unlock failed");
        }
    }

    /// Copies every snapshot of `from` this repository does not have yet.
    pub async fn copy_from(&self, from: &Restic) -> Result<()> {
        // Pier's lock of the source is not held: an upload can take hours, and its pruning
        // (exclusive) would queue every local backup behind it. restic's own lock keeps the
        // source whole; a prune that meets it is retried, then left for the next time.
        self.with_source(from)
            .output(&["copy", "--from-repo", &from.repository])
            .await
            .map(|_| ())
    }

    /// This repository, told how to open `from` (restic's RESTIC_FROM_PASSWORD).
    fn with_source(&self, from: &Restic) -> Restic {
        let mut r = self.clone();
        r.env
            .push(("RESTIC_FROM_PASSWORD".into(), from.password.clone()));
        for (k, v) in &from.env {
            if !r.env.iter().any(|(have, _)| have == k) {
                r.env.push((k.clone(), v.clone()));
            }
        }
        r
    }

    /// Backs up the contents of `dir` (its entries become the snapshot's top level), calling
    /// `progress` as restic reports.
    pub async fn backup(
        &self,
        dir: &Path,
        tags: &[&str],
        host: &str,
        mut progress: impl FnMut(Progress),
    ) -> Result<Summary> {
        let lock = repo_lock(&self.repository);
        let _shared = lock.read().await;
        let mut tries = 0;
        loop {
            match self.backup_once(dir, tags, host, &mut progress).await {
                Err(e) if locked(&e) && tries < LOCK_RETRIES => {
                    tries += 1;
                    tokio::time::sleep(LOCK_RETRY_EVERY).await;
                }
                other => return other,
            }
        }
    }

    async fn backup_once(
        &self,
        dir: &Path,
        tags: &[&str],
        host: &str,
        progress: &mut impl FnMut(Progress),
    ) -> Result<Summary> {
        let mut args = vec!["backup", "--json", "--host", host];
        for t in tags {
            args.extend(["--tag", t]);
        }
        args.push(".");
        let child = self
            .command(&args)
            .current_dir(dir)
            .spawn()
            .map_err(|e| ResticError(format!("restic could not be run: {e}")))?;
        follow(child, progress).await
    }

    /// Backs up what `feed` writes to restic's standard input, as the file `/<name>` of the
    /// snapshot; `feed` gets the pipe and returns once it is done writing (dropping it ends the
    /// input). Its own result comes back beside restic's: a snapshot is taken even when the
    /// feed fails, and the caller forgets it then. Not retried when another process holds the
    /// repository (the input cannot be read twice): the caller's schedule retries.
    pub async fn backup_stdin<F, Fut, T>(
        &self,
        name: &str,
        tags: &[&str],
        host: &str,
        mut progress: impl FnMut(Progress),
        feed: F,
    ) -> (Result<Summary>, Option<T>)
    where
        F: FnOnce(tokio::process::ChildStdin) -> Fut,
        Fut: std::future::Future<Output = T>,
    {
        let lock = repo_lock(&self.repository);
        let _shared = lock.read().await;
        let stdin_name = name.to_string();
        let mut args = vec![
            "backup",
            "--json",
            "--host",
            host,
            "--stdin",
            "--stdin-filename",
            &stdin_name,
        ];
        for t in tags {
            args.extend(["--tag", t]);
        }
        let mut child = match self.command(&args).stdin(Stdio::piped()).spawn() {
            Ok(c) => c,
            Err(e) => {
                return (
                    Err(ResticError(format!("restic could not be run: {e}"))),
                    None,
                )
            }
        };
        let input = child.stdin.take().expect("piped");
        let (summary, fed) = tokio::join!(follow(child, &mut progress), feed(input));
        (summary, Some(fed))
    }

    /// The total size of the data the snapshots with `tag` need, as stored (after
    /// deduplication and compression).
    pub async fn stored_bytes(&self, tag: &str) -> Result<u64> {
        let out = self
            .output(&["stats", "--json", "--mode", "raw-data", "--tag", tag])
            .await?;
        #[derive(Deserialize)]
        struct Stats {
            #[serde(default)]
            total_size: u64,
        }
        serde_json::from_str::<Stats>(out.trim())
            .map(|s| s.total_size)
            .map_err(|e| ResticError(format!("restic stats: {e}")))
    }
}

/// Reads a running `restic backup --json` to its end: progress to `progress`, then its summary.
async fn follow(mut child: Child, progress: &mut impl FnMut(Progress)) -> Result<Summary> {
    let stderr = collect_stderr(&mut child);
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    let mut summary = None;
    let mut bad = None;
    while let Ok(Some(line)) = lines.next_line().await {
        match parse_line(&line) {
            Some(Ok(Ok(p))) => progress(p),
            Some(Ok(Err(s))) => summary = Some(s),
            Some(Err(e)) => bad = Some(e),
            None => {}
        }
    }
    let status = child
        .wait()
        .await
        .map_err(|e| ResticError(format!("restic: {e}")))?;
    let stderr = stderr.await.unwrap_or_default();
    // Exit 3: some files could not be read; the snapshot exists but is incomplete.
    if !status.success() {
        return Err(reason(&stderr, status));
    }
    if let Some(e) = bad {
        return Err(e);
    }
    summary.ok_or_else(|| ResticError("restic ended without a summary".into()))
}

impl Restic {
    /// The top-level directory names of a snapshot.
    pub async fn top_level(&self, id: &str) -> Result<Vec<String>> {
        let id = checked(id)?;
        let out = self.output(&["ls", "--json", id, "/"]).await?;
        #[derive(Deserialize)]
        struct Node {
            #[serde(default)]
            struct_type: String,
            #[serde(default)]
            path: String,
            #[serde(default, rename = "type")]
            kind: String,
        }
        Ok(out
            .lines()
            .filter_map(|l| serde_json::from_str::<Node>(l).ok())
            .filter(|n| n.struct_type == "node" && n.kind == "dir")
            .filter_map(|n| n.path.strip_prefix('/').map(str::to_owned))
            .filter(|p| !p.is_empty() && !p.contains('/'))
            .collect())
    }

    /// Restores the top-level directories `include` of a snapshot into `target` (each into
    /// `target/<name>`, which exists and is empty).
    pub async fn restore(&self, id: &str, target: &Path, include: &[String]) -> Result<()> {
        let id = checked(id)?;
        let target = target.to_string_lossy();
        let mut args = vec!["restore", id, "--target", &*target];
        let includes: Vec<String> = include.iter().map(|d| format!("/{d}")).collect();
        for i in &includes {
            args.extend(["--include", i]);
        }
        self.output(&args).await.map(|_| ())
    }

    /// Forgets snapshots by id (their data goes at the next prune).
    pub async fn forget_ids(&self, ids: &[String]) -> Result<()> {
        let mut args = vec!["forget"];
        for id in ids {
            args.push(checked(id)?);
        }
        self.output(&args).await.map(|_| ())
    }

    /// Applies a retention policy to the snapshots with `tag` and removes the data no kept
    /// snapshot needs. The ids (short) of the snapshots removed.
    pub async fn forget(
        &self,
        tag: &str,
        keep: &pier_core::backups::BackupPolicy,
    ) -> Result<Vec<String>> {
        let (keep_daily, keep_weekly) = (keep.keep_daily, keep.keep_weekly);
        let (last, daily, weekly) = (
            keep.keep_last.to_string(),
            keep_daily.to_string(),
            keep_weekly.to_string(),
        );
        let mut args = vec![
            "forget",
            "--json",
            "--tag",
            tag,
            "--group-by",
            "host",
            "--keep-last",
            &last,
        ];
        if keep_daily > 0 {
            args.extend(["--keep-daily", &daily]);
        }
        if keep_weekly > 0 {
            args.extend(["--keep-weekly", &weekly]);
        }
        args.push("--prune");
        let out = self.output(&args).await?;
        // The JSON is the first line; prune's report follows as text.
        #[derive(Deserialize)]
        struct Group {
            remove: Option<Vec<Snap>>,
        }
        #[derive(Deserialize)]
        struct Snap {
            short_id: String,
        }
        let groups: Vec<Group> = out
            .lines()
            .find_map(|l| serde_json::from_str(l).ok())
            .unwrap_or_default();
        Ok(groups
            .into_iter()
            .flat_map(|g| g.remove.unwrap_or_default())
            .map(|s| s.short_id)
            .collect())
    }

    /// The snapshots with `tag` (all without one), oldest first.
    pub async fn snapshots(&self, tag: Option<&str>) -> Result<Vec<SnapshotInfo>> {
        let mut args = vec!["snapshots", "--json"];
        if let Some(t) = tag {
            args.extend(["--tag", t]);
        }
        let out = self.output(&args).await?;
        #[derive(Deserialize)]
        struct Raw {
            time: String,
            short_id: String,
            #[serde(default)]
            original: Option<String>,
            #[serde(default)]
            tags: Vec<String>,
        }
        let raw: Vec<Raw> = serde_json::from_str(out.trim())
            .map_err(|e| ResticError(format!("restic's snapshot list: {e}")))?;
        let mut list: Vec<SnapshotInfo> = raw
            .into_iter()
            .filter(|r| snapshot_id(&r.short_id).is_some())
            .map(|r| SnapshotInfo {
                time: time::OffsetDateTime::parse(
                    &r.time,
                    &time::format_description::well_known::Rfc3339,
                )
                .map(|t| t.unix_timestamp())
                .unwrap_or(0),
                short_id: r.short_id,
                original: r
                    .original
                    .as_deref()
                    .and_then(|o| o.get(..8))
                    .and_then(snapshot_id)
                    .map(str::to_owned),
                tags: r.tags,
            })
            .collect();
        list.sort_by_key(|s| s.time);
        Ok(list)
    }

    /// Adds a key to the repository: it opens with `password` from now on too.
    pub async fn add_key(&self, password: &str) -> Result<()> {
        use tokio::io::AsyncWriteExt;
        let mut child = self
            .command(&["key", "add", "--new-password-file", "/dev/stdin"])
            .stdin(Stdio::piped())
            .spawn()
            .map_err(|e| ResticError(format!("restic could not be run: {e}")))?;
        let mut stdin = child.stdin.take().expect("piped");
        stdin
            .write_all(format!("{password}\n").as_bytes())
            .await
            .map_err(|e| ResticError(format!("restic: {e}")))?;
        drop(stdin);
        let out = child
            .wait_with_output()
            .await
            .map_err(|e| ResticError(format!("restic: {e}")))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(reason(&String::from_utf8_lossy(&out.stderr), out.status))
        }
    }

    /// A snapshot as a tar stream; restic runs until it is read to the end or dropped. Waits
    /// for Pier's own pruning to end first. When restic fails mid-way the stream ends with an
    /// error rather than just ending, so a download is cut off (the client sees an incomplete
    /// transfer) instead of looking like a whole, shorter tar.
    pub async fn dump(
        &self,
        id: &str,
    ) -> Result<futures_util::stream::BoxStream<'static, std::io::Result<axum::body::Bytes>>> {
        use futures_util::StreamExt;
        let id = checked(id)?.to_owned();
        let shared = repo_lock(&self.repository).read_owned().await;
        let mut child = self
            .command(&["dump", "--archive", "tar", &id, "/"])
            .spawn()
            .map_err(|e| ResticError(format!("restic could not be run: {e}")))?;
        let stdout = child.stdout.take().expect("piped");
        let stderr = collect_stderr(&mut child);
        let end = futures_util::stream::once(async move {
            let _shared = shared;
            let why = match child.wait().await {
                Ok(status) if status.success() => return None,
                Ok(status) => reason(&stderr.await.unwrap_or_default(), status).0,
                Err(e) => e.to_string(),
            };
            tracing::warn!(snapshot = %id, error = %why, "restic dump failed");
            Some(Err(std::io::Error::other(format!(
                "restic dump failed: {why}"
            ))))
        })
        .filter_map(std::future::ready);
        Ok(tokio_util::io::ReaderStream::new(stdout).chain(end).boxed())
    }

    /// One file of a snapshot (`/dump`, a command's output) written to `to` as it was stored;
    /// an error (and no file) when it cannot be read whole.
    pub async fn dump_file(&self, id: &str, name: &str, to: &Path) -> Result<()> {
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(ResticError(format!("{name:?} is not a file Pier writes")));
        }
        let id = checked(id)?;
        let file = std::fs::File::create(to)
            .map_err(|e| ResticError(format!("could not write {}: {e}", to.display())))?;
        let path = format!("/{name}");
        let _shared = repo_lock(&self.repository).read_owned().await;
        // Spawned, not `output()`: that would pipe standard output instead of the file.
        let out = match self
            .command(&["dump", id, &path])
            .stdout(Stdio::from(file))
            .spawn()
        {
            Ok(child) => child
                .wait_with_output()
                .await
                .map_err(|e| ResticError(format!("restic: {e}"))),
            Err(e) => Err(ResticError(format!("restic could not be run: {e}"))),
        };
        match out {
            Ok(o) if o.status.success() => Ok(()),
            Ok(o) => {
                let _ = std::fs::remove_file(to);
                Err(reason(&String::from_utf8_lossy(&o.stderr), o.status))
            }
            Err(e) => {
                let _ = std::fs::remove_file(to);
                Err(e)
            }
        }
    }

    /// Forgets snapshots by id and removes the data nothing else needs.
    pub async fn forget_and_prune(&self, ids: &[String]) -> Result<()> {
        let mut args = vec!["forget", "--prune"];
        for id in ids {
            args.push(checked(id)?);
        }
        self.output(&args).await.map(|_| ())
    }
}

fn checked(id: &str) -> Result<&str> {
    snapshot_id(id).ok_or_else(|| ResticError(format!("{id:?} is not a snapshot id")))
}

/// Reads the child's stderr to the end in the background (so it never blocks on a full pipe).
fn collect_stderr(child: &mut Child) -> tokio::task::JoinHandle<String> {
    let mut err = child.stderr.take().expect("piped");
    tokio::spawn(async move {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s).await;
        s
    })
}

/// Calls `f` at most every `every`, and always for the last value.
pub struct Throttled {
    last: Option<Instant>,
    every: Duration,
}

impl Throttled {
    pub fn new(every: Duration) -> Self {
        Throttled { last: None, every }
    }

    pub fn ready(&mut self) -> bool {
        let ready = self.last.is_none_or(|l| l.elapsed() >= self.every);
        if ready {
            self.last = Some(Instant::now());
        }
        ready
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn two_backups_asked_for_at_once_both_find_the_repository_made() {
        let dir = std::env::temp_dir().join(format!(
            "pier-restic-race-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let repo = dir.join("repo").display().to_string();
        let restic =
            |n: u32| super::Restic::new(repo.clone(), dir.join(format!("cache{n}")), "pw".into());
        let (a, b) = (restic(1), restic(2));
        let (ra, rb) = tokio::join!(a.prepare(), b.prepare());
        std::fs::remove_dir_all(&dir).ok();
        ra.unwrap();
        rb.unwrap();
    }

    use super::*;

    #[test]
    fn backup_json_lines() {
        let status = r#"{"message_type":"status","percent_done":0.5,"total_files":2,"files_done":1,"total_bytes":8,"bytes_done":4,"current_files":["/v1/a.txt"]}"#;
        assert_eq!(
            parse_line(status).unwrap().unwrap(),
            Ok(Progress {
                bytes_done: 4,
                total_bytes: 8,
                files_done: 1
            })
        );
        let summary = r#"{"message_type":"summary","files_new":2,"files_changed":0,"files_unmodified":0,"dirs_new":3,"dirs_changed":0,"dirs_unmodified":0,"data_blobs":2,"tree_blobs":4,"data_added":1757,"total_files_processed":2,"total_bytes_processed":8,"total_duration":0.25,"snapshot_id":"119d3851"}"#;
        assert_eq!(
            parse_line(summary).unwrap().unwrap(),
            Err(Summary {
                snapshot_id: "119d3851".into(),
                bytes: 8,
                files: 2,
                data_added: 1757
            })
        );
        let forged = r#"{"message_type":"summary","snapshot_id":"--target=/"}"#;
        assert!(parse_line(forged).unwrap().is_err());
        assert!(parse_line("not json").is_none());
        assert!(parse_line(r#"{"message_type":"verbose_status"}"#).is_none());
    }

    #[test]
    fn only_hex_ids_reach_the_command_line() {
        assert!(snapshot_id("119d3851").is_some());
        assert!(snapshot_id(&"a".repeat(64)).is_some());
        for bad in [
            "",
            "119d385",
            "latest",
            "119D3851",
            "119d3851 ",
            "-119d3851",
            &"a".repeat(65),
        ] {
            assert!(snapshot_id(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn reasons_are_restics_last_lines() {
        use std::os::unix::process::ExitStatusExt;
        let st = std::process::ExitStatus::from_raw(256);
        let r = reason(
            "a\n\nFatal: unable to open repository\nIs there a repository?\n",
            st,
        );
        assert_eq!(
            r.0,
            "restic failed: a Fatal: unable to open repository Is there a repository?"
        );
        assert!(reason("", st).0.starts_with("restic failed ("));
    }
}
