//! The admin's user management, and that only admins can use it.

use crate::common;

use axum::http::StatusCode;
use common::{TestApp, ADMIN_EMAIL};
use pier_core::service::Settings;
use sqlx::SqlitePool;

const NEW_USER: [(&str, &str); 6] = [
    ("email", "friend@example.com"),
    ("role", "member"),
    ("password", ""),
    ("max_apps", "3"),
    ("max_memory_mb", "512"),
    ("max_cpus", "0.5"),
];

fn token_of(link: &str) -> String {
    link.rsplit('/').next().unwrap().to_owned()
}

#[sqlx::test(migrations = "../migrations")]
async fn every_admin_function_refuses_members_and_strangers(db: SqlitePool) {
    let app = TestApp::new(db).await;
    let mut member = app.member("member@example.com").await;
    let mut stranger = app.browser();
    let admin_id = app.user_id(ADMIN_EMAIL).await.to_string();
    let id = admin_id.as_str();
    let calls: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("create_user", NEW_USER.to_vec()),
        ("user_action", vec![("id", id), ("action", "make-member")]),
        ("user_action", vec![("id", id), ("action", "disable")]),
        ("reset_password", vec![("id", id)]),
        (
            "set_quotas",
            vec![
                ("id", id),
                ("max_apps", "0"),
                ("max_memory_mb", "0"),
                ("max_cpus", "0"),
            ],
        ),
        ("user_action", vec![("id", id), ("action", "delete")]),
    ];
    for (endpoint, fields) in &calls {
        let r = member.call(endpoint, fields).await;
        assert_eq!(
            r.status,
            StatusCode::FORBIDDEN,
            "member → {endpoint}: {}",
            r.body
        );
        assert_eq!(r.error_code(), "forbidden");
        let r = stranger.call(endpoint, fields).await;
        assert_eq!(
            r.status,
            StatusCode::UNAUTHORIZED,
            "stranger → {endpoint}: {}",
            r.body
        );
    }
    assert_eq!(
        member.read("list_users").await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        stranger.read("list_users").await.status,
        StatusCode::UNAUTHORIZED
    );
    // Nothing changed.
    let admin = pier_core::repo::users::by_email(app.pier.db(), ADMIN_EMAIL)
        .await
        .unwrap()
        .unwrap();
    assert!(!admin.disabled && admin.role == pier_core::model::Role::Admin);
    assert_eq!(
        pier_core::repo::users::count(app.pier.db()).await.unwrap(),
        2
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn invite_link_sets_a_password_once(db: SqlitePool) {
    let app = TestApp::new(db).await;
    let mut admin = app.admin().await;
    let r = admin.call("create_user", &NEW_USER).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let link = r.json()["copy"].as_str().unwrap().to_owned();
    assert!(link.contains("/invite/"), "{link}");
    let token = token_of(&link);

    let users = admin.read("list_users").await.json();
    assert_eq!(users["two_factor_required"], false, "{users}");
    let friend = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["email"] == "friend@example.com")
        .unwrap()
        .clone();
    assert_eq!(friend["has_password"], false);
    assert_eq!(friend["max_apps"], 3);
    assert_eq!(friend["max_memory_mb"], 512);
    assert_eq!(friend["max_cpus"], "0.5");

    let mut b = app.browser();
    assert!(
        b.sign_in("friend@example.com", "anything at all")
            .await
            .is_err(),
        "no password yet"
    );
    let info = b
        .send(
            axum::http::Request::get(format!("/rpc/invite_info?token={token}"))
                .header("accept", "application/json")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(info.json(), "friend@example.com");

    // Bad input first: nothing is used up.
    let r = b
        .call(
            "accept_invite",
            &[
                ("token", &token),
                ("password", "short"),
                ("confirm", "short"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.field_error("password").unwrap().contains("at least 12"));
    let r = b
        .call(
            "accept_invite",
            &[
                ("token", &token),
                ("password", "a long password"),
                ("confirm", "another one!!"),
            ],
        )
        .await;
    assert_eq!(
        r.field_error("confirm").unwrap(),
        "The two passwords differ."
    );

    let r = b
        .call(
            "accept_invite",
            &[
                ("token", &token),
                ("password", "friend password 1"),
                ("confirm", "friend password 1"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    b.sign_in("friend@example.com", "friend password 1")
        .await
        .unwrap();

    // A used link is refused with a clear message.
    let r = app
        .browser()
        .call(
            "accept_invite",
            &[
                ("token", &token),
                ("password", "hijack password"),
                ("confirm", "hijack password"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::GONE);
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .contains("already used"));
    // And a made-up one.
    let r = app
        .browser()
        .call(
            "accept_invite",
            &[
                ("token", &"ab".repeat(32)),
                ("password", "hijack password"),
                ("confirm", "hijack password"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::GONE);
    assert!(r.json()["message"].as_str().unwrap().contains("not valid"));
}

#[sqlx::test(migrations = "../migrations")]
async fn invite_links_expire(db: SqlitePool) {
    let app = TestApp::with_settings(
        db,
        Settings {
            invite_ttl_secs: 0,
            ..Settings::default()
        },
    )
    .await;
    let mut admin = app.admin().await;
    let r = admin.call("create_user", &NEW_USER).await;
    let token = token_of(r.json()["copy"].as_str().unwrap());
    let r = app
        .browser()
        .call(
            "accept_invite",
            &[
                ("token", &token),
                ("password", "friend password 1"),
                ("confirm", "friend password 1"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::GONE);
    assert!(
        r.json()["message"].as_str().unwrap().contains("expired"),
        "{}",
        r.body
    );
    // The invite page says so too, with the right status.
    let page = app.browser().get(&format!("/invite/{token}")).await;
    assert_eq!(page.status, StatusCode::GONE);
    assert!(page.body.contains("expired"), "{}", page.body);
}

#[sqlx::test(migrations = "../migrations")]
async fn create_user_rejects_bad_input_and_creates_nothing(db: SqlitePool) {
    let app = TestApp::new(db).await;
    let mut admin = app.admin().await;
    let r = admin
        .call(
            "create_user",
            &[
                ("email", "not an email"),
                ("role", "owner"),
                ("password", "short"),
                ("max_apps", "many"),
                ("max_memory_mb", "-5"),
                ("max_cpus", "1.23456"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    for f in [
        "email",
        "role",
        "password",
        "max_apps",
        "max_memory_mb",
        "max_cpus",
    ] {
        assert!(r.field_error(f).is_some(), "no error for {f}: {}", r.body);
    }
    let long = format!("{}@example.com", "a".repeat(300));
    let r = admin
        .call(
            "create_user",
            &[
                ("email", &long),
                ("role", "member"),
                ("password", ""),
                ("max_apps", ""),
                ("max_memory_mb", ""),
                ("max_cpus", ""),
            ],
        )
        .await;
    assert!(r.field_error("email").unwrap().contains("at most"));
    let r = admin
        .call(
            "create_user",
            &[
                ("email", "ADMIN@example.com"),
                ("role", "member"),
                ("password", ""),
                ("max_apps", ""),
                ("max_memory_mb", ""),
                ("max_cpus", ""),
            ],
        )
        .await;
    assert_eq!(
        r.field_error("email").unwrap(),
        "A user with this email already exists."
    );
    assert_eq!(
        pier_core::repo::users::count(app.pier.db()).await.unwrap(),
        1
    );
    let invites: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM invites")
        .fetch_one(app.pier.db())
        .await
        .unwrap();
    assert_eq!(invites, 0);
}

#[sqlx::test(migrations = "../migrations")]
async fn disabling_a_user_ends_their_sessions_at_once(db: SqlitePool) {
    let app = TestApp::new(db).await;
    let mut member = app.member("member@example.com").await;
    let mut laptop = app.browser();
    laptop
        .sign_in("member@example.com", "member password 1")
        .await
        .unwrap();
    let id = app.user_id("member@example.com").await.to_string();

    let mut admin = app.admin().await;
    let r = admin
        .call("user_action", &[("id", &id), ("action", "disable")])
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(member.me().await, None);
    assert_eq!(laptop.me().await, None);
    let r = member
        .sign_in("member@example.com", "member password 1")
        .await
        .unwrap_err();
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.json()["message"].as_str().unwrap().contains("disabled"));

    let r = admin
        .call("user_action", &[("id", &id), ("action", "enable")])
        .await;
    assert_eq!(r.status, StatusCode::OK);
    member
        .sign_in("member@example.com", "member password 1")
        .await
        .unwrap();
}

#[sqlx::test(migrations = "../migrations")]
async fn the_last_admin_cannot_be_removed(db: SqlitePool) {
    let app = TestApp::new(db).await;
    let mut admin = app.admin().await;
    let id = app.user_id(ADMIN_EMAIL).await.to_string();
    for action in ["make-member", "disable"] {
        let r = admin
            .call("user_action", &[("id", id.as_str()), ("action", action)])
            .await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{action}: {}", r.body);
        assert!(r.json()["message"]
            .as_str()
            .unwrap()
            .contains("last enabled admin"));
    }
    // With a second admin, the first may step down; then the second is the last one.
    app.second_admin(&mut admin, "second@example.com").await;
    let second = app.user_id("second@example.com").await.to_string();
    let mut second_b = app.browser();
    second_b
        .sign_in("second@example.com", "second admin pw")
        .await
        .unwrap();
    let r = admin
        .call("user_action", &[("id", &id), ("action", "make-member")])
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = second_b
        .call("user_action", &[("id", &second), ("action", "disable")])
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let r = second_b
        .call("user_action", &[("id", &second), ("action", "delete")])
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    // The demoted first admin is now a member: admin pages refuse them.
    assert_eq!(admin.read("list_users").await.status, StatusCode::FORBIDDEN);
}

#[sqlx::test(migrations = "../migrations")]
async fn role_quota_reset_and_delete(db: SqlitePool) {
    let app = TestApp::new(db).await;
    let mut admin = app.admin().await;
    let mut member = app.member("member@example.com").await;
    let id = app.user_id("member@example.com").await.to_string();

    let r = admin
        .call(
            "set_quotas",
            &[
                ("id", &id),
                ("max_apps", "7"),
                ("max_memory_mb", "4096"),
                ("max_cpus", "1.5"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let u = pier_core::repo::users::by_email(app.pier.db(), "member@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            u.quotas.max_apps,
            u.quotas.max_memory_mb,
            u.quotas.max_cpus_milli
        ),
        (7, 4096, 1500)
    );
    let r = admin
        .call(
            "set_quotas",
            &[
                ("id", &id),
                ("max_apps", "1001"),
                ("max_memory_mb", "x"),
                ("max_cpus", "1"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.field_error("max_apps").is_some() && r.field_error("max_memory_mb").is_some());

    let r = admin
        .call("user_action", &[("id", &id), ("action", "make-admin")])
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        member.read("list_users").await.status,
        StatusCode::OK,
        "promoted at once"
    );
    let r = admin
        .call("user_action", &[("id", &id), ("action", "make-root")])
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.field_error("action").is_some(), "{}", r.body);

    // Reset: a new link; the old password keeps working until the link is used.
    let r = admin.call("reset_password", &[("id", &id)]).await;
    let token = token_of(r.json()["copy"].as_str().unwrap());
    let r = app
        .browser()
        .call(
            "accept_invite",
            &[
                ("token", &token),
                ("password", "brand new password"),
                ("confirm", "brand new password"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        member.me().await,
        None,
        "sessions end when the password is reset"
    );
    member
        .sign_in("member@example.com", "brand new password")
        .await
        .unwrap();

    let r = admin
        .call("user_action", &[("id", "999999"), ("action", "delete")])
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let own = app.user_id(ADMIN_EMAIL).await.to_string();
    let r = admin
        .call("user_action", &[("id", &own), ("action", "delete")])
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let r = admin
        .call("user_action", &[("id", &id), ("action", "delete")])
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(member.me().await, None);
    assert!(
        pier_core::repo::users::by_email(app.pier.db(), "member@example.com")
            .await
            .unwrap()
            .is_none()
    );
}
