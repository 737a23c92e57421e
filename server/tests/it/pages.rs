//! Server-rendered pages: who may see what, and the health check.

use crate::common;

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

/// After sign-in, `next` may only name a path on this site: browsers drop the tab in
/// `/%09/evil.example` and read backslashes as slashes, so each of these would leave it.
#[sqlx::test(migrations = "../migrations")]
async fn sign_in_never_sends_you_to_another_site(db: SqlitePool) {
    let app = TestApp::new(db).await;
    let mut member = app.member("member@example.com").await;
    for next in [
        "/%09/evil.example",
        "/%0A/evil.example",
        "%2F%2Fevil.example",
        "/%5Cevil.example",
        "%5C%5Cevil.example",
        "/%252F/evil.example",
        "https%3A%2F%2Fevil.example",
    ] {
        let r = member.get(&format!("/login?next={next}")).await;
        assert_eq!(r.status, StatusCode::FOUND, "{next}");
        assert_eq!(r.headers.get("location").unwrap(), "/", "{next}");
    }
    let r = member.get("/login?next=/account%3Ftab%3Dkeys").await;
    assert_eq!(r.headers.get("location").unwrap(), "/account?tab=keys");
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

/// Every response carries the security headers; pages get a Content-Security-Policy whose nonce
/// is on every inline script Leptos wrote, so hydration runs and nothing else inline does.
#[sqlx::test(migrations = "../migrations")]
async fn every_response_carries_the_security_headers(db: SqlitePool) {
    let app = TestApp::new(db).await;
    let mut member = app.member("member@example.com").await;
    let token = app.token("member@example.com", "read").await;
    let mut pages = vec![
        member.get("/").await,
        member.get("/account").await,
        app.browser().get("/login").await,
        app.browser().get("/no/such/page").await,
        app.browser().get("/healthz").await,
        member.read("session").await,
        app.api("GET", "/apps", Some(&token), None).await,
        app.api("GET", "/apps", None, None).await,
    ];
    let mut policies = Vec::new();
    for r in &pages {
        let h = |n: &str| r.headers.get(n).map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(h("x-content-type-options").as_deref(), Some("nosniff"));
        assert_eq!(h("x-frame-options").as_deref(), Some("DENY"));
        assert_eq!(h("referrer-policy").as_deref(), Some("same-origin"));
        let csp = h("content-security-policy").expect("a CSP");
        for directive in [
            "default-src 'self'",
            "'wasm-unsafe-eval'",
            "frame-ancestors 'none'",
            "object-src 'none'",
            "base-uri 'none'",
        ] {
            assert!(csp.contains(directive), "{directive}: {csp}");
        }
        let script_src = csp
            .split(';')
            .find(|d| d.trim().starts_with("script-src"))
            .unwrap();
        assert!(!script_src.contains("unsafe-inline"), "{csp}");
        policies.push(csp);
    }
    // A fresh nonce per response.
    assert_ne!(policies[0], policies[1]);

    // Each page's inline scripts carry that response's nonce, and there is at least one (the
    // hydration script).
    for (r, csp) in pages.drain(..4).zip(&policies) {
        let nonce = csp
            .split("'nonce-")
            .nth(1)
            .and_then(|s| s.split('\'').next())
            .unwrap();
        let scripts: Vec<&str> = r.body.split("<script").skip(1).collect();
        assert!(!scripts.is_empty(), "{}", r.body);
        for s in scripts {
            let tag = s.split('>').next().unwrap();
            assert!(
                tag.contains(&format!("nonce=\"{nonce}\"")),
                "an inline script without this response's nonce: <script{tag}>"
            );
        }
    }
}
