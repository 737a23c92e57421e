//! Server functions for apps, deployments and registry logins: thin wrappers around
//! `pier_core::Pier`, which checks input and permissions and scopes everything to the caller.
// The create and update forms have one argument per field.
#![allow(clippy::too_many_arguments)]

use leptos::prelude::*;
use serde::{Deserialize, Serialize};
use server_fn::codec::GetUrl;

#[cfg(feature = "ssr")]
use super::ssr;
use crate::{error::AppError, rpc::Done};
pub use pier_types::{AppKind, AppState, CapProfile, DeployStatus};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutRow {
    pub number: i64,
    pub status: DeployStatus,
    pub done_bytes: u64,
    pub total_bytes: u64,
    pub layers_done: u32,
    pub layers: u32,
    pub pull_status: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppRow {
    pub name: String,
    pub image: String,
    pub state: AppState,
    pub host_port: Option<u16>,
    pub memory_mb: i64,
    pub cpus: String,
    /// Copies wanted, and how many of the serving deployment run (None: engine not answering).
    pub replicas: i64,
    pub replicas_running: Option<usize>,
    pub current: Option<i64>,
    pub rollout: Option<RolloutRow>,
    pub problem: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvView {
    pub name: String,
    /// Empty for secret values: they are never sent to the browser.
    pub value: String,
    pub secret: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeployRow {
    pub number: i64,
    pub cause: String,
    pub image: String,
    pub digest: Option<String>,
    pub status: DeployStatus,
    pub error: Option<String>,
    pub created: String,
    pub finished: Option<String>,
    pub current: bool,
    pub can_rollback: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MetricPoint {
    pub at: i64,
    pub cpu_percent: f64,
    pub memory_mb: f64,
    pub limit_mb: f64,
}

/// A volume as the app page and the volumes page show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VolumeView {
    pub name: String,
    pub path: String,
    pub size_mb: i64,
    /// The app it belongs to (None: kept).
    pub app: Option<String>,
    pub used_bytes: Option<u64>,
    pub total_bytes: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppInfo {
    pub row: AppRow,
    pub port: u16,
    pub health_path: String,
    pub read_only: bool,
    pub kind: AppKind,
    pub capabilities: CapProfile,
    pub volumes: Vec<VolumeView>,
    /// How long the last stop-first redeploy left the app without a container, in ms.
    pub last_gap_ms: Option<i64>,
    pub stopped: bool,
    pub env: Vec<EnvView>,
    pub deployments: Vec<DeployRow>,
    pub metrics: Vec<MetricPoint>,
    /// Where it answers over HTTPS: its domains and the platform host names that route to it.
    pub hosts: Vec<String>,
    /// The serving deployment's copies: (number from 1, state, address while running).
    pub copies: Vec<(i64, String, Option<String>)>,
}

/// What is left of the caller's quota (for the create form).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuotaRoom {
    pub apps: i64,
    pub max_apps: i64,
    pub memory_mb: i64,
    pub max_memory_mb: i64,
    pub cpus: String,
    pub max_cpus: String,
    pub storage_mb: i64,
    pub max_storage_mb: i64,
}

/// One row of the env editor, as the form sends it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EnvField {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub value: String,
    /// "on" when the secret box is ticked.
    #[serde(default)]
    pub secret: Option<String>,
}

/// One row of the volumes editor, as the form sends it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VolumeField {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub path: String,
    #[serde(default)]
    pub size_mb: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegistryRow {
    pub registry: String,
    pub username: String,
    pub saved: String,
}

#[cfg(feature = "ssr")]
mod convert {
    use super::*;
    use pier_core::{apps::AppView, format_time, validate::format_cpus};

    pub fn row(v: &AppView) -> AppRow {
        let problem = v.problem();
        AppRow {
            name: v.app.name.clone(),
            image: v.app.image.clone(),
            state: v.state,
            host_port: v.host_port,
            memory_mb: v.app.memory_mb,
            cpus: format_cpus(v.app.cpus_milli),
            replicas: v.app.replicas,
            replicas_running: v.replicas_running,
            current: v.current.as_ref().map(|d| d.number),
            rollout: v.rollout.as_ref().map(|(d, p)| {
                let p = p.clone().unwrap_or_default();
                RolloutRow {
                    number: d.number,
                    status: d.status,
                    done_bytes: p.done_bytes,
                    total_bytes: p.total_bytes,
                    layers_done: p.layers_done,
                    layers: p.layers,
                    pull_status: p.status,
                }
            }),
            problem,
        }
    }

    pub fn deploy_row(d: pier_core::model::Deployment, current: Option<i64>) -> DeployRow {
        DeployRow {
            current: Some(d.id) == current,
            can_rollback: d.status.succeeded() && Some(d.id) != current,
            number: d.number,
            cause: d.cause,
            image: d.image,
            digest: d.digest,
            status: d.status,
            error: d.error,
            created: format_time(d.created_at),
            finished: d.finished_at.map(format_time),
        }
    }

    /// The app form's fields as the service takes them: text read into numbers and choices
    /// here, and what cannot be read reported with what the service finds.
    pub fn input(
        image: String,
        port: String,
        env: Vec<EnvField>,
        dotenv: String,
        dotenv_secret: Option<String>,
        memory_mb: String,
        cpus: String,
        replicas: String,
        health_path: String,
        read_only: Option<String>,
        kind: String,
        capabilities: String,
        volumes: Vec<VolumeField>,
    ) -> pier_core::apps::AppSpec {
        use pier_core::{
            apps::{AppSpec, EnvInput, VolumeInput},
            model::{AppKind, CapProfile},
            validate,
        };
        let mut unreadable: Vec<(String, String)> = Vec::new();
        let mut read = |field: &str, r: Result<i64, String>| match r {
            Ok(n) => Some(n),
            Err(why) => {
                unreadable.push((field.to_owned(), why));
                None
            }
        };
        // Empty limits: the default for a new app, unchanged for an existing one.
        let optional = |t: &str| (!t.trim().is_empty()).then(|| t.trim().to_owned());
        let port = read("port", validate::port(&port).map(i64::from));
        let memory_mb =
            optional(&memory_mb).and_then(|m| read("memory_mb", validate::memory_mb(&m)));
        let cpus_milli = optional(&cpus).and_then(|c| read("cpus", validate::app_cpus_milli(&c)));
        let replicas = optional(&replicas).and_then(|r| {
            read(
                "replicas",
                r.parse::<i64>()
                    .map_err(|_| "Enter a whole number of replicas, like 2.".to_string()),
            )
        });
        let mut volume_problems = Vec::new();
        let volumes = volumes
            .into_iter()
            .map(|v| {
                let size_mb =
                    optional(&v.size_mb).and_then(|t| match validate::volume_size_mb(&t) {
                        Ok(n) => Some(n),
                        Err(e) => {
                            let label = v.name.trim();
                            volume_problems.push(if label.is_empty() {
                                format!("Size: {e}")
                            } else {
                                format!("Volume {label}: Size: {e}")
                            });
                            None
                        }
                    });
                VolumeInput {
                    name: v.name,
                    path: v.path,
                    size_mb,
                }
            })
            .collect();
        if !volume_problems.is_empty() {
            unreadable.push(("volumes".into(), volume_problems.join(" ")));
        }
        let mut env: Vec<EnvInput> = env
            .into_iter()
            .map(|e| EnvInput {
                name: e.name,
                value: e.value,
                secret: Some(e.secret.is_some()),
            })
            .collect();
        // A pasted .env file adds its variables to the rows.
        if !dotenv.trim().is_empty() {
            match validate::parse_dotenv(&dotenv) {
                Ok(list) => env.extend(list.into_iter().map(|(name, value)| EnvInput {
                    name,
                    value,
                    secret: Some(dotenv_secret.is_some()),
                })),
                Err(e) => unreadable.push((
                    "env".into(),
                    format!("Pasted .env, line {}: {}", e.line, e.message),
                )),
            }
        }
        let kind = match kind.trim() {
            "" => None,
            k => AppKind::parse(k).or_else(|| {
                unreadable.push(("kind".into(), "Choose web or internal.".into()));
                None
            }),
        };
        let capabilities = match capabilities.trim() {
            "" => None,
            k => CapProfile::parse(k).or_else(|| {
                unreadable.push(("capabilities".into(), "Choose default or strict.".into()));
                None
            }),
        };
        AppSpec {
            image: Some(image),
            port,
            env: Some(env),
            memory_mb,
            cpus_milli,
            replicas,
            health_path: Some(health_path),
            read_only: Some(read_only.is_some()),
            kind,
            capabilities,
            volumes: Some(volumes),
            unreadable,
        }
    }

    pub fn volume_view(
        v: pier_core::model::Volume,
        u: Option<pier_core::runtime::VolumeUsage>,
    ) -> VolumeView {
        VolumeView {
            name: v.name,
            path: v.path,
            size_mb: v.size_mb,
            app: v.app_name,
            used_bytes: u.map(|u| u.used_bytes),
            total_bytes: u.map(|u| u.total_bytes),
        }
    }
}

#[server(prefix = "/rpc", endpoint = "list_apps", input = GetUrl)]
pub async fn list_apps() -> Result<Vec<AppRow>, AppError> {
    let (c, actor) = ssr::signed_in().await?;
    Ok(c.pier
        .list_apps(&actor)
        .await?
        .iter()
        .map(convert::row)
        .collect())
}

#[server(prefix = "/rpc", endpoint = "app_detail", input = GetUrl)]
pub async fn app_detail(name: String) -> Result<AppInfo, AppError> {
    let (c, actor) = ssr::signed_in().await?;
    let v = c.pier.app_view(&actor, &name).await?;
    let current = v.app.current_deployment_id;
    let deployments = c
        .pier
        .deployments(&actor, &name, 50, 0)
        .await?
        .into_iter()
        .map(|d| convert::deploy_row(d, current))
        .collect();
    let metrics = c
        .pier
        .app_metrics(&actor, &name)
        .await?
        .into_iter()
        .map(|p| MetricPoint {
            at: p.at,
            cpu_percent: p.cpu_percent,
            memory_mb: p.memory_bytes as f64 / 1048576.0,
            limit_mb: p.memory_limit as f64 / 1048576.0,
        })
        .collect();
    let usage = c.pier.volume_usage(&v.volumes).await;
    let volumes = v
        .volumes
        .iter()
        .cloned()
        .zip(usage)
        .map(|(vol, u)| convert::volume_view(vol, u))
        .collect();
    Ok(AppInfo {
        row: convert::row(&v),
        port: v.app.port,
        health_path: v.app.health_path.clone().unwrap_or_default(),
        read_only: v.app.read_only,
        kind: v.app.kind,
        capabilities: v.app.capabilities,
        volumes,
        last_gap_ms: v.current.as_ref().and_then(|d| d.gap_ms),
        copies: v
            .copies
            .iter()
            .map(|c| {
                (
                    c.replica + 1,
                    c.state.as_str().to_owned(),
                    c.address.map(|a| a.to_string()),
                )
            })
            .collect(),
        stopped: v.app.desired == pier_core::model::Desired::Stopped,
        env: v
            .app
            .env
            .iter()
            .map(|e| EnvView {
                name: e.name.clone(),
                value: e.value.clone().unwrap_or_default(),
                secret: e.is_secret(),
            })
            .collect(),
        deployments,
        metrics,
        hosts: c.pier.app_hosts(&actor, &name).await?,
    })
}

#[server(prefix = "/rpc", endpoint = "quota_left", input = GetUrl)]
pub async fn quota_left() -> Result<QuotaRoom, AppError> {
    let (c, actor) = ssr::signed_in().await?;
    let (apps, mem, cpus) = c.pier.quota_usage(&actor).await?;
    let storage = c.pier.storage_usage(&actor).await?;
    let q = actor.quotas;
    let f = pier_core::validate::format_cpus;
    Ok(QuotaRoom {
        apps: (q.max_apps - apps).max(0),
        max_apps: q.max_apps,
        memory_mb: (q.max_memory_mb - mem).max(0),
        max_memory_mb: q.max_memory_mb,
        cpus: f((q.max_cpus_milli - cpus).max(0)),
        max_cpus: f(q.max_cpus_milli),
        storage_mb: (q.max_storage_mb - storage).max(0),
        max_storage_mb: q.max_storage_mb,
    })
}

#[server(prefix = "/rpc", endpoint = "create_app")]
pub async fn create_app(
    name: String,
    image: String,
    port: String,
    #[server(default)] env: Vec<EnvField>,
    #[server(default)] dotenv: String,
    #[server(default)] dotenv_secret: Option<String>,
    #[server(default)] memory_mb: String,
    #[server(default)] cpus: String,
    #[server(default)] replicas: String,
    #[server(default)] health_path: String,
    #[server(default)] read_only: Option<String>,
    #[server(default)] kind: String,
    #[server(default)] capabilities: String,
    #[server(default)] volumes: Vec<VolumeField>,
    csrf_token: String,
) -> Result<Done, AppError> {
    let (c, actor) = ssr::form(csrf_token).await?;
    let app = c
        .pier
        .create_app(
            &actor,
            &name,
            convert::input(
                image,
                port,
                env,
                dotenv,
                dotenv_secret,
                memory_mb,
                cpus,
                replicas,
                health_path,
                read_only,
                kind,
                capabilities,
                volumes,
            ),
        )
        .await?;
    Ok(Done {
        message: format!("Created {}; deploying it now.", app.name),
        copy: Some(app.name),
    })
}

#[server(prefix = "/rpc", endpoint = "update_app")]
pub async fn update_app(
    app: String,
    image: String,
    port: String,
    #[server(default)] env: Vec<EnvField>,
    #[server(default)] dotenv: String,
    #[server(default)] dotenv_secret: Option<String>,
    #[server(default)] memory_mb: String,
    #[server(default)] cpus: String,
    #[server(default)] replicas: String,
    #[server(default)] health_path: String,
    #[server(default)] read_only: Option<String>,
    #[server(default)] kind: String,
    #[server(default)] capabilities: String,
    #[server(default)] volumes: Vec<VolumeField>,
    csrf_token: String,
) -> Result<Done, AppError> {
    let (c, actor) = ssr::form(csrf_token).await?;
    let a = c
        .pier
        .update_app(
            &actor,
            &app,
            convert::input(
                image,
                port,
                env,
                dotenv,
                dotenv_secret,
                memory_mb,
                cpus,
                replicas,
                health_path,
                read_only,
                kind,
                capabilities,
                volumes,
            ),
        )
        .await?;
    Ok(Done {
        message: format!("Saved; deploying the new settings of {}.", a.name),
        copy: None,
    })
}

/// What the buttons on an app's page ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AppVerb {
    Start,
    Stop,
    Restart,
    Redeploy,
    /// Deletes the app, keeping its volumes.
    Delete,
    DeleteWithVolumes,
}

impl AppVerb {
    /// As the form sends it.
    pub fn as_str(self) -> &'static str {
        match self {
            AppVerb::Start => "start",
            AppVerb::Stop => "stop",
            AppVerb::Restart => "restart",
            AppVerb::Redeploy => "redeploy",
            AppVerb::Delete => "delete",
            AppVerb::DeleteWithVolumes => "delete-with-volumes",
        }
    }

    /// Afterwards the app is gone, and its page has nothing left to show.
    pub fn removes_the_app(self) -> bool {
        matches!(self, AppVerb::Delete | AppVerb::DeleteWithVolumes)
    }
}

#[server(prefix = "/rpc", endpoint = "app_action")]
pub async fn app_action(
    app: String,
    action: AppVerb,
    csrf_token: String,
) -> Result<Done, AppError> {
    let (c, actor) = ssr::form(csrf_token).await?;
    let p = &c.pier;
    let message = match action {
        AppVerb::Start => {
            p.set_app_running(&actor, &app, true).await?;
            format!("Starting {app}.")
        }
        AppVerb::Stop => {
            p.set_app_running(&actor, &app, false).await?;
            format!("Stopping {app}.")
        }
        AppVerb::Restart => {
            p.restart_app(&actor, &app).await?;
            format!("Restarted {app}.")
        }
        AppVerb::Redeploy => {
            let d = p.redeploy_app(&actor, &app).await?;
            format!("Deployment #{} of {app} is under way.", d.number)
        }
        AppVerb::Delete => {
            p.delete_app(&actor, &app, false).await?;
            format!("Deleted {app}; its container is being removed.")
        }
        AppVerb::DeleteWithVolumes => {
            p.delete_app(&actor, &app, true).await?;
            format!("Deleted {app} and its volumes; its container and data are being removed.")
        }
    };
    // After a delete the app's page has nothing to show: the browser goes to the list (the
    // page's script follows the header; a form posted before hydration, the 302).
    if action.removes_the_app() {
        leptos_axum::redirect("/");
    }
    Ok(Done {
        message,
        copy: None,
    })
}

#[server(prefix = "/rpc", endpoint = "rollback_app")]
pub async fn rollback_app(app: String, number: i64, csrf_token: String) -> Result<Done, AppError> {
    let (c, actor) = ssr::form(csrf_token).await?;
    let d = c.pier.rollback_app(&actor, &app, number).await?;
    Ok(Done {
        message: format!("Rolling back to #{number} (deployment #{}).", d.number),
        copy: None,
    })
}

#[server(prefix = "/rpc", endpoint = "my_volumes", input = GetUrl)]
pub async fn my_volumes() -> Result<Vec<VolumeView>, AppError> {
    let (c, actor) = ssr::signed_in().await?;
    let vols = c.pier.volumes(&actor).await?;
    let usage = c.pier.volume_usage(&vols).await;
    Ok(vols
        .into_iter()
        .zip(usage)
        .map(|(v, u)| convert::volume_view(v, u))
        .collect())
}

#[server(prefix = "/rpc", endpoint = "delete_volume")]
pub async fn delete_volume(name: String, csrf_token: String) -> Result<Done, AppError> {
    let (c, actor) = ssr::form(csrf_token).await?;
    c.pier.delete_volume(&actor, &name).await?;
    Ok(Done {
        message: format!("Deleted the volume {name} and its data."),
        copy: None,
    })
}

#[server(prefix = "/rpc", endpoint = "my_registries", input = GetUrl)]
pub async fn my_registries() -> Result<Vec<RegistryRow>, AppError> {
    let (c, actor) = ssr::signed_in().await?;
    Ok(c.pier
        .registry_credentials(&actor)
        .await?
        .into_iter()
        .map(|r| RegistryRow {
            registry: r.registry,
            username: r.username,
            saved: pier_core::format_time(r.created_at),
        })
        .collect())
}

#[server(prefix = "/rpc", endpoint = "save_registry")]
pub async fn save_registry(
    registry: String,
    username: String,
    password: String,
    csrf_token: String,
) -> Result<Done, AppError> {
    let (c, actor) = ssr::form(csrf_token).await?;
    let host = c
        .pier
        .set_registry_credential(&actor, &registry, &username, &password)
        .await?;
    Ok(Done {
        message: format!(
            "Saved the login for {host}. The password is stored encrypted and not shown again."
        ),
        copy: None,
    })
}

#[server(prefix = "/rpc", endpoint = "delete_registry")]
pub async fn delete_registry(registry: String, csrf_token: String) -> Result<Done, AppError> {
    let (c, actor) = ssr::form(csrf_token).await?;
    c.pier.delete_registry_credential(&actor, &registry).await?;
    Ok(Done {
        message: format!("Removed the login for {registry}."),
        copy: None,
    })
}
