//! CPU and memory of every serving container, sampled every `stats_every_secs` into the
//! telemetry history; and, on the same round, crash notices for apps Docker restarted.

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use futures_util::StreamExt;
use pier_core::{now, repo, runtime::Usage, telemetry::Point, Pier};

pub(super) async fn sample_forever(pier: Pier) {
    let every = Duration::from_secs(pier.settings().engine.stats_every_secs.max(1));
    let mut sampler = Sampler::default();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        sampler.round(&pier, every).await;
    }
}

/// What one round keeps for the next.
#[derive(Default)]
pub(super) struct Sampler {
    /// Each container's last reading (CPU is the difference between two).
    last: HashMap<String, Usage>,
    /// Each serving container's restart count at the last look.
    restarts: HashMap<String, u64>,
    /// The container generation (see `pier_core::observed`) of the last crash look.
    crashes_looked_at: Option<u64>,
}

impl Sampler {
    pub(super) async fn round(&mut self, pier: &Pier, every: Duration) {
        let Ok(instance) = pier.instance_id().await else {
            return;
        };
        // The reconciler's last look when it is recent (it looks every 15 s): listing a
        // thousand containers costs the engine tens of milliseconds each time.
        let generation = pier.container_generation();
        // Current: no change reported since it was taken (while the engine's events are followed).
        let current = pier.unchanged_containers();
        let containers = match current.clone().or_else(|| pier.observed_containers(every)) {
            Some(c) => c,
            None => match pier.list_containers(&instance).await {
                Ok(c) => c,
                Err(_) => return,
            },
        };
        let Ok(apps) = repo::apps::list_all(pier.db()).await else {
            return;
        };
        let serving: HashMap<i64, i64> = apps
            .iter()
            .filter_map(|a| a.current_deployment_id.map(|d| (d, a.id)))
            .collect();
        // A container Docker restarted died and started again, and both are events: while they
        // are followed and none came since the last look, nothing restarted, and the look (one
        // inspection per serving container, a thousand at scale) is skipped.
        if !self
            .crashes_looked_at
            .is_some_and(|g| pier.containers_unchanged_since(g))
        {
            watch_crashes(pier, &apps, &containers, &mut self.restarts).await;
            // Only a look at a current list counts: an older one may lack a container that
            // just started, whose restart count must be seen once.
            self.crashes_looked_at = current.is_some().then_some(generation);
        }
        let mut seen = HashSet::new();
        // An app with replicas: the sum of its copies, one point per sample.
        let mut sums: HashMap<i64, Point> = HashMap::new();
        let at = now();
        // Read side by side: an engine that must be asked (no control group files here)
        // takes up to a second per container.
        let todo: Vec<(String, i64)> = containers
            .iter()
            .filter(|c| c.running())
            .filter_map(|c| {
                let app_id = c.deployment_id().and_then(|d| serving.get(&d))?;
                Some((c.id.clone(), *app_id))
            })
            .collect();
        let runtime = pier.runtime();
        let readings: Vec<(String, i64, Usage)> = futures_util::stream::iter(todo)
            .map(|(id, app_id)| {
                let runtime = runtime.clone();
                async move {
                    let u = runtime.usage(&id).await.ok()?;
                    Some((id, app_id, u))
                }
            })
            .buffer_unordered(16)
            .filter_map(|r| async move { r })
            .collect()
            .await;
        for (id, app_id, u) in readings {
            seen.insert(id.clone());
            if let Some(prev) = self.last.insert(id, u) {
                let p = point(&prev, &u, at);
                let sum = sums.entry(app_id).or_insert(Point {
                    at,
                    cpu_percent: 0.0,
                    memory_bytes: 0,
                    memory_limit: 0,
                });
                sum.cpu_percent += p.cpu_percent;
                sum.memory_bytes += p.memory_bytes;
                sum.memory_limit += p.memory_limit;
            }
        }
        for (app_id, p) in sums {
            pier.telemetry().record(app_id, p);
        }
        self.last.retain(|id, _| seen.contains(id));
    }
}

/// Tells an app's owner when its serving container crashed and Docker restarted it: its
/// restart count went up since the last look (or it is restarting at the first look).
async fn watch_crashes(
    pier: &Pier,
    apps: &[pier_core::model::App],
    containers: &[pier_core::runtime::Container],
    seen: &mut HashMap<String, u64>,
) {
    let mut present = HashSet::new();
    for app in apps
        .iter()
        .filter(|a| a.desired == pier_core::model::Desired::Running)
    {
        let Some(current) = app.current_deployment_id else {
            continue;
        };
        let Some(c) = containers
            .iter()
            .find(|c| c.deployment_id() == Some(current))
        else {
            continue;
        };
        present.insert(c.id.clone());
        let Ok(info) = pier.runtime().exit_info(&c.id).await else {
            continue;
        };
        let before = seen.insert(c.id.clone(), info.restarts);
        let crashed = match before {
            Some(n) => info.restarts > n,
            None => c.state == pier_core::runtime::ContainerState::Restarting,
        };
        if crashed {
            let number = repo::deployments::by_id(pier.db(), current)
                .await
                .ok()
                .flatten()
                .map_or(current, |d| d.number);
            let event = pier_core::notify::Event::AppCrashed {
                app: app.name.clone(),
                deployment: number,
                restarts: info.restarts,
                why: info.describe(),
                day: now() / 86_400,
            };
            pier.notify(app.user_id, event).await;
        }
    }
    seen.retain(|id, _| present.contains(id));
}

/// CPU use between two readings, in percent of one CPU.
pub fn point(prev: &Usage, cur: &Usage, at: i64) -> Point {
    let cpu = cur.cpu_ns.saturating_sub(prev.cpu_ns) as f64;
    let sys = cur.system_ns.saturating_sub(prev.system_ns) as f64;
    let cpu_percent = if sys > 0.0 {
        cpu / sys * f64::from(cur.online_cpus.max(1)) * 100.0
    } else {
        0.0
    };
    Point {
        at,
        cpu_percent,
        memory_bytes: cur.memory_bytes,
        memory_limit: cur.memory_limit,
    }
}
