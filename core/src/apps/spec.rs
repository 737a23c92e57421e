//! An app's spec checked before it is stored: the grammar of every field, the profile and the
//! tenant's quotas.

use std::collections::{HashMap, HashSet};

use crate::{
    model::{Actor, App, AppKind, CapProfile, StoredEnv},
    repo,
    validate::{self, Checks},
    Error, Pier, Result,
};

use super::volumes::{check_volumes, CheckedVolume};

use super::{env_context, over, AppSpec, EnvInput, DEFAULT_CPUS_MILLI, DEFAULT_MEMORY_MB};

impl Pier {
    /// Checks settings into a spec: `name` for a new app, `old` the app being changed (what
    /// the spec leaves out is kept from it; so are secret values left empty).
    pub(super) fn check_app_spec(
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
        let replicas = field(&mut c, "replicas").and_then(|()| match (spec.replicas, old) {
            (None, Some(a)) => Some(a.replicas),
            (None, None) => Some(1),
            (Some(r), _) => c.check("replicas", validate::replicas(r)),
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
        const KNOWN: [&str; 8] = [
            "port",
            "memory_mb",
            "cpus",
            "replicas",
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
        if let Some(r) = replicas.filter(|r| *r > 1) {
            if kind == AppKind::Internal {
                c.check::<()>(
                    "replicas",
                    Err("An internal app runs as one copy: replicas are for web apps.".into()),
                );
            } else if volumes
                .as_ref()
                .is_some_and(|v| v.as_ref().is_some_and(|v| !v.is_empty()))
            {
                c.check::<()>("replicas", Err(one_copy_with_volumes(r)));
            }
        }
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
                replicas: replicas.expect("checked"),
                health_path,
                read_only,
                kind,
                capabilities,
                volumes: volumes.expect("checked"),
            },
        ))
    }

    /// Explains which quota a spec would break (after the SQL guard refused it).
    pub(super) async fn quota_error(
        &self,
        actor: &Actor,
        spec: &CheckedSpec,
        app: Option<i64>,
    ) -> Error {
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
        } else if mem + spec.memory_mb * spec.replicas > q.max_memory_mb {
            over(
                "memory",
                times(format!("{} MiB", spec.memory_mb), spec.replicas),
                format!("{} MiB", (q.max_memory_mb - mem).max(0)),
                format!("{} MiB", q.max_memory_mb),
            )
        } else if cpus + spec.cpus_milli * spec.replicas > q.max_cpus_milli {
            over(
                "CPU",
                times(cpu(spec.cpus_milli), spec.replicas),
                cpu((q.max_cpus_milli - cpus).max(0)),
                cpu(q.max_cpus_milli),
            )
        } else {
            Error::Conflict("Your quota changed meanwhile; try again.".into())
        }
    }
}

/// A per-copy amount, times the replicas when there are several ("3 × 256 MiB").
fn times(each: String, replicas: i64) -> String {
    if replicas > 1 {
        format!("{replicas} × {each}")
    } else {
        each
    }
}

/// Why an app with volumes runs one copy.
pub(super) fn one_copy_with_volumes(replicas: i64) -> String {
    format!(
        "An app with volumes runs as one copy ({replicas} would share one data directory and corrupt it): remove its volumes or set replicas to 1."
    )
}

/// A checked spec, ready to store.
#[derive(Debug, Clone)]
pub(super) struct CheckedSpec {
    pub(super) image: String,
    pub(super) port: u16,
    pub(super) env: Vec<StoredEnv>,
    pub(super) memory_mb: i64,
    pub(super) cpus_milli: i64,
    pub(super) replicas: i64,
    pub(super) health_path: Option<String>,
    pub(super) read_only: bool,
    pub(super) kind: AppKind,
    pub(super) capabilities: CapProfile,
    /// None: the app's volumes stay as they are.
    pub(super) volumes: Option<Vec<CheckedVolume>>,
}

impl CheckedSpec {
    pub(super) fn as_repo(&self) -> repo::apps::Spec<'_> {
        repo::apps::Spec {
            image: &self.image,
            port: self.port,
            env: &self.env,
            memory_mb: self.memory_mb,
            cpus_milli: self.cpus_milli,
            replicas: self.replicas,
            health_path: self.health_path.as_deref(),
            read_only: self.read_only,
            kind: self.kind,
            capabilities: self.capabilities,
        }
    }
}
