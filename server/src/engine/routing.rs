//! Keeping HAProxy's routes equal to what the database and Docker say: every attached domain
//! and platform host name of a running app goes to its serving container's loopback port.
//!
//! Route syncs are serialised and each reads the state afresh inside the lock, so the last one
//! applied is always computed from the newest state (a pass that read the database before a
//! promotion cannot undo the switch that followed it).

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use pier_core::{domains::platform_names_of, model::Desired, repo, runtime::Container, Pier};

use super::plan::{self, Served};
use crate::proxy::Proxy;

/// Deployments whose containers the planner must leave alone (rolling out, or draining).
pub type Busy = Arc<Mutex<HashSet<i64>>>;

#[derive(Clone)]
pub struct Routing {
    pub proxy: Option<Arc<Proxy>>,
    lock: Arc<tokio::sync::Mutex<()>>,
    pub busy: Busy,
    /// The host names the last sync left out and why, to log only changes (every 15 s is noise).
    left_out: Arc<Mutex<Vec<String>>>,
}

/// Keeps a deployment in `busy` until dropped.
pub struct Hold {
    busy: Busy,
    id: Option<i64>,
}

impl Drop for Hold {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            self.busy.lock().expect("busy lock").remove(&id);
        }
    }
}

impl Routing {
    pub fn new(proxy: Option<Arc<Proxy>>) -> Routing {
        Routing {
            proxy,
            lock: Arc::default(),
            busy: Arc::default(),
            left_out: Arc::default(),
        }
    }

    /// Protects the container of deployment `id` from removal until the hold is dropped.
    pub fn hold(&self, id: Option<i64>) -> Hold {
        let id = id.filter(|id| self.busy.lock().expect("busy lock").insert(*id));
        Hold {
            busy: self.busy.clone(),
            id,
        }
    }

    /// How long an old container keeps running after its routes moved away, so requests it is
    /// still answering finish.
    pub fn drain(&self, pier: &Pier) -> Duration {
        match self.proxy {
            Some(_) => Duration::from_millis(pier.settings().engine.drain_ms),
            None => Duration::ZERO,
        }
    }

    /// Reads apps, domains and containers now and makes HAProxy route accordingly.
    pub async fn sync(&self, pier: &Pier) -> anyhow::Result<()> {
        self.apply(pier, None).await
    }

    /// As [`Routing::sync`], with the container list a reconcile pass that changed nothing has
    /// just read (listing a thousand containers again costs the engine tens of milliseconds).
    /// Only while no deployment is rolling out or draining: a rollout may promote between that
    /// list and this sync, and its new container must not be routed from a list without it.
    /// Otherwise the containers are listed afresh.
    pub async fn sync_listed(&self, pier: &Pier, listed: &[Container]) -> anyhow::Result<()> {
        self.apply(pier, Some(listed)).await
    }

    async fn apply(&self, pier: &Pier, listed: Option<&[Container]>) -> anyhow::Result<()> {
        let Some(proxy) = &self.proxy else {
            return Ok(());
        };
        let _one_at_a_time = self.lock.lock().await;
        let listed = listed.filter(|_| self.busy.lock().expect("busy lock").is_empty());
        let instance = pier.instance_id().await?;
        let (apps, attached, handles, domains) = {
            let mut tx = pier.db().begin().await?;
            let apps = repo::apps::list_all(&mut *tx).await?;
            let attached = repo::domains::attached(&mut *tx).await?;
            let handles = repo::users::handles(&mut *tx).await?;
            let domains = repo::domains::all_names(&mut *tx).await?;
            tx.rollback().await?;
            (apps, attached, handles, domains)
        };
        let fresh;
        let containers = match listed {
            Some(c) => c,
            None => {
                fresh = pier.runtime().containers(&instance).await?;
                &fresh[..]
            }
        };
        let handles: HashMap<i64, String> = handles.into_iter().collect();
        let base = pier.settings().routing.base_domain.clone();
        let (served, left_out) = served(&apps, attached, &handles, &domains, base.as_deref());
        {
            let mut last = self.left_out.lock().expect("left_out lock");
            if *last != left_out {
                for why in &left_out {
                    tracing::warn!("not routed: {why}");
                }
                *last = left_out;
            }
        }
        proxy.set_routes(plan::routes(&served, containers)).await
    }
}

/// What each app serves: its attached domains and its routable platform host names (every app
/// of every tenant claims its names, whatever its kind or state, so a name never changes owner
/// when another app starts or stops; only web apps are routed). Ambiguous and over-long
/// platform names are left out, and a domain equal to a platform name (registered before the
/// base domain was set: names under it are refused since) yields to it. Also returns, for the
/// operator's log, what was left out and why.
fn served(
    apps: &[pier_core::model::App],
    attached: Vec<(String, i64)>,
    handles: &HashMap<i64, String>,
    domains: &[String],
    base: Option<&str>,
) -> (Vec<Served>, Vec<String>) {
    let mut left_out = Vec::new();
    let mut hosts: HashMap<i64, Vec<String>> = HashMap::new();
    for (name, app) in attached {
        hosts.entry(app).or_default().push(name);
    }
    let mut platform = match base {
        Some(base) => {
            let domains: HashSet<String> = domains.iter().cloned().collect();
            let names = platform_names_of(base, apps, handles, &domains);
            for (host, app, why) in &names.skipped {
                left_out.push(format!("{host} (app {app}): {why}"));
            }
            names.hosts
        }
        None => HashMap::new(),
    };
    let taken: HashSet<String> = platform.values().flatten().cloned().collect();
    let served = apps
        .iter()
        // Internal apps are never routed: they answer only their tenant's other apps.
        .filter(|a| a.kind == pier_core::model::AppKind::Web)
        .map(|a| {
            let mut h = hosts.remove(&a.id).unwrap_or_default();
            h.retain(|d| {
                let clash = taken.contains(d);
                if clash {
                    left_out.push(format!(
                        "{d} (app {}): a domain equal to a platform host name",
                        a.id
                    ));
                }
                !clash
            });
            h.extend(platform.remove(&a.id).unwrap_or_default());
            Served {
                app_id: a.id,
                running: a.desired == Desired::Running,
                current: a.current_deployment_id,
                replicas: a.replicas,
                hosts: h,
            }
        })
        .collect();
    (served, left_out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pier_core::{
        model::{App, AppKind, CapProfile},
        runtime::{Container, LABEL_APP, LABEL_DEPLOYMENT, LABEL_TENANT},
    };
    use std::collections::BTreeMap;

    fn app(id: i64, user_id: i64, name: &str) -> App {
        App {
            id,
            user_id,
            name: name.into(),
            image: "x".into(),
            port: 80,
            env: Vec::new(),
            memory_mb: 64,
            cpus_milli: 100,
            replicas: 1,
            health_path: None,
            read_only: false,
            kind: AppKind::Web,
            capabilities: CapProfile::Default,
            desired: Desired::Running,
            current_deployment_id: Some(id * 10),
            last_error: None,
            created_at: 0,
            updated_at: 0,
        }
    }

    fn running(app: i64, port: u16) -> Container {
        Container {
            id: format!("c{app}"),
            name: format!("c{app}"),
            labels: HashMap::from([
                (LABEL_TENANT.to_string(), "1".to_string()),
                (LABEL_APP.to_string(), app.to_string()),
                (LABEL_DEPLOYMENT.to_string(), (app * 10).to_string()),
            ]),
            state: pier_core::runtime::ContainerState::Running,
            host_port: Some(port),
            host: None,
            ip: None,
            created: 0,
        }
    }

    #[test]
    fn the_shared_old_name_routes_to_neither_tenant() {
        // ann-lee's blog (newest last or first, the same result) and lee's blog-ann.
        let handles = HashMap::from([(1, "ann-lee".to_string()), (2, "lee".to_string())]);
        let containers = [running(1, 40001), running(2, 40002)];
        for apps in [
            vec![app(1, 1, "blog"), app(2, 2, "blog-ann")],
            vec![app(2, 2, "blog-ann"), app(1, 1, "blog")],
        ] {
            let (s, left_out) = served(&apps, Vec::new(), &handles, &[], Some("apps.test"));
            assert_eq!(left_out.len(), 2, "{left_out:?}");
            assert!(left_out
                .iter()
                .all(|w| w.starts_with("blog-ann-lee.apps.test")));
            let r = plan::routes(&s, &containers);
            assert_eq!(
                r.hosts,
                BTreeMap::from([
                    ("blog--ann-lee.apps.test".to_string(), 1),
                    ("blog-ann--lee.apps.test".to_string(), 2),
                ])
            );
        }
    }

    #[test]
    fn a_domain_equal_to_a_platform_name_yields_and_blocks_the_old_name() {
        let handles = HashMap::from([(1, "ann".to_string()), (2, "bob".to_string())]);
        let containers = [running(1, 40001), running(2, 40002)];
        let apps = [app(1, 1, "blog"), app(2, 2, "site")];
        // Registered before the base domain was set: bob's domains equal ann's names.
        let attached = vec![
            ("blog--ann.apps.test".to_string(), 2),
            ("blog-ann.apps.test".to_string(), 2),
        ];
        let domains = [
            "blog--ann.apps.test".to_string(),
            "blog-ann.apps.test".to_string(),
        ];
        let (s, left_out) = served(&apps, attached, &handles, &domains, Some("apps.test"));
        assert_eq!(left_out.len(), 2, "{left_out:?}");
        let r = plan::routes(&s, &containers);
        assert_eq!(r.hosts.get("blog--ann.apps.test"), Some(&1));
        assert_eq!(
            r.hosts.get("blog-ann.apps.test"),
            Some(&2),
            "the domain keeps it"
        );
        assert_eq!(r.hosts.get("site--bob.apps.test"), Some(&2));
        assert_eq!(r.hosts.get("site-bob.apps.test"), Some(&2));
        // Without a base domain: domains only.
        let (s, _) = served(&apps, Vec::new(), &handles, &domains, None);
        assert!(plan::routes(&s, &containers).hosts.is_empty());
    }
}
