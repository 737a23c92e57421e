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

use pier_core::{model::Desired, repo, Pier};

use super::plan::{self, Served};
use crate::proxy::Proxy;

/// Deployments whose containers the planner must leave alone (rolling out, or draining).
pub type Busy = Arc<Mutex<HashSet<i64>>>;

#[derive(Clone)]
pub struct Routing {
    pub proxy: Option<Arc<Proxy>>,
    lock: Arc<tokio::sync::Mutex<()>>,
    pub busy: Busy,
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
        let Some(proxy) = &self.proxy else {
            return Ok(());
        };
        let _one_at_a_time = self.lock.lock().await;
        let instance = pier.instance_id().await?;
        let (apps, attached, handles) = {
            let mut tx = pier.db().begin().await?;
            let apps = repo::apps::list_all(&mut *tx).await?;
            let attached = repo::domains::attached(&mut *tx).await?;
            let handles = repo::users::handles(&mut *tx).await?;
            tx.rollback().await?;
            (apps, attached, handles)
        };
        let containers = pier.runtime().containers(&instance).await?;
        let handles: HashMap<i64, String> = handles.into_iter().collect();
        let mut hosts: HashMap<i64, Vec<String>> = HashMap::new();
        for (name, app) in attached {
            hosts.entry(app).or_default().push(name);
        }
        let served: Vec<Served> = apps
            .iter()
            // Internal apps are never routed: they answer only their tenant's other apps.
            .filter(|a| a.kind == pier_core::model::AppKind::Web)
            .map(|a| {
                let mut h = hosts.remove(&a.id).unwrap_or_default();
                if let Some(handle) = handles.get(&a.user_id) {
                    h.extend(pier.platform_host(&a.name, handle));
                }
                Served {
                    app_id: a.id,
                    running: a.desired == Desired::Running,
                    current: a.current_deployment_id,
                    hosts: h,
                }
            })
            .collect();
        proxy.set_routes(plan::routes(&served, &containers)).await
    }
}
