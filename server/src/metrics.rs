//! The Prometheus side of the panel: a middleware that counts and times every HTTP request by
//! its route, and the `/metrics` endpoint on its own listener (`PIER_METRICS_LISTEN`), which
//! reads the state of things at scrape time (apps, certificates, backups, HAProxy's counters).

use std::{net::SocketAddr, sync::Arc, time::Instant};

use axum::{
    extract::{MatchedPath, Request, State},
    http::{header, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use pier_core::{metrics::BackendSample, Pier};

use crate::proxy::{table::backend_id, Proxy};

/// Counts and times a request under its route's pattern (`unmatched` when no route took it,
/// so a scan of random paths adds one series, not thousands).
pub async fn track(State(pier): State<Pier>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().as_str().to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let res = next.run(req).await;
    pier.metrics().http_request(
        &method,
        &route,
        res.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    res
}

#[derive(Clone)]
struct Scrape {
    pier: Pier,
    proxy: Option<Arc<Proxy>>,
}

/// `GET /metrics` (and nothing else).
pub fn router(pier: Pier, proxy: Option<Arc<Proxy>>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(Scrape { pier, proxy })
}

async fn metrics(State(s): State<Scrape>) -> Response {
    let mut snapshot = match s.pier.metrics_snapshot().await {
        Ok(snap) => snap,
        Err(e) => {
            tracing::error!(error = %e, "metrics: reading the state failed");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "reading the state failed\n",
            )
                .into_response();
        }
    };
    if let Some(p) = &s.proxy {
        match crate::proxy::runtime::command(&p.files().stats_socket(), "show stat").await {
            Ok(csv) => {
                let each = pier_core::metrics::parse_haproxy_stats(&csv);
                snapshot.backends = Some(apps_as_one(each));
            }
            Err(e) => tracing::warn!(error = %e, "metrics: HAProxy's statistics are not available"),
        }
    }
    let body = s.pier.metrics().encode(snapshot);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// The apps' backends (`app<id>`, one per app) added up into one sample named `apps`, so the
/// series stay few however many apps there are; the other backends as they are.
fn apps_as_one(samples: Vec<BackendSample>) -> Vec<BackendSample> {
    let mut out: Vec<BackendSample> = Vec::new();
    for s in samples {
        let name = if backend_id(&s.backend).is_some() {
            "apps"
        } else {
            s.backend.as_str()
        };
        match out.iter_mut().find(|b| b.backend == name) {
            Some(b) => {
                b.requests += s.requests;
                b.responses_5xx += s.responses_5xx;
                b.connection_errors += s.connection_errors;
                b.response_errors += s.response_errors;
            }
            None => out.push(BackendSample {
                backend: name.to_owned(),
                ..s
            }),
        }
    }
    out
}

/// Serves `/metrics` on `addr` until the process ends. Not loopback: a warning, since the
/// endpoint has no authentication (tenants' app names and e-mails are in the labels).
pub async fn serve(addr: SocketAddr, pier: Pier, proxy: Option<Arc<Proxy>>) -> anyhow::Result<()> {
    use anyhow::Context;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening for metrics scrapes on {addr}"))?;
    if !addr.ip().is_loopback() {
        tracing::warn!(%addr, "metrics are served beyond loopback, without authentication");
    }
    tracing::info!(%addr, "Prometheus metrics at /metrics");
    axum::serve(listener, router(pier, proxy)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_apps_backends_add_up_to_one_sample() {
        let sample = |backend: &str, requests, errors| BackendSample {
            backend: backend.into(),
            requests,
            responses_5xx: errors,
            connection_errors: errors,
            response_errors: 0,
        };
        let csv = "# pxname,svname,qcur,req_tot,hrsp_5xx,econ,eresp,\n\
                   app1,BACKEND,0,60,3,0,1,\n\
                   app1,e127-0-0-1-40001,0,60,3,0,1,\n\
                   panel,BACKEND,0,20,0,0,0,\n\
                   app12,BACKEND,0,40,0,2,0,\n";
        let each = pier_core::metrics::parse_haproxy_stats(csv);
        assert_eq!(each.len(), 3);
        assert_eq!(
            apps_as_one(each),
            vec![
                BackendSample {
                    backend: "apps".into(),
                    requests: 100,
                    responses_5xx: 3,
                    connection_errors: 2,
                    response_errors: 1
                },
                sample("panel", 20, 0),
            ]
        );
        // Names that only look like an app's stay apart.
        assert_eq!(
            apps_as_one(vec![sample("apps", 5, 1), sample("app", 1, 0)]),
            vec![sample("apps", 5, 1), sample("app", 1, 0)]
        );
    }
}
