//! Apps on the real three-engine Swarm of `scripts/swarm.sh up`, through Pier end to end: the
//! engine runs each copy as a Swarm service, HAProxy (on this machine's loopback) routes to the
//! tasks at their machines' addresses. Three copies spread over three machines; a new
//! deployment under load fails no request; a machine cut off leaves the app answering from the
//! others, and its copy is placed again elsewhere. Requests go to HAProxy on 127.0.0.1 only,
//! which reaches the harness's namespace addresses.

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use axum::http::StatusCode;
use serde_json::json;
use sqlx::SqlitePool;
use test_support::swarm::{Cut, Swarm};

use crate::common::{registry, sites::*, Browser, TestApp, SWARM};

/// Removes what the test's panel made on the Swarm (its services, then its networks), also
/// when the test fails.
struct Tidy {
    swarm: Swarm,
    instance: String,
}

impl Drop for Tidy {
    fn drop(&mut self) {
        let label = format!("label=pier.instance={}", self.instance);
        let out = self
            .swarm
            .docker(&["service", "ls", "-q", "--filter", &label])
            .output()
            .unwrap();
        for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = self.swarm.docker(&["service", "rm", id]).output();
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = self
                .swarm
                .docker(&["network", "ls", "-q", "--filter", &label])
                .output()
                .unwrap();
            let left: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .map(str::to_owned)
                .collect();
            if left.is_empty() || Instant::now() > deadline {
                break;
            }
            for id in &left {
                let _ = self.swarm.docker(&["network", "rm", id]).output();
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        self.swarm.reactivate_all();
    }
}

/// A member whose registry login is for the Swarm's registry.
async fn member(app: &TestApp, swarm: &Swarm) -> Browser {
    let mut b = app.member("ann@example.com").await;
    let (_, user, password) = registry();
    let r = b
        .call(
            "save_registry",
            &[
                ("registry", &swarm.registry),
                ("username", &user),
                ("password", &password),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    b
}

async fn save(b: &mut Browser, swarm: &Swarm, endpoint: &str, app: (&str, &str), greeting: &str) {
    save_image(b, swarm, endpoint, app, greeting, "hello:1", "3").await;
}

async fn save_image(
    b: &mut Browser,
    swarm: &Swarm,
    endpoint: &str,
    app: (&str, &str),
    greeting: &str,
    image: &str,
    replicas: &str,
) {
    let image = format!("{}/pier-test/{image}", swarm.registry);
    let r = b
        .call(
            endpoint,
            &[
                app,
                ("image", &image),
                ("port", "8080"),
                ("env[0][name]", "GREETING"),
                ("env[0][value]", greeting),
                ("health_path", "/healthz"),
                ("replicas", replicas),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{endpoint}: {}", r.body);
}

/// The addresses of the copies that run now (their machines' addresses).
async fn machines(app: &TestApp) -> BTreeSet<String> {
    app.containers()
        .await
        .into_iter()
        .filter(|c| c.running())
        .filter_map(|c| c.host.map(|h| h.to_string()))
        .collect()
}

/// The copies answering /host through HAProxy in `n` requests.
async fn answering(app: &TestApp, n: usize) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for _ in 0..n {
        let (status, body, _) = request(app, "https", "swarm.pier.test", "/host").await;
        if status == 200 {
            names.insert(body.trim().to_owned());
        }
    }
    names
}

#[sqlx::test(migrations = "../migrations")]
async fn copies_spread_roll_and_survive_a_lost_machine(db: SqlitePool) {
    let _one = SWARM.lock().await;
    let swarm = Swarm::from_env();
    swarm.reactivate_all();
    let app = TestApp::on_swarm(db, swarm.socket(), &swarm.registry).await;
    let _tidy = Tidy {
        swarm: Swarm::from_env(),
        instance: app.instance.clone(),
    };
    let mut ann = member(&app, &swarm).await;

    // Three copies, one on each machine, each answering through HAProxy.
    let t0 = Instant::now();
    save(&mut ann, &swarm, "create_app", ("name", "site"), "v1").await;
    domain(&mut ann, "add_domain", "swarm.pier.test", "site").await;
    until_running(&mut ann, "site", 1).await;
    until_serves(&app, "swarm.pier.test", (200, "v1"), 30).await;
    let deployed = t0.elapsed();
    let spread = machines(&app).await;
    assert_eq!(spread.len(), 3, "one copy per machine: {spread:?}");
    assert_eq!(answering(&app, 30).await.len(), 3, "every copy answers");
    let cfg = std::fs::read_to_string(&app.proxy().files().cfg).unwrap();
    for addr in &swarm.addrs {
        assert!(cfg.contains(&format!(" {addr}:")), "{addr} in {cfg}");
    }
    assert!(cfg.contains("check inter 1s fall 2"), "{cfg}");

    // A new deployment under load: three new copies answer before the old ones go.
    let load = Load::start(&app, "swarm.pier.test", "/");
    let t1 = Instant::now();
    save(&mut ann, &swarm, "update_app", ("app", "site"), "v2").await;
    until_running(&mut ann, "site", 2).await;
    until_serves(&app, "swarm.pier.test", (200, "v2"), 30).await;
    let rolled = t1.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (ok, failed) = load.stop();
    println!(
        "swarm: 3 copies deployed in {deployed:?}; redeployed under load in {rolled:?}: {ok} answered, {} failed",
        failed.len()
    );
    assert!(failed.is_empty(), "failed requests: {failed:?}");
    assert!(ok >= 50, "the load ran ({ok} requests)");

    // Machine 3 is cut off under load: HAProxy takes it out within seconds, the others answer,
    // and the Swarm places its copy on a machine that is left.
    let lost = swarm.addrs[2].clone();
    let load = Load::start(&app, "swarm.pier.test", "/");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cut = Cut::new(3);
    let t2 = Instant::now();
    // Only the two machines left answer (HAProxy's checks took the lost one out).
    let only_two = loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let text =
            pier::proxy::runtime::command(&app.proxy().config().stats_socket, "show servers state")
                .await
                .unwrap();
        // srv_op_state 0: down.
        let down = text
            .lines()
            .filter(|l| l.contains(&lost))
            .any(|l| l.split_whitespace().nth(5) == Some("0"));
        if down {
            break t2.elapsed();
        }
        assert!(
            t2.elapsed() < Duration::from_secs(20),
            "never marked down: {text}"
        );
    };
    let (ok, failed) = load.stop();
    println!(
        "swarm: machine {lost} cut off under load: out of HAProxy's rotation after {only_two:?}; {ok} answered, {} failed",
        failed.len()
    );
    assert!(ok >= 50, "the load ran ({ok} requests)");
    assert!(failed.len() <= 8, "failed requests: {failed:?}");
    let names = answering(&app, 20).await;
    assert_eq!(names.len(), 2, "the two copies left answer: {names:?}");
    // The Swarm notices and runs the lost copy on another machine.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let running = app
            .containers()
            .await
            .into_iter()
            .filter(|c| c.running() && c.host.is_some_and(|h| h.to_string() != lost))
            .count();
        if running == 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the lost copy was never placed again"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!(
        "swarm: the lost copy runs elsewhere {:?} after the cut",
        t2.elapsed()
    );
    // Routed once the next pass sees it and HAProxy's first check passes.
    let deadline = Instant::now() + Duration::from_secs(15);
    while answering(&app, 30).await.len() < 3 {
        assert!(
            Instant::now() < deadline,
            "the third copy never answered again"
        );
    }
    println!(
        "swarm: three copies answer again {:?} after the cut",
        t2.elapsed()
    );
    drop(cut);
}

#[sqlx::test(migrations = "../migrations")]
async fn a_failed_deployment_keeps_the_copies_and_a_drain_moves_one(db: SqlitePool) {
    let _one = SWARM.lock().await;
    let swarm = Swarm::from_env();
    swarm.reactivate_all();
    let app = TestApp::on_swarm(db, swarm.socket(), &swarm.registry).await;
    let _tidy = Tidy {
        swarm: Swarm::from_env(),
        instance: app.instance.clone(),
    };
    let mut ann = member(&app, &swarm).await;
    save_image(
        &mut ann,
        &swarm,
        "create_app",
        ("name", "site"),
        "v1",
        "hello:1",
        "2",
    )
    .await;
    domain(&mut ann, "add_domain", "swarm.pier.test", "site").await;
    until_running(&mut ann, "site", 1).await;
    until_serves(&app, "swarm.pier.test", (200, "v1"), 30).await;
    let before: BTreeSet<String> = app.containers().await.into_iter().map(|c| c.id).collect();
    assert_eq!(before.len(), 2);

    // An image that never answers: the deployment fails and says which copy; its services go;
    // the two copies of #1 go on serving.
    save_image(
        &mut ann,
        &swarm,
        "update_app",
        ("app", "site"),
        "v2",
        "sleeper:1",
        "2",
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(90);
    let why = loop {
        let d = detail(&mut ann, "site").await;
        if let Some(p) = d["row"]["problem"].as_str() {
            break p.to_owned();
        }
        assert!(Instant::now() < deadline, "never failed: {d:#}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(why.starts_with("Deployment #2 failed: Replica "), "{why}");
    assert!(why.contains("never became healthy"), "{why}");
    assert!(
        why.contains("The previous deployment keeps serving."),
        "{why}"
    );
    assert_eq!(https(&app, "swarm.pier.test").await, (200, "v1".into()));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now: BTreeSet<String> = app.containers().await.into_iter().map(|c| c.id).collect();
        if now == before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the failed copies stayed: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // Draining a machine from the admin API moves its copy; the app keeps answering.
    let admin = app.token(crate::common::ADMIN_EMAIL, "admin").await;
    let on = app
        .containers()
        .await
        .into_iter()
        .find_map(|c| c.host)
        .unwrap()
        .to_string();
    let nodes = app.api("GET", "/nodes", Some(&admin), None).await.json();
    let node = nodes["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["address"] == on.as_str())
        .unwrap_or_else(|| panic!("no node at {on}: {nodes:#}"))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let load = Load::start(&app, "swarm.pier.test", "/");
    let r = app
        .api(
            "PATCH",
            &format!("/nodes/{node}"),
            Some(&admin),
            Some(json!({"availability": "drain"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs(60);
    loop {
        let cs = app.containers().await;
        let moved = cs.iter().filter(|c| c.running()).count() == 2
            && cs
                .iter()
                .filter(|c| c.running())
                .all(|c| c.host.is_some_and(|h| h.to_string() != on));
        if moved {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the copy never left {on}: {cs:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let moved = t0.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (ok, failed) = load.stop();
    println!(
        "swarm: drained {on}: its copy ran elsewhere after {moved:?}; {ok} answered, {} failed",
        failed.len()
    );
    assert!(ok >= 20, "the load ran ({ok} requests)");
    assert!(failed.len() <= 4, "failed requests: {failed:?}");
    assert_eq!(https(&app, "swarm.pier.test").await, (200, "v1".into()));
}
