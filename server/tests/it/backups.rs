//! Backups against the real parts: dockerd, the test registry's busybox image, Pier's
//! size-limited volumes and restic with a local repository. A snapshot taken while the app runs
//! (paused, then stopped), a restore that brings exactly the snapshot's files back, a tar
//! download that matches them, retention, and tenancy. Traffic goes only to 127.0.0.1.

use crate::common;

use std::time::{Duration, Instant};

use axum::{
    body::Body,
    http::{header, Request, StatusCode},
};
use common::{docker_cli, registry, TestApp};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use sqlx::SqlitePool;
use tower::ServiceExt;

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

async fn get(app: &TestApp, t: &str, path: &str) -> Value {
    let r = app.api("GET", path, Some(t), None).await;
    assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.body);
    r.json()
}

/// Polls `path` until `pred` holds; panics with the last answer after `secs`.
async fn until(
    app: &TestApp,
    t: &str,
    path: &str,
    secs: u64,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let v = get(app, t, path).await;
        if pred(&v) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out on {path}; last: {v:#}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The app's running container.
async fn container(app: &TestApp, name: &str) -> String {
    let all = app.containers().await;
    all.iter()
        .filter(|c| c.running() && c.name.contains(&format!("-{name}-d")))
        .max_by_key(|c| c.created)
        .map(|c| c.id.clone())
        .unwrap_or_else(|| panic!("no running container for {name}: {all:#?}"))
}

/// `docker exec … sh -c SCRIPT`, which must succeed: its output.
fn exec(id: &str, script: &str) -> String {
    let (ok, out, err) = docker_cli::exec(id, script);
    assert!(ok, "{script}: {err}");
    out
}

/// Backs up now and waits until the snapshot has ended, done or failed; the snapshot.
async fn back_up_ending(app: &TestApp, t: &str, name: &str) -> Value {
    let r = app
        .api("POST", &format!("/apps/{name}/backups"), Some(t), None)
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let id = r.json()["id"].as_i64().expect("an id");
    assert!(["queued", "running"].contains(&r.json()["state"].as_str().unwrap()));
    until(app, t, &format!("/apps/{name}/backups/{id}"), 120, |s| {
        s["state"] == "done" || s["state"] == "failed"
    })
    .await
}

/// Backs up now and waits until the snapshot is done; the snapshot.
async fn back_up(app: &TestApp, t: &str, name: &str) -> Value {
    let s = back_up_ending(app, t, name).await;
    assert_eq!(s["state"], "done", "{s:#}");
    s
}

/// Sets a person's backup quota (MiB), as an admin.
async fn set_backup_quota(app: &TestApp, email: &str, mb: i64) {
    let admin = app.token(common::ADMIN_EMAIL, "admin").await;
    let id = app.user_id(email).await;
    let r = app
        .api(
            "PATCH",
            &format!("/users/{id}"),
            Some(&admin),
            Some(json!({"max_backup_mb": mb})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["quotas"]["max_backup_mb"], mb);
}

/// Raw GET with a token (the tar is bytes).
async fn download(app: &TestApp, t: &str, path: &str) -> (StatusCode, String, Vec<u8>) {
    let req = Request::builder()
        .uri(format!("/api/v1{path}"))
        .header(header::AUTHORIZATION, format!("Bearer {t}"))
        .body(Body::empty())
        .unwrap();
    let res = app.router.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let ctype = res
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let bytes = res.into_body().collect().await.unwrap().to_bytes().to_vec();
    (status, ctype, bytes)
}

/// A panel with backups on, in a fresh directory named after `what` (the caller removes it),
/// its worker looking every second; `tweak` changes the settings further.
async fn with_backups(
    db: SqlitePool,
    what: &str,
    tweak: impl FnOnce(&mut pier_core::service::Settings),
) -> (TestApp, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("pier-test-{what}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut settings = common::test_settings();
    settings.backups.dir = Some(dir.clone());
    settings.backups.check_every_secs = 1;
    tweak(&mut settings);
    (TestApp::with_settings(db, settings).await, dir)
}

/// Asks for a restore of snapshot `id` (`body` says where) and waits until it has ended, done
/// or failed; the restore.
async fn restore_ending(app: &TestApp, t: &str, name: &str, id: i64, body: Option<Value>) -> Value {
    let r = app
        .api(
            "POST",
            &format!("/apps/{name}/backups/{id}/restore"),
            Some(t),
            body,
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let rid = r.json()["id"].as_i64().unwrap();
    until(app, t, &format!("/apps/{name}/restores/{rid}"), 120, |r| {
        r["state"] == "done" || r["state"] == "failed"
    })
    .await
}

/// Restores snapshot `id` into the app and waits until the restore is done and the app runs
/// again (within `start_secs`).
async fn restore(app: &TestApp, t: &str, name: &str, id: i64, start_secs: u64) {
    let done = restore_ending(app, t, name, id, None).await;
    assert_eq!(done["state"], "done", "{done:#}");
    until(app, t, &format!("/apps/{name}"), start_secs, |a| {
        a["state"] == "running"
    })
    .await;
}

#[sqlx::test(migrations = "../migrations")]
async fn snapshots_restore_download_retention_and_tenancy(db: SqlitePool) {
    let (app, dir) = with_backups(db, "backups", |_| {}).await;
    let t = tenant(&app, "ann@example.com").await;
    let image = format!("{}/pier-test/hello:1", registry().0);
    let r = app
        .api(
            "POST",
            "/apps",
            Some(&t),
            Some(json!({
                "name": "keeper", "image": image, "port": 8080,
                "volumes": [{"name": "keeper-data", "path": "/data", "size_mb": 64}],
                "backup": {"keep_last": 2, "keep_daily": 0, "keep_weekly": 0}
            })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.json()["backup"]["schedule"], "off");
    assert_eq!(r.json()["backup"]["keep_last"], 2);
    until(&app, &t, "/apps/keeper", 90, |a| a["state"] == "running").await;
    let c = container(&app, "keeper").await;
    exec(
        &c,
        "echo one > /data/a.txt && mkdir -p /data/d && echo nested > /data/d/b",
    );

    // Pause mode (the default): the app is frozen only while its files are read.
    let first = back_up(&app, &t, "keeper").await;
    assert_eq!(first["mode"], "pause");
    assert_eq!(first["trigger"], "manual");
    assert!(first["files"].as_i64().unwrap() >= 2, "{first:#}");
    assert!(first["bytes"].as_i64().unwrap() >= 11, "{first:#}");
    assert!(first["paused_ms"].as_i64().is_some(), "{first:#}");
    let first_id = first["id"].as_i64().unwrap();
    // The container kept running (unpaused), the same one.
    assert_eq!(container(&app, "keeper").await, c);
    assert_eq!(exec(&c, "cat /data/a.txt"), "one\n");

    // Changes after the snapshot.
    exec(
        &c,
        "echo two > /data/a.txt && rm -r /data/d && echo new > /data/c.txt",
    );

    // The download is a tar of exactly the snapshot's files.
    let (status, ctype, tar) = download(
        &app,
        &t,
        &format!("/apps/keeper/backups/{first_id}/download"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ctype, "application/x-tar");
    let unpacked = dir.join("unpacked");
    std::fs::create_dir_all(&unpacked).unwrap();
    std::fs::write(dir.join("snap.tar"), &tar).unwrap();
    let out = std::process::Command::new("tar")
        .args([
            "-xf",
            &dir.join("snap.tar").to_string_lossy(),
            "-C",
            &unpacked.to_string_lossy(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let vdirs: Vec<_> = std::fs::read_dir(&unpacked).unwrap().flatten().collect();
    assert_eq!(vdirs.len(), 1, "one volume, one directory");
    let v = vdirs[0].path();
    assert_eq!(std::fs::read_to_string(v.join("a.txt")).unwrap(), "one\n");
    assert_eq!(std::fs::read_to_string(v.join("d/b")).unwrap(), "nested\n");
    assert!(!v.join("c.txt").exists());

    // Another tenant: even with an app of the same name, nothing of ann's is found.
    let tb = tenant(&app, "bob@example.com").await;
    let r = app
        .api(
            "POST",
            "/apps",
            Some(&tb),
            Some(json!({"name": "keeper", "image": "127.0.0.1:9/pier-test/none:1", "port": 80})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(get(&app, &tb, "/apps/keeper/backups").await["total"], 0);
    for (method, path) in [
        ("GET", format!("/apps/keeper/backups/{first_id}")),
        ("POST", format!("/apps/keeper/backups/{first_id}/restore")),
        ("GET", format!("/apps/keeper/backups/{first_id}/download")),
    ] {
        let r = app.api(method, &path, Some(&tb), None).await;
        assert_eq!(
            r.status,
            StatusCode::NOT_FOUND,
            "{method} {path}: {}",
            r.body
        );
    }
    // An app without volumes has nothing to back up.
    let r = app
        .api("POST", "/apps/keeper/backups", Some(&tb), None)
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);

    // Restore: stopped, replaced, started; exactly the snapshot's files are back.
    restore(&app, &t, "keeper", first_id, 60).await;
    let c = container(&app, "keeper").await;
    assert_eq!(exec(&c, "cat /data/a.txt"), "one\n");
    assert_eq!(exec(&c, "cat /data/d/b"), "nested\n");
    assert_eq!(
        exec(&c, "test -e /data/c.txt && echo there || echo gone"),
        "gone\n"
    );

    // Stop mode, and retention keeping the last two.
    let r = app
        .api(
            "PUT",
            "/apps/keeper/backup-policy",
            Some(&t),
            Some(json!({"mode": "stop"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["mode"], "stop");
    let second = back_up(&app, &t, "keeper").await;
    assert_eq!(second["mode"], "stop");
    until(&app, &t, "/apps/keeper", 60, |a| a["state"] == "running").await;
    let third = back_up(&app, &t, "keeper").await;
    // Retention follows each snapshot (restic forgets and prunes, then the rows go).
    let list = until(&app, &t, "/apps/keeper/backups", 60, |l| l["total"] == 2).await;
    let ids: Vec<i64> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_i64().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            third["id"].as_i64().unwrap(),
            second["id"].as_i64().unwrap()
        ]
    );
    let r = app
        .api(
            "POST",
            &format!("/apps/keeper/backups/{first_id}/restore"),
            Some(&t),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "pruned: {}", r.body);

    // Bad policies are refused field by field, and change nothing.
    let r = app
        .api(
            "PUT",
            "/apps/keeper/backup-policy",
            Some(&t),
            Some(json!({"schedule": "sometimes", "at": "25:00", "keep_last": 0})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    for f in ["schedule", "at", "keep_last"] {
        assert!(r.api_field(f).len() > 3, "{f}: {}", r.body);
    }
    let p = get(&app, &t, "/apps/keeper/backup-policy").await;
    assert_eq!(
        (p["schedule"].as_str(), p["keep_last"].as_i64()),
        (Some("off"), Some(2))
    );
    // Nor does an app PATCH whose other fields are refused: its policy is not saved either.
    let r = app
        .api(
            "PATCH",
            "/apps/keeper",
            Some(&t),
            Some(json!({"backup": {"schedule": "daily", "at": "03:00"}, "port": 0})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert!(r.api_field("port").len() > 3, "{}", r.body);
    let p = get(&app, &t, "/apps/keeper/backup-policy").await;
    assert_eq!(p["schedule"], "off", "{p}");

    // The scheduler: an app whose policy owes a slot is backed up without anyone asking. (A
    // policy owes only slots after it was set: its time is moved back here.)
    let r = app
        .api(
            "POST",
            "/apps",
            Some(&t),
            Some(json!({
                "name": "ticker", "image": image, "port": 8080,
                "volumes": [{"name": "ticker-data", "path": "/data", "size_mb": 32}],
                "backup": {"schedule": "hourly", "at": "00:00"}
            })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.json()["backup"]["overdue"], false);
    until(&app, &t, "/apps/ticker", 90, |a| a["state"] == "running").await;
    assert_eq!(get(&app, &t, "/apps/ticker/backups").await["total"], 0);
    sqlx::query("UPDATE backup_policies SET updated_at = 0")
        .execute(app.pier.db())
        .await
        .unwrap();
    app.pier.wake_backups();
    let list = until(&app, &t, "/apps/ticker/backups", 120, |l| {
        l["items"][0]["state"] == "done"
    })
    .await;
    assert_eq!(list["items"][0]["trigger"], "schedule");
    assert_eq!(list["total"], 1, "one per slot: {list:#}");
    let a = get(&app, &t, "/apps/ticker").await;
    assert!(a["backup"]["last_success_at"].is_string(), "{a:#}");

    for name in ["keeper", "ticker"] {
        let r = app
            .api(
                "DELETE",
                &format!("/apps/{name}?keep_volumes=false"),
                Some(&t),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[sqlx::test(migrations = "../migrations")]
async fn an_offsite_bucket_gets_every_snapshot_and_catches_up_after_an_outage(db: SqlitePool) {
    use common::s3::{ACCESS_KEY, S3, SECRET_KEY};
    let mut s3 = S3::start();
    let (app, dir) = with_backups(db, "offsite", |s| s.backups.offsite_retry_secs = 1).await;
    let admin = app.token(common::ADMIN_EMAIL, "admin").await;
    let t = tenant(&app, "ann@example.com").await;

    // Only admins see or set it; bad input is refused field by field; the secret never shows.
    let r = app.api("GET", "/backup-target", Some(&t), None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let r = app.api("GET", "/backup-target", Some(&admin), None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    let r = app
        .api(
            "PUT",
            "/backup-target",
            Some(&admin),
            Some(json!({"endpoint": "ftp://x", "bucket": "B", "access_key": ACCESS_KEY})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    for f in ["endpoint", "bucket", "secret"] {
        assert!(!r.api_field(f).is_empty(), "{f}: {}", r.body);
    }
    let r = app
        .api(
            "PUT",
            "/backup-target",
            Some(&admin),
            Some(json!({
                "endpoint": s3.endpoint(), "bucket": "pier-offsite",
                "access_key": ACCESS_KEY, "secret_key": SECRET_KEY
            })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(!r.body.contains(SECRET_KEY));

    let image = format!("{}/pier-test/hello:1", registry().0);
    let r = app
        .api(
            "POST",
            "/apps",
            Some(&t),
            Some(json!({
                "name": "far", "image": image, "port": 8080,
                "volumes": [{"name": "far-data", "path": "/data", "size_mb": 32}]
            })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    until(&app, &t, "/apps/far", 90, |a| a["state"] == "running").await;
    let c = container(&app, "far").await;
    exec(&c, "echo first > /data/f");
    let one = back_up(&app, &t, "far").await["id"].as_i64().unwrap();
    until(&app, &t, &format!("/apps/far/backups/{one}"), 60, |s| {
        s["offsite_at"].is_string()
    })
    .await;

    // The bucket goes away: snapshots still succeed locally; the copy fails, loudly, and is
    // retried until the bucket is back.
    s3.down();
    exec(&c, "echo second > /data/f");
    let two = back_up(&app, &t, "far").await["id"].as_i64().unwrap();
    let target = until(&app, &admin, "/backup-target", 60, |t| {
        t["failures"].as_i64().unwrap_or(0) >= 1
    })
    .await;
    assert!(
        target["last_error"].as_str().unwrap().contains("restic"),
        "{target:#}"
    );
    assert_eq!(target["pending"], 1);
    let s = get(&app, &t, &format!("/apps/far/backups/{two}")).await;
    assert!(s["offsite_at"].is_null(), "{s:#}");
    s3.up();
    until(&app, &t, &format!("/apps/far/backups/{two}"), 90, |s| {
        s["offsite_at"].is_string()
    })
    .await;
    let target = get(&app, &admin, "/backup-target").await;
    assert_eq!(
        (target["failures"].as_i64(), target["pending"].as_i64()),
        (Some(0), Some(0))
    );
    assert!(target["last_error"].is_null(), "{target:#}");

    // The bucket really holds both, readable with Pier's repository password. (Without a
    // lock: Pier may be applying retention there right now.)
    let out = std::process::Command::new("restic")
        .args(["snapshots", "--json", "--no-lock"])
        .env(
            "RESTIC_REPOSITORY",
            format!("s3:{}/pier-offsite/pier", s3.endpoint()),
        )
        .env(
            "RESTIC_PASSWORD",
            pier_core::backups::repository_password(app.pier.key()),
        )
        .env("RESTIC_CACHE_DIR", dir.join("check-cache"))
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list.len(), 2, "{list:#?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The Postgres of the real-apps tests as the internal app `db`, with a volume, running: its
/// container.
async fn postgres(app: &TestApp, t: &str) -> String {
    let r = app
        .api(
            "POST",
            "/apps",
            Some(t),
            Some(json!({
                "name": "db", "image": format!("{}/pier-test/postgres:1", registry().0),
                "port": 5432, "kind": "internal", "memory_mb": 256,
                "env": {"POSTGRES_PASSWORD": "pg-pass-123"}, "secret_env": ["POSTGRES_PASSWORD"],
                "volumes": [{"name": "db-data", "path": "/var/lib/postgresql/data", "size_mb": 256}]
            })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    until(app, t, "/apps/db", 120, |a| a["state"] == "running").await;
    container(app, "db").await
}

/// psql inside the database's container; its output, trimmed.
fn psql(id: &str, sql: &str) -> String {
    exec(
        id,
        &format!("PGPASSWORD=pg-pass-123 psql -h 127.0.0.1 -U postgres -tAq -v ON_ERROR_STOP=1 -c \"{sql}\""),
    )
    .trim()
    .to_owned()
}

#[sqlx::test(migrations = "../migrations")]
async fn postgres_paused_under_writes_comes_back_with_the_snapshots_rows(db: SqlitePool) {
    let (app, dir) = with_backups(db, "pg-backup", |_| {}).await;
    let t = tenant(&app, "ann@example.com").await;
    let c = postgres(&app, &t).await;
    psql(
        &c,
        "CREATE TABLE t (id serial PRIMARY KEY, v text NOT NULL)",
    );

    // One writer, row after row, while the snapshot is taken (paused: as after a power cut).
    let mut writer = tokio::process::Command::new("docker")
        .args(["exec", &c, "sh", "-c"])
        .arg("while :; do PGPASSWORD=pg-pass-123 psql -h 127.0.0.1 -U postgres -q -c \"INSERT INTO t (v) VALUES ('during')\" || exit 1; done")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("docker exec");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before: i64 = psql(&c, "SELECT count(*) FROM t").parse().unwrap();
    assert!(before > 0, "the writer writes");
    let snap = back_up(&app, &t, "db").await;
    let after: i64 = psql(&c, "SELECT count(*) FROM t").parse().unwrap();
    let _ = writer.kill().await;
    // The writer's exec may still be finishing its last insert.
    tokio::time::sleep(Duration::from_millis(500)).await;
    psql(&c, "INSERT INTO t (v) VALUES ('later')");

    restore(&app, &t, "db", snap["id"].as_i64().unwrap(), 120).await;

    // Postgres started on its own (it recovered from its WAL); exactly a prefix of the rows that
    // were written while the snapshot was taken is back, and nothing written after it.
    let c = container(&app, "db").await;
    let mut rows = String::new();
    for _ in 0..60 {
        match docker_cli::exec(&c, "PGPASSWORD=pg-pass-123 psql -h 127.0.0.1 -U postgres -tAq -c \"SELECT count(*), coalesce(max(id), 0), count(*) FILTER (WHERE v = 'later') FROM t\"") {
            (true, out, _) => {
                rows = out.trim().to_owned();
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
    let n: Vec<i64> = rows.split('|').filter_map(|x| x.parse().ok()).collect();
    assert_eq!(n.len(), 3, "postgres answers after the restore: {rows:?}");
    let (count, max_id, later) = (n[0], n[1], n[2]);
    assert_eq!(later, 0, "a row written after the snapshot came back");
    assert!(
        (before..=after).contains(&count),
        "{count} rows back; {before} were there before the snapshot, {after} after it"
    );
    assert_eq!(count, max_id, "rows 1..={max_id} with none missing");
    let _ = std::fs::remove_dir_all(&dir);
}

#[sqlx::test(migrations = "../migrations")]
async fn postgres_dump_in_command_mode_brings_back_exactly_its_rows(db: SqlitePool) {
    let (app, dir) = with_backups(db, "pg-dump", |_| {}).await;
    let t = tenant(&app, "ann@example.com").await;
    let c = postgres(&app, &t).await;
    psql(
        &c,
        "CREATE TABLE t (id serial PRIMARY KEY, v text NOT NULL); INSERT INTO t (v) SELECT 'kept' FROM generate_series(1, 100)",
    );

    // Command mode needs a command; a quote left open is refused and nothing changes.
    let policy = "/apps/db/backup-policy";
    let r = app
        .api("PUT", policy, Some(&t), Some(json!({"mode": "command"})))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    let r = app
        .api(
            "PUT",
            policy,
            Some(&t),
            Some(json!({"mode": "command", "command": "pg_dump 'postgres"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert_eq!(get(&app, &t, policy).await["mode"], "pause");

    // A command that fails: the snapshot fails with its exit status and what it said.
    let r = app
        .api(
            "PUT",
            policy,
            Some(&t),
            Some(json!({"mode": "command", "command": "pg_dump -Fc -U postgres no_such_db"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let failed = back_up_ending(&app, &t, "db").await;
    assert_eq!(failed["state"], "failed", "{failed:#}");
    let why = failed["reason"].as_str().unwrap();
    assert!(
        why.contains("exited with status 1") && why.contains("no_such_db"),
        "{why}"
    );

    // The real dump, taken while the app keeps running.
    let r = app
        .api(
            "PUT",
            policy,
            Some(&t),
            Some(json!({"command": "pg_dump -Fc -U postgres postgres"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let snap = back_up(&app, &t, "db").await;
    assert_eq!(snap["mode"], "command");
    assert!(snap["paused_ms"].is_null(), "{snap:#}");
    assert!(snap["bytes"].as_i64().unwrap() > 1000, "{snap:#}");
    assert_eq!(container(&app, "db").await, c, "the app was not stopped");
    let id = snap["id"].as_i64().unwrap();

    // Its download is a tar holding the dump as pg_dump wrote it.
    let (status, _, tar) = download(&app, &t, &format!("/apps/db/backups/{id}/download")).await;
    assert_eq!(status, StatusCode::OK);
    std::fs::create_dir_all(dir.join("x")).unwrap();
    std::fs::write(dir.join("dump.tar"), &tar).unwrap();
    let out = std::process::Command::new("tar")
        .args(["-xf", &dir.join("dump.tar").to_string_lossy(), "-C"])
        .arg(dir.join("x"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let dump = std::fs::read(dir.join("x/dump")).unwrap();
    assert_eq!(&dump[..5], b"PGDMP", "a pg_dump custom-format archive");

    // More rows, and a table dropped; then the restore, which needs a restore command.
    psql(
        &c,
        "INSERT INTO t (v) SELECT 'later' FROM generate_series(1, 50); CREATE TABLE u (x int)",
    );
    let restore_path = format!("/apps/db/backups/{id}/restore");
    let r = app.api("POST", &restore_path, Some(&t), None).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert!(r.body.contains("restore command"), "{}", r.body);
    let r = app
        .api(
            "PUT",
            policy,
            Some(&t),
            Some(json!({"restore_command": "pg_restore --clean --if-exists -U postgres -d postgres"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // A dump does not go into a volume.
    let r = app
        .api(
            "POST",
            &restore_path,
            Some(&t),
            Some(json!({"into_volume": "db-old"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    restore(&app, &t, "db", id, 60).await;

    assert_eq!(container(&app, "db").await, c, "restored while it ran");
    assert_eq!(
        psql(
            &c,
            "SELECT count(*), count(*) FILTER (WHERE v = 'later') FROM t"
        ),
        "100|0"
    );

    // A dump may not outgrow the room left in the owner's backup quota: it is stopped there.
    set_backup_quota(&app, "ann@example.com", 1).await;
    let r = app
        .api(
            "PUT",
            policy,
            Some(&t),
            Some(json!({"command": "head -c 3000000 /dev/zero"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let big = back_up_ending(&app, &t, "db").await;
    assert_eq!(big["state"], "failed", "{big:#}");
    assert!(
        big["reason"].as_str().unwrap().contains("backup quota"),
        "{big:#}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[sqlx::test(migrations = "../migrations")]
async fn unchanged_data_is_not_stored_twice_and_a_restore_can_go_beside(db: SqlitePool) {
    let (app, dir) = with_backups(db, "beside", |s| s.backups.sweep_every_secs = 1).await;
    let t = tenant(&app, "ann@example.com").await;
    let image = format!("{}/pier-test/hello:1", registry().0);
    let r = app
        .api(
            "POST",
            "/apps",
            Some(&t),
            Some(json!({
                "name": "big", "image": image, "port": 8080,
                "volumes": [{"name": "big-data", "path": "/data", "size_mb": 300}]
            })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    until(&app, &t, "/apps/big", 90, |a| a["state"] == "running").await;
    let c = container(&app, "big").await;
    // 200 MiB that does not compress, and a small file.
    exec(
        &c,
        "dd if=/dev/urandom of=/data/blob bs=1M count=200 2>/dev/null && echo one > /data/note",
    );
    let sum = exec(&c, "md5sum /data/blob | cut -d' ' -f1");

    let first = back_up(&app, &t, "big").await;
    let added = first["added_bytes"].as_i64().unwrap();
    assert!(
        added > 195 << 20,
        "the first snapshot stores the data: {first:#}"
    );
    // Nothing changed: the second snapshot reads it all again but stores (almost) nothing.
    let second = back_up(&app, &t, "big").await;
    let again = second["added_bytes"].as_i64().unwrap();
    assert!(again < 1 << 20, "an unchanged volume added {again} bytes");
    println!("200 MiB volume: first snapshot added {added} bytes, the unchanged second {again}");

    // What the app's snapshots take is measured and counted against ann's backup quota: below
    // it, no new snapshot starts, with the reason; the admin raises it and backups go on.
    let stored = get(&app, &t, "/apps/big").await["backup"]["stored_bytes"]
        .as_i64()
        .unwrap();
    assert!(
        (195 << 20..260 << 20).contains(&stored),
        "two snapshots of 200 MiB take {stored} bytes"
    );
    set_backup_quota(&app, "ann@example.com", 150).await;
    let r = app.api("POST", "/apps/big/backups", Some(&t), None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert!(r.body.contains("backup quota"), "{}", r.body);
    set_backup_quota(&app, "ann@example.com", 1024).await;

    exec(&c, "echo two > /data/note && rm /data/blob");

    // The first snapshot into a new volume, beside the app's: the app is not touched.
    let first_id = first["id"].as_i64().unwrap();
    let path = format!("/apps/big/backups/{first_id}/restore");
    for (body, status) in [
        (
            json!({"into_volume": "Bad Name"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"into_volume": "big-data"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"into_volume": "x", "from_volume": "nope"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"from_volume": "big-data"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"into_volume": "x", "extra": 1}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ] {
        let r = app.api("POST", &path, Some(&t), Some(body.clone())).await;
        assert_eq!(r.status, status, "{body}: {}", r.body);
    }
    // Another tenant cannot reach it.
    let bob = tenant(&app, "bob@example.com").await;
    let r = app
        .api(
            "POST",
            &path,
            Some(&bob),
            Some(json!({"into_volume": "mine"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);

    let done = restore_ending(
        &app,
        &t,
        "big",
        first_id,
        Some(json!({"into_volume": "big-old"})),
    )
    .await;
    assert_eq!(done["state"], "done", "{done:#}");
    assert_eq!(done["into_volume"], "big-old");
    assert_eq!(container(&app, "big").await, c, "the app was not touched");
    assert_eq!(exec(&c, "cat /data/note"), "two\n");
    let vols = get(&app, &t, "/volumes").await;
    let old = vols["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "big-old")
        .unwrap_or_else(|| panic!("{vols:#}"))
        .clone();
    assert!(old["app"].is_null(), "a kept volume: {old:#}");
    assert_eq!(old["size_mb"], 300);

    // Attached to another app, it holds the snapshot's files.
    let r = app
        .api(
            "POST",
            "/apps",
            Some(&t),
            Some(json!({
                "name": "viewer", "image": format!("{}/pier-test/hello:1", registry().0),
                "port": 8080, "volumes": [{"name": "big-old", "path": "/old"}]
            })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    until(&app, &t, "/apps/viewer", 90, |a| a["state"] == "running").await;
    let v = container(&app, "viewer").await;
    assert_eq!(exec(&v, "cat /old/note"), "one\n");
    assert_eq!(exec(&v, "md5sum /old/blob | cut -d' ' -f1"), sum);

    // A deleted app's snapshots leave the repository too (the worker sweeps every second here).
    back_up(&app, &t, "viewer").await;
    let viewer_id = app_id(&app, "viewer").await;
    let instance = app.pier.instance_id().await.unwrap();
    let tag = format!("pier-{instance}-app-{viewer_id}");
    assert_eq!(repo_snapshots(&app, &dir, &tag).len(), 1);
    let r = app.api("DELETE", "/apps/viewer", Some(&t), None).await;
    assert!(r.status.is_success(), "{}", r.body);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !repo_snapshots(&app, &dir, &tag).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the deleted app's snapshot stayed"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(
        repo_snapshots(
            &app,
            &dir,
            &format!("pier-{instance}-app-{}", app_id(&app, "big").await)
        )
        .len(),
        2,
        "the other app's snapshots stay"
    );

    // A damaged repository (every data file overwritten with zeros): the restore fails before
    // anything of the app changes.
    for d in std::fs::read_dir(dir.join("repo/data")).unwrap().flatten() {
        for f in std::fs::read_dir(d.path()).unwrap().flatten() {
            let len = f.metadata().unwrap().len() as usize;
            std::fs::write(f.path(), vec![0u8; len]).unwrap();
        }
    }
    let second_id = second["id"].as_i64().unwrap();
    let failed = restore_ending(&app, &t, "big", second_id, None).await;
    assert_eq!(failed["state"], "failed", "{failed:#}");
    assert!(
        failed["reason"]
            .as_str()
            .unwrap()
            .contains("nothing was changed"),
        "{failed:#}"
    );
    assert_eq!(container(&app, "big").await, c, "the app was not stopped");
    assert_eq!(exec(&c, "cat /data/note"), "two\n");
    let _ = std::fs::remove_dir_all(&dir);
}

/// An app's id in the database.
async fn app_id(app: &TestApp, name: &str) -> i64 {
    sqlx::query_scalar::<_, i64>("SELECT id FROM apps WHERE name = ?")
        .bind(name)
        .fetch_one(app.pier.db())
        .await
        .unwrap()
}

/// The local repository's snapshots with `tag` (read without a lock: the worker may be pruning).
fn repo_snapshots(app: &TestApp, dir: &std::path::Path, tag: &str) -> Vec<Value> {
    let out = std::process::Command::new("restic")
        .args(["snapshots", "--json", "--no-lock", "--tag", tag])
        .env("RESTIC_REPOSITORY", dir.join("repo"))
        .env(
            "RESTIC_PASSWORD",
            pier_core::backups::repository_password(app.pier.key()),
        )
        .env("RESTIC_CACHE_DIR", dir.join("check-cache"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Option<Vec<Value>>>(&out.stdout)
        .unwrap()
        .unwrap_or_default()
}
