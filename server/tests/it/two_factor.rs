//! Two-factor sign-in: setting up an authenticator, the code step of signing in, recovery codes,
//! the throttle, an admin's policy and reset. Codes are computed by the tests' own RFC 6238
//! (`common::totp`), from the key the page shows.

use crate::common::{totp, Browser, TestApp, ADMIN_EMAIL, ADMIN_PASSWORD};

use axum::http::StatusCode;
use sqlx::SqlitePool;

/// Sets up an authenticator for the signed-in person: the key shown, the recovery codes, and
/// the step whose code turned it on.
async fn enrol(b: &mut Browser) -> (String, Vec<String>, i64) {
    let r = b.call("begin_two_factor", &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let setup = r.json();
    let key = setup["secret"].as_str().unwrap().to_owned();
    let step = totp::step_now();
    let r = b
        .call("confirm_two_factor", &[("code", &totp::code(&key, step))])
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let codes = r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    (key, codes, step)
}

/// A code for no step near now (so certainly wrong).
fn wrong_code(key: &str) -> String {
    let near: Vec<String> = (-2..=2)
        .map(|d| totp::code(key, totp::step_now() + d))
        .collect();
    (0..1_000_000)
        .map(|n| format!("{n:06}"))
        .find(|c| !near.contains(c))
        .unwrap()
}

/// Signs in with the password, expecting the code step next.
async fn password_step(app: &TestApp, email: &str, password: &str) -> Browser {
    let mut b = app.browser();
    let r = b
        .call("login", &[("email", email), ("password", password)])
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.json()["NeedsSecondFactor"].is_object(), "{}", r.body);
    b
}

#[sqlx::test(migrations = "../migrations")]
async fn an_authenticator_is_asked_for_after_the_password(db: SqlitePool) {
    let app = TestApp::new(db.clone()).await;
    let mut b = app.admin().await;
    assert_eq!(b.read("two_factor").await.json()["enabled"], false);

    let r = b.call("begin_two_factor", &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let setup = r.json();
    let uri = setup["uri"].as_str().unwrap();
    assert!(
        uri.starts_with("otpauth://totp/Pier:admin%40example.com?"),
        "{uri}"
    );
    assert!(setup["qr_svg"].as_str().unwrap().starts_with("<?xml"));
    let key = setup["secret"].as_str().unwrap().to_owned();
    assert_eq!(key.replace(' ', "").len(), 32, "160 bits in base32: {key}");

    // A wrong code, or a recovery code, does not turn it on.
    let r = b
        .call("confirm_two_factor", &[("code", &wrong_code(&key))])
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert!(r.field_error("code").unwrap().contains("not right"));
    let r = b
        .call("confirm_two_factor", &[("code", "abcd-efgh-jkmn-pqrs")])
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert!(r.field_error("code").unwrap().contains("six-digit"));
    assert_eq!(b.read("two_factor").await.json()["enabled"], false);

    let setup_step = totp::step_now();
    let r = b
        .call(
            "confirm_two_factor",
            &[("code", &totp::code(&key, setup_step))],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json().as_array().unwrap().len(), 10);
    let state = b.read("two_factor").await.json();
    assert_eq!(state["enabled"], true);
    assert_eq!(state["recovery_codes_left"], 10);
    // Another authenticator only after turning this one off.
    let r = b.call("begin_two_factor", &[]).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);

    // The password alone is not a sign-in any more.
    let mut c = password_step(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_eq!(c.me().await, None);
    assert_eq!(
        c.session().await["pending"],
        serde_json::json!({ "authenticator": true, "passkey": false })
    );
    assert_eq!(c.read("list_users").await.status, StatusCode::UNAUTHORIZED);
    // The code that turned it on is spent (a code is good once).
    let r = c
        .call("login_code", &[("code", &totp::code(&key, setup_step))])
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert_eq!(c.me().await, None);
    let next = setup_step + 1;
    let r = c
        .call("login_code", &[("code", &totp::code(&key, next))])
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(c.me().await.as_deref(), Some(ADMIN_EMAIL));
    assert_eq!(c.session().await["pending"], serde_json::Value::Null);

    // Seen by someone looking over a shoulder: the same code again is refused.
    let mut d = password_step(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let r = d
        .call("login_code", &[("code", &totp::code(&key, next))])
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert_eq!(d.me().await, None);

    // Without a password step there is nothing to send a code to.
    let mut e = app.browser();
    let r = e
        .call("login_code", &[("code", &totp::code(&key, next + 1))])
        .await;
    assert_eq!(r.status, StatusCode::GONE, "{}", r.body);

    // The key is encrypted at rest.
    let stored: String = sqlx::query_scalar("SELECT secret FROM totp")
        .fetch_one(&db)
        .await
        .unwrap();
    assert!(!stored.contains(&key.replace(' ', "")));

    // The log: the password step, then each code, with its outcome.
    app.pier.flush_audit().await;
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT action, outcome, summary FROM audit_log
         WHERE action IN ('account.sign_in', 'account.sign_in_code', 'account.two_factor_on')
         ORDER BY id",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    let seen: Vec<(&str, &str)> = rows
        .iter()
        .map(|(a, o, _)| (a.as_str(), o.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("account.sign_in", "ok"),
            ("account.two_factor_on", "invalid"),
            ("account.two_factor_on", "invalid"),
            ("account.two_factor_on", "ok"),
            ("account.sign_in", "ok"),
            ("account.sign_in_code", "invalid"),
            ("account.sign_in_code", "ok"),
            ("account.sign_in", "ok"),
            ("account.sign_in_code", "invalid"),
        ]
    );
    assert_eq!(rows[4].2, "password accepted; asked for the second factor");
    assert_eq!(rows[6].2, "signed in with an authenticator code");
}

#[sqlx::test(migrations = "../migrations")]
async fn recovery_codes_are_single_use_and_can_be_replaced(db: SqlitePool) {
    let app = TestApp::new(db.clone()).await;
    let mut b = app.admin().await;
    let (key, codes, _) = enrol(&mut b).await;
    assert_eq!(codes.len(), 10);

    // Typed as read off paper: upper case is fine.
    let mut c = password_step(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let r = c
        .call("login_code", &[("code", &codes[0].to_uppercase())])
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(c.me().await.as_deref(), Some(ADMIN_EMAIL));
    let mut d = password_step(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let r = d.call("login_code", &[("code", &codes[0])]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert_eq!(b.read("two_factor").await.json()["recovery_codes_left"], 9);

    // New codes, with an old one as proof: every old code stops working.
    let r = b.call("new_recovery_codes", &[("code", &codes[1])]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let fresh: Vec<String> = r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(fresh.len(), 10);
    assert!(fresh.iter().all(|f| !codes.contains(f)));
    let r = d.call("login_code", &[("code", &codes[2])]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    let r = d.call("login_code", &[("code", &fresh[0])]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    // Neither the codes nor the key are stored or logged as themselves.
    app.pier.flush_audit().await;
    let hashes: Vec<String> = sqlx::query_scalar("SELECT code_hash FROM recovery_codes")
        .fetch_all(&db)
        .await
        .unwrap();
    assert_eq!(hashes.len(), 10);
    let logged: Vec<String> = sqlx::query_scalar(
        "SELECT action || ' ' || object_name || ' ' || summary || ' ' || COALESCE(message, '')
         FROM audit_log",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    assert!(logged
        .iter()
        .any(|l| l.contains("signed in with a recovery code (9 left)")));
    for secret in codes
        .iter()
        .chain(&fresh)
        .map(|c| c.replace('-', ""))
        .chain([key.replace(' ', "")])
    {
        assert!(!hashes.iter().any(|h| h.contains(&secret)));
        assert!(!logged.iter().any(|l| l.replace('-', "").contains(&secret)));
    }

    // Turned off with a recovery code: the password alone signs in again.
    let r = b.call("disable_two_factor", &[("code", &fresh[1])]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let mut e = app.browser();
    let r = e
        .call(
            "login",
            &[("email", ADMIN_EMAIL), ("password", ADMIN_PASSWORD)],
        )
        .await;
    assert_eq!(r.json(), "SignedIn");
    assert_eq!(e.me().await.as_deref(), Some(ADMIN_EMAIL));
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM recovery_codes")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(left, 0);
}

#[sqlx::test(migrations = "../migrations")]
async fn wrong_codes_are_throttled_like_passwords(db: SqlitePool) {
    let app = TestApp::new(db).await;
    let mut b = app.admin().await;
    let (key, _, setup_step) = enrol(&mut b).await;
    let mut c = password_step(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    for _ in 0..5 {
        let r = c.call("login_code", &[("code", &wrong_code(&key))]).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    }
    // Now even the right code waits, and so does the right password: knowing the password
    // does not reset the count.
    let r = c
        .call("login_code", &[("code", &totp::code(&key, setup_step + 1))])
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.body);
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .starts_with("Too many wrong codes."));
    assert_eq!(c.me().await, None);
    let mut d = app.browser();
    let r = d.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await.unwrap_err();
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.body);
}

#[sqlx::test(migrations = "../migrations")]
async fn an_admin_can_require_two_factor_for_everyone(db: SqlitePool) {
    let app = TestApp::new(db).await;
    let mut admin = app.admin().await;
    let mut member = app.member("ada@example.com").await;
    let member_token = app.token("ada@example.com", "write").await;
    let admin_token = app.token(ADMIN_EMAIL, "admin").await;

    // Not before the admin has a second factor of their own.
    let r = admin
        .call("set_two_factor_policy", &[("required", "on")])
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .contains("your own account first"));
    enrol(&mut admin).await;
    let r = admin
        .call("set_two_factor_policy", &[("required", "on")])
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = app
        .api("GET", "/settings/two-factor", Some(&admin_token), None)
        .await;
    assert_eq!(r.json()["required"], true);
    let r = app
        .api("GET", "/settings/two-factor", Some(&member_token), None)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);

    // A person without one may do nothing but set it up (already signed in or not)...
    assert_eq!(member.session().await["me"]["must_enrol"], true);
    let r = member.read("my_tokens").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert_eq!(r.error_code(), "two_factor_setup_required");
    let r = member.get("/domains").await;
    assert_eq!(r.status, StatusCode::FOUND, "{}", r.body);
    assert_eq!(r.headers.get("location").unwrap(), "/account/two-factor");
    assert_eq!(
        member.get("/account/two-factor").await.status,
        StatusCode::OK
    );
    // ...while their API tokens, a second secret already, work as before.
    let r = app.api("GET", "/apps", Some(&member_token), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    let (_, codes, _) = enrol(&mut member).await;
    assert_eq!(member.session().await["me"]["must_enrol"], false);
    assert_eq!(member.read("my_tokens").await.status, StatusCode::OK);
    // Required means it stays on.
    let r = member
        .call("disable_two_factor", &[("code", &codes[0])])
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);

    // Made optional again (through the API): it can be turned off.
    let r = app
        .api(
            "PUT",
            "/settings/two-factor",
            Some(&admin_token),
            Some(serde_json::json!({ "required": false })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = member
        .call("disable_two_factor", &[("code", &codes[1])])
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

#[sqlx::test(migrations = "../migrations")]
async fn an_admin_resets_a_lost_authenticator(db: SqlitePool) {
    let app = TestApp::new(db).await;
    let mut member = app.member("ada@example.com").await;
    let ada = app.user_id("ada@example.com").await;
    enrol(&mut member).await;
    let admin_token = app.token(ADMIN_EMAIL, "admin").await;
    let member_token = app.token("ada@example.com", "write").await;

    let r = app.api("GET", "/users", Some(&admin_token), None).await;
    let listed = r.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["id"] == ada)
        .cloned()
        .unwrap();
    assert_eq!(listed["two_factor"], true);

    // Nobody but an admin.
    let path = format!("/users/{ada}/two-factor");
    let r = app.api("DELETE", &path, Some(&member_token), None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let r = member
        .call(
            "user_action",
            &[("id", &ada.to_string()), ("action", "reset-two-factor")],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);

    let r = app.api("DELETE", &path, Some(&admin_token), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let mut b = app.browser();
    b.sign_in("ada@example.com", "member password 1")
        .await
        .unwrap();
    assert_eq!(b.me().await.as_deref(), Some("ada@example.com"));
    let r = app.api("DELETE", &path, Some(&admin_token), None).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    let r = app
        .api("DELETE", "/users/9999/two-factor", Some(&admin_token), None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);

    // The operator's way in when the only admin lost both: `pier admin reset-two-factor`.
    let mut admin = app.admin().await;
    enrol(&mut admin).await;
    password_step(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    app.pier
        .reset_two_factor_from_cli(ADMIN_EMAIL)
        .await
        .unwrap();
    let mut b = app.browser();
    let r = b
        .call(
            "login",
            &[("email", ADMIN_EMAIL), ("password", ADMIN_PASSWORD)],
        )
        .await;
    assert_eq!(r.json(), "SignedIn");
    let err = app
        .pier
        .reset_two_factor_from_cli(ADMIN_EMAIL)
        .await
        .unwrap_err();
    assert!(err.public_message().contains("no two-factor sign-in"));
}

/// What the router alone can show of passkeys (the whole ceremony runs in chromium with a
/// virtual authenticator, `end2end/tests/users.rs`): where they are offered, the options the
/// browser gets, and every refusal.
#[sqlx::test(migrations = "../migrations")]
async fn passkey_ceremonies_refuse_what_they_should(db: SqlitePool) {
    let app = TestApp::new(db).await;
    let mut b = app.admin().await;

    // Browsers allow WebAuthn on HTTPS or at localhost, never at an IP address.
    b.headers.push(("host", "127.0.0.1:3000".into()));
    let r = b.call("begin_passkey", &[("name", "Laptop")]).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    assert!(r.json()["message"].as_str().unwrap().contains("localhost"));

    b.headers = vec![("host", "localhost:3000".into())];
    let r = b.call("begin_passkey", &[("name", "  ")]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert!(r.field_error("name").is_some());
    let r = b.call("begin_passkey", &[("name", &"x".repeat(65))]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);

    let r = b.call("begin_passkey", &[("name", "Laptop")]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let options: serde_json::Value = serde_json::from_str(r.json().as_str().unwrap()).unwrap();
    let pk = &options["publicKey"];
    assert_eq!(pk["rp"]["id"], "localhost");
    assert_eq!(pk["user"]["name"], ADMIN_EMAIL);
    // The user handle is opaque: neither the e-mail nor the row id.
    let handle = pk["user"]["id"].as_str().unwrap();
    assert!(!handle.is_empty() && !handle.contains("admin"));
    assert_eq!(pk["authenticatorSelection"]["userVerification"], "required");

    // An answer that is not a credential is refused, and the ceremony is used up.
    let r = b.call("finish_passkey", &[("credential", "{}")]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    let r = b.call("finish_passkey", &[("credential", "{}")]).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    assert_eq!(
        b.read("two_factor").await.json()["passkeys"],
        serde_json::json!([])
    );

    // Another person's passkey is not there for anyone else.
    let r = b.call("remove_passkey", &[("id", "1")]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);

    // Signing in with a passkey: an account without one (or no account) gets the same answer.
    let mut v = app.browser();
    v.headers = vec![("host", "localhost:3000".into())];
    for email in [ADMIN_EMAIL, "nobody@example.com"] {
        let r = v.call("begin_passkey_login", &[("email", email)]).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
        assert_eq!(
            r.field_error("email").unwrap(),
            "This account has no passkey: sign in with your password."
        );
    }
    let r = v
        .call("finish_passkey_login", &[("credential", "{}")])
        .await;
    assert_eq!(r.status, StatusCode::GONE, "{}", r.body);
    assert_eq!(v.me().await, None);
}
