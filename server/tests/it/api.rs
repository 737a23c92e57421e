//! The REST API: bearer tokens, the error shape, tokens and users routes.

use crate::common;

use axum::http::StatusCode;
use common::{TestApp, ADMIN_EMAIL};
use serde_json::json;
use sqlx::SqlitePool;

fn assert_error(r: &common::Reply, status: StatusCode, code: &str) {
    assert_eq!(r.status, status, "{}", r.body);
    let j = r.json();
    assert_eq!(j["error"]["code"], code, "{}", r.body);
    assert!(j["error"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
}

#[sqlx::test(migrations = "../migrations")]
async fn every_kind_of_bad_token_is_401(db: SqlitePool) {
    let app = TestApp::new(db.clone()).await;
    let good = app.token(ADMIN_EMAIL, "read").await;
    assert_eq!(
        app.api("GET", "/tokens", Some(&good), None).await.status,
        StatusCode::OK
    );

    let r = app.api("GET", "/tokens", None, None).await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "invalid_token");
    assert_eq!(
        r.headers.get("www-authenticate").unwrap(),
        "Bearer realm=\"pier\""
    );
    for bad in [
        "pier_short",
        "not-a-token",
        &good.to_uppercase(),
        &format!("{good} extra"),
    ] {
        let r = app.api("GET", "/tokens", Some(bad), None).await;
        assert_error(&r, StatusCode::UNAUTHORIZED, "invalid_token");
    }
    let unknown = format!("pier_{}", "0".repeat(64));
    assert_error(
        &app.api("GET", "/tokens", Some(&unknown), None).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    );
    // A scheme other than Bearer.
    let r = app
        .browser()
        .send(
            axum::http::Request::get("/api/v1/tokens")
                .header("authorization", format!("Basic {good}"))
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "invalid_token");

    // Expired.
    let expiring = app.token(ADMIN_EMAIL, "read").await;
    sqlx::query("UPDATE api_tokens SET expires_at = 1 WHERE id = (SELECT MAX(id) FROM api_tokens)")
        .execute(&db)
        .await
        .unwrap();
    let r = app.api("GET", "/tokens", Some(&expiring), None).await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "invalid_token");
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("expired"));

    // Revoked: takes effect on the very next request.
    let list = app.api("GET", "/tokens", Some(&good), None).await.json();
    let id = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| good.starts_with(t["prefix"].as_str().unwrap()))
        .unwrap()["id"]
        .clone();
    let writer = app.token(ADMIN_EMAIL, "write").await;
    let r = app
        .api("DELETE", &format!("/tokens/{id}"), Some(&writer), None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    assert_error(
        &app.api("GET", "/tokens", Some(&good), None).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    );

    // A disabled owner's tokens stop working.
    let mut admin = app.admin().await;
    let _ = app.member("m@example.com").await;
    let member_token = app.token("m@example.com", "write").await;
    let mid = app.user_id("m@example.com").await.to_string();
    admin
        .call("user_action", &[("id", &mid), ("action", "disable")])
        .await;
    assert_error(
        &app.api("GET", "/tokens", Some(&member_token), None).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn the_api_takes_no_cookies(db: SqlitePool) {
    let app = TestApp::new(db).await;
    let mut browser = app.admin().await;
    let r = browser
        .send(
            axum::http::Request::get("/api/v1/tokens")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "invalid_token");
}

#[sqlx::test(migrations = "../migrations")]
async fn tokens_are_shown_once_scoped_and_private(db: SqlitePool) {
    let app = TestApp::new(db).await;
    let _ = app.member("a@example.com").await;
    let _ = app.member("b@example.com").await;
    let a = app.token("a@example.com", "write").await;
    let b = app.token("b@example.com", "write").await;

    let r = app
        .api(
            "POST",
            "/tokens",
            Some(&a),
            Some(json!({"name": "deploy", "scope": "read", "expires_in_days": 30})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let created = r.json();
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(pier_core::tokens::well_formed(&secret));
    assert_eq!(created["token"]["scope"], "read");
    assert!(created["token"]["expires_at"].is_string());
    let id = created["token"]["id"].as_i64().unwrap();

    let list = app.api("GET", "/tokens", Some(&a), None).await;
    assert!(
        !list.body.contains(&secret[5..]),
        "secrets are never listed"
    );
    assert_eq!(list.json()["total"], 2);

    // A read token reads, but cannot write; a member cannot mint an admin token.
    assert_eq!(
        app.api("GET", "/tokens", Some(&secret), None).await.status,
        StatusCode::OK
    );
    let r = app
        .api(
            "POST",
            "/tokens",
            Some(&secret),
            Some(json!({"name": "x", "scope": "read"})),
        )
        .await;
    assert_error(&r, StatusCode::FORBIDDEN, "forbidden");
    let r = app
        .api(
            "POST",
            "/tokens",
            Some(&a),
            Some(json!({"name": "x", "scope": "admin"})),
        )
        .await;
    assert_error(&r, StatusCode::FORBIDDEN, "forbidden");

    // B cannot see or revoke A's token.
    let r = app
        .api("DELETE", &format!("/tokens/{id}"), Some(&b), None)
        .await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found");
    assert_eq!(
        app.api("GET", "/tokens", Some(&b), None).await.json()["total"],
        1
    );
    assert_error(
        &app.api("DELETE", "/tokens/abc", Some(&b), None).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );

    // Bad input is named per field and creates nothing.
    let r = app
        .api(
            "POST",
            "/tokens",
            Some(&a),
            Some(json!({"name": "", "scope": "root", "expires_in_days": 0})),
        )
        .await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    let fields: Vec<String> = r.json()["error"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(fields, ["name", "scope", "expires_in_days"]);
    assert_eq!(
        app.api("GET", "/tokens", Some(&a), None).await.json()["total"],
        2
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn a_token_cannot_mint_a_longer_lived_token(db: SqlitePool) {
    let app = TestApp::new(db).await;
    let forever = app.token(ADMIN_EMAIL, "write").await;
    let new = |days: serde_json::Value| json!({"name": "child", "scope": "write", "expires_in_days": days});
    // A token that never expires may make any lifetime, including none.
    let r = app
        .api("POST", "/tokens", Some(&forever), Some(new(json!(null))))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let r = app
        .api("POST", "/tokens", Some(&forever), Some(new(json!(10))))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let ten_days = r.json()["secret"].as_str().unwrap().to_owned();

    for days in [json!(11), json!(3650), json!(null)] {
        let r = app
            .api("POST", "/tokens", Some(&ten_days), Some(new(days.clone())))
            .await;
        assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
        let field = &r.json()["error"]["fields"][0];
        assert_eq!(field["field"], "expires_in_days", "{days}: {}", r.body);
        assert!(
            field["message"]
                .as_str()
                .unwrap()
                .contains("at most 9 days"),
            "{}",
            r.body
        );
    }
    // Within its own lifetime is fine.
    let r = app
        .api("POST", "/tokens", Some(&ten_days), Some(new(json!(9))))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
}

#[sqlx::test(migrations = "../migrations")]
async fn malformed_requests_get_the_error_shape(db: SqlitePool) {
    let app = TestApp::new(db).await;
    let t = app.token(ADMIN_EMAIL, "admin").await;
    let r = app
        .browser()
        .send(
            axum::http::Request::post("/api/v1/tokens")
                .header("authorization", format!("Bearer {t}"))
                .header("content-type", "application/json")
                .body(axum::body::Body::from("{not json"))
                .unwrap(),
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "bad_request");
    let r = app
        .browser()
        .send(
            axum::http::Request::post("/api/v1/tokens")
                .header("authorization", format!("Bearer {t}"))
                .body(axum::body::Body::from("{}"))
                .unwrap(),
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "bad_request");
    let r = app
        .api(
            "POST",
            "/tokens",
            Some(&t),
            Some(json!({"name": "x", "scope": "read", "colour": "red"})),
        )
        .await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    assert_error(
        &app.api("GET", "/nothing-here", Some(&t), None).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &app.api("GET", "/users?per_page=0", Some(&t), None).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid",
    );
    assert_error(
        &app.api("GET", "/users?page=x", Some(&t), None).await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn users_need_an_admin_with_an_admin_token(db: SqlitePool) {
    let app = TestApp::new(db).await;
    let _ = app.member("m@example.com").await;
    let member = app.token("m@example.com", "write").await;
    let admin_write = app.token(ADMIN_EMAIL, "write").await;
    let admin = app.token(ADMIN_EMAIL, "admin").await;
    let mid = app.user_id("m@example.com").await;
    for (method, path, body) in [
        ("GET", "/users".to_string(), None),
        (
            "POST",
            "/users".to_string(),
            Some(json!({"email": "x@example.com", "role": "member"})),
        ),
        (
            "PATCH",
            format!("/users/{mid}"),
            Some(json!({"role": "admin"})),
        ),
        ("DELETE", format!("/users/{mid}"), None),
    ] {
        for t in [&member, &admin_write] {
            let r = app.api(method, &path, Some(t), body.clone()).await;
            assert_error(&r, StatusCode::FORBIDDEN, "forbidden");
        }
    }

    // Create with an invite, paginate, patch, delete.
    let r = app.api("POST", "/users", Some(&admin), Some(json!({"email": "new@example.com", "role": "member", "max_cpus": 1.5, "max_apps": 2}))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let j = r.json();
    assert!(j["invite_url"].as_str().unwrap().contains("/invite/"));
    assert_eq!(j["user"]["quotas"]["max_cpus"], "1.5");
    assert_eq!(j["user"]["has_password"], false);
    let new_id = j["user"]["id"].as_i64().unwrap();

    let page = app
        .api("GET", "/users?page=2&per_page=2", Some(&admin), None)
        .await
        .json();
    assert_eq!(page["total"], 3);
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    // Found by schemathesis: a huge page number once overflowed.
    let far = app
        .api(
            "GET",
            "/users?page=4294967295&per_page=100",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(far.status, StatusCode::OK, "{}", far.body);
    assert_eq!(far.json()["items"].as_array().unwrap().len(), 0);

    let r = app
        .api(
            "PATCH",
            &format!("/users/{new_id}"),
            Some(&admin),
            Some(json!({"max_memory_mb": -1, "role": "admin"})),
        )
        .await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    let users = app.api("GET", "/users", Some(&admin), None).await.json();
    let unchanged = users["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["id"] == new_id)
        .unwrap()
        .clone();
    assert_eq!(
        unchanged["role"], "member",
        "a rejected PATCH changes nothing"
    );

    let r = app
        .api(
            "PATCH",
            &format!("/users/{new_id}"),
            Some(&admin),
            Some(json!({"role": "admin", "disabled": true, "max_memory_mb": 4096})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let u = r.json();
    assert_eq!(
        (
            u["role"].as_str(),
            u["disabled"].as_bool(),
            u["quotas"]["max_memory_mb"].as_i64()
        ),
        (Some("admin"), Some(true), Some(4096))
    );

    let own = app.user_id(ADMIN_EMAIL).await;
    let r = app
        .api(
            "PATCH",
            &format!("/users/{own}"),
            Some(&admin),
            Some(json!({"role": "member"})),
        )
        .await;
    assert_error(&r, StatusCode::CONFLICT, "conflict");
    assert_error(
        &app.api(
            "PATCH",
            "/users/99999",
            Some(&admin),
            Some(json!({"role": "member"})),
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_eq!(
        app.api("DELETE", &format!("/users/{new_id}"), Some(&admin), None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_error(
        &app.api("DELETE", &format!("/users/{new_id}"), Some(&admin), None)
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn a_demoted_admins_token_loses_admin_power(db: SqlitePool) {
    let app = TestApp::new(db).await;
    let mut admin = app.admin().await;
    app.second_admin(&mut admin, "second@example.com").await;
    let token = app.token("second@example.com", "admin").await;
    assert_eq!(
        app.api("GET", "/users", Some(&token), None).await.status,
        StatusCode::OK
    );
    let id = app.user_id("second@example.com").await.to_string();
    admin
        .call("user_action", &[("id", &id), ("action", "make-member")])
        .await;
    assert_error(
        &app.api("GET", "/users", Some(&token), None).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    assert_eq!(
        app.api("GET", "/tokens", Some(&token), None).await.status,
        StatusCode::OK
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn the_openapi_document_describes_the_routes(db: SqlitePool) {
    let app = TestApp::new(db).await;
    let r = app.api("GET", "/openapi.json", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    let doc = r.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/api/v1/tokens",
        "/api/v1/tokens/{id}",
        "/api/v1/users",
        "/api/v1/users/{id}",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} missing");
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["token"]["scheme"],
        "bearer"
    );
}

/// A user PATCH is all or nothing: when the last-admin guard refuses one field, the others given
/// in the same request are not applied either.
#[sqlx::test(migrations = "../migrations")]
async fn a_refused_user_patch_changes_nothing(db: SqlitePool) {
    let app = TestApp::new(db).await;
    let admin = app.token(ADMIN_EMAIL, "admin").await;
    let me = app.user_id(ADMIN_EMAIL).await;
    let read = || {
        let (app, admin) = (&app, admin.clone());
        async move {
            let page = app.api("GET", "/users", Some(&admin), None).await.json();
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .find(|u| u["id"] == me)
                .cloned()
                .unwrap()
        }
    };
    let before = read().await;
    // Whatever order the fields are applied in, none may stick.
    let r = app
        .api(
            "PATCH",
            &format!("/users/{me}"),
            Some(&admin),
            Some(json!({"max_apps": 7, "max_memory_mb": 4096, "disabled": true})),
        )
        .await;
    assert_error(&r, StatusCode::CONFLICT, "conflict");
    let r = app
        .api(
            "PATCH",
            &format!("/users/{me}"),
            Some(&admin),
            Some(json!({"max_apps": 7, "role": "member"})),
        )
        .await;
    assert_error(&r, StatusCode::CONFLICT, "conflict");
    let after = read().await;
    assert_eq!(before, after, "a refused patch left changes behind");
    // A patch that is allowed applies every field.
    let r = app
        .api(
            "PATCH",
            &format!("/users/{me}"),
            Some(&admin),
            Some(json!({"max_apps": 7, "role": "admin", "disabled": false})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["quotas"]["max_apps"], 7);
}
