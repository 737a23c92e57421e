//! Routing through a real HAProxy that the panel starts and supervises, to real containers
//! (dockerd + the local registry's busybox images). Every request goes to 127.0.0.1: HAProxy's
//! loopback ports, with the host name given to curl by `--resolve`.

use crate::common;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use axum::http::StatusCode;
use common::{sites::*, TestApp};
use pier::proxy::Proxy;
use sqlx::SqlitePool;

#[sqlx::test(migrations = "../migrations")]
async fn hosts_reach_their_tenants_apps_and_routes_change_without_a_reload(db: SqlitePool) {
    let app = TestApp::with_proxy(db).await;
    let mut ann = tenant(&app, "ann@example.com").await;
    let mut bob = tenant(&app, "bob@example.com").await;
    create(&mut ann, "site", "ann's site").await;
    create(&mut bob, "site", "bob's site").await;
    create(&mut ann, "two", "ann's second").await;
    domain(&mut ann, "add_domain", "ann.pier.test", "site").await;
    domain(&mut bob, "add_domain", "bob.pier.test", "site").await;
    until_running(&mut ann, "site", 1).await;
    until_running(&mut bob, "site", 1).await;
    until_running(&mut ann, "two", 1).await;

    // Each host to its tenant's app, over HTTPS; the platform names too.
    until_serves(&app, "ann.pier.test", (200, "ann's site"), 10).await;
    until_serves(&app, "bob.pier.test", (200, "bob's site"), 10).await;
    assert_eq!(
        https(&app, "site-ann.apps.pier.test").await,
        (200, "ann's site".into())
    );
    assert_eq!(
        https(&app, "site-bob.apps.pier.test").await,
        (200, "bob's site".into())
    );
    assert_eq!(
        https(&app, "two-ann.apps.pier.test").await,
        (200, "ann's second".into())
    );
    // Host names are case-insensitive and may carry the port.
    let port = app.proxy().config().https_addr.port();
    let out = std::process::Command::new("curl")
        .args([
            "-sk",
            "--max-time",
            "5",
            "-H",
            &format!("Host: ANN.Pier.Test:{port}"),
        ])
        .arg("--resolve")
        .arg(format!("ann.pier.test:{port}:127.0.0.1"))
        .arg(format!("https://ann.pier.test:{port}/"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ann's site");
    // The app page lists where it answers.
    let d = detail(&mut ann, "site").await;
    assert_eq!(
        d["hosts"],
        serde_json::json!([
            "ann.pier.test",
            "site--ann.apps.pier.test",
            "site-ann.apps.pier.test"
        ])
    );
    // Unknown host: HAProxy's own 404.
    let (s, body) = https(&app, "nobody.pier.test").await;
    assert_eq!(s, 404);
    assert!(body.contains("No site is served"), "{body}");
    // The panel, through HAProxy on its own host name.
    let (s, b, _) = request(&app, "https", "panel.pier.test", "/healthz").await;
    assert_eq!(s, 200, "{b}");
    // Plain HTTP: redirect to HTTPS, except ACME challenges (they reach the panel).
    let (s, _, to) = request(&app, "http", "ann.pier.test", "/x?y=1").await;
    assert_eq!(s, 301);
    let https_port = app.proxy().config().https_addr.port();
    assert_eq!(to, format!("https://ann.pier.test:{https_port}/x?y=1"));
    let (s, _, _) = request(
        &app,
        "http",
        "ann.pier.test",
        "/.well-known/acme-challenge/abc",
    )
    .await;
    assert_ne!(s, 301, "ACME challenges are not redirected");

    // Add, move, detach and delete a domain: effective at once, same HAProxy workers.
    let workers = app.proxy().workers().await.unwrap();
    assert!(!workers.is_empty());
    let mut took = Vec::new();
    domain(&mut ann, "add_domain", "www.ann.pier.test", "site").await;
    took.push(until_serves(&app, "www.ann.pier.test", (200, "ann's site"), 3).await);
    domain(&mut ann, "attach_domain", "www.ann.pier.test", "two").await;
    took.push(until_serves(&app, "www.ann.pier.test", (200, "ann's second"), 3).await);
    domain(&mut ann, "attach_domain", "www.ann.pier.test", "").await;
    took.push(until_serves(&app, "www.ann.pier.test", (404, "No site"), 3).await);
    domain(&mut ann, "attach_domain", "www.ann.pier.test", "site").await;
    took.push(until_serves(&app, "www.ann.pier.test", (200, "ann's site"), 3).await);
    let r = ann
        .call("remove_domain", &[("domain", "www.ann.pier.test")])
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    took.push(until_serves(&app, "www.ann.pier.test", (404, "No site"), 3).await);
    println!("route changes effective after {took:?}");
    assert_eq!(app.proxy().workers().await.unwrap(), workers, "no reload");
    // Stopping an app takes its routes away; starting it brings them back.
    let r = ann
        .call("app_action", &[("app", "two"), ("action", "stop")])
        .await;
    assert_eq!(r.status, StatusCode::OK);
    until_serves(&app, "two-ann.apps.pier.test", (404, "No site"), 15).await;
    let r = ann
        .call("app_action", &[("app", "two"), ("action", "start")])
        .await;
    assert_eq!(r.status, StatusCode::OK);
    until_serves(&app, "two-ann.apps.pier.test", (200, "ann's second"), 15).await;

    // HAProxy dies: the panel starts it again and every route comes back from the files.
    let pid: i32 = std::fs::read_to_string(&app.proxy().files().pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let mut victims = vec![pid.to_string()];
    victims.extend(workers.iter().map(|w| w.to_string()));
    std::process::Command::new("kill")
        .arg("-KILL")
        .args(&victims)
        .status()
        .unwrap();
    until_serves(&app, "ann.pier.test", (200, "ann's site"), 15).await;
    until_serves(&app, "bob.pier.test", (200, "bob's site"), 3).await;
    assert_eq!(https(&app, "site-ann.apps.pier.test").await.0, 200);
    // A route sync that failed while HAProxy was down reloads the new one from the files;
    // its master does not answer while it re-executes itself, so look until it does.
    let deadline = Instant::now() + Duration::from_secs(10);
    let new_workers = loop {
        match app.proxy().workers().await {
            Ok(w) if !w.is_empty() => break w,
            r => assert!(
                Instant::now() < deadline,
                "the new HAProxy's master never answered: {r:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        new_workers.iter().all(|w| !workers.contains(w)),
        "a new HAProxy"
    );

    // The panel restarts: HAProxy kept serving meanwhile, and the new panel adopts it.
    let mut app = app;
    app.kill();
    assert_eq!(
        https(&app, "ann.pier.test").await,
        (200, "ann's site".into())
    );
    let again = app.restarted().await;
    assert_eq!(
        again.proxy().workers().await.unwrap(),
        new_workers,
        "adopted, not restarted"
    );
    assert_eq!(
        https(&again, "bob.pier.test").await,
        (200, "bob's site".into())
    );
    // The new panel changes routes in the adopted HAProxy.
    let mut ann = again.browser();
    ann.sign_in("ann@example.com", "member password 1")
        .await
        .unwrap();
    domain(&mut ann, "attach_domain", "ann.pier.test", "two").await;
    until_serves(&again, "ann.pier.test", (200, "ann's second"), 3).await;
    drop(again);
    // `app` (dropped last) stops HAProxy by its pid file and sweeps the containers.
}

/// ann-lee's `blog` and lee's `blog-ann` both made `blog-ann-lee.<base>` the old way: that name
/// now goes to neither, each `--` name to its own app, and an old name no one shares still works.
#[sqlx::test(migrations = "../migrations")]
async fn an_ambiguous_platform_name_routes_to_no_one(db: SqlitePool) {
    let app = TestApp::with_proxy(db).await;
    let mut ann = tenant(&app, "ann.lee@example.com").await;
    let mut lee = tenant(&app, "lee@example.com").await;
    create(&mut ann, "blog", "ann's blog").await;
    create(&mut lee, "blog-ann", "lee's blog-ann").await;
    until_running(&mut ann, "blog", 1).await;
    until_running(&mut lee, "blog-ann", 1).await;

    until_serves(
        &app,
        "blog--ann-lee.apps.pier.test",
        (200, "ann's blog"),
        10,
    )
    .await;
    until_serves(
        &app,
        "blog-ann--lee.apps.pier.test",
        (200, "lee's blog-ann"),
        10,
    )
    .await;
    // No tenant gets the shared old name.
    let (s, body) = https(&app, "blog-ann-lee.apps.pier.test").await;
    assert_eq!(s, 404, "{body}");
    assert!(body.contains("No site is served"), "{body}");
    // The app pages list only the names that route.
    assert_eq!(
        detail(&mut ann, "blog").await["hosts"],
        serde_json::json!(["blog--ann-lee.apps.pier.test"])
    );
    assert_eq!(
        detail(&mut lee, "blog-ann").await["hosts"],
        serde_json::json!(["blog-ann--lee.apps.pier.test"])
    );
    // An old name no one shares keeps working, next to the new one.
    create(&mut lee, "solo", "lee's solo").await;
    until_running(&mut lee, "solo", 1).await;
    until_serves(&app, "solo-lee.apps.pier.test", (200, "lee's solo"), 10).await;
    until_serves(&app, "solo--lee.apps.pier.test", (200, "lee's solo"), 3).await;
}

#[sqlx::test(migrations = "../migrations")]
async fn a_configuration_haproxy_refuses_is_never_applied(db: SqlitePool) {
    let app = TestApp::with_proxy(db).await;
    let mut ann = tenant(&app, "ann@example.com").await;
    create(&mut ann, "site", "still here").await;
    domain(&mut ann, "add_domain", "ann.pier.test", "site").await;
    until_running(&mut ann, "site", 1).await;
    until_serves(&app, "ann.pier.test", (200, "still here"), 10).await;
    let workers = app.proxy().workers().await.unwrap();
    let cfg_before = std::fs::read_to_string(&app.proxy().files().cfg).unwrap();

    // Pier restarted with settings that make a configuration HAProxy refuses (here: a
    // certificate list naming a certificate that does not exist).
    let mut broken = app.proxy().config().clone();
    broken.crt_list = app.proxy().files().dir.join("broken.list");
    std::fs::write(&broken.crt_list, "/nonexistent/cert.pem\n").unwrap();
    let adopted = Proxy::start(app.proxy().files().clone(), broken)
        .await
        .expect("adopting never fails on a bad config");
    let status = adopted.status();
    let err = status.error.expect("the refusal is reported");
    assert!(err.contains("refused the new configuration"), "{err}");
    assert!(status.running);
    assert_eq!(
        adopted.workers().await.unwrap(),
        workers,
        "no reload happened"
    );
    assert_eq!(
        std::fs::read_to_string(&app.proxy().files().cfg).unwrap(),
        cfg_before
    );
    assert_eq!(
        https(&app, "ann.pier.test").await,
        (200, "still here".into())
    );

    // The admin sees it (on the Users page, from the same status), here on a panel restarted in
    // front of the adopted HAProxy.
    let mut app = app;
    app.kill();
    let app = app.restarted_with(Some(adopted.clone())).await;
    let mut admin = app.admin().await;
    let r = admin.read("panel_status").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(
        r.body.contains("refused the new configuration"),
        "{}",
        r.body
    );
    let r = ann.read("panel_status").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
}

#[sqlx::test(migrations = "../migrations")]
async fn twenty_redeploys_under_load_fail_no_request(db: SqlitePool) {
    let app = TestApp::with_proxy(db).await;
    let mut ann = tenant(&app, "ann@example.com").await;
    create(&mut ann, "site", "v0").await;
    domain(&mut ann, "add_domain", "load.pier.test", "site").await;
    until_running(&mut ann, "site", 1).await;
    until_serves(&app, "load.pier.test", (200, "v0"), 10).await;
    let workers = app.proxy().workers().await.unwrap();

    let load = Load::start(&app, "load.pier.test", "/");
    for n in 1..=20 {
        let greeting = format!("v{n}");
        set_greeting(&mut ann, "site", &greeting).await;
        until_running(&mut ann, "site", n + 1).await;
        until_serves(&app, "load.pier.test", (200, &greeting), 10).await;
    }
    let (ok, failed) = load.stop();
    println!(
        "20 redeploys under load: {ok} requests answered 200, {} failed",
        failed.len()
    );
    assert!(failed.is_empty(), "failed requests: {failed:?}");
    assert!(ok >= 200, "the load ran ({ok} requests)");
    assert_eq!(app.proxy().workers().await.unwrap(), workers, "no reload");
    // The old containers go once drained: one is left.
    until_containers_left(&app, 1, 15).await;
}

/// HAProxy replaces `X-Forwarded-For` and `X-Forwarded-Proto` with what it saw, on both ways
/// in, and drops `Forwarded`: a client's spoofed values never reach the panel. (With `option
/// forwardfor` the client's line arrived first and the panel read it.)
#[tokio::test]
async fn spoofed_forwarding_headers_do_not_reach_the_panel() {
    use axum::{http::HeaderMap, routing::get, Router};
    fn all(h: &HeaderMap, name: &str) -> String {
        h.get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect::<Vec<_>>()
            .join(" | ")
    }
    let echo = |h: HeaderMap| async move {
        format!(
            "xff={};xfp={};fwd={}",
            all(&h, "x-forwarded-for"),
            all(&h, "x-forwarded-proto"),
            all(&h, "forwarded")
        )
    };
    let panel = Router::new()
        .route("/", get(echo))
        .route("/.well-known/acme-challenge/{token}", get(echo));
    let tp = common::TestProxy::new(panel).await;
    let proxy = Proxy::start(tp.files, tp.config)
        .await
        .expect("haproxy starts");
    struct Stop(Arc<Proxy>);
    impl Drop for Stop {
        fn drop(&mut self) {
            pier::proxy::kill_pidfile(&self.0.files().pidfile);
            let _ = std::fs::remove_dir_all(&self.0.files().dir);
        }
    }
    let proxy = Stop(proxy);
    let cfg = proxy.0.config().clone();
    let spoof = |scheme: &str, port: u16, path: &str| {
        let out = std::process::Command::new("curl")
            .args(["-sk", "--max-time", "5"])
            .args(["-H", "X-Forwarded-For: 6.6.6.6"])
            .args(["-H", "X-Forwarded-For: 7.7.7.7, 8.8.8.8"])
            .args(["-H", "X-Forwarded-Proto: https"])
            .args(["-H", "Forwarded: for=6.6.6.6;proto=https"])
            .arg("--resolve")
            .arg(format!("panel.pier.test:{port}:127.0.0.1"))
            .arg(format!("{scheme}://panel.pier.test:{port}{path}"))
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let (https, http) = (cfg.https_addr.port(), cfg.http_addr.port());
    let got = tokio::task::spawn_blocking(move || {
        (
            spoof("https", https, "/"),
            spoof("http", http, "/.well-known/acme-challenge/t"),
        )
    })
    .await
    .unwrap();
    assert_eq!(got.0, "xff=127.0.0.1;xfp=https;fwd=");
    assert_eq!(got.1, "xff=127.0.0.1;xfp=http;fwd=");
}

/// HAProxy faces the internet: its workers give up root once the ports are bound (the master
/// keeps it to re-read files on a reload), and still serve, take certificates and routes.
#[sqlx::test(migrations = "../migrations")]
async fn haproxy_workers_do_not_run_as_root(db: SqlitePool) {
    let app = TestApp::with_proxy(db).await;
    let uid_of = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("Uid:").map(str::to_owned))
            .unwrap()
            .split_whitespace()
            .map(|u| u.parse::<u32>().unwrap())
            .collect::<Vec<_>>()
    };
    let me = uid_of(std::process::id());
    let workers = app.proxy().workers().await.unwrap();
    assert!(!workers.is_empty());
    let expected = pier::proxy::config::unprivileged_account();
    if me[1] == 0 {
        assert_eq!(
            expected.as_deref(),
            Some("haproxy"),
            "the haproxy account exists"
        );
    }
    for pid in workers {
        let ids = uid_of(pid);
        match expected {
            // Real, effective, saved and file-system uid all dropped.
            Some(_) => assert!(ids.iter().all(|&u| u != 0), "worker {pid}: {ids:?}"),
            None => assert_eq!(ids[1], me[1]),
        }
    }
    // It still routes: the panel answers through it.
    let port = app.proxy().config().http_addr.port();
    let out = tokio::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "5",
        ])
        .arg("-H")
        .arg("Host: panel.pier.test")
        .arg(format!(
            "http://127.0.0.1:{port}/.well-known/acme-challenge/x"
        ))
        .output()
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "404");
}
