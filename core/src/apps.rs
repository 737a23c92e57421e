//! The apps service: what a tenant may do with their apps, deployments and registry logins.
//! Every lookup is scoped to the acting tenant; another tenant's app is simply not found.

use std::collections::{HashMap, HashSet};

use futures_util::stream::BoxStream;

use crate::{
    model::{
        Actor, App, AppKind, CapProfile, DeployStatus, Deployment, Desired, RegistryCredential,
        StoredEnv, Volume,
    },
    now, repo,
    runtime::{
        Container, ContainerState, LogLine, PullProgress, RegistryAuth, RuntimeError, VolumeUsage,
    },
    secret::SecretKey,
    telemetry::Point,
    validate::{self, Checks},
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
    pub current: Option<Deployment>,
    /// The deployment being rolled out, with its pull progress.
    pub rollout: Option<(Deployment, Option<PullProgress>)>,
    /// The latest deployment when it failed (its error explains why).
    pub last_failed: Option<Deployment>,
    /// The volumes it mounts, by path.
    pub volumes: Vec<Volume>,
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

/// The container of one deployment; the name makes a second create of the same one fail.
pub fn container_name(instance: &str, app: &App, deployment_id: i64) -> String {
    format!(
        "pier-{instance}-t{}-{}-d{deployment_id}",
        app.user_id, app.name
    )
}

fn env_context(user_id: i64, app: &str, var: &str) -> String {
    format!("tenant:{user_id}:app:{app}:env:{var}")
}

fn registry_context(user_id: i64, registry: &str) -> String {
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
fn over(what: &str, want: String, free: String, limit: String) -> Error {
    Error::Quota(format!(
        "This app needs {want} of {what}, but only {free} of your {limit} {what} quota is free. Lower it, make room, or ask an admin to raise your quota."
    ))
}

/// How old a container list may be and still be shown while a fresh one is fetched.
const CONTAINERS_STALE: std::time::Duration = std::time::Duration::from_secs(10);

impl Pier {
    /// Checks settings into a spec: `name` for a new app, `old` the app being changed (what
    /// the spec leaves out is kept from it; so are secret values left empty).
    fn check_app_spec(
        &self,
        actor: &Actor,
        name: Option<&str>,
        spec: &AppSpec,
        old: Option<&App>,
    ) -> Result<(String, CheckedSpec)> {
        let mut c = Checks::default();
        // A field the caller could not read is reported in its place, in the same order.
        let field = |c: &mut Checks, f: &str| -> Option<()> {
            match spec.unreadable(f) {
                Some(why) => c.check::<()>(f, Err(why)),
                None => Some(()),
            }
        };
        let name = match (old, name) {
            (Some(a), _) => Some(a.name.clone()),
            (None, n) => c.check("name", validate::app_name(n.unwrap_or_default())),
        };
        let allowed = &self.settings().engine.allowed_registries;
        // The app's own image when left out: checked again like a new one (the operator may
        // have narrowed the registries since), never taken on trust.
        let image_text = spec
            .image
            .as_deref()
            .or(old.map(|a| a.image.as_str()))
            .unwrap_or_default();
        let image = c.check(
            "image",
            validate::image(image_text).and_then(|i| {
                if allowed.contains(&i.registry) {
                    Ok(i)
                } else if allowed.is_empty() {
                    // No list: anything public, but nothing in the host's own network.
                    validate::public_registry(&i.registry).map(|()| i)
                } else {
                    Err(format!(
                        "This Pier only pulls images from {}; {} is not one of them.",
                        allowed.join(", "),
                        i.registry
                    ))
                }
            }),
        );
        let port = field(&mut c, "port").and_then(|()| match (spec.port, old) {
            (None, Some(a)) => Some(a.port),
            (p, _) => c.check("port", validate::port_number(p.unwrap_or(0))),
        });
        let memory_mb = field(&mut c, "memory_mb").and_then(|()| match (spec.memory_mb, old) {
            (None, Some(a)) => Some(a.memory_mb),
            (None, None) => Some(DEFAULT_MEMORY_MB),
            (Some(m), _) => c.check("memory_mb", validate::app_memory(m)),
        });
        let cpus_milli = field(&mut c, "cpus").and_then(|()| match (spec.cpus_milli, old) {
            (None, Some(a)) => Some(a.cpus_milli),
            (None, None) => Some(DEFAULT_CPUS_MILLI),
            (Some(m), _) => c.check("cpus", validate::app_cpus(m)),
        });
        let health_path = match (&spec.health_path, old) {
            (None, Some(a)) => a.health_path.clone(),
            (p, _) => c
                .check(
                    "health_path",
                    validate::health_path(p.as_deref().unwrap_or_default()),
                )
                .unwrap_or(None),
        };
        field(&mut c, "kind");
        field(&mut c, "capabilities");
        // Anything else the caller could not read, after the fields the service knows.
        const KNOWN: [&str; 7] = [
            "port",
            "memory_mb",
            "cpus",
            "kind",
            "capabilities",
            "volumes",
            "env",
        ];
        for (f, why) in &spec.unreadable {
            if !KNOWN.contains(&f.as_str()) {
                c.check::<()>(f, Err(why.clone()));
            }
        }
        let kind = spec.kind.or(old.map(|a| a.kind)).unwrap_or(AppKind::Web);
        let capabilities = spec
            .capabilities
            .or(old.map(|a| a.capabilities))
            .unwrap_or(CapProfile::Default);
        if kind == AppKind::Internal && health_path.is_some() {
            c.check::<()>(
                "health_path",
                Err("An internal app is checked by connecting to its port: leave the health path empty.".into()),
            );
        }
        let volumes = field(&mut c, "volumes").and_then(|()| match &spec.volumes {
            Some(list) => c.check("volumes", check_volumes(list)).map(Some),
            None => Some(None),
        });
        let read_only = spec
            .read_only
            .unwrap_or_else(|| old.is_some_and(|a| a.read_only));

        // The environment: as the app has it when left out.
        let is_secret_now =
            |n: &str| old.is_some_and(|a| a.env.iter().any(|e| e.name == n && e.is_secret()));
        let mut vars: Vec<(String, String, bool)> = Vec::new();
        let mut problems: Vec<String> = spec.unreadable("env").into_iter().collect();
        let rows = match (&spec.env, old) {
            (Some(rows), _) => rows.clone(),
            (None, Some(a)) => a
                .env
                .iter()
                .map(|v| EnvInput {
                    name: v.name.clone(),
                    // A secret's saved value is kept (below) when left empty.
                    value: v.value.clone().unwrap_or_default(),
                    secret: Some(v.is_secret()),
                })
                .collect(),
            (None, None) => Vec::new(),
        };
        for row in &rows {
            if row.name.trim().is_empty() && row.value.is_empty() {
                continue;
            }
            match validate::env_name(&row.name) {
                Ok(n) => {
                    let secret = row.secret.unwrap_or_else(|| is_secret_now(&n));
                    vars.push((n, row.value.clone(), secret))
                }
                Err(e) => problems.push(e),
            }
        }
        // An empty secret keeps its saved value; with none saved (a new or renamed variable, or
        // one just marked secret) there is nothing to keep, so it must be typed.
        for (n, v, secret) in &vars {
            let saved = old.is_some_and(|a| a.env.iter().any(|e| &e.name == n && e.is_secret()));
            if *secret && v.is_empty() && !saved {
                problems.push(format!(
                    "Enter a value for the secret {n}: only a saved secret can be left empty."
                ));
            }
        }
        let mut seen = HashSet::new();
        let mut total = 0usize;
        for (n, v, _) in &vars {
            if !seen.insert(n.clone()) {
                problems.push(format!("{n} is set more than once."));
            }
            if let Err(e) = validate::env_value(n, v) {
                problems.push(e);
            }
            total += n.len() + v.len();
        }
        if vars.len() > validate::MAX_ENV_VARS {
            problems.push(format!(
                "At most {} variables, please.",
                validate::MAX_ENV_VARS
            ));
        }
        if total > validate::MAX_ENV_TOTAL {
            problems.push(format!(
                "The variables take more than {} KiB together.",
                validate::MAX_ENV_TOTAL / 1024
            ));
        }
        if !problems.is_empty() {
            c.check::<()>("env", Err(problems.join(" ")));
        }
        c.finish()?;
        let name = name.expect("checked");
        let old_env: HashMap<&str, &StoredEnv> = old
            .map(|a| a.env.iter().map(|v| (v.name.as_str(), v)).collect())
            .unwrap_or_default();
        let env = vars
            .into_iter()
            .map(|(n, v, secret)| {
                if secret {
                    // An empty secret in an edit form means "unchanged".
                    if v.is_empty() {
                        if let Some(prev) = old_env.get(n.as_str()).filter(|p| p.is_secret()) {
                            return (*prev).clone();
                        }
                    }
                    let sealed = self
                        .key()
                        .encrypt(v.as_bytes(), &env_context(actor.user_id, &name, &n));
                    StoredEnv {
                        name: n,
                        value: None,
                        sealed: Some(sealed),
                    }
                } else {
                    StoredEnv {
                        name: n,
                        value: Some(v),
                        sealed: None,
                    }
                }
            })
            .collect::<Vec<StoredEnv>>();
        // Kept secrets count too (the form sent them empty): ciphertext is hex, about twice the
        // plaintext, plus a nonce and tag.
        let stored: usize = env
            .iter()
            .map(|v| {
                v.name.len()
                    + v.value.as_ref().map_or(0, String::len)
                    + v.sealed
                        .as_ref()
                        .map_or(0, |s| s.len().saturating_sub(80) / 2)
            })
            .sum();
        if stored > validate::MAX_ENV_TOTAL {
            return Err(Error::field(
                "env",
                format!(
                    "The variables take more than {} KiB together.",
                    validate::MAX_ENV_TOTAL / 1024
                ),
            ));
        }
        Ok((
            name,
            CheckedSpec {
                image: image.expect("checked").whole(),
                port: port.expect("checked"),
                env,
                memory_mb: memory_mb.expect("checked"),
                cpus_milli: cpus_milli.expect("checked"),
                health_path,
                read_only,
                kind,
                capabilities,
                volumes: volumes.expect("checked"),
            },
        ))
    }

    /// Explains which quota a spec would break (after the SQL guard refused it).
    async fn quota_error(&self, actor: &Actor, spec: &CheckedSpec, app: Option<i64>) -> Error {
        let q = match repo::users::by_id(self.db(), actor.user_id).await {
            Ok(Some(u)) => u.quotas,
            Ok(None) => return Error::NotFound,
            Err(e) => return e,
        };
        let (apps, mem, cpus) = match repo::apps::usage(self.db(), actor.user_id, app).await {
            Ok(u) => u,
            Err(e) => return e,
        };
        let cpu = validate::format_cpus;
        if app.is_none() && apps >= q.max_apps {
            Error::Quota(format!(
                "You have {apps} of the {} apps your quota allows. Delete one or ask an admin to raise it.",
                q.max_apps
            ))
        } else if mem + spec.memory_mb > q.max_memory_mb {
            over(
                "memory",
                format!("{} MiB", spec.memory_mb),
                format!("{} MiB", (q.max_memory_mb - mem).max(0)),
                format!("{} MiB", q.max_memory_mb),
            )
        } else if cpus + spec.cpus_milli > q.max_cpus_milli {
            over(
                "CPU",
                cpu(spec.cpus_milli),
                cpu((q.max_cpus_milli - cpus).max(0)),
                cpu(q.max_cpus_milli),
            )
        } else {
            Error::Conflict("Your quota changed meanwhile; try again.".into())
        }
    }

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
            let container = self.current_container(&app).await?.ok_or_else(|| {
                Error::Conflict("The app has no container to restart yet.".into())
            })?;
            self.runtime()
                .restart(&container.id, self.settings().engine.stop_timeout_secs)
                .await
                .map_err(engine_error)?;
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
            let spec = CheckedSpec {
                image: target.image.clone(),
                port: target.port,
                env: target.env.clone(),
                memory_mb: target.memory_mb,
                cpus_milli: target.cpus_milli,
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

    pub async fn deployments(
        &self,
        actor: &Actor,
        name: &str,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<Deployment>> {
        let app = self.own_app(actor, name).await?;
        repo::deployments::list_for_app(self.db(), app.id, limit.clamp(1, 500), offset.max(0)).await
    }

    /// The caller's apps with their state, from one look at the engine and two queries.
    pub async fn list_apps(&self, actor: &Actor) -> Result<Vec<AppView>> {
        Ok(self.list_apps_page(actor, i64::MAX, 0).await?.0)
    }

    /// One page of the caller's apps (by name) with their state, and how many there are.
    pub async fn list_apps_page(
        &self,
        actor: &Actor,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<AppView>, usize)> {
        let (rows, total) = repo::app_list::page(self.db(), actor.user_id, limit, offset).await?;
        let mut volumes: HashMap<i64, Vec<Volume>> = HashMap::new();
        for v in repo::volumes::list_for_user(self.db(), actor.user_id).await? {
            if let Some(app) = v.app_id {
                volumes.entry(app).or_default().push(v);
            }
        }
        let containers = self.containers_of(!rows.is_empty()).await;
        // The serving containers of this page, found in one walk of the list (per app, a walk
        // of 1,000 containers was most of a page's time).
        let serving: HashSet<i64> = rows
            .iter()
            .filter_map(|(a, _, _)| a.current_deployment_id)
            .collect();
        let by_deployment: Option<HashMap<i64, &Container>> = containers.as_deref().map(|cs| {
            cs.iter()
                .filter_map(|c| Some((c.deployment_id().filter(|d| serving.contains(d))?, c)))
                .collect()
        });
        let views = rows
            .into_iter()
            .map(|(app, current, latest)| {
                let mut vols = volumes.remove(&app.id).unwrap_or_default();
                vols.sort_by(|a, b| a.path.cmp(&b.path));
                let container = by_deployment.as_ref().map(|m| {
                    app.current_deployment_id
                        .and_then(|d| m.get(&d))
                        .filter(|c| c.app_id() == Some(app.id))
                        .map(|c| (*c).clone())
                });
                self.view(app, current, latest, container, vols)
            })
            .collect();
        Ok((views, usize::try_from(total).unwrap_or(0)))
    }

    pub async fn app_view(&self, actor: &Actor, name: &str) -> Result<AppView> {
        let app = self.own_app(actor, name).await?;
        let containers = self.containers_of(true).await;
        let current = match app.current_deployment_id {
            Some(id) => repo::deployments::by_id(self.db(), id).await?,
            None => None,
        };
        let latest = repo::deployments::list_for_app(self.db(), app.id, 1, 0)
            .await?
            .into_iter()
            .next();
        let volumes = repo::volumes::for_app(self.db(), app.id).await?;
        let container = containers.as_deref().map(|cs| {
            cs.iter()
                .find(|c| {
                    c.app_id() == Some(app.id)
                        && c.deployment_id().is_some()
                        && c.deployment_id() == app.current_deployment_id
                })
                .cloned()
        });
        Ok(self.view(app, current, latest, container, volumes))
    }

    /// This installation's containers as seen at most a second ago (None when the engine does
    /// not answer).
    pub(crate) async fn containers_of(
        &self,
        needed: bool,
    ) -> Option<std::sync::Arc<Vec<Container>>> {
        use std::time::Duration;
        if !needed {
            return Some(Default::default());
        }
        // Pages poll; one engine call a second serves them all.
        if let Some(fresh) = self.observed_containers(Duration::from_secs(1)) {
            return Some(fresh);
        }
        // A little older: answered at once, and one refresh runs for the pages that follow.
        // Listing 1,000 containers takes the engine tens of milliseconds; every page waiting
        // for it made the p99 of a busy panel (bench/scale.py).
        if let Some(recent) = self.observed_containers(CONTAINERS_STALE) {
            if let Some(claim) = self.claim_listing() {
                let pier = self.clone();
                tokio::spawn(async move {
                    let _claim = claim;
                    pier.list_containers().await;
                });
            }
            return Some(recent);
        }
        self.list_containers().await
    }

    /// Asks the engine for the instance's containers and records the answer.
    async fn list_containers(&self) -> Option<std::sync::Arc<Vec<Container>>> {
        let instance = self.instance_id().await.ok()?;
        match self.runtime().containers(&instance).await {
            Ok(c) => Some(self.observe_containers(c)),
            Err(e) => {
                tracing::warn!(error = %e, "listing containers failed");
                None
            }
        }
    }

    fn view(
        &self,
        app: App,
        current: Option<Deployment>,
        latest: Option<Deployment>,
        // The serving deployment's container; None when the engine's list is not known.
        container: Option<Option<Container>>,
        volumes: Vec<Volume>,
    ) -> AppView {
        let rollout = latest.clone().filter(|d| d.status.in_progress()).map(|d| {
            let p = self.telemetry().pull(d.id);
            (d, p)
        });
        let last_failed = latest.filter(|d| d.status == DeployStatus::Failed);
        let known = container.is_some();
        let container = container.flatten();
        let state = match (known.then_some(()), &container) {
            _ if rollout.is_some() && app.desired == Desired::Running => AppState::Deploying,
            (None, _) => AppState::Unknown,
            (Some(_), Some(c)) if app.desired == Desired::Stopped => {
                if c.running() {
                    AppState::Stopping
                } else {
                    AppState::Stopped
                }
            }
            (Some(_), None) if app.desired == Desired::Stopped => AppState::Stopped,
            (Some(_), Some(c)) if c.running() => AppState::Running,
            (Some(_), Some(c)) if c.state == ContainerState::Created => AppState::Starting,
            (Some(_), Some(_)) => AppState::Crashed,
            (Some(_), None) if current.is_some() => AppState::Starting,
            (Some(_), None) if last_failed.is_some() => AppState::Failed,
            (Some(_), None) => AppState::Starting,
        };
        AppView {
            host_port: container
                .as_ref()
                .filter(|c| c.running())
                .and_then(|c| c.host_port),
            state,
            current,
            rollout,
            last_failed,
            volumes,
            app,
        }
    }

    /// The container of the deployment that serves, if there is one.
    pub(crate) async fn current_container(&self, app: &App) -> Result<Option<Container>> {
        let instance = self.instance_id().await?;
        let all = self
            .runtime()
            .containers(&instance)
            .await
            .map_err(engine_error)?;
        Ok(all.into_iter().find(|c| {
            c.app_id() == Some(app.id)
                && c.deployment_id().is_some()
                && c.deployment_id() == app.current_deployment_id
        }))
    }

    /// The app's log: the last `tail` lines, then new ones when `follow`.
    pub async fn app_logs(
        &self,
        actor: &Actor,
        name: &str,
        tail: usize,
        follow: bool,
    ) -> Result<BoxStream<'static, Result<LogLine, RuntimeError>>> {
        let app = self.own_app(actor, name).await?;
        let container = self.current_container(&app).await?.ok_or_else(|| {
            Error::Conflict("The app has no container yet, so there are no logs.".into())
        })?;
        Ok(self
            .runtime()
            .logs(&container.id, tail.min(MAX_LOG_TAIL), follow))
    }

    /// CPU and memory of the last hour.
    pub async fn app_metrics(&self, actor: &Actor, name: &str) -> Result<Vec<Point>> {
        let app = self.own_app(actor, name).await?;
        Ok(self.telemetry().history(app.id))
    }

    // ----- volumes ----------------------------------------------------------------------------

    /// Makes an app's volumes what the form lists: existing ones of the app stay (their path may
    /// change), kept ones of the tenant are given to it, new names are made within the storage
    /// quota, and the app's volumes left out are kept for later. Inside the caller's transaction.
    async fn apply_volumes(
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

    // ----- registry logins ------------------------------------------------------------------

    pub async fn registry_credentials(&self, actor: &Actor) -> Result<Vec<RegistryCredential>> {
        repo::registries::list_for_user(self.db(), actor.user_id).await
    }

    pub async fn set_registry_credential(
        &self,
        actor: &Actor,
        registry: &str,
        username: &str,
        password: &str,
    ) -> Result<String> {
        let what = crate::audit::Change::new(crate::audit::Action::RegistryLogin, registry.trim())
            .owner(actor.user_id)
            .summary(format!("as {}", username.trim()));
        self.audited(actor, what, async {
            let mut c = Checks::default();
            let registry = c.check("registry", validate::registry_host(registry));
            let username = username.trim();
            if username.is_empty() || username.len() > 255 || username.chars().any(char::is_control)
            {
                c.check::<()>(
                    "username",
                    Err("Enter the user name for this registry.".into()),
                );
            }
            if password.is_empty() || password.len() > 4096 || password.contains('\0') {
                c.check::<()>(
                    "password",
                    Err("Enter the password or access token for this registry.".into()),
                );
            }
            c.finish()?;
            let registry = registry.expect("checked");
            let sealed = self.key().encrypt(
                password.as_bytes(),
                &registry_context(actor.user_id, &registry),
            );
            repo::registries::upsert(
                self.db(),
                actor.user_id,
                &registry,
                username,
                &sealed,
                now(),
            )
            .await?;
            Ok(registry)
        })
        .await
    }

    pub async fn delete_registry_credential(&self, actor: &Actor, registry: &str) -> Result<()> {
        let what = crate::audit::Change::new(crate::audit::Action::RegistryLogout, registry.trim())
            .owner(actor.user_id)
            .summary("login removed");
        self.audited(actor, what, async {
            let registry = validate::registry_host(registry).map_err(|_| Error::NotFound)?;
            if repo::registries::delete(self.db(), actor.user_id, &registry).await? {
                Ok(())
            } else {
                Err(Error::NotFound)
            }
        })
        .await
    }

    /// The login the engine uses to pull `registry` for a tenant.
    pub async fn registry_auth(
        &self,
        user_id: i64,
        registry: &str,
    ) -> Result<Option<RegistryAuth>> {
        let Some(cred) = repo::registries::for_registry(self.db(), user_id, registry).await? else {
            return Ok(None);
        };
        let password = String::from_utf8(
            self.key()
                .decrypt(&cred.sealed_password, &registry_context(user_id, registry))?,
        )
        .map_err(|_| Error::internal("a registry password is not UTF-8"))?;
        Ok(Some(RegistryAuth {
            server: cred.registry,
            username: cred.username,
            password,
        }))
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

/// A checked spec, ready to store.
#[derive(Debug, Clone)]
struct CheckedSpec {
    image: String,
    port: u16,
    env: Vec<StoredEnv>,
    memory_mb: i64,
    cpus_milli: i64,
    health_path: Option<String>,
    read_only: bool,
    kind: AppKind,
    capabilities: CapProfile,
    /// None: the app's volumes stay as they are.
    volumes: Option<Vec<CheckedVolume>>,
}

impl CheckedSpec {
    fn as_repo(&self) -> repo::apps::Spec<'_> {
        repo::apps::Spec {
            image: &self.image,
            port: self.port,
            env: &self.env,
            memory_mb: self.memory_mb,
            cpus_milli: self.cpus_milli,
            health_path: self.health_path.as_deref(),
            read_only: self.read_only,
            kind: self.kind,
            capabilities: self.capabilities,
        }
    }
}

/// A volume row of a form, checked on its own (whether the name exists is the database's).
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

#[derive(Debug, Clone, PartialEq, Eq)]
struct CheckedVolume {
    name: String,
    path: String,
    size_mb: Option<i64>,
}

/// Checks an app's volume rows: names, paths and sizes, no name or path twice.
fn check_volumes(list: &[VolumeInput]) -> std::result::Result<Vec<CheckedVolume>, String> {
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
}
