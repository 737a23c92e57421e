//! The backup worker: queues scheduled snapshots, then takes snapshots and runs restores one
//! at a time, recording progress and outcome on their rows.
//!
//! A snapshot mounts the app's volumes under `stage/` (a second mount of file systems its
//! container may have mounted too), makes them consistent as the app's policy says (pause or
//! stop its container), hands the directory to restic, and lets the container go again
//! whatever happened. While it works on an app, the app is held: the reconciler neither starts,
//! stops nor replaces its container. A panel that dies mid-way leaves no trace that lasts: at
//! start the worker fails the rows left running, unpauses containers it paused and unmounts
//! what it mounted; the reconciler restarts what it stopped.

pub mod panel;
pub mod restic;

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use pier_core::{
    backups::{Consistency, Snapshot, Trigger},
    now,
    repo::{self, backups::Job},
    runtime::{volume_name, Container},
    Pier,
};

use self::restic::{Restic, Throttled};

/// The worker's directories under the backup directory.
pub struct Dirs {
    pub repo: PathBuf,
    pub cache: PathBuf,
    pub stage: PathBuf,
}

impl Dirs {
    pub fn in_dir(dir: &Path) -> Dirs {
        Dirs {
            repo: dir.join("repo"),
            cache: dir.join("cache"),
            stage: dir.join("stage"),
        }
    }
}

/// The local repository of this panel, when backups are on.
pub fn local_repository(pier: &Pier) -> Option<Restic> {
    let dir = pier.settings().backups.dir.as_ref()?;
    let d = Dirs::in_dir(dir);
    Some(Restic::new(
        d.repo.to_string_lossy().into_owned(),
        d.cache,
        pier.backup_password(),
    ))
}

/// A done snapshot as a tar download, streamed: restic writes it as it reads, never all in
/// memory. The caller has checked that the snapshot is the caller's.
pub async fn tar_download(
    pier: &Pier,
    app: &str,
    snap: &Snapshot,
) -> Result<axum::response::Response, pier_core::Error> {
    use axum::{http::header, response::IntoResponse};
    let Some(rid) = snap
        .restic_id
        .as_deref()
        .filter(|_| snap.state == pier_core::backups::JobState::Done)
    else {
        return Err(pier_core::Error::Conflict(
            "Only a finished snapshot can be downloaded.".into(),
        ));
    };
    let restic = local_repository(pier).ok_or_else(|| {
        pier_core::Error::Unavailable("Backups are not set up on this server.".into())
    })?;
    let stream = restic
        .dump(rid)
        .await
        .map_err(|e| pier_core::Error::internal(format!("restic dump: {e}")))?;
    let body = axum::body::Body::from_stream(stream);
    let file = format!("{app}-backup-{}.tar", snap.id);
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-tar".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file}\""),
            ),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
        body,
    )
        .into_response())
}

/// Starts the worker when backups are on.
pub fn spawn(pier: Pier) -> Option<tokio::task::JoinHandle<()>> {
    let dir = pier.settings().backups.dir.clone()?;
    Some(tokio::spawn(run(pier, dir)))
}

/// Restic's tag of an app's snapshots: unique across installations sharing a repository.
fn app_tag(instance: &str, app_id: i64) -> String {
    format!("pier-{instance}-app-{app_id}")
}

async fn run(pier: Pier, dir: PathBuf) {
    let dirs = Dirs::in_dir(&dir);
    let restic = local_repository(&pier).expect("backups are on");
    let mut swept: Option<Instant> = None;
    let mut copies: Option<AbortOnDrop> = None;
    let mut ready = false;
    let mut failures = 0u32;
    loop {
        if !ready {
            match recover(&pier, &dirs, &restic).await {
                Ok(()) => {
                    ready = true;
                    // Copies run beside the local jobs: a bucket that hangs never holds up a
                    // snapshot or a restore.
                    copies.get_or_insert_with(|| {
                        AbortOnDrop(tokio::spawn(copy_loop(
                            pier.clone(),
                            dir.clone(),
                            restic.clone(),
                        )))
                    });
                }
                Err(e) => {
                    // Loud: what was asked for fails with the reason instead of waiting.
                    tracing::warn!(
                        error = format!("{e:#}"),
                        "backup worker not ready; retrying"
                    );
                    let why = format!("Backups cannot run on this server now: {e:#}");
                    if let Err(e) = repo::backups::fail_queued(pier.db(), &why, now()).await {
                        tracing::warn!(error = %e, "could not record failed backups");
                    }
                }
            }
        }
        let wait = if ready {
            let r = round(&pier, &dirs, &restic).await;
            let every = Duration::from_secs(pier.settings().backups.sweep_every_secs.max(1));
            if swept.is_none_or(|t| t.elapsed() >= every) {
                swept = Some(Instant::now());
                sweep(&pier, &restic).await;
            }
            match r {
                Ok(()) => {
                    failures = 0;
                    Duration::from_secs(pier.settings().backups.check_every_secs.max(1))
                }
                Err(e) => {
                    failures = (failures + 1).min(6);
                    tracing::warn!(error = %e, "backup round failed");
                    Duration::from_secs(5 << failures)
                }
            }
        } else {
            Duration::from_secs(30)
        };
        tokio::select! {
            _ = pier.backups_woken() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Aborts its task when dropped (the copy loop ends with the worker).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Copies snapshots to the offsite target, looking as often as the scheduler does (a copy
/// follows a snapshot within that time), and sweeps the bucket like the local repository.
async fn copy_loop(pier: Pier, dir: PathBuf, local: Restic) {
    let dirs = Dirs::in_dir(&dir);
    let mut offsite = Offsite::default();
    // The bucket's first sweep after the interval, not at start.
    let mut swept = Instant::now();
    loop {
        offsite.sync(&pier, &dirs, &local).await;
        let every = Duration::from_secs(pier.settings().backups.sweep_every_secs.max(1));
        if swept.elapsed() >= every {
            swept = Instant::now();
            if let Ok(Some((_, target))) = pier.backup_target_access().await {
                let dest = Restic::new(
                    target.repository.clone(),
                    dirs.cache.clone(),
                    pier.backup_password(),
                )
                .with_s3(&target.access_key, &target.secret, &target.region);
                sweep(&pier, &dest).await;
            }
        }
        let wait = pier.settings().backups.check_every_secs.max(1);
        tokio::time::sleep(Duration::from_secs(wait)).await;
    }
}

/// Copies to the offsite target: after every change, with backoff after failures.
#[derive(Default)]
struct Offsite {
    next_try: Option<Instant>,
}

impl Offsite {
    async fn sync(&mut self, pier: &Pier, dirs: &Dirs, local: &Restic) {
        if self.next_try.is_some_and(|t| Instant::now() < t) {
            return;
        }
        let (view, target) = match pier.backup_target_access().await {
            Ok(Some(t)) => t,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "offsite target unreadable");
                return;
            }
        };
        let db = pier.db();
        let Ok(change) = repo::backups::latest_change(db).await else {
            return;
        };
        let needs_key = pier.passphrase_for_target().await.ok().flatten();
        let behind = change.is_some_and(|c| view.last_ok_at.is_none_or(|ok| c >= ok));
        if !behind && needs_key.is_none() && view.failures == 0 {
            return;
        }
        let started = now();
        let apps = repo::backup_target::apps_to_copy(db, started)
            .await
            .unwrap_or_default();
        let dest = Restic::new(
            target.repository.clone(),
            dirs.cache.clone(),
            pier.backup_password(),
        )
        .with_s3(&target.access_key, &target.secret, &target.region);
        let result = async {
            dest.prepare_copy_of(local).await?;
            if let Some(p) = &needs_key {
                dest.add_key(p).await?;
            }
            dest.copy_from(local).await
        }
        .await;
        match result {
            Ok(()) => {
                self.next_try = None;
                if needs_key.is_some() {
                    let _ = repo::backups::passphrase_added(db).await;
                }
                tracing::info!(repository = %dest.repository(), "snapshots copied offsite");
                // Recorded once the bucket's retention is applied too: a copy shown as done has
                // nothing of it still going on.
                retention_offsite(pier, &dest, &apps).await;
                if let Err(e) = repo::backup_target::copied(db, started, now()).await {
                    tracing::warn!(error = %e, "could not record the offsite copy");
                }
            }
            Err(e) => {
                let n = repo::backup_target::failed(db, &e.0, now())
                    .await
                    .unwrap_or(1);
                let base = pier.settings().backups.offsite_retry_secs.max(1);
                let wait = (base << (n.clamp(1, 12) - 1) as u32).min(3600);
                tracing::warn!(error = %e, retry_in_secs = wait, "copy to the offsite target failed");
                self.next_try = Some(Instant::now() + Duration::from_secs(wait));
            }
        }
    }
}

/// Removes from the repositories the snapshots of apps that were deleted (their rows went with
/// them, so nobody can restore them) and first passes a stop left behind (the worker takes one
/// snapshot at a time, so none is being taken now). Runs every few hours.
async fn sweep(pier: &Pier, restic: &Restic) {
    let Ok(instance) = pier.instance_id().await else {
        return;
    };
    let Ok(apps) = repo::apps::list_all(pier.db()).await else {
        return;
    };
    let live: HashSet<i64> = apps.iter().map(|a| a.id).collect();
    let snaps = match restic.snapshots(None).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(repository = %restic.repository(), error = %e, "sweep: snapshots not listed");
            return;
        }
    };
    let gone: Vec<String> = snaps
        .iter()
        .filter(|s| s.tags.iter().any(|t| leftover(&instance, t, &live)))
        .map(|s| s.short_id.clone())
        .collect();
    if gone.is_empty() {
        return;
    }
    match restic.forget_and_prune(&gone).await {
        Ok(()) => {
            tracing::info!(repository = %restic.repository(), snapshots = gone.len(), "data of deleted apps removed")
        }
        Err(e) => tracing::warn!(repository = %restic.repository(), error = %e, "sweep failed"),
    }
}

/// Whether a snapshot's tag marks it as left over: an app of this installation that no longer
/// exists, or a first pass.
fn leftover(instance: &str, tag: &str, live: &HashSet<i64>) -> bool {
    let Some(rest) = tag.strip_prefix(&format!("pier-{instance}-app-")) else {
        return false;
    };
    match rest.strip_suffix("-pre") {
        Some(_) => true,
        None => rest.parse::<i64>().is_ok_and(|id| !live.contains(&id)),
    }
}

/// The bucket keeps what the apps' policies keep, like the local repository.
async fn retention_offsite(pier: &Pier, dest: &Restic, apps: &[i64]) {
    let Ok(instance) = pier.instance_id().await else {
        return;
    };
    for &app_id in apps {
        let Ok(p) = pier.backup_policy(app_id).await else {
            continue;
        };
        if let Err(e) = dest
            .forget(
                &app_tag(&instance, app_id),
                p.keep_last,
                p.keep_daily,
                p.keep_weekly,
            )
            .await
        {
            tracing::warn!(app_id, error = %e, "offsite retention not applied");
        }
    }
    let p = pier_core::backups::PANEL_POLICY;
    let _ = dest
        .forget(
            &format!("pier-{instance}-panel"),
            p.keep_last,
            p.keep_daily,
            p.keep_weekly,
        )
        .await;
}

/// Undoes what a panel that stopped mid-way left: rows still running, mounts, paused
/// containers. Then makes sure the repository exists.
async fn recover(pier: &Pier, dirs: &Dirs, restic: &Restic) -> anyhow::Result<()> {
    crate::files::private_dir(dirs.repo.parent().unwrap_or(&dirs.repo))?;
    crate::files::private_dir(&dirs.stage)?;
    let n = repo::backups::fail_interrupted(pier.db(), now()).await?;
    if n > 0 {
        tracing::warn!(jobs = n, "backups or restores were interrupted by a stop");
    }
    unmount_all(pier, &dirs.stage).await;
    let instance = pier.instance_id().await?;
    for c in pier.runtime().containers(&instance).await? {
        if c.state == "paused" {
            tracing::info!(container = %c.name, "unpausing a container a backup left paused");
            pier.runtime().unpause(&c.id).await?;
        }
    }
    restic.prepare().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

/// Unmounts every mount under `stage` (deepest first) and removes the empty directories.
async fn unmount_all(pier: &Pier, stage: &Path) {
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
fn remove_mount_dirs(root: &Path) {
    if let Ok(entries) = std::fs::read_dir(root) {
        for e in entries.flatten() {
            let _ = std::fs::remove_dir(e.path());
        }
    }
    let _ = std::fs::remove_dir(root);
}

/// Queues what the schedule owes, then runs every queued job whose app can be held.
async fn round(pier: &Pier, dirs: &Dirs, restic: &Restic) -> anyhow::Result<()> {
    schedule(pier).await?;
    if let Err(e) = panel::if_due(pier).await {
        // Recorded as failed on the admin page; retried with the schedule's backoff.
        tracing::warn!(error = format!("{e:#}"), "Pier's own backup failed");
    }
    let mut skip = HashSet::new();
    while let Some(job) = repo::backups::next_job(pier.db(), &skip).await? {
        let app_id = match &job {
            Job::Snapshot(s) => s.app_id,
            Job::Restore(r) => r.app_id,
        };
        if let Job::Restore(r) = &job {
            if waits_for_app(pier, r).await? {
                skip.insert(app_id);
                continue;
            }
        }
        let Some(hold) = pier.hold_app(app_id) else {
            // A rollout of it runs: next round.
            skip.insert(app_id);
            continue;
        };
        match job {
            Job::Snapshot(s) => snapshot(pier, dirs, restic, s).await?,
            Job::Restore(r) => restore(pier, dirs, restic, r).await?,
        }
        drop(hold);
    }
    Ok(())
}

/// A dump's restore runs inside the app: on a machine just restored, or while the app is being
/// replaced, it waits (up to 10 minutes) for the app to run.
async fn waits_for_app(pier: &Pier, r: &pier_core::backups::Restore) -> anyhow::Result<bool> {
    if r.from_volume_id.is_some() || now() - r.created_at > 600 {
        return Ok(false);
    }
    let dump = repo::backups::snapshot(pier.db(), r.app_id, r.snapshot_id)
        .await?
        .is_some_and(|s| s.mode == Consistency::Command);
    Ok(dump
        && !serving_container(pier, r.app_id)
            .await?
            .is_some_and(|c| c.running()))
}

/// Queues a snapshot for every app whose schedule owes one (and that has volumes).
async fn schedule(pier: &Pier) -> anyhow::Result<()> {
    let now = now();
    for (app_id, policy) in repo::backups::scheduled(pier.db()).await? {
        let Some(slot) = policy.last_slot(now) else {
            continue;
        };
        let attempts = repo::backups::attempts_since(pier.db(), app_id, slot).await?;
        if !policy.due(now, &attempts) {
            continue;
        }
        if policy.mode != Consistency::Command
            && repo::volumes::for_app(pier.db(), app_id).await?.is_empty()
        {
            continue;
        }
        let id =
            repo::backups::queue_snapshot(pier.db(), app_id, Trigger::Schedule, policy.mode, now)
                .await?;
        tracing::info!(app_id, snapshot = id, "scheduled backup queued");
    }
    Ok(())
}

/// The app's serving container, if it has one.
async fn serving_container(pier: &Pier, app_id: i64) -> anyhow::Result<Option<Container>> {
    let Some(app) = repo::apps::by_id(pier.db(), app_id).await? else {
        return Ok(None);
    };
    let Some(current) = app.current_deployment_id else {
        return Ok(None);
    };
    let instance = pier.instance_id().await?;
    Ok(pier
        .runtime()
        .containers(&instance)
        .await?
        .into_iter()
        .filter(|c| c.app_id() == Some(app_id) && c.deployment_id() == Some(current))
        .max_by_key(|c| c.created))
}

/// The app's volumes mounted under one directory, `v<id>` each; unmounted when dropped by
/// [`Mounted::release`].
struct Mounted {
    root: PathBuf,
    points: Vec<(i64, PathBuf)>,
}

impl Mounted {
    async fn new(pier: &Pier, stage: &Path, app_id: i64) -> Result<Mounted, String> {
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

    async fn release(self, pier: &Pier) {
        for (_, at) in &self.points {
            if let Err(e) = pier.runtime().unmount_volume(at).await {
                tracing::warn!(mount = %at.display(), error = %e, "could not unmount");
            }
        }
        remove_mount_dirs(&self.root);
    }
}

async fn snapshot(pier: &Pier, dirs: &Dirs, restic: &Restic, s: Snapshot) -> anyhow::Result<()> {
    let db = pier.db();
    if !repo::backups::start_snapshot(db, s.id, now()).await? {
        return Ok(());
    }
    let started = Instant::now();
    let outcome = take(pier, dirs, restic, &s).await;
    match outcome {
        Ok((taken, paused_ms)) => {
            repo::backups::finish_snapshot(db, s.id, &taken, paused_ms, now()).await?;
            tracing::info!(
                app_id = s.app_id,
                snapshot = s.id,
                bytes = taken.bytes,
                added = taken.added_bytes,
                paused_ms,
                ms = started.elapsed().as_millis() as u64,
                "backup done"
            );
            if let Err(e) = retention(pier, restic, s.app_id).await {
                // The snapshot stands; old ones go next time.
                tracing::warn!(app_id = s.app_id, error = %e, "retention not applied");
            }
            measure(pier, restic, s.app_id).await;
        }
        Err((reason, paused_ms)) => {
            tracing::warn!(app_id = s.app_id, snapshot = s.id, %reason, "backup failed");
            repo::backups::fail_snapshot(db, s.id, &reason, paused_ms, now()).await?;
        }
    }
    Ok(())
}

type Outcome<T> = Result<T, (String, Option<i64>)>;

/// Mounts, quiesces, backs up, lets go: (what was taken, how long the app was frozen).
async fn take(
    pier: &Pier,
    dirs: &Dirs,
    restic: &Restic,
    s: &Snapshot,
) -> Outcome<(repo::backups::Taken, Option<i64>)> {
    let instance = pier
        .instance_id()
        .await
        .map_err(|e| (e.to_string(), None))?;
    let owner = repo::apps::by_id(pier.db(), s.app_id)
        .await
        .map_err(|e| (e.to_string(), None))?
        .map(|a| a.user_id);
    if let Some(owner) = owner {
        if let Some(full) = pier
            .backup_quota_full(owner)
            .await
            .map_err(|e| (e.to_string(), None))?
        {
            return Err((full, None));
        }
    }
    let container = serving_container(pier, s.app_id)
        .await
        .map_err(|e| (e.to_string(), None))?;
    if s.mode == Consistency::Command {
        return dump(pier, restic, s, &instance, container)
            .await
            .map(|t| (t, None))
            .map_err(|e| (e, None));
    }
    let mounted = Mounted::new(pier, &dirs.stage, s.app_id)
        .await
        .map_err(|e| (e, None))?;
    let rt = pier.runtime();
    // Only a running container is paused or stopped; a stopped app's files are still.
    let live = container.filter(|c| c.running());
    let tag = app_tag(&instance, s.app_id);
    let host = format!("pier-{instance}");
    // A first pass while the app runs reads everything and stores what is new; the pass under
    // pause or stop then reads only what changed since (restic skips files whose size, times
    // and inode are as in its parent, the first pass): the app is frozen for seconds, not for
    // as long as reading its whole volume takes. The first pass's snapshot is forgotten.
    let mut warm = None;
    if live.is_some() {
        let pre_tag = format!("{tag}-pre");
        match read_volumes(pier, restic, s.id, &mounted.root, &pre_tag, &host).await {
            Ok(summary) => warm = Some(summary),
            Err(e) => {
                tracing::warn!(app_id = s.app_id, error = %e, "first backup pass failed; reading all under the pause")
            }
        }
    }
    let frozen = Instant::now();
    let quiesced = match (&live, s.mode) {
        (Some(c), Consistency::Pause) => rt.pause(&c.id).await,
        (Some(c), Consistency::Stop) => {
            rt.stop(&c.id, pier.settings().engine.stop_timeout_secs)
                .await
        }
        (_, Consistency::Command) | (None, _) => Ok(()),
    };
    let result = match quiesced {
        Err(e) => Err(format!("the container could not be {}: {e}", verb(s.mode))),
        Ok(()) => read_volumes(pier, restic, s.id, &mounted.root, &tag, &host)
            .await
            .map_err(|e| e.to_string()),
    };
    let paused_ms = live.as_ref().map(|_| frozen.elapsed().as_millis() as i64);
    // Let go whatever happened.
    if let Some(c) = &live {
        let back = match s.mode {
            Consistency::Pause => rt.unpause(&c.id).await,
            Consistency::Stop => rt.start(&c.id).await,
            Consistency::Command => Ok(()),
        };
        if let Err(e) = back {
            tracing::error!(container = %c.name, error = %e, "could not resume after a backup");
        }
    }
    mounted.release(pier).await;
    // What the first pass stored counts as this snapshot's.
    let pre_added = warm.as_ref().map_or(0, |w| w.data_added);
    if let Some(w) = warm {
        if let Err(e) = restic.forget_ids(&[w.snapshot_id]).await {
            tracing::warn!(error = %e, "the first pass's snapshot stays until retention");
        }
    }
    let summary = result.map_err(|e| (e, paused_ms))?;
    Ok((
        repo::backups::Taken {
            restic_id: summary.snapshot_id,
            bytes: summary.bytes as i64,
            files: summary.files as i64,
            added_bytes: (summary.data_added + pre_added) as i64,
        },
        paused_ms,
    ))
}

/// One restic backup of the mounted volumes, its progress written to the snapshot's row.
async fn read_volumes(
    pier: &Pier,
    restic: &Restic,
    snapshot: i64,
    root: &Path,
    tag: &str,
    host: &str,
) -> Result<restic::Summary, restic::ResticError> {
    let tags = [tag];
    tracked(pier, snapshot, |progress| {
        restic.backup(root, &tags, host, progress)
    })
    .await
}

/// Runs `work`, writing the progress it reports to the snapshot's row (once a second).
async fn tracked<T, Fut>(
    pier: &Pier,
    snapshot: i64,
    work: impl FnOnce(Box<dyn FnMut(restic::Progress) + Send>) -> Fut,
) -> T
where
    Fut: std::future::Future<Output = T>,
{
    let mut every = Throttled::new(Duration::from_secs(1));
    let (tx, mut rx) = tokio::sync::watch::channel(restic::Progress::default());
    let work = work(Box::new(move |p| {
        let _ = tx.send(p);
    }));
    tokio::pin!(work);
    loop {
        tokio::select! {
            r = &mut work => break r,
            Ok(()) = rx.changed() => {
                if every.ready() {
                    let p = *rx.borrow();
                    let _ = repo::backups::snapshot_progress(
                        pier.db(), snapshot, p.bytes_done as i64, p.total_bytes as i64,
                        p.files_done as i64).await;
                }
            }
        }
    }
}

/// The file a command's output is stored as in its snapshot, and the tag such snapshots carry
/// (a restore onto a fresh machine tells them from snapshots of volumes by it).
const DUMP_FILE: &str = "dump";
pub const DUMP_TAG: &str = "pier-dump";

/// The longest a backup or restore command may run.
const COMMAND_LIMIT: Duration = Duration::from_secs(4 * 3600);

/// The app's command (command mode), as its argument list.
async fn app_command(pier: &Pier, app_id: i64, restore: bool) -> Result<Vec<String>, String> {
    let p = pier
        .backup_policy(app_id)
        .await
        .map_err(|e| e.to_string())?;
    let text = if restore {
        &p.restore_command
    } else {
        &p.command
    };
    let args = pier_core::backups::command_args(text)?;
    if args.is_empty() {
        return Err(if restore {
            "This snapshot is a command's output: set the app's restore command, which reads it from its standard input, then restore.".into()
        } else {
            "Command mode needs a command: set it in the app's backup settings.".into()
        });
    }
    Ok(args)
}

/// The first lines of what a failed command wrote to standard error, for its reason.
fn said(stderr: &str) -> String {
    let text = stderr.trim();
    if text.is_empty() {
        return "it wrote nothing to standard error".into();
    }
    let mut out: String = text.lines().take(5).collect::<Vec<_>>().join(" / ");
    if out.len() > 600 {
        let mut cut = 600;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push('…');
    }
    out
}

/// Command mode: the app's command runs inside its container, and what it writes to standard
/// output is the snapshot (the file `/dump`). Its exit status decides: a failed or silent
/// command leaves no snapshot that counts.
async fn dump(
    pier: &Pier,
    restic: &Restic,
    s: &Snapshot,
    instance: &str,
    container: Option<Container>,
) -> Result<repo::backups::Taken, String> {
    let args = app_command(pier, s.app_id, false).await?;
    let c = container.filter(|c| c.running()).ok_or(
        "The app is not running, so its backup command cannot run: start it, or back it up in pause or stop mode.",
    )?;
    let tag = app_tag(instance, s.app_id);
    let host = format!("pier-{instance}");
    let rt = pier.runtime();
    let tags = [tag.as_str(), DUMP_TAG];
    let (summary, ran) = tracked(pier, s.id, |progress| {
        restic.backup_stdin(DUMP_FILE, &tags, &host, progress, |input| async {
            tokio::time::timeout(COMMAND_LIMIT, rt.exec(&c.id, &args, None, Box::new(input))).await
        })
    })
    .await;
    let ran = match ran {
        None => Err("the backup command was not run".to_string()),
        Some(Err(_)) => Err(format!(
            "The backup command ran longer than {} hours and was given up.",
            COMMAND_LIMIT.as_secs() / 3600
        )),
        Some(Ok(Err(e))) => Err(format!("The backup command could not be run: {e}")),
        Some(Ok(Ok(o))) if o.exit_code != 0 => Err(format!(
            "The backup command exited with status {}: {}",
            o.exit_code,
            said(&o.stderr)
        )),
        Some(Ok(Ok(o))) if o.stdout_bytes == 0 => Err(
            "The backup command wrote nothing to its standard output, so there is nothing to keep."
                .to_string(),
        ),
        Some(Ok(Ok(o))) => Ok(o),
    };
    match (summary, ran) {
        (Ok(sum), Ok(_)) => Ok(repo::backups::Taken {
            restic_id: sum.snapshot_id,
            bytes: sum.bytes as i64,
            files: sum.files as i64,
            added_bytes: sum.data_added as i64,
        }),
        (Ok(sum), Err(why)) => {
            // restic stored what came before the failure: not a snapshot anyone should trust.
            if let Err(e) = restic.forget_ids(&[sum.snapshot_id]).await {
                tracing::warn!(error = %e, "a failed dump's snapshot stays until retention");
            }
            Err(why)
        }
        // A command that failed on its own says more than the broken pipe restic left it.
        (Err(_), Err(why)) if !why.contains("could not be run") => Err(why),
        (Err(e), _) => Err(format!("The backup could not be stored: {e}")),
    }
}

fn verb(mode: Consistency) -> &'static str {
    match mode {
        Consistency::Pause => "paused",
        Consistency::Stop => "stopped",
        Consistency::Command => "reached",
    }
}

/// Records what the app's snapshots now take in the repository (its owner's backup quota).
async fn measure(pier: &Pier, restic: &Restic, app_id: i64) {
    let Ok(instance) = pier.instance_id().await else {
        return;
    };
    match restic.stored_bytes(&app_tag(&instance, app_id)).await {
        Ok(n) => {
            if let Err(e) = repo::backups::set_stored(pier.db(), app_id, n as i64).await {
                tracing::warn!(app_id, error = %e, "could not record backup storage");
            }
        }
        Err(e) => tracing::warn!(app_id, error = %e, "backup storage not measured"),
    }
}

/// Keeps what the app's policy says and forgets the rest, in restic and in the database.
async fn retention(pier: &Pier, restic: &Restic, app_id: i64) -> anyhow::Result<()> {
    let p = pier.backup_policy(app_id).await?;
    let instance = pier.instance_id().await?;
    let removed = restic
        .forget(
            &app_tag(&instance, app_id),
            p.keep_last,
            p.keep_daily,
            p.keep_weekly,
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let n = repo::backups::forget(pier.db(), app_id, &removed).await?;
    if n > 0 {
        tracing::info!(app_id, removed = n, "old snapshots removed");
    }
    Ok(())
}

async fn restore(
    pier: &Pier,
    dirs: &Dirs,
    restic: &Restic,
    r: pier_core::backups::Restore,
) -> anyhow::Result<()> {
    let db = pier.db();
    if !repo::backups::start_restore(db, r.id, now()).await? {
        return Ok(());
    }
    let started = Instant::now();
    let failure = match (r.from_volume_id, r.into_volume_id) {
        (Some(from), Some(into)) => beside(pier, dirs, restic, &r, from, into).await.err(),
        (Some(_), None) => Some("The volume to restore into was deleted.".to_string()),
        _ => replace(pier, dirs, restic, &r).await.err(),
    };
    repo::backups::end_restore(db, r.id, failure.as_deref(), now()).await?;
    match &failure {
        None => tracing::info!(
            app_id = r.app_id,
            snapshot = r.snapshot_id,
            ms = started.elapsed().as_millis() as u64,
            "restore done"
        ),
        Some(why) => tracing::warn!(app_id = r.app_id, reason = %why, "restore failed"),
    }
    pier.wake_engine();
    Ok(())
}

/// Stops the app, replaces its volumes' contents with the snapshot's, starts it again.
async fn replace(
    pier: &Pier,
    dirs: &Dirs,
    restic: &Restic,
    r: &pier_core::backups::Restore,
) -> Result<(), String> {
    let rid = snapshot_id(pier, r.snapshot_id).await?;
    let snap = repo::backups::snapshot(pier.db(), r.app_id, r.snapshot_id)
        .await
        .map_err(|e| e.to_string())?;
    if snap.is_some_and(|s| s.mode == Consistency::Command) {
        return feed_back(pier, dirs, restic, r, &rid).await;
    }
    let in_snapshot: HashSet<String> = restic
        .top_level(&rid)
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .collect();
    // Only volumes the snapshot has are replaced; one added to the app since keeps its data.
    let targets: Vec<String> = repo::volumes::for_app(pier.db(), r.app_id)
        .await
        .map_err(|e| e.to_string())?
        .iter()
        .map(|v| format!("v{}", v.id))
        .filter(|d| in_snapshot.contains(d))
        .collect();
    if targets.is_empty() {
        return Err(
            "None of the app's volumes is in this snapshot (its volumes changed since).".into(),
        );
    }
    // Read out whole first, while the app still runs: a snapshot that is gone or damaged fails
    // here and nothing of the app changes; the app is down only while the files are copied.
    let staged = dirs.stage.join(format!("staged-{}", r.id));
    remove_staged(&staged);
    std::fs::create_dir_all(&staged).map_err(|e| format!("could not stage the restore: {e}"))?;
    if let Err(e) = restic.restore(&rid, &staged, &targets).await {
        remove_staged(&staged);
        return Err(format!(
            "The snapshot could not be read, so nothing was changed: {e}"
        ));
    }
    let container = serving_container(pier, r.app_id)
        .await
        .map_err(|e| e.to_string())?;
    let rt = pier.runtime();
    let was_running = container
        .as_ref()
        .is_some_and(|c| c.running() || c.state == "paused");
    if let Some(c) = container.as_ref().filter(|_| was_running) {
        if let Err(e) = rt
            .stop(&c.id, pier.settings().engine.stop_timeout_secs)
            .await
        {
            remove_staged(&staged);
            return Err(format!("the container could not be stopped: {e}"));
        }
    }
    let result = match Mounted::new(pier, &dirs.stage, r.app_id).await {
        Err(e) => Err(e),
        Ok(mounted) => {
            let mut r = Ok(());
            for (id, at) in &mounted.points {
                let dir = format!("v{id}");
                if targets.contains(&dir) {
                    r = copy_in(&staged.join(&dir), at).await;
                    if r.is_err() {
                        break;
                    }
                }
            }
            mounted.release(pier).await;
            r
        }
    };
    remove_staged(&staged);
    // Started again as it was (the reconciler would too, once the hold goes).
    if let Some(c) = container.as_ref().filter(|_| was_running) {
        if let Err(e) = rt.start(&c.id).await {
            tracing::warn!(container = %c.name, error = %e, "not started after a restore; the reconciler retries");
        }
    }
    result
}

async fn snapshot_id(pier: &Pier, id: i64) -> Result<String, String> {
    repo::backups::restic_id(pier.db(), id)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| "The snapshot is gone (retention removed it).".to_string())
}

/// A command's output restored: fed to the app's restore command inside its running
/// container, whose exit status decides.
async fn feed_back(
    pier: &Pier,
    dirs: &Dirs,
    restic: &Restic,
    r: &pier_core::backups::Restore,
    rid: &str,
) -> Result<(), String> {
    let args = app_command(pier, r.app_id, true).await?;
    let c = serving_container(pier, r.app_id)
        .await
        .map_err(|e| e.to_string())?
        .filter(|c| c.running())
        .ok_or("The app is not running, so its restore command cannot run: start it first.")?;
    // Read out whole first: a dump that is gone or damaged fails here, before the restore
    // command has dropped anything.
    let staged = dirs.stage.join(format!("dump-{}", r.id));
    restic
        .dump_file(rid, DUMP_FILE, &staged)
        .await
        .map_err(|e| format!("The snapshot could not be read, so nothing was changed: {e}"))?;
    let ran = async {
        let file = tokio::fs::File::open(&staged)
            .await
            .map_err(|e| format!("could not read the dump back: {e}"))?;
        tokio::time::timeout(
            COMMAND_LIMIT,
            pier.runtime().exec(
                &c.id,
                &args,
                Some(Box::new(file)),
                Box::new(tokio::io::sink()),
            ),
        )
        .await
        .map_err(|_| "The restore command ran too long and was given up.".to_string())?
        .map_err(|e| format!("The restore command could not be run: {e}"))
    }
    .await;
    let _ = std::fs::remove_file(&staged);
    let ran = ran?;
    if ran.exit_code != 0 {
        return Err(format!(
            "The restore command exited with status {}: {}",
            ran.exit_code,
            said(&ran.stderr)
        ));
    }
    Ok(())
}

/// One of the snapshot's volumes restored into a new kept volume, beside the app's own; the
/// app is not touched. A failed restore removes the volume it made (it holds nothing).
async fn beside(
    pier: &Pier,
    dirs: &Dirs,
    restic: &Restic,
    r: &pier_core::backups::Restore,
    from: i64,
    into: i64,
) -> Result<(), String> {
    let vol = repo::volumes::list_all(pier.db())
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .find(|v| v.id == into)
        .ok_or("The volume to restore into was deleted.")?;
    let result = fill(pier, dirs, restic, r, from, &vol).await;
    if result.is_err() {
        if let Ok(true) = repo::volumes::delete_kept(pier.db(), vol.user_id, &vol.name).await {
            pier.wake_engine();
        }
    }
    result
}

async fn fill(
    pier: &Pier,
    dirs: &Dirs,
    restic: &Restic,
    r: &pier_core::backups::Restore,
    from: i64,
    vol: &pier_core::model::Volume,
) -> Result<(), String> {
    let rid = snapshot_id(pier, r.snapshot_id).await?;
    let dir = format!("v{from}");
    if !restic
        .top_level(&rid)
        .await
        .map_err(|e| e.to_string())?
        .contains(&dir)
    {
        return Err("That volume is not in this snapshot (it was added to the app later).".into());
    }
    let instance = pier.instance_id().await.map_err(|e| e.to_string())?;
    crate::engine::prepare_volume(pier, &instance, vol)
        .await
        .map_err(|e| format!("the new volume could not be prepared: {e}"))?;
    // Mounted where the snapshot keeps that volume, so restic writes straight into it.
    let root = dirs.stage.join(format!("restore-{}", r.id));
    let at = root.join(&dir);
    std::fs::create_dir_all(&at).map_err(|e| format!("could not make a mount point: {e}"))?;
    let result = match pier
        .runtime()
        .mount_volume(&volume_name(&instance, vol.id), &at)
        .await
    {
        Err(e) => Err(format!("the new volume could not be mounted: {e}")),
        Ok(()) => {
            let r = async {
                empty(&at).map_err(|e| format!("could not empty the new volume: {e}"))?;
                restic
                    .restore(&rid, &root, std::slice::from_ref(&dir))
                    .await
                    .map_err(|e| e.to_string())
            }
            .await;
            if let Err(e) = pier.runtime().unmount_volume(&at).await {
                tracing::warn!(mount = %at.display(), error = %e, "could not unmount");
            }
            r
        }
    };
    remove_mount_dirs(&root);
    result
}

/// Replaces the contents of the mounted volume `at` with those of `from`: owners, modes, times,
/// links and extended attributes as restic restored them (`cp -a`, the paths Pier's own).
async fn copy_in(from: &Path, at: &Path) -> Result<(), String> {
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
fn mounts_under(dir: &Path) -> Vec<String> {
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
fn remove_staged(dir: &Path) {
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
fn empty(dir: &Path) -> std::io::Result<()> {
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
    fn leftovers_are_deleted_apps_and_first_passes_of_this_installation() {
        let live = HashSet::from([1, 2]);
        assert!(!leftover("abc", "pier-abc-app-1", &live));
        assert!(leftover("abc", "pier-abc-app-3", &live));
        assert!(leftover("abc", "pier-abc-app-1-pre", &live));
        // Another installation's, Pier's own, and tags Pier does not write stay.
        assert!(!leftover("abc", "pier-xyz-app-3", &live));
        assert!(!leftover("abc", "pier-abc-panel", &live));
        assert!(!leftover("abc", "pier-dump", &live));
        assert!(!leftover("abc", "pier-abc-app-x", &live));
    }

    #[test]
    fn mounts_under_a_directory_not_beside_it() {
        // The root is mounted; nothing is mounted under a directory that does not exist.
        assert!(!mounts_under(Path::new("/")).is_empty());
        assert!(mounts_under(Path::new("/no/such/dir/here")).is_empty());
    }
}
