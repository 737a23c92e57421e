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
//!
//! Here: the worker's loop, its queue and recovery. `snapshot` takes one snapshot, `restore`
//! runs one restore, `stage` owns the mounts and staging directories, `offsite` copies to the
//! bucket (in its own loop) and sweeps deleted apps' data; `restic` drives the engine and
//! `panel` backs up and restores Pier itself.

mod offsite;
pub mod panel;
pub mod restic;
mod restore;
mod snapshot;
mod stage;

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

use self::{
    offsite::*,
    restic::{Restic, Throttled},
    restore::*,
    snapshot::*,
    stage::*,
};

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
pub(super) fn app_tag(instance: &str, app_id: i64) -> String {
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
pub(super) struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
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
        if c.state == pier_core::runtime::ContainerState::Paused {
            tracing::info!(container = %c.name, "unpausing a container a backup left paused");
            pier.runtime().unpause(&c.id).await?;
        }
    }
    restic.prepare().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
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
pub(super) async fn serving_container(
    pier: &Pier,
    app_id: i64,
) -> anyhow::Result<Option<Container>> {
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
