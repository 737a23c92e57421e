//! Real apps against real components: images built the way the official nginx, postgres and
//! redis images are (Debian packages; an entrypoint that runs as root, chowns its data and
//! drops to a service user), a small web app that uses postgres and redis by name, size-limited
//! volumes, internal apps and tenant isolation. `scripts/services.sh start` builds the images
//! (from a debootstrapped Debian root file system) and pushes them to the local registry.
//! Traffic goes only to 127.0.0.1 and to addresses of containers this test's dockerd made.

use crate::common;

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::docker_cli::{docker, exec, inspect};
use common::{registry, TestApp};
use serde_json::{json, Value};
use sqlx::SqlitePool;

fn image(name: &str) -> String {
    format!("{}/pier-test/{name}", registry().0)
}

/// A member with a write token and a login for the test registry.
async fn tenant(app: &TestApp, email: &str) -> String {
    let _ = app.member(email).await;
    let t = app.token(email, "write").await;
    let (host, user, pw) = registry();
    let r = app
        .api(
            "PUT",
            &format!("/registries/{host}"),
            Some(&t),
            Some(json!({"username": user, "password": pw})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    t
}

async fn create(app: &TestApp, t: &str, body: Value) {
    let r = app.api("POST", "/apps", Some(t), Some(body)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
}

async fn show(app: &TestApp, t: &str, name: &str) -> Value {
    let r = app
        .api("GET", &format!("/apps/{name}"), Some(t), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.json()
}

/// Polls the app until `pred` holds; panics with the last state after `secs`.
async fn until(
    app: &TestApp,
    t: &str,
    name: &str,
    secs: u64,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let a = show(app, t, name).await;
        if pred(&a) {
            return a;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {name}; last: {a:#}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn serving(n: i64) -> impl Fn(&Value) -> bool {
    move |a| a["state"] == "running" && a["current_deployment"] == n
}

/// The running container of an app (the newest, should a replaced one still be draining).
async fn container(app: &TestApp, t: &str, name: &str) -> String {
    let tenant = show(app, t, name).await;
    assert!(
        tenant["current_deployment"].is_i64(),
        "{name} is not deployed"
    );
    let all = app.containers().await;
    all.iter()
        .filter(|c| c.running() && c.name.contains(&format!("-{name}-d")))
        .max_by_key(|c| c.created)
        .map(|c| c.id.clone())
        .unwrap_or_else(|| panic!("no running container for {name}: {all:#?}"))
}

/// An app of the busybox test image (answering on 8080), deployed and serving: its container.
async fn hello_app(app: &TestApp, t: &str, name: &str) -> String {
    create(
        app,
        t,
        json!({"name": name, "image": image("hello:1"), "port": 8080}),
    )
    .await;
    until(app, t, name, 90, serving(1)).await;
    container(app, t, name).await
}

/// A container's (only) network, as Docker shows it in the container's settings.
fn network_of(container: &str) -> Value {
    inspect(container)["NetworkSettings"]["Networks"]
        .as_object()
        .and_then(|n| n.values().next().cloned())
        .expect("a network")
}

/// Runs a program on the host: whether it exited with success.
fn succeeds(program: &str, args: &[&str]) -> bool {
    std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap()
        .status
        .success()
}

/// One HTTP/1.0 request to a loopback port: (status, body).
async fn http(port: u16, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let req = format!(
        "{method} {path} HTTP/1.0\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.ok()?;
    let mut buf = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut buf))
        .await
        .ok()?
        .ok()?;
    let (head, body) = buf.split_once("\r\n\r\n")?;
    let code = head.get(9..12)?.parse().ok()?;
    Some((code, body.to_owned()))
}

/// The notes app's page, once it answers 200.
async fn notes_page(app: &TestApp, t: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let port = show(app, t, "notes").await["host_port"].as_u64();
        if let Some(port) = port {
            if let Some((200, body)) = http(port as u16, "GET", "/", "").await {
                return body;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the notes app never showed its page"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn host_uid(pid: i64) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|u| u.parse().ok())
        .expect("Uid line")
}

#[sqlx::test(migrations = "../migrations")]
async fn official_style_images_need_the_default_profile(db: SqlitePool) {
    let app = TestApp::new(db).await;
    let t = tenant(&app, "ann@example.com").await;
    let info = app.pier.runtime().info().await.expect("docker info");

    // Strict: redis's entrypoint cannot chown its data; the failure names the capability.
    create(
        &app,
        &t,
        json!({"name": "cache", "image": image("redis:1"), "port": 6379,
               "kind": "internal", "capabilities": "strict"}),
    )
    .await;
    let failed = until(&app, &t, "cache", 90, |a| a["last_error"].is_string()).await;
    let err = failed["last_error"].as_str().unwrap();
    assert!(err.contains("CHOWN"), "{err}");
    assert!(err.contains("default capability profile"), "{err}");
    // A crash loop fails at once, with the exit, not after the health timeout.
    assert!(err.contains("exited with code 1"), "{err}");
    assert!(!err.contains("never became healthy"), "{err}");
    assert!(
        !err.contains("previous deployment keeps serving"),
        "a first deployment: {err}"
    );

    // Default profile: it starts, as the redis user, and answers on its port.
    let r = app
        .api(
            "PATCH",
            "/apps/cache",
            Some(&t),
            Some(json!({"capabilities": "default"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let a = until(&app, &t, "cache", 90, serving(2)).await;
    assert!(
        a["host_port"].is_null(),
        "an internal app publishes no port: {a}"
    );
    let id = container(&app, &t, "cache").await;
    let c = inspect(&id);
    assert_eq!(c["HostConfig"]["CapDrop"], json!(["ALL"]));
    let added: Vec<String> = serde_json::from_value(c["HostConfig"]["CapAdd"].clone()).unwrap();
    for cap in ["CHOWN", "SETUID", "SETGID", "DAC_OVERRIDE", "FOWNER"] {
        assert!(added.iter().any(|a| a.ends_with(cap)), "{cap} in {added:?}");
    }
    for cap in [
        "NET_RAW",
        "MKNOD",
        "AUDIT_WRITE",
        "SETFCAP",
        "SETPCAP",
        "SYS_ADMIN",
    ] {
        assert!(
            !added.iter().any(|a| a.ends_with(cap)),
            "{cap} in {added:?}"
        );
    }
    assert_eq!(c["HostConfig"]["PortBindings"], Value::Null);
    let (ok, out, err) = exec(&id, "redis-cli ping");
    assert!(ok && out.contains("PONG"), "{out} {err}");
    // The image declares VOLUME /data: Docker made an anonymous volume for it, which must go
    // with the container rather than pile up.
    let anonymous: Vec<String> = c["Mounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["Type"] == "volume")
        .map(|m| m["Name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(anonymous.len(), 1, "{:#}", c["Mounts"]);
    // Container root is not host root when the engine remaps users.
    let pid = c["State"]["Pid"].as_i64().unwrap();
    if info.user_namespaces {
        assert!(
            host_uid(pid) >= 100000,
            "PID 1 runs as host uid {}",
            host_uid(pid)
        );
    }

    // nginx: a root master and www-data workers, a web app on port 80.
    create(
        &app,
        &t,
        json!({"name": "site", "image": image("nginx:1"), "port": 80}),
    )
    .await;
    let a = until(&app, &t, "site", 90, serving(1)).await;
    let port = a["host_port"].as_u64().unwrap() as u16;
    let (code, body) = http(port, "GET", "/", "").await.expect("nginx answers");
    assert_eq!(code, 200);
    assert!(body.contains("hello from nginx"), "{body}");
    // The same image under strict fails and says why; the running one keeps serving.
    let r = app
        .api(
            "PATCH",
            "/apps/site",
            Some(&t),
            Some(json!({"capabilities": "strict"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let a = until(&app, &t, "site", 90, |a| a["last_error"].is_string()).await;
    let err = a["last_error"].as_str().unwrap();
    assert!(
        err.contains("CHOWN") && err.contains("default capability profile"),
        "{err}"
    );
    assert_eq!(a["current_deployment"], 1);
    assert_eq!(http(port, "GET", "/", "").await.map(|r| r.0), Some(200));

    // Deleting redis removes its anonymous volume too (and the strict deployment's before).
    let r = app.api("DELETE", "/apps/cache", Some(&t), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left: Vec<&String> = anonymous
            .iter()
            .filter(|v| docker(&["volume", "inspect", v.as_str()]).status.success())
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "anonymous volumes left: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn postgres_keeps_its_rows_and_apps_reach_each_other_by_name(db: SqlitePool) {
    let mut app = TestApp::new(db).await;
    let t = tenant(&app, "ann@example.com").await;
    create(
        &app,
        &t,
        json!({"name": "db", "image": image("postgres:1"), "port": 5432, "kind": "internal",
               "env": {"POSTGRES_PASSWORD": "pg-pass-123"}, "secret_env": ["POSTGRES_PASSWORD"],
               "memory_mb": 256,
               "volumes": [{"name": "db-data", "path": "/var/lib/postgresql/data", "size_mb": 256}]}),
    )
    .await;
    create(
        &app,
        &t,
        json!({"name": "cache", "image": image("redis:1"), "port": 6379, "kind": "internal",
               "volumes": [{"name": "cache-data", "path": "/data", "size_mb": 32}]}),
    )
    .await;
    create(
        &app,
        &t,
        json!({"name": "notes", "image": image("notes:1"), "port": 8080, "health_path": "/healthz",
               "env": {"DATABASE_URL": "postgres://postgres:pg-pass-123@db:5432/postgres",
                       "REDIS_URL": "redis://cache:6379/0"},
               "secret_env": ["DATABASE_URL"]}),
    )
    .await;
    until(&app, &t, "db", 120, serving(1)).await;
    until(&app, &t, "cache", 90, serving(1)).await;
    until(&app, &t, "notes", 90, serving(1)).await;

    let port = show(&app, &t, "notes").await["host_port"].as_u64().unwrap() as u16;
    let (code, body) = http(port, "POST", "/notes", "text=first-row")
        .await
        .expect("notes answers");
    assert_eq!(code, 201, "{body}");
    let page = notes_page(&app, &t).await;
    assert!(page.contains("first-row"), "{page}");
    assert!(page.contains("visits:"), "{page}");

    // A redeploy of the database replaces it stop-first and keeps the row.
    let r = app.api("POST", "/apps/db/redeploy", Some(&t), None).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    // The gap is written once the routes have switched, a moment after the promotion.
    let a = until(&app, &t, "db", 120, |a| {
        serving(2)(a) && a["last_redeploy_gap_ms"].is_i64()
    })
    .await;
    let gap = a["last_redeploy_gap_ms"]
        .as_i64()
        .expect("the gap is recorded");
    assert!(gap > 0 && gap < 60_000, "gap {gap} ms");
    assert!(notes_page(&app, &t).await.contains("first-row"));
    // Exactly one container of the database: two on one data directory would corrupt it.
    let dbs = app
        .containers()
        .await
        .into_iter()
        .filter(|c| c.name.contains("-db-d"))
        .count();
    assert_eq!(dbs, 1);

    // An image change and new env, then a rollback to #1: still the same data.
    let r = app
        .api(
            "PATCH",
            "/apps/db",
            Some(&t),
            Some(json!({"image": image("postgres:2"), "env": {"POSTGRES_PASSWORD": "", "TZ": "UTC"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    until(&app, &t, "db", 120, serving(3)).await;
    let (code, _) = http(port, "POST", "/notes", "text=second-row")
        .await
        .unwrap();
    assert_eq!(code, 201);
    let r = app
        .api(
            "POST",
            "/apps/db/rollback",
            Some(&t),
            Some(json!({"deployment": 1})),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    until(&app, &t, "db", 120, serving(4)).await;
    let page = notes_page(&app, &t).await;
    assert!(
        page.contains("first-row") && page.contains("second-row"),
        "{page}"
    );

    // A panel restart changes nothing.
    app.kill();
    let restarted = app.restarted().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(notes_page(&restarted, &t).await.contains("second-row"));

    // Tenant isolation: Bob's app neither resolves nor reaches Ann's database; Ann's own apps
    // reach each other by name (the positive control).
    let b = tenant(&restarted, "bob@example.com").await;
    let bob_probe = hello_app(&restarted, &b, "probe").await;
    let ann_notes = container(&restarted, &t, "notes").await;
    let ann_db = container(&restarted, &t, "db").await;
    let ann_db_ip = restarted
        .containers()
        .await
        .into_iter()
        .find(|c| c.id == ann_db)
        .and_then(|c| c.ip)
        .expect("the database has an address");
    let (ok, out, err) = exec(
        &ann_notes,
        "python3 -c \"import socket; socket.create_connection(('db', 5432), 3); print('reached')\"",
    );
    assert!(ok && out.contains("reached"), "{out} {err}");
    let (ok, _, err) = exec(&bob_probe, "nslookup db 2>&1 || getent hosts db");
    assert!(!ok || err.contains("can't"), "Bob resolved db: {err}");
    let _rules_stay = common::FIREWALL.read().await;
    let bob_reaches_ann = || {
        let (ok, out, err) = exec(
            &bob_probe,
            &format!("nc -w 3 {ann_db_ip} 5432 </dev/null && echo connected"),
        );
        (ok && out.contains("connected"), format!("{out} {err}"))
    };
    let (reached, said) = bob_reaches_ann();
    assert!(!reached, "Bob reached Ann's database: {said}");
    // Nor when Docker's own rules let the packets through: dockerd takes its isolation jump out
    // of FORWARD and puts it back each time it makes a network, and a connection opened in that
    // moment got through. Pier's rule comes first (the mangle table) and holds alone; ACCEPTs
    // for exactly these two bridges, both ways, first in the filter table, stand for that moment.
    let (bob_bridge, ann_bridge) = (bridge_of(&bob_probe), bridge_of(&ann_db));
    let _removed = [(&bob_bridge, &ann_bridge), (&ann_bridge, &bob_bridge)]
        .map(|(from, to)| Iptables::insert(&["FORWARD", "-i", from, "-o", to, "-j", "ACCEPT"]));
    let (reached, said) = bob_reaches_ann();
    assert!(
        !reached,
        "Bob reached Ann's database past Docker's isolation: {said}"
    );
    drop(restarted);
}

/// The name of the bridge of a container's (only) network.
fn bridge_of(container: &str) -> String {
    let id = network_of(container)["NetworkID"]
        .as_str()
        .unwrap()
        .to_owned();
    let out = docker(&[
        "network",
        "inspect",
        "-f",
        "{{index .Options \"com.docker.network.bridge.name\"}}",
        &id,
    ]);
    let name = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(name.starts_with("pb"), "bridge {name:?}");
    name
}

/// An iptables rule put first in the filter table for one test, taken out when dropped.
struct Iptables(Vec<String>);

impl Iptables {
    fn insert(rule: &[&str]) -> Self {
        let ok = succeeds("iptables", &[&["-w", "-I"], rule].concat());
        assert!(ok, "iptables -I {rule:?}");
        Iptables(rule.iter().map(|s| s.to_string()).collect())
    }
}

impl Drop for Iptables {
    fn drop(&mut self) {
        let mut delete = vec!["-w", "-D"];
        delete.extend(self.0.iter().map(String::as_str));
        succeeds("iptables", &delete);
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn a_volume_has_a_hard_size_and_outlives_its_app(db: SqlitePool) {
    let app = TestApp::new(db).await;
    let t = tenant(&app, "ann@example.com").await;
    create(
        &app,
        &t,
        json!({"name": "box", "image": image("hello:1"), "port": 8080,
               "volumes": [{"name": "small", "path": "/data", "size_mb": 16}]}),
    )
    .await;
    until(&app, &t, "box", 90, serving(1)).await;
    let id = container(&app, &t, "box").await;
    let (ok, _, err) = exec(
        &id,
        "echo keep-me > /data/marker && dd if=/dev/zero of=/data/fill bs=1M count=64",
    );
    assert!(!ok, "writing 64 MiB into a 16 MiB volume succeeded");
    assert!(err.contains("No space left on device"), "{err}");
    // The usage shows it full.
    let r = app.api("GET", "/volumes", Some(&t), None).await;
    let v = &r.json()["items"][0];
    let (used, total) = (
        v["used_bytes"].as_u64().unwrap(),
        v["total_bytes"].as_u64().unwrap(),
    );
    assert!(
        total <= 16 * 1024 * 1024 && used * 10 >= total * 9,
        "{used} of {total}"
    );
    let (ok, _, err) = exec(&id, "rm /data/fill");
    assert!(ok, "{err}");

    // As after a reboot: the app stopped, its loop device detached and the device link gone.
    // Starting it again attaches the file system again, with its data.
    let r = app.api("POST", "/apps/box/stop", Some(&t), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    until(&app, &t, "box", 60, |a| a["state"] == "stopped").await;
    let volume = format!("pier-{}-v1", app.instance);
    let image_file = common::volumes_dir().join(format!("{volume}.img"));
    let link = common::volumes_dir().join(format!("{volume}.dev"));
    let dev = std::fs::read_link(&link).expect("a device link");
    let detached = std::process::Command::new("losetup")
        .arg("-d")
        .arg(&dev)
        .status()
        .unwrap();
    assert!(detached.success());
    std::fs::remove_file(&link).unwrap();
    let r = app.api("POST", "/apps/box/start", Some(&t), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    until(&app, &t, "box", 60, serving(1)).await;
    let id = container(&app, &t, "box").await;
    let (ok, out, err) = exec(&id, "cat /data/marker");
    assert!(ok && out.trim() == "keep-me", "{out} {err}");
    assert!(std::fs::read_link(&link).is_ok(), "the link is back");

    // Deleted with its volume kept: the data waits, and a new app mounts it elsewhere.
    let r = app.api("DELETE", "/apps/box", Some(&t), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    create(
        &app,
        &t,
        json!({"name": "box2", "image": image("hello:1"), "port": 8080,
               "volumes": [{"name": "small", "path": "/srv"}]}),
    )
    .await;
    until(&app, &t, "box2", 90, serving(1)).await;
    let id2 = container(&app, &t, "box2").await;
    let (ok, out, err) = exec(&id2, "cat /srv/marker");
    assert!(ok && out.trim() == "keep-me", "{out} {err}");

    // Deleted with its data: the engine's volume and the file system go.
    let r = app
        .api("DELETE", "/apps/box2?keep_volumes=false", Some(&t), None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let name = volume;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let listed = docker(&["volume", "inspect", &name]).status.success();
        if !listed && !image_file.exists() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "volume {name} still there (engine: {listed})"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn containers_reach_nothing_on_the_host(db: SqlitePool) {
    let app = TestApp::new(db).await;
    let t = tenant(&app, "ann@example.com").await;
    // Something listening on every host address, the tenant bridge's gateway among them. On a
    // thread of its own: the test's runtime is blocked while `docker exec` runs, and a listener
    // on it would never answer, so that a fetch would fail even where nothing stopped it.
    let host_service = HostService::start();
    let (port, accepted) = (host_service.port, host_service.accepted.clone());
    let id = hello_app(&app, &t, "box").await;
    let network = network_of(&id);
    let gateway = network["Gateway"].as_str().unwrap().to_owned();
    assert!(!gateway.is_empty(), "{network}");
    // The host answers on the gateway address (from the host itself)...
    let (code, body) = {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect((gateway.as_str(), port))
            .await
            .unwrap();
        s.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
        let mut buf = String::new();
        s.read_to_string(&mut buf).await.unwrap();
        (buf.get(9..12).unwrap_or_default().to_owned(), buf)
    };
    assert_eq!(code, "200", "{body}");
    // This test takes the rules down below: no other test checks against them meanwhile.
    let _rules = common::FIREWALL.write().await;
    let before = accepted.load(std::sync::atomic::Ordering::SeqCst);
    // ...but not to the container (whose fetches work: the control).
    let (ok, said) = fetch_from(&id, "http://127.0.0.1:8080/");
    assert!(ok, "the container cannot fetch from itself: {said}");
    let (ok, said) = fetch_from(&id, &format!("http://{gateway}:{port}/"));
    assert!(
        !ok && !said.contains("host service"),
        "the container reached the host: {said}"
    );
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), before);

    // The admin page says the rules are in place; they come back when someone flushes them.
    let mut admin = app.admin().await;
    let r = admin.read("panel_status").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["engine"]["egress_enforced"], true, "{}", r.body);
    // And whether writable layers are bounded: here Docker's root is on ext4, which cannot.
    let storage = r.json()["engine"]["storage"].as_str().unwrap().to_owned();
    let bounded = ["overlay2 on xfs", "btrfs", "zfs"]
        .iter()
        .any(|s| storage.starts_with(s));
    assert_eq!(
        r.json()["engine"]["writable_layer_mb"].is_number(),
        bounded,
        "{}",
        r.body
    );
    // The engine runs on this host: the page says how published ports are reached.
    assert!(
        r.json()["engine"]["userland_proxy"].is_boolean(),
        "{}",
        r.body
    );
    // The running container carries the bound exactly when the driver allows one.
    let size = inspect(&id)["HostConfig"]["StorageOpt"]["size"].clone();
    assert_eq!(size.is_string(), bounded, "{size}");
    let jumps = [
        ["-t", "filter", "INPUT", "-i", "pb+", "-j", "PIER-INPUT"],
        ["-t", "mangle", "FORWARD", "-i", "pb+", "-j", "PIER-EGRESS"],
    ];
    let iptables = |op: &str, rule: &[&str]| {
        succeeds(
            "iptables",
            &[&["-w", rule[0], rule[1], op], &rule[2..]].concat(),
        )
    };
    for rule in &jumps {
        assert!(iptables("-C", rule), "{rule:?}");
        assert!(iptables("-D", rule), "{rule:?}");
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while !jumps.iter().all(|rule| iptables("-C", rule)) {
        assert!(Instant::now() < deadline, "the rules did not come back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Nothing of Pier's hangs from Docker's chains.
    let rules = std::process::Command::new("iptables-save")
        .output()
        .unwrap();
    let rules = String::from_utf8_lossy(&rules.stdout);
    assert!(!rules.contains("-A DOCKER-USER -i pb+"), "{rules}");
    let (ok, said) = fetch_from(&id, &format!("http://{gateway}:{port}/"));
    assert!(!ok, "the container reached the host: {said}");
}

/// An HTTP answer ("host service") on every host address, served from a thread, counting the
/// connections it accepted; stopped when dropped.
struct HostService {
    port: u16,
    accepted: std::sync::Arc<std::sync::atomic::AtomicU32>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HostService {
    fn start() -> Self {
        use std::io::{Read, Write};
        use std::sync::atomic::Ordering::SeqCst;
        let listener = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (counter, stopped) = (accepted.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for s in listener.incoming() {
                if stopped.load(SeqCst) {
                    break;
                }
                let Ok(mut s) = s else { continue };
                counter.fetch_add(1, SeqCst);
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf);
                let _ = s.write_all(b"HTTP/1.0 200 OK\r\n\r\nhost service\n");
            }
        });
        HostService {
            port,
            accepted,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for HostService {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        // Wakes the thread's accept.
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `wget` in a container, given 5 s: whether it fetched `url`, and what it printed. (busybox
/// 1.35's `wget -T` crashes with a segmentation fault, which a test expecting a failure would
/// take for one: `timeout` bounds it instead.)
fn fetch_from(container: &str, url: &str) -> (bool, String) {
    let (ok, out, err) = exec(container, &format!("timeout 5 wget -q -O- {url}"));
    (ok, format!("{out} {err}"))
}

/// A link-local address (where clouds serve instance metadata, 169.254.169.254) is out of a
/// container's reach, while the host reaches it. The address is this test's own: a network
/// namespace holding 169.254.77.1 behind a veth pair, with a listener in it; nothing leaves the
/// machine.
#[sqlx::test(migrations = "../migrations")]
async fn containers_reach_no_link_local_address(db: SqlitePool) {
    let app = TestApp::new(db).await;
    let t = tenant(&app, "ann@example.com").await;
    let metadata = LinkLocal::start();
    let id = hello_app(&app, &t, "box").await;
    let url = format!("http://{}:{}/", LinkLocal::ADDRESS, LinkLocal::PORT);
    // The host reaches it (the positive control)... once the listener, a Python started in
    // the namespace, is up: on a loaded CI machine that once took longer than 10 s.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answered = tokio::time::timeout(
            Duration::from_secs(2),
            tokio::net::TcpStream::connect((LinkLocal::ADDRESS, LinkLocal::PORT)),
        )
        .await
        .is_ok_and(|c| c.is_ok());
        if answered {
            break;
        }
        assert!(Instant::now() < deadline, "the host cannot reach {url}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // ...a container does not (its fetches work: the control).
    let _rules_stay = common::FIREWALL.read().await;
    let (ok, said) = fetch_from(&id, "http://127.0.0.1:8080/");
    assert!(ok, "the container cannot fetch from itself: {said}");
    let (ok, said) = fetch_from(&id, &url);
    assert!(!ok, "the container reached {url}: {said}");
    drop(metadata);
}

/// A network namespace with a link-local address and a listener on it, routed from the host
/// through a veth pair; removed (and its listener stopped, by pid) when dropped.
struct LinkLocal {
    netns: String,
    listener: std::process::Child,
}

impl LinkLocal {
    const ADDRESS: &'static str = "169.254.77.1";
    const PORT: u16 = 8077;

    fn start() -> Self {
        let netns = format!("pier-ll-{}", std::process::id());
        let host_end = format!("pll{}", std::process::id() % 100_000);
        let ip = |args: &[&str]| assert!(succeeds("ip", args), "ip {args:?}");
        // A namespace left by an earlier run of this process id.
        succeeds("ip", &["netns", "del", &netns]);
        ip(&["netns", "add", &netns]);
        ip(&[
            "link", "add", &host_end, "type", "veth", "peer", "name", "eth0", "netns", &netns,
        ]);
        ip(&["addr", "add", "169.254.77.2/30", "dev", &host_end]);
        ip(&["link", "set", &host_end, "up"]);
        let inside = |args: &[&str]| {
            let mut all = vec!["netns", "exec", netns.as_str(), "ip"];
            all.extend(args);
            ip(&all);
        };
        inside(&["addr", "add", "169.254.77.1/30", "dev", "eth0"]);
        inside(&["link", "set", "eth0", "up"]);
        inside(&["link", "set", "lo", "up"]);
        inside(&["route", "add", "default", "via", "169.254.77.2"]);
        let listener = std::process::Command::new("ip")
            .args(["netns", "exec", &netns, "python3", "-m", "http.server"])
            .args(["--bind", Self::ADDRESS, &Self::PORT.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        LinkLocal { netns, listener }
    }
}

impl Drop for LinkLocal {
    fn drop(&mut self) {
        let _ = self.listener.kill();
        let _ = self.listener.wait();
        // The veth pair goes with the namespace.
        succeeds("ip", &["netns", "del", &self.netns]);
    }
}

/// HAProxy keeps its connections to an app open and reuses them (nginx keeps them alive): a
/// client's twenty requests open one connection to the app, not twenty. The app's server is
/// added through HAProxy's runtime API, which gives it no pool of idle connections unless asked.
#[sqlx::test(migrations = "../migrations")]
async fn haproxy_reuses_its_connections_to_an_app(db: SqlitePool) {
    let app = TestApp::with_proxy(db).await;
    let t = tenant(&app, "ann@example.com").await;
    create(
        &app,
        &t,
        json!({"name": "site", "image": image("nginx:1"), "port": 80}),
    )
    .await;
    until(&app, &t, "site", 90, serving(1)).await;
    let host = "site-ann.apps.pier.test";
    common::sites::until_serves(&app, host, (200, "hello from nginx"), 20).await;

    let counters = || async {
        let stat = pier::proxy::runtime::command(&app.proxy().config().stats_socket, "show stat")
            .await
            .expect("show stat");
        let mut lines = stat.lines();
        let head: Vec<&str> = lines
            .next()
            .unwrap()
            .trim_start_matches("# ")
            .split(',')
            .collect();
        let col = |name: &str| head.iter().position(|h| *h == name).unwrap();
        let (connect, reuse, sent) = (col("connect"), col("reuse"), col("stot"));
        let row: Vec<String> = lines
            .map(|l| l.split(',').map(str::to_owned).collect::<Vec<_>>())
            .find(|f| f[0].starts_with("app") && f[1].starts_with('e'))
            .expect("the app's server in show stat");
        let n = |i: usize| row[i].parse::<u64>().unwrap_or(0);
        (n(connect), n(reuse), n(sent))
    };
    let (c0, _, s0) = counters().await;
    let port = app.proxy().config().https_addr.port();
    let url = format!("https://{host}:{port}/");
    let out = tokio::process::Command::new("curl")
        .args([
            "-sk",
            "--max-time",
            "20",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}\n",
        ])
        .arg("--resolve")
        .arg(format!("{host}:{port}:127.0.0.1"))
        .args(std::iter::repeat_n(&url, 20))
        .output()
        .await
        .expect("curl");
    let codes = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(codes.lines().filter(|c| *c == "200").count(), 20, "{codes}");
    let (c1, reused, s1) = counters().await;
    assert_eq!(s1 - s0, 20, "twenty requests reached the app");
    assert!(
        c1 - c0 <= 2,
        "{} connections opened to the app for 20 requests (reused {reused})",
        c1 - c0
    );
}
