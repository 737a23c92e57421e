//! The apps service: what a tenant may do with their apps, deployments and registry logins.
//! Every lookup is scoped to the acting tenant; another tenant's app is simply not found.

use crate::{
    model::{Actor, App, AppKind, CapProfile, Deployment, Desired, StoredEnv, Volume},
    now, repo,
    runtime::{PullProgress, RuntimeError},
    secret::SecretKey,
    validate::{self},
    Error, Pier, Result,
};

/// Memory and CPU an app gets when the form leaves them empty.
pub const DEFAULT_MEMORY_MB: i64 = 256;
pub const DEFAULT_CPUS_MILLI: i64 = 500;
/// The most log lines one request may ask for.
pub const MAX_LOG_TAIL: usize = 5000;
/// The log lines sent when a request does not say how many.
pub const DEFAULT_LOG_TAIL: usize = 200;

/// One environment variable as a form or the API gives it.
#[derive(Debug, Clone, Default)]
pub struct EnvInput {
    pub name: String,
    /// An empty value of a secret variable that has a saved value keeps that value.
    pub value: String,
    /// None: secret if the app's variable of that name is secret now (a new one is not).
    pub secret: Option<bool>,
}

/// An app's settings, typed. Creating an app, a field left out (None) takes its default (image
/// and port must be given); changing one, it keeps what the app has.
#[derive(Debug, Clone, Default)]
pub struct AppSpec {
    pub image: Option<String>,
    pub port: Option<i64>,
    /// The whole environment.
    pub env: Option<Vec<EnvInput>>,
    pub memory_mb: Option<i64>,
    pub cpus_milli: Option<i64>,
    /// How many copies run side by side (web apps only).
    pub replicas: Option<i64>,
    /// An empty path removes the health check.
    pub health_path: Option<String>,
    pub read_only: Option<bool>,
    pub kind: Option<AppKind>,
    pub capabilities: Option<CapProfile>,
    /// All the volumes the app mounts. A name the tenant already has gives that (kept) volume
    /// to the app; a new name makes one.
    pub volumes: Option<Vec<VolumeInput>>,
    /// What the caller could not read into the fields above (a form's text that is no number),
    /// by field: reported together with what the service finds.
    pub unreadable: Vec<(String, String)>,
}

impl AppSpec {
    /// The settings asked for, as the audit log tells them: every value but the environment's,
    /// of which only the names are given (a value may be a secret whether marked or not).
    pub fn describe(&self) -> String {
        let short = |s: &str| -> String { s.trim().chars().take(300).collect() };
        let mut parts = Vec::new();
        if let Some(i) = &self.image {
            parts.push(format!("image {}", short(i)));
        }
        if let Some(p) = self.port {
            parts.push(format!("port {p}"));
        }
        if let Some(m) = self.memory_mb {
            parts.push(format!("memory MiB {m}"));
        }
        if let Some(c) = self.cpus_milli {
            parts.push(format!("CPUs {}", validate::format_cpus(c)));
        }
        if let Some(r) = self.replicas {
            parts.push(format!("replicas {r}"));
        }
        if let Some(h) = self.health_path.as_deref().filter(|h| !h.trim().is_empty()) {
            parts.push(format!("health check {}", short(h)));
        }
        if let Some(k) = self.kind {
            parts.push(format!("kind {}", k.as_str()));
        }
        if let Some(c) = self.capabilities {
            parts.push(format!("capabilities {}", c.as_str()));
        }
        if self.read_only == Some(true) {
            parts.push("read-only".into());
        }
        if let Some(env) = &self.env {
            let names = |secret: bool| -> Vec<&str> {
                env.iter()
                    .filter(|e| e.secret.unwrap_or(false) == secret && !e.name.trim().is_empty())
                    .map(|e| e.name.trim())
                    .collect()
            };
            let (plain, secret) = (names(false), names(true));
            if !plain.is_empty() {
                parts.push(format!("env {}", plain.join(", ")));
            }
            if !secret.is_empty() {
                parts.push(format!("secret env {}", secret.join(", ")));
            }
        }
        if let Some(vols) = &self.volumes {
            let v: Vec<String> = vols
                .iter()
                .map(|v| format!("{} at {}", v.name.trim(), v.path.trim()))
                .collect();
            parts.push(match v.is_empty() {
                true => "no volumes".into(),
                false => format!("volumes {}", v.join(", ")),
            });
        }
        parts.join("; ")
    }

    /// Why `field` could not be read, if it could not.
    fn unreadable(&self, field: &str) -> Option<String> {
        self.unreadable
            .iter()
            .find(|(f, _)| f == field)
            .map(|(_, m)| m.clone())
    }
}

/// One volume of an app.
#[derive(Debug, Clone, Default)]
pub struct VolumeInput {
    pub name: String,
    /// Where the app sees it, like /var/lib/postgresql/data.
    pub path: String,
    /// MiB; may be left out for a volume that exists already.
    pub size_mb: Option<i64>,
}

pub use pier_types::AppState;

/// An app with what it is doing now.
#[derive(Debug, Clone)]
pub struct AppView {
    pub app: App,
    pub state: AppState,
    /// The loopback port its container answers on.
    pub host_port: Option<u16>,
    /// How many copies of the serving deployment run (None when the engine's list is not
    /// known).
    pub replicas_running: Option<usize>,
    /// The serving deployment's copies, by replica: their state and where each answers (this
    /// machine's loopback, or a Swarm machine's address). Empty when the engine is not known.
    pub copies: Vec<ReplicaView>,
    pub current: Option<Deployment>,
    /// The deployment being rolled out, with its pull progress.
    pub rollout: Option<(Deployment, Option<PullProgress>)>,
    /// The latest deployment when it failed (its error explains why).
    pub last_failed: Option<Deployment>,
    /// The volumes it mounts, by path.
    pub volumes: Vec<Volume>,
}

/// One copy of an app as its page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaView {
    /// 0, 1, … (shown from 1).
    pub replica: i64,
    pub state: crate::runtime::ContainerState,
    pub address: Option<std::net::SocketAddr>,
}

impl AppView {
    /// What is wrong with the app, for its owner: the engine's last problem with it, else why
    /// its latest deployment failed.
    pub fn problem(&self) -> Option<String> {
        self.app.last_error.clone().or_else(|| {
            let d = self.last_failed.as_ref()?;
            let why = d.error.as_ref()?;
            Some(format!("Deployment #{} failed: {why}", d.number))
        })
    }
}

/// The label of the network a tenant's apps share.
pub fn network_name(instance: &str, user_id: i64) -> String {
    format!("pier-{instance}-t{user_id}")
}

/// The host's name for the bridge of a tenant's network: `pb` + installation + tenant, at most
/// 15 characters (the kernel's limit). Egress rules match every bridge that starts with `pb`.
pub fn bridge_name(instance: &str, user_id: i64) -> String {
    let short: String = instance.chars().take(6).collect();
    let name = format!("pb{short}t{user_id}");
    if name.len() <= 15 {
        name
    } else {
        // Tenant ids past a million: a digest keeps the name unique and short.
        let digest = crate::service::sha256_hex(&format!("{instance}:{user_id}"));
        format!("pb{}", &digest[..13])
    }
}

/// The container of one copy of a deployment; the name makes a second create of the same one
/// fail. Copy 0 keeps the name containers had before replicas.
pub fn container_name(instance: &str, app: &App, deployment_id: i64, replica: i64) -> String {
    let base = format!(
        "pier-{instance}-t{}-{}-d{deployment_id}",
        app.user_id, app.name
    );
    if replica == 0 {
        base
    } else {
        format!("{base}-r{replica}")
    }
}

pub(super) fn env_context(user_id: i64, app: &str, var: &str) -> String {
    format!("tenant:{user_id}:app:{app}:env:{var}")
}

pub(super) fn registry_context(user_id: i64, registry: &str) -> String {
    format!("tenant:{user_id}:registry:{registry}")
}

/// The env as the container gets it: secret values decrypted.
pub fn open_env(
    key: &SecretKey,
    user_id: i64,
    app: &str,
    env: &[StoredEnv],
) -> Result<Vec<(String, String)>> {
    env.iter()
        .map(|v| {
            let value = match (&v.value, &v.sealed) {
                (_, Some(sealed)) => {
                    String::from_utf8(key.decrypt(sealed, &env_context(user_id, app, &v.name))?)
                        .map_err(|_| Error::internal("a sealed env value is not UTF-8"))?
                }
                (Some(plain), None) => plain.clone(),
                (None, None) => String::new(),
            };
            Ok((v.name.clone(), value))
        })
        .collect()
}

/// The quota message for memory or CPU.
pub(super) fn over(what: &str, want: String, free: String, limit: String) -> Error {
    Error::Quota(format!(
        "This app needs {want} of {what}, but only {free} of your {limit} {what} quota is free. Lower it, make room, or ask an admin to raise your quota."
    ))
}

/// How old a container list may be and still be shown while a fresh one is fetched.
pub(super) const CONTAINERS_STALE: std::time::Duration = std::time::Duration::from_secs(10);

mod registry;
mod spec;
mod views;
mod volumes;
mod wait;

pub use wait::{MAX_WAIT, MAX_WAITS_PER_USER};

use spec::CheckedSpec;
pub(crate) use volumes::add_volume;

impl Pier {
    /// What the caller's apps take now: (apps, MiB, thousandths of a CPU).
    pub async fn quota_usage(&self, actor: &Actor) -> Result<(i64, i64, i64)> {
        repo::apps::usage(self.db(), actor.user_id, None).await
    }

    /// The caller's app by name, or 404.
    pub async fn own_app(&self, actor: &Actor, name: &str) -> Result<App> {
        repo::apps::by_name(self.db(), actor.user_id, name.trim())
            .await?
            .ok_or(Error::NotFound)
    }

    pub async fn create_app(&self, actor: &Actor, name: &str, input: AppSpec) -> Result<App> {
        let what = crate::audit::Change::new(crate::audit::Action::AppCreate, name.trim())
            .owner(actor.user_id)
            .summary(input.describe());
        self.audited(actor, what, async {
            let (name, spec) = self.check_app_spec(actor, Some(name), &input, None)?;
            let q = repo::users::by_id(self.db(), actor.user_id)
                .await?
                .ok_or(Error::Unauthenticated)?
                .quotas;
            let mut tx = self.db().begin().await?;
            let id = match repo::apps::insert_within_quota(
                &mut *tx,
                actor.user_id,
                &name,
                &spec.as_repo(),
                q,
                now(),
            )
            .await
            {
                Ok(Some(id)) => id,
                Ok(None) => {
                    drop(tx);
                    return Err(self.quota_error(actor, &spec, None).await);
                }
                Err(e) => {
                    return Err(e.on_unique(|| {
                        Error::field("name", format!("You already have an app called {name}."))
                    }))
                }
            };
            if let Some(vols) = &spec.volumes {
                self.apply_volumes(&mut tx, actor, id, vols, q.max_storage_mb)
                    .await?;
            }
            let app = repo::apps::by_id(&mut *tx, id)
                .await?
                .ok_or_else(|| Error::internal("app vanished"))?;
            repo::deployments::queue(&mut tx, &app, "created", None, now()).await?;
            tx.commit().await?;
            tracing::info!(app = %app.name, tenant = actor.user_id, "app created");
            self.wake_engine();
            Ok(app)
        })
        .await
    }

    /// Changes an app's settings (what `input` leaves out stays) and rolls them out.
    pub async fn update_app(&self, actor: &Actor, name: &str, input: AppSpec) -> Result<App> {
        let what = crate::audit::Change::new(crate::audit::Action::AppUpdate, name.trim())
            .owner(actor.user_id)
            .summary(input.describe());
        self.audited(actor, what, async {
            let old = self.own_app(actor, name).await?;
            let (_, spec) = self.check_app_spec(actor, None, &input, Some(&old))?;
            if spec.replicas > 1 && spec.volumes.is_none() {
                self.one_copy_if_volumes(old.id, spec.replicas).await?;
            }
            if spec.kind == AppKind::Internal && old.kind != AppKind::Internal {
                let domains = repo::domains::names_for_app(self.db(), old.id).await?;
                if !domains.is_empty() {
                    return Err(Error::field(
                        "kind",
                        format!(
                            "Detach {} first: an internal app takes no domain.",
                            domains.join(", ")
                        ),
                    ));
                }
            }
            let q = repo::users::by_id(self.db(), actor.user_id)
                .await?
                .ok_or(Error::Unauthenticated)?
                .quotas;
            let mut tx = self.db().begin().await?;
            if !repo::apps::update_within_quota(
                &mut *tx,
                old.id,
                actor.user_id,
                &spec.as_repo(),
                q,
                now(),
            )
            .await?
            {
                drop(tx);
                return Err(self.quota_error(actor, &spec, Some(old.id)).await);
            }
            if let Some(vols) = &spec.volumes {
                self.apply_volumes(&mut tx, actor, old.id, vols, q.max_storage_mb)
                    .await?;
            }
            let app = repo::apps::by_id(&mut *tx, old.id)
                .await?
                .ok_or(Error::NotFound)?;
            repo::deployments::queue(&mut tx, &app, "settings changed", None, now()).await?;
            tx.commit().await?;
            self.wake_engine();
            Ok(app)
        })
        .await
    }

    /// Deletes an app. Its volumes are kept (listed, and can be given to another app) unless
    /// `delete_volumes`, in which case their data goes with it.
    pub async fn delete_app(&self, actor: &Actor, name: &str, delete_volumes: bool) -> Result<()> {
        let what = crate::audit::Change::new(crate::audit::Action::AppDelete, name.trim())
            .owner(actor.user_id)
            .summary(if delete_volumes {
                "deleted with its volumes"
            } else {
                "deleted; its volumes are kept"
            });
        self.audited(actor, what, async {
            let app = self.own_app(actor, name).await?;
            let mut tx = self.db().begin().await?;
            if delete_volumes {
                repo::volumes::delete_for_app(&mut tx, app.id).await?;
            }
            // Kept volumes lose their app through the foreign key (ON DELETE SET NULL).
            if !repo::apps::delete(&mut tx, app.id, actor.user_id).await? {
                return Err(Error::NotFound);
            }
            tx.commit().await?;
            tracing::info!(app = %app.name, tenant = actor.user_id, delete_volumes, "app deleted");
            self.wake_engine();
            Ok(())
        })
        .await
    }

    pub async fn set_app_running(&self, actor: &Actor, name: &str, running: bool) -> Result<App> {
        let what = crate::audit::Change::new(
            if running {
                crate::audit::Action::AppStart
            } else {
                crate::audit::Action::AppStop
            },
            name.trim(),
        )
        .owner(actor.user_id);
        self.audited(actor, what, async {
            let app = self.own_app(actor, name).await?;
            let desired = if running {
                Desired::Running
            } else {
                Desired::Stopped
            };
            repo::apps::set_desired(self.db(), app.id, desired, now()).await?;
            self.wake_engine();
            self.own_app(actor, name).await
        })
        .await
    }

    /// Restarts the app's container in place.
    pub async fn restart_app(&self, actor: &Actor, name: &str) -> Result<()> {
        let what = crate::audit::Change::new(crate::audit::Action::AppRestart, name.trim())
            .owner(actor.user_id)
            .summary("container restarted");
        self.audited(actor, what, async {
            let app = self.own_app(actor, name).await?;
            if app.desired == Desired::Stopped {
                return Err(Error::Conflict(
                    "The app is stopped; start it instead.".into(),
                ));
            }
            let containers = self.current_containers(&app).await?;
            if containers.is_empty() {
                return Err(Error::Conflict(
                    "The app has no container to restart yet.".into(),
                ));
            }
            // One copy at a time: with replicas, the others serve meanwhile.
            for c in containers {
                self.runtime()
                    .restart(&c.id, self.settings().engine.stop_timeout_secs)
                    .await
                    .map_err(engine_error)?;
            }
            Ok(())
        })
        .await
    }

    /// Deploys the app's settings again (pulling the image tag afresh).
    pub async fn redeploy_app(&self, actor: &Actor, name: &str) -> Result<Deployment> {
        let what = crate::audit::Change::new(crate::audit::Action::AppDeploy, name.trim())
            .owner(actor.user_id)
            .summary("redeploy");
        self.audited(actor, what, async {
            let app = self.own_app(actor, name).await?;
            self.tenant_limits()
                .redeploys
                .take_for_tenant(actor.user_id, "redeploys")?;
            self.queue_deployment(&app, "redeploy", None).await
        })
        .await
    }

    /// Queues a deployment of the app's settings (pinned to `digest` when given) and wakes the
    /// engine.
    pub(crate) async fn queue_deployment(
        &self,
        app: &App,
        cause: &str,
        digest: Option<&str>,
    ) -> Result<Deployment> {
        let mut tx = self.db().begin().await?;
        let id = repo::deployments::queue(&mut tx, app, cause, digest, now()).await?;
        tx.commit().await?;
        self.wake_engine();
        repo::deployments::by_id(self.db(), id)
            .await?
            .ok_or(Error::NotFound)
    }

    /// Deploys exactly what deployment `number` ran (same image digest, same env and limits).
    pub async fn rollback_app(&self, actor: &Actor, name: &str, number: i64) -> Result<Deployment> {
        let what = crate::audit::Change::new(crate::audit::Action::AppRollback, name.trim())
            .owner(actor.user_id)
            .summary(format!("to deployment #{number}"));
        self.audited(actor, what, async {
            let app = self.own_app(actor, name).await?;
            let target = repo::deployments::by_number(self.db(), app.id, number)
                .await?
                .ok_or(Error::NotFound)?;
            if !target.status.succeeded() {
                return Err(Error::Conflict(format!(
                    "Deployment #{number} never ran successfully; pick one that did."
                )));
            }
            let q = repo::users::by_id(self.db(), actor.user_id)
                .await?
                .ok_or(Error::Unauthenticated)?
                .quotas;
            if target.replicas > 1 {
                self.one_copy_if_volumes(app.id, target.replicas).await?;
            }
            let spec = CheckedSpec {
                image: target.image.clone(),
                port: target.port,
                env: target.env.clone(),
                memory_mb: target.memory_mb,
                cpus_milli: target.cpus_milli,
                replicas: target.replicas,
                health_path: target.health_path.clone(),
                read_only: target.read_only,
                kind: target.kind,
                capabilities: target.capabilities,
                volumes: None,
            };
            let mut tx = self.db().begin().await?;
            if !repo::apps::update_within_quota(
                &mut *tx,
                app.id,
                actor.user_id,
                &spec.as_repo(),
                q,
                now(),
            )
            .await?
            {
                drop(tx);
                return Err(self.quota_error(actor, &spec, Some(app.id)).await);
            }
            let app = repo::apps::by_id(&mut *tx, app.id)
                .await?
                .ok_or(Error::NotFound)?;
            let id = repo::deployments::queue(
                &mut tx,
                &app,
                &format!("rollback to #{number}"),
                target.digest.as_deref(),
                now(),
            )
            .await?;
            tx.commit().await?;
            self.wake_engine();
            repo::deployments::by_id(self.db(), id)
                .await?
                .ok_or(Error::NotFound)
        })
        .await
    }
}

impl Pier {
    /// Refuses several replicas of an app that mounts volumes.
    async fn one_copy_if_volumes(&self, app_id: i64, replicas: i64) -> Result<()> {
        if repo::volumes::for_app(self.db(), app_id).await?.is_empty() {
            Ok(())
        } else {
            Err(Error::field(
                "replicas",
                spec::one_copy_with_volumes(replicas),
            ))
        }
    }
}

/// An engine failure as a person sees it.
pub fn engine_error(e: RuntimeError) -> Error {
    match e {
        RuntimeError::Unavailable(detail) => {
            tracing::error!(%detail, "container engine unreachable");
            Error::Unavailable(
                "The container engine is not answering; try again in a minute.".into(),
            )
        }
        RuntimeError::NotFound => {
            Error::Conflict("The container is gone; the engine is recreating it.".into())
        }
        RuntimeError::Conflict(m) | RuntimeError::Failed(m) => Error::Conflict(m),
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::Duration};

    use crate::{fake_runtime::FakeRuntime, Pier};

    /// A panel with one member who has one app.
    async fn panel(
        runtime: Arc<FakeRuntime>,
    ) -> (Pier, crate::model::Actor, crate::testkit::TempDir) {
        let (pier, actor, dir) =
            crate::testkit::panel_with_user(runtime, "member", Default::default()).await;
        sqlx::query(
            "INSERT INTO apps (user_id, name, image, port, memory_mb, cpus_milli, created_at, updated_at)
             VALUES (?, 'web', 'registry.example/web:1', 8080, 64, 100, 0, 0)",
        )
        .bind(actor.user_id)
        .execute(pier.db())
        .await
        .unwrap();
        (pier, actor, dir)
    }

    #[tokio::test]
    async fn a_spec_leaves_out_what_stays_and_reports_every_problem_in_order() {
        use super::{AppSpec, EnvInput};
        let (pier, actor, dir) = panel(FakeRuntime::new()).await;
        let env = |name: &str, value: &str, secret: Option<bool>| EnvInput {
            name: name.into(),
            value: value.into(),
            secret,
        };
        let spec = AppSpec {
            image: Some("registry.example/api:1".into()),
            port: Some(8080),
            env: Some(vec![
                env("MODE", "prod", Some(false)),
                env("TOKEN", "s3cret", Some(true)),
            ]),
            health_path: Some("/healthz".into()),
            ..AppSpec::default()
        };
        let app = pier.create_app(&actor, "api", spec).await.unwrap();
        assert_eq!((app.memory_mb, app.cpus_milli), (256, 500), "defaults");
        let opened = |a: &crate::model::App| {
            super::open_env(pier.key(), a.user_id, &a.name, &a.env).unwrap()
        };
        let before = opened(&app);

        // Only the port: everything else, the sealed secret included, stays as it is.
        let patch = AppSpec {
            port: Some(9090),
            ..AppSpec::default()
        };
        let app = pier.update_app(&actor, "api", patch).await.unwrap();
        assert_eq!(app.port, 9090);
        assert_eq!(app.image, "registry.example/api:1");
        assert_eq!(app.health_path.as_deref(), Some("/healthz"));
        assert_eq!(opened(&app), before);

        // A new environment without saying what is secret: TOKEN stays secret and, left empty,
        // keeps its value; a new variable is plain.
        let patch = AppSpec {
            env: Some(vec![env("TOKEN", "", None), env("NEW", "1", None)]),
            health_path: Some(String::new()),
            ..AppSpec::default()
        };
        let app = pier.update_app(&actor, "api", patch).await.unwrap();
        assert_eq!(app.health_path, None, "an empty path removes the check");
        let token = app.env.iter().find(|e| e.name == "TOKEN").unwrap();
        assert!(token.is_secret());
        assert!(!app
            .env
            .iter()
            .find(|e| e.name == "NEW")
            .unwrap()
            .is_secret());
        assert!(opened(&app).contains(&("TOKEN".into(), "s3cret".into())));

        // What the caller could not read is reported in its field's place, with the rest.
        let bad = AppSpec {
            image: Some("Not An Image".into()),
            memory_mb: Some(1),
            unreadable: vec![("port".into(), "Enter the port.".into())],
            ..AppSpec::default()
        };
        let err = pier.update_app(&actor, "api", bad).await.unwrap_err();
        let fields: Vec<&str> = err.fields().iter().map(|f| f.field.as_str()).collect();
        assert_eq!(fields, ["image", "port", "memory_mb"]);
        assert_eq!(err.fields()[1].message, "Enter the port.");
        let kept = pier.own_app(&actor, "api").await.unwrap();
        assert_eq!((kept.port, kept.memory_mb), (9090, 256), "nothing changed");

        // A new app needs an image and a port.
        let err = pier
            .create_app(&actor, "empty", AppSpec::default())
            .await
            .unwrap_err();
        let fields: Vec<&str> = err.fields().iter().map(|f| f.field.as_str()).collect();
        assert_eq!(fields, ["image", "port"]);
        drop(dir);
    }

    #[tokio::test]
    async fn replicas_count_against_quotas_once_each_and_only_for_web_apps_without_volumes() {
        use super::{AppSpec, VolumeInput};
        use crate::model::AppKind;
        let (pier, actor, dir) = panel(FakeRuntime::new()).await;
        sqlx::query("UPDATE users SET max_memory_mb = 1024, max_cpus_milli = 2000 WHERE id = ?")
            .bind(actor.user_id)
            .execute(pier.db())
            .await
            .unwrap();
        let spec = |replicas: i64| AppSpec {
            image: Some("registry.example/api:1".into()),
            port: Some(8080),
            memory_mb: Some(256),
            cpus_milli: Some(500),
            replicas: Some(replicas),
            ..AppSpec::default()
        };
        let app = pier.create_app(&actor, "api", spec(3)).await.unwrap();
        assert_eq!(app.replicas, 3);
        // 3 × 256 MiB and 3 × 0.5 CPU, beside the 64 MiB and 0.1 CPU of `web`.
        assert_eq!(pier.quota_usage(&actor).await.unwrap(), (2, 832, 1600));
        let queued = pier.deployments(&actor, "api", 1, 0).await.unwrap();
        assert_eq!(
            queued[0].replicas, 3,
            "the deployment runs what the app asks"
        );

        // A fourth copy would pass the memory quota: refused, saying so per copy.
        let err = pier.update_app(&actor, "api", spec(4)).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "This app needs 4 × 256 MiB of memory, but only 960 MiB of your 1024 MiB memory quota is free. Lower it, make room, or ask an admin to raise your quota."
        );
        assert_eq!(pier.own_app(&actor, "api").await.unwrap().replicas, 3);

        // Out of range, or on an internal app: the field says why.
        for (replicas, kind) in [(0, None), (21, None), (2, Some(AppKind::Internal))] {
            let mut s = spec(replicas);
            s.kind = kind;
            let err = pier.update_app(&actor, "api", s).await.unwrap_err();
            assert_eq!(err.fields()[0].field, "replicas", "{replicas} {kind:?}");
        }
        // With volumes, given now or already there: one copy.
        let vol = VolumeInput {
            name: "data".into(),
            path: "/data".into(),
            size_mb: Some(64),
        };
        let mut s = spec(2);
        s.volumes = Some(vec![vol.clone()]);
        let err = pier.update_app(&actor, "api", s).await.unwrap_err();
        assert!(err.fields()[0]
            .message
            .starts_with("An app with volumes runs as one copy"));
        let mut s = spec(1);
        s.volumes = Some(vec![vol]);
        pier.update_app(&actor, "api", s).await.unwrap();
        let err = pier.update_app(&actor, "api", spec(2)).await.unwrap_err();
        assert_eq!(err.fields()[0].field, "replicas");
        assert_eq!(pier.own_app(&actor, "api").await.unwrap().replicas, 1);
        drop(dir);
    }

    #[tokio::test]
    async fn app_list_answers_from_a_recent_container_list_and_refreshes_it_once() {
        let engine = FakeRuntime::new();
        let (pier, actor, dir) = panel(engine.clone()).await;
        let list = || async {
            tokio::time::timeout(Duration::from_secs(5), pier.list_apps_page(&actor, 50, 0))
                .await
                .expect("the list waited for the engine")
                .unwrap()
        };

        // Nothing observed yet: the first page asks the engine and waits for it.
        let gate = engine.gate_listing(true).unwrap();
        let first = tokio::spawn({
            let (pier, actor) = (pier.clone(), actor.clone());
            async move { pier.list_apps_page(&actor, 50, 0).await.unwrap() }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            !first.is_finished(),
            "with no list at all, a page waits for the engine"
        );
        gate.add_permits(1);
        assert_eq!(first.await.unwrap().0.len(), 1);
        assert_eq!(engine.list_calls(), (1, 0));

        // Within a second: the same list, no engine call.
        list().await;
        assert_eq!(engine.list_calls(), (1, 0));

        // Older than a second: pages answer at once from it while one refresh runs for all.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        for _ in 0..5 {
            assert_eq!(list().await.0.len(), 1);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            engine.list_calls(),
            (2, 1),
            "one refresh, still waiting on the engine"
        );
        gate.add_permits(1);
        for _ in 0..50 {
            if engine.list_calls().1 == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(engine.list_calls(), (2, 0));
        // The refreshed list is fresh again: no further call.
        list().await;
        assert_eq!(engine.list_calls(), (2, 0));
        drop(dir);
    }

    #[tokio::test]
    async fn app_list_reuses_the_container_list_until_the_engine_reports_a_change() {
        let engine = FakeRuntime::new();
        let (pier, actor, dir) = panel(engine.clone()).await;
        let list = || async { pier.list_apps_page(&actor, 50, 0).await.unwrap() };
        // The engine calls so far, once the refresh a page may have started is done.
        let settled = || async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            for _ in 0..100 {
                if engine.list_calls().1 == 0 {
                    return engine.list_calls().0;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            panic!("a refresh never finished");
        };
        pier.following_container_events(true);
        list().await;
        assert_eq!(settled().await, 1);

        // Older than a second, and no change reported: still no engine call.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        for _ in 0..5 {
            assert_eq!(list().await.0.len(), 1);
        }
        assert_eq!(settled().await, 1, "nothing changed, nothing listed");

        // A change: the next page lists again, once, and that list is reused in turn.
        pier.container_changed();
        list().await;
        list().await;
        assert_eq!(settled().await, 2);

        // A change while a list is being taken: that list is not reused once it is over a
        // second old (until then every page takes it, as without events).
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let gate = engine.gate_listing(true).unwrap();
        pier.container_changed();
        list().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            engine.list_calls(),
            (3, 1),
            "one refresh, waiting on the engine"
        );
        pier.container_changed();
        gate.add_permits(1);
        engine.gate_listing(false);
        assert_eq!(settled().await, 3);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        list().await;
        assert_eq!(
            settled().await,
            4,
            "the list taken across a change was reused"
        );

        // Events no longer followed: back to lists at most a second old.
        pier.following_container_events(false);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        list().await;
        assert_eq!(settled().await, 5);
        drop(dir);
    }
}
