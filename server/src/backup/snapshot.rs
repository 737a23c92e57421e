//! Taking one snapshot: volumes read while the app is paused or stopped (after a first pass
//! while it runs), or a dump command's output; then retention and the storage measure.

use super::*;

pub(super) async fn snapshot(
    pier: &Pier,
    dirs: &Dirs,
    restic: &Restic,
    s: Snapshot,
) -> anyhow::Result<()> {
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
            if let Some(app) = repo::apps::by_id(db, s.app_id).await? {
                let event = pier_core::notify::Event::BackupFailed {
                    app: app.name,
                    job: s.id,
                    error: reason,
                };
                pier.notify(app.user_id, event).await;
            }
        }
    }
    Ok(())
}

pub(super) type Outcome<T> = Result<T, (String, Option<i64>)>;

/// Mounts, quiesces, backs up, lets go: (what was taken, how long the app was frozen).
pub(super) async fn take(
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
        .ok_or(("The app was deleted.".to_string(), None))?
        .user_id;
    // No snapshot starts while the owner's backups fill their quota; a dump may take no more
    // than the room left.
    let room = pier.backup_room(owner).await.map_err(|e| match e {
        pier_core::Error::Quota(why) => (why, None),
        e => (e.to_string(), None),
    })?;
    let container = serving_container(pier, s.app_id)
        .await
        .map_err(|e| (e.to_string(), None))?;
    if s.mode == Consistency::Command {
        return dump(pier, restic, s, &instance, container, room)
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
pub(super) async fn read_volumes(
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
pub(super) async fn tracked<T, Fut>(
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
                    // Progress is for watching; a write that fails is made good by the next.
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
pub(super) const DUMP_FILE: &str = "dump";
pub const DUMP_TAG: &str = "pier-dump";

/// The longest a backup or restore command may run.
pub(super) const COMMAND_LIMIT: Duration = Duration::from_secs(4 * 3600);

/// The app's command (command mode), as its argument list.
pub(super) async fn app_command(
    pier: &Pier,
    app_id: i64,
    restore: bool,
) -> Result<Vec<String>, String> {
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
pub(super) fn said(stderr: &str) -> String {
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
pub(super) async fn dump(
    pier: &Pier,
    restic: &Restic,
    s: &Snapshot,
    instance: &str,
    container: Option<Container>,
    room: u64,
) -> Result<repo::backups::Taken, String> {
    let args = app_command(pier, s.app_id, false).await?;
    let c = container.filter(|c| c.running()).ok_or(
        "The app is not running, so its backup command cannot run: start it, or back it up in pause or stop mode.",
    )?;
    let tag = app_tag(instance, s.app_id);
    let host = format!("pier-{instance}");
    let rt = pier.runtime();
    let tags = [tag.as_str(), DUMP_TAG];
    // A dump may not outgrow the owner's backup quota (counted as written, before compression).
    let over = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (summary, ran) = tracked(pier, s.id, |progress| {
        restic.backup_stdin(DUMP_FILE, &tags, &host, progress, |input| async {
            let capped = Capped {
                inner: input,
                left: room,
                over: over.clone(),
            };
            tokio::time::timeout(COMMAND_LIMIT, rt.exec(&c.id, &args, None, Box::new(capped))).await
        })
    })
    .await;
    let ran = match ran {
        _ if over.load(std::sync::atomic::Ordering::SeqCst) => Err(format!(
            "The dump grew past the {} MiB left in your backup quota, so it was stopped and not kept. Keep fewer snapshots, or ask an admin to raise the quota.",
            room >> 20
        )),
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

/// A writer that refuses to take more than `left` bytes, and says so in `over`.
struct Capped<W> {
    inner: W,
    left: u64,
    over: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl<W: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Capped<W> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        if buf.len() as u64 > self.left {
            self.over.store(true, std::sync::atomic::Ordering::SeqCst);
            return std::task::Poll::Ready(Err(std::io::Error::other("over the backup quota")));
        }
        let n = std::task::ready!(std::pin::Pin::new(&mut self.inner).poll_write(cx, buf))?;
        self.left -= n as u64;
        std::task::Poll::Ready(Ok(n))
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

pub(super) fn verb(mode: Consistency) -> &'static str {
    match mode {
        Consistency::Pause => "paused",
        Consistency::Stop => "stopped",
        Consistency::Command => "reached",
    }
}

/// Records what the app's snapshots now take in the repository (its owner's backup quota).
pub(super) async fn measure(pier: &Pier, restic: &Restic, app_id: i64) {
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
pub(super) async fn retention(pier: &Pier, restic: &Restic, app_id: i64) -> anyhow::Result<()> {
    let p = pier.backup_policy(app_id).await?;
    let instance = pier.instance_id().await?;
    let removed = restic
        .forget(&app_tag(&instance, app_id), &p)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let n = repo::backups::forget(pier.db(), app_id, &removed).await?;
    if n > 0 {
        tracing::info!(app_id, removed = n, "old snapshots removed");
    }
    Ok(())
}
