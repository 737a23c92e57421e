//! Driving one deployment to a running container, in steps: pull, create and start, wait until
//! it answers, promote (it serves). Each step tolerates having been done before, and each ends
//! the run early with a [`Halt`] when it cannot go on; what was made so far is then undone.

mod health;
#[cfg(test)]
mod tests;

use std::{collections::HashMap, time::Duration};

use futures_util::StreamExt;
use pier_core::{
    apps::{bridge_name, container_name, network_name, open_env},
    model::{App, AppKind, CapProfile, DeployStatus, Deployment},
    notify::Event,
    now, repo,
    runtime::{
        volume_name, Container, ContainerSpec, ContainerState, RegistryAuth, RuntimeError,
        VolumeSpec, LABEL_APP, LABEL_DEPLOYMENT, LABEL_INSTANCE, LABEL_REPLICA, LABEL_TENANT,
    },
    tags::TAG_CAUSE,
    validate, Pier,
};
use tokio::time::Instant;

use super::routing::{Hold, Routing};
use health::Health;

/// How a rollout or a recreate ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A rollout's deployment serves; a recreate's container runs again.
    Live,
    /// The deployment failed, for this reason (what its owner reads).
    Failed(String),
    /// A newer deployment was asked for meanwhile, or this one had already ended: nothing
    /// was left to do.
    Cancelled,
}

/// Runs deployment `id` as a rollout: it becomes the app's serving deployment once healthy.
///
/// Err when the engine or the database did not answer (the caller retries with backoff);
/// anything the deployment itself got wrong ends it as [`Outcome::Failed`].
pub async fn rollout(pier: &Pier, routing: &Routing, id: i64) -> anyhow::Result<Outcome> {
    drive(pier, routing, id, true).await
}

/// Recreates the containers the serving deployment `id` lacks (removed, or its settings need a
/// new one; with replicas, the missing copies); a failure is shown on the app, the deployment
/// keeps its state.
pub async fn recreate(pier: &Pier, routing: &Routing, id: i64) -> anyhow::Result<Outcome> {
    drive(pier, routing, id, false).await
}

/// Why a run stopped before the end.
enum Halt {
    Failed(String),
    Cancelled,
    /// The engine or the database did not answer.
    Transient(anyhow::Error),
}

impl From<anyhow::Error> for Halt {
    fn from(e: anyhow::Error) -> Self {
        Halt::Transient(e)
    }
}

impl From<pier_core::Error> for Halt {
    fn from(e: pier_core::Error) -> Self {
        Halt::Transient(e.into())
    }
}

impl From<sqlx::Error> for Halt {
    fn from(e: sqlx::Error) -> Self {
        Halt::Transient(e.into())
    }
}

impl Halt {
    /// A refusal by the engine ends the run with `what` and the engine's words; an engine that
    /// did not answer is retried.
    fn engine(e: RuntimeError, what: &str) -> Halt {
        if e.is_transient() {
            Halt::Transient(e.into())
        } else {
            Halt::Failed(format!("{what}: {e}"))
        }
    }
}

/// One run: what it read once at the start, and what it has made or changed so far.
struct Run<'a> {
    pier: &'a Pier,
    routing: &'a Routing,
    dep: Deployment,
    app: App,
    instance: String,
    /// A rollout (promotes) rather than a recreate.
    promote: bool,
    started: Instant,
    /// The copies this run makes: all of them for a rollout, the missing ones for a recreate.
    replicas: Vec<i64>,
    /// The containers this run created or adopted, as (replica, id).
    containers: Vec<(i64, String)>,
    /// The serving container stopped for a stop-first replacement, and when.
    stopped: Option<(Container, Instant)>,
    /// Keeps the serving deployment's container from the planner while it is stopped.
    _stop_first: Option<Hold>,
    /// When each step began or ended, for the log.
    marks: Marks,
}

/// Milliseconds from the start of a run to each step, for the line that says a deployment is
/// live (bench/apps.py reads them to say where a deploy's time goes).
#[derive(Default)]
struct Marks {
    /// The pull asked of the engine (checks, the login and the image's record are before it).
    pull: u128,
    /// The engine had the image (a present image still asks its registry for the manifest).
    pulled: u128,
    /// The network and volumes made sure of: the containers' creation begins.
    create: u128,
    /// Every container created and started.
    started: u128,
    /// Every container answers.
    answered: u128,
    /// Their CPU limits in the steady form: the switch to them begins.
    settled: u128,
}

async fn drive(pier: &Pier, routing: &Routing, id: i64, promote: bool) -> anyhow::Result<Outcome> {
    let Some(dep) = repo::deployments::by_id(pier.db(), id).await? else {
        return Ok(Outcome::Cancelled);
    };
    let Some(app) = repo::apps::by_id(pier.db(), dep.app_id).await? else {
        return Ok(Outcome::Cancelled);
    };
    if promote && !dep.status.in_progress() {
        return Ok(Outcome::Cancelled);
    }
    let instance = pier.instance_id().await?;
    let all: Vec<i64> = (0..dep.replicas.max(1)).collect();
    let replicas = if promote {
        all
    } else {
        // Only the copies that have no container left (a dead one is removed by the planner).
        let listed = pier.runtime().containers(&instance).await?;
        let present: std::collections::HashSet<i64> = listed
            .iter()
            .filter(|c| c.deployment_id() == Some(dep.id) && c.state != ContainerState::Dead)
            .map(Container::replica)
            .collect();
        let missing: Vec<i64> = all.into_iter().filter(|r| !present.contains(r)).collect();
        if missing.is_empty() {
            return Ok(Outcome::Live);
        }
        missing
    };
    let mut run = Run {
        instance,
        pier,
        routing,
        dep,
        app,
        promote,
        started: Instant::now(),
        replicas,
        containers: Vec::new(),
        stopped: None,
        _stop_first: None,
        marks: Marks::default(),
    };
    match run.steps().await {
        Ok(()) => Ok(Outcome::Live),
        Err(Halt::Transient(e)) => {
            // The container made so far stays (the retry adopts it); the old one serves again.
            run.restart_stopped().await;
            Err(e)
        }
        Err(Halt::Cancelled) => {
            run.undo().await;
            if promote {
                pier.metrics().deployment("cancelled");
            }
            Ok(Outcome::Cancelled)
        }
        Err(Halt::Failed(reason)) => {
            run.undo().await;
            run.record_failure(&reason).await?;
            Ok(Outcome::Failed(reason))
        }
    }
}

impl Run<'_> {
    async fn steps(&mut self) -> Result<(), Halt> {
        let pulled = self.pull().await?;
        self.marks.pulled = self.started.elapsed().as_millis();
        let spec = self.spec(pulled).await?;
        self.stop_first(&spec).await?;
        self.start(&spec).await?;
        if !self.promote {
            self.settle_cpu(&spec).await?;
            repo::apps::set_last_error(self.pier.db(), self.app.id, None).await?;
            return Ok(());
        }
        self.await_healthy().await?;
        self.marks.answered = self.started.elapsed().as_millis();
        self.settle_cpu(&spec).await?;
        self.marks.settled = self.started.elapsed().as_millis();
        self.go_live().await
    }

    /// Step 3b: the containers' CPU limits in their steady form, once their start is behind
    /// them (see [`pier_core::runtime::Runtime::settle_cpu`]). An engine that did not answer
    /// retries the run (which adopts the containers); a refusal leaves the start form, whose
    /// average share is the same, and says so in the log.
    async fn settle_cpu(&self, spec: &ContainerSpec) -> Result<(), Halt> {
        for (_, id) in &self.containers {
            match self.pier.runtime().settle_cpu(id, spec.nano_cpus).await {
                Ok(()) => {}
                Err(e) if e.is_transient() => return Err(Halt::Transient(e.into())),
                Err(e) => {
                    tracing::warn!(container = %id, error = %e, "CPU limit left in its start form")
                }
            }
        }
        Ok(())
    }

    /// Moves a rollout's deployment on to `status`; Cancelled when it has ended meanwhile.
    async fn advance(&self, status: DeployStatus) -> Result<(), Halt> {
        if self.promote && !repo::deployments::advance(self.pier.db(), self.dep.id, status).await? {
            return Err(Halt::Cancelled);
        }
        Ok(())
    }

    /// Step 1: pulls the image (by digest when the deployment pins one): its local id, and how
    /// other machines pull it (the reference pinned to what was pulled, with the login).
    async fn pull(&mut self) -> Result<(String, String, Option<RegistryAuth>), Halt> {
        let (pier, id) = (self.pier, self.dep.id);
        self.advance(DeployStatus::Pulling).await?;
        let Ok(mut image) = validate::image(&self.dep.image) else {
            return Err(Halt::Failed(format!(
                "{:?} is not a valid image reference.",
                self.dep.image
            )));
        };
        if let Some(d) = &self.dep.digest {
            image = image.pinned(d);
        }
        // Checked again here, not only when the app was saved: redeploys, rollbacks and
        // recreates pull too, and the operator may have narrowed the list since.
        let allowed = &pier.settings().engine.allowed_registries;
        if !allowed.is_empty() && !allowed.contains(&image.registry) {
            return Err(Halt::Failed(format!(
                "This Pier no longer pulls from {}; it only pulls from {}.",
                image.registry,
                allowed.join(", ")
            )));
        }
        if allowed.is_empty() {
            // Without a list, never a registry in the host's own network (apps saved before
            // this rule existed are stopped here).
            validate::public_registry(&image.registry).map_err(Halt::Failed)?;
        }
        let auth = pier
            .registry_auth(self.app.user_id, &image.registry)
            .await
            .map_err(|e| {
                tracing::error!(deployment = id, error = %e, "registry login unreadable");
                Halt::Failed("The saved registry login could not be read; save it again.".into())
            })?;
        let had_auth = auth.is_some();
        let login = auth.clone();
        // Recorded before the pull: a pull cut short still leaves layers to collect later.
        repo::images::record(pier.db(), &image.local(), now()).await?;
        self.marks.pull = self.started.elapsed().as_millis();
        let telemetry = pier.clone();
        let pulled = tokio::time::timeout(
            PULL_LIMIT,
            pier.runtime().pull(
                &image,
                auth,
                Box::new(move |p| telemetry.telemetry().set_pull(id, p)),
            ),
        )
        .await;
        pier.telemetry().clear_pull(id);
        let pulled = match pulled {
            Err(_) => {
                return Err(Halt::Failed(format!(
                    "Pulling {} took longer than {} minutes; giving up.",
                    image.whole(),
                    PULL_LIMIT.as_secs() / 60
                )))
            }
            Ok(Err(e)) if e.is_transient() => return Err(Halt::Transient(e.into())),
            Ok(Err(e)) => return Err(Halt::Failed(pull_failure(&image.whole(), had_auth, &e))),
            Ok(Ok(p)) => p,
        };
        let mut reference = image.whole();
        if let Some(d) = &pulled.digest {
            // The digest reference too: when the tag moves on, the old image is only known by it.
            repo::images::record(pier.db(), &image.pinned(d).local(), now()).await?;
            if self.dep.digest.is_none() {
                repo::deployments::set_digest(pier.db(), id, d).await?;
            }
            reference = image.pinned(d).whole();
        }
        Ok((pulled.image_id, reference, login))
    }

    /// Step 2a: makes the network and volumes, and says what the container is to be.
    async fn spec(
        &mut self,
        (image, reference, registry_auth): (String, String, Option<RegistryAuth>),
    ) -> Result<ContainerSpec, Halt> {
        let (pier, app, dep) = (self.pier, &self.app, &self.dep);
        self.advance(DeployStatus::Starting).await?;
        let mut labels = tenant_labels(pier, &self.instance, app.user_id);
        let network = self
            .ensure_network()
            .await
            .map_err(|e| Halt::engine(e, "The app's network could not be made"))?;
        // Volumes: made (once) and attached (again after a reboot) before the container needs
        // them.
        let volumes = repo::volumes::for_app(pier.db(), app.id).await?;
        let mounts = ensure_volumes(pier, &self.instance, &volumes, &labels)
            .await
            .map_err(|e| match e {
                RuntimeError::Unavailable(_) => Halt::Transient(e.into()),
                e => Halt::Failed(e.to_string()),
            })?;
        labels.insert(LABEL_APP.into(), app.id.to_string());
        labels.insert(LABEL_DEPLOYMENT.into(), dep.id.to_string());
        // Bounded where the storage driver can; elsewhere the admin page says it is not.
        let layer_mb = pier.settings().engine.writable_layer_mb;
        let writable_layer_mb = match pier.runtime().info().await {
            Ok(i) if i.layer_limit && layer_mb > 0 => Some(layer_mb),
            _ => None,
        };
        let env = open_env(pier.key(), app.user_id, &app.name, &dep.env).map_err(|e| {
            tracing::error!(deployment = dep.id, error = %e, "sealed env unreadable");
            Halt::Failed(
                "A secret value could not be decrypted with this Pier's key; set it again.".into(),
            )
        })?;
        Ok(ContainerSpec {
            writable_layer_mb,
            // Each copy's own name and label are set when it is made (`start`).
            name: container_name(&self.instance, app, dep.id, 0),
            image,
            reference,
            registry_auth,
            env,
            port: dep.port,
            memory_bytes: dep.memory_mb * 1024 * 1024,
            nano_cpus: dep.cpus_milli * 1_000_000,
            pids_limit: pier.settings().engine.pids_limit,
            read_only: dep.read_only,
            network,
            alias: app.name.clone(),
            publish: dep.kind == AppKind::Web,
            cap_add: dep
                .capabilities
                .capabilities()
                .iter()
                .map(|c| (*c).to_owned())
                .collect(),
            mounts,
            labels,
        })
    }

    /// The deployment serving until now, if another.
    fn serving(&self) -> Option<i64> {
        self.app.current_deployment_id.filter(|s| *s != self.dep.id)
    }

    /// Step 2b: an app with volumes is replaced stop-first: two copies of a database on one data
    /// directory corrupt it. The serving container stops before the new one starts (and starts
    /// again if the new one fails); nothing serves in between.
    /// `spec` mounts the app's volumes, as `spec()` read them.
    async fn stop_first(&mut self, spec: &ContainerSpec) -> Result<(), Halt> {
        let (pier, rt) = (self.pier, self.pier.runtime());
        if !self.promote || spec.mounts.is_empty() {
            return Ok(());
        }
        let serving = self.serving();
        self._stop_first = Some(self.routing.hold(serving));
        let listed = rt
            .containers(&self.instance)
            .await
            .map_err(anyhow::Error::from)?;
        if let Some(old) = listed
            .into_iter()
            .find(|c| c.deployment_id().is_some() && c.deployment_id() == serving && c.running())
        {
            let at = Instant::now();
            rt.stop(&old.id, pier.settings().engine.stop_timeout_secs)
                .await
                .map_err(anyhow::Error::from)?;
            self.stopped = Some((old, at));
        }
        Ok(())
    }

    /// Step 2c: creates the containers, one per copy (adopting those an earlier attempt made),
    /// and starts them.
    async fn start(&mut self, spec: &ContainerSpec) -> Result<(), Halt> {
        self.marks.create = self.started.elapsed().as_millis();
        for r in self.replicas.clone() {
            let mut one = spec.clone();
            one.name = container_name(&self.instance, &self.app, self.dep.id, r);
            if r > 0 {
                one.labels.insert(LABEL_REPLICA.into(), r.to_string());
            }
            self.start_one(r, &one).await?;
        }
        self.marks.started = self.started.elapsed().as_millis();
        Ok(())
    }

    /// Makes sure of the tenant's network: its name.
    async fn ensure_network(&self) -> Result<String, RuntimeError> {
        let (instance, tenant) = (&self.instance, self.app.user_id);
        let network = network_name(instance, tenant);
        let labels = tenant_labels(self.pier, instance, tenant);
        self.pier
            .runtime()
            .ensure_network(&network, &bridge_name(instance, tenant), &labels)
            .await?;
        Ok(network)
    }

    /// Creates one container. The tenant's network may go between making sure of it and now
    /// (the planner removed it with the tenant's last app just before this one was made; a
    /// Swarm removes an overlay a moment after it is asked to): it is made again once gone and
    /// the create tried again, for up to five seconds.
    async fn create(&self, spec: &ContainerSpec) -> Result<String, RuntimeError> {
        let mut tries = 0;
        loop {
            match self.pier.runtime().create(spec).await {
                Err(RuntimeError::Failed(m)) if network_gone(&m) && tries < NETWORK_RETRIES => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    self.ensure_network().await?;
                }
                other => return other,
            }
        }
    }

    async fn start_one(&mut self, replica: i64, spec: &ContainerSpec) -> Result<(), Halt> {
        let rt = self.pier.runtime();
        let id = match self.create(spec).await {
            Ok(id) => id,
            Err(RuntimeError::Conflict(_)) => {
                // Created before a crash: adopt it.
                let listed = rt
                    .containers(&self.instance)
                    .await
                    .map_err(anyhow::Error::from)?;
                match listed.into_iter().find(|c| c.name == spec.name) {
                    Some(c) => c.id,
                    None => {
                        return Err(Halt::Transient(anyhow::anyhow!(
                            "container {} exists but is not listed",
                            spec.name
                        )))
                    }
                }
            }
            // Still gone after the retries above: the run is tried again later.
            Err(RuntimeError::Failed(m)) if network_gone(&m) => {
                return Err(Halt::Transient(anyhow::anyhow!(
                    "the tenant's network went meanwhile: {m}"
                )))
            }
            Err(e) => return Err(Halt::engine(e, "Docker refused to create the container")),
        };
        self.containers.push((replica, id.clone()));
        rt.start(&id)
            .await
            .map_err(|e| Halt::engine(e, "The container did not start"))?;
        Ok(())
    }

    /// Step 3: waits until every new container answers (side by side); a failure carries the
    /// failing copy's last log lines.
    async fn await_healthy(&mut self) -> Result<(), Halt> {
        let serving = self.serving().is_some();
        let (pier, instance, dep) = (self.pier, &self.instance, &self.dep);
        let waits = self.containers.iter().map(|(r, id)| async move {
            let h = health::wait(pier, instance, id, dep, serving).await;
            (*r, id.clone(), h)
        });
        let results = futures_util::future::join_all(waits).await;
        let several = self.containers.len() > 1;
        let mut cancelled = false;
        for (replica, container, health) in results {
            match health? {
                Health::Healthy => {}
                Health::Cancelled => cancelled = true,
                Health::Failed(mut reason) => {
                    if several {
                        reason = format!("Replica {}: {reason}", replica + 1);
                    }
                    return Err(self.failed_with_log(reason, &container).await);
                }
            }
        }
        if cancelled {
            return Err(Halt::Cancelled);
        }
        Ok(())
    }

    /// A failure of `container`, with its last log lines and a hint when they show a missing
    /// capability.
    async fn failed_with_log(&self, mut reason: String, container: &str) -> Halt {
        let tail = last_lines(self.pier, container).await;
        if let Some(hint) = capability_hint(self.dep.capabilities, &tail) {
            reason = format!("{reason} {hint}");
        }
        if !tail.is_empty() {
            reason = format!("{reason}\nLast log lines:\n{tail}");
        }
        Halt::Failed(reason)
    }

    /// Step 4: makes the deployment the one that serves and moves the routes to it. The deployment
    /// serving until now keeps its container while its last requests finish.
    async fn go_live(&mut self) -> Result<(), Halt> {
        let (pier, app, dep) = (self.pier, &self.app, &self.dep);
        // Read again: the deployment serving now, not the one when this run began.
        let serving = repo::apps::by_id(pier.db(), app.id)
            .await?
            .and_then(|a| a.current_deployment_id);
        let _draining = self.routing.hold(serving);
        let mut tx = pier.db().begin().await?;
        let promoted = repo::deployments::promote(&mut tx, dep.id, now()).await?;
        tx.commit().await?;
        if !promoted {
            // Cancelled while starting (a newer deployment was asked for).
            return Err(Halt::Cancelled);
        }
        // Switch: HAProxy sends new requests to the new container from here on. Tried a few
        // times before the old one is let go: it must not go while routes still lead to it.
        for attempt in 1..=3 {
            match self.routing.sync(pier).await {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(
                        attempt,
                        error = format!("{e:#}"),
                        "routes not switched yet; trying again"
                    );
                    tokio::time::sleep(Duration::from_millis(250 * attempt)).await;
                }
            }
        }
        if let Some((_, at)) = &self.stopped {
            let gap = i64::try_from(at.elapsed().as_millis()).unwrap_or(i64::MAX);
            repo::deployments::set_gap(pier.db(), dep.id, gap).await?;
        } else if serving.is_some() {
            tokio::time::sleep(self.routing.drain(pier)).await;
        }
        let m = &self.marks;
        tracing::info!(
            app = %app.name,
            deployment = dep.number,
            pull_from_ms = m.pull as u64,
            pulled_at_ms = m.pulled as u64,
            create_from_ms = m.create as u64,
            started_at_ms = m.started as u64,
            answered_at_ms = m.answered as u64,
            settled_at_ms = m.settled as u64,
            live_at_ms = self.started.elapsed().as_millis() as u64,
            "deployment is live"
        );
        pier.metrics().deployment("live");
        if let (true, Some(digest)) = (dep.cause.starts_with(TAG_CAUSE), dep.digest.clone()) {
            let event = Event::TagDeployed {
                app: app.name.clone(),
                deployment: dep.number,
                digest,
            };
            pier.notify(app.user_id, event).await;
        }
        Ok(())
    }

    /// Puts the serving container back when it was stopped for this run.
    async fn restart_stopped(&mut self) {
        if let Some((old, _)) = self.stopped.take() {
            if let Err(e) = self.pier.runtime().start(&old.id).await {
                tracing::warn!(container = %old.id, error = %e, "restarting the previous container failed; the next pass retries");
            }
        }
    }

    /// Removes what the run made and puts back what it stopped.
    async fn undo(&mut self) {
        for (_, id) in std::mem::take(&mut self.containers) {
            if let Err(e) = self.pier.runtime().remove(&id).await {
                tracing::warn!(container = %id, error = %e, "removing the new container failed; the planner retries");
            }
        }
        self.restart_stopped().await;
    }

    /// Ends the deployment as failed (a rollout) or notes the problem on the app (a recreate),
    /// and tells the owner.
    async fn record_failure(&self, reason: &str) -> anyhow::Result<()> {
        let (pier, dep) = (self.pier, &self.dep);
        tracing::info!(deployment = dep.id, %reason, "deployment failed");
        if !self.promote {
            repo::apps::set_last_error(pier.db(), dep.app_id, Some(reason)).await?;
            return Ok(());
        }
        if repo::deployments::fail(pier.db(), dep.id, reason, now()).await? {
            pier.metrics().deployment("failed");
            let previous_serves = repo::apps::by_id(pier.db(), dep.app_id)
                .await?
                .is_some_and(|a| a.current_deployment_id.is_some());
            let event = Event::DeploymentFailed {
                app: self.app.name.clone(),
                deployment: dep.number,
                reason: reason.to_owned(),
                previous_serves,
            };
            pier.notify(self.app.user_id, event).await;
        }
        Ok(())
    }
}

/// The labels of everything made for a tenant: the operator's extra ones, this installation's
/// id and the tenant's.
pub fn tenant_labels(pier: &Pier, instance: &str, tenant: i64) -> HashMap<String, String> {
    let mut labels: HashMap<String, String> = pier
        .settings()
        .engine
        .extra_labels
        .iter()
        .cloned()
        .collect();
    labels.insert(LABEL_INSTANCE.into(), instance.to_owned());
    labels.insert(LABEL_TENANT.into(), tenant.to_string());
    labels
}

/// Makes an app's volumes ready to mount (made once, attached again after a reboot): the
/// (engine name, mount path) pairs for its container.
pub async fn ensure_volumes(
    pier: &Pier,
    instance: &str,
    volumes: &[pier_core::model::Volume],
    labels: &HashMap<String, String>,
) -> Result<Vec<(String, String)>, RuntimeError> {
    let mut mounts = Vec::new();
    for v in volumes {
        let name = volume_name(instance, v.id);
        let spec = VolumeSpec {
            id: v.id,
            name: name.clone(),
            size_mb: v.size_mb,
            labels: labels.clone(),
        };
        match pier.runtime().ensure_volume(&spec).await {
            Ok(()) => {}
            Err(e) if e.is_transient() => return Err(e),
            Err(e) => {
                return Err(RuntimeError::Failed(format!(
                    "The volume {} could not be prepared: {e}",
                    v.name
                )))
            }
        }
        mounts.push((name, v.path.clone()));
    }
    Ok(mounts)
}

/// When a container under the strict profile failed with "Operation not permitted", which
/// capability its log says it needed, and what to do.
fn capability_hint(profile: CapProfile, log: &str) -> Option<String> {
    if profile != CapProfile::Strict {
        return None;
    }
    let lower = log.to_ascii_lowercase();
    if !lower.contains("operation not permitted") && !lower.contains("permission denied") {
        return None;
    }
    // Words of the failing call, as images log them, and the capabilities they need.
    let needs: [(&str, &[&str]); 10] = [
        ("chown", &["CHOWN"]),
        ("setgroups", &["SETGID"]),
        ("setgid", &["SETGID"]),
        ("initgroups", &["SETGID"]),
        ("setuid", &["SETUID"]),
        // gosu and su-exec: "failed switching to \"postgres\": operation not permitted".
        ("failed switching to", &["SETUID", "SETGID"]),
        ("chroot", &["SYS_CHROOT"]),
        ("bind", &["NET_BIND_SERVICE"]),
        ("kill", &["KILL"]),
        ("chmod", &["FOWNER"]),
    ];
    let mut found: Vec<&str> = Vec::new();
    for (word, caps) in needs {
        if lower.contains(word) {
            for c in caps {
                if !found.contains(c) {
                    found.push(c);
                }
            }
        }
    }
    let which = match found.len() {
        0 => "a capability".to_string(),
        1 => format!("the {} capability", found[0]),
        _ => format!("the {} capabilities", found.join(" and ")),
    };
    Some(format!(
        "It was refused an operation that needs {which}, which the strict profile drops: choose the default capability profile for this image."
    ))
}

/// How often a create that found the tenant's network gone makes it again and tries again.
const NETWORK_RETRIES: u32 = 20;

/// The engine's refusal of a container whose network does not exist (any more).
fn network_gone(message: &str) -> bool {
    message.contains("network") && message.contains("not found")
}

/// The longest a pull may take.
const PULL_LIMIT: Duration = Duration::from_secs(30 * 60);

fn pull_failure(image: &str, had_auth: bool, e: &RuntimeError) -> String {
    let m = e.to_string();
    let lower = m.to_ascii_lowercase();
    let hint = if lower.contains("unauthorized")
        || lower.contains("authentication required")
        || lower.contains("no basic auth")
        || lower.contains("denied")
    {
        if had_auth {
            " The registry refused the saved login: check the user name and password on the Registries page."
        } else {
            " The registry wants a login: add one on the Registries page."
        }
    } else if lower.contains("not found") || lower.contains("manifest unknown") {
        " Check the image name and tag."
    } else {
        ""
    };
    format!("Pulling {image} failed: {m}.{hint}")
}

async fn last_lines(pier: &Pier, container: &str) -> String {
    let lines = pier.runtime().logs(container, 15, false);
    let collected = tokio::time::timeout(Duration::from_secs(3), lines.collect::<Vec<_>>())
        .await
        .unwrap_or_default();
    collected
        .into_iter()
        .filter_map(Result::ok)
        .map(|l| l.text)
        .collect::<Vec<_>>()
        .join("\n")
}
