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

use crate::common::{docker_cli::docker, registry, sites::*, Browser, TestApp, SWARM};

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
        // Their tasks' containers gone from every machine: the next test's copies are placed
        // on empty machines (Swarm spreads by how many tasks each runs).
        let sockets = std::env::var("PIER_SWARM_SOCKETS").unwrap_or_default();
        let deadline = Instant::now() + Duration::from_secs(30);
        for socket in sockets.split_whitespace() {
            while Instant::now() < deadline {
                let out = docker(&["-H", socket, "ps", "-aq", "--filter", &label]);
                if out.stdout.iter().all(u8::is_ascii_whitespace) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(300));
            }
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

/// The Swarm to oneself (one test at a time), what tidies up after, and a panel on it. Bound
/// in this order, the panel stops first, then its services and networks go.
async fn on_swarm(db: SqlitePool) -> (tokio::sync::MutexGuard<'static, ()>, Swarm, Tidy, TestApp) {
    let one = SWARM.lock().await;
    let swarm = Swarm::from_env();
    swarm.reactivate_all();
    let app = TestApp::on_swarm(db, swarm.socket(), &swarm.registry).await;
    let tidy = Tidy {
        swarm: Swarm::from_env(),
        instance: app.instance.clone(),
    };
    (one, swarm, tidy, app)
}

/// A member whose registry login is for the Swarm's registry.
async fn member(app: &TestApp, swarm: &Swarm) -> Browser {
    member_as(app, swarm, "ann@example.com").await
}

async fn member_as(app: &TestApp, swarm: &Swarm, email: &str) -> Browser {
    let mut b = app.member(email).await;
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
    let (_one, swarm, _tidy, app) = on_swarm(db).await;
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
    // The app page says where each copy runs: a machine's address each.
    let d = detail(&mut ann, "site").await;
    let at: BTreeSet<String> = d["copies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c[2].as_str().unwrap().split(':').next().unwrap().to_owned())
        .collect();
    assert_eq!(at, swarm.addrs.iter().cloned().collect(), "{d:#}");
    let cfg = std::fs::read_to_string(&app.proxy().files().cfg).unwrap();
    for addr in &swarm.addrs {
        assert!(cfg.contains(&format!(" {addr}:")), "{addr} in {cfg}");
    }
    assert!(
        cfg.contains("check inter 1s fastinter 250ms fall 2"),
        "{cfg}"
    );

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
    // The copy on that machine, by the host name its container answers /host with.
    let on_lost = app
        .containers()
        .await
        .into_iter()
        .find(|c| c.running() && c.host.is_some_and(|h| h.to_string() == lost))
        .expect("a copy on machine 3");
    let lost_copy: String = task_of(&swarm, &on_lost.name).0.chars().take(12).collect();
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
    // The others answer, never the lost one (its copy may already run again elsewhere).
    let names = answering(&app, 20).await;
    assert!(names.len() >= 2, "the copies left answer: {names:?}");
    assert!(
        !names.contains(&lost_copy),
        "{lost_copy} answered: {names:?}"
    );
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
    let (_one, swarm, _tidy, app) = on_swarm(db).await;
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

/// A task of the service named `service`: (its container, the engine socket of its machine, its
/// address on its overlay network).
fn task_of(swarm: &Swarm, service: &str) -> (String, String, String) {
    let out = swarm
        .docker(&[
            "service",
            "ps",
            service,
            "-q",
            "--no-trunc",
            "--filter",
            "desired-state=running",
        ])
        .output()
        .unwrap();
    let task = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_else(|| panic!("no task of {service}"))
        .to_owned();
    let out = swarm
        .docker(&[
            "inspect",
            &task,
            "--format",
            "{{.Status.ContainerStatus.ContainerID}} {{range .NetworksAttachments}}{{range .Addresses}}{{.}} {{end}}{{end}}",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut words = text.split_whitespace();
    let container = words.next().unwrap().to_owned();
    let ip = words
        .next()
        .and_then(|a| a.split('/').next())
        .unwrap_or_else(|| panic!("no overlay address: {text}"))
        .to_owned();
    let sockets = std::env::var("PIER_SWARM_SOCKETS").expect("swarm env");
    let socket = sockets
        .split_whitespace()
        .find(|s| {
            docker(&["-H", s, "inspect", "--format", "{{.Id}}", &container])
                .status
                .success()
        })
        .unwrap_or_else(|| panic!("no machine runs {container}"))
        .to_owned();
    (container, socket, ip)
}

/// An HTTP GET of `/` on `ip:8080` from inside a task's container (busybox `nc`: the static
/// busybox's own name lookups do not work in a container): the body, or None when nothing came.
fn fetch_from(container: &(String, String, String), ip: &str) -> Option<String> {
    let script = format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {ip} 8080");
    let out = docker(&[
        "-H",
        &container.1,
        "exec",
        &container.0,
        "sh",
        "-c",
        &script,
    ]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.split("\r\n\r\n")
        .nth(1)
        .map(|b| b.trim().to_owned())
        .filter(|b| !b.is_empty())
}

/// Whether `name` resolves on the task's networks (Swarm's DNS, asked with `nslookup`).
fn resolves_from(container: &(String, String, String), name: &str) -> bool {
    let out = docker(&["-H", &container.1, "exec", &container.0, "nslookup", name]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.split("Name:")
        .nth(1)
        .is_some_and(|a| a.contains("Address"))
}

/// The Swarm's name of an app's service: its copy `replica` of its serving deployment.
async fn service_of(app: &TestApp, name: &str, replica: i64) -> String {
    app.containers()
        .await
        .into_iter()
        .filter(|c| c.running() && c.replica() == replica)
        .find(|c| c.name.contains(&format!("-{name}-d")))
        .unwrap_or_else(|| panic!("no copy {replica} of {name}"))
        .name
}

#[sqlx::test(migrations = "../migrations")]
async fn tenants_stay_apart_on_overlays_and_volumes_keep_an_app_on_the_manager(db: SqlitePool) {
    let (_one, swarm, _tidy, app) = on_swarm(db).await;
    let mut ann = member_as(&app, &swarm, "ann@example.com").await;
    let mut bob = member_as(&app, &swarm, "bob@example.com").await;
    save_image(
        &mut ann,
        &swarm,
        "create_app",
        ("name", "site"),
        "ann",
        "hello:1",
        "2",
    )
    .await;
    save_image(
        &mut bob,
        &swarm,
        "create_app",
        ("name", "other"),
        "bob",
        "hello:1",
        "1",
    )
    .await;
    until_running(&mut ann, "site", 1).await;
    until_running(&mut bob, "other", 1).await;

    // Ann's copies reach each other on her overlay network; Bob's task cannot reach them.
    let ann0 = task_of(&swarm, &service_of(&app, "site", 0).await);
    let ann1 = task_of(&swarm, &service_of(&app, "site", 1).await);
    let bob0 = task_of(&swarm, &service_of(&app, "other", 0).await);
    assert_eq!(
        fetch_from(&ann0, &ann1.2).as_deref(),
        Some("ann"),
        "a tenant's copies reach each other"
    );
    // By the app's name too (Swarm's DNS on her overlay); Bob's network does not know it.
    assert!(resolves_from(&ann1, "site"));
    assert!(!resolves_from(&bob0, "site"));
    for target in [&ann0.2, &ann1.2] {
        assert_eq!(
            fetch_from(&bob0, target),
            None,
            "bob reached ann's task at {target}"
        );
    }

    // An app with a volume runs on the manager, where its volume is.
    let r = ann
        .call(
            "create_app",
            &[
                ("name", "db"),
                ("image", &format!("{}/pier-test/hello:1", swarm.registry)),
                ("port", "8080"),
                ("health_path", "/healthz"),
                ("volumes[0][name]", "data"),
                ("volumes[0][path]", "/data"),
                ("volumes[0][size_mb]", "32"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    until_running(&mut ann, "db", 1).await;
    let db = app
        .containers()
        .await
        .into_iter()
        .find(|c| c.running() && c.name.contains("-db-d"))
        .unwrap();
    assert_eq!(
        db.host.map(|h| h.to_string()).as_deref(),
        Some(swarm.addrs[0].as_str()),
        "pinned to the manager"
    );
    // Its data outlives a redeploy (stop-first: the old task stops before the new one starts).
    let exec = |task: &(String, String, String), script: &str| {
        let out = docker(&["-H", &task.1, "exec", &task.0, "sh", "-c", script]);
        assert!(out.status.success(), "{script}: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let first = task_of(&swarm, &db.name);
    exec(&first, "echo kept > /data/note");
    let r = ann
        .call("app_action", &[("app", "db"), ("action", "redeploy")])
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    until_running(&mut ann, "db", 2).await;
    let second = task_of(&swarm, &service_of(&app, "db", 0).await);
    assert_ne!(second.0, first.0, "a new task");
    assert_eq!(exec(&second, "cat /data/note"), "kept");
}
