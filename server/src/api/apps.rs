//! `/api/v1/apps`: the caller's apps, their deployments, logs and metrics.
//!
//! Handlers only translate JSON to the service's input and its results back; every rule
//! (validation, quotas, tenancy: another tenant's app is simply not found) is the service's.

use std::collections::{BTreeMap, HashSet};

use axum::{
    body::Bytes,
    extract::{Path, State},
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use futures_util::StreamExt;
use pier_core::{
    apps::{AppSpec, AppView, EnvInput, VolumeInput, DEFAULT_LOG_TAIL, MAX_LOG_TAIL},
    logs::Credential,
    model::{AppKind, CapProfile, DeployStatus, Deployment, Scope, Volume},
    runtime::PullProgress,
    telemetry::Point,
    validate::format_cpus,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

#[allow(unused_imports)]
use super::ErrorBody;
use super::{
    backups::{apply_policy, BackupOut, PolicyBody},
    format_time,
    users::Cpus,
    ApiResult, Body, Caller, Page, PageQuery, Q,
};
use crate::http::AppState;
use pier_core::backups::{BackupPolicy, PolicyPatch};

/// How many log lines a request gets when it names no `tail`.
/// How many of an app's latest deployments the deployments list pages through.
const DEPLOYMENTS_LISTED: i64 = 500;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/apps", get(list).post(create))
        .route("/apps/{name}", get(show).patch(update).delete(remove))
        .route("/apps/{name}/start", post(start))
        .route("/apps/{name}/stop", post(stop))
        .route("/apps/{name}/restart", post(restart))
        .route("/apps/{name}/redeploy", post(redeploy))
        .route("/apps/{name}/rollback", post(rollback))
        .route("/apps/{name}/deployments", get(deployments))
        .route("/apps/{name}/logs", get(logs))
        .route("/apps/{name}/metrics", get(metrics))
        .route("/volumes", get(volumes))
        .route("/volumes/{name}", axum::routing::delete(delete_volume))
}

// ----- views ----------------------------------------------------------------------------------

/// One environment variable. Secret values are never shown.
#[derive(Debug, Serialize, ToSchema)]
pub struct EnvOut {
    name: String,
    /// The value; null when the variable is secret.
    value: Option<String>,
    secret: bool,
}

/// How far the image pull of a rollout has come.
#[derive(Debug, Serialize, ToSchema)]
pub struct PullOut {
    done_bytes: u64,
    total_bytes: u64,
    layers_done: u32,
    layers: u32,
    status: String,
}

impl From<PullProgress> for PullOut {
    fn from(p: PullProgress) -> Self {
        PullOut {
            done_bytes: p.done_bytes,
            total_bytes: p.total_bytes,
            layers_done: p.layers_done,
            layers: p.layers,
            status: p.status,
        }
    }
}

/// The deployment being rolled out.
#[derive(Debug, Serialize, ToSchema)]
pub struct RolloutOut {
    /// The deployment's number.
    number: i64,
    /// queued, pulling or starting.
    #[schema(value_type = String, example = "pulling")]
    status: DeployStatus,
    /// The image pull's progress, once the pull has begun.
    pull: Option<PullOut>,
}

/// A volume an app mounts.
#[derive(Debug, Serialize, ToSchema)]
pub struct AppVolumeOut {
    #[schema(example = "db-data")]
    name: String,
    #[schema(example = "/var/lib/postgresql/data")]
    path: String,
    size_mb: i64,
}

impl From<Volume> for AppVolumeOut {
    fn from(v: Volume) -> Self {
        AppVolumeOut {
            name: v.name,
            path: v.path,
            size_mb: v.size_mb,
        }
    }
}

/// One copy of an app.
#[derive(Debug, Serialize, ToSchema)]
pub struct CopyOut {
    /// 1, 2, …
    replica: i64,
    /// created, running, paused, restarting, removing, exited or dead.
    #[schema(example = "running")]
    state: String,
    /// Where it answers (`ip:port`), while it runs.
    #[schema(example = "10.0.0.12:30001")]
    address: Option<String>,
}

impl From<&pier_core::apps::ReplicaView> for CopyOut {
    fn from(c: &pier_core::apps::ReplicaView) -> Self {
        CopyOut {
            replica: c.replica + 1,
            state: c.state.as_str().to_owned(),
            address: c.address.map(|a| a.to_string()),
        }
    }
}

/// An app: its settings and what it is doing now.
#[derive(Debug, Serialize, ToSchema)]
pub struct AppOut {
    #[schema(example = "my-app")]
    name: String,
    /// The image reference, normalised (`nginx` → `docker.io/library/nginx:latest`).
    #[schema(example = "ghcr.io/owner/app:1.2")]
    image: String,
    /// The port the app listens on inside its container.
    port: u16,
    env: Vec<EnvOut>,
    memory_mb: i64,
    /// CPUs as a decimal string ("0.5").
    #[schema(example = "0.5")]
    cpus: String,
    /// How many copies are to run side by side; memory and CPU are per copy.
    replicas: i64,
    /// How many copies of the serving deployment run now (null when the container engine
    /// does not answer).
    replicas_running: Option<usize>,
    /// The serving deployment's copies: where each runs and answers (on a Swarm, a machine's
    /// address).
    copies: Vec<CopyOut>,
    health_path: Option<String>,
    read_only: bool,
    /// web (HTTP, routes and domains) or internal (reached by the owner's other apps by name,
    /// never from outside).
    #[schema(value_type = String, example = "web")]
    kind: AppKind,
    /// default (what images need to start as root and drop privileges) or strict (none).
    #[schema(value_type = String, example = "default")]
    capabilities: CapProfile,
    /// Persistent volumes; an app with volumes is replaced stop-first on redeploys.
    volumes: Vec<AppVolumeOut>,
    /// For an app with volumes: how long the last redeploy left it without a container, in ms.
    last_redeploy_gap_ms: Option<i64>,
    /// What the owner asked for: running or stopped.
    #[schema(example = "running")]
    desired: String,
    /// deploying, running, crashed, stopped, stopping, starting, failed or unknown (the
    /// container engine does not answer).
    #[schema(value_type = String, example = "running")]
    state: pier_core::apps::AppState,
    /// The loopback port its running container answers on.
    host_port: Option<u16>,
    /// The number of the deployment that serves.
    current_deployment: Option<i64>,
    /// The deployment being rolled out, if one is.
    rollout: Option<RolloutOut>,
    /// Why the last attempt to run the app failed ("Deployment #N failed: …" when a rollout did).
    last_error: Option<String>,
    /// Its backup policy and how the latest snapshot went (responses about one app; not in
    /// lists).
    #[serde(skip_serializing_if = "Option::is_none")]
    backup: Option<BackupOut>,
    created_at: String,
    updated_at: String,
}

impl From<AppView> for AppOut {
    fn from(v: AppView) -> Self {
        let problem = v.problem();
        let app = v.app;
        AppOut {
            env: app
                .env
                .iter()
                .map(|e| EnvOut {
                    name: e.name.clone(),
                    value: if e.is_secret() {
                        None
                    } else {
                        Some(e.value.clone().unwrap_or_default())
                    },
                    secret: e.is_secret(),
                })
                .collect(),
            port: app.port,
            memory_mb: app.memory_mb,
            cpus: format_cpus(app.cpus_milli),
            replicas: app.replicas,
            replicas_running: v.replicas_running,
            copies: v.copies.iter().map(CopyOut::from).collect(),
            read_only: app.read_only,
            kind: app.kind,
            capabilities: app.capabilities,
            volumes: v.volumes.into_iter().map(AppVolumeOut::from).collect(),
            last_redeploy_gap_ms: v.current.as_ref().and_then(|d| d.gap_ms),
            desired: app.desired.as_str().to_owned(),
            state: v.state,
            host_port: v.host_port,
            current_deployment: v.current.as_ref().map(|d| d.number),
            rollout: v.rollout.map(|(d, pull)| RolloutOut {
                number: d.number,
                status: d.status,
                pull: pull.map(PullOut::from),
            }),
            last_error: problem,
            backup: None,
            created_at: format_time(app.created_at),
            updated_at: format_time(app.updated_at),
            health_path: app.health_path,
            image: app.image,
            name: app.name,
        }
    }
}

/// One rollout of an app.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeploymentOut {
    /// Counts up from 1 per app.
    number: i64,
    /// Why it was made: created, settings changed, redeploy, rollback to #N, …
    #[schema(example = "created")]
    cause: String,
    image: String,
    /// The registry digest of the image it ran (`sha256:…`), once pulled.
    digest: Option<String>,
    /// queued, pulling, starting, running, superseded, failed or cancelled.
    #[schema(value_type = String, example = "running")]
    status: DeployStatus,
    /// Why it failed.
    error: Option<String>,
    created_at: String,
    finished_at: Option<String>,
}

impl From<Deployment> for DeploymentOut {
    fn from(d: Deployment) -> Self {
        DeploymentOut {
            number: d.number,
            cause: d.cause,
            image: d.image,
            digest: d.digest,
            status: d.status,
            error: d.error,
            created_at: format_time(d.created_at),
            finished_at: d.finished_at.map(format_time),
        }
    }
}

/// One reading of an app's container.
#[derive(Debug, Serialize, ToSchema)]
pub struct MetricOut {
    at: String,
    /// Percent of one CPU (150 = one and a half CPUs busy).
    cpu_percent: f64,
    memory_bytes: u64,
    memory_limit: u64,
}

impl From<Point> for MetricOut {
    fn from(p: Point) -> Self {
        MetricOut {
            at: format_time(p.at),
            cpu_percent: p.cpu_percent,
            memory_bytes: p.memory_bytes,
            memory_limit: p.memory_limit,
        }
    }
}

// ----- bodies ---------------------------------------------------------------------------------

/// A new app. Left-out limits get the defaults (256 MiB, 0.5 CPU).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewApp {
    /// 1–40 lower-case letters, digits and hyphens.
    #[schema(example = "my-app")]
    name: String,
    #[schema(example = "ghcr.io/owner/app:1.2")]
    image: String,
    /// The port the app listens on inside its container, 1–65535.
    port: i64,
    /// Environment variables, name to value.
    env: Option<BTreeMap<String, String>>,
    /// Which of the variables in `env` are secret (stored encrypted, never shown again).
    secret_env: Option<Vec<String>>,
    memory_mb: Option<i64>,
    /// Decimal CPUs, as a number (0.5) or a string ("0.5").
    cpus: Option<Cpus>,
    /// How many copies run side by side, balanced by the proxy (web apps without volumes;
    /// 1–20, default 1). Quotas count memory and CPU once per replica.
    replicas: Option<i64>,
    /// A path answering 2xx/3xx once the app is ready, like /healthz.
    health_path: Option<String>,
    /// Run with a read-only root file system.
    read_only: Option<bool>,
    /// web (default) or internal.
    #[schema(value_type = Option<String>, example = "web")]
    kind: Option<AppKind>,
    /// default (default) or strict.
    #[schema(value_type = Option<String>, example = "default")]
    capabilities: Option<CapProfile>,
    /// Persistent volumes. A name of one of your kept volumes gives it to this app.
    volumes: Option<Vec<VolumeBody>>,
    /// The backup policy of the app's volumes (default: not scheduled; pause; keep 7 last, 7
    /// daily, 4 weekly).
    backup: Option<PolicyBody>,
}

/// A volume of an app.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VolumeBody {
    /// 1–40 lower-case letters, digits and hyphens; unique among your volumes.
    #[schema(example = "db-data")]
    name: String,
    /// Absolute path in the container, like /var/lib/postgresql/data.
    #[schema(example = "/var/lib/postgresql/data")]
    path: String,
    /// Size in MiB (16 or more); may be left out for a volume you have already.
    size_mb: Option<i64>,
}

fn volume_inputs(v: Option<Vec<VolumeBody>>) -> Option<Vec<VolumeInput>> {
    v.map(|list| {
        list.into_iter()
            .map(|b| VolumeInput {
                name: b.name,
                path: b.path,
                size_mb: b.size_mb,
            })
            .collect()
    })
}

/// Changes to an app; what is left out stays as it is. The change is rolled out as a new
/// deployment.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchApp {
    image: Option<String>,
    port: Option<i64>,
    /// Replaces the whole environment. A secret variable sent with an empty value keeps its
    /// current value.
    env: Option<BTreeMap<String, String>>,
    /// Which variables in `env` are secret; only with `env`. Without it, the variables in `env`
    /// that are secret now stay secret.
    secret_env: Option<Vec<String>>,
    memory_mb: Option<i64>,
    /// Decimal CPUs, as a number (0.5) or a string ("0.5").
    cpus: Option<Cpus>,
    /// How many copies run side by side (web apps without volumes; 1–20).
    replicas: Option<i64>,
    /// "" removes the health check.
    health_path: Option<String>,
    read_only: Option<bool>,
    #[schema(value_type = Option<String>, example = "internal")]
    kind: Option<AppKind>,
    #[schema(value_type = Option<String>, example = "strict")]
    capabilities: Option<CapProfile>,
    /// Replaces the app's volumes: volumes left out are kept (listed under /volumes), not
    /// deleted.
    volumes: Option<Vec<VolumeBody>>,
    /// Changes to the backup policy (what is left out stays). Alone, it rolls nothing out.
    backup: Option<PolicyBody>,
}

/// `?keep_volumes=` on delete.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeleteQuery {
    /// Keep the app's volumes and their data (default true); false deletes them with the app.
    keep_volumes: Option<bool>,
}

/// One of your volumes, with how full it is.
#[derive(Debug, Serialize, ToSchema)]
pub struct VolumeOut {
    name: String,
    /// The app it belongs to; null for a kept volume.
    app: Option<String>,
    /// Where its app mounts it (for a kept volume: where its last app did).
    path: String,
    size_mb: i64,
    /// Bytes in use and in all, once the volume exists.
    used_bytes: Option<u64>,
    total_bytes: Option<u64>,
    created_at: String,
}

/// Which deployment to run again.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackBody {
    /// The number of a deployment that once ran successfully.
    deployment: i64,
}

/// `?wait=` on one app.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ShowQuery {
    /// Seconds to wait for the app's newest deployment to end (0, the default: answer at once;
    /// at most 60).
    #[param(minimum = 0, maximum = 60)]
    wait: Option<u64>,
}

/// `?tail=&follow=` on the logs route.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogsQuery {
    /// How many of the last lines to send (default 200, at most 5000).
    #[param(minimum = 0, maximum = 5000)]
    tail: Option<usize>,
    /// Keep the response open and send new lines as they are written (default false).
    follow: Option<bool>,
}

/// CPUs as thousandths; what cannot be read goes to `unreadable`, for the service to report
/// with the rest.
fn cpus_milli(c: Option<Cpus>, unreadable: &mut Vec<(String, String)>) -> Option<i64> {
    let text = match c? {
        Cpus::Number(n) => n.to_string(),
        Cpus::Text(t) => t,
    };
    match pier_core::validate::app_cpus_milli(&text) {
        Ok(m) => Some(m),
        Err(why) => {
            unreadable.push(("cpus".into(), why));
            None
        }
    }
}

/// The names in `secret_env`, each of which must be a variable of `env`.
fn secret_names(env: &BTreeMap<String, String>, names: Vec<String>) -> ApiResult<HashSet<String>> {
    if let Some(missing) = names.iter().find(|n| !env.contains_key(n.as_str())) {
        return Err(pier_core::Error::field(
            "secret_env",
            format!("{missing:?} is not in env: secret_env names variables that env sets."),
        )
        .into());
    }
    Ok(names.into_iter().collect())
}

/// The variables as the service takes them (in name order). Without `secret`, each stays as
/// secret as it is now.
fn env_input(env: BTreeMap<String, String>, secret: Option<&HashSet<String>>) -> Vec<EnvInput> {
    env.into_iter()
        .map(|(name, value)| EnvInput {
            secret: secret.map(|s| s.contains(&name)),
            name,
            value,
        })
        .collect()
}

async fn app_out(s: &AppState, caller: &Caller, name: &str) -> ApiResult<Json<AppOut>> {
    view_out(s, s.pier.app_view(&caller.actor, name).await?).await
}

async fn view_out(s: &AppState, view: AppView) -> ApiResult<Json<AppOut>> {
    let summary = s.pier.backup_summary(view.app.id).await?;
    let mut out = AppOut::from(view);
    out.backup = Some(summary.into());
    Ok(Json(out))
}

// ----- handlers -------------------------------------------------------------------------------

/// The caller's apps, with what each is doing now.
#[utoipa::path(get, path = "/api/v1/apps", tag = "apps", operation_id = "list_apps",
    params(PageQuery),
    security(("token" = [])),
    responses((status = 200, body = Page<AppOut>), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn list(
    State(s): State<AppState>,
    caller: Caller,
    Q(q): Q<PageQuery>,
) -> ApiResult<Json<Page<AppOut>>> {
    caller.require(Scope::Read)?;
    let (page, per_page, skip) = q.bounds()?;
    // One page from the database, not every app then a slice.
    let offset = i64::try_from(skip).unwrap_or(i64::MAX);
    let (views, total) = s
        .pier
        .list_apps_page(&caller.actor, i64::from(per_page), offset)
        .await?;
    Ok(Json(Page {
        items: views.into_iter().map(AppOut::from).collect(),
        page,
        per_page,
        total,
    }))
}

/// Creates an app and queues its first deployment; 403 `quota_exceeded` names the limit.
#[utoipa::path(post, path = "/api/v1/apps", tag = "apps", operation_id = "create_app",
    request_body = NewApp,
    security(("token" = [])),
    responses((status = 201, body = AppOut), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(
    State(s): State<AppState>,
    caller: Caller,
    Body(b): Body<NewApp>,
) -> ApiResult<(StatusCode, Json<AppOut>)> {
    caller.require(Scope::Write)?;
    // Checked before anything is made: a wrong policy must not leave an app behind.
    if let Some(p) = &b.backup {
        PolicyPatch::from(p.clone()).apply(&BackupPolicy::default())?;
    }
    let env = b.env.unwrap_or_default();
    let secret = secret_names(&env, b.secret_env.unwrap_or_default())?;
    let mut unreadable = Vec::new();
    let input = AppSpec {
        cpus_milli: cpus_milli(b.cpus, &mut unreadable),
        image: Some(b.image),
        port: Some(b.port),
        env: Some(env_input(env, Some(&secret))),
        memory_mb: b.memory_mb,
        replicas: b.replicas,
        health_path: b.health_path,
        read_only: b.read_only,
        kind: b.kind,
        capabilities: b.capabilities,
        volumes: volume_inputs(b.volumes),
        unreadable,
    };
    let app = s.pier.create_app(&caller.actor, &b.name, input).await?;
    if let Some(p) = b.backup {
        apply_policy(&s, &caller, &app.name, p).await?;
    }
    let Json(out) = app_out(&s, &caller, &app.name).await?;
    Ok((StatusCode::CREATED, Json(out)))
}

/// One app. With `wait`, the answer comes once the app's newest deployment has ended (it is
/// live, or failed: see `state` and `last_error`) or after that many seconds, whichever is
/// first: a script deploys, then asks once. Each person may hold 16 waits open at once.
#[utoipa::path(get, path = "/api/v1/apps/{name}", tag = "apps", operation_id = "show_app",
    params(("name" = String, Path, description = "The app's name"), ShowQuery),
    security(("token" = [])),
    responses((status = 200, body = AppOut), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 429, body = ErrorBody)))]
pub async fn show(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Q(q): Q<ShowQuery>,
) -> ApiResult<Json<AppOut>> {
    caller.require(Scope::Read)?;
    let wait = q.wait.unwrap_or(0);
    let max = pier_core::apps::MAX_WAIT.as_secs();
    if wait > max {
        return Err(pier_core::Error::field(
            "wait",
            format!("Wait at most {max} seconds; ask again to wait longer."),
        )
        .into());
    }
    if wait == 0 {
        return app_out(&s, &caller, &name).await;
    }
    let view = s
        .pier
        .app_view_when_deployed(&caller.actor, &name, std::time::Duration::from_secs(wait))
        .await?;
    view_out(&s, view).await
}

/// Changes an app's settings (what is left out is kept) and rolls them out.
#[utoipa::path(patch, path = "/api/v1/apps/{name}", tag = "apps", operation_id = "update_app",
    request_body = PatchApp,
    params(("name" = String, Path, description = "The app's name")),
    security(("token" = [])),
    responses((status = 200, body = AppOut), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn update(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Body(p): Body<PatchApp>,
) -> ApiResult<Json<AppOut>> {
    caller.require(Scope::Write)?;
    let actor = &caller.actor;
    let current = s.pier.own_app(actor, &name).await?;
    if let Some(b) = &p.backup {
        PolicyPatch::from(b.clone()).apply(&s.pier.backup_policy(current.id).await?)?;
    }
    let policy_only = p.backup.is_some()
        && p.image.is_none()
        && p.port.is_none()
        && p.env.is_none()
        && p.secret_env.is_none()
        && p.memory_mb.is_none()
        && p.cpus.is_none()
        && p.replicas.is_none()
        && p.health_path.is_none()
        && p.read_only.is_none()
        && p.kind.is_none()
        && p.capabilities.is_none()
        && p.volumes.is_none();
    // The policy was checked above; it is saved only once the rest of the patch is, so a
    // refused patch changes nothing.
    let backup = p.backup;
    if policy_only {
        if let Some(b) = backup {
            apply_policy(&s, &caller, &current.name, b).await?;
        }
        return app_out(&s, &caller, &current.name).await;
    }
    let env = match (p.env, p.secret_env) {
        (Some(env), Some(names)) => {
            let secret = secret_names(&env, names)?;
            Some(env_input(env, Some(&secret)))
        }
        (Some(env), None) => Some(env_input(env, None)),
        (None, Some(_)) => {
            return Err(pier_core::Error::field(
                "secret_env",
                "Send secret_env together with env: it says which variables of env are secret.",
            )
            .into())
        }
        (None, None) => None,
    };
    let mut unreadable = Vec::new();
    let input = AppSpec {
        cpus_milli: cpus_milli(p.cpus, &mut unreadable),
        image: p.image,
        port: p.port,
        env,
        memory_mb: p.memory_mb,
        replicas: p.replicas,
        health_path: p.health_path,
        read_only: p.read_only,
        kind: p.kind,
        capabilities: p.capabilities,
        volumes: volume_inputs(p.volumes),
        unreadable,
    };
    let app = s.pier.update_app(actor, &current.name, input).await?;
    if let Some(b) = backup {
        apply_policy(&s, &caller, &app.name, b).await?;
    }
    app_out(&s, &caller, &app.name).await
}

/// Deletes an app, its deployments and its container. Its volumes are kept (see /volumes)
/// unless `keep_volumes=false`.
#[utoipa::path(delete, path = "/api/v1/apps/{name}", tag = "apps", operation_id = "delete_app",
    params(("name" = String, Path, description = "The app's name"), DeleteQuery),
    security(("token" = [])),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn remove(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Q(q): Q<DeleteQuery>,
) -> ApiResult<StatusCode> {
    caller.require(Scope::Write)?;
    let delete_volumes = !q.keep_volumes.unwrap_or(true);
    s.pier
        .delete_app(&caller.actor, &name, delete_volumes)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Your volumes, kept ones included, with how full each is.
#[utoipa::path(get, path = "/api/v1/volumes", tag = "volumes", operation_id = "list_volumes",
    params(PageQuery),
    security(("token" = [])),
    responses((status = 200, body = Page<VolumeOut>), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn volumes(
    State(s): State<AppState>,
    caller: Caller,
    Q(q): Q<PageQuery>,
) -> ApiResult<Json<Page<VolumeOut>>> {
    caller.require(Scope::Read)?;
    let all = s.pier.volumes(&caller.actor).await?;
    let page = q.paginate(all)?;
    let usage = s.pier.volume_usage(&page.items).await;
    Ok(Json(Page {
        items: page
            .items
            .into_iter()
            .zip(usage)
            .map(|(v, u)| VolumeOut {
                name: v.name,
                app: v.app_name,
                path: v.path,
                size_mb: v.size_mb,
                used_bytes: u.map(|u| u.used_bytes),
                total_bytes: u.map(|u| u.total_bytes),
                created_at: format_time(v.created_at),
            })
            .collect(),
        page: page.page,
        per_page: page.per_page,
        total: page.total,
    }))
}

/// Deletes one of your kept volumes and its data; 409 while an app has it.
#[utoipa::path(delete, path = "/api/v1/volumes/{name}", tag = "volumes",
    operation_id = "delete_volume",
    params(("name" = String, Path, description = "The volume's name")),
    security(("token" = [])),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete_volume(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require(Scope::Write)?;
    s.pier.delete_volume(&caller.actor, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Wants the app running; the engine starts it.
#[utoipa::path(post, path = "/api/v1/apps/{name}/start", tag = "apps", operation_id = "start_app",
    params(("name" = String, Path, description = "The app's name")),
    security(("token" = [])),
    responses((status = 200, body = AppOut), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn start(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<AppOut>> {
    caller.require(Scope::Write)?;
    let app = s.pier.set_app_running(&caller.actor, &name, true).await?;
    app_out(&s, &caller, &app.name).await
}

/// Wants the app stopped; the engine stops it.
#[utoipa::path(post, path = "/api/v1/apps/{name}/stop", tag = "apps", operation_id = "stop_app",
    params(("name" = String, Path, description = "The app's name")),
    security(("token" = [])),
    responses((status = 200, body = AppOut), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn stop(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<AppOut>> {
    caller.require(Scope::Write)?;
    let app = s.pier.set_app_running(&caller.actor, &name, false).await?;
    app_out(&s, &caller, &app.name).await
}

/// Restarts the app's container in place (no new deployment); answers once it has restarted.
/// 409 when the app is stopped or has no container yet.
#[utoipa::path(post, path = "/api/v1/apps/{name}/restart", tag = "apps",
    operation_id = "restart_app",
    params(("name" = String, Path, description = "The app's name")),
    security(("token" = [])),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 503, body = ErrorBody)))]
pub async fn restart(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require(Scope::Write)?;
    s.pier.restart_app(&caller.actor, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Queues a new deployment of the app's settings, pulling the image tag afresh.
#[utoipa::path(post, path = "/api/v1/apps/{name}/redeploy", tag = "apps",
    operation_id = "redeploy_app",
    params(("name" = String, Path, description = "The app's name")),
    security(("token" = [])),
    responses((status = 202, body = DeploymentOut), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn redeploy(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<(StatusCode, Json<DeploymentOut>)> {
    caller.require(Scope::Write)?;
    let d = s.pier.redeploy_app(&caller.actor, &name).await?;
    Ok((StatusCode::ACCEPTED, Json(d.into())))
}

/// Queues a deployment of exactly what an earlier one ran (same image digest, env and limits).
/// 409 when that deployment never ran successfully.
#[utoipa::path(post, path = "/api/v1/apps/{name}/rollback", tag = "apps",
    operation_id = "rollback_app", request_body = RollbackBody,
    params(("name" = String, Path, description = "The app's name")),
    security(("token" = [])),
    responses((status = 202, body = DeploymentOut), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn rollback(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Body(b): Body<RollbackBody>,
) -> ApiResult<(StatusCode, Json<DeploymentOut>)> {
    caller.require(Scope::Write)?;
    let d = s
        .pier
        .rollback_app(&caller.actor, &name, b.deployment)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(d.into())))
}

/// The app's latest 500 deployments, newest first.
#[utoipa::path(get, path = "/api/v1/apps/{name}/deployments", tag = "apps",
    operation_id = "app_deployments",
    params(("name" = String, Path, description = "The app's name"), PageQuery),
    security(("token" = [])),
    responses((status = 200, body = Page<DeploymentOut>), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn deployments(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Q(q): Q<PageQuery>,
) -> ApiResult<Json<Page<DeploymentOut>>> {
    caller.require(Scope::Read)?;
    let all = s
        .pier
        .deployments(&caller.actor, &name, DEPLOYMENTS_LISTED, 0)
        .await?;
    Ok(Json(q.paginate(
        all.into_iter().map(DeploymentOut::from).collect(),
    )?))
}

/// The app's log as plain text, one line per line; with `follow=true` the response stays open
/// and new lines are sent as they are written. 409 when the app has no container yet.
#[utoipa::path(get, path = "/api/v1/apps/{name}/logs", tag = "apps", operation_id = "app_logs",
    params(("name" = String, Path, description = "The app's name"), LogsQuery),
    security(("token" = [])),
    responses(
        (status = 200, description = "The log lines", body = String,
            content_type = "text/plain"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 429, body = ErrorBody),
        (status = 503, body = ErrorBody)))]
pub async fn logs(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Q(q): Q<LogsQuery>,
) -> ApiResult<Response> {
    caller.require(Scope::Read)?;
    let tail = q.tail.unwrap_or(DEFAULT_LOG_TAIL).min(MAX_LOG_TAIL);
    let follow = q.follow.unwrap_or(false);
    let lines = s
        .pier
        .log_stream(
            &caller.actor,
            Credential::Token(caller.token_id),
            &name,
            tail,
            follow,
        )
        .await?;
    let headers = [
        (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
        (header::CACHE_CONTROL, "no-cache"),
    ];
    // Streamed line by line, followed or not: a long tail is never gathered in memory. An
    // engine error mid-stream ends the stream cleanly (the client sees the end of the body).
    let body = lines
        .take_while(|line| {
            if let Err(e) = line {
                tracing::debug!(error = %e, "app log stream ended");
            }
            std::future::ready(line.is_ok())
        })
        .map(|line| {
            let mut text = line.map(|l| l.text).unwrap_or_default();
            text.push('\n');
            Ok::<Bytes, std::io::Error>(Bytes::from(text))
        });
    Ok((headers, axum::body::Body::from_stream(body)).into_response())
}

/// The app's CPU and memory readings of the last hour, oldest first.
#[utoipa::path(get, path = "/api/v1/apps/{name}/metrics", tag = "apps",
    operation_id = "app_metrics",
    params(("name" = String, Path, description = "The app's name")),
    security(("token" = [])),
    responses((status = 200, body = Vec<MetricOut>), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn metrics(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<Vec<MetricOut>>> {
    caller.require(Scope::Read)?;
    let points = s.pier.app_metrics(&caller.actor, &name).await?;
    Ok(Json(points.into_iter().map(MetricOut::from).collect()))
}
