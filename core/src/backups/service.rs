//! The backup operations people ask for, each scoped to the caller's own apps (`own_app`), so
//! another tenant's app, snapshot or restore is simply not found; and the secrets the
//! repositories are opened with.

use super::*;
use crate::{model::Actor, now, repo, validate, Error, Pier, Result};

/// How many snapshots a list shows (retention keeps far fewer).
const LISTED: i64 = 500;

impl Pier {
    pub async fn backup_policy(&self, app_id: i64) -> Result<BackupPolicy> {
        Ok(repo::backups::policy(self.db(), app_id)
            .await?
            .unwrap_or_default())
    }

    /// Changes the caller's app's backup policy; the scheduler follows at once.
    pub async fn set_backup_policy(
        &self,
        actor: &Actor,
        name: &str,
        patch: &PolicyPatch,
    ) -> Result<BackupPolicy> {
        let what = crate::audit::Change::new(crate::audit::Action::BackupPolicy, name.trim())
            .owner(actor.user_id)
            .summary(patch.describe());
        self.audited(actor, what, async {
            let app = self.own_app(actor, name).await?;
            let old = self.backup_policy(app.id).await?;
            let mut p = patch.apply(&old)?;
            if p != old {
                p.updated_at = now();
                repo::backups::set_policy(self.db(), app.id, &p).await?;
                self.wake_backups();
            }
            Ok(p)
        })
        .await
    }

    pub async fn backup_summary(&self, app_id: i64) -> Result<BackupSummary> {
        let policy = self.backup_policy(app_id).await?;
        let (last_done_at, last) = repo::backups::latest(self.db(), app_id).await?;
        let last_failure = last.filter(|s| s.state == JobState::Failed).map(|s| {
            (
                s.reason.unwrap_or_default(),
                s.finished_at.unwrap_or(s.created_at),
            )
        });
        Ok(BackupSummary {
            overdue: policy.overdue(now(), last_done_at),
            policy,
            last_done_at,
            last_failure,
            last_restore: repo::backups::latest_restore(self.db(), app_id).await?,
            stored_bytes: repo::backups::stored_for_app(self.db(), app_id).await?,
        })
    }

    /// The caller's app's snapshots, newest first.
    pub async fn backups(&self, actor: &Actor, name: &str) -> Result<Vec<Snapshot>> {
        let app = self.own_app(actor, name).await?;
        repo::backups::list(self.db(), app.id, LISTED).await
    }

    /// One of the caller's app's snapshots, or 404.
    pub async fn backup(&self, actor: &Actor, name: &str, id: i64) -> Result<Snapshot> {
        let app = self.own_app(actor, name).await?;
        repo::backups::snapshot(self.db(), app.id, id)
            .await?
            .ok_or(Error::NotFound)
    }

    /// Queues a snapshot of the caller's app now. One already queued or running is answered
    /// instead of a second.
    pub async fn back_up_now(&self, actor: &Actor, name: &str) -> Result<Snapshot> {
        let what = crate::audit::Change::new(crate::audit::Action::BackupCreate, name.trim())
            .owner(actor.user_id)
            .summary("snapshot now");
        self.audited(actor, what, async {
            let app = self.own_app(actor, name).await?;
            self.backups_on()?;
            self.backup_room(actor.user_id).await?;
            let mode = self.backup_policy(app.id).await?.mode;
            if mode != Consistency::Command
                && repo::volumes::for_app(self.db(), app.id).await?.is_empty()
            {
                return Err(Error::Conflict(
                    "This app has no volumes, so there is nothing to back up.".into(),
                ));
            }
            let id = repo::backups::queue_snapshot(self.db(), app.id, Trigger::Manual, mode, now())
                .await?;
            self.wake_backups();
            repo::backups::snapshot(self.db(), app.id, id)
                .await?
                .ok_or_else(|| Error::internal("snapshot vanished"))
        })
        .await
    }

    /// Queues a restore of one of the caller's app's snapshots. Into the app: the app is
    /// stopped, its volumes' contents replaced by the snapshot's, and started again (a dump
    /// taken by a command is fed to the policy's restore command instead, while the app runs).
    /// Into a new volume: one of the snapshot's volumes is written to a new kept volume of the
    /// caller (within their storage quota), and the app is not touched.
    pub async fn restore_backup(
        &self,
        actor: &Actor,
        name: &str,
        id: i64,
        into: &RestoreInto,
    ) -> Result<Restore> {
        let what = crate::audit::Change::new(crate::audit::Action::BackupRestore, name.trim())
            .owner(actor.user_id)
            .summary(into.describe(id));
        self.audited(actor, what, async {
            let snap = self.backup(actor, name, id).await?;
            self.backups_on()?;
            if snap.state != JobState::Done {
                return Err(Error::Conflict(
                    "Only a finished snapshot can be restored.".into(),
                ));
            }
            let busy = || {
                Error::Conflict(
                    "A backup or restore of this app is under way; try again when it ends.".into(),
                )
            };
            let rid = match into {
                RestoreInto::App => {
                    if snap.mode == Consistency::Command
                        && self
                            .backup_policy(snap.app_id)
                            .await?
                            .restore_command
                            .is_empty()
                    {
                        return Err(Error::field(
                            "restore_command",
                            "This snapshot is a command's output: set the app's restore command (for example pg_restore --clean --if-exists -U postgres -d app), which reads it from its standard input, then restore.",
                        ));
                    }
                    repo::backups::queue_restore(self.db(), snap.app_id, snap.id, None, now())
                        .await?
                        .ok_or_else(busy)?
                }
                RestoreInto::NewVolume { from, name: new } => {
                    if snap.mode == Consistency::Command {
                        return Err(Error::field(
                            "into_volume",
                            "This snapshot is a command's output, not a volume: download it, or restore it into the app.",
                        ));
                    }
                    let new = validate::volume_name(new).map_err(|e| Error::field("into_volume", e))?;
                    let vols = repo::volumes::for_app(self.db(), snap.app_id).await?;
                    let source = match from.as_deref().map(str::trim).filter(|f| !f.is_empty()) {
                        Some(f) => vols.iter().find(|v| v.name == f).ok_or_else(|| {
                            Error::field("from_volume", format!("This app has no volume named {f}."))
                        })?,
                        None if vols.len() == 1 => &vols[0],
                        None => {
                            return Err(Error::field(
                                "from_volume",
                                "Say which of the app's volumes to restore.",
                            ))
                        }
                    };
                    let q = repo::users::by_id(self.db(), actor.user_id)
                        .await?
                        .ok_or(Error::Unauthenticated)?
                        .quotas;
                    let mut tx = self.db().begin().await?;
                    if repo::volumes::list_for_user(&mut *tx, actor.user_id)
                        .await?
                        .iter()
                        .any(|v| v.name == new)
                    {
                        return Err(Error::field(
                            "into_volume",
                            format!("You have a volume named {new} already; choose another name."),
                        ));
                    }
                    let row = repo::volumes::NewVolume {
                        user_id: actor.user_id,
                        app_id: None,
                        name: &new,
                        path: &source.path,
                        size_mb: source.size_mb,
                    };
                    let vid = crate::apps::add_volume(
                        &mut tx,
                        &row,
                        q.max_storage_mb,
                        "Delete a volume you no longer need",
                    )
                    .await?;
                    let rid = repo::backups::queue_restore(
                        &mut *tx,
                        snap.app_id,
                        snap.id,
                        Some((source.id, vid)),
                        now(),
                    )
                    .await?
                    .ok_or_else(busy)?;
                    tx.commit().await?;
                    rid
                }
            };
            self.wake_backups();
            tracing::info!(
                app = name,
                snapshot = id,
                tenant = actor.user_id,
                into = ?into,
                "restore queued"
            );
            repo::backups::restore(self.db(), snap.app_id, rid)
                .await?
                .ok_or_else(|| Error::internal("restore vanished"))
        })
        .await
    }

    /// One of the caller's app's restores, or 404.
    pub async fn restore_job(&self, actor: &Actor, name: &str, id: i64) -> Result<Restore> {
        let app = self.own_app(actor, name).await?;
        repo::backups::restore(self.db(), app.id, id)
            .await?
            .ok_or(Error::NotFound)
    }

    /// Every app with a policy or a snapshot, for the admin page.
    pub async fn backup_overview(&self, actor: &Actor) -> Result<Vec<BackupOverviewRow>> {
        Self::require_admin(actor)?;
        let mut out = Vec::new();
        for (app_id, owner, app) in repo::backups::apps_with_backups(self.db()).await? {
            out.push(BackupOverviewRow {
                owner,
                app,
                summary: self.backup_summary(app_id).await?,
            });
        }
        Ok(out)
    }

    /// What the tenant's backups take, and the most they may (bytes).
    pub async fn backup_usage(&self, user_id: i64) -> Result<(i64, i64)> {
        let q = repo::users::by_id(self.db(), user_id)
            .await?
            .ok_or(Error::NotFound)?
            .quotas;
        let used = repo::backups::stored_for_user(self.db(), user_id).await?;
        Ok((used, q.max_backup_mb.saturating_mul(1 << 20)))
    }

    /// The bytes the tenant's backups may still take; `Quota` (with the figures) when their
    /// backups fill the quota, so no new snapshot may start.
    pub async fn backup_room(&self, user_id: i64) -> Result<u64> {
        let (used, max) = self.backup_usage(user_id).await?;
        if used >= max {
            return Err(Error::Quota(format!(
                "Your backups take {} MiB of your {} MiB backup quota. Keep fewer snapshots (retention), or ask an admin to raise the quota.",
                used >> 20,
                max >> 20
            )));
        }
        Ok(u64::try_from(max - used).unwrap_or(0))
    }

    fn backups_on(&self) -> Result<()> {
        match self.settings().backups.dir {
            Some(_) => Ok(()),
            None => Err(Error::Unavailable(
                "Backups are not set up on this server; ask its operator.".into(),
            )),
        }
    }

    /// Whether the caller may take a backup of Pier itself now (admins, where it is set up).
    pub fn may_back_up_pier(&self, actor: &Actor) -> Result<()> {
        Self::require_admin(actor)?;
        let b = &self.settings().backups;
        if b.dir.is_none() || b.key_file.is_none() {
            return Err(Error::Unavailable(
                "Pier's own backups are not set up on this server.".into(),
            ));
        }
        Ok(())
    }

    /// Pier's own backups (admins only).
    pub async fn panel_backup_status(&self, actor: &Actor) -> Result<PanelBackupStatus> {
        Self::require_admin(actor)?;
        let list = repo::backups::panel_backups(self.db(), 50).await?;
        let last_done_at = list
            .iter()
            .find(|b| b.state == JobState::Done)
            .map(|b| b.finished_at);
        let last_failure = list
            .first()
            .filter(|b| b.state == JobState::Failed)
            .map(|b| (b.reason.clone().unwrap_or_default(), b.finished_at));
        // Only where the daily backup runs at all (a Pier that knows its key file).
        let scheduled =
            self.settings().backups.dir.is_some() && self.settings().backups.key_file.is_some();
        Ok(PanelBackupStatus {
            overdue: scheduled && PANEL_POLICY.overdue(now(), last_done_at),
            last_done_at,
            last_failure,
            passphrase_at: repo::backups::passphrase_at(self.db()).await?,
        })
    }

    /// Wakes the backup worker (a queued job, a changed policy).
    pub fn wake_backups(&self) {
        self.0.wake_backups.notify_one();
    }

    /// Waits until [`Pier::wake_backups`] is called (a call made before waiting counts).
    pub async fn backups_woken(&self) {
        self.0.wake_backups.notified().await;
    }

    /// The secret restic repositories are encrypted with: derived from the operator's key, so
    /// the key (and nothing stored) opens them.
    pub fn backup_password(&self) -> String {
        repository_password(self.key())
    }

    /// Seals the operator's recovery passphrase (the bucket's repository gets it as a key too).
    pub async fn record_passphrase(&self, passphrase: &str) -> Result<()> {
        let sealed = self
            .key()
            .encrypt(passphrase.as_bytes(), PASSPHRASE_CONTEXT);
        repo::backups::set_passphrase(self.db(), &sealed, now()).await
    }

    /// The recovery passphrase, when the bucket's repository still needs it as a key.
    pub async fn passphrase_for_target(&self) -> Result<Option<String>> {
        let Some(sealed) = repo::backups::passphrase_for_target(self.db()).await? else {
            return Ok(None);
        };
        let p = self.key().decrypt(&sealed, PASSPHRASE_CONTEXT)?;
        Ok(Some(String::from_utf8_lossy(&p).into_owned()))
    }
}

const PASSPHRASE_CONTEXT: &str = "backups: recovery passphrase";

/// The password of Pier's restic repositories, derived from the operator's key.
pub fn repository_password(key: &crate::secret::SecretKey) -> String {
    hex::encode(&key.derive("pier backups: restic repository password")[..32])
}
