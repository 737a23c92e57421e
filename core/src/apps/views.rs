//! What a tenant sees of their apps: lists, one app with its containers, deployments, logs and
//! metrics.

use std::collections::{HashMap, HashSet};

use futures_util::stream::BoxStream;

use crate::{
    model::{Actor, App, DeployStatus, Deployment, Desired, Volume},
    repo,
    runtime::{Container, ContainerState, LogLine, RuntimeError},
    telemetry::Point,
    Error, Pier, Result,
};

use super::{engine_error, AppState, AppView, CONTAINERS_STALE, MAX_LOG_TAIL};

impl Pier {
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
        let by_deployment: Option<HashMap<i64, Vec<&Container>>> =
            containers.as_deref().map(|cs| {
                let mut m: HashMap<i64, Vec<&Container>> = HashMap::new();
                for c in cs {
                    if let Some(d) = c.deployment_id().filter(|d| serving.contains(d)) {
                        m.entry(d).or_default().push(c);
                    }
                }
                m
            });
        let views = rows
            .into_iter()
            .map(|(app, current, latest)| {
                let mut vols = volumes.remove(&app.id).unwrap_or_default();
                vols.sort_by(|a, b| a.path.cmp(&b.path));
                let container = by_deployment.as_ref().map(|m| {
                    app.current_deployment_id
                        .and_then(|d| m.get(&d))
                        .map(|cs| {
                            cs.iter()
                                .filter(|c| c.app_id() == Some(app.id))
                                .map(|c| (*c).clone())
                                .collect()
                        })
                        .unwrap_or_default()
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
                .filter(|c| {
                    c.app_id() == Some(app.id)
                        && c.deployment_id().is_some()
                        && c.deployment_id() == app.current_deployment_id
                })
                .cloned()
                .collect()
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
        // Nothing changed since the last list, as the engine's events tell.
        if let Some(current) = self.unchanged_containers() {
            return Some(current);
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
                    pier.refresh_containers().await;
                });
            }
            return Some(recent);
        }
        self.refresh_containers().await
    }

    /// Asks the engine for the instance's containers and records the answer; None (logged)
    /// when it does not answer.
    async fn refresh_containers(&self) -> Option<std::sync::Arc<Vec<Container>>> {
        let instance = self.instance_id().await.ok()?;
        match self.list_containers(&instance).await {
            Ok(c) => Some(c),
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
        // The serving deployment's containers (one per replica); None when the engine's list
        // is not known.
        containers: Option<Vec<Container>>,
        volumes: Vec<Volume>,
    ) -> AppView {
        let replicas_running = containers
            .as_ref()
            .map(|cs| cs.iter().filter(|c| c.running()).count());
        let mut copies: Vec<super::ReplicaView> = containers
            .iter()
            .flatten()
            .map(|c| super::ReplicaView {
                replica: c.replica(),
                state: c.state,
                address: c.endpoint().filter(|_| c.running()),
            })
            .collect();
        copies.sort_by_key(|c| c.replica);
        // The one that speaks for the app: a running copy if there is one.
        let container = containers.map(|mut cs| {
            cs.sort_by_key(|c| (!c.running(), c.replica()));
            cs.into_iter().next()
        });
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
            replicas_running,
            copies,
            state,
            current,
            rollout,
            last_failed,
            volumes,
            app,
        }
    }

    /// The containers of the deployment that serves, one per replica: running ones first,
    /// then by replica.
    pub(crate) async fn current_containers(&self, app: &App) -> Result<Vec<Container>> {
        let instance = self.instance_id().await?;
        let all = self
            .runtime()
            .containers(&instance)
            .await
            .map_err(engine_error)?;
        let mut mine: Vec<Container> = all
            .into_iter()
            .filter(|c| {
                c.app_id() == Some(app.id)
                    && c.deployment_id().is_some()
                    && c.deployment_id() == app.current_deployment_id
            })
            .collect();
        mine.sort_by_key(|c| (!c.running(), c.replica()));
        Ok(mine)
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
        // With replicas: the first running copy's (each copy logs the same way).
        let container = self
            .current_containers(&app)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| {
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
}
