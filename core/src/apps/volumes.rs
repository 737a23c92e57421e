//! An app's volumes: attach, list, measure, delete, and the checks of the form's volume rows.

use std::collections::HashSet;

use crate::{
    model::{Actor, Volume},
    now, repo,
    runtime::VolumeUsage,
    validate::{self},
    Error, Pier, Result,
};

use super::VolumeInput;

impl Pier {
    /// Makes an app's volumes what the form lists: existing ones of the app stay (their path may
    /// change), kept ones of the tenant are given to it, new names are made within the storage
    /// quota, and the app's volumes left out are kept for later. Inside the caller's transaction.
    pub(super) async fn apply_volumes(
        &self,
        tx: &mut sqlx::SqliteConnection,
        actor: &Actor,
        app_id: i64,
        vols: &[CheckedVolume],
        max_storage_mb: i64,
    ) -> Result<()> {
        let existing = repo::volumes::list_for_user(&mut *tx, actor.user_id).await?;
        let mut keep = Vec::new();
        let mut problems = Vec::new();
        let mut new = Vec::new();
        for v in vols {
            match existing.iter().find(|e| e.name == v.name) {
                Some(e) if e.app_id.is_some_and(|a| a != app_id) => problems.push(format!(
                    "The volume {} belongs to your app {}: a volume serves one app at a time.",
                    v.name,
                    e.app_name.as_deref().unwrap_or("?")
                )),
                Some(e) if v.size_mb.is_some_and(|sz| sz != e.size_mb) => problems.push(format!(
                    "The volume {} has {} MiB; its size cannot be changed.",
                    v.name, e.size_mb
                )),
                Some(e) => {
                    repo::volumes::attach(&mut *tx, actor.user_id, e.id, app_id, &v.path).await?;
                    keep.push(e.id);
                }
                None => match v.size_mb {
                    Some(size) => new.push((v, size)),
                    None => problems.push(format!("Give the new volume {} a size in MiB.", v.name)),
                },
            }
        }
        if !problems.is_empty() {
            return Err(Error::field("volumes", problems.join(" ")));
        }
        for (v, size) in new {
            let row = repo::volumes::NewVolume {
                user_id: actor.user_id,
                app_id: Some(app_id),
                name: &v.name,
                path: &v.path,
                size_mb: size,
            };
            keep.push(
                add_volume(
                    tx,
                    &row,
                    max_storage_mb,
                    "Make it smaller, delete a volume you no longer need",
                )
                .await?,
            );
        }
        repo::volumes::detach_others(tx, app_id, &keep).await
    }

    /// The caller's volumes, kept ones included.
    pub async fn volumes(&self, actor: &Actor) -> Result<Vec<Volume>> {
        repo::volumes::list_for_user(self.db(), actor.user_id).await
    }

    /// The volumes an app mounts.
    pub async fn app_volumes(&self, actor: &Actor, name: &str) -> Result<Vec<Volume>> {
        let app = self.own_app(actor, name).await?;
        repo::volumes::for_app(self.db(), app.id).await
    }

    /// How full each of these volumes is (None where the engine has not made it yet or does
    /// not answer).
    pub async fn volume_usage(&self, volumes: &[Volume]) -> Vec<Option<VolumeUsage>> {
        let Ok(instance) = self.instance_id().await else {
            return vec![None; volumes.len()];
        };
        let mut out = Vec::with_capacity(volumes.len());
        for v in volumes {
            let name = crate::runtime::volume_name(&instance, v.id);
            out.push(match self.runtime().volume_usage(&name).await {
                Ok(u) => u,
                Err(e) => {
                    tracing::warn!(volume = %name, error = %e, "reading volume usage failed");
                    None
                }
            });
        }
        out
    }

    /// Storage the caller's volumes take, in MiB.
    pub async fn storage_usage(&self, actor: &Actor) -> Result<i64> {
        repo::volumes::usage(self.db(), actor.user_id).await
    }

    /// Deletes one of the caller's kept volumes and its data. A volume an app mounts is a 409.
    pub async fn delete_volume(&self, actor: &Actor, name: &str) -> Result<()> {
        let what = crate::audit::Change::new(crate::audit::Action::VolumeDelete, name.trim())
            .owner(actor.user_id)
            .summary("deleted with its data");
        self.audited(actor, what, async {
            let name = name.trim();
            let vols = repo::volumes::list_for_user(self.db(), actor.user_id).await?;
            let Some(v) = vols.iter().find(|v| v.name == name) else {
                return Err(Error::NotFound);
            };
            if let Some(app) = &v.app_name {
                return Err(Error::Conflict(format!(
                    "The volume {name} belongs to your app {app}: take it off the app (or delete the app) first."
                )));
            }
            if !repo::volumes::delete_kept(self.db(), actor.user_id, v.id).await? {
                return Err(Error::Conflict(
                    "The volume was just given to an app; try again.".into(),
                ));
            }
            tracing::info!(volume = %name, tenant = actor.user_id, "volume deleted");
            self.wake_engine();
            Ok(())
        })
        .await
    }
}

/// Makes a volume within its owner's storage quota (checked in the same statement), inside the
/// caller's transaction: its id, or a `Quota` error saying what is free and, in `advice`, what
/// to do.
pub(crate) async fn add_volume(
    tx: &mut sqlx::SqliteConnection,
    row: &repo::volumes::NewVolume<'_>,
    max_storage_mb: i64,
    advice: &str,
) -> Result<i64> {
    if let Some(id) =
        repo::volumes::insert_within_quota(&mut *tx, row, max_storage_mb, now()).await?
    {
        return Ok(id);
    }
    let used = repo::volumes::usage(&mut *tx, row.user_id).await?;
    Err(Error::Quota(format!(
        "The volume {} needs {} MiB, but only {} MiB of your {max_storage_mb} MiB storage quota is free. {advice}, or ask an admin to raise your quota.",
        row.name,
        row.size_mb,
        (max_storage_mb - used).max(0)
    )))
}

/// A volume row of a form, checked on its own (whether the name exists is the database's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct CheckedVolume {
    name: String,
    path: String,
    size_mb: Option<i64>,
}

/// Checks an app's volume rows: names, paths and sizes, no name or path twice.
pub(super) fn check_volumes(
    list: &[VolumeInput],
) -> std::result::Result<Vec<CheckedVolume>, String> {
    let rows: Vec<&VolumeInput> = list
        .iter()
        .filter(|v| !(v.name.trim().is_empty() && v.path.trim().is_empty() && v.size_mb.is_none()))
        .collect();
    if rows.len() > validate::MAX_VOLUMES_PER_APP {
        return Err(format!(
            "At most {} volumes per app, please.",
            validate::MAX_VOLUMES_PER_APP
        ));
    }
    let mut problems = Vec::new();
    let mut out = Vec::new();
    let (mut names, mut paths) = (HashSet::new(), HashSet::new());
    for v in rows {
        let name = validate::volume_name(&v.name);
        let path = validate::mount_path(&v.path);
        let size = v.size_mb.map(validate::volume_size).transpose();
        match (name, path, size) {
            (Ok(name), Ok(path), Ok(size_mb)) => {
                if !names.insert(name.clone()) {
                    problems.push(format!("The volume {name} is listed twice."));
                }
                if !paths.insert(path.clone()) {
                    problems.push(format!("Two volumes are mounted at {path}."));
                }
                out.push(CheckedVolume {
                    name,
                    path,
                    size_mb,
                });
            }
            (n, p, sz) => {
                let label = v.name.trim();
                for e in [n.err(), p.err(), sz.err().map(|e| format!("Size: {e}"))]
                    .into_iter()
                    .flatten()
                {
                    problems.push(if label.is_empty() {
                        e
                    } else {
                        format!("Volume {label}: {e}")
                    });
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems.join(" "))
    }
}
