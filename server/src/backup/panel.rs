//! Backups of Pier itself and the restore of a whole Pier onto a fresh machine.
//!
//! A panel snapshot holds the database (a consistent copy taken while Pier serves: SQLite's
//! `VACUUM INTO`) and the secret key, in the same encrypted repository as the volumes. The
//! repository opens with a password derived from that key; the operator adds a passphrase of
//! their own (a second restic key, `pier backup passphrase`), with which a machine that has
//! nothing else can open it. `restore` brings the database and key back and queues a restore
//! of every app's latest snapshot; `pier serve` then recreates the containers once their data
//! is back (the reconciler leaves apps with a restore waiting alone).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use pier_core::{
    audit::{Action, Change, Who},
    backups::Trigger,
    now, repo, Pier,
};

use super::{app_tag, local_repository, restic::Restic, Dirs};

/// Every panel snapshot carries this tag (and `pier-<instance>-panel`).
pub const PANEL_TAG: &str = "pier-panel";

fn instance_tag(instance: &str) -> String {
    format!("pier-{instance}-panel")
}

use pier_core::backups::PANEL_POLICY as POLICY;

/// Takes a panel snapshot when the daily one is due (and Pier knows its key file).
pub async fn if_due(pier: &Pier) -> anyhow::Result<()> {
    if pier.settings().backups.key_file.is_none() {
        return Ok(());
    }
    let now = now();
    let Some(slot) = POLICY.last_slot(now) else {
        return Ok(());
    };
    let attempts = repo::backups::panel_attempts_since(pier.db(), slot).await?;
    if POLICY.due(now, &attempts) {
        back_up(pier, Trigger::Schedule).await?;
    }
    Ok(())
}

/// Pier's own backup asked for by someone (an admin through the API, the operator on the
/// command line), refused when `allowed` is an error, and recorded in the audit log either way.
pub async fn back_up_for(
    pier: &Pier,
    who: &Who,
    allowed: pier_core::Result<()>,
) -> pier_core::Result<String> {
    let r = match allowed {
        Ok(()) => back_up(pier, Trigger::Manual)
            .await
            .map_err(|e| pier_core::Error::Unavailable(format!("The backup failed: {e:#}"))),
        Err(e) => Err(e),
    };
    let what = Change::new(Action::PierBackup, "Pier").summary(match &r {
        Ok(id) => format!("database and key backed up as snapshot {id}"),
        Err(_) => "database and key".to_owned(),
    });
    pier.record_as(who, what, &r).await;
    r
}

/// Takes a snapshot of Pier's database and key now; the restic snapshot's id.
pub async fn back_up(pier: &Pier, trigger: Trigger) -> anyhow::Result<String> {
    let b = &pier.settings().backups;
    let dir = b.dir.as_ref().context("backups are off")?;
    let key_file = b
        .key_file
        .as_ref()
        .context("the secret key's file is not known")?;
    let restic = local_repository(pier).context("backups are off")?;
    let instance = pier.instance_id().await?;
    // One at a time: the daily one and `POST /pier-backups` share the staging directory.
    static ONE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _one = ONE.lock().await;
    let created = now();
    let stage = Dirs::in_dir(dir).stage.join("panel");
    let taken = async {
        let _ = std::fs::remove_dir_all(&stage);
        crate::files::private_dir(&stage)?;
        sqlx::query("VACUUM INTO ?")
            .bind(stage.join("pier.db").to_string_lossy().into_owned())
            .execute(pier.db())
            .await
            .context("copying the database")?;
        std::fs::copy(key_file, stage.join("secret.key")).context("copying the secret key")?;
        restic.prepare().await?;
        let own = instance_tag(&instance);
        let tags = [PANEL_TAG, own.as_str()];
        let s = restic
            .backup(&stage, &tags, &format!("pier-{instance}"), |_| {})
            .await?;
        anyhow::Ok(s)
    }
    .await;
    let _ = std::fs::remove_dir_all(&stage);
    let outcome = match &taken {
        Ok(s) => Ok((s.snapshot_id.as_str(), s.bytes as i64)),
        Err(e) => Err(format!("{e:#}")),
    };
    repo::backups::record_panel_backup(
        pier.db(),
        trigger,
        outcome.as_ref().map(|x| *x).map_err(String::as_str),
        created,
        now(),
    )
    .await?;
    let s = taken?;
    tracing::info!(snapshot = %s.snapshot_id, bytes = s.bytes, "Pier's own backup done");
    if let Err(e) = restic.forget(&instance_tag(&instance), &POLICY).await {
        tracing::warn!(error = %e, "retention of Pier's own backups not applied");
    }
    Ok(s.snapshot_id)
}

/// Adds the operator's passphrase to the repository as a second key.
pub async fn set_passphrase(pier: &Pier, passphrase: &str) -> anyhow::Result<()> {
    if passphrase.chars().count() < 12 {
        bail!("the passphrase must have at least 12 characters");
    }
    let restic = local_repository(pier).context("backups are off")?;
    restic.prepare().await?;
    restic.add_key(passphrase).await?;
    // Kept sealed: the bucket's repository gets it as a key too when the worker reaches it.
    pier.record_passphrase(passphrase).await?;
    pier.wake_backups();
    Ok(())
}

/// What a restore brought back.
#[derive(Debug)]
pub struct Restored {
    pub snapshot: String,
    pub instance: String,
    /// Apps whose volumes come back from a snapshot when Pier starts.
    pub apps: usize,
}

/// Restores Pier from the repository `from` into an empty `data_dir`, opened with the
/// operator's passphrase. The repository becomes this machine's (copied into place when it is
/// a local directory elsewhere).
pub async fn restore(
    data_dir: &Path,
    from: &str,
    passphrase: &str,
    snapshot: Option<&str>,
) -> anyhow::Result<Restored> {
    if data_dir.join("pier.db").exists() || data_dir.join("secret.key").exists() {
        bail!(
            "{} already holds a Pier; restore into an empty data directory",
            data_dir.display()
        );
    }
    crate::files::private_dir(data_dir)?;
    let dirs = Dirs::in_dir(&data_dir.join("backups"));
    crate::files::private_dir(data_dir.join("backups").as_path())?;
    let source = source_repository(from, &dirs, passphrase)?;
    // The lost machine may have died mid-prune, its lock still in the repository.
    source.unlock_stale().await;
    let panels = source.snapshots(Some(PANEL_TAG)).await?;
    let chosen = match snapshot {
        Some(id) => panels
            .iter()
            .find(|s| s.short_id.starts_with(id) || id.starts_with(&s.short_id))
            .with_context(|| format!("no backup of Pier with id {id} in {from}"))?,
        None => panels
            .last()
            .with_context(|| format!("no backup of Pier in {from}"))?,
    };
    let tmp = data_dir.join("restore.tmp");
    let _ = std::fs::remove_dir_all(&tmp);
    crate::files::private_dir(&tmp)?;
    source
        .restore(
            &chosen.short_id,
            &tmp,
            &["pier.db".into(), "secret.key".into()],
        )
        .await?;
    for f in ["pier.db", "secret.key"] {
        std::fs::rename(tmp.join(f), data_dir.join(f))
            .with_context(|| format!("moving {f} into place"))?;
    }
    let _ = std::fs::remove_dir_all(&tmp);

    // The repository becomes this machine's own: a local directory elsewhere is copied into
    // place; a bucket's snapshots are copied into a new local repository (they get new ids
    // there: the database's are mapped through restic's record of each copy's original).
    let key = pier_core::secret::SecretKey::load_or_create(&data_dir.join("secret.key"))?;
    let local = Restic::new(
        dirs.repo.to_string_lossy().into_owned(),
        dirs.cache.clone(),
        pier_core::backups::repository_password(&key),
    );
    let from_bucket = from.contains(':');
    if from_bucket {
        local.prepare_copy_of(&source).await?;
        local.copy_from(&source).await?;
    } else {
        let src = std::fs::canonicalize(from)?;
        if src != dirs.repo && !dirs.repo.exists() {
            copy_tree(&src, &dirs.repo).context("copying the repository into place")?;
        }
    }

    // The restored database, and what its apps get back.
    let db = pier_core::db::open(&data_dir.join("pier.db")).await?;
    let instance = repo::instance::id(&db).await?;
    let all = local.snapshots(None).await?;
    if from_bucket {
        for s in &all {
            if let Some(original) = &s.original {
                repo::backups::rename_restic_id(&db, original, &s.short_id).await?;
            }
        }
    }
    // Apps made after this database was backed up left snapshots under their ids: new apps must
    // not take those ids (their retention would remove those snapshots).
    let prefix = format!("pier-{instance}-app-");
    let highest = all
        .iter()
        .flat_map(|s| s.tags.iter())
        .filter_map(|t| t.strip_prefix(&prefix))
        .filter_map(|rest| rest.trim_end_matches("-pre").parse::<i64>().ok())
        .max();
    if let Some(n) = highest {
        repo::apps::reserve_ids_through(&db, n).await?;
    }
    let known_done = repo::backups::latest_done_per_app(&db).await?;
    let mut apps = 0;
    for app in repo::apps::list_all(&db).await? {
        let tag = app_tag(&instance, app.id);
        let known = known_done.iter().find(|(a, ..)| *a == app.id).cloned();
        // The newest in the repository: it may be newer than Pier's own backup knew.
        let newest = all.iter().rfind(|s| s.tags.contains(&tag));
        let snapshot_id = match (known, newest) {
            (Some((_, id, rid)), Some(n)) if n.short_id == rid => id,
            (_, Some(n)) => {
                let mode = if n.tags.iter().any(|t| t == super::DUMP_TAG) {
                    pier_core::backups::Consistency::Command
                } else {
                    pier_core::backups::Consistency::Pause
                };
                repo::backups::adopt_snapshot(&db, app.id, &n.short_id, mode, n.time).await?
            }
            (Some((_, id, _)), None) => id,
            (None, None) => continue,
        };
        if repo::backups::queue_restore(&db, app.id, snapshot_id, None, now())
            .await?
            .is_some()
        {
            apps += 1;
        }
    }
    db.close().await;
    Ok(Restored {
        snapshot: chosen.short_id.clone(),
        instance,
        apps,
    })
}

/// The repository a restore reads: a directory, or a bucket (`s3:…`, with the credentials in
/// AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, and AWS_DEFAULT_REGION).
fn source_repository(from: &str, dirs: &Dirs, passphrase: &str) -> anyhow::Result<Restic> {
    let r = Restic::new(from, dirs.cache.clone(), passphrase.to_owned());
    if let Some(rest) = from.strip_prefix("s3:") {
        let key = std::env::var("AWS_ACCESS_KEY_ID").unwrap_or_default();
        let secret = std::env::var("AWS_SECRET_ACCESS_KEY").unwrap_or_default();
        if key.is_empty() || secret.is_empty() {
            bail!("set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY to read {rest}");
        }
        let region = std::env::var("AWS_DEFAULT_REGION").unwrap_or_else(|_| "us-east-1".into());
        return Ok(r.with_s3(&key, &secret, &region));
    }
    if from.contains(':') {
        bail!("--from takes a directory or an s3: location");
    }
    Ok(r)
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let target: PathBuf = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_tree(&e.path(), &target)?;
        } else {
            std::fs::copy(e.path(), &target)?;
        }
    }
    Ok(())
}
