//! A user's own account: password and sessions.

use crate::common;

use axum::http::StatusCode;
use common::TestApp;
use sqlx::SqlitePool;

#[sqlx::test(migrations = "../migrations")]
async fn change_password_needs_the_current_one_and_ends_other_sessions(db: SqlitePool) {
    let app = TestApp::new(db).await;
    let mut phone = app.member("m@example.com").await;
    let mut laptop = app.browser();
    laptop
        .sign_in("m@example.com", "member password 1")
        .await
        .unwrap();

    let r = laptop
        .call(
            "change_password",
            &[
                ("current", "wrong password!"),
                ("new", "next password 22"),
                ("confirm", "next password 22"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        r.field_error("current").unwrap(),
        "That is not your current password."
    );
    let r = laptop
        .call(
            "change_password",
            &[
                ("current", "member password 1"),
                ("new", "short"),
                ("confirm", "other"),
            ],
        )
        .await;
    assert!(r.field_error("new").is_some() && r.field_error("confirm").is_some());

    let r = laptop
        .call(
            "change_password",
            &[
                ("current", "member password 1"),
                ("new", "next password 22"),
                ("confirm", "next password 22"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(laptop.me().await.is_some(), "this session stays");
    assert_eq!(phone.me().await, None, "other sessions end");
    assert!(app
        .browser()
        .sign_in("m@example.com", "member password 1")
        .await
        .is_err());
    app.browser()
        .sign_in("m@example.com", "next password 22")
        .await
        .unwrap();
}

#[sqlx::test(migrations = "../migrations")]
async fn list_and_end_own_sessions_only(db: SqlitePool) {
    let app = TestApp::new(db).await;
    let mut a = app.member("a@example.com").await;
    let mut a2 = app.browser();
    a2.sign_in("a@example.com", "member password 1")
        .await
        .unwrap();
    let mut b = app.member("b@example.com").await;

    let sessions = a.read("my_sessions").await.json();
    let list = sessions.as_array().unwrap();
    assert_eq!(list.len(), 2, "{sessions}");
    assert_eq!(list.iter().filter(|s| s["current"] == true).count(), 1);
    let other = list.iter().find(|s| s["current"] == false).unwrap()["handle"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(other.len(), 16);
    assert!(!sessions.to_string().contains(
        a2.cookie
            .as_ref()
            .unwrap()
            .split('=')
            .nth(1)
            .unwrap()
            .split('.')
            .next()
            .unwrap()
    ));

    // B cannot end A's session by handle.
    let r = b.call("end_session", &[("handle", &other)]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(a2.me().await.is_some());

    let r = a.call("end_session", &[("handle", &other)]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(a2.me().await, None);

    a2.sign_in("a@example.com", "member password 1")
        .await
        .unwrap();
    let r = a.call("end_other_sessions", &[]).await;
    assert_eq!(r.json()["message"], "Ended 1 other session.");
    assert_eq!(a2.me().await, None);
    assert!(a.me().await.is_some());
    assert!(b.me().await.is_some());
}

#[sqlx::test(migrations = "../migrations")]
async fn tokens_from_the_account_page_work_on_the_api(db: SqlitePool) {
    let app = TestApp::new(db).await;
    let mut m = app.member("m@example.com").await;
    let r = m
        .call(
            "create_token",
            &[
                ("name", "laptop"),
                ("scope", "write"),
                ("expires_in_days", ""),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let secret = r.json()["copy"].as_str().unwrap().to_owned();
    assert!(pier_core::tokens::well_formed(&secret));
    assert_eq!(
        app.api("GET", "/tokens", Some(&secret), None).await.status,
        StatusCode::OK
    );

    let list = m.read("my_tokens").await.json();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert!(!list.to_string().contains(&secret[5..]));
    let id = list[0]["id"].as_i64().unwrap().to_string();

    // Bad input per field; a member cannot pick the admin scope.
    let r = m
        .call(
            "create_token",
            &[
                ("name", ""),
                ("scope", "write"),
                ("expires_in_days", "soon"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.field_error("expires_in_days").is_some());
    let r = m
        .call(
            "create_token",
            &[("name", "x"), ("scope", "admin"), ("expires_in_days", "")],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // Another user cannot revoke it; its owner can, effective at once.
    let mut other = app.member("o@example.com").await;
    assert_eq!(
        other.call("revoke_token", &[("id", &id)]).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        m.call("revoke_token", &[("id", &id)]).await.status,
        StatusCode::OK
    );
    assert_eq!(
        app.api("GET", "/tokens", Some(&secret), None).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn the_api_reference_page_lists_the_endpoints(db: SqlitePool) {
    let app = TestApp::new(db).await;
    let mut m = app.member("m@example.com").await;
    let r = m.get("/api-docs").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.body.contains("/api/v1/tokens/{id}") && r.body.contains("Revokes one of the caller"),
        "{}",
        r.body
    );
    assert_eq!(
        app.browser().get("/api-docs").await.status,
        StatusCode::FOUND
    );
}

/// A password change keeps API tokens unless the person asks; asked, every token of theirs
/// stops at once (and no one else's). An admin's reset may revoke them too.
#[sqlx::test(migrations = "../migrations")]
async fn a_password_change_or_reset_can_revoke_the_users_tokens(db: SqlitePool) {
    let app = TestApp::new(db).await;
    let mut m = app.member("m@example.com").await;
    let _ = app.member("other@example.com").await;
    let kept = app.token("m@example.com", "read").await;
    let other = app.token("other@example.com", "read").await;
    let works = |t: String| {
        let app = &app;
        async move { app.api("GET", "/apps", Some(&t), None).await.status == StatusCode::OK }
    };
    assert!(works(kept.clone()).await);

    let r = change(&mut m, "member password 1", "next password 22", false).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(works(kept.clone()).await, "kept unless asked");

    let r = change(&mut m, "next password 22", "third password 333", true).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("1 API token was revoked"), "{}", r.body);
    assert!(!works(kept).await, "revoked at once");
    assert!(works(other.clone()).await, "another user's token stays");
    assert!(m.me().await.is_some());

    // The admin's reset, with the box ticked.
    let fresh = app.token("m@example.com", "read").await;
    let id = app.user_id("m@example.com").await.to_string();
    let mut admin = app.admin().await;
    let r = admin.call("reset_password", &[("id", &id)]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(works(fresh.clone()).await, "a plain reset keeps tokens");
    let r = admin
        .call("reset_password", &[("id", &id), ("revoke_tokens", "on")])
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(
        r.body.contains("1 API token(s) of theirs were revoked"),
        "{}",
        r.body
    );
    assert!(!works(fresh).await);
    assert!(works(other).await);
}

async fn change(
    m: &mut common::Browser,
    from: &str,
    to: &str,
    revoke_tokens: bool,
) -> common::Reply {
    let mut fields = vec![("current", from), ("new", to), ("confirm", to)];
    if revoke_tokens {
        fields.push(("revoke_tokens", "on"));
    }
    m.call("change_password", &fields).await
}
