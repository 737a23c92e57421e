//! Signing in and out, throttling, CSRF, session lifetime.

use crate::common;

use axum::http::StatusCode;
use common::{TestApp, ADMIN_EMAIL, ADMIN_PASSWORD};
use pier_core::service::Settings;
use sqlx::SqlitePool;

#[sqlx::test(migrations = "../migrations")]
async fn sign_in_rotates_the_session_and_sign_out_ends_it(db: SqlitePool) {
    let app = TestApp::new(db).await;
    let mut b = app.browser();
    assert_eq!(b.me().await, None);
    // A visitor has no session: the CSRF token for the sign-in form is in a signed cookie.
    let anonymous_csrf = b.csrf().await;
    assert_eq!(b.cookie, None);
    assert!(b.csrf_cookie.is_some());

    b.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await.unwrap();
    assert_eq!(b.me().await.as_deref(), Some(ADMIN_EMAIL));
    let signed_in = b.cookie.clone().expect("a session from sign-in");
    assert_ne!(
        b.csrf().await,
        anonymous_csrf,
        "CSRF token must change at sign-in"
    );

    // A session id an attacker planted before sign-in is worth nothing: sign-in issues its own.
    let mut planted = app.browser();
    planted.cookie = Some("pier_session=planted-by-someone".into());
    planted.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await.unwrap();
    assert_ne!(
        planted.cookie.as_deref(),
        Some("pier_session=planted-by-someone")
    );
    assert_ne!(planted.cookie, Some(signed_in));

    let r = b.call("logout", &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(b.me().await, None);
}

#[sqlx::test(migrations = "../migrations")]
async fn session_cookie_is_httponly_lax_and_secure_only_over_https(db: SqlitePool) {
    let app = TestApp::new(db).await;
    let set_cookies = |r: &common::Reply| -> Vec<String> {
        r.headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    };
    // A visitor: only the CSRF cookie, HttpOnly and SameSite=Strict.
    let mut b = app.browser();
    let r = b.read("session").await;
    let set = set_cookies(&r);
    assert_eq!(set.len(), 1, "{set:?}");
    assert!(set[0].starts_with("pier_csrf="), "{set:?}");
    assert!(set[0].contains("HttpOnly") && set[0].contains("SameSite=Strict"));
    assert!(!set[0].contains("Secure"), "{set:?}");
    // Signing in sets the session cookie.
    let token = b.csrf().await;
    let r = b.login_with(ADMIN_EMAIL, ADMIN_PASSWORD, &token).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let cookie = set_cookies(&r)
        .into_iter()
        .find(|c| c.starts_with("pier_session="))
        .expect("a session cookie");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Lax"), "{cookie}");
    assert!(!cookie.contains("Secure"), "{cookie}");

    let mut https = app.browser();
    let r = https
        .send(
            axum::http::Request::get("/rpc/session")
                .header("x-forwarded-proto", "https")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
    let cookie = r.headers.get("set-cookie").unwrap().to_str().unwrap();
    assert!(cookie.contains("; Secure"), "{cookie}");
}

#[sqlx::test(migrations = "../migrations")]
async fn unknown_email_and_wrong_password_get_the_same_answer(db: SqlitePool) {
    let app = TestApp::new(db).await;
    let mut b = app.browser();
    let wrong = b
        .sign_in(ADMIN_EMAIL, "not the password at all")
        .await
        .unwrap_err();
    let unknown = b
        .sign_in("nobody@example.com", "not the password at all")
        .await
        .unwrap_err();
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.status, unknown.status);
    assert_eq!(wrong.body, unknown.body);
    assert_eq!(wrong.json()["message"], "Wrong email or password.");
}

#[sqlx::test(migrations = "../migrations")]
async fn bad_sign_in_input_is_named_per_field(db: SqlitePool) {
    let app = TestApp::new(db).await;
    let mut b = app.browser();
    let r = b.sign_in("not-an-email", "").await.unwrap_err();
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.field_error("email").unwrap().contains("valid email"));
    assert_eq!(r.field_error("password").unwrap(), "Enter your password.");
}

#[sqlx::test(migrations = "../migrations")]
async fn failed_sign_ins_are_throttled_per_account(db: SqlitePool) {
    let app = TestApp::new(db).await;
    let mut b = app.browser();
    for _ in 0..5 {
        let r = b
            .sign_in(ADMIN_EMAIL, "wrong password 123")
            .await
            .unwrap_err();
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    // Delayed now, even with the right password, and from another address: for a minute, not a
    // fixed lock (the delay doubles with each further failure, up to 15 minutes).
    let mut elsewhere = app.browser();
    elsewhere.forwarded_for = Some("203.0.113.9".into());
    let r = elsewhere
        .sign_in(ADMIN_EMAIL, ADMIN_PASSWORD)
        .await
        .unwrap_err();
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("Try again in 1 minute."),
        "{}",
        r.body
    );
    // An unknown account is throttled the same way (no hint that it does not exist).
    for _ in 0..5 {
        let _ = b.sign_in("ghost@example.com", "wrong password 123").await;
    }
    let r = elsewhere
        .sign_in("ghost@example.com", "wrong password 123")
        .await
        .unwrap_err();
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
}

/// The per-account throttle is a delay, not a lock: once it has passed, the right password signs in.
#[sqlx::test(migrations = "../migrations")]
async fn the_right_password_signs_in_once_the_delay_has_passed(db: SqlitePool) {
    let mut settings = common::test_settings();
    settings.throttle.per_account.first = std::time::Duration::from_millis(300);
    let app = TestApp::with_settings(db, settings).await;
    let mut b = app.browser();
    for _ in 0..5 {
        let _ = b.sign_in(ADMIN_EMAIL, "wrong password 123").await;
    }
    let r = b.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await.unwrap_err();
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    b.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await.unwrap();
}

#[sqlx::test(migrations = "../migrations")]
async fn failed_sign_ins_are_throttled_per_address(db: SqlitePool) {
    let app = TestApp::new(db).await;
    let mut attacker = app.browser();
    attacker.forwarded_for = Some("198.51.100.7".into());
    for i in 0..20 {
        let _ = attacker
            .sign_in(&format!("user{i}@example.com"), "wrong password 123")
            .await;
    }
    let r = attacker
        .sign_in(ADMIN_EMAIL, ADMIN_PASSWORD)
        .await
        .unwrap_err();
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    // Someone else is unaffected.
    let mut friend = app.browser();
    friend.forwarded_for = Some("192.0.2.1".into());
    friend.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await.unwrap();
}

#[sqlx::test(migrations = "../migrations")]
async fn state_changes_need_the_csrf_token(db: SqlitePool) {
    let app = TestApp::new(db).await;
    let mut b = app.admin().await;
    let fields = [
        ("email", "x@example.com"),
        ("role", "member"),
        ("password", ""),
        ("max_apps", ""),
        ("max_memory_mb", ""),
        ("max_cpus", ""),
    ];

    // No token.
    let r = b.post_form("create_user", &fields).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.error_code(), "csrf");
    // A forged token.
    let mut forged = fields.to_vec();
    forged.push((
        "csrf_token",
        "0000000000000000000000000000000000000000000000000000000000000000",
    ));
    let r = b.post_form("create_user", &forged).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .contains("Reload the page"));
    // Another session's token.
    let other_token = app.browser().csrf().await;
    let mut stolen = fields.to_vec();
    stolen.push(("csrf_token", &other_token));
    assert_eq!(
        b.post_form("create_user", &stolen).await.status,
        StatusCode::FORBIDDEN
    );
    // Nothing was created.
    assert!(
        pier_core::repo::users::by_email(app.pier.db(), "x@example.com")
            .await
            .unwrap()
            .is_none()
    );

    // A browser that says the request is cross-site is refused even with the token.
    let token = b.csrf().await;
    let body = format!("email=y%40example.com&role=member&password=&max_apps=&max_memory_mb=&max_cpus=&csrf_token={token}");
    let r = b
        .send(
            axum::http::Request::post("/rpc/create_user")
                .header("content-type", "application/x-www-form-urlencoded")
                .header("sec-fetch-site", "cross-site")
                .body(axum::body::Body::from(body.clone()))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = b
        .send(
            axum::http::Request::post("/rpc/create_user")
                .header("content-type", "application/x-www-form-urlencoded")
                .header("origin", "https://evil.example")
                .header("host", "127.0.0.1:3000")
                .body(axum::body::Body::from(body.clone()))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // With the token, the same form works.
    let r = b.call("create_user", &fields).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

#[sqlx::test(migrations = "../migrations")]
async fn sign_in_itself_needs_the_csrf_token(db: SqlitePool) {
    let app = TestApp::new(db).await;
    let mut b = app.browser();
    let r = b
        .post_form(
            "login",
            &[("email", ADMIN_EMAIL), ("password", ADMIN_PASSWORD)],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(b.me().await, None);
}

#[sqlx::test(migrations = "../migrations")]
async fn idle_sessions_expire(db: SqlitePool) {
    let app = TestApp::new(db.clone()).await;
    let mut b = app.admin().await;
    assert!(b.me().await.is_some());
    // Let the idle deadline pass.
    sqlx::query("UPDATE sessions SET expires_at = strftime('%s','now') - 1")
        .execute(&db)
        .await
        .unwrap();
    assert_eq!(b.me().await, None);
}

#[sqlx::test(migrations = "../migrations")]
async fn sessions_end_at_their_absolute_lifetime(db: SqlitePool) {
    let settings = Settings {
        session_absolute_secs: 1,
        ..Settings::default()
    };
    let app = TestApp::with_settings(db, settings).await;
    let mut b = app.admin().await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(
        b.me().await,
        None,
        "signed in longer than the absolute lifetime"
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn active_sessions_push_back_their_idle_expiry(db: SqlitePool) {
    let app = TestApp::new(db.clone()).await;
    let mut b = app.admin().await;
    // Pretend the last refresh was long ago and the deadline is near.
    sqlx::query("UPDATE sessions SET expires_at = strftime('%s','now') + 60, data = json_set(data, '$.\"pier.auth\".refreshed_at', 0)")
        .execute(&db)
        .await
        .unwrap();
    assert!(b.me().await.is_some());
    let exp: i64 = sqlx::query_scalar(
        "SELECT MAX(expires_at) - strftime('%s','now') FROM sessions WHERE user_id IS NOT NULL",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert!(exp > 6 * 24 * 3600, "expiry not pushed back: {exp}s left");
}

#[sqlx::test(migrations = "../migrations")]
async fn visitors_have_no_session_until_they_sign_in(db: SqlitePool) {
    let app = TestApp::new(db.clone()).await;
    let mut b = app.browser();
    b.csrf().await;
    let rows = || async {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM sessions")
            .fetch_one(&db)
            .await
            .unwrap()
    };
    assert_eq!(rows().await, 0);
    b.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await.unwrap();
    let signed_in: i64 =
        sqlx::query_scalar("SELECT MAX(expires_at) - strftime('%s','now') FROM sessions")
            .fetch_one(&db)
            .await
            .unwrap();
    assert!(signed_in > 6 * 24 * 3600, "{signed_in}");
}

#[sqlx::test(migrations = "../migrations")]
async fn a_restart_keeps_people_signed_in(db: SqlitePool) {
    let app = TestApp::new(db).await;
    let b = app.admin().await;
    let after = app.restarted().await;
    let mut same_browser = after.browser();
    same_browser.cookie = b.cookie.clone();
    assert_eq!(same_browser.me().await.as_deref(), Some(ADMIN_EMAIL));
}

/// Someone talking to the panel directly (not through its HAProxy on loopback) cannot choose the
/// address the throttle counts by: a new `X-Forwarded-For` per attempt changes nothing.
#[sqlx::test(migrations = "../migrations")]
async fn a_direct_client_is_throttled_by_its_own_address_whatever_it_forwards(db: SqlitePool) {
    let app = TestApp::new(db).await;
    let mut attacker = app.browser_from("198.51.100.20:50000".parse().unwrap());
    for i in 0..20 {
        attacker.forwarded_for = Some(format!("203.0.113.{i}"));
        let _ = attacker
            .sign_in(&format!("user{i}@example.com"), "wrong password 123")
            .await;
    }
    attacker.forwarded_for = Some("192.0.2.99".into());
    let r = attacker
        .sign_in(ADMIN_EMAIL, ADMIN_PASSWORD)
        .await
        .unwrap_err();
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    // Another address, direct or named by the proxy, is unaffected.
    let mut other = app.browser_from("198.51.100.21:50000".parse().unwrap());
    other.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await.unwrap();
    let mut proxied = app.browser();
    proxied.forwarded_for = Some("203.0.113.5".into());
    proxied.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await.unwrap();
}

/// Through a proxy that appends (HAProxy's `option forwardfor` did), the client's own
/// `X-Forwarded-For` line comes first and the proxy's last: only the proxy's counts, for the
/// throttle and for the session list.
#[sqlx::test(migrations = "../migrations")]
async fn only_the_proxys_own_forwarded_for_counts(db: SqlitePool) {
    let app = TestApp::new(db).await;
    let mut attacker = app.browser();
    for i in 0..20 {
        attacker.headers = vec![
            ("x-forwarded-for", format!("203.0.113.{i}")),
            ("x-forwarded-for", "198.51.100.7".into()),
        ];
        let _ = attacker
            .sign_in(&format!("user{i}@example.com"), "wrong password 123")
            .await;
    }
    attacker.headers = vec![
        ("x-forwarded-for", "192.0.2.99, 203.0.113.200".into()),
        ("x-forwarded-for", "10.9.9.9, 198.51.100.7".into()),
    ];
    let r = attacker
        .sign_in(ADMIN_EMAIL, ADMIN_PASSWORD)
        .await
        .unwrap_err();
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);

    // The session list shows the address the proxy gave, not the one the client wrote.
    let mut b = app.browser();
    b.headers = vec![
        ("x-forwarded-for", "203.0.113.66".into()),
        ("x-forwarded-for", "192.0.2.44".into()),
    ];
    b.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await.unwrap();
    let ips: Vec<Option<String>> = sqlx::query_scalar("SELECT ip FROM sessions")
        .fetch_all(app.pier.db())
        .await
        .unwrap();
    assert!(ips.contains(&Some("192.0.2.44".into())), "{ips:?}");
    assert!(!ips.contains(&Some("203.0.113.66".into())), "{ips:?}");
}

/// Over HTTPS through the panel's own proxy the session cookie is `__Host-pier_session`
/// (`Secure`, `Path=/`, no `Domain`), so a sibling host cannot toss a cookie that shadows it;
/// a plain `pier_session` arriving over HTTPS is ignored.
#[sqlx::test(migrations = "../migrations")]
async fn over_https_the_session_cookie_is_a_host_cookie(db: SqlitePool) {
    let app = TestApp::new(db).await;
    let mut b = app.browser();
    b.headers = vec![("x-forwarded-proto", "https".into())];
    let r = b.read("session").await;
    let set: Vec<&str> = r
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(set.len(), 1, "{set:?}");
    // A visitor's CSRF cookie is a host cookie too.
    let cookie = set[0];
    assert!(cookie.starts_with("__Host-pier_csrf="), "{cookie}");
    assert!(cookie.contains("; Secure"), "{cookie}");
    assert!(cookie.contains("; Path=/"), "{cookie}");
    assert!(!cookie.to_ascii_lowercase().contains("domain"), "{cookie}");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    // The same token under the plain name, as a sibling host could set it: ignored.
    let plain = b.csrf_cookie.clone().unwrap();
    let mut tossed_csrf = app.browser();
    tossed_csrf.headers = vec![("x-forwarded-proto", "https".into())];
    tossed_csrf.csrf_cookie = Some(plain.trim_start_matches("__Host-").to_owned());
    let token = b.csrf().await;
    let r = tossed_csrf
        .login_with(ADMIN_EMAIL, ADMIN_PASSWORD, &token)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);

    // The renamed cookie carries the session both ways: sign in, stay signed in, sign out.
    b.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await.unwrap();
    let host_cookie = b.cookie.clone().unwrap();
    assert!(
        host_cookie.starts_with("__Host-pier_session="),
        "{host_cookie}"
    );
    let session_set = sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM sessions")
        .fetch_one(app.pier.db())
        .await
        .unwrap();
    assert_eq!(session_set, 1);
    assert_eq!(b.me().await.as_deref(), Some(ADMIN_EMAIL));

    // The same session under the plain name, as a sibling host could set it: ignored over
    // HTTPS, and a tossed cookie sent along with the real one does not shadow it.
    let value = host_cookie.trim_start_matches("__Host-");
    let mut tossed = app.browser();
    tossed.headers = vec![("x-forwarded-proto", "https".into())];
    tossed.cookie = Some(value.to_owned());
    assert_eq!(tossed.me().await, None);
    let mut both = app.browser();
    both.headers = vec![("x-forwarded-proto", "https".into())];
    both.cookie = Some(format!("pier_session=forged; {host_cookie}"));
    assert_eq!(both.me().await.as_deref(), Some(ADMIN_EMAIL));

    // Only the loopback proxy may say "https": directly, the header changes nothing.
    let mut direct = app.browser_from("198.51.100.20:50000".parse().unwrap());
    direct.headers = vec![("x-forwarded-proto", "https".into())];
    let r = direct.read("session").await;
    let cookie = r.headers.get("set-cookie").unwrap().to_str().unwrap();
    assert!(cookie.starts_with("pier_csrf="), "{cookie}");
    assert!(!cookie.contains("Secure"), "{cookie}");

    let r = b.call("logout", &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(b.me().await, None);
}

/// Visitors who never sign in write nothing to the database, however many pages they open;
/// their sign-in form still works (its CSRF token is in a cookie signed with Pier's key), and a
/// forged or missing cookie token is refused.
#[sqlx::test(migrations = "../migrations")]
async fn anonymous_visitors_create_no_session_rows(db: SqlitePool) {
    let app = TestApp::new(db).await;
    let sessions = || {
        let db = app.pier.db().clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM sessions")
                .fetch_one(&db)
                .await
                .unwrap()
        }
    };
    for _ in 0..5 {
        // A crawler: no cookies kept between views.
        let mut b = app.browser();
        for page in ["/", "/login", "/apps"] {
            b.get(page).await;
        }
        b.session().await;
    }
    assert_eq!(sessions().await, 0);

    // A forged cookie token (not signed by this Pier) does not pass.
    let mut forger = app.browser();
    forger.csrf_cookie = Some("pier_csrf=abc".into());
    let r = forger
        .post_form(
            "login",
            &[
                ("email", ADMIN_EMAIL),
                ("password", ADMIN_PASSWORD),
                ("csrf_token", "abc"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    // Another visitor's signed token does not pass with this visitor's cookie.
    let mut one = app.browser();
    let token_one = one.csrf().await;
    let mut two = app.browser();
    let _ = two.csrf().await;
    let r = two
        .login_with(ADMIN_EMAIL, ADMIN_PASSWORD, &token_one)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert_eq!(sessions().await, 0);

    // The real form signs in: one row now.
    one.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await.unwrap();
    assert_eq!(sessions().await, 1);
}
