//! Server functions for an app's backups: its policy, snapshots and restores. Thin wrappers
//! around `pier_core::Pier`, which checks input and scopes everything to the caller's apps.
#![allow(clippy::too_many_arguments)]

use leptos::prelude::*;
use serde::{Deserialize, Serialize};
use server_fn::codec::GetUrl;

#[cfg(feature = "ssr")]
use super::ssr;
use crate::{error::AppError, rpc::Done};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotRow {
    pub id: i64,
    /// queued, running, done, failed.
    pub state: String,
    pub reason: Option<String>,
    /// manual or schedule.
    pub trigger: String,
    /// pause, stop or command.
    pub mode: String,
    pub bytes: i64,
    pub total_bytes: i64,
    pub files: i64,
    pub added_bytes: Option<i64>,
    pub paused_ms: Option<i64>,
    pub duration_ms: Option<i64>,
    pub created: String,
    /// Bytes per second while running (from its start).
    pub rate: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoreRow {
    pub id: i64,
    pub snapshot: i64,
    pub state: String,
    pub reason: Option<String>,
    pub created: String,
    /// A restore into a new volume: its name.
    pub into_volume: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupsInfo {
    /// Backups are set up on this server.
    pub enabled: bool,
    pub has_volumes: bool,
    pub schedule: String,
    pub at: String,
    pub weekday: String,
    pub mode: String,
    pub keep_last: i64,
    pub keep_daily: i64,
    pub keep_weekly: i64,
    pub command: String,
    pub restore_command: String,
    /// The app's volumes, by name (a restore into a new volume takes one of them).
    pub volumes: Vec<String>,
    pub last_success: Option<String>,
    pub last_failure: Option<String>,
    pub overdue: bool,
    /// This app's snapshots, and all of the tenant's, in the repository; the tenant's quota.
    pub stored_bytes: i64,
    pub tenant_stored_bytes: i64,
    pub backup_quota_bytes: i64,
    pub snapshots: Vec<SnapshotRow>,
    pub last_restore: Option<RestoreRow>,
}

#[cfg(feature = "ssr")]
mod convert {
    use super::*;
    use pier_core::{backups, format_time};

    pub fn snapshot(s: backups::Snapshot, now: i64) -> SnapshotRow {
        let rate = (s.state == backups::JobState::Running)
            .then(|| s.started_at.map(|t| s.bytes / (now - t).max(1)))
            .flatten();
        SnapshotRow {
            duration_ms: s.duration_ms(),
            id: s.id,
            state: s.state.as_str().into(),
            reason: s.reason,
            trigger: s.trigger.as_str().into(),
            mode: s.mode.as_str().into(),
            bytes: s.bytes,
            total_bytes: s.total_bytes,
            files: s.files,
            added_bytes: s.added_bytes,
            paused_ms: s.paused_ms,
            created: format_time(s.created_at),
            rate,
        }
    }

    pub fn restore(r: backups::Restore) -> RestoreRow {
        RestoreRow {
            id: r.id,
            snapshot: r.snapshot_id,
            state: r.state.as_str().into(),
            reason: r.reason,
            created: format_time(r.created_at),
            into_volume: r.into_volume,
        }
    }

    /// A form's number: empty is "unchanged".
    pub fn number(field: &str, s: &str) -> Result<Option<i64>, pier_core::Error> {
        match s.trim() {
            "" => Ok(None),
            t => t
                .parse()
                .map(Some)
                .map_err(|_| pier_core::Error::field(field, "Give a whole number.")),
        }
    }
}

#[server(prefix = "/rpc", endpoint = "app_backups", input = GetUrl)]
pub async fn app_backups(name: String) -> Result<BackupsInfo, AppError> {
    let (c, actor) = ssr::signed_in().await?;
    let app = c.pier.own_app(&actor, &name).await?;
    let summary = c.pier.backup_summary(app.id).await?;
    let volumes: Vec<String> = c
        .pier
        .app_volumes(&actor, &name)
        .await?
        .into_iter()
        .map(|v| v.name)
        .collect();
    let now = pier_core::now();
    let usage = c.pier.backup_usage(actor.user_id).await?;
    let p = summary.policy;
    Ok(BackupsInfo {
        enabled: c.pier.settings().backups.dir.is_some(),
        has_volumes: !volumes.is_empty(),
        volumes,
        schedule: p.schedule.as_str().into(),
        at: p.at_text(),
        weekday: p.weekday_text().into(),
        mode: p.mode.as_str().into(),
        keep_last: p.keep_last,
        keep_daily: p.keep_daily,
        keep_weekly: p.keep_weekly,
        command: p.command,
        restore_command: p.restore_command,
        last_success: summary.last_done_at.map(pier_core::format_time),
        last_failure: summary.last_failure.map(|(why, _)| why),
        overdue: summary.overdue,
        stored_bytes: summary.stored_bytes,
        tenant_stored_bytes: usage.0,
        backup_quota_bytes: usage.1,
        snapshots: c
            .pier
            .backups(&actor, &name)
            .await?
            .into_iter()
            .take(50)
            .map(|s| convert::snapshot(s, now))
            .collect(),
        last_restore: summary.last_restore.map(convert::restore),
    })
}

#[server(prefix = "/rpc", endpoint = "save_backup_policy")]
pub async fn save_backup_policy(
    app: String,
    schedule: String,
    at: String,
    #[server(default)] weekday: String,
    mode: String,
    keep_last: String,
    keep_daily: String,
    keep_weekly: String,
    #[server(default)] command: String,
    #[server(default)] restore_command: String,
    csrf_token: String,
) -> Result<Done, AppError> {
    let (c, actor) = ssr::form(csrf_token).await?;
    let some = |s: String| (!s.trim().is_empty()).then_some(s);
    let patch = pier_core::backups::PolicyPatch {
        schedule: some(schedule),
        at: some(at),
        weekday: some(weekday),
        mode: some(mode),
        keep_last: convert::number("keep_last", &keep_last)?,
        keep_daily: convert::number("keep_daily", &keep_daily)?,
        keep_weekly: convert::number("keep_weekly", &keep_weekly)?,
        // Sent empty to clear.
        command: Some(command),
        restore_command: Some(restore_command),
    };
    let p = c.pier.set_backup_policy(&actor, &app, &patch).await?;
    let when = match p.schedule {
        pier_core::backups::Schedule::Off => "not scheduled".to_string(),
        pier_core::backups::Schedule::Hourly => {
            format!("every hour at minute {:02}", p.at_minute % 60)
        }
        pier_core::backups::Schedule::Daily => format!("daily at {} UTC", p.at_text()),
        pier_core::backups::Schedule::Weekly => {
            format!("every {} at {} UTC", p.weekday_text(), p.at_text())
        }
    };
    Ok(Done {
        message: format!("Saved: backups of {app} are {when}."),
        copy: None,
    })
}

#[server(prefix = "/rpc", endpoint = "backup_now")]
pub async fn backup_now(app: String, csrf_token: String) -> Result<Done, AppError> {
    let (c, actor) = ssr::form(csrf_token).await?;
    let s = c.pier.back_up_now(&actor, &app).await?;
    Ok(Done {
        message: format!("Backup #{} of {app} is {}.", s.id, s.state.as_str()),
        copy: None,
    })
}

#[server(prefix = "/rpc", endpoint = "restore_backup")]
pub async fn restore_backup(
    app: String,
    id: i64,
    #[server(default)] into_volume: String,
    #[server(default)] from_volume: String,
    csrf_token: String,
) -> Result<Done, AppError> {
    let (c, actor) = ssr::form(csrf_token).await?;
    let into = if into_volume.trim().is_empty() {
        // The "into a new volume" form sends its volume: never a restore over the app.
        if !from_volume.trim().is_empty() {
            return Err(pier_core::Error::field(
                "into_volume",
                "Name the new volume to restore into.",
            )
            .into());
        }
        pier_core::backups::RestoreInto::App
    } else {
        pier_core::backups::RestoreInto::NewVolume {
            from: Some(from_volume).filter(|f| !f.trim().is_empty()),
            name: into_volume,
        }
    };
    let r = c.pier.restore_backup(&actor, &app, id, &into).await?;
    let message = match &r.into_volume {
        Some(v) => format!(
            "Restoring backup #{} into the new volume {v} (restore #{}); {app} is not touched. Attach the volume to an app to read it.",
            r.snapshot_id, r.id
        ),
        None => format!(
            "Restoring backup #{} into {app} (restore #{}).",
            r.snapshot_id, r.id
        ),
    };
    Ok(Done {
        message,
        copy: None,
    })
}

/// One app's backups on the admin page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupOverviewRow {
    pub owner: String,
    pub app: String,
    pub schedule: String,
    pub last_success: Option<String>,
    pub last_failure: Option<String>,
    pub overdue: bool,
}

/// Pier's own backups on the admin page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PanelBackupRow {
    pub last_success: Option<String>,
    pub last_failure: Option<String>,
    pub passphrase_set: bool,
    pub overdue: bool,
}

/// The admin page's backup section: Pier's own, and every app's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdminBackups {
    pub panel: PanelBackupRow,
    pub apps: Vec<BackupOverviewRow>,
}

/// Pier's own backups, and every app with a schedule or a snapshot (admins only).
#[server(prefix = "/rpc", endpoint = "backup_overview", input = GetUrl)]
pub async fn backup_overview() -> Result<AdminBackups, AppError> {
    let (c, actor) = ssr::signed_in().await?;
    let s = c.pier.panel_backup_status(&actor).await?;
    let panel = PanelBackupRow {
        last_success: s.last_done_at.map(pier_core::format_time),
        last_failure: s.last_failure.map(|(why, _)| why),
        passphrase_set: s.passphrase_at.is_some(),
        overdue: s.overdue,
    };
    let apps = c
        .pier
        .backup_overview(&actor)
        .await?
        .into_iter()
        .map(|r| BackupOverviewRow {
            owner: r.owner,
            app: r.app,
            schedule: r.summary.policy.schedule.as_str().into(),
            last_success: r.summary.last_done_at.map(pier_core::format_time),
            last_failure: r.summary.last_failure.map(|(why, _)| why),
            overdue: r.summary.overdue,
        })
        .collect();
    Ok(AdminBackups { panel, apps })
}

/// The offsite target on the admin page (never its secret).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetRow {
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    pub access_key: String,
    pub last_ok: Option<String>,
    pub last_error: Option<String>,
    pub failures: i64,
    pub pending: i64,
}

#[server(prefix = "/rpc", endpoint = "backup_target_info", input = GetUrl)]
pub async fn backup_target_info() -> Result<Option<TargetRow>, AppError> {
    let (c, actor) = ssr::signed_in().await?;
    Ok(c.pier.backup_target(&actor).await?.map(|t| TargetRow {
        endpoint: t.endpoint,
        region: t.region,
        bucket: t.bucket,
        access_key: t.access_key,
        last_ok: t.last_ok_at.map(pier_core::format_time),
        last_error: t.last_error,
        failures: t.failures,
        pending: t.pending,
    }))
}

#[server(prefix = "/rpc", endpoint = "save_backup_target")]
pub async fn save_backup_target(
    endpoint: String,
    #[server(default)] region: String,
    bucket: String,
    access_key: String,
    #[server(default)] secret_key: String,
    csrf_token: String,
) -> Result<Done, AppError> {
    let (c, actor) = ssr::form(csrf_token).await?;
    let t = c
        .pier
        .set_backup_target(
            &actor,
            &pier_core::backup_target::TargetInput {
                endpoint,
                region,
                bucket,
                access_key,
                secret: secret_key,
            },
        )
        .await?;
    Ok(Done {
        message: format!(
            "Snapshots are copied to {} at {} from now on.",
            t.bucket, t.endpoint
        ),
        copy: None,
    })
}

#[server(prefix = "/rpc", endpoint = "delete_backup_target")]
pub async fn delete_backup_target(csrf_token: String) -> Result<Done, AppError> {
    let (c, actor) = ssr::form(csrf_token).await?;
    c.pier.delete_backup_target(&actor).await?;
    Ok(Done {
        message: "Snapshots are no longer copied offsite; what was copied stays in the bucket."
            .into(),
        copy: None,
    })
}
