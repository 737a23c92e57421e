//! Server-rendered pages: who may see what, and the health check.

mod common;

use axum::http::StatusCode;
use common::TestApp;
use sqlx::SqlitePool;

#[sqlx::test(migrations = "../migrations")]
async fn signed_in_pages_redirect_strangers_to_sign_in(db: SqlitePool) {
    let app = TestApp::new(db).await;
    let mut b = app.browser();
    for (path, to) in [
        ("/", "/login"),
        ("/account", "/login?next=/account"),
        ("/admin/users", "/login?next=/admin/users"),
    ] {
        let r = b.get(path).await;
        assert_eq!(r.status, StatusCode::FOUND, "{path}");
        assert_eq!(r.headers.get("location").unwrap(), to, "{path}");
    }
    let r = b.get("/login").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("Sign in"));
    assert!(r.body.contains("name=\"csrf_token\""));
}

#[sqlx::test(migrations = "../migrations")]
async fn admin_page_is_for_admins_only(db: SqlitePool) {
    let app = TestApp::new(db).await;
    let mut member = app.member("member@example.com").await;
    let r = member.get("/admin/users").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.body.contains("Admins only"));
    assert!(
        !r.body.contains("admin@example.com"),
        "no user data leaks to members"
    );

    let mut admin = app.admin().await;
    let r = admin.get("/admin/users").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("member@example.com"));
    assert!(r.body.contains("Add a person"));
}

#[sqlx::test(migrations = "../migrations")]
async fn dashboard_and_account_render_for_the_user(db: SqlitePool) {
    let app = TestApp::new(db).await;
    let mut member = app.member("member@example.com").await;
    let r = member.get("/").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("Your apps") && r.body.contains("member@example.com"));
    assert!(
        !r.body.contains("href=\"/admin/users\""),
        "members get no admin link"
    );
    let r = member.get("/account").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("Change password"));
    // Signed in, the sign-in page sends you on.
    let r = member.get("/login?next=/account").await;
    assert_eq!(r.status, StatusCode::FOUND);
    assert_eq!(r.headers.get("location").unwrap(), "/account");
    let r = member.get("/login?next=//evil.example").await;
    assert_eq!(r.headers.get("location").unwrap(), "/");
}

#[sqlx::test(migrations = "../migrations")]
async fn unknown_pages_are_404_and_health_is_200(db: SqlitePool) {
    let app = TestApp::new(db.clone()).await;
    let mut b = app.browser();
    let r = b.get("/no/such/page").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.body.contains("Page not found"));
    let r = b.get("/healthz").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, "ok\n");
    assert_eq!(r.headers.get("x-frame-options").unwrap(), "DENY");
    assert_eq!(r.headers.get("referrer-policy").unwrap(), "same-origin");
    db.close().await;
    assert_eq!(
        b.get("/healthz").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
}
