//! Helpers for tests that serve sites through the panel's HAProxy: requests by host name to
//! its loopback ports (curl with `--resolve`), and tenants with apps and domains.
#![allow(dead_code)]

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use axum::http::StatusCode;
use serde_json::Value;

use super::{registry, Browser, TestApp};

/// An HTTPS (or HTTP) request for `host` to HAProxy on loopback: (status, body, redirect).
pub async fn request(app: &TestApp, scheme: &str, host: &str, path: &str) -> (u16, String, String) {
    let cfg = app.proxy().config();
    let port = if scheme == "https" {
        cfg.https_addr.port()
    } else {
        cfg.http_addr.port()
    };
    // Async: the panel behind HAProxy runs on this test's runtime and must keep answering.
    let out = tokio::process::Command::new("curl")
        .args([
            "-sk",
            "--max-time",
            "5",
            "-w",
            "\n%{http_code} %{redirect_url}",
        ])
        .arg("--resolve")
        .arg(format!("{host}:{port}:127.0.0.1"))
        .arg(format!("{scheme}://{host}:{port}{path}"))
        .output()
        .await
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, tail) = text.rsplit_once('\n').unwrap_or(("", &text));
    let mut parts = tail.splitn(2, ' ');
    let status = parts.next().unwrap_or("0").parse().unwrap_or(0);
    (
        status,
        body.trim().to_owned(),
        parts.next().unwrap_or("").to_owned(),
    )
}

pub async fn https(app: &TestApp, host: &str) -> (u16, String) {
    let (s, b, _) = request(app, "https", host, "/").await;
    (s, b)
}

/// Waits until `host` answers `want` over HTTPS; returns how long it took.
pub async fn until_serves(app: &TestApp, host: &str, want: (u16, &str), secs: u64) -> Duration {
    let t0 = Instant::now();
    loop {
        let got = https(app, host).await;
        if got.0 == want.0 && got.1.contains(want.1) {
            return t0.elapsed();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(secs),
            "{host}: wanted {want:?}, still {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn detail(b: &mut Browser, name: &str) -> Value {
    let r = b.read(&format!("app_detail?name={name}")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.json()
}

pub async fn until_running(b: &mut Browser, name: &str, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let d = detail(b, name).await;
        if d["row"]["state"] == "running" && d["row"]["current"] == n {
            return;
        }
        assert!(Instant::now() < deadline, "{name} never ran #{n}: {d:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub async fn tenant(app: &TestApp, email: &str) -> Browser {
    let mut b = app.member(email).await;
    let (host, user, pw) = registry();
    let r = b
        .call(
            "save_registry",
            &[("registry", &host), ("username", &user), ("password", &pw)],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    b
}

pub async fn create(b: &mut Browser, name: &str, greeting: &str) {
    save_hello(b, "create_app", ("name", name), greeting).await;
}

pub async fn set_greeting(b: &mut Browser, name: &str, greeting: &str) {
    save_hello(b, "update_app", ("app", name), greeting).await;
}

/// Creates or updates (`endpoint`) an app running the hello image with `GREETING`.
async fn save_hello(b: &mut Browser, endpoint: &str, app: (&str, &str), greeting: &str) {
    save_hello_with(b, endpoint, app, greeting, &[]).await;
}

/// Waits (up to `secs`) until the panel's engine has `n` containers left (old deployments go
/// once drained).
pub async fn until_containers_left(app: &TestApp, n: usize, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let left = app.containers().await;
        if left.len() == n {
            return;
        }
        assert!(Instant::now() < deadline, "{left:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Creates an app running the hello image as `replicas` copies.
pub async fn create_replicas(b: &mut Browser, name: &str, greeting: &str, replicas: &str) {
    save_hello_with(
        b,
        "create_app",
        ("name", name),
        greeting,
        &[("replicas", replicas)],
    )
    .await;
}

/// Sets the replicas of an app running the hello image (a new deployment).
pub async fn set_replicas(b: &mut Browser, name: &str, greeting: &str, replicas: &str) {
    save_hello_with(
        b,
        "update_app",
        ("app", name),
        greeting,
        &[("replicas", replicas)],
    )
    .await;
}

async fn save_hello_with(
    b: &mut Browser,
    endpoint: &str,
    app: (&str, &str),
    greeting: &str,
    extra: &[(&str, &str)],
) {
    let image = format!("{}/pier-test/hello:1", registry().0);
    let mut fields = vec![
        app,
        ("image", image.as_str()),
        ("port", "8080"),
        ("env[0][name]", "GREETING"),
        ("env[0][value]", greeting),
        ("health_path", "/healthz"),
    ];
    fields.extend_from_slice(extra);
    let r = b.call(endpoint, &fields).await;
    assert_eq!(r.status, StatusCode::OK, "{endpoint}: {}", r.body);
}

/// A bounded load on `path` of `host` through HAProxy's HTTPS port: curl batches of 40
/// requests, 4 at a time, until stopped (and for at most 3 minutes).
pub struct Load {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<(u32, Vec<String>)>,
}

impl Load {
    pub fn start(app: &TestApp, host: &str, path: &str) -> Load {
        let port = app.proxy().config().https_addr.port();
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, host, path) = (stop.clone(), host.to_owned(), path.to_owned());
        let thread = std::thread::spawn(move || {
            let url = format!("https://{host}:{port}{path}");
            let config: String = (0..40)
                .map(|_| format!("url = \"{url}\"\noutput = \"/dev/null\"\n"))
                .collect();
            let file =
                std::env::temp_dir().join(format!("pier-load-{}-{host}.cfg", std::process::id()));
            std::fs::write(&file, config).unwrap();
            let (mut ok, mut failed) = (0u32, Vec::new());
            let t0 = Instant::now();
            while !flag.load(Ordering::Relaxed) && t0.elapsed() < Duration::from_secs(180) {
                let out = std::process::Command::new("curl")
                    .args([
                        "-sk",
                        "--parallel",
                        "--parallel-max",
                        "4",
                        "--max-time",
                        "10",
                    ])
                    .arg("--resolve")
                    .arg(format!("{host}:{port}:127.0.0.1"))
                    .args(["-w", "%{http_code}\n", "-K"])
                    .arg(&file)
                    .output()
                    .unwrap();
                for code in String::from_utf8_lossy(&out.stdout).lines() {
                    if code == "200" {
                        ok += 1;
                    } else {
                        failed.push(code.to_owned());
                    }
                }
            }
            let _ = std::fs::remove_file(&file);
            (ok, failed)
        });
        Load { stop, thread }
    }

    /// Stops the load: (requests answered 200, the codes of the others).
    pub fn stop(self) -> (u32, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

pub async fn domain(b: &mut Browser, f: &str, domain: &str, app: &str) {
    let r = b.call(f, &[("domain", domain), ("app", app)]).await;
    assert_eq!(r.status, StatusCode::OK, "{f} {domain} → {app}: {}", r.body);
}
