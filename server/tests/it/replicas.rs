//! Replicas on one host: several copies of a web app in its HAProxy backend, balanced; a copy
//! that dies is routed around while it comes back; a new count is a new deployment. Requests go
//! to HAProxy on 127.0.0.1 only.

use crate::common;

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use common::{docker_cli::docker, sites::*, TestApp};
use sqlx::SqlitePool;

/// Waits until the app's page says `n` copies run; how long that took.
async fn until_copies_run(b: &mut common::Browser, name: &str, n: u64, secs: u64) -> Duration {
    let t0 = Instant::now();
    loop {
        let d = detail(b, name).await;
        if d["row"]["replicas_running"] == n && d["row"]["state"] == "running" {
            return t0.elapsed();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(secs),
            "{name}: never {n} copies running: {d:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn replicas_are_balanced_and_a_lost_copy_is_routed_around(db: SqlitePool) {
    let app = TestApp::with_proxy(db).await;
    let mut ann = tenant(&app, "ann@example.com").await;
    create_replicas(&mut ann, "site", "three", "3").await;
    domain(&mut ann, "add_domain", "many.pier.test", "site").await;
    until_running(&mut ann, "site", 1).await;
    until_serves(&app, "many.pier.test", (200, "three"), 10).await;
    until_copies_run(&mut ann, "site", 3, 10).await;
    let d = detail(&mut ann, "site").await;
    assert_eq!(d["row"]["replicas"], 3);
    // The page lists each copy, where it answers.
    let copies = d["copies"].as_array().unwrap();
    assert_eq!(copies.len(), 3, "{copies:?}");
    for (i, c) in copies.iter().enumerate() {
        assert_eq!(c[0], i as i64 + 1);
        assert_eq!(c[1], "running");
        assert!(c[2].as_str().unwrap().starts_with("127.0.0.1:"), "{c}");
    }

    // Balanced: each copy answers /host with its own container's name.
    let mut names = BTreeSet::new();
    for _ in 0..30 {
        let (status, body, _) = request(&app, "https", "many.pier.test", "/host").await;
        assert_eq!(status, 200, "{body}");
        names.insert(body.trim().to_owned());
    }
    assert_eq!(names.len(), 3, "every copy answers: {names:?}");
    let running: Vec<_> = app
        .containers()
        .await
        .into_iter()
        .filter(|c| c.running())
        .collect();
    assert_eq!(running.len(), 3, "{running:?}");
    let copies: BTreeSet<i64> = running.iter().map(|c| c.replica()).collect();
    assert_eq!(copies, BTreeSet::from([0, 1, 2]));

    // A copy is killed under load: the others answer (a refused connection is retried on
    // another copy at once) while Docker brings it back. Only requests that were under way in
    // the killed copy can fail.
    let workers = app.proxy().workers().await.unwrap();
    let load = Load::start(&app, "many.pier.test", "/");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let victim = &running[1].id;
    let started = || {
        let out = docker(&[
            "inspect",
            "-f",
            "{{.State.Running}} {{.State.StartedAt}}",
            victim,
        ]);
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let before = started();
    let t0 = Instant::now();
    let killed = docker(&["kill", victim]);
    assert!(killed.status.success(), "{killed:?}");
    // Back when it runs again, started after the kill.
    loop {
        let now = started();
        if now.starts_with("true") && now != before {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "never back: {now}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let back = t0.elapsed();
    until_copies_run(&mut ann, "site", 3, 30).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (ok, failed) = load.stop();
    let codes: BTreeSet<&String> = failed.iter().collect();
    println!(
        "a copy of three killed under load: {ok} requests answered 200, {} failed {codes:?}; the copy ran again after {back:?}",
        failed.len()
    );
    assert!(ok >= 100, "the load ran ({ok} requests)");
    assert!(
        failed.len() <= 4,
        "{} failed requests: {codes:?}",
        failed.len()
    );
    assert_eq!(app.proxy().workers().await.unwrap(), workers, "no reload");

    // Down to one copy: a deployment of its own; the three old copies go once drained.
    set_replicas(&mut ann, "site", "one", "1").await;
    until_running(&mut ann, "site", 2).await;
    until_serves(&app, "many.pier.test", (200, "one"), 10).await;
    until_containers_left(&app, 1, 15).await;
    let d = detail(&mut ann, "site").await;
    assert_eq!(d["row"]["replicas"], 1);
    assert_eq!(d["row"]["replicas_running"], 1);
}
