//! `/api/v1/apps/{name}/backups`: snapshots of an app's volumes, taking one now, restoring one,
//! downloading one as a tar, and the app's backup policy. Another tenant's app (and so its
//! snapshots) is not found.

use axum::{
    extract::{Path, State},
    http::StatusCode,
    response::Response,
    routing::{get, post},
    Json, Router,
};
use pier_core::audit::Who;
use pier_core::{
    backups::{BackupPolicy, BackupSummary, PolicyPatch, Restore, RestoreInto, Snapshot},
    model::Scope,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[allow(unused_imports)]
use super::ErrorBody;
use super::{format_time, ApiResult, Body, Caller, Page, PageQuery, Q};
use crate::http::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/apps/{name}/backups", get(list).post(create))
        .route("/apps/{name}/backups/{id}", get(show))
        .route("/apps/{name}/backups/{id}/restore", post(restore))
        .route("/apps/{name}/backups/{id}/download", get(download))
        .route("/apps/{name}/restores/{id}", get(restore_status))
        .route("/apps/{name}/backup-policy", get(policy).put(set_policy))
        .route("/pier-backups", post(back_up_pier))
        .route(
            "/backup-target",
            get(target).put(set_target).delete(delete_target),
        )
}

/// One snapshot of an app's volumes, or the attempt at one.
#[derive(Debug, Serialize, ToSchema)]
pub struct SnapshotOut {
    id: i64,
    /// queued, running, done or failed.
    #[schema(example = "done")]
    state: String,
    /// Why it failed.
    reason: Option<String>,
    /// manual or schedule.
    #[schema(example = "manual")]
    trigger: String,
    /// pause or stop: how the files were kept still while read; command: the snapshot is the
    /// output of the app's backup command (the file `dump`).
    #[schema(example = "pause")]
    mode: String,
    /// Bytes read so far (running) or in all (done).
    bytes: i64,
    /// Bytes there are to read, once known.
    total_bytes: i64,
    files: i64,
    /// New data this snapshot stored, after deduplication and compression.
    added_bytes: Option<i64>,
    /// How long the app was paused or stopped, in ms.
    paused_ms: Option<i64>,
    /// How long the snapshot took, in ms (whole seconds).
    duration_ms: Option<i64>,
    /// When it was copied to the offsite target (null: not yet, or there is none).
    offsite_at: Option<String>,
    created_at: String,
    started_at: Option<String>,
    finished_at: Option<String>,
}

impl From<Snapshot> for SnapshotOut {
    fn from(s: Snapshot) -> Self {
        SnapshotOut {
            duration_ms: s.duration_ms(),
            offsite_at: s.offsite_at.map(format_time),
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
            created_at: format_time(s.created_at),
            started_at: s.started_at.map(format_time),
            finished_at: s.finished_at.map(format_time),
        }
    }
}

/// A restore of a snapshot into its app's volumes.
#[derive(Debug, Serialize, ToSchema)]
pub struct RestoreOut {
    id: i64,
    /// The snapshot restored.
    snapshot: i64,
    /// queued, running, done or failed.
    #[schema(example = "queued")]
    state: String,
    reason: Option<String>,
    /// The new volume restored into (null: the app's own volumes, or its restore command).
    into_volume: Option<String>,
    created_at: String,
    started_at: Option<String>,
    finished_at: Option<String>,
}

impl From<Restore> for RestoreOut {
    fn from(r: Restore) -> Self {
        RestoreOut {
            into_volume: r.into_volume,
            id: r.id,
            snapshot: r.snapshot_id,
            state: r.state.as_str().into(),
            reason: r.reason,
            created_at: format_time(r.created_at),
            started_at: r.started_at.map(format_time),
            finished_at: r.finished_at.map(format_time),
        }
    }
}

/// An app's backup policy.
#[derive(Debug, Serialize, ToSchema)]
pub struct PolicyOut {
    /// off, hourly, daily or weekly.
    #[schema(example = "daily")]
    schedule: String,
    /// The time of day (UTC) for daily and weekly; hourly runs at its minute.
    #[schema(example = "03:00")]
    at: String,
    /// For weekly: monday … sunday.
    #[schema(example = "monday")]
    weekday: String,
    /// pause (default: processes frozen while their volumes' files are read), stop, or
    /// command (the backup is what `command` writes to its standard output).
    #[schema(example = "pause")]
    mode: String,
    /// Retention: the latest N snapshots, and the last of each of the latest D days and W
    /// weeks.
    keep_last: i64,
    keep_daily: i64,
    keep_weekly: i64,
    /// Command mode: run inside the app's container, without a shell; its standard output is
    /// the backup.
    #[schema(example = "pg_dump -Fc -U postgres app")]
    command: String,
    /// Reads a command-mode backup from its standard input on a restore.
    #[schema(example = "pg_restore --clean --if-exists -U postgres -d app")]
    restore_command: String,
}

impl From<BackupPolicy> for PolicyOut {
    fn from(p: BackupPolicy) -> Self {
        PolicyOut {
            schedule: p.schedule.as_str().into(),
            at: p.at_text(),
            weekday: p.weekday_text().into(),
            mode: p.mode.as_str().into(),
            keep_last: p.keep_last,
            keep_daily: p.keep_daily,
            keep_weekly: p.keep_weekly,
            command: p.command,
            restore_command: p.restore_command,
        }
    }
}

/// An app's backups at a glance: its policy and how the latest went.
#[derive(Debug, Serialize, ToSchema)]
pub struct BackupOut {
    #[serde(flatten)]
    policy: PolicyOut,
    /// When the latest good snapshot finished.
    last_success_at: Option<String>,
    /// The latest snapshot's failure, while it is the latest.
    last_failure: Option<String>,
    /// A scheduled snapshot was missed: the last good one is older than the schedule allows.
    overdue: bool,
    /// What the app's snapshots take in the backup repository (deduplicated, compressed);
    /// counted against its owner's `max_backup_mb`.
    stored_bytes: i64,
}

impl From<BackupSummary> for BackupOut {
    fn from(s: BackupSummary) -> Self {
        BackupOut {
            policy: s.policy.into(),
            last_success_at: s.last_done_at.map(format_time),
            last_failure: s.last_failure.map(|(why, _)| why),
            overdue: s.overdue,
            stored_bytes: s.stored_bytes,
        }
    }
}

/// Changes to a backup policy; what is left out stays.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyBody {
    /// off, hourly, daily or weekly.
    #[schema(example = "daily")]
    schedule: Option<String>,
    /// HH:MM, UTC.
    #[schema(example = "03:00")]
    at: Option<String>,
    /// monday … sunday.
    #[schema(example = "sunday")]
    weekday: Option<String>,
    /// pause, stop or command.
    #[schema(example = "pause")]
    mode: Option<String>,
    /// The backup command (command mode): an argument list in shell-like quoting, run inside
    /// the container without a shell; its standard output is the backup, its exit status
    /// checked. `sh -c '…'` where a pipe is needed.
    #[schema(example = "pg_dump -Fc -U postgres app")]
    command: Option<String>,
    /// The command a command-mode backup is restored with, fed the backup on its standard
    /// input.
    #[schema(example = "pg_restore --clean --if-exists -U postgres -d app")]
    restore_command: Option<String>,
    #[schema(minimum = 1, maximum = 1000)]
    keep_last: Option<i64>,
    #[schema(minimum = 0, maximum = 1000)]
    keep_daily: Option<i64>,
    #[schema(minimum = 0, maximum = 1000)]
    keep_weekly: Option<i64>,
}

impl From<PolicyBody> for PolicyPatch {
    fn from(b: PolicyBody) -> Self {
        PolicyPatch {
            schedule: b.schedule,
            at: b.at,
            weekday: b.weekday,
            mode: b.mode,
            keep_last: b.keep_last,
            keep_daily: b.keep_daily,
            keep_weekly: b.keep_weekly,
            command: b.command,
            restore_command: b.restore_command,
        }
    }
}

/// Where to restore a snapshot. Left out: into the app itself.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreBody {
    /// Restore into a new volume of this name beside the app's own (to look at old data),
    /// instead of over the app's volumes. It counts against your storage quota; attach it to
    /// an app to read it.
    #[schema(example = "db-data-tuesday")]
    into_volume: Option<String>,
    /// Which of the app's volumes to take from the snapshot (may be left out when the app has
    /// one).
    #[schema(example = "db-data")]
    from_volume: Option<String>,
}

/// Applies a policy change from an app's create or update body.
pub async fn apply_policy(
    s: &AppState,
    caller: &Caller,
    name: &str,
    body: PolicyBody,
) -> ApiResult<()> {
    s.pier
        .set_backup_policy(&caller.actor, name, &body.into())
        .await?;
    Ok(())
}

/// Snapshot ids in paths: a number, else not found.
fn id(s: &str) -> ApiResult<i64> {
    s.parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| pier_core::Error::NotFound.into())
}

/// The app's snapshots, newest first (queued, running and failed ones too).
#[utoipa::path(get, path = "/api/v1/apps/{name}/backups", tag = "backups",
    operation_id = "list_backups",
    params(("name" = String, Path, description = "The app's name"), PageQuery),
    security(("token" = [])),
    responses((status = 200, body = Page<SnapshotOut>), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn list(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Q(q): Q<PageQuery>,
) -> ApiResult<Json<Page<SnapshotOut>>> {
    caller.require(Scope::Read)?;
    let all = s.pier.backups(&caller.actor, &name).await?;
    Ok(Json(q.paginate(
        all.into_iter().map(SnapshotOut::from).collect(),
    )?))
}

/// Backs the app's volumes up now. Answers at once with the snapshot, `queued` (or the one
/// already queued or running); poll it until it is `done` or `failed`.
#[utoipa::path(post, path = "/api/v1/apps/{name}/backups", tag = "backups",
    operation_id = "create_backup",
    params(("name" = String, Path, description = "The app's name")),
    security(("token" = [])),
    responses((status = 202, body = SnapshotOut), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn create(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<(StatusCode, Json<SnapshotOut>)> {
    caller.require(Scope::Write)?;
    let snap = s.pier.back_up_now(&caller.actor, &name).await?;
    Ok((StatusCode::ACCEPTED, Json(snap.into())))
}

/// One snapshot.
#[utoipa::path(get, path = "/api/v1/apps/{name}/backups/{id}", tag = "backups",
    operation_id = "show_backup",
    params(("name" = String, Path, description = "The app's name"),
        ("id" = String, Path, description = "The snapshot's id")),
    security(("token" = [])),
    responses((status = 200, body = SnapshotOut), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn show(
    State(s): State<AppState>,
    caller: Caller,
    Path((name, sid)): Path<(String, String)>,
) -> ApiResult<Json<SnapshotOut>> {
    caller.require(Scope::Read)?;
    let snap = s.pier.backup(&caller.actor, &name, id(&sid)?).await?;
    Ok(Json(snap.into()))
}

/// Restores a snapshot. Into the app (no body): the app is stopped, the contents of its
/// volumes replaced by the snapshot's, and the app started again; a command-mode snapshot is
/// fed to the app's restore command instead, while it runs. With `into_volume`: one of the
/// snapshot's volumes goes into a new volume and the app is not touched. Answers at once with
/// the restore, `queued`.
#[utoipa::path(post, path = "/api/v1/apps/{name}/backups/{id}/restore", tag = "backups",
    operation_id = "restore_backup",
    params(("name" = String, Path, description = "The app's name"),
        ("id" = String, Path, description = "The snapshot's id")),
    request_body = Option<RestoreBody>,
    security(("token" = [])),
    responses((status = 202, body = RestoreOut), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn restore(
    State(s): State<AppState>,
    caller: Caller,
    Path((name, sid)): Path<(String, String)>,
    body: Option<Body<RestoreBody>>,
) -> ApiResult<(StatusCode, Json<RestoreOut>)> {
    caller.require(Scope::Write)?;
    let into = match body.map(|b| b.0) {
        Some(RestoreBody {
            into_volume: Some(name),
            from_volume,
        }) => RestoreInto::NewVolume {
            from: from_volume,
            name,
        },
        Some(RestoreBody {
            into_volume: None,
            from_volume: Some(_),
        }) => {
            return Err(pier_core::Error::field(
                "into_volume",
                "Name the new volume to restore into.",
            )
            .into())
        }
        _ => RestoreInto::App,
    };
    let r = s
        .pier
        .restore_backup(&caller.actor, &name, id(&sid)?, &into)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(r.into())))
}

/// One restore.
#[utoipa::path(get, path = "/api/v1/apps/{name}/restores/{id}", tag = "backups",
    operation_id = "show_restore",
    params(("name" = String, Path, description = "The app's name"),
        ("id" = String, Path, description = "The restore's id")),
    security(("token" = [])),
    responses((status = 200, body = RestoreOut), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn restore_status(
    State(s): State<AppState>,
    caller: Caller,
    Path((name, rid)): Path<(String, String)>,
) -> ApiResult<Json<RestoreOut>> {
    caller.require(Scope::Read)?;
    let r = s.pier.restore_job(&caller.actor, &name, id(&rid)?).await?;
    Ok(Json(r.into()))
}

/// A finished snapshot as a tar archive (one directory per volume, `v<id>`), streamed.
#[utoipa::path(get, path = "/api/v1/apps/{name}/backups/{id}/download", tag = "backups",
    operation_id = "download_backup",
    params(("name" = String, Path, description = "The app's name"),
        ("id" = String, Path, description = "The snapshot's id")),
    security(("token" = [])),
    responses(
        (status = 200, description = "The snapshot as a tar archive",
            content_type = "application/x-tar"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 503, body = ErrorBody)))]
pub async fn download(
    State(s): State<AppState>,
    caller: Caller,
    Path((name, sid)): Path<(String, String)>,
) -> ApiResult<Response> {
    caller.require(Scope::Read)?;
    let snap = s.pier.backup(&caller.actor, &name, id(&sid)?).await?;
    Ok(crate::backup::tar_download(&s.pier, &name, &snap).await?)
}

/// The app's backup policy.
#[utoipa::path(get, path = "/api/v1/apps/{name}/backup-policy", tag = "backups",
    operation_id = "show_backup_policy",
    params(("name" = String, Path, description = "The app's name")),
    security(("token" = [])),
    responses((status = 200, body = BackupOut), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn policy(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<BackupOut>> {
    caller.require(Scope::Read)?;
    let app = s.pier.own_app(&caller.actor, &name).await?;
    Ok(Json(s.pier.backup_summary(app.id).await?.into()))
}

/// Changes the app's backup policy (what is left out stays).
#[utoipa::path(put, path = "/api/v1/apps/{name}/backup-policy", tag = "backups",
    operation_id = "set_backup_policy", request_body = PolicyBody,
    params(("name" = String, Path, description = "The app's name")),
    security(("token" = [])),
    responses((status = 200, body = BackupOut), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn set_policy(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Body(b): Body<PolicyBody>,
) -> ApiResult<Json<BackupOut>> {
    caller.require(Scope::Write)?;
    apply_policy(&s, &caller, &name, b).await?;
    let app = s.pier.own_app(&caller.actor, &name).await?;
    Ok(Json(s.pier.backup_summary(app.id).await?.into()))
}

/// The offsite backup target, without its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct TargetOut {
    #[schema(example = "https://s3.example.com")]
    endpoint: String,
    #[schema(example = "us-east-1")]
    region: String,
    #[schema(example = "pier-backups")]
    bucket: String,
    access_key: String,
    /// When the last copy that went through began.
    last_ok_at: Option<String>,
    /// Why the last copy failed, while it is the latest.
    last_error: Option<String>,
    last_error_at: Option<String>,
    /// Failed copies in a row (the next try waits longer each time).
    failures: i64,
    /// Snapshots not copied yet.
    pending: i64,
}

impl From<pier_core::backup_target::TargetView> for TargetOut {
    fn from(v: pier_core::backup_target::TargetView) -> Self {
        TargetOut {
            endpoint: v.endpoint,
            region: v.region,
            bucket: v.bucket,
            access_key: v.access_key,
            last_ok_at: v.last_ok_at.map(format_time),
            last_error: v.last_error,
            last_error_at: v.last_error_at.map(format_time),
            failures: v.failures,
            pending: v.pending,
        }
    }
}

/// An S3-compatible bucket every snapshot is copied to. (No `Debug`: it holds a secret.)
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TargetBody {
    /// http(s)://host[:port]
    #[schema(example = "https://s3.example.com")]
    endpoint: String,
    /// Default us-east-1.
    region: Option<String>,
    bucket: String,
    access_key: String,
    /// Stored encrypted, never shown; leave it out to keep the stored one.
    secret_key: Option<String>,
}

/// The offsite backup target (admin scope); 404 when there is none.
#[utoipa::path(get, path = "/api/v1/backup-target", tag = "backups",
    operation_id = "show_backup_target",
    security(("token" = [])),
    responses((status = 200, body = TargetOut), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn target(State(s): State<AppState>, caller: Caller) -> ApiResult<Json<TargetOut>> {
    caller.require(Scope::Admin)?;
    let t = s
        .pier
        .backup_target(&caller.actor)
        .await?
        .ok_or(pier_core::Error::NotFound)?;
    Ok(Json(t.into()))
}

/// Sets the offsite backup target (admin scope): every snapshot, and Pier's own backups, are
/// copied to it after they are taken; a failing target is retried with backoff.
#[utoipa::path(put, path = "/api/v1/backup-target", tag = "backups",
    operation_id = "set_backup_target", request_body = TargetBody,
    security(("token" = [])),
    responses((status = 200, body = TargetOut), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn set_target(
    State(s): State<AppState>,
    caller: Caller,
    Body(b): Body<TargetBody>,
) -> ApiResult<Json<TargetOut>> {
    caller.require(Scope::Admin)?;
    let input = pier_core::backup_target::TargetInput {
        endpoint: b.endpoint,
        region: b.region.unwrap_or_default(),
        bucket: b.bucket,
        access_key: b.access_key,
        secret: b.secret_key.unwrap_or_default(),
    };
    Ok(Json(
        s.pier
            .set_backup_target(&caller.actor, &input)
            .await?
            .into(),
    ))
}

/// Removes the offsite backup target (admin scope); what was copied stays in the bucket.
#[utoipa::path(delete, path = "/api/v1/backup-target", tag = "backups",
    operation_id = "delete_backup_target",
    security(("token" = [])),
    responses((status = 204), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_target(State(s): State<AppState>, caller: Caller) -> ApiResult<StatusCode> {
    caller.require(Scope::Admin)?;
    s.pier.delete_backup_target(&caller.actor).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A backup of Pier itself.
#[derive(Debug, Serialize, ToSchema)]
pub struct PierBackupOut {
    /// The restic snapshot.
    #[schema(example = "1b2c3d4e")]
    snapshot: String,
}

/// Backs Pier itself up now (admin scope): its database and secret key, into the backup
/// repository (and the offsite target, if there is one, right after). Answers when it is taken.
#[utoipa::path(post, path = "/api/v1/pier-backups", tag = "backups",
    operation_id = "back_up_pier",
    security(("token" = [])),
    responses((status = 201, body = PierBackupOut), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn back_up_pier(
    State(s): State<AppState>,
    caller: Caller,
) -> ApiResult<(StatusCode, Json<PierBackupOut>)> {
    caller.require(Scope::Admin)?;
    let snapshot = crate::backup::panel::back_up_for(
        &s.pier,
        &Who::from(&caller.actor),
        s.pier.may_back_up_pier(&caller.actor),
    )
    .await?;
    s.pier.wake_backups();
    Ok((StatusCode::CREATED, Json(PierBackupOut { snapshot })))
}
