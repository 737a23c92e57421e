//! The reconciler: makes the Docker engine match what the database wants.
//!
//! Each pass reads the desired state (apps, their serving and in-progress deployments), lists
//! the containers and networks labelled with this installation's id, asks [`plan::plan`] for
//! the difference and applies it. Passes run when something changes (the service wakes the
//! engine), after every finished rollout, and every `resync_secs` regardless. Every step is
//! idempotent, so a panel killed at any point converges when it starts again: an interrupted
//! rollout is driven again from the top (a pull of a present image is cheap; a container that
//! already exists for the deployment is adopted, its name is unique).

pub mod docker;
pub mod events;
mod firewall;
pub mod images;
mod nodes;
pub mod plan;
mod rollout;
pub mod routing;
mod sampler;
mod storage;
pub mod swarm;
mod tags;
#[cfg(test)]
mod testkit;
#[cfg(test)]
mod tests;

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::{Duration, Instant},
};

use pier_core::{model::Desired, now, repo, runtime::RuntimeError, Pier};

use self::{
    plan::{Step, Want},
    routing::Routing,
};
use crate::proxy::Proxy;

/// Per-app retry delays after failed steps: 2 s doubling to 5 min.
#[derive(Default)]
struct Backoff(HashMap<i64, (u32, Instant)>);

impl Backoff {
    fn ready(&self, app: i64) -> bool {
        self.0.get(&app).is_none_or(|(_, at)| Instant::now() >= *at)
    }
    fn failed(&mut self, app: i64) -> Duration {
        let e = self.0.entry(app).or_insert((0, Instant::now()));
        e.0 = (e.0 + 1).min(10);
        let delay = Duration::from_secs((1u64 << e.0).min(300));
        e.1 = Instant::now() + delay;
        delay
    }
    fn succeeded(&mut self, app: i64) {
        self.0.remove(&app);
    }
}

/// Starts the reconciler and the metrics sampler (and, with a proxy, its supervisor); they run
/// until the runtime shuts down.
pub fn spawn(pier: Pier, proxy: Option<Arc<Proxy>>) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = vec![
        tokio::spawn(reconcile_forever(pier.clone(), Routing::new(proxy.clone()))),
        tokio::spawn(sampler::sample_forever(pier.clone())),
        tokio::spawn(images::collect_forever(pier.clone())),
        tokio::spawn(tags::follow_forever(pier.clone())),
        tokio::spawn(crate::notify::deliver_forever(pier.clone())),
        tokio::spawn(nodes::watch_forever(pier.clone())),
        tokio::spawn(events::follow_forever(pier.clone())),
    ];
    let pier_for_proxy = pier.clone();
    tasks.extend(crate::backup::spawn(pier));
    if let Some(p) = proxy {
        tasks.push(tokio::spawn(p.supervise(Some(pier_for_proxy))));
    }
    tasks
}

async fn reconcile_forever(pier: Pier, routing: Routing) {
    let mut backoff = Backoff::default();
    let resync = Duration::from_secs(pier.settings().engine.resync_secs.max(1));
    let mut failures = 0u32;
    let mut down_since: Option<i64> = None;
    // Rollouts in flight; dropped (so aborted) with this task, as in a crash. Each ends with
    // its app and whether it went well, which feeds the app's backoff.
    let mut tasks: Tasks = tokio::task::JoinSet::new();
    loop {
        let started = std::time::Instant::now();
        let wait = match pass(&pier, &routing, &mut backoff, &mut tasks).await {
            Ok(()) => {
                pier.metrics()
                    .reconcile_pass(started.elapsed().as_secs_f64());
                // bench/apps.py reads this (PIER_LOG=pier::engine=debug) for the cost of a pass.
                tracing::debug!(
                    elapsed_us = started.elapsed().as_micros() as u64,
                    "reconcile pass"
                );
                failures = 0;
                down_since = None;
                resync
            }
            Err(e) => {
                failures = (failures + 1).min(8);
                let d = Duration::from_secs((1u64 << failures).min(60));
                tracing::warn!(error = %e, retry_in_secs = d.as_secs(), "reconcile pass failed");
                let since = *down_since.get_or_insert_with(now);
                // Three failed passes in a row (about 15 s): the admins hear of it, once.
                if failures == 3 {
                    let event = pier_core::notify::Event::EngineDown {
                        since,
                        error: format!("{e:#}"),
                    };
                    pier.notify_admins(event).await;
                }
                d
            }
        };
        tokio::select! {
            _ = pier.engine_woken() => {}
            _ = tokio::time::sleep(wait) => {}
            Some(done) = tasks.join_next(), if !tasks.is_empty() => settle(&mut backoff, done),
        }
        while let Some(done) = tasks.try_join_next() {
            settle(&mut backoff, done);
        }
    }
}

type Tasks = tokio::task::JoinSet<(i64, bool)>;

/// A finished rollout: success clears its app's backoff, failure lengthens it.
fn settle(backoff: &mut Backoff, done: Result<(i64, bool), tokio::task::JoinError>) {
    match done {
        Ok((app, true)) => backoff.succeeded(app),
        Ok((app, false)) => {
            backoff.failed(app);
        }
        Err(e) => tracing::error!(error = %e, "a rollout task panicked"),
    }
}

/// One comparison of desired and actual state, and the steps that follow from it.
async fn pass(
    pier: &Pier,
    routing: &Routing,
    backoff: &mut Backoff,
    tasks: &mut Tasks,
) -> anyhow::Result<()> {
    let busy = &routing.busy;
    let instance = pier.instance_id().await?;
    // What is busy first, then the database in one snapshot: a rollout that promotes meanwhile
    // is either still busy here (its container is left alone) or already current in the reads.
    let busy_now = busy.lock().expect("busy lock").clone();
    let rt = pier.runtime();
    // Egress rules first: a container that starts in this pass is already covered. Volumes as
    // the engine and the disk have them, before the database (see plan::volumes). The engine
    // answers both at once (as below): a pass waits for the slower, not for the sum.
    let (egress, listed_volumes) = tokio::join!(
        rt.enforce_egress(&pier.settings().engine.egress),
        rt.volumes(&instance)
    );
    pier.record_egress(egress);
    let listed_volumes = listed_volumes?;
    let stored_volumes = rt.stored_volumes();
    let (apps, in_progress, volume_rows, restoring, serving_replicas) = {
        let mut tx = pier.db().begin().await?;
        let apps = repo::apps::list_all(&mut *tx).await?;
        let in_progress = repo::deployments::in_progress(&mut *tx).await?;
        let volume_rows = repo::volumes::list_all(&mut *tx).await?;
        let restoring = repo::backups::restoring_apps(&mut *tx).await?;
        let serving_replicas = repo::deployments::serving_replicas(&mut *tx).await?;
        tx.rollback().await?;
        (apps, in_progress, volume_rows, restoring, serving_replicas)
    };
    let mut targets: HashMap<i64, i64> = HashMap::new();
    for d in in_progress {
        let t = targets.entry(d.app_id).or_insert(d.id);
        *t = (*t).max(d.id);
    }
    let (containers, networks) =
        tokio::join!(pier.list_containers(&instance), rt.networks(&instance));
    let containers = containers?;
    let networks = networks?;
    // Apps a backup or restore has now, and those with a restore waiting: left alone. One held
    // after this read cannot meet a rollout this pass starts: holds and rollouts are taken
    // under one lock (Pier::hold_app, Pier::begin_rollout).
    let mut held = pier.held_apps();
    held.extend(restoring);
    let wants: Vec<Want> = apps
        .iter()
        .map(|a| Want {
            app_id: a.id,
            tenant: a.user_id,
            running: a.desired == Desired::Running,
            current: a.current_deployment_id,
            replicas: a
                .current_deployment_id
                .and_then(|d| serving_replicas.get(&d).copied())
                .unwrap_or(1),
            target: targets.get(&a.id).copied(),
            held: held.contains(&a.id),
        })
        .collect();
    let mut steps = plan::plan(&wants, &containers, &networks, &busy_now);
    let wanted_volumes: HashSet<String> = volume_rows
        .iter()
        .map(|v| pier_core::runtime::volume_name(&instance, v.id))
        .collect();
    steps.extend(plan::volumes(
        &instance,
        &wanted_volumes,
        &listed_volumes,
        &stored_volumes,
    ));
    // Rollouts first: they run in their own tasks, so a slow removal never delays a deploy.
    steps.sort_by_key(|s| !matches!(s, Step::Rollout { .. } | Step::Recreate { .. }));
    let ids: HashSet<i64> = apps.iter().map(|a| a.id).collect();
    pier.telemetry().retain_apps(&|id| ids.contains(&id));

    // A pass that changes nothing routes from the containers it listed (see sync_listed).
    let idle = busy_now.is_empty() && steps.is_empty();
    for step in steps {
        match step {
            Step::Rollout {
                app_id,
                deployment_id,
            } if backoff.ready(app_id) => {
                spawn_rollout(tasks, pier, routing, app_id, deployment_id, true)
            }
            Step::Recreate {
                app_id,
                deployment_id,
            } if backoff.ready(app_id) => {
                spawn_rollout(tasks, pier, routing, app_id, deployment_id, false)
            }
            Step::Start { app_id, container } if backoff.ready(app_id) => {
                // After a reboot its volumes' devices must be attached again first.
                let r = match start_volumes(pier, &instance, &volume_rows, app_id).await {
                    Ok(()) => rt.start(&container).await,
                    Err(e) => Err(e),
                };
                record(pier, backoff, app_id, "start", r).await;
            }
            Step::Stop { app_id, container } if backoff.ready(app_id) => {
                let r = rt
                    .stop(&container, pier.settings().engine.stop_timeout_secs)
                    .await;
                record(pier, backoff, app_id, "stop", r).await;
            }
            Step::Remove { container, why } => {
                tracing::info!(%container, why, "removing container");
                if let Err(e) = rt.remove(&container).await {
                    tracing::warn!(%container, error = %e, "removing container failed");
                }
            }
            Step::RemoveVolume { name } => {
                tracing::info!(volume = %name, "removing volume and its data");
                if let Err(e) = rt.remove_volume(&name).await {
                    // Still mounted by a container being removed: next pass.
                    tracing::debug!(%name, error = %e, "volume not removed yet");
                }
            }
            Step::RemoveNetwork { name } => {
                if let Err(e) = rt.remove_network(&name).await {
                    // Still in use by a container being removed: next pass.
                    tracing::debug!(%name, error = %e, "network not removed yet");
                }
            }
            _ => {}
        }
    }
    // Domains attached or moved, apps stopped or started, containers replaced: HAProxy follows.
    let synced = if idle {
        routing.sync_listed(pier, &containers).await
    } else {
        routing.sync(pier).await
    };
    if let Err(e) = synced {
        tracing::warn!(
            error = format!("{e:#}"),
            "routes not applied; next pass retries"
        );
    }
    Ok(())
}

/// Makes the volumes of `app_id` ready (made if missing, attached again after a reboot) before
/// its container starts again or a restore writes into them.
pub(crate) async fn start_volumes(
    pier: &Pier,
    instance: &str,
    rows: &[pier_core::model::Volume],
    app_id: i64,
) -> Result<(), RuntimeError> {
    let mine: Vec<_> = rows
        .iter()
        .filter(|v| v.app_id == Some(app_id))
        .cloned()
        .collect();
    let Some(tenant) = mine.first().map(|v| v.user_id) else {
        return Ok(());
    };
    let labels = rollout::tenant_labels(pier, instance, tenant);
    rollout::ensure_volumes(pier, instance, &mine, &labels)
        .await
        .map(|_| ())
}

/// Makes one of a tenant's volumes ready to mount, whether an app has it or not (a volume a
/// backup is restored into).
pub(crate) async fn prepare_volume(
    pier: &Pier,
    instance: &str,
    volume: &pier_core::model::Volume,
) -> Result<(), RuntimeError> {
    let labels = rollout::tenant_labels(pier, instance, volume.user_id);
    rollout::ensure_volumes(pier, instance, std::slice::from_ref(volume), &labels)
        .await
        .map(|_| ())
}

/// Notes the outcome of a step on the app: its error is shown on the app page.
async fn record(
    pier: &Pier,
    backoff: &mut Backoff,
    app_id: i64,
    what: &str,
    r: Result<(), RuntimeError>,
) {
    match r {
        Ok(()) => {
            backoff.succeeded(app_id);
            note_error(pier, app_id, None).await;
        }
        Err(e) => {
            let delay = backoff.failed(app_id);
            tracing::warn!(app_id, what, error = %e, "engine step failed");
            let why = match &e {
                RuntimeError::Unavailable(_) => "the container engine did not answer".to_string(),
                other => other.to_string(),
            };
            let msg = format!(
                "Could not {what} the container: {why}. Retrying in {} s.",
                delay.as_secs()
            );
            note_error(pier, app_id, Some(&msg)).await;
        }
    }
}

/// Shows (or clears) an app's problem on its page. The engine goes on either way; a database
/// that cannot take the note is logged, not hidden.
async fn note_error(pier: &Pier, app_id: i64, msg: Option<&str>) {
    if let Err(e) = repo::apps::set_last_error(pier.db(), app_id, msg).await {
        tracing::error!(app_id, error = %e, "could not record the app's last error");
    }
}

fn spawn_rollout(
    tasks: &mut Tasks,
    pier: &Pier,
    routing: &Routing,
    app_id: i64,
    deployment_id: i64,
    promote: bool,
) {
    // Not while a backup or restore has the app (it started after this pass read the holds).
    let Some(mark) = pier.begin_rollout(app_id) else {
        return;
    };
    let busy = routing.busy.clone();
    if !busy.lock().expect("busy lock").insert(deployment_id) {
        return;
    }
    let pier = pier.clone();
    let routing = routing.clone();
    tasks.spawn(async move {
        let _mark = mark;
        let run = if promote {
            rollout::rollout(&pier, &routing, deployment_id).await
        } else {
            rollout::recreate(&pier, &routing, deployment_id).await
        };
        let ok = match run {
            // A failed deployment waits out its backoff before the app is tried again.
            Ok(outcome) => !matches!(outcome, rollout::Outcome::Failed(_)),
            Err(e) => {
                // Transient (the engine or the database did not answer): retried with backoff.
                // The detail goes to the log; the app page gets words a tenant can use.
                tracing::warn!(app_id, deployment_id, error = %e, "rollout step failed; will retry");
                note_error(
                    &pier,
                    app_id,
                    Some("The container engine did not answer; Pier keeps retrying."),
                )
                .await;
                false
            }
        };
        busy.lock().expect("busy lock").remove(&deployment_id);
        pier.wake_engine();
        pier.rollout_ended();
        (app_id, ok)
    });
}
