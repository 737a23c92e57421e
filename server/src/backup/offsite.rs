//! Copies to the offsite bucket (beside the local jobs, with backoff), the bucket's retention,
//! and the sweep that removes deleted apps' snapshots from either repository.

use super::*;

/// Copies snapshots to the offsite target, looking as often as the scheduler does (a copy
/// follows a snapshot within that time), and sweeps the bucket like the local repository.
pub(super) async fn copy_loop(pier: Pier, dir: PathBuf, local: Restic) {
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
                sweep(&pier, &bucket(&pier, &dirs, &target)).await;
            }
        }
        let wait = pier.settings().backups.check_every_secs.max(1);
        tokio::time::sleep(Duration::from_secs(wait)).await;
    }
}

/// The offsite bucket's repository, opened like the local one (same password and cache).
fn bucket(pier: &Pier, dirs: &Dirs, target: &pier_core::backup_target::TargetAccess) -> Restic {
    Restic::new(
        target.repository.clone(),
        dirs.cache.clone(),
        pier.backup_password(),
    )
    .with_s3(&target.access_key, &target.secret, &target.region)
}

/// Copies to the offsite target: after every change, with backoff after failures.
#[derive(Default)]
pub(super) struct Offsite {
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
        let dest = bucket(pier, dirs, &target);
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
                    if let Err(e) = repo::backups::passphrase_added(db).await {
                        // Added again next time: a second key with the same passphrase is harmless.
                        tracing::warn!(error = %e, "could not record the passphrase key");
                    }
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
pub(super) async fn sweep(pier: &Pier, restic: &Restic) {
    let Ok(instance) = pier.instance_id().await else {
        return;
    };
    let Ok(deleted) = repo::apps::deleted_ids(pier.db()).await else {
        return;
    };
    let deleted: HashSet<i64> = deleted.into_iter().collect();
    let snaps = match restic.snapshots(None).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(repository = %restic.repository(), error = %e, "sweep: snapshots not listed");
            return;
        }
    };
    let gone: Vec<String> = snaps
        .iter()
        .filter(|s| s.tags.iter().any(|t| leftover(&instance, t, &deleted)))
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

/// Whether a snapshot's tag marks it as left over: an app of this installation that was deleted
/// here, or a first pass. (Not every id the database does not know: restored from an older
/// backup, it does not know apps made after it, and their snapshots are all that is left.)
pub(super) fn leftover(instance: &str, tag: &str, deleted: &HashSet<i64>) -> bool {
    let Some(rest) = tag.strip_prefix(&format!("pier-{instance}-app-")) else {
        return false;
    };
    match rest.strip_suffix("-pre") {
        Some(_) => true,
        None => rest.parse::<i64>().is_ok_and(|id| deleted.contains(&id)),
    }
}

/// The bucket keeps what the apps' policies keep, like the local repository.
pub(super) async fn retention_offsite(pier: &Pier, dest: &Restic, apps: &[i64]) {
    let Ok(instance) = pier.instance_id().await else {
        return;
    };
    for &app_id in apps {
        let Ok(p) = pier.backup_policy(app_id).await else {
            continue;
        };
        if let Err(e) = dest.forget(&app_tag(&instance, app_id), &p).await {
            tracing::warn!(app_id, error = %e, "offsite retention not applied");
        }
    }
    let p = pier_core::backups::PANEL_POLICY;
    if let Err(e) = dest.forget(&format!("pier-{instance}-panel"), &p).await {
        tracing::warn!(error = %e, "offsite retention of Pier's own backups not applied");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leftovers_are_deleted_apps_and_first_passes_of_this_installation() {
        let deleted = HashSet::from([3]);
        assert!(leftover("abc", "pier-abc-app-3", &deleted));
        assert!(leftover("abc", "pier-abc-app-1-pre", &deleted));
        // Live apps, apps this database never knew, another installation's, Pier's own, and
        // tags Pier does not write stay.
        assert!(!leftover("abc", "pier-abc-app-1", &deleted));
        assert!(!leftover("abc", "pier-abc-app-9", &deleted));
        assert!(!leftover("abc", "pier-xyz-app-3", &deleted));
        assert!(!leftover("abc", "pier-abc-panel", &deleted));
        assert!(!leftover("abc", "pier-dump", &deleted));
        assert!(!leftover("abc", "pier-abc-app-x", &deleted));
    }
}
