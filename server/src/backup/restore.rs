//! Running one restore: over the app's volumes (read out first, then copied in while the app
//! is stopped), through the app's restore command (a dump), or into a new volume beside it.

use super::*;

pub(super) async fn restore(
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
pub(super) async fn replace(
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
    // Running, paused, or restarting (a crash loop: Docker would start it again mid-copy).
    let was_running = container
        .as_ref()
        .is_some_and(|c| !matches!(c.state.as_str(), "exited" | "created" | "dead"));
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
    if let Err(why) = result {
        // Half copied: the app must not start on it (a database would make itself a new one
        // there). It stays stopped, with the reason, until its owner restores again or starts it.
        if let Err(e) = repo::apps::set_desired(
            pier.db(),
            r.app_id,
            pier_core::model::Desired::Stopped,
            now(),
        )
        .await
        {
            tracing::error!(app_id = r.app_id, error = %e, "could not keep the app stopped");
        }
        return Err(format!(
            "{why}. The app was left stopped so that nothing runs on half-restored data: restore again, or start it."
        ));
    }
    // Started again as it was (the reconciler would too, once the hold goes).
    if let Some(c) = container.as_ref().filter(|_| was_running) {
        if let Err(e) = rt.start(&c.id).await {
            tracing::warn!(container = %c.name, error = %e, "not started after a restore; the reconciler retries");
        }
    }
    Ok(())
}

pub(super) async fn snapshot_id(pier: &Pier, id: i64) -> Result<String, String> {
    repo::backups::restic_id(pier.db(), id)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| "The snapshot is gone (retention removed it).".to_string())
}

/// A command's output restored: fed to the app's restore command inside its running
/// container, whose exit status decides.
pub(super) async fn feed_back(
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
pub(super) async fn beside(
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
        match repo::volumes::delete_kept(pier.db(), vol.user_id, vol.id).await {
            Ok(true) => pier.wake_engine(),
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(volume = %vol.name, error = %e, "could not remove the volume of a failed restore")
            }
        }
    }
    result
}

pub(super) async fn fill(
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
