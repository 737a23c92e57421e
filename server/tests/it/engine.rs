//! The apps engine against real components: dockerd, the local registry (with a login) and the
//! busybox test images `scripts/services.sh start` pushed there. Traffic goes only to
//! 127.0.0.1 (the containers' published loopback ports).

use crate::common;

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::docker_cli::{docker, inspect};
use common::{registry, Browser, TestApp};
use serde_json::Value;
use sqlx::SqlitePool;

/// `GET path` on a loopback port; the body, or None when nothing answers.
async fn http_get(port: u16, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut buf = String::new();
    tokio::time::timeout(Duration::from_secs(3), s.read_to_string(&mut buf))
        .await
        .ok()?
        .ok()?;
    let (head, body) = buf.split_once("\r\n\r\n")?;
    (head.starts_with("HTTP/1.") && head.get(8..13) == Some(" 200 ")).then(|| body.to_owned())
}

async fn detail(b: &mut Browser, name: &str) -> Value {
    let r = b.read(&format!("app_detail?name={name}")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.json()
}

/// Polls the app page until `pred` holds (or panics with the last state after `secs`).
async fn until(b: &mut Browser, name: &str, secs: u64, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let d = detail(b, name).await;
        if pred(&d) {
            return d;
        }
        assert!(Instant::now() < deadline, "timed out; last state: {d:#}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn serving(n: i64) -> impl Fn(&Value) -> bool {
    move |d| {
        d["row"]["state"] == "running" && d["row"]["current"] == n && d["row"]["host_port"].is_u64()
    }
}

async fn login_to_registry(b: &mut Browser, password: Option<&str>) {
    let (host, user, pw) = registry();
    let r = b
        .call(
            "save_registry",
            &[
                ("registry", host.as_str()),
                ("username", user.as_str()),
                ("password", password.unwrap_or(&pw)),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

fn image(name: &str) -> String {
    format!("{}/pier-test/{name}", registry().0)
}

async fn create(b: &mut Browser, name: &str, image: &str, greeting: &str, extra: &[(&str, &str)]) {
    let mut fields = vec![
        ("name", name),
        ("image", image),
        ("port", "8080"),
        ("env[0][name]", "GREETING"),
        ("env[0][value]", greeting),
        ("env[1][name]", "API_SECRET"),
        ("env[1][value]", "s3cr3t-value-42"),
        ("env[1][secret]", "on"),
    ];
    fields.extend_from_slice(extra);
    let r = b.call("create_app", &fields).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

async fn update_greeting(
    b: &mut Browser,
    name: &str,
    image: &str,
    greeting: &str,
) -> axum::http::StatusCode {
    let r = b
        .call(
            "update_app",
            &[
                ("app", name),
                ("image", image),
                ("port", "8080"),
                ("env[0][name]", "GREETING"),
                ("env[0][value]", greeting),
                ("env[1][name]", "API_SECRET"),
                ("env[1][value]", ""),
                ("env[1][secret]", "on"),
                ("health_path", "/healthz"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.status
}

async fn action(b: &mut Browser, name: &str, action: &str) {
    let r = b
        .call("app_action", &[("app", name), ("action", action)])
        .await;
    assert_eq!(r.status, StatusCode::OK, "{action}: {}", r.body);
}

fn network_exists(name: &str) -> bool {
    docker(&["network", "inspect", name]).status.success()
}

#[sqlx::test(migrations = "../migrations")]
async fn an_app_runs_hardened_redeploys_stops_rolls_back_and_goes(db: SqlitePool) {
    let app = TestApp::new(db).await;
    let mut b = app.member("ada@example.com").await;
    login_to_registry(&mut b, None).await;
    create(
        &mut b,
        "hello",
        &image("hello:1"),
        "hi from the test",
        &[("health_path", "/healthz")],
    )
    .await;

    // Running, reachable on its loopback port, with its env var.
    let d = until(&mut b, "hello", 60, serving(1)).await;
    let port = d["row"]["host_port"].as_u64().unwrap() as u16;
    assert_eq!(
        http_get(port, "/").await.as_deref(),
        Some("hi from the test\n")
    );
    assert_eq!(d["deployments"][0]["status"], "running");
    assert!(d["deployments"][0]["digest"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    // The secret is masked for the browser and sealed in the database.
    let secret = d["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "API_SECRET")
        .unwrap()
        .clone();
    assert_eq!(secret["secret"], true);
    assert_eq!(secret["value"], "");
    let stored: String = sqlx::query_scalar("SELECT env FROM apps")
        .fetch_one(app.pier.db())
        .await
        .unwrap();
    assert!(!stored.contains("s3cr3t-value-42"), "{stored}");

    // Hardening, as Docker reports it.
    let containers = app.containers().await;
    assert_eq!(containers.len(), 1);
    let c = inspect(&containers[0].id);
    let h = &c["HostConfig"];
    assert_eq!(h["Privileged"], false);
    assert_eq!(h["CapDrop"], serde_json::json!(["ALL"]));
    assert!(h["SecurityOpt"]
        .as_array()
        .unwrap()
        .iter()
        .any(|o| o.as_str().unwrap().starts_with("no-new-privileges")));
    assert_eq!(h["Memory"], 256 * 1024 * 1024);
    assert_eq!(h["MemorySwap"], 256 * 1024 * 1024);
    // Half a CPU, as 50 ms per 100 ms once it answers (it started with 500 ms per second).
    assert_eq!(h["CpuPeriod"], 100_000);
    assert_eq!(h["CpuQuota"], 50_000);
    assert_eq!(h["PidsLimit"], 512);
    assert_eq!(h["Init"], true);
    assert_eq!(h["RestartPolicy"]["Name"], "unless-stopped");
    assert!(h["Binds"].is_null() && h["Mounts"].as_array().is_none_or(|m| m.is_empty()));
    assert_eq!(h["PidMode"], "");
    let nets: Vec<String> = c["NetworkSettings"]["Networks"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(nets.len(), 1, "{nets:?}");
    let net = nets[0].clone();
    assert!(
        net.starts_with("pier-")
            && net.ends_with(&format!("-t{}", app.user_id("ada@example.com").await)),
        "{net}"
    );
    for binding in h["PortBindings"]["8080/tcp"].as_array().unwrap() {
        assert_eq!(binding["HostIp"], "127.0.0.1");
    }
    let env: Vec<&str> = c["Config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert!(env.contains(&"API_SECRET=s3cr3t-value-42"));
    for label in [
        "pier.instance",
        "pier.tenant",
        "pier.app",
        "pier.deployment",
    ] {
        assert!(c["Config"]["Labels"][label].is_string(), "{label}");
    }

    // Logs stream over server-sent events (read the first events, then hang up).
    {
        use futures_util::StreamExt;
        use tower::ServiceExt;
        let req = axum::http::Request::get("/events/apps/hello/logs?tail=50")
            .header("cookie", b.cookie.clone().unwrap())
            .body(axum::body::Body::empty())
            .unwrap();
        let res = app.router.clone().oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()["content-type"], "text/event-stream");
        let mut body = res.into_body().into_data_stream();
        let mut seen = String::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !seen.contains("serving on port 8080") {
            assert!(Instant::now() < deadline, "no log events: {seen}");
            if let Ok(Some(Ok(chunk))) =
                tokio::time::timeout(Duration::from_secs(5), body.next()).await
            {
                seen.push_str(&String::from_utf8_lossy(&chunk));
            }
        }
        assert!(seen.contains("event: stdout"), "{seen}");
    }

    // Change env → deployment #2, the new value answers, one container left.
    update_greeting(&mut b, "hello", &image("hello:1"), "changed greeting").await;
    let d = until(&mut b, "hello", 60, serving(2)).await;
    let port = d["row"]["host_port"].as_u64().unwrap() as u16;
    assert_eq!(
        http_get(port, "/").await.as_deref(),
        Some("changed greeting\n")
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while app.containers().await.len() != 1 {
        assert!(Instant::now() < deadline, "old container not removed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The secret kept its value though the form left it empty.
    let c = inspect(&app.containers().await[0].id);
    assert!(c["Config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e == "API_SECRET=s3cr3t-value-42"));

    // Stop, start.
    action(&mut b, "hello", "stop").await;
    until(&mut b, "hello", 30, |d| d["row"]["state"] == "stopped").await;
    assert!(http_get(port, "/").await.is_none());
    action(&mut b, "hello", "start").await;
    let d = until(&mut b, "hello", 30, serving(2)).await;
    let port = d["row"]["host_port"].as_u64().unwrap() as u16;
    let deadline = Instant::now() + Duration::from_secs(10);
    while http_get(port, "/").await.as_deref() != Some("changed greeting\n") {
        assert!(Instant::now() < deadline, "not answering after start");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Roll back to #1: same digest, old env.
    let r = b
        .call("rollback_app", &[("app", "hello"), ("number", "1")])
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let d = until(&mut b, "hello", 60, serving(3)).await;
    assert_eq!(d["deployments"][0]["cause"], "rollback to #1");
    let port = d["row"]["host_port"].as_u64().unwrap() as u16;
    assert_eq!(
        http_get(port, "/").await.as_deref(),
        Some("hi from the test\n")
    );

    // Logs (tail) through the service.
    let actor = pier_core::model::Actor::from(
        pier_core::repo::users::by_email(app.pier.db(), "ada@example.com")
            .await
            .unwrap()
            .unwrap(),
    );
    use futures_util::StreamExt;
    let lines: Vec<_> = app
        .pier
        .app_logs(&actor, "hello", 50, false)
        .await
        .unwrap()
        .collect()
        .await;
    assert!(
        lines.iter().any(|l| l
            .as_ref()
            .is_ok_and(|l| l.text.contains("serving on port 8080"))),
        "{lines:?}"
    );

    // Metrics are sampled. (The very first sample can read no memory yet: Docker's stats of a
    // container that has just started may not have it.)
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let d = detail(&mut b, "hello").await;
        let points = d["metrics"].as_array().cloned().unwrap_or_default();
        if points
            .iter()
            .any(|p| p["memory_mb"].as_f64().is_some_and(|m| m > 0.0))
        {
            break;
        }
        assert!(Instant::now() < deadline, "no memory sampled: {points:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Those figures are read from the container's control group, not asked of Docker (whose
    // stats call waits for its next one-second tick): the app's limit, and memory in use.
    let running = app.containers().await;
    let rt =
        pier::engine::docker::DockerRuntime::new(std::env::temp_dir().join("pier-test-volumes"));
    let u = rt
        .usage_from_files(&running[0].id)
        .await
        .expect("the container's control group is readable");
    assert_eq!(
        Some(u.memory_limit),
        inspect(&running[0].id)["HostConfig"]["Memory"].as_u64()
    );
    assert!(
        u.memory_bytes > 0 && u.cpu_ns > 0 && u.system_ns > 0,
        "{u:?}"
    );

    // Delete: container and the tenant's network go.
    action(&mut b, "hello", "delete").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !app.containers().await.is_empty() || network_exists(&net) {
        assert!(
            Instant::now() < deadline,
            "container or network left behind"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `docker create`s a stopped container of the test image labelled for `instance` (and as a
/// test's, for the clean-up by label); its name.
fn create_labelled(instance: &str, tag: &str) -> String {
    let name = format!("pier-events-{tag}-{}", std::process::id());
    let label = format!("{}={instance}", pier_core::runtime::LABEL_INSTANCE);
    let out = docker(&[
        "create",
        "--name",
        &name,
        "--label",
        &label,
        "--label",
        "pier.test=1",
        &image("hello:1"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    name
}

#[sqlx::test(migrations = "../migrations")]
async fn pages_reuse_the_container_list_until_the_engine_reports_a_change(db: SqlitePool) {
    let app = TestApp::new(db).await;
    let mut b = app.member("eve@example.com").await;
    login_to_registry(&mut b, None).await;
    create(&mut b, "ev", &image("hello:1"), "hi", &[]).await;
    until(&mut b, "ev", 60, serving(1)).await;

    // Pier follows dockerd's events: once the rollout is over, the list pages read stays
    // current, with nothing listed again, for as long as nothing changes.
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.pier.unchanged_containers().is_none() {
        assert!(
            Instant::now() < deadline,
            "the container list never became current"
        );
        detail(&mut b, "ev").await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Another installation's container changes nothing here.
    let other = create_labelled("another-installation", "other");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        app.pier.unchanged_containers().is_some(),
        "nothing of ours changed, yet the list went stale"
    );

    // A container of this installation appears behind Pier's back: the engine's event makes
    // the list stale at once.
    let instance = app.pier.instance_id().await.unwrap();
    let ours = create_labelled(&instance, "ours");
    let deadline = Instant::now() + Duration::from_secs(5);
    while app.pier.unchanged_containers().is_some() {
        assert!(
            Instant::now() < deadline,
            "no event for a new container of this installation"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for name in [other, ours] {
        docker(&["rm", "-f", &name]);
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn failed_deployments_keep_the_previous_one_serving(db: SqlitePool) {
    let mut settings = common::test_settings();
    settings.engine.health_timeout_secs = 5;
    let app = TestApp::with_settings(db, settings).await;
    let mut b = app.admin().await;

    // No login: a clear failure, nothing running.
    create(&mut b, "web", &image("hello:1"), "first", &[]).await;
    let d = until(&mut b, "web", 60, |d| {
        d["deployments"][0]["status"] == "failed"
    })
    .await;
    let err = d["deployments"][0]["error"].as_str().unwrap();
    assert!(err.contains("Pulling") && err.contains("login"), "{err}");
    assert_eq!(d["row"]["state"], "failed");

    login_to_registry(&mut b, None).await;
    action(&mut b, "web", "redeploy").await;
    let d = until(&mut b, "web", 60, serving(2)).await;
    let port = d["row"]["host_port"].as_u64().unwrap() as u16;

    // A wrong password: failed with the reason, #2 still serving.
    login_to_registry(&mut b, Some("not-the-password")).await;
    update_greeting(&mut b, "web", &image("hello:2"), "second").await;
    let d = until(&mut b, "web", 60, |d| {
        d["deployments"][0]["status"] == "failed"
    })
    .await;
    let err = d["deployments"][0]["error"].as_str().unwrap();
    assert!(err.contains("refused the saved login"), "{err}");
    assert_eq!(d["row"]["current"], 2);
    assert_eq!(http_get(port, "/").await.as_deref(), Some("first\n"));

    // An image that never answers: no traffic, failed with the reason, #2 still serving.
    login_to_registry(&mut b, None).await;
    update_greeting(&mut b, "web", &image("sleeper:1"), "third").await;
    // While it starts, its half CPU is counted over 1 s periods, so that its start runs
    // through; the serving one's settled to 100 ms periods once it answered.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut periods: Vec<(u64, u64)> = app
            .containers()
            .await
            .iter()
            .map(|c| {
                let h = &inspect(&c.id)["HostConfig"];
                (
                    h["CpuPeriod"].as_u64().unwrap(),
                    h["CpuQuota"].as_u64().unwrap(),
                )
            })
            .collect();
        periods.sort_unstable();
        if periods.len() == 2 {
            assert_eq!(periods, [(100_000, 50_000), (1_000_000, 500_000)]);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no second container: {periods:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let d = until(&mut b, "web", 60, |d| {
        d["deployments"][0]["status"] == "failed"
    })
    .await;
    let err = d["deployments"][0]["error"].as_str().unwrap();
    assert!(err.contains("never became healthy"), "{err}");
    assert_eq!(http_get(port, "/").await.as_deref(), Some("first\n"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.containers().await.len() != 1 {
        assert!(Instant::now() < deadline, "failed container left behind");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Each failure was one notification for the app's owner, saying whether #2 kept serving.
    let told: Vec<(String, String)> = sqlx::query_as(
        "SELECT dedupe_key, body FROM notifications WHERE kind = 'deployment.failed' ORDER BY id",
    )
    .fetch_all(app.pier.db())
    .await
    .unwrap();
    assert_eq!(told.len(), 3, "{told:?}");
    assert!(
        told[0].1.starts_with("Deployment #1 of web failed") && told[0].1.contains("not serving")
    );
    assert!(told[1].1.contains("refused the saved login") && told[1].1.contains("keeps serving"));
    assert!(told[2].1.contains("never became healthy"));

    // A bad image reference never gets that far.
    let r = b
        .call(
            "update_app",
            &[("app", "web"), ("image", "Not An Image!"), ("port", "8080")],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r
        .field_error("image")
        .unwrap()
        .contains("not a valid image reference"));
}

#[sqlx::test(migrations = "../migrations")]
async fn a_panel_killed_mid_deployment_converges_to_one_container(db: SqlitePool) {
    let mut first = TestApp::new(db).await;
    let mut b = first.admin().await;
    login_to_registry(&mut b, None).await;
    create(&mut b, "crashy", &image("hello:1"), "v1", &[]).await;
    // Kill as soon as the rollout has begun (pulling or starting).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let d = detail(&mut b, "crashy").await;
        if d["row"]["rollout"]["status"] != "queued" && !d["row"]["rollout"].is_null() {
            break;
        }
        assert!(Instant::now() < deadline, "rollout never started: {d:#}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.kill();
    let second = first.restarted().await;
    let mut b = second.admin().await;
    until(&mut b, "crashy", 60, serving(1)).await;

    // Mid-replace: kill once the new container exists, next to the old one.
    update_greeting(&mut b, "crashy", &image("hello:1"), "v2").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while second.containers().await.len() < 2 {
        assert!(Instant::now() < deadline, "second container never appeared");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut second = second;
    second.kill();
    // Apps keep running while the panel is down.
    let d = detail(&mut b, "crashy").await;
    assert_eq!(d["row"]["current"], 1);
    let third = second.restarted().await;
    let mut b = third.admin().await;
    let d = until(&mut b, "crashy", 60, serving(2)).await;
    let port = d["row"]["host_port"].as_u64().unwrap() as u16;
    assert_eq!(http_get(port, "/").await.as_deref(), Some("v2\n"));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let cs = third.containers().await;
        if cs.len() == 1 && cs[0].running() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not exactly one container: {cs:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(second);
}

#[sqlx::test(migrations = "../migrations")]
async fn tenants_cannot_reach_each_others_apps_and_quotas_hold(db: SqlitePool) {
    let app = TestApp::new(db).await;
    let mut a = app.member("ada@example.com").await;
    let mut other = app.member("bob@example.com").await;
    create(&mut a, "private", &image("hello:1"), "mine", &[]).await;

    let r = other.read("app_detail?name=private").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    let r = other.read("list_apps").await;
    assert_eq!(r.json(), serde_json::json!([]));
    for act in ["start", "stop", "restart", "redeploy", "delete"] {
        let r = other
            .call("app_action", &[("app", "private"), ("action", act)])
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{act}: {}", r.body);
    }
    let r = other
        .call("rollback_app", &[("app", "private"), ("number", "1")])
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = other
        .call(
            "update_app",
            &[("app", "private"), ("image", "x"), ("port", "80")],
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = other.get("/events/apps/private/logs").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // Images from registries this Pier does not allow are refused before anything is stored.
    let r = a
        .call(
            "create_app",
            &[("name", "outside"), ("image", "nginx:1.27"), ("port", "80")],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert!(r
        .field_error("image")
        .unwrap()
        .contains("only pulls images from"));
    // Same name is fine for another tenant.
    create(&mut other, "private", &image("hello:1"), "theirs", &[]).await;

    // Quota: 2048 MiB by default; 3 × 1024 does not fit, and the message names the limit.
    create(
        &mut a,
        "big",
        &image("hello:1"),
        "x",
        &[("memory_mb", "1024")],
    )
    .await;
    let r = a
        .call(
            "create_app",
            &[
                ("name", "bigger"),
                ("image", &image("hello:1")),
                ("port", "8080"),
                ("memory_mb", "1024"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert_eq!(r.error_code(), "quota_exceeded");
    assert!(
        r.json()["message"].as_str().unwrap().contains("2048 MiB"),
        "{}",
        r.body
    );
    let names: Vec<String> = a
        .read("list_apps")
        .await
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["big", "private"]);

    // An admin cannot delete a user who still has apps.
    let mut admin = app.admin().await;
    let id = app.user_id("ada@example.com").await.to_string();
    let r = admin
        .call("user_action", &[("id", &id), ("action", "delete")])
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .contains("still has 2 apps"));
}

#[sqlx::test(migrations = "../migrations")]
async fn parallel_rollouts_of_one_tenant_share_one_network(db: SqlitePool) {
    let app = TestApp::new(db).await;
    let mut b = app.admin().await;
    login_to_registry(&mut b, None).await;
    let names = ["p1", "p2", "p3", "p4"];
    for n in names {
        // p4 with a read-only root: it writes only to /tmp, which Pier mounts as a tmpfs.
        let ro: &[(&str, &str)] = if n == "p4" {
            &[("memory_mb", "64"), ("read_only", "on")]
        } else {
            &[("memory_mb", "64")]
        };
        create(&mut b, n, &image("hello:1"), n, ro).await;
    }
    for n in names {
        until(&mut b, n, 60, serving(1)).await;
    }
    let d = detail(&mut b, "p4").await;
    assert_eq!(d["read_only"], true);
    let port = d["row"]["host_port"].as_u64().unwrap() as u16;
    assert_eq!(http_get(port, "/").await.as_deref(), Some("p4\n"));
    let id = &app
        .containers()
        .await
        .into_iter()
        .find(|c| c.name.contains("-p4-"))
        .unwrap()
        .id;
    let c = inspect(id);
    assert_eq!(c["HostConfig"]["ReadonlyRootfs"], true);
    assert!(
        c["HostConfig"]["Tmpfs"]["/tmp"].is_string(),
        "{}",
        c["HostConfig"]["Tmpfs"]
    );
    let id = &app
        .containers()
        .await
        .into_iter()
        .find(|c| c.name.contains("-p1-"))
        .unwrap()
        .id;
    assert_eq!(inspect(id)["HostConfig"]["ReadonlyRootfs"], false);
    let out = docker(&[
        "network",
        "ls",
        "-q",
        "--filter",
        &format!("label=pier.instance={}", app.instance),
    ]);
    let nets = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .count();
    assert_eq!(nets, 1, "one network per tenant");
}

/// Followed logs over the REST API: at most a few open per person (the next is refused with
/// 429 until one closes), and every open stream ends by itself soon after its token is revoked.
#[sqlx::test(migrations = "../migrations")]
async fn followed_logs_are_bounded_and_end_when_the_token_goes(db: SqlitePool) {
    use futures_util::StreamExt;
    use tower::ServiceExt;
    let app = TestApp::new(db).await;
    let mut b = common::sites::tenant(&app, "ada@example.com").await;
    common::sites::create(&mut b, "talk", "hello logs").await;
    common::sites::until_running(&mut b, "talk", 1).await;
    let token = app.token("ada@example.com", "read").await;
    let follow = |token: String| {
        let router = app.router.clone();
        async move {
            let req = axum::http::Request::get("/api/v1/apps/talk/logs?follow=true&tail=5")
                .header("authorization", format!("Bearer {token}"))
                .body(axum::body::Body::empty())
                .unwrap();
            router.oneshot(req).await.unwrap()
        }
    };
    let max = pier_core::logs::MAX_FOLLOWS_PER_USER;
    let mut open = Vec::new();
    for _ in 0..max {
        let res = follow(token.clone()).await;
        assert_eq!(res.status(), StatusCode::OK);
        open.push(res.into_body().into_data_stream());
    }
    let res = follow(token.clone()).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    // Closing one frees its place.
    drop(open.pop());
    let res = follow(token.clone()).await;
    assert_eq!(res.status(), StatusCode::OK);
    open.push(res.into_body().into_data_stream());
    // A plain read streams the tail and ends, and is not counted.
    let r = app
        .api("GET", "/apps/talk/logs?tail=5000", Some(&token), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("serving on port 8080"), "{}", r.body);

    // Revoke the token: every stream it opened ends within seconds.
    let id: i64 = sqlx::query_scalar("SELECT id FROM api_tokens ORDER BY id DESC LIMIT 1")
        .fetch_one(app.pier.db())
        .await
        .unwrap();
    let owner = app.token("ada@example.com", "write").await;
    let r = app
        .api("DELETE", &format!("/tokens/{id}"), Some(&owner), None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let t0 = Instant::now();
    // Read all of them at once, as a server does.
    let ends = open.into_iter().map(|mut body| async move {
        while let Some(chunk) = body.next().await {
            let _ = chunk;
        }
    });
    tokio::time::timeout(
        Duration::from_secs(15),
        futures_util::future::join_all(ends),
    )
    .await
    .expect("a stream outlived its revoked token by 15 s");
    println!("streams ended {:?} after the revocation", t0.elapsed());
    let deadline = Instant::now() + Duration::from_secs(5);
    let user = app.user_id("ada@example.com").await;
    while app.pier.log_slots().open(user) != 0 {
        assert!(Instant::now() < deadline, "slots not given back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Images no kept deployment needs leave the engine: with one deployment kept per app, the
/// first image goes once the second serves; a rollback pulls it again by digest.
#[sqlx::test(migrations = "../migrations")]
async fn images_no_kept_deployment_needs_are_removed(db: SqlitePool) {
    let mut settings = common::test_settings();
    settings.engine.keep_images = 1;
    settings.engine.image_gc_secs = 1;
    let app = TestApp::with_settings(db, settings).await;
    let mut b = app.member("gc@example.com").await;
    login_to_registry(&mut b, None).await;
    let present = |reference: String| async move {
        tokio::process::Command::new("docker")
            .args(["image", "inspect", &reference])
            .output()
            .await
            .expect("docker image inspect")
            .status
            .success()
    };
    let (one, two) = (image("gc:1"), image("gc:2"));
    create(&mut b, "gc", &one, "first", &[]).await;
    until(&mut b, "gc", 60, serving(1)).await;
    assert!(present(one.clone()).await);
    assert_eq!(
        update_greeting(&mut b, "gc", &two, "second").await,
        StatusCode::OK
    );
    until(&mut b, "gc", 60, serving(2)).await;
    // Gone from the engine, and from Pier's list under both names it was pulled as (tag and
    // digest); the serving image's stay. A pass removes the references one after the other
    // (the tag first), so this waits for the pass to end, not only for the tag to go.
    let repo_name = image("gc");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let on_engine = present(one.clone()).await;
        let rows: Vec<String> = sqlx::query_scalar("SELECT reference FROM images ORDER BY 1")
            .fetch_all(app.pier.db())
            .await
            .unwrap();
        let listed_as_expected = rows.len() == 2
            && rows.contains(&two)
            && rows
                .iter()
                .any(|r| r.starts_with(&format!("{repo_name}@sha256:")));
        if !on_engine && listed_as_expected {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{one} still on the engine: {on_engine}; Pier's list: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(present(two.clone()).await, "the serving image stays");
    // Rolling back pulls #1 again (by its digest) and serves it.
    let r = b
        .call("rollback_app", &[("app", "gc"), ("number", "1")])
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let d = until(&mut b, "gc", 60, serving(3)).await;
    let port = d["row"]["host_port"].as_u64().unwrap() as u16;
    assert_eq!(http_get(port, "/").await.as_deref(), Some("first\n"));
}

/// `GET /api/v1/apps/{name}?wait=N` answers once the app's newest deployment has ended (live,
/// with the port it answers on; or failed, with why), or after N seconds while it has not.
/// A wait past the limit or unreadable is named; another tenant's app is a 404 at once, and an
/// app deleted while its deployment is waited for is a 404 too.
#[sqlx::test(migrations = "../migrations")]
async fn a_deployment_is_waited_for_in_one_request(db: SqlitePool) {
    let app = TestApp::new(db).await;
    let mut ada = app.member("ada@example.com").await;
    login_to_registry(&mut ada, None).await;
    let token = app.token("ada@example.com", "write").await;
    let other = {
        app.member("bob@example.com").await;
        app.token("bob@example.com", "read").await
    };
    let post = |name: &'static str, image: String, health: Option<&'static str>| {
        let mut body = serde_json::json!({"name": name, "image": image, "port": 8080});
        if let Some(h) = health {
            body["health_path"] = h.into();
        }
        app.api("POST", "/apps", Some(&token), Some(body))
    };
    // Ada's GET of `path`.
    let get = |path: &'static str| app.api("GET", path, Some(&token), None);

    // Live: one request, answered with the port that answers.
    let r = post("waited", image("hello:1"), None).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.json()["state"], "deploying", "{}", r.body);
    let r = get("/apps/waited?wait=30").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let live = r.json();
    assert_eq!(live["state"], "running", "{live:#}");
    let port = live["host_port"].as_u64().expect("a host port") as u16;
    assert!(http_get(port, "/").await.is_some(), "{live:#}");

    // Failed: the answer says why.
    let r = post("broken", image("hello:no-such-tag"), None).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let r = get("/apps/broken?wait=30").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["state"], "failed", "{}", r.body);
    assert!(r.json()["last_error"].is_string(), "{}", r.body);

    // Bad waits are named and change nothing.
    let r = get("/apps/waited?wait=61").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert!(r.api_field("wait").contains("at most 60"), "{}", r.body);
    let r = get("/apps/waited?wait=soon").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    // Someone else's app does not exist, waited for or not.
    let r = app
        .api("GET", "/apps/waited?wait=30", Some(&other), None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);

    // A deployment that does not end (its health path never answers 200) is answered when the
    // wait is over, as it is then.
    let r = post("slow", image("hello:1"), Some("/never-200")).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let r = get("/apps/slow?wait=1").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["state"], "deploying", "{}", r.body);
    // A person holds a bounded number of waits at once; one more is a 429 that says why, and
    // the slots come back when the waits end.
    let max = pier_core::apps::MAX_WAITS_PER_USER;
    let held = futures_util::future::join_all((0..max).map(|_| get("/apps/slow?wait=3")));
    let extra = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        get("/apps/slow?wait=3").await
    };
    let (held, extra) = tokio::join!(held, extra);
    assert_eq!(
        extra.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        extra.body
    );
    assert!(
        extra.body.contains("waits for a deployment"),
        "{}",
        extra.body
    );
    for r in held {
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    let ada_id = app.user_id("ada@example.com").await;
    assert_eq!(app.pier.wait_slots().open(ada_id), 0);
    // Deleted while waited for: a 404, not the last view of it.
    let waiter = get("/apps/slow?wait=30");
    let delete = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        app.api("DELETE", "/apps/slow", Some(&token), None).await
    };
    let (waited, deleted) = tokio::join!(waiter, delete);
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.body);
    assert_eq!(waited.status, StatusCode::NOT_FOUND, "{}", waited.body);
}
