//! Prometheus metrics: scraped from the panel's metrics router and read back with a real
//! OpenMetrics parser (Python's `prometheus_client`, Debian's package), whose values move as the
//! tests request and deploy things.

use crate::common::{
    self,
    sites::{create, domain, request, tenant, until_running, until_serves},
};

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use axum::{body::Body, http::Request};
use common::{TestApp, ADMIN_EMAIL};
use http_body_util::BodyExt;
use serde_json::json;
use sqlx::SqlitePool;
use tower::ServiceExt;

#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// `GET /metrics`, checked to be OpenMetrics text and parsed by `prometheus_client`.
async fn scrape(app: &TestApp) -> Vec<Sample> {
    let router = pier::metrics::router(app.pier.clone(), app.proxy.clone());
    let res = router
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text; version=1.0.0"));
    let text =
        String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    parse(&text)
}

/// Every sample, through the OpenMetrics parser (which rejects malformed text outright).
fn parse(text: &str) -> Vec<Sample> {
    use std::io::Write;
    const SCRIPT: &str = "import json, sys\n\
        from prometheus_client.openmetrics.parser import text_string_to_metric_families\n\
        for f in text_string_to_metric_families(sys.stdin.read()):\n\
        \x20   for s in f.samples:\n\
        \x20       print(json.dumps([s.name, s.labels, s.value]))\n";
    // Debian's interpreter, where python3-prometheus-client is installed.
    let mut child = std::process::Command::new("/usr/bin/python3")
        .args(["-c", SCRIPT])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the parser refused the text: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (name, labels, value): (String, BTreeMap<String, String>, f64) =
                serde_json::from_str(l).unwrap();
            Sample {
                name,
                labels,
                value,
            }
        })
        .collect()
}

/// The value of the one sample named `name` whose labels include `labels`.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
}

/// Scrapes until `ok` holds for the samples (or fails after `secs`).
async fn until(
    app: &TestApp,
    secs: u64,
    what: &str,
    ok: impl Fn(&[Sample]) -> bool,
) -> Vec<Sample> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let s = scrape(app).await;
        if ok(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "{what}: {s:#?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn requests_passes_and_failed_deployments_are_counted(db: SqlitePool) {
    let app = TestApp::new(db).await;
    let token = app.token(ADMIN_EMAIL, "write").await;
    let route = [
        ("method", "GET"),
        ("route", "/api/v1/apps"),
        ("status", "200"),
    ];
    let before = scrape(&app).await;
    let count = |s: &[Sample]| value(s, "pier_http_requests_total", &route).unwrap_or(0.0);
    for _ in 0..3 {
        assert_eq!(
            app.api("GET", "/apps", Some(&token), None).await.status,
            200
        );
    }
    // A path no route takes is counted under one series, whatever it was.
    let mut b = app.browser();
    b.get("/no/such/page/4711").await;
    let after = scrape(&app).await;
    assert_eq!(count(&after) - count(&before), 3.0);
    assert!(
        value(
            &after,
            "pier_http_request_duration_seconds_count",
            &[("method", "GET"), ("route", "/api/v1/apps")]
        )
        .unwrap()
            >= 3.0
    );
    assert!(after
        .iter()
        .all(|s| !s.labels.get("route").is_some_and(|r| r.contains("4711"))));
    assert!(value(
        &after,
        "pier_http_requests_total",
        &[("route", "unmatched")]
    )
    .is_some());

    // An app whose image cannot be pulled: its deployment fails, and says so.
    let r = app
        .api(
            "POST",
            "/apps",
            Some(&token),
            Some(json!({"name": "broken", "image": "127.0.0.1:9/pier-test/none:1", "port": 8080})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    // The counter moves when the deployment fails; the app's state is derived per scrape from
    // the engine's container list, which may still be refreshing then ("unknown"): wait for both.
    let failed_state = [
        ("tenant", ADMIN_EMAIL),
        ("app", "broken"),
        ("state", "failed"),
    ];
    let s = until(&app, 60, "a failed deployment", |s| {
        value(s, "pier_deployments_total", &[("outcome", "failed")]).is_some_and(|v| v >= 1.0)
            && value(s, "pier_app_state", &failed_state).is_some()
    })
    .await;
    assert_eq!(value(&s, "pier_app_state", &failed_state), Some(1.0));
    assert!(value(&s, "pier_reconcile_passes_total", &[]).unwrap() >= 1.0);
    assert!(value(&s, "pier_reconcile_duration_seconds_count", &[]).unwrap() >= 1.0);
    assert_eq!(
        value(&s, "pier_deployments_total", &[("outcome", "live")]),
        None
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn apps_certificates_and_haproxy_are_measured(db: SqlitePool) {
    let app = TestApp::with_acme(db).await;
    let mut ann = tenant(&app, "ann@example.com").await;
    create(&mut ann, "site", "measured site").await;
    until_running(&mut ann, "site", 1).await;
    domain(&mut ann, "add_domain", "metrics.pier.test", "site").await;
    until_serves(&app, "metrics.pier.test", (200, "measured site"), 60).await;

    let app_labels = [("tenant", "ann@example.com"), ("app", "site")];
    let s = until(&app, 90, "a certificate and a reading of the app", |s| {
        value(
            s,
            "pier_certificate_expiry_days",
            &[("domain", "metrics.pier.test")],
        )
        .is_some()
            && value(s, "pier_app_memory_bytes", &app_labels).is_some()
    })
    .await;
    let days = value(
        &s,
        "pier_certificate_expiry_days",
        &[("domain", "metrics.pier.test")],
    )
    .unwrap();
    // Pebble's certificates last five years.
    assert!((1.0..=5.0 * 366.0).contains(&days), "{days}");
    assert!(value(&s, "pier_app_memory_bytes", &app_labels).unwrap() > 0.0);
    assert!(value(&s, "pier_app_cpu", &app_labels).unwrap() >= 0.0);
    assert_eq!(value(&s, "pier_app_restarts_total", &app_labels), Some(0.0));
    assert_eq!(
        value(
            &s,
            "pier_app_state",
            &[
                ("tenant", "ann@example.com"),
                ("app", "site"),
                ("state", "running")
            ]
        ),
        Some(1.0)
    );
    assert!(value(&s, "pier_deployments_total", &[("outcome", "live")]).unwrap() >= 1.0);

    // Requests through HAProxy move the apps backend's counter.
    let apps = |s: &[Sample]| {
        value(
            s,
            "pier_haproxy_backend_requests_total",
            &[("backend", "apps")],
        )
        .unwrap_or(0.0)
    };
    let before = apps(&s);
    for _ in 0..5 {
        let (status, _, _) = request(&app, "https", "metrics.pier.test", "/").await;
        assert_eq!(status, 200);
    }
    let s = scrape(&app).await;
    assert!(apps(&s) >= before + 5.0, "{} → {}", before, apps(&s));
    assert!(value(
        &s,
        "pier_haproxy_backend_requests_total",
        &[("backend", "panel")]
    )
    .is_some());
    assert!(value(
        &s,
        "pier_haproxy_backend_responses_5xx_total",
        &[("backend", "apps")]
    )
    .is_some());
}
