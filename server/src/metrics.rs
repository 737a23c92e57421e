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
use pier_core::Pier;

use crate::proxy::Proxy;

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
            Ok(csv) => snapshot.backends = Some(pier_core::metrics::parse_haproxy_stats(&csv)),
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
