//! The REST API's apps and registry-login routes: input checks, quotas, scopes and tenancy.
//! Nothing here needs an image pull: apps point at a registry nobody listens on, so no
//! deployment ever succeeds and no container is ever made.

use crate::common;

use axum::http::StatusCode;
use common::{TestApp, ADMIN_EMAIL};
use serde_json::{json, Value};
use sqlx::SqlitePool;

/// An image on a registry that does not answer (port 9 on loopback).
const IMAGE: &str = "127.0.0.1:9/pier-test/none:1";
const SECRET: &str = "hush-hush-4711";

fn assert_error(r: &common::Reply, status: StatusCode, code: &str) {
    assert_eq!(r.status, status, "{}", r.body);
    let j = r.json();
    assert_eq!(j["error"]["code"], code, "{}", r.body);
    assert!(
        j["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{}",
        r.body
    );
}

/// The fields named in an invalid-input error, in order.
fn fields(r: &common::Reply) -> Vec<String> {
    r.json()["error"]["fields"]
        .as_array()
        .unwrap_or_else(|| panic!("no fields: {}", r.body))
        .iter()
        .map(|f| f["field"].as_str().unwrap().to_owned())
        .collect()
}

fn message(r: &common::Reply) -> String {
    r.json()["error"]["message"].as_str().unwrap().to_owned()
}

/// A member with a write token.
async fn tenant(app: &TestApp, email: &str) -> String {
    let _ = app.member(email).await;
    app.token(email, "write").await
}

fn minimal(name: &str) -> Value {
    json!({"name": name, "image": IMAGE, "port": 8080})
}

/// An app with a plain and a secret variable.
fn with_env(name: &str) -> Value {
    json!({
        "name": name,
        "image": IMAGE,
        "port": 8080,
        "env": {"TOKEN": SECRET, "PLAIN": "visible-value"},
        "secret_env": ["TOKEN"],
        "memory_mb": 128,
        "cpus": 0.25,
        "health_path": "/healthz",
        "read_only": true
    })
}

async fn create(app: &TestApp, token: &str, body: Value) -> Value {
    let r = app.api("POST", "/apps", Some(token), Some(body)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    r.json()
}

async fn total(app: &TestApp, token: &str, path: &str) -> i64 {
    let r = app.api("GET", path, Some(token), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.json()["total"].as_i64().unwrap()
}

/// The app as stored, straight from the service.
async fn stored(app: &TestApp, email: &str, name: &str) -> pier_core::model::App {
    let user = pier_core::repo::users::by_email(app.pier.db(), email)
        .await
        .unwrap()
        .expect("user exists");
    app.pier
        .own_app(&pier_core::model::Actor::from(user), name)
        .await
        .expect("app exists")
}

/// The app's env as its container would get it (secrets decrypted).
async fn opened_env(app: &TestApp, email: &str, name: &str) -> Vec<(String, String)> {
    let a = stored(app, email, name).await;
    pier_core::apps::open_env(app.pier.key(), a.user_id, &a.name, &a.env).unwrap()
}

fn env_entry<'a>(j: &'a Value, name: &str) -> &'a Value {
    j["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {j}"))
}

#[sqlx::test(migrations = "../migrations")]
async fn bad_app_input_is_named_per_field_and_creates_nothing(db: SqlitePool) {
    let app = TestApp::new(db).await;
    let t = tenant(&app, "a@example.com").await;

    let r = app
        .api(
            "POST",
            "/apps",
            Some(&t),
            Some(json!({"name": "Bad_Name", "image": "Nginx", "port": 0, "env": {"1X": "v"}})),
        )
        .await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    assert_eq!(fields(&r), ["name", "image", "port", "env"]);
    assert!(r.api_field("env").contains("1X"), "{}", r.body);

    let r = app
        .api(
            "POST",
            "/apps",
            Some(&t),
            Some(
                json!({"name": "ok", "image": "https://x", "port": 70000, "memory_mb": 1,
                        "cpus": "0.01", "health_path": "healthz"}),
            ),
        )
        .await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    assert_eq!(
        fields(&r),
        ["image", "port", "memory_mb", "cpus", "health_path"]
    );

    // A secret name that is not among the variables is refused, not ignored.
    let r = app
        .api(
            "POST",
            "/apps",
            Some(&t),
            Some(
                json!({"name": "ok", "image": IMAGE, "port": 80, "env": {"A": "1"},
                        "secret_env": ["MISSING"]}),
            ),
        )
        .await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    assert_eq!(fields(&r), ["secret_env"]);
    assert!(r.api_field("secret_env").contains("MISSING"));

    // Unknown and mistyped fields.
    let mut extra = minimal("ok");
    extra["colour"] = json!("red");
    assert_error(
        &app.api("POST", "/apps", Some(&t), Some(extra)).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid",
    );
    assert_error(
        &app.api(
            "POST",
            "/apps",
            Some(&t),
            Some(json!({"name": "ok", "image": IMAGE, "port": "eighty"})),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid",
    );

    assert_eq!(total(&app, &t, "/apps").await, 0, "nothing was created");
}

#[sqlx::test(migrations = "../migrations")]
async fn created_apps_are_listed_and_never_show_secrets(db: SqlitePool) {
    let app = TestApp::new(db).await;
    let t = tenant(&app, "a@example.com").await;

    let j = create(&app, &t, with_env("web")).await;
    assert_eq!(j["name"], "web");
    assert_eq!(j["image"], IMAGE);
    assert_eq!(j["port"], 8080);
    assert_eq!(j["memory_mb"], 128);
    assert_eq!(j["cpus"], "0.25");
    assert_eq!(j["health_path"], "/healthz");
    assert_eq!(j["read_only"], true);
    assert_eq!(j["desired"], "running");
    assert!(j["current_deployment"].is_null(), "{j}");
    let states = [
        "deploying",
        "running",
        "crashed",
        "stopped",
        "stopping",
        "starting",
        "failed",
        "unknown",
    ];
    assert!(states.contains(&j["state"].as_str().unwrap()), "{j}");
    // Variables come in name order; the secret one without its value.
    let names: Vec<&str> = j["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["PLAIN", "TOKEN"]);
    assert_eq!(
        env_entry(&j, "PLAIN"),
        &json!({"name": "PLAIN", "value": "visible-value", "secret": false})
    );
    assert_eq!(
        env_entry(&j, "TOKEN"),
        &json!({"name": "TOKEN", "value": null, "secret": true})
    );

    // The secret is stored sealed, and neither it nor its ciphertext is ever sent.
    let sealed = stored(&app, "a@example.com", "web").await.env[1]
        .sealed
        .clone()
        .expect("TOKEN is sealed");
    assert!(opened_env(&app, "a@example.com", "web")
        .await
        .contains(&("TOKEN".to_string(), SECRET.to_string())));
    for path in ["/apps", "/apps/web"] {
        let r = app.api("GET", path, Some(&t), None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert!(!r.body.contains(SECRET), "{path}: {}", r.body);
        assert!(!r.body.contains(&sealed), "{path}: {}", r.body);
        assert!(r.body.contains("visible-value"), "{path}: {}", r.body);
    }

    let list = app.api("GET", "/apps", Some(&t), None).await.json();
    assert_eq!(list["total"], 1);
    assert_eq!(list["items"][0]["name"], "web");
    assert_eq!(list["items"][0]["env"], j["env"]);

    let shown = app.api("GET", "/apps/web", Some(&t), None).await.json();
    assert_eq!(shown["image"], IMAGE);
    assert_eq!(shown["env"], j["env"]);

    // The defaults for left-out limits.
    let d = create(&app, &t, minimal("api")).await;
    assert_eq!(
        (d["memory_mb"].as_i64(), d["cpus"].as_str()),
        (Some(256), Some("0.5"))
    );
    assert_eq!(d["env"], json!([]));
    assert_eq!(d["read_only"], false);
    assert!(d["health_path"].is_null());

    // Names are unique per tenant.
    let r = app
        .api("POST", "/apps", Some(&t), Some(minimal("web")))
        .await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    assert_eq!(fields(&r), ["name"]);
    assert_eq!(total(&app, &t, "/apps").await, 2);
    assert_eq!(total(&app, &t, "/apps?per_page=1&page=2").await, 2);
    let page = app
        .api("GET", "/apps?per_page=1&page=2", Some(&t), None)
        .await
        .json();
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
}

#[sqlx::test(migrations = "../migrations")]
async fn patch_changes_only_what_it_names(db: SqlitePool) {
    let app = TestApp::new(db).await;
    let email = "a@example.com";
    let t = tenant(&app, email).await;
    create(&app, &t, with_env("web")).await;
    let sealed_before = stored(&app, email, "web").await.env[1].sealed.clone();
    assert!(sealed_before.is_some());

    // One field: everything else, the secret included, stays as it was.
    let r = app
        .api("PATCH", "/apps/web", Some(&t), Some(json!({"port": 9090})))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let j = r.json();
    assert_eq!(j["port"], 9090);
    assert_eq!(j["memory_mb"], 128);
    assert_eq!(j["cpus"], "0.25");
    assert_eq!(j["health_path"], "/healthz");
    assert_eq!(j["read_only"], true);
    assert_eq!(j["image"], IMAGE);
    assert_eq!(env_entry(&j, "PLAIN")["value"], "visible-value");
    assert_eq!(env_entry(&j, "TOKEN")["value"], Value::Null);
    assert_eq!(
        stored(&app, email, "web").await.env[1].sealed,
        sealed_before,
        "an untouched secret keeps its sealed value"
    );

    // A new env replaces the old; a secret sent empty keeps its value and stays secret.
    let r = app
        .api(
            "PATCH",
            "/apps/web",
            Some(&t),
            Some(json!({"env": {"TOKEN": "", "NEW": "x"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let j = r.json();
    assert_eq!(
        j["env"],
        json!([
            {"name": "NEW", "value": "x", "secret": false},
            {"name": "TOKEN", "value": null, "secret": true}
        ])
    );
    assert_eq!(
        opened_env(&app, email, "web").await,
        [
            ("NEW".to_string(), "x".to_string()),
            ("TOKEN".to_string(), SECRET.to_string())
        ]
    );

    // A secret given a value is replaced.
    let r = app
        .api(
            "PATCH",
            "/apps/web",
            Some(&t),
            Some(
                json!({"env": {"TOKEN": "rotated"}, "secret_env": ["TOKEN"], "cpus": "1",
                        "health_path": ""}),
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let j = r.json();
    assert!(!r.body.contains("rotated"), "{}", r.body);
    assert_eq!(j["cpus"], "1");
    assert!(j["health_path"].is_null(), "{j}");
    assert_eq!(
        opened_env(&app, email, "web").await,
        [("TOKEN".to_string(), "rotated".to_string())]
    );

    // Refused changes change nothing and queue nothing.
    let r = app
        .api(
            "PATCH",
            "/apps/web",
            Some(&t),
            Some(json!({"secret_env": ["TOKEN"]})),
        )
        .await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    assert_eq!(fields(&r), ["secret_env"]);
    let r = app
        .api(
            "PATCH",
            "/apps/web",
            Some(&t),
            Some(json!({"image": "Nginx", "port": 1})),
        )
        .await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    assert_eq!(fields(&r), ["image"]);
    let r = app
        .api(
            "PATCH",
            "/apps/web",
            Some(&t),
            Some(json!({"name": "other"})),
        )
        .await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    let j = app.api("GET", "/apps/web", Some(&t), None).await.json();
    assert_eq!(j["port"], 9090);
    assert_eq!(j["image"], IMAGE);
    assert_error(
        &app.api("GET", "/apps/other", Some(&t), None).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );

    // Created, then three accepted changes.
    let d = app
        .api("GET", "/apps/web/deployments", Some(&t), None)
        .await
        .json();
    assert_eq!(d["total"], 4, "{d}");
    assert_eq!(d["items"][0]["number"], 4);
    assert_eq!(d["items"][0]["cause"], "settings changed");
}

#[sqlx::test(migrations = "../migrations")]
async fn quotas_are_enforced_with_a_message_naming_the_limit(db: SqlitePool) {
    let app = TestApp::new(db).await;
    let email = "m@example.com";
    let t = tenant(&app, email).await;
    let admin = app.token(ADMIN_EMAIL, "admin").await;

    // The default quota: 2048 MiB and 2 CPUs.
    let mut big = minimal("big");
    big["memory_mb"] = json!(4096);
    let r = app.api("POST", "/apps", Some(&t), Some(big)).await;
    assert_error(&r, StatusCode::FORBIDDEN, "quota_exceeded");
    assert!(message(&r).contains("memory"), "{}", r.body);
    assert!(message(&r).contains("2048 MiB"), "{}", r.body);
    let mut busy = minimal("busy");
    busy["cpus"] = json!("3");
    let r = app.api("POST", "/apps", Some(&t), Some(busy)).await;
    assert_error(&r, StatusCode::FORBIDDEN, "quota_exceeded");
    assert!(message(&r).contains("CPU"), "{}", r.body);
    assert_eq!(total(&app, &t, "/apps").await, 0);

    let id = app.user_id(email).await;
    let r = app
        .api(
            "PATCH",
            &format!("/users/{id}"),
            Some(&admin),
            Some(json!({"max_apps": 1})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    create(&app, &t, minimal("one")).await;
    let r = app
        .api("POST", "/apps", Some(&t), Some(minimal("two")))
        .await;
    assert_error(&r, StatusCode::FORBIDDEN, "quota_exceeded");
    assert!(message(&r).contains("of the 1 apps"), "{}", r.body);
    assert_eq!(total(&app, &t, "/apps").await, 1);

    // A change over the quota is refused and leaves the app as it was.
    let r = app
        .api(
            "PATCH",
            "/apps/one",
            Some(&t),
            Some(json!({"memory_mb": 4096})),
        )
        .await;
    assert_error(&r, StatusCode::FORBIDDEN, "quota_exceeded");
    assert!(message(&r).contains("memory"), "{}", r.body);
    let j = app.api("GET", "/apps/one", Some(&t), None).await.json();
    assert_eq!(j["memory_mb"], 256);
    assert_eq!(total(&app, &t, "/apps/one/deployments").await, 1);
}

#[sqlx::test(migrations = "../migrations")]
async fn changing_apps_needs_a_write_token(db: SqlitePool) {
    let app = TestApp::new(db).await;
    let email = "a@example.com";
    let write = tenant(&app, email).await;
    let read = app.token(email, "read").await;
    create(&app, &write, minimal("web")).await;

    assert_eq!(total(&app, &read, "/apps").await, 1);
    assert_eq!(
        app.api("GET", "/apps/web", Some(&read), None).await.status,
        StatusCode::OK
    );
    for (method, path, body) in [
        ("POST", "/apps", Some(minimal("other"))),
        ("PATCH", "/apps/web", Some(json!({"port": 1234}))),
        ("DELETE", "/apps/web", None),
        ("POST", "/apps/web/stop", None),
        ("POST", "/apps/web/start", None),
        ("POST", "/apps/web/restart", None),
        ("POST", "/apps/web/redeploy", None),
        ("POST", "/apps/web/rollback", Some(json!({"deployment": 1}))),
        (
            "PUT",
            "/registries/ghcr.io",
            Some(json!({"username": "u", "password": "p"})),
        ),
        ("DELETE", "/registries/ghcr.io", None),
    ] {
        let r = app.api(method, path, Some(&read), body.clone()).await;
        assert_error(&r, StatusCode::FORBIDDEN, "forbidden");
        let r = app.api(method, path, None, body).await;
        assert_error(&r, StatusCode::UNAUTHORIZED, "invalid_token");
    }
    for path in ["/apps", "/apps/web", "/apps/web/deployments", "/registries"] {
        assert_error(
            &app.api("GET", path, None, None).await,
            StatusCode::UNAUTHORIZED,
            "invalid_token",
        );
    }

    // Nothing happened.
    assert_eq!(total(&app, &write, "/apps").await, 1);
    let j = app.api("GET", "/apps/web", Some(&write), None).await.json();
    assert_eq!(j["port"], 8080);
    assert_eq!(j["desired"], "running");
    assert_eq!(total(&app, &write, "/apps/web/deployments").await, 1);
    let regs = app
        .api("GET", "/registries", Some(&write), None)
        .await
        .json();
    assert_eq!(regs, json!([]));
}

#[sqlx::test(migrations = "../migrations")]
async fn another_tenants_app_does_not_exist(db: SqlitePool) {
    let app = TestApp::new(db).await;
    let a = tenant(&app, "a@example.com").await;
    let b = tenant(&app, "b@example.com").await;
    create(&app, &a, with_env("web")).await;

    for (method, path, body) in [
        ("GET", "/apps/web", None),
        ("PATCH", "/apps/web", Some(json!({"port": 1234}))),
        ("DELETE", "/apps/web", None),
        ("POST", "/apps/web/start", None),
        ("POST", "/apps/web/stop", None),
        ("POST", "/apps/web/restart", None),
        ("POST", "/apps/web/redeploy", None),
        ("POST", "/apps/web/rollback", Some(json!({"deployment": 1}))),
        ("GET", "/apps/web/deployments", None),
        ("GET", "/apps/web/logs", None),
        ("GET", "/apps/web/logs?tail=10&follow=true", None),
        ("GET", "/apps/web/metrics", None),
    ] {
        let r = app.api(method, path, Some(&b), body).await;
        assert_eq!(
            r.status,
            StatusCode::NOT_FOUND,
            "{method} {path}: {}",
            r.body
        );
        assert_error(&r, StatusCode::NOT_FOUND, "not_found");
    }
    assert_eq!(total(&app, &b, "/apps").await, 0);

    // A's app is untouched: not stopped, not changed, not redeployed, not deleted.
    let j = app.api("GET", "/apps/web", Some(&a), None).await.json();
    assert_eq!(j["desired"], "running");
    assert_eq!(j["port"], 8080);
    assert_eq!(total(&app, &a, "/apps/web/deployments").await, 1);

    // Names are per tenant: B may have a "web" of their own, and each sees only theirs.
    let other = "127.0.0.1:9/pier-test/other:2";
    let mut mine = minimal("web");
    mine["image"] = json!(other);
    create(&app, &b, mine).await;
    let bl = app.api("GET", "/apps", Some(&b), None).await.json();
    assert_eq!(bl["total"], 1);
    assert_eq!(bl["items"][0]["image"], other);
    assert!(!bl.to_string().contains("visible-value"));
    assert_eq!(
        app.api("GET", "/apps/web", Some(&a), None).await.json()["image"],
        IMAGE
    );
    assert_eq!(total(&app, &a, "/apps").await, 1);
}

#[sqlx::test(migrations = "../migrations")]
async fn deployments_are_listed_and_only_good_ones_rolled_back_to(db: SqlitePool) {
    let app = TestApp::new(db).await;
    let t = tenant(&app, "a@example.com").await;
    create(&app, &t, minimal("web")).await;

    let d = app
        .api("GET", "/apps/web/deployments", Some(&t), None)
        .await
        .json();
    assert_eq!(d["total"], 1, "{d}");
    let first = &d["items"][0];
    assert_eq!(first["number"], 1);
    assert_eq!(first["cause"], "created");
    assert_eq!(first["image"], IMAGE);
    assert!(first["created_at"]
        .as_str()
        .is_some_and(|s| s.contains('T')));
    assert_ne!(first["status"], "running", "nothing can pull {IMAGE}");

    // #1 never ran, so there is nothing to roll back to.
    let r = app
        .api(
            "POST",
            "/apps/web/rollback",
            Some(&t),
            Some(json!({"deployment": 1})),
        )
        .await;
    assert_error(&r, StatusCode::CONFLICT, "conflict");
    assert!(message(&r).contains("#1"), "{}", r.body);
    assert_error(
        &app.api(
            "POST",
            "/apps/web/rollback",
            Some(&t),
            Some(json!({"deployment": 42})),
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &app.api(
            "POST",
            "/apps/web/rollback",
            Some(&t),
            Some(json!({"deployment": "1"})),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid",
    );

    let r = app.api("POST", "/apps/web/redeploy", Some(&t), None).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let j = r.json();
    assert_eq!(j["number"], 2);
    assert_eq!(j["cause"], "redeploy");
    assert_eq!(j["image"], IMAGE);

    let d = app
        .api("GET", "/apps/web/deployments", Some(&t), None)
        .await
        .json();
    assert_eq!(d["total"], 2);
    assert_eq!(d["items"][0]["number"], 2, "newest first: {d}");
    assert_eq!(d["items"][1]["number"], 1);
    let p = app
        .api(
            "GET",
            "/apps/web/deployments?per_page=1&page=2",
            Some(&t),
            None,
        )
        .await
        .json();
    assert_eq!(p["items"].as_array().unwrap().len(), 1);
    assert_eq!(p["items"][0]["number"], 1);
    assert_error(
        &app.api("GET", "/apps/web/deployments?per_page=0", Some(&t), None)
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid",
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn stop_start_and_delete(db: SqlitePool) {
    let app = TestApp::new(db).await;
    let t = tenant(&app, "a@example.com").await;
    create(&app, &t, minimal("web")).await;

    let r = app.api("POST", "/apps/web/stop", Some(&t), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["desired"], "stopped");
    assert_eq!(
        app.api("GET", "/apps/web", Some(&t), None).await.json()["desired"],
        "stopped"
    );
    // A stopped app is started, not restarted.
    assert_error(
        &app.api("POST", "/apps/web/restart", Some(&t), None).await,
        StatusCode::CONFLICT,
        "conflict",
    );
    let r = app.api("POST", "/apps/web/start", Some(&t), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["desired"], "running");

    // Metrics: JSON, even before any reading; logs: a bad query is a 400, and an app without
    // a container has no logs (409, or 503 where no engine answers) rather than an empty 200.
    let r = app.api("GET", "/apps/web/metrics", Some(&t), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.json().is_array(), "{}", r.body);
    assert_error(
        &app.api("GET", "/apps/web/logs?tail=lots", Some(&t), None)
            .await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    );
    let r = app.api("GET", "/apps/web/logs", Some(&t), None).await;
    assert!(
        r.status == StatusCode::CONFLICT || r.status == StatusCode::SERVICE_UNAVAILABLE,
        "{} {}",
        r.status,
        r.body
    );
    assert!(r.json()["error"]["code"].is_string(), "{}", r.body);

    let r = app.api("DELETE", "/apps/web", Some(&t), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    assert!(r.body.is_empty());
    for (method, path) in [
        ("GET", "/apps/web"),
        ("DELETE", "/apps/web"),
        ("GET", "/apps/web/deployments"),
    ] {
        assert_error(
            &app.api(method, path, Some(&t), None).await,
            StatusCode::NOT_FOUND,
            "not_found",
        );
    }
    assert_eq!(total(&app, &t, "/apps").await, 0);
}

#[sqlx::test(migrations = "../migrations")]
async fn registry_logins_never_show_the_password(db: SqlitePool) {
    let app = TestApp::new(db).await;
    let a = tenant(&app, "a@example.com").await;
    let b = tenant(&app, "b@example.com").await;
    let password = "s3cret-registry-pw";

    let r = app
        .api(
            "PUT",
            "/registries/127.0.0.1:5123",
            Some(&a),
            Some(json!({"username": "robot", "password": password})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(!r.body.contains(password), "{}", r.body);
    let j = r.json();
    assert_eq!(j["registry"], "127.0.0.1:5123");
    assert_eq!(j["username"], "robot");
    assert!(j["created_at"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(j.get("password").is_none(), "{j}");

    // The host is normalised.
    let r = app
        .api(
            "PUT",
            "/registries/GHCR.io",
            Some(&a),
            Some(json!({"username": "me", "password": password})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["registry"], "ghcr.io");

    let sealed: Vec<String> = pier_core::repo::registries::list_for_user(
        app.pier.db(),
        app.user_id("a@example.com").await,
    )
    .await
    .unwrap()
    .into_iter()
    .map(|c| c.sealed_password)
    .collect();
    assert_eq!(sealed.len(), 2);
    let r = app.api("GET", "/registries", Some(&a), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(!r.body.contains(password), "{}", r.body);
    for s in &sealed {
        assert!(!r.body.contains(s.as_str()), "{}", r.body);
    }
    let mut listed: Vec<(String, String)> = r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["registry"].as_str().unwrap().to_owned(),
                c["username"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    listed.sort();
    assert_eq!(
        listed,
        [
            ("127.0.0.1:5123".to_string(), "robot".to_string()),
            ("ghcr.io".to_string(), "me".to_string())
        ]
    );

    // Setting it again replaces the login.
    let r = app
        .api(
            "PUT",
            "/registries/127.0.0.1:5123",
            Some(&a),
            Some(json!({"username": "robot2", "password": "other"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let regs = app.api("GET", "/registries", Some(&a), None).await.json();
    assert_eq!(regs.as_array().unwrap().len(), 2);
    assert!(regs
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["registry"] == "127.0.0.1:5123" && c["username"] == "robot2"));

    // Bad input.
    let r = app
        .api(
            "PUT",
            "/registries/bad_host.example",
            Some(&a),
            Some(json!({"username": "", "password": ""})),
        )
        .await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    assert_eq!(fields(&r), ["registry", "username", "password"]);
    assert_error(
        &app.api(
            "PUT",
            "/registries/ghcr.io",
            Some(&a),
            Some(json!({"username": "x", "password": "y", "email": "z"})),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid",
    );

    // B sees none of A's, and cannot delete them.
    assert_eq!(
        app.api("GET", "/registries", Some(&b), None).await.json(),
        json!([])
    );
    assert_error(
        &app.api("DELETE", "/registries/127.0.0.1:5123", Some(&b), None)
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_eq!(
        app.api("GET", "/registries", Some(&a), None)
            .await
            .json()
            .as_array()
            .unwrap()
            .len(),
        2
    );

    let r = app
        .api("DELETE", "/registries/127.0.0.1:5123", Some(&a), None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    assert_error(
        &app.api("DELETE", "/registries/127.0.0.1:5123", Some(&a), None)
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    let regs = app.api("GET", "/registries", Some(&a), None).await.json();
    assert_eq!(regs.as_array().unwrap().len(), 1);
    assert_eq!(regs[0]["registry"], "ghcr.io");
}

#[sqlx::test(migrations = "../migrations")]
async fn the_openapi_document_lists_the_new_routes(db: SqlitePool) {
    let app = TestApp::new(db).await;
    let doc = app.api("GET", "/openapi.json", None, None).await.json();
    for path in [
        "/api/v1/apps",
        "/api/v1/apps/{name}",
        "/api/v1/apps/{name}/start",
        "/api/v1/apps/{name}/stop",
        "/api/v1/apps/{name}/restart",
        "/api/v1/apps/{name}/redeploy",
        "/api/v1/apps/{name}/rollback",
        "/api/v1/apps/{name}/deployments",
        "/api/v1/apps/{name}/logs",
        "/api/v1/apps/{name}/metrics",
        "/api/v1/registries",
        "/api/v1/registries/{registry}",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} is not documented");
    }
    for schema in [
        "AppOut",
        "DeploymentOut",
        "NewApp",
        "PatchApp",
        "RegistryOut",
    ] {
        assert!(
            doc["components"]["schemas"][schema].is_object(),
            "{schema} is not documented"
        );
    }
    assert!(doc["paths"]["/api/v1/apps"]["post"]["responses"]["201"].is_object());
    assert!(doc["paths"]["/api/v1/apps/{name}/redeploy"]["post"]["responses"]["202"].is_object());
}

#[sqlx::test(migrations = "../migrations")]
async fn the_apps_list_pages_by_name_in_the_database(db: SqlitePool) {
    let app = TestApp::new(db).await;
    let t = tenant(&app, "a@example.com").await;
    for name in ["cherry", "apple", "banana"] {
        create(&app, &t, minimal(name)).await;
    }
    let page = |p: u32| {
        let app = &app;
        let t = t.clone();
        async move {
            let r = app
                .api("GET", &format!("/apps?per_page=2&page={p}"), Some(&t), None)
                .await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.body);
            let j = r.json();
            assert_eq!(j["total"], 3);
            j["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["name"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(page(1).await, ["apple", "banana"]);
    assert_eq!(page(2).await, ["cherry"]);
    assert!(page(3).await.is_empty());
    let r = app.api("GET", "/apps?per_page=0", Some(&t), None).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[sqlx::test(migrations = "../migrations")]
async fn ids_of_deleted_apps_and_deployments_never_come_back(db: SqlitePool) {
    // Containers are named and labelled by these ids: a new app must never inherit an old one's.
    let app = TestApp::new(db).await;
    let t = tenant(&app, "a@example.com").await;
    create(&app, &t, minimal("first")).await;
    let old = stored(&app, "a@example.com", "first").await;
    let old_dep: i64 = sqlx::query_scalar("SELECT MAX(id) FROM deployments")
        .fetch_one(app.pier.db())
        .await
        .unwrap();
    let r = app.api("DELETE", "/apps/first", Some(&t), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    create(&app, &t, minimal("second")).await;
    let new = stored(&app, "a@example.com", "second").await;
    let new_dep: i64 = sqlx::query_scalar("SELECT MAX(id) FROM deployments")
        .fetch_one(app.pier.db())
        .await
        .unwrap();
    assert!(new.id > old.id, "app id {} came back", new.id);
    assert!(new_dep > old_dep, "deployment id {new_dep} came back");
}

#[sqlx::test(migrations = "../migrations")]
async fn an_empty_secret_needs_a_saved_value_to_keep(db: SqlitePool) {
    let app = TestApp::new(db).await;
    let t = tenant(&app, "a@example.com").await;
    let mut body = minimal("web");
    body["env"] = json!({"TOKEN": ""});
    body["secret_env"] = json!(["TOKEN"]);
    let r = app.api("POST", "/apps", Some(&t), Some(body)).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert!(r
        .api_field("env")
        .contains("Enter a value for the secret TOKEN"));
    assert_eq!(total(&app, &t, "/apps").await, 0);
    // With a saved value, empty means "keep it".
    let mut body = minimal("web");
    body["env"] = json!({"TOKEN": "s3cret"});
    body["secret_env"] = json!(["TOKEN"]);
    create(&app, &t, body).await;
    let r = app
        .api(
            "PATCH",
            "/apps/web",
            Some(&t),
            Some(json!({"env": {"TOKEN": ""}, "secret_env": ["TOKEN"]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        opened_env(&app, "a@example.com", "web").await,
        [("TOKEN".to_string(), "s3cret".to_string())]
    );
    // Renamed: nothing saved under the new name, so it must be typed.
    let r = app
        .api(
            "PATCH",
            "/apps/web",
            Some(&t),
            Some(json!({"env": {"API_TOKEN": ""}, "secret_env": ["API_TOKEN"]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
}

#[sqlx::test(migrations = "../migrations")]
async fn deployment_history_is_bounded(db: SqlitePool) {
    let mut settings = common::test_settings();
    // More redeploys than a tenant may ask for in ten minutes.
    settings.tenant_limits.redeploys.max = 100;
    let app = TestApp::with_settings(db, settings).await;
    let t = tenant(&app, "a@example.com").await;
    create(&app, &t, minimal("web")).await;
    for _ in 0..55 {
        let r = app.api("POST", "/apps/web/redeploy", Some(&t), None).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    }
    let r = app
        .api("GET", "/apps/web/deployments?per_page=100", Some(&t), None)
        .await;
    let j = r.json();
    assert_eq!(j["total"], 50, "{j}");
    // The newest are the ones kept.
    assert_eq!(j["items"][0]["number"], 56);
    assert_eq!(j["items"][49]["number"], 7);
}

/// Each redeploy pulls and replaces containers: a tenant gets 20 in ten minutes, whoever else
/// redeploys.
#[sqlx::test(migrations = "../migrations")]
async fn redeploys_are_rate_limited_per_tenant(db: SqlitePool) {
    let app = TestApp::new(db).await;
    let a = tenant(&app, "a@example.com").await;
    let b = tenant(&app, "b@example.com").await;
    create(&app, &a, minimal("web")).await;
    create(&app, &b, minimal("web")).await;
    for _ in 0..20 {
        let r = app.api("POST", "/apps/web/redeploy", Some(&a), None).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    }
    let r = app.api("POST", "/apps/web/redeploy", Some(&a), None).await;
    assert_error(&r, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    assert_eq!(
        message(&r),
        "Too many redeploys. Try again in 10 minutes.",
        "{}",
        r.body
    );
    // Another tenant is unaffected.
    let r = app.api("POST", "/apps/web/redeploy", Some(&b), None).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
}

/// With no allow-list, an image may not name a registry in the host's own network: dockerd would
/// fetch from there on the user's behalf. Listing it (as the tests' settings do) allows it.
#[sqlx::test(migrations = "../migrations")]
async fn registries_in_the_host_network_need_the_operators_allow_list(db: SqlitePool) {
    let mut settings = common::test_settings();
    settings.engine.allowed_registries.clear();
    let app = TestApp::with_settings(db, settings).await;
    let t = tenant(&app, "a@example.com").await;
    for image in [
        "127.0.0.1:9/x:1",
        "localhost:5000/x",
        "10.0.0.1/x",
        "169.254.169.254/x",
    ] {
        let r = app
            .api(
                "POST",
                "/apps",
                Some(&t),
                Some(json!({"name": "x", "image": image, "port": 8080})),
            )
            .await;
        assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
        assert_eq!(fields(&r), ["image"], "{image}: {}", r.body);
        assert!(
            r.api_field("image").contains("private network"),
            "{}",
            r.body
        );
    }
    assert_eq!(
        app.api("GET", "/apps", Some(&t), None).await.json()["total"],
        0
    );
}
