//! Domains through the REST API and the browser's server functions: the name grammar (IDNA,
//! public suffix list, no wildcards unless allowed, nothing that could smuggle a line into
//! HAProxy), uniqueness across tenants, attach / move / detach, scopes and tenancy.
//! No container is ever started: apps point at a registry nobody listens on.

use crate::common;

use axum::http::StatusCode;
use common::{test_settings, TestApp};
use serde_json::{json, Value};
use sqlx::SqlitePool;

const IMAGE: &str = "127.0.0.1:9/pier-test/none:1";

async fn tenant(app: &TestApp, email: &str) -> String {
    let _ = app.member(email).await;
    app.token(email, "write").await
}

async fn new_app(app: &TestApp, token: &str, name: &str) {
    let r = app
        .api(
            "POST",
            "/apps",
            Some(token),
            Some(json!({"name": name, "image": IMAGE, "port": 8080})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
}

fn code(r: &common::Reply) -> String {
    r.json()["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn field(r: &common::Reply) -> Option<String> {
    r.json()["error"]["fields"][0]["field"]
        .as_str()
        .map(str::to_owned)
}

async fn count(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM domains")
        .fetch_one(app.pier.db())
        .await
        .unwrap()
}

/// Names that must never reach a HAProxy file or command.
const HOSTILE: &[&str] = &[
    "a.example.com\nbind :1",
    "a.example.com\r\nuse_backend panel",
    "a b.example.com",
    "a.example.com#x",
    "%[req.hdr(host)].example.com",
    "a\\.example.com",
    "a.example.com;show map",
    "a.example.com 127.0.0.1:22",
    "",
    "com",
    "co.uk",
    "-bad.example.com",
    "*.example.com",
    "..example.com",
    "panel.pier.test",
    "x.apps.pier.test",
];

#[sqlx::test(migrator = "pier_core::db::MIGRATOR")]
async fn register_attach_move_detach_delete(db: SqlitePool) {
    let app = TestApp::new(db).await;
    let t = tenant(&app, "ann@example.com").await;
    new_app(&app, &t, "blog").await;
    new_app(&app, &t, "shop").await;

    // Registered with an app, normalised (IDNA, lower case, no trailing dot).
    let r = app
        .api(
            "POST",
            "/domains",
            Some(&t),
            Some(json!({"domain": "Bücher.Example.COM.", "app": "blog"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let d = r.json();
    assert_eq!(d["domain"], "xn--bcher-kva.example.com");
    assert_eq!(d["app"], "blog");
    assert_eq!(d["serving"], false, "blog has not deployed");
    assert_eq!(
        d["certificate"]["status"], "self-signed",
        "ACME is off in these tests"
    );

    // Found by the name as typed, too.
    let r = app
        .api("GET", "/domains/B%C3%BCcher.example.com", Some(&t), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    // Move, keep (absent field), detach (null), attach again.
    let path = "/domains/xn--bcher-kva.example.com";
    let r = app
        .api("PATCH", path, Some(&t), Some(json!({"app": "shop"})))
        .await;
    assert_eq!(r.json()["app"], "shop", "{}", r.body);
    let r = app.api("PATCH", path, Some(&t), Some(json!({}))).await;
    assert_eq!(r.json()["app"], "shop", "{}", r.body);
    let r = app
        .api("PATCH", path, Some(&t), Some(json!({"app": null})))
        .await;
    assert_eq!(r.json()["app"], Value::Null, "{}", r.body);
    let r = app
        .api("PATCH", path, Some(&t), Some(json!({"app": "nope"})))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert_eq!(field(&r).as_deref(), Some("app"));
    let r = app
        .api(
            "PATCH",
            path,
            Some(&t),
            Some(json!({"app": "blog", "x": 1})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);

    // A second, unattached; the list is by name and paginated.
    let r = app
        .api(
            "POST",
            "/domains",
            Some(&t),
            Some(json!({"domain": "a.example.org"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let r = app.api("GET", "/domains?per_page=1", Some(&t), None).await;
    let j = r.json();
    assert_eq!(j["total"], 2);
    assert_eq!(j["items"][0]["domain"], "a.example.org");
    let r = app
        .api("GET", "/domains?per_page=1&page=2", Some(&t), None)
        .await;
    assert_eq!(r.json()["items"][0]["domain"], "xn--bcher-kva.example.com");

    // Registering it again: 409, saying it is yours.
    let r = app
        .api(
            "POST",
            "/domains",
            Some(&t),
            Some(json!({"domain": "A.example.org"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    assert!(r.body.contains("already registered"), "{}", r.body);

    // Deleting an app detaches its domains.
    let r = app
        .api("PATCH", path, Some(&t), Some(json!({"app": "blog"})))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = app.api("DELETE", "/apps/blog", Some(&t), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let r = app.api("GET", path, Some(&t), None).await;
    assert_eq!(r.json()["app"], Value::Null, "{}", r.body);

    let r = app.api("DELETE", path, Some(&t), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let r = app.api("GET", path, Some(&t), None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(count(&app).await, 1);
}

#[sqlx::test(migrator = "pier_core::db::MIGRATOR")]
async fn bad_names_are_refused_and_nothing_is_written(db: SqlitePool) {
    let app = TestApp::new(db).await;
    let t = tenant(&app, "ann@example.com").await;
    let long = format!("{}.example.com", "a".repeat(64));
    let longer = format!("{}example.com", "abcdefghi.".repeat(30));
    let mut names: Vec<&str> = HOSTILE.to_vec();
    names.push(&long);
    names.push(&longer);
    for name in names {
        let r = app
            .api("POST", "/domains", Some(&t), Some(json!({"domain": name})))
            .await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{name:?}: {}",
            r.body
        );
        assert_eq!(code(&r), "invalid", "{name:?}");
        assert_eq!(field(&r).as_deref(), Some("domain"), "{name:?}");
    }
    // Through the browser's server function as well.
    let mut ann = app.browser();
    ann.sign_in("ann@example.com", "member password 1")
        .await
        .unwrap();
    for name in HOSTILE {
        let r = ann
            .call("add_domain", &[("domain", name), ("app", "")])
            .await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{name:?}: {}",
            r.body
        );
        assert!(r.field_error("domain").is_some(), "{name:?}: {}", r.body);
    }
    assert_eq!(count(&app).await, 0);
    // The same names as a path are simply not found (never an error page with the input).
    let r = app
        .api("GET", "/domains/a.example.com%0Abind", Some(&t), None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[sqlx::test(migrator = "pier_core::db::MIGRATOR")]
async fn wildcards_only_when_the_operator_allows_them(db: SqlitePool) {
    let mut settings = test_settings();
    settings.routing.allow_wildcards = true;
    let app = TestApp::with_settings(db, settings).await;
    let t = tenant(&app, "ann@example.com").await;
    let r = app
        .api(
            "POST",
            "/domains",
            Some(&t),
            Some(json!({"domain": "*.Example.com"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.json()["domain"], "*.example.com");
    // Still no wildcard over a public suffix.
    let r = app
        .api(
            "POST",
            "/domains",
            Some(&t),
            Some(json!({"domain": "*.co.uk"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
}

#[sqlx::test(migrator = "pier_core::db::MIGRATOR")]
async fn one_tenants_domain_is_invisible_to_another(db: SqlitePool) {
    let app = TestApp::new(db).await;
    let a = tenant(&app, "ann@example.com").await;
    let b = tenant(&app, "bob@example.com").await;
    new_app(&app, &a, "site").await;
    new_app(&app, &b, "site").await;
    let r = app
        .api(
            "POST",
            "/domains",
            Some(&a),
            Some(json!({"domain": "ann.example.com", "app": "site"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);

    // B cannot register it (409 naming no one), nor see, change or delete it (404).
    let r = app
        .api(
            "POST",
            "/domains",
            Some(&b),
            Some(json!({"domain": "ANN.example.com"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    assert!(
        r.body.contains("someone else") && !r.body.contains("ann@"),
        "{}",
        r.body
    );
    for (method, body) in [
        ("GET", None),
        ("PATCH", Some(json!({"app": "site"}))),
        ("PATCH", Some(json!({"app": null}))),
        ("DELETE", None),
    ] {
        let r = app
            .api(method, "/domains/ann.example.com", Some(&b), body)
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{method}: {}", r.body);
    }
    for (method, path) in [
        ("GET", "/domains/ann.example.com/dns"),
        ("POST", "/domains/ann.example.com/certificate/retry"),
        ("POST", "/domains/ann.example.com/verify"),
    ] {
        let r = app.api(method, path, Some(&b), None).await;
        assert_eq!(
            r.status,
            StatusCode::NOT_FOUND,
            "{method} {path}: {}",
            r.body
        );
    }
    let r = app.api("GET", "/domains", Some(&b), None).await;
    assert_eq!(r.json()["total"], 0);
    let mut bob = app.browser();
    bob.sign_in("bob@example.com", "member password 1")
        .await
        .unwrap();
    for (f, fields) in [
        (
            "attach_domain",
            vec![("domain", "ann.example.com"), ("app", "site")],
        ),
        ("remove_domain", vec![("domain", "ann.example.com")]),
        ("verify_domain", vec![("domain", "ann.example.com")]),
        ("retry_certificate", vec![("domain", "ann.example.com")]),
    ] {
        let r = bob.call(f, &fields).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{f}: {}", r.body);
    }
    let mine = bob.read("my_domains").await;
    assert!(!mine.body.contains("ann.example.com"), "{}", mine.body);

    // A cannot attach their domain to B's app (B's app names mean nothing to A... but A has an
    // app of the same name, so attach by a name only B has).
    new_app(&app, &b, "bobs-only").await;
    let r = app
        .api(
            "PATCH",
            "/domains/ann.example.com",
            Some(&a),
            Some(json!({"app": "bobs-only"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    let r = app
        .api("GET", "/domains/ann.example.com", Some(&a), None)
        .await;
    assert_eq!(r.json()["app"], "site");
    // The repository refuses too, even if asked with B's app id directly.
    let bobs: i64 = sqlx::query_scalar("SELECT id FROM apps WHERE name = 'bobs-only'")
        .fetch_one(app.pier.db())
        .await
        .unwrap();
    let ann_id = app.user_id("ann@example.com").await;
    let moved =
        pier_core::repo::domains::set_app(app.pier.db(), ann_id, "ann.example.com", Some(bobs), 0)
            .await
            .unwrap();
    assert!(!moved);
}

#[sqlx::test(migrator = "pier_core::db::MIGRATOR")]
async fn scopes_and_tokens(db: SqlitePool) {
    let app = TestApp::new(db).await;
    let _ = app.member("ann@example.com").await;
    let read = app.token("ann@example.com", "read").await;
    let r = app.api("GET", "/domains", None, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = app.api("GET", "/domains", Some("pier_bogus"), None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = app.api("GET", "/domains", Some(&read), None).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = app
        .api(
            "POST",
            "/domains",
            Some(&read),
            Some(json!({"domain": "a.example.com"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert_eq!(count(&app).await, 0);
}

#[sqlx::test(migrator = "pier_core::db::MIGRATOR")]
async fn handles_and_platform_host_names(db: SqlitePool) {
    let app = TestApp::new(db).await;
    let t = tenant(&app, "Ann.Lee+pier@example.com").await;
    let _ = app.member("ann.lee@example.org").await;
    new_app(&app, &t, "blog").await;
    let handles = pier_core::repo::users::handles(app.pier.db())
        .await
        .unwrap();
    let names: Vec<&str> = handles.iter().map(|(_, h)| h.as_str()).collect();
    assert!(names.contains(&"ann-lee"), "{names:?}");
    let second = app.user_id("ann.lee@example.org").await;
    assert!(
        names.contains(&format!("ann-lee-{second}").as_str()),
        "{names:?}"
    );
    let mut ann = app.browser();
    ann.sign_in("Ann.Lee+pier@example.com", "member password 1")
        .await
        .unwrap();
    let r = ann.read("my_domains").await;
    assert!(r.body.contains("blog-ann-lee.apps.pier.test"), "{}", r.body);
    assert!(
        r.body.contains("blog--ann-lee.apps.pier.test"),
        "{}",
        r.body
    );
    // `--` separates app and handle in platform names: no new app name may hold it.
    let r = app
        .api(
            "POST",
            "/apps",
            Some(&t),
            Some(json!({"name": "a--b", "image": IMAGE, "port": 8080})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert!(r.body.contains("two hyphens"), "{}", r.body);
}

#[sqlx::test(migrator = "pier_core::db::MIGRATOR")]
async fn dns_check_says_whether_a_domain_points_here(db: SqlitePool) {
    let (dns, management) = common::mock_dns();
    let mut settings = test_settings();
    settings.routing.public_addrs = vec!["127.0.0.1".parse().unwrap()];
    let app = TestApp::with_settings(db, settings).await;
    let t = tenant(&app, "ann@example.com").await;
    let other = tenant(&app, "bob@example.com").await;
    for d in ["here.pier.test", "elsewhere.pier.test"] {
        let r = app
            .api("POST", "/domains", Some(&t), Some(json!({ "domain": d })))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    }
    // Without a resolver the check is unavailable, and says so.
    let r = app
        .api("GET", "/domains/here.pier.test/dns", Some(&t), None)
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);

    app.pier.set_resolver(std::sync::Arc::new(
        pier::dns::DnsResolver::new(Some(dns)).unwrap(),
    ));
    // The mock server answers 127.0.0.1 for every name unless told otherwise.
    common::mock_dns_a(&management, "elsewhere.pier.test", &["192.0.2.10"]);
    let r = app
        .api("GET", "/domains/here.pier.test/dns", Some(&t), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let j = r.json();
    assert_eq!(j["points_here"], true, "{j}");
    assert_eq!(j["addresses"], json!(["127.0.0.1"]));
    let r = app
        .api("GET", "/domains/elsewhere.pier.test/dns", Some(&t), None)
        .await;
    let j = r.json();
    assert_eq!(j["points_here"], false, "{j}");
    let msg = j["message"].as_str().unwrap();
    assert!(
        msg.contains("192.0.2.10") && msg.contains("not at this server"),
        "{msg}"
    );
    // In the browser, the same words.
    let mut ann = app.browser();
    ann.sign_in("ann@example.com", "member password 1")
        .await
        .unwrap();
    let r = ann.call("check_dns", &[("domain", "here.pier.test")]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("points at this server"), "{}", r.body);
    // Another tenant cannot look at it.
    let r = app
        .api("GET", "/domains/here.pier.test/dns", Some(&other), None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    common::mock_dns_a(&management, "elsewhere.pier.test", &[]);
    // A check informs; it changed nothing.
    let r = app
        .api("GET", "/domains/elsewhere.pier.test", Some(&t), None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

/// The system's resolver, as far as the check can tell: it answers 192.0.2.1 for every name and
/// counts what it was asked.
#[derive(Default)]
struct SystemLikeResolver(std::sync::atomic::AtomicUsize);

#[async_trait::async_trait]
impl pier_core::dns::Resolve for SystemLikeResolver {
    async fn lookup(&self, _name: &str) -> Result<Vec<std::net::IpAddr>, String> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(vec!["192.0.2.1".parse().unwrap()])
    }
}

/// Without a DNS server named by the operator, names outside the public DNS are never looked up
/// (the host's resolver would answer from its own network); public ones are.
#[sqlx::test(migrator = "pier_core::db::MIGRATOR")]
async fn dns_checks_look_up_public_names_only(db: SqlitePool) {
    let app = TestApp::new(db).await;
    let t = tenant(&app, "ann@example.com").await;
    let resolver = std::sync::Arc::new(SystemLikeResolver::default());
    app.pier.set_resolver(resolver.clone());
    for d in [
        "db.internal",
        "nas.pier.test",
        "printer.local",
        "ann-shop.com",
    ] {
        let r = app
            .api("POST", "/domains", Some(&t), Some(json!({ "domain": d })))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{d}: {}", r.body);
    }
    for d in ["db.internal", "nas.pier.test", "printer.local"] {
        let r = app
            .api("GET", &format!("/domains/{d}/dns"), Some(&t), None)
            .await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{d}: {}",
            r.body
        );
        let f = &r.json()["error"]["fields"][0];
        assert_eq!(f["field"], "domain", "{}", r.body);
        assert!(f["message"].as_str().unwrap().contains("not"), "{}", r.body);
    }
    assert_eq!(resolver.0.load(std::sync::atomic::Ordering::Relaxed), 0);
    let r = app
        .api("GET", "/domains/ann-shop.com/dns", Some(&t), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["addresses"], json!(["192.0.2.1"]));
    assert_eq!(resolver.0.load(std::sync::atomic::Ordering::Relaxed), 1);
}

/// Each check is a query this server makes: 30 a minute per tenant.
#[sqlx::test(migrator = "pier_core::db::MIGRATOR")]
async fn dns_checks_are_rate_limited_per_tenant(db: SqlitePool) {
    let app = TestApp::new(db).await;
    let ann = tenant(&app, "ann@example.com").await;
    let bob = tenant(&app, "bob@example.com").await;
    app.pier
        .set_resolver(std::sync::Arc::new(SystemLikeResolver::default()));
    for (t, d) in [(&ann, "ann-shop.com"), (&bob, "bob-shop.com")] {
        let r = app
            .api("POST", "/domains", Some(t), Some(json!({ "domain": d })))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    }
    for _ in 0..30 {
        let r = app
            .api("GET", "/domains/ann-shop.com/dns", Some(&ann), None)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    let r = app
        .api("GET", "/domains/ann-shop.com/dns", Some(&ann), None)
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.body);
    let j = r.json();
    assert_eq!(j["error"]["code"], "rate_limited");
    assert_eq!(
        j["error"]["message"],
        "Too many DNS checks. Try again in 1 minute."
    );
    let r = app
        .api("GET", "/domains/bob-shop.com/dns", Some(&bob), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

/// With proofs on, a domain is attached (and so routed and certified) only once a TXT record
/// `_pier-challenge.<domain>` holds its owner's token, looked up on a real DNS server (the mock
/// one). Another tenant's token proves nothing; moving between one's own apps needs no new proof.
#[sqlx::test(migrator = "pier_core::db::MIGRATOR")]
async fn a_domain_serves_only_after_its_owner_proves_it(db: SqlitePool) {
    let (dns, management) = common::mock_dns();
    let mut settings = test_settings();
    settings.routing.require_domain_proof = true;
    let app = TestApp::with_settings(db, settings).await;
    app.pier.set_resolver(std::sync::Arc::new(
        pier::dns::DnsResolver::new(Some(dns)).unwrap(),
    ));
    let ann = tenant(&app, "ann@example.com").await;
    let bob = tenant(&app, "bob@example.com").await;
    new_app(&app, &ann, "site").await;
    new_app(&app, &ann, "shop").await;
    new_app(&app, &bob, "blog").await;
    let token_of = |t: String| {
        let app = &app;
        async move {
            let r = app.api("GET", "/domains-proof", Some(&t), None).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.body);
            assert_eq!(r.json()["required"], true);
            r.json()["value"].as_str().unwrap().to_owned()
        }
    };
    let ann_token = token_of(ann.clone()).await;
    let bob_token = token_of(bob.clone()).await;
    assert_ne!(ann_token, bob_token);
    assert_eq!(token_of(ann.clone()).await, ann_token, "stable");
    let record = "_pier-challenge.proven.pier.test";
    common::mock_dns_txt(&management, record, None);

    // Not proven: registering it attached is refused with the record to add, and nothing is kept.
    let r = app
        .api(
            "POST",
            "/domains",
            Some(&ann),
            Some(json!({"domain": "proven.pier.test", "app": "site"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert_eq!(field(&r).as_deref(), Some("domain"));
    let msg = r.json()["error"]["fields"][0]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(msg.contains(record) && msg.contains(&ann_token), "{msg}");
    assert_eq!(count(&app).await, 0);

    // Registered unattached, it shows what proves it; attaching is refused until then.
    let r = app
        .api(
            "POST",
            "/domains",
            Some(&ann),
            Some(json!({"domain": "proven.pier.test"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let j = r.json();
    assert_eq!(j["verified"], false, "{j}");
    assert_eq!(j["proof"]["record"], record);
    assert_eq!(j["proof"]["value"], ann_token.as_str());
    let attach = |app_name: &'static str| {
        let (app, ann) = (&app, ann.clone());
        async move {
            app.api(
                "PATCH",
                "/domains/proven.pier.test",
                Some(&ann),
                Some(json!({ "app": app_name })),
            )
            .await
        }
    };
    let r = attach("site").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert_eq!(field(&r).as_deref(), Some("app"));

    // Bob's token in the record proves nothing for Ann, nor Ann's for Bob.
    common::mock_dns_txt(&management, record, Some(&bob_token));
    let r = app
        .api("POST", "/domains/proven.pier.test/verify", Some(&ann), None)
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert!(r.body.contains("not your token"), "{}", r.body);
    let r = app
        .api("POST", "/domains/proven.pier.test/verify", Some(&bob), None)
        .await;
    assert_eq!(
        r.status,
        StatusCode::NOT_FOUND,
        "another tenant's domain: {}",
        r.body
    );
    assert!(pier_core::repo::domains::attached(app.pier.db())
        .await
        .unwrap()
        .is_empty());

    // The owner's token: proven, attached, routed.
    common::mock_dns_txt(&management, record, Some(&ann_token));
    let r = app
        .api("POST", "/domains/proven.pier.test/verify", Some(&ann), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["verified"], true);
    assert!(r.json()["proof"].is_null());
    let r = attach("site").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["app"], "site");

    // The record may go; moving to another of Ann's apps needs no new proof.
    common::mock_dns_txt(&management, record, None);
    let r = attach("shop").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["app"], "shop");

    // Registering attached works at once when the record is already there.
    common::mock_dns_txt(
        &management,
        "_pier-challenge.direct.pier.test",
        Some(&ann_token),
    );
    let r = app
        .api(
            "POST",
            "/domains",
            Some(&ann),
            Some(json!({"domain": "direct.pier.test", "app": "site"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.json()["verified"], true);
    common::mock_dns_txt(&management, "_pier-challenge.direct.pier.test", None);

    // A name typed first by someone who never proves it is not held hostage: the one who
    // proves it takes it (and a name someone proved cannot be taken).
    let r = app
        .api(
            "POST",
            "/domains",
            Some(&bob),
            Some(json!({"domain": "hostage.pier.test"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let take = |t: String| {
        let app = &app;
        async move {
            app.api(
                "POST",
                "/domains",
                Some(&t),
                Some(json!({"domain": "hostage.pier.test", "app": "site"})),
            )
            .await
        }
    };
    let r = take(ann.clone()).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    assert!(
        r.body.contains("_pier-challenge.hostage.pier.test") && r.body.contains(&ann_token),
        "{}",
        r.body
    );
    common::mock_dns_txt(
        &management,
        "_pier-challenge.hostage.pier.test",
        Some(&ann_token),
    );
    let r = take(ann.clone()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.json()["verified"], true);
    let r = app
        .api("GET", "/domains/hostage.pier.test", Some(&bob), None)
        .await;
    assert_eq!(
        r.status,
        StatusCode::NOT_FOUND,
        "Bob's unproven claim gave way"
    );
    // Bob cannot take it back, even with his own record there.
    common::mock_dns_txt(
        &management,
        "_pier-challenge.hostage.pier.test",
        Some(&bob_token),
    );
    let r = app
        .api(
            "POST",
            "/domains",
            Some(&bob),
            Some(json!({"domain": "hostage.pier.test", "app": "blog"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    assert!(r.body.contains("someone else"), "{}", r.body);
    common::mock_dns_txt(&management, "_pier-challenge.hostage.pier.test", None);
    assert_eq!(
        pier_core::domains::proof_record("*.example.com"),
        "_pier-challenge.example.com"
    );
}
