//! Prometheus metrics (OpenMetrics text, `prometheus-client`). Counters and histograms are
//! updated where things happen (HTTP requests, reconcile passes, deployments); what is a state
//! rather than an event (apps, certificates, backups, HAProxy's counters) is read at scrape
//! time into a snapshot that a collector encodes, so nothing is polled between scrapes.

use std::sync::{Arc, Mutex};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric},
    metrics::{
        counter::{ConstCounter, Counter},
        family::Family,
        gauge::ConstGauge,
        histogram::{exponential_buckets, Histogram},
        MetricType,
    },
    registry::Registry,
};

use crate::{apps::AppState, now, repo, Pier, Result};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: String,
    /// The route's pattern (`/api/v1/apps/{name}`), never the path asked for: one series per
    /// route, whatever is typed into the address bar.
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub method: String,
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

fn latency() -> Histogram {
    // 1 ms to ~16 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

type LatencyFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

/// The panel's metrics: the registry and the handles code updates.
pub struct Metrics {
    registry: Registry,
    http_requests: Family<HttpLabels, Counter>,
    http_duration: LatencyFamily,
    reconcile_passes: Counter,
    reconcile_duration: Histogram,
    deployments: Family<OutcomeLabels, Counter>,
    snapshot: Arc<SnapshotCollector>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("pier");
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered by the panel, by route and status",
            http_requests.clone(),
        );
        let http_duration = LatencyFamily::new_with_constructor(latency);
        registry.register_with_unit(
            "http_request_duration",
            "Time to answer an HTTP request (to the response's head), by route",
            prometheus_client::registry::Unit::Seconds,
            http_duration.clone(),
        );
        let reconcile_passes = Counter::default();
        registry.register(
            "reconcile_passes",
            "Passes of the reconciler (desired state made real)",
            reconcile_passes.clone(),
        );
        let reconcile_duration = latency();
        registry.register_with_unit(
            "reconcile_duration",
            "Time one reconcile pass takes",
            prometheus_client::registry::Unit::Seconds,
            reconcile_duration.clone(),
        );
        let deployments = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "deployments",
            "Deployments that ended, by outcome (live, failed, cancelled)",
            deployments.clone(),
        );
        let snapshot = Arc::new(SnapshotCollector::default());
        registry.register_collector(Box::new(snapshot.clone()));
        Metrics {
            registry,
            http_requests,
            http_duration,
            reconcile_passes,
            reconcile_duration,
            deployments,
            snapshot,
        }
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    pub fn http_request(&self, method: &str, route: &str, status: u16, secs: f64) {
        self.http_requests
            .get_or_create(&HttpLabels {
                method: method.to_owned(),
                route: route.to_owned(),
                status,
            })
            .inc();
        self.http_duration
            .get_or_create(&RouteLabels {
                method: method.to_owned(),
                route: route.to_owned(),
            })
            .observe(secs);
    }

    pub fn reconcile_pass(&self, secs: f64) {
        self.reconcile_passes.inc();
        self.reconcile_duration.observe(secs);
    }

    /// A deployment ended: `live`, `failed` or `cancelled`.
    pub fn deployment(&self, outcome: &str) {
        self.deployments
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// The text a scrape gets, with `snapshot` as the state of things now.
    pub fn encode(&self, snapshot: Snapshot) -> String {
        *self.snapshot.0.lock().expect("metrics snapshot lock") = snapshot;
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String does not fail");
        out
    }
}

/// One app as a scrape sees it.
#[derive(Debug, Clone)]
pub struct AppSample {
    pub tenant: String,
    pub app: String,
    pub state: AppState,
    /// CPUs busy (1.5 = one and a half), from the last reading.
    pub cpu: Option<f64>,
    pub memory_bytes: Option<u64>,
    /// How often Docker restarted the serving container (None: no container).
    pub restarts: Option<u64>,
    /// When its last snapshot succeeded (unix seconds), for apps with backups.
    pub last_backup: Option<i64>,
}

/// HAProxy's counters for one backend.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BackendSample {
    pub backend: String,
    pub requests: u64,
    pub responses_5xx: u64,
    pub connection_errors: u64,
    pub response_errors: u64,
}

/// What is read at scrape time.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub apps: Vec<AppSample>,
    /// (domain, seconds until the certificate expires).
    pub certificates: Vec<(String, i64)>,
    /// When Pier's own backup last succeeded.
    pub panel_backup: Option<i64>,
    /// None when the panel runs without its HAProxy.
    pub backends: Option<Vec<BackendSample>>,
}

#[derive(Debug, Default)]
struct SnapshotCollector(Mutex<Snapshot>);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AppLabels {
    tenant: String,
    app: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    tenant: String,
    app: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DomainLabels {
    domain: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabels {
    backend: String,
}

/// Writes one metric family from (labels, value) pairs.
fn family<L: EncodeLabelSet, M: EncodeMetric>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    unit: Option<&prometheus_client::registry::Unit>,
    kind: MetricType,
    series: impl IntoIterator<Item = (L, M)>,
) -> std::fmt::Result {
    let mut metric = encoder.encode_descriptor(name, help, unit, kind)?;
    for (labels, value) in series {
        value.encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for SnapshotCollector {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> std::fmt::Result {
        use prometheus_client::registry::Unit;
        let s = self.0.lock().expect("metrics snapshot lock").clone();
        let app = |a: &AppSample| AppLabels {
            tenant: a.tenant.clone(),
            app: a.app.clone(),
        };
        family(
            &mut e,
            "app_state",
            "1 for the state each app is in (running, deploying, crashed, stopped, …)",
            None,
            MetricType::Gauge,
            s.apps.iter().map(|a| {
                let l = StateLabels {
                    tenant: a.tenant.clone(),
                    app: a.app.clone(),
                    state: a.state.as_str().to_owned(),
                };
                (l, ConstGauge::new(1i64))
            }),
        )?;
        family(
            &mut e,
            "app_cpu",
            "CPUs an app's container keeps busy (1.5 = one and a half), at the last reading",
            None,
            MetricType::Gauge,
            s.apps
                .iter()
                .filter_map(|a| Some((app(a), ConstGauge::new(a.cpu?)))),
        )?;
        family(
            &mut e,
            "app_memory",
            "Memory an app's container uses, at the last reading",
            Some(&Unit::Bytes),
            MetricType::Gauge,
            s.apps.iter().filter_map(|a| {
                Some((
                    app(a),
                    ConstGauge::new(i64::try_from(a.memory_bytes?).ok()?),
                ))
            }),
        )?;
        family(
            &mut e,
            "app_restarts",
            "Times Docker restarted an app's serving container (it exited or crashed)",
            None,
            MetricType::Counter,
            s.apps
                .iter()
                .filter_map(|a| Some((app(a), ConstCounter::new(a.restarts?)))),
        )?;
        family(
            &mut e,
            "backup_last_success_timestamp",
            "When an app's last snapshot succeeded",
            Some(&Unit::Seconds),
            MetricType::Gauge,
            s.apps
                .iter()
                .filter_map(|a| Some((app(a), ConstGauge::new(a.last_backup?)))),
        )?;
        if let Some(t) = s.panel_backup {
            let m = ConstGauge::new(t);
            let metric = e.encode_descriptor(
                "panel_backup_last_success_timestamp",
                "When Pier's own backup (database and key) last succeeded",
                Some(&Unit::Seconds),
                m.metric_type(),
            )?;
            m.encode(metric)?;
        }
        family(
            &mut e,
            "certificate_expiry",
            "Time until a domain's certificate expires",
            Some(&Unit::Seconds),
            MetricType::Gauge,
            s.certificates
                .iter()
                .map(|(d, secs)| (DomainLabels { domain: d.clone() }, ConstGauge::new(*secs))),
        )?;
        family(
            &mut e,
            "certificate_expiry_days",
            "Whole days until a domain's certificate expires",
            None,
            MetricType::Gauge,
            s.certificates.iter().map(|(d, secs)| {
                (
                    DomainLabels { domain: d.clone() },
                    ConstGauge::new(secs.div_euclid(86_400)),
                )
            }),
        )?;
        if let Some(backends) = &s.backends {
            let b = |x: &BackendSample| BackendLabels {
                backend: x.backend.clone(),
            };
            family(
                &mut e,
                "haproxy_backend_requests",
                "HTTP requests HAProxy sent to a backend (apps, panel, unknown_host)",
                None,
                MetricType::Counter,
                backends
                    .iter()
                    .map(|x| (b(x), ConstCounter::new(x.requests))),
            )?;
            family(
                &mut e,
                "haproxy_backend_responses_5xx",
                "Responses with a 5xx status from a backend",
                None,
                MetricType::Counter,
                backends
                    .iter()
                    .map(|x| (b(x), ConstCounter::new(x.responses_5xx))),
            )?;
            family(
                &mut e,
                "haproxy_backend_connection_errors",
                "Failed connections to a backend's servers",
                None,
                MetricType::Counter,
                backends
                    .iter()
                    .map(|x| (b(x), ConstCounter::new(x.connection_errors))),
            )?;
            family(
                &mut e,
                "haproxy_backend_response_errors",
                "Responses from a backend's servers that broke off or never came",
                None,
                MetricType::Counter,
                backends
                    .iter()
                    .map(|x| (b(x), ConstCounter::new(x.response_errors))),
            )?;
        }
        Ok(())
    }
}

/// Reads HAProxy's `show stat` CSV into one sample per backend.
pub fn parse_haproxy_stats(csv: &str) -> Vec<BackendSample> {
    let mut lines = csv.lines();
    let Some(header) = lines.next().and_then(|h| h.strip_prefix("# ")) else {
        return Vec::new();
    };
    let cols: Vec<&str> = header.split(',').collect();
    let at = |name: &str| cols.iter().position(|c| *c == name);
    let (Some(px), Some(sv)) = (at("pxname"), at("svname")) else {
        return Vec::new();
    };
    let (req, h5, econ, eresp) = (at("req_tot"), at("hrsp_5xx"), at("econ"), at("eresp"));
    lines
        .filter_map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            if f.get(sv) != Some(&"BACKEND") {
                return None;
            }
            let n = |i: Option<usize>| {
                i.and_then(|i| f.get(i))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0)
            };
            Some(BackendSample {
                backend: f.get(px)?.to_string(),
                requests: n(req),
                responses_5xx: n(h5),
                connection_errors: n(econ),
                response_errors: n(eresp),
            })
        })
        .collect()
}

impl Pier {
    pub fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }

    /// Apps, certificates and backups as they are now, for a scrape (HAProxy's counters are
    /// the server's to add).
    pub async fn metrics_snapshot(&self) -> Result<Snapshot> {
        let t = now();
        let users = repo::users::list(self.db()).await?;
        let owners: std::collections::HashMap<i64, String> =
            users.iter().map(|u| (u.id, u.email.clone())).collect();
        let last_backups: std::collections::HashMap<i64, i64> =
            repo::backups::last_done_per_app(self.db())
                .await?
                .into_iter()
                .collect();
        let mut views = Vec::new();
        for u in users {
            let actor = crate::model::Actor::from(u);
            views.extend(self.list_apps_page(&actor, i64::MAX, 0).await?.0);
        }
        // Each serving container, by its deployment: one walk of the list, not one per app.
        let containers = self.containers_of(!views.is_empty()).await;
        let by_deployment: std::collections::HashMap<i64, &crate::runtime::Container> = containers
            .as_deref()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter_map(|c| Some((c.deployment_id()?, c)))
            .collect();
        let serving = |v: &crate::apps::AppView| -> Option<String> {
            let c = by_deployment.get(&v.current.as_ref()?.id)?;
            (c.app_id() == Some(v.app.id)).then(|| c.id.clone())
        };
        let mut apps = Vec::with_capacity(views.len());
        for view in views {
            let container = serving(&view);
            let reading = self.telemetry().history(view.app.id).last().copied();
            let restarts = match &container {
                Some(id) => self.runtime().exit_info(id).await.ok().map(|i| i.restarts),
                None => None,
            };
            apps.push(AppSample {
                tenant: owners.get(&view.app.user_id).cloned().unwrap_or_default(),
                app: view.app.name.clone(),
                state: view.state,
                cpu: reading.map(|p| p.cpu_percent / 100.0),
                memory_bytes: reading.map(|p| p.memory_bytes),
                restarts,
                last_backup: last_backups.get(&view.app.id).copied(),
            });
        }
        let certificates = repo::certs::all(self.db())
            .await?
            .into_iter()
            .filter_map(|c| Some((c.name, c.not_after? - t)))
            .collect();
        let panel_backup = repo::backups::panel_backups(self.db(), 50)
            .await?
            .into_iter()
            .find(|b| b.state == crate::backups::JobState::Done)
            .map(|b| b.finished_at);
        Ok(Snapshot {
            apps,
            certificates,
            panel_backup,
            backends: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn haproxy_stats_give_one_sample_per_backend() {
        let csv = "# pxname,svname,qcur,req_tot,hrsp_5xx,econ,eresp,\n\
                   https,FRONTEND,0,120,0,,,\n\
                   apps,BACKEND,0,100,3,2,1,\n\
                   panel,BACKEND,0,20,0,0,0,\n\
                   panel,srv1,0,,0,0,0,\n";
        let b = parse_haproxy_stats(csv);
        assert_eq!(
            b,
            vec![
                BackendSample {
                    backend: "apps".into(),
                    requests: 100,
                    responses_5xx: 3,
                    connection_errors: 2,
                    response_errors: 1
                },
                BackendSample {
                    backend: "panel".into(),
                    requests: 20,
                    ..Default::default()
                },
            ]
        );
        assert!(parse_haproxy_stats("garbage").is_empty());
    }

    #[test]
    fn counters_and_snapshots_are_encoded_as_openmetrics() {
        let m = Metrics::default();
        m.http_request("GET", "/api/v1/apps", 200, 0.004);
        m.deployment("live");
        let text = m.encode(Snapshot {
            apps: vec![AppSample {
                tenant: "a@example.com".into(),
                app: "web".into(),
                state: AppState::Running,
                cpu: Some(0.25),
                memory_bytes: Some(1 << 20),
                restarts: Some(2),
                last_backup: None,
            }],
            certificates: vec![("shop.example.com".into(), 10 * 86_400 + 5)],
            panel_backup: None,
            backends: None,
        });
        for line in [
            "pier_http_requests_total{method=\"GET\",route=\"/api/v1/apps\",status=\"200\"} 1",
            "pier_deployments_total{outcome=\"live\"} 1",
            "pier_app_state{tenant=\"a@example.com\",app=\"web\",state=\"running\"} 1",
            "pier_app_memory_bytes{tenant=\"a@example.com\",app=\"web\"} 1048576",
            "pier_app_restarts_total{tenant=\"a@example.com\",app=\"web\"} 2",
            "pier_certificate_expiry_days{domain=\"shop.example.com\"} 10",
        ] {
            assert!(text.contains(line), "{line} not in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }
}
