//! The Swarm's machines on the admin page and in the REST API, against a real three-engine
//! Swarm (`scripts/swarm.sh up`: three dockerd in network namespaces of their own).

use std::{
    process::Command,
    time::{Duration, Instant},
};

use axum::http::StatusCode;
use serde_json::{json, Value};
use sqlx::SqlitePool;

use test_support::swarm::{Cut, Swarm};

use crate::common::{TestApp, SWARM};

/// A service made straight on the Swarm (not through Pier), removed when dropped, with a
/// Docker client configuration of its own for the registry login.
struct RawService {
    manager: String,
    name: String,
    config: std::path::PathBuf,
}

impl RawService {
    fn create(s: &Swarm, name: &str, replicas: u32) -> RawService {
        let config = std::env::temp_dir().join(format!("pier-swarm-cli-{}", std::process::id()));
        std::fs::create_dir_all(&config).unwrap();
        let svc = RawService {
            manager: s.manager.clone(),
            name: name.to_owned(),
            config,
        };
        let password = std::env::var("PIER_TEST_REGISTRY_PASSWORD").expect("services env");
        let user = std::env::var("PIER_TEST_REGISTRY_USER").expect("services env");
        let login = svc
            .docker(&["login", "-u", &user, "--password", &password, &s.registry])
            .output()
            .unwrap();
        assert!(login.status.success(), "{login:?}");
        let out = svc
            .docker(&[
                "service",
                "create",
                "-d",
                "--name",
                name,
                "--label",
                "pier.test=1",
                "--with-registry-auth",
                "--replicas",
                &replicas.to_string(),
                &format!("{}/pier-test/sleeper:1", s.registry),
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        svc
    }

    fn docker(&self, args: &[&str]) -> Command {
        let mut c = Command::new("docker");
        c.env("DOCKER_CONFIG", &self.config)
            .args(["-H", &self.manager])
            .args(args);
        c
    }

    /// Nodes (hostnames) of the tasks meant to run.
    fn placed(&self) -> Vec<String> {
        let out = self
            .docker(&[
                "service",
                "ps",
                &self.name,
                "--filter",
                "desired-state=running",
                "--format",
                "{{.Node}} {{.CurrentState}}",
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains("Running"))
            .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
            .collect()
    }
}

impl Drop for RawService {
    fn drop(&mut self) {
        let _ = self.docker(&["service", "rm", &self.name]).output();
        let _ = std::fs::remove_dir_all(&self.config);
        Swarm::from_env().reactivate_all();
    }
}

async fn nodes(app: &TestApp, token: &str) -> Value {
    let r = app.api("GET", "/nodes", Some(token), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.json()
}

fn by_host<'a>(nodes: &'a Value, host: &str) -> &'a Value {
    nodes["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["hostname"] == host)
        .unwrap_or_else(|| panic!("no {host} in {nodes:#}"))
}

#[sqlx::test(migrations = "../migrations")]
async fn the_admin_sees_the_machines_and_drains_one(db: SqlitePool) {
    let _one = SWARM.lock().await;
    let s = Swarm::from_env();
    s.reactivate_all();
    let app = TestApp::on_engine(db, s.socket()).await;
    let admin = app.token(crate::common::ADMIN_EMAIL, "admin").await;

    let all = nodes(&app, &admin).await;
    assert_eq!(all["swarm"], true, "{all:#}");
    let list = all["nodes"].as_array().unwrap();
    assert_eq!(list.len(), s.addrs.len(), "{all:#}");
    // The manager first, every machine ready and at its own address.
    assert_eq!(list[0]["role"], "manager");
    assert_eq!(list[0]["leader"], true);
    let mut addrs: Vec<&str> = list
        .iter()
        .map(|n| n["address"].as_str().unwrap())
        .collect();
    addrs.sort();
    assert_eq!(
        addrs,
        s.addrs.iter().map(String::as_str).collect::<Vec<_>>()
    );
    for n in list {
        assert_eq!(n["state"], "ready", "{n:#}");
        assert_eq!(n["availability"], "active", "{n:#}");
        assert!(n["memory_mb"].as_i64().unwrap() > 0, "{n:#}");
    }
    let join = all["join_command"].as_str().unwrap();
    assert!(
        join.starts_with("docker swarm join --token SWMTKN-")
            && join.ends_with(&format!("{}:2377", s.addrs[0])),
        "{join}"
    );

    // A member sees none of it, with a member's token or a session.
    app.member("mia@example.com").await;
    let member = app.token("mia@example.com", "write").await;
    let r = app.api("GET", "/nodes", Some(&member), None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);

    // Three tasks, one per machine; draining the last worker moves its task to the others.
    let svc = RawService::create(&s, &format!("pier-nodes-{}", std::process::id()), 3);
    let deadline = Instant::now() + Duration::from_secs(60);
    while svc.placed().len() < 3 {
        assert!(
            Instant::now() < deadline,
            "tasks never ran: {:?}",
            svc.placed()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let victim = list.last().unwrap()["hostname"]
        .as_str()
        .unwrap()
        .to_owned();
    let id = list.last().unwrap()["id"].as_str().unwrap().to_owned();
    assert_eq!(by_host(&nodes(&app, &admin).await, &victim)["tasks"], 1);

    let r = app
        .api(
            "PATCH",
            &format!("/nodes/{id}"),
            Some(&admin),
            Some(json!({"availability": "drain"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["availability"], "drain");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let placed = svc.placed();
        if placed.len() == 3 && !placed.contains(&victim) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the drained machine kept its task: {placed:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let after = nodes(&app, &admin).await;
    assert_eq!(by_host(&after, &victim)["availability"], "drain");
    assert_eq!(by_host(&after, &victim)["tasks"], 0, "{after:#}");

    // The admin page shows the machines, the drained one as such, and how to add one.
    let mut browser = app.admin().await;
    let page = browser.get("/admin/users").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains("data-testid=\"machines\""),
        "{}",
        page.body
    );
    assert!(page.body.contains("no (drained)"), "{}", page.body);
    assert!(
        page.body.contains("docker swarm join --token"),
        "{}",
        page.body
    );

    // Bad input: an unknown availability, a node that does not exist, an id that cannot be one.
    let r = app
        .api(
            "PATCH",
            &format!("/nodes/{id}"),
            Some(&admin),
            Some(json!({"availability": "off"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert!(
        r.body.contains("Choose active, pause or drain."),
        "{}",
        r.body
    );
    for bad in [
        "zzzzzzzzzzzzzzzzzzzzzzzzz",
        "..%2Fetc",
        "Robert%27%29%3B%20DROP",
    ] {
        let r = app
            .api(
                "PATCH",
                &format!("/nodes/{bad}"),
                Some(&admin),
                Some(json!({"availability": "drain"})),
            )
            .await;
        assert!(
            r.status == StatusCode::NOT_FOUND || r.status == StatusCode::BAD_REQUEST,
            "{bad}: {} {}",
            r.status,
            r.body
        );
    }

    // The last machines taking tasks: draining all of them is refused at the last one.
    let others: Vec<(String, String)> = list[..list.len() - 1]
        .iter()
        .map(|n| {
            (
                n["id"].as_str().unwrap().to_owned(),
                n["hostname"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for (i, (other, host)) in others.iter().enumerate() {
        let r = app
            .api(
                "PATCH",
                &format!("/nodes/{other}"),
                Some(&admin),
                Some(json!({"availability": "pause"})),
            )
            .await;
        if i + 1 < others.len() {
            assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        } else {
            assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
            assert!(
                r.body
                    .contains(&format!("{host} is the only machine that takes tasks")),
                "{}",
                r.body
            );
        }
    }

    // Everything back to active; the Swarm agrees.
    for n in list {
        let r = app
            .api(
                "PATCH",
                &format!("/nodes/{}", n["id"].as_str().unwrap()),
                Some(&admin),
                Some(json!({"availability": "active"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    let out = svc
        .docker(&["node", "ls", "--format", "{{.Availability}}"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines().all(|l| l == "Active") && text.lines().count() == list.len(),
        "{text}"
    );

    // Each change is in the audit log, by node.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM audit_log WHERE action = 'node.availability' AND object_name = ?",
        )
        .bind(&id)
        .fetch_one(app.pier.db())
        .await
        .unwrap();
        if n >= 2 {
            break;
        }
        assert!(Instant::now() < deadline, "no audit entries for {id}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn a_single_engine_has_no_machines_to_steer(db: SqlitePool) {
    let app = TestApp::new(db).await;
    let admin = app.token(crate::common::ADMIN_EMAIL, "admin").await;
    let all = nodes(&app, &admin).await;
    assert_eq!(
        all,
        json!({"swarm": false, "nodes": [], "join_command": null})
    );
    let r = app
        .api(
            "PATCH",
            "/nodes/abcdefghijklmnopqrstuvwxy",
            Some(&admin),
            Some(json!({"availability": "drain"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    let mut browser = app.admin().await;
    let page = browser.get("/admin/users").await;
    assert!(!page.body.contains("data-testid=\"machines\""));
}

async fn told(app: &TestApp, kind: &str) -> Vec<String> {
    sqlx::query_scalar("SELECT body FROM notifications WHERE kind = ? ORDER BY id")
        .bind(kind)
        .fetch_all(app.pier.db())
        .await
        .unwrap()
}

#[sqlx::test(migrations = "../migrations")]
async fn admins_hear_when_a_machine_is_lost_and_when_it_is_back(db: SqlitePool) {
    let _one = SWARM.lock().await;
    let s = Swarm::from_env();
    s.reactivate_all();
    let app = TestApp::on_engine(db, s.socket()).await;
    let admin = app.token(crate::common::ADMIN_EMAIL, "admin").await;
    let last = s.addrs.len();
    let host = format!("pier-node{last}");
    // All ready before the cut (an earlier test's cut may still be healing).
    let deadline = Instant::now() + Duration::from_secs(60);
    while nodes(&app, &admin).await["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n["state"] != "ready")
    {
        assert!(Instant::now() < deadline, "the Swarm is not all ready");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let cut = Cut::new(last);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(60);
    let body = loop {
        if let Some(b) = told(&app, "node.down").await.pop() {
            break b;
        }
        assert!(Instant::now() < deadline, "no node.down notification");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let noticed = started.elapsed();
    assert!(
        body.contains(&host) && body.contains(&s.addrs[last - 1]),
        "{body}"
    );
    let down = by_host(&nodes(&app, &admin).await, &host).clone();
    assert_ne!(down["state"], "ready", "{down:#}");
    // The admin page says so.
    let mut browser = app.admin().await;
    let page = browser.get("/admin/users").await.body;
    let row = page
        .split("data-testid=\"machine\"")
        .find(|r| r.contains(&format!("data-hostname=\"{host}\"")))
        .unwrap_or_else(|| panic!("no row for {host}: {page}"));
    assert!(
        row.contains(">down<") || row.contains(">disconnected<"),
        "{row}"
    );

    drop(cut);
    let deadline = Instant::now() + Duration::from_secs(60);
    let back = loop {
        if let Some(b) = told(&app, "node.back").await.pop() {
            break b;
        }
        assert!(Instant::now() < deadline, "no node.back notification");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert!(back.contains(&host), "{back}");
    assert_eq!(by_host(&nodes(&app, &admin).await, &host)["state"], "ready");
    // Told once each.
    assert_eq!(told(&app, "node.down").await.len(), 1);
    assert_eq!(told(&app, "node.back").await.len(), 1);
    println!("a machine cut off was told as down after {noticed:?}");
}
