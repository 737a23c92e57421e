//! Volumes, app kinds and capability profiles through the REST API and the browser's server
//! functions: input checks, the storage quota, keeping and reusing volumes, and tenancy. No
//! image is ever pulled (the registry does not answer), so no container or volume is made.

use crate::common;

use axum::http::StatusCode;
use common::{TestApp, ADMIN_EMAIL};
use serde_json::{json, Value};
use sqlx::SqlitePool;

const IMAGE: &str = "127.0.0.1:9/pier-test/none:1";

async fn tenant(app: &TestApp, email: &str) -> String {
    let _ = app.member(email).await;
    app.token(email, "write").await
}

fn db_app(volumes: Value) -> Value {
    json!({
        "name": "db", "image": IMAGE, "port": 5432, "kind": "internal",
        "volumes": volumes
    })
}

async fn volumes(app: &TestApp, token: &str) -> Vec<Value> {
    let r = app.api("GET", "/volumes", Some(token), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.json()["items"].as_array().unwrap().clone()
}

#[sqlx::test(migrations = "../migrations")]
async fn an_internal_app_with_a_volume(db: SqlitePool) {
    let app = TestApp::new(db).await;
    let t = tenant(&app, "ann@example.com").await;
    let r = app
        .api(
            "POST",
            "/apps",
            Some(&t),
            Some(db_app(json!([
                {"name": "db-data", "path": "/var/lib/postgresql/data", "size_mb": 1024}
            ]))),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let j = r.json();
    assert_eq!(j["kind"], "internal");
    assert_eq!(j["capabilities"], "default");
    assert_eq!(
        j["volumes"],
        json!([{"name": "db-data", "path": "/var/lib/postgresql/data", "size_mb": 1024}])
    );
    // Defaults: a web app with the default profile and no volumes.
    let r = app
        .api(
            "POST",
            "/apps",
            Some(&t),
            Some(json!({"name": "web", "image": IMAGE, "port": 8080, "capabilities": "strict"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.json()["kind"], "web");
    assert_eq!(r.json()["capabilities"], "strict");
    assert_eq!(r.json()["volumes"], json!([]));

    let v = volumes(&app, &t).await;
    assert_eq!(v.len(), 1);
    assert_eq!(v[0]["name"], "db-data");
    assert_eq!(v[0]["app"], "db");
    // Not made yet (the image never pulls): no usage to show.
    assert!(v[0]["used_bytes"].is_null());

    // The storage quota on the new-app form and the admin's user list.
    let r = app
        .api(
            "GET",
            "/users",
            Some(&app.token(ADMIN_EMAIL, "admin").await),
            None,
        )
        .await;
    let ann = r.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["email"] == "ann@example.com")
        .cloned()
        .unwrap();
    assert_eq!(ann["quotas"]["max_storage_mb"], 5120);

    // A domain cannot go to an internal app, and an app with domains cannot turn internal.
    let r = app
        .api(
            "POST",
            "/domains",
            Some(&t),
            Some(json!({"domain": "db.example.com", "app": "db"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert!(r.api_field("app").contains("internal"), "{}", r.body);
    let r = app
        .api(
            "POST",
            "/domains",
            Some(&t),
            Some(json!({"domain": "web.example.com", "app": "web"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let r = app
        .api(
            "PATCH",
            "/apps/web",
            Some(&t),
            Some(json!({"kind": "internal"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert!(
        r.api_field("kind").contains("web.example.com"),
        "{}",
        r.body
    );
    // An internal app has no health path.
    let r = app
        .api(
            "PATCH",
            "/apps/db",
            Some(&t),
            Some(json!({"health_path": "/healthz"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert!(
        r.api_field("health_path").contains("internal"),
        "{}",
        r.body
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn bad_volumes_are_refused_and_change_nothing(db: SqlitePool) {
    let app = TestApp::new(db).await;
    let t = tenant(&app, "ann@example.com").await;
    for (vols, says) in [
        (
            json!([{"name": "d", "path": "data", "size_mb": 64}]),
            "absolute",
        ),
        (
            json!([{"name": "d", "path": "/", "size_mb": 64}]),
            "whole file system",
        ),
        (
            json!([{"name": "d", "path": "/proc/x", "size_mb": 64}]),
            "kernel",
        ),
        (
            json!([{"name": "d", "path": "/sys", "size_mb": 64}]),
            "kernel",
        ),
        (
            json!([{"name": "d", "path": "/dev/shm", "size_mb": 64}]),
            "kernel",
        ),
        (
            json!([{"name": "d", "path": "/a/../b", "size_mb": 64}]),
            "normalised",
        ),
        (
            json!([{"name": "d", "path": "/data/", "size_mb": 64}]),
            "normalised",
        ),
        (
            json!([{"name": "d", "path": "/da ta", "size_mb": 64}]),
            "letters",
        ),
        (
            json!([{"name": "d", "path": "/data\nx", "size_mb": 64}]),
            "letters",
        ),
        (
            json!([{"name": "D!", "path": "/data", "size_mb": 64}]),
            "lower-case",
        ),
        (
            json!([{"name": "d", "path": "/data", "size_mb": 1}]),
            "between 16",
        ),
        (json!([{"name": "d", "path": "/data"}]), "size"),
        (
            json!([{"name": "d", "path": "/a", "size_mb": 64}, {"name": "d", "path": "/b", "size_mb": 64}]),
            "twice",
        ),
        (
            json!([{"name": "a", "path": "/x", "size_mb": 64}, {"name": "b", "path": "/x", "size_mb": 64}]),
            "Two volumes",
        ),
    ] {
        let r = app
            .api("POST", "/apps", Some(&t), Some(db_app(vols.clone())))
            .await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{vols}: {}",
            r.body
        );
        let m = r.api_field("volumes");
        assert!(m.contains(says), "{vols}: {m}");
    }
    // Unknown kinds and profiles are refused too.
    for body in [
        json!({"name": "x", "image": IMAGE, "port": 1, "kind": "database"}),
        json!({"name": "x", "image": IMAGE, "port": 1, "capabilities": "all"}),
    ] {
        let r = app.api("POST", "/apps", Some(&t), Some(body)).await;
        assert!(r.status.is_client_error(), "{}", r.body);
    }
    let r = app.api("GET", "/apps", Some(&t), None).await;
    assert_eq!(r.json()["total"], 0, "{}", r.body);
    assert!(volumes(&app, &t).await.is_empty());
}

#[sqlx::test(migrations = "../migrations")]
async fn storage_quota_counts_every_volume(db: SqlitePool) {
    let app = TestApp::new(db).await;
    let t = tenant(&app, "ann@example.com").await;
    let admin = app.token(ADMIN_EMAIL, "admin").await;
    let ann = app.user_id("ann@example.com").await;
    let r = app
        .api(
            "PATCH",
            &format!("/users/{ann}"),
            Some(&admin),
            Some(json!({"max_storage_mb": 1000})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["quotas"]["max_storage_mb"], 1000);
    let r = app
        .api(
            "POST",
            "/apps",
            Some(&t),
            Some(db_app(json!([{"name": "a", "path": "/a", "size_mb": 600}]))),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let r = app
        .api(
            "POST",
            "/apps",
            Some(&t),
            Some(json!({"name": "b", "image": IMAGE, "port": 1,
                        "volumes": [{"name": "b", "path": "/b", "size_mb": 500}]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert_eq!(r.json()["error"]["code"], "quota_exceeded");
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("400 MiB of your 1000 MiB"),
        "{}",
        r.body
    );
    // All or nothing: the app was not made either.
    let r = app.api("GET", "/apps/b", Some(&t), None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // A second volume on the same app counts too.
    let r = app
        .api(
            "PATCH",
            "/apps/db",
            Some(&t),
            Some(json!({"volumes": [{"name": "a", "path": "/a"}, {"name": "c", "path": "/c", "size_mb": 401}]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let r = app
        .api(
            "PATCH",
            "/apps/db",
            Some(&t),
            Some(json!({"volumes": [{"name": "a", "path": "/a"}, {"name": "c", "path": "/c", "size_mb": 400}]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["volumes"].as_array().unwrap().len(), 2);
    // A size cannot change.
    let r = app
        .api(
            "PATCH",
            "/apps/db",
            Some(&t),
            Some(json!({"volumes": [{"name": "a", "path": "/a", "size_mb": 700}]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert!(r.api_field("volumes").contains("600 MiB"), "{}", r.body);
}

#[sqlx::test(migrations = "../migrations")]
async fn kept_volumes_move_to_a_new_app_and_only_one_at_a_time(db: SqlitePool) {
    let app = TestApp::new(db).await;
    let t = tenant(&app, "ann@example.com").await;
    let vol = json!([{"name": "pg", "path": "/var/lib/postgresql/data", "size_mb": 64}]);
    let r = app
        .api("POST", "/apps", Some(&t), Some(db_app(vol.clone())))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    // Another app cannot take it while db has it.
    let r = app
        .api(
            "POST",
            "/apps",
            Some(&t),
            Some(json!({"name": "db2", "image": IMAGE, "port": 5432,
                        "volumes": [{"name": "pg", "path": "/data"}]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert!(
        r.api_field("volumes").contains("belongs to your app db"),
        "{}",
        r.body
    );
    // Nor can it be deleted while an app has it.
    let r = app.api("DELETE", "/volumes/pg", Some(&t), None).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);

    // Deleting the app keeps the volume by default.
    let r = app.api("DELETE", "/apps/db", Some(&t), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let v = volumes(&app, &t).await;
    assert_eq!(v.len(), 1);
    assert!(v[0]["app"].is_null(), "{v:?}");
    assert_eq!(v[0]["path"], "/var/lib/postgresql/data");

    // A new app takes it by name (no size needed), at a path of its own.
    let r = app
        .api(
            "POST",
            "/apps",
            Some(&t),
            Some(json!({"name": "db2", "image": IMAGE, "port": 5432,
                        "volumes": [{"name": "pg", "path": "/data"}]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(
        r.json()["volumes"],
        json!([{"name": "pg", "path": "/data", "size_mb": 64}])
    );

    // Taken off the app in its settings: kept, not deleted.
    let r = app
        .api("PATCH", "/apps/db2", Some(&t), Some(json!({"volumes": []})))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(volumes(&app, &t).await[0]["app"].is_null());
    let r = app.api("DELETE", "/volumes/pg", Some(&t), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    assert!(volumes(&app, &t).await.is_empty());

    // keep_volumes=false deletes them with the app.
    let r = app.api("POST", "/apps", Some(&t), Some(db_app(vol))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let r = app
        .api("DELETE", "/apps/db?keep_volumes=false", Some(&t), None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    assert!(volumes(&app, &t).await.is_empty());
}

#[sqlx::test(migrations = "../migrations")]
async fn another_tenants_volumes_are_not_found(db: SqlitePool) {
    let app = TestApp::new(db).await;
    let ann = tenant(&app, "ann@example.com").await;
    let bob = tenant(&app, "bob@example.com").await;
    let r = app
        .api(
            "POST",
            "/apps",
            Some(&ann),
            Some(db_app(
                json!([{"name": "secret", "path": "/d", "size_mb": 64}]),
            )),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let r = app.api("DELETE", "/apps/db", Some(&ann), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    // Bob sees none of Ann's volumes, cannot delete one, and cannot take one by its name:
    // for him the name is free, so he gets a volume of his own.
    assert!(volumes(&app, &bob).await.is_empty());
    let r = app.api("DELETE", "/volumes/secret", Some(&bob), None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    let r = app
        .api(
            "POST",
            "/apps",
            Some(&bob),
            Some(json!({"name": "db", "image": IMAGE, "port": 1,
                        "volumes": [{"name": "secret", "path": "/d"}]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert!(r.api_field("volumes").contains("size"), "{}", r.body);
    assert_eq!(volumes(&app, &ann).await.len(), 1);
    // Through the browser's server functions as well.
    let mut b = app.browser();
    b.sign_in("bob@example.com", "member password 1")
        .await
        .expect("bob signs in");
    let r = b.read("my_volumes").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json(), json!([]));
    let r = b.call("delete_volume", &[("name", "secret")]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    // And an admin cannot delete Ann while her kept volume holds data.
    let admin = app.token(ADMIN_EMAIL, "admin").await;
    let id = app.user_id("ann@example.com").await;
    let r = app
        .api("DELETE", &format!("/users/{id}"), Some(&admin), None)
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    assert!(r.body.contains("volume"), "{}", r.body);
}

#[sqlx::test(migrations = "../migrations")]
async fn the_browser_forms_take_kind_profile_and_volumes(db: SqlitePool) {
    let app = TestApp::new(db).await;
    let mut b = app.member("ann@example.com").await;
    let r = b
        .call(
            "create_app",
            &[
                ("name", "cache"),
                ("image", IMAGE),
                ("port", "6379"),
                ("kind", "internal"),
                ("capabilities", "strict"),
                ("volumes[0][name]", "cache-data"),
                ("volumes[0][path]", "/data"),
                ("volumes[0][size_mb]", "32"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = b.read("app_detail?name=cache").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let d = r.json();
    assert_eq!(d["kind"], "internal");
    assert_eq!(d["capabilities"], "strict");
    assert_eq!(d["volumes"][0]["name"], "cache-data");
    assert_eq!(d["volumes"][0]["size_mb"], 32);
    // A bad row names the field; nothing changes.
    let r = b
        .call(
            "update_app",
            &[
                ("app", "cache"),
                ("image", IMAGE),
                ("port", "6379"),
                ("volumes[0][name]", "cache-data"),
                ("volumes[0][path]", "/proc/1"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert!(r.field_error("volumes").is_some(), "{}", r.body);
    let r = b
        .call(
            "update_app",
            &[
                ("app", "cache"),
                ("image", IMAGE),
                ("port", "6379"),
                ("kind", "database"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert!(r.field_error("kind").is_some(), "{}", r.body);
    let d = b.read("app_detail?name=cache").await.json();
    assert_eq!(d["volumes"][0]["path"], "/data");
    // Deleting with its volumes, from the app page's second button.
    let r = b
        .call(
            "app_action",
            &[("app", "cache"), ("action", "delete-with-volumes")],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // The app's page has nothing left to show: the answer sends the browser to the list.
    assert!(
        r.headers.contains_key("serverfnredirect"),
        "{:?}",
        r.headers
    );
    assert_eq!(r.headers["location"], "/");
    assert_eq!(b.read("my_volumes").await.json(), json!([]));
}
