//! The audit log: each change leaves exactly one entry with the right actor, token, address
//! and outcome; tenants read only their own; no secret ever reaches the table; retention.
//! Apps point at a registry nobody listens on, so nothing here pulls an image.

use crate::common;

use axum::http::StatusCode;
use common::{TestApp, ADMIN_EMAIL};
use serde_json::{json, Value};
use sqlx::{Row, SqlitePool};

const IMAGE: &str = "127.0.0.1:9/pier-test/none:1";
const MEMBER: &str = "audited@example.com";
const MEMBER_PW: &str = "first member password 1";
const NEW_PW: &str = "second member password 2";
const ENV_SECRET: &str = "env-secret-0b5e7d";
const REGISTRY_PW: &str = "registry-secret-77f1";
const S3_SECRET: &str = "s3-secret-key-a9c2";

/// One entry as the tests look at it.
#[derive(Debug)]
struct Entry {
    id: i64,
    actor_id: Option<i64>,
    actor_email: String,
    token_id: Option<i64>,
    address: Option<String>,
    action: String,
    object_name: String,
    owner_id: Option<i64>,
    summary: String,
    outcome: String,
}

async fn entries_after(db: &SqlitePool, after: i64) -> Vec<Entry> {
    sqlx::query(
        "SELECT id, actor_id, actor_email, token_id, address, action, object_name, owner_id,
                summary, outcome FROM audit_log WHERE id > ? ORDER BY id",
    )
    .bind(after)
    .fetch_all(db)
    .await
    .unwrap()
    .into_iter()
    .map(|r| Entry {
        id: r.get(0),
        actor_id: r.get(1),
        actor_email: r.get(2),
        token_id: r.get(3),
        address: r.get(4),
        action: r.get(5),
        object_name: r.get(6),
        owner_id: r.get(7),
        summary: r.get(8),
        outcome: r.get(9),
    })
    .collect()
}

async fn last_id(db: &SqlitePool) -> i64 {
    sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM audit_log")
        .fetch_one(db)
        .await
        .unwrap()
}

async fn token_id(db: &SqlitePool, user: i64, name: &str) -> i64 {
    sqlx::query_scalar("SELECT id FROM api_tokens WHERE user_id = ? AND name = ? ORDER BY id DESC")
        .bind(user)
        .bind(name)
        .fetch_one(db)
        .await
        .unwrap()
}

/// Follows the log: each `expect` checks that exactly one entry was written since the last.
struct Log {
    db: SqlitePool,
    pier: pier_core::Pier,
    seen: i64,
}

impl Log {
    async fn new(app: &TestApp, db: &SqlitePool) -> Log {
        app.pier.flush_audit().await;
        Log {
            db: db.clone(),
            pier: app.pier.clone(),
            seen: last_id(db).await,
        }
    }

    /// Entries written since the last `expect`, once the batching writer has written them.
    async fn new_entries(&self) -> Vec<Entry> {
        self.pier.flush_audit().await;
        entries_after(&self.db, self.seen).await
    }

    async fn expect(&mut self, action: &str, actor: &str, outcome: &str) -> Entry {
        let mut new = self.new_entries().await;
        assert_eq!(
            new.len(),
            1,
            "one entry for {action}, got {:#?}",
            new.iter()
                .map(|e| (&e.action, &e.outcome))
                .collect::<Vec<_>>()
        );
        let e = new.remove(0);
        assert_eq!(e.action, action, "{e:?}");
        assert_eq!(e.actor_email, actor, "{e:?}");
        assert_eq!(e.outcome, outcome, "{e:?}");
        self.seen = e.id;
        e
    }
}

fn ok(r: &common::Reply, status: StatusCode) -> Value {
    assert_eq!(r.status, status, "{}", r.body);
    if r.body.is_empty() {
        Value::Null
    } else {
        r.json()
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn every_kind_of_change_leaves_one_entry_with_its_actor(db: SqlitePool) {
    let app = TestApp::new(db.clone()).await;
    let admin_id = app.user_id(ADMIN_EMAIL).await;
    let mut log = Log::new(&app, &db).await;

    // A token made on the command line is the command line's doing.
    let admin = app.token(ADMIN_EMAIL, "admin").await;
    let e = log.expect("token.create", "command line", "ok").await;
    assert_eq!((e.actor_id, e.owner_id), (None, Some(admin_id)));
    assert_eq!(e.summary, "scope admin, never expires");
    let admin_token = token_id(&db, admin_id, "test").await;

    // Users, by an admin token: the entry names the token and the address.
    let r = app
        .api(
            "POST",
            "/users",
            Some(&admin),
            Some(json!({"email": MEMBER, "role": "member", "password": MEMBER_PW})),
        )
        .await;
    let member_id = ok(&r, StatusCode::CREATED)["user"]["id"].as_i64().unwrap();
    let e = log.expect("user.create", ADMIN_EMAIL, "ok").await;
    assert_eq!(e.actor_id, Some(admin_id));
    assert_eq!(e.token_id, Some(admin_token));
    assert_eq!(e.address.as_deref(), Some("127.0.0.1"));
    assert_eq!(
        (e.object_name.as_str(), e.owner_id),
        (MEMBER, Some(member_id))
    );
    assert!(e.summary.contains("password set"), "{}", e.summary);

    let r = app
        .api(
            "PATCH",
            &format!("/users/{member_id}"),
            Some(&admin),
            Some(json!({"max_apps": 3})),
        )
        .await;
    ok(&r, StatusCode::OK);
    let e = log.expect("user.update", ADMIN_EMAIL, "ok").await;
    assert!(e.summary.contains("3 apps"), "{}", e.summary);
    // Refused: the last admin cannot step down. Still one entry, with the refusal.
    let r = app
        .api(
            "PATCH",
            &format!("/users/{admin_id}"),
            Some(&admin),
            Some(json!({"role": "member"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    log.expect("user.update", ADMIN_EMAIL, "conflict").await;

    // Sign-ins, failed and not, from the address HAProxy gives; under the account they name.
    let mut browser = app.browser();
    browser.forwarded_for = Some("192.0.2.44".into());
    browser
        .sign_in(MEMBER, "not the password")
        .await
        .unwrap_err();
    let e = log
        .expect("account.sign_in", MEMBER, "bad_credentials")
        .await;
    assert_eq!((e.actor_id, e.owner_id), (Some(member_id), Some(member_id)));
    assert_eq!(e.address.as_deref(), Some("192.0.2.44"));
    browser
        .sign_in("nobody@example.com", "whatever it is")
        .await
        .unwrap_err();
    let e = log
        .expect("account.sign_in", "nobody@example.com", "bad_credentials")
        .await;
    assert_eq!((e.actor_id, e.owner_id), (None, None));
    browser.sign_in(MEMBER, MEMBER_PW).await.unwrap();
    let e = log.expect("account.sign_in", MEMBER, "ok").await;
    assert_eq!(e.token_id, None);

    // The member's things, through the browser and their own token.
    let r = browser
        .call(
            "create_token",
            &[
                ("name", "ci"),
                ("scope", "write"),
                ("expires_in_days", "30"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let member_secret = r.json()["copy"].as_str().unwrap().to_owned();
    let e = log.expect("token.create", MEMBER, "ok").await;
    assert_eq!(e.address.as_deref(), Some("192.0.2.44"));
    assert_eq!(e.summary, "scope write, expires in 30 days");
    let member = member_secret.as_str();
    let member_token = token_id(&db, member_id, "ci").await;

    let r = app
        .api(
            "PUT",
            "/registries/127.0.0.1:9",
            Some(member),
            Some(json!({"username": "robot", "password": REGISTRY_PW})),
        )
        .await;
    ok(&r, StatusCode::OK);
    let e = log.expect("registry.login", MEMBER, "ok").await;
    assert_eq!(e.token_id, Some(member_token));
    assert_eq!(e.summary, "as robot");

    let r = app
        .api(
            "POST",
            "/apps",
            Some(member),
            Some(json!({"name": "web", "image": IMAGE, "port": 8080,
                        "env": {"API_KEY": ENV_SECRET, "MODE": "prod"}, "secret_env": ["API_KEY"]})),
        )
        .await;
    ok(&r, StatusCode::CREATED);
    let e = log.expect("app.create", MEMBER, "ok").await;
    assert_eq!(
        (e.object_name.as_str(), e.owner_id),
        ("web", Some(member_id))
    );
    assert!(
        e.summary.contains("env MODE") && e.summary.contains("secret env API_KEY"),
        "{}",
        e.summary
    );
    // Bad input is recorded by field name, never by what was typed.
    let r = app
        .api(
            "POST",
            "/apps",
            Some(member),
            Some(json!({"name": "Bad_Name", "image": IMAGE, "port": 8080})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    log.expect("app.create", MEMBER, "invalid").await;

    let r = app
        .api(
            "PATCH",
            "/apps/web",
            Some(member),
            Some(json!({"env": {"API_KEY": ENV_SECRET, "MODE": "staging"}, "secret_env": ["API_KEY"]})),
        )
        .await;
    ok(&r, StatusCode::OK);
    log.expect("app.update", MEMBER, "ok").await;
    ok(
        &app.api("POST", "/apps/web/redeploy", Some(member), None)
            .await,
        StatusCode::ACCEPTED,
    );
    log.expect("app.deploy", MEMBER, "ok").await;
    let r = app
        .api(
            "POST",
            "/apps/web/rollback",
            Some(member),
            Some(json!({"deployment": 1})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    let e = log.expect("app.rollback", MEMBER, "conflict").await;
    assert_eq!(e.summary, "to deployment #1");
    ok(
        &app.api("POST", "/apps/web/stop", Some(member), None).await,
        StatusCode::OK,
    );
    log.expect("app.stop", MEMBER, "ok").await;
    ok(
        &app.api("POST", "/apps/web/start", Some(member), None).await,
        StatusCode::OK,
    );
    log.expect("app.start", MEMBER, "ok").await;

    let r = app
        .api(
            "POST",
            "/domains",
            Some(member),
            Some(json!({"domain": "shop.example.com", "app": "web"})),
        )
        .await;
    ok(&r, StatusCode::CREATED);
    let e = log.expect("domain.create", MEMBER, "ok").await;
    assert_eq!(e.summary, "registered for web");
    let r = app
        .api(
            "PATCH",
            "/domains/shop.example.com",
            Some(member),
            Some(json!({"app": null})),
        )
        .await;
    ok(&r, StatusCode::OK);
    let e = log.expect("domain.attach", MEMBER, "ok").await;
    assert_eq!(e.summary, "detached");
    ok(
        &app.api("DELETE", "/domains/shop.example.com", Some(member), None)
            .await,
        StatusCode::NO_CONTENT,
    );
    log.expect("domain.delete", MEMBER, "ok").await;

    let r = app
        .api(
            "PUT",
            "/apps/web/backup-policy",
            Some(member),
            Some(json!({"schedule": "daily", "at": "03:30"})),
        )
        .await;
    ok(&r, StatusCode::OK);
    let e = log.expect("backup.policy", MEMBER, "ok").await;
    assert_eq!(e.summary, "schedule daily; at 03:30");

    // Another tenant's app is a 404, recorded for the one who asked.
    let r = app.api("DELETE", "/apps/web", Some(&admin), None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let e = log.expect("app.delete", ADMIN_EMAIL, "not_found").await;
    assert_eq!(e.owner_id, Some(admin_id));

    ok(
        &app.api("DELETE", "/apps/web", Some(member), None).await,
        StatusCode::NO_CONTENT,
    );
    log.expect("app.delete", MEMBER, "ok").await;
    ok(
        &app.api("DELETE", "/registries/127.0.0.1:9", Some(member), None)
            .await,
        StatusCode::NO_CONTENT,
    );
    log.expect("registry.logout", MEMBER, "ok").await;

    // Settings, by the admin.
    let r = app
        .api(
            "PUT",
            "/backup-target",
            Some(&admin),
            Some(
                json!({"endpoint": "http://127.0.0.1:9", "bucket": "pier-test",
                        "access_key": "AKIATEST", "secret_key": S3_SECRET}),
            ),
        )
        .await;
    ok(&r, StatusCode::OK);
    let e = log
        .expect("settings.backup_target", ADMIN_EMAIL, "ok")
        .await;
    assert!(e.summary.contains("secret key replaced"), "{}", e.summary);
    ok(
        &app.api("DELETE", "/backup-target", Some(&admin), None)
            .await,
        StatusCode::NO_CONTENT,
    );
    log.expect("settings.backup_target_delete", ADMIN_EMAIL, "ok")
        .await;
    let r = app
        .api(
            "PUT",
            "/audit/settings",
            Some(&admin),
            Some(json!({"retention_days": 90})),
        )
        .await;
    assert_eq!(ok(&r, StatusCode::OK)["retention_days"], 90);
    log.expect("settings.audit_retention", ADMIN_EMAIL, "ok")
        .await;
    // A member may not change it.
    let r = app
        .api(
            "PUT",
            "/audit/settings",
            Some(member),
            Some(json!({"retention_days": 7})),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // (refused by the token's scope before the service is asked: nothing to record)
    assert!(log.new_entries().await.is_empty());

    // Own account: password, sessions; then the member's token goes.
    let r = browser
        .call(
            "change_password",
            &[("current", MEMBER_PW), ("new", NEW_PW), ("confirm", NEW_PW)],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    log.expect("account.password_change", MEMBER, "ok").await;
    let r = browser.call("end_other_sessions", &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    log.expect("session.end_others", MEMBER, "ok").await;
    let r = browser.call("logout", &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let e = log.expect("account.sign_out", MEMBER, "ok").await;
    assert_eq!(e.address.as_deref(), Some("192.0.2.44"));
    // Signing out without a session records nothing.
    let r = browser.call("logout", &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(log.new_entries().await.is_empty());
    ok(
        &app.api(
            "DELETE",
            &format!("/tokens/{member_token}"),
            Some(member),
            None,
        )
        .await,
        StatusCode::NO_CONTENT,
    );
    let e = log.expect("token.revoke", MEMBER, "ok").await;
    assert_eq!(e.object_name, "ci");

    // The admin deletes the member; their entries stay.
    ok(
        &app.api("DELETE", &format!("/users/{member_id}"), Some(&admin), None)
            .await,
        StatusCode::NO_CONTENT,
    );
    log.expect("user.delete", ADMIN_EMAIL, "ok").await;
    app.pier.flush_audit().await;
    let kept: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_log WHERE actor_id = ?")
        .bind(member_id)
        .fetch_one(&db)
        .await
        .unwrap();
    assert!(kept >= 15, "{kept}");

    // No secret any test used is anywhere in the table.
    let everything: Vec<String> = sqlx::query(
        "SELECT actor_email || '|' || COALESCE(address, '') || '|' || action || '|' ||
                object_kind || '|' || object_name || '|' || summary || '|' || outcome || '|' ||
                COALESCE(message, '') FROM audit_log",
    )
    .fetch_all(&db)
    .await
    .unwrap()
    .into_iter()
    .map(|r| r.get(0))
    .collect();
    for secret in [
        MEMBER_PW,
        NEW_PW,
        ENV_SECRET,
        REGISTRY_PW,
        S3_SECRET,
        member,
        admin.as_str(),
        &member[..20],
        "not the password",
    ] {
        for line in &everything {
            assert!(!line.contains(secret), "{secret:?} in {line}");
        }
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn tenants_read_only_their_own_entries(db: SqlitePool) {
    let app = TestApp::new(db.clone()).await;
    let mut a_browser = app.member("a@example.com").await;
    let _b_browser = app.member("b@example.com").await;
    let (a_id, b_id) = (
        app.user_id("a@example.com").await,
        app.user_id("b@example.com").await,
    );
    let a = app.token("a@example.com", "write").await;
    let b = app.token("b@example.com", "write").await;
    for (token, name) in [(&a, "alpha"), (&a, "alpha2"), (&a, "alpha3"), (&b, "beta")] {
        let r = app
            .api(
                "POST",
                "/apps",
                Some(token),
                Some(json!({"name": name, "image": IMAGE, "port": 8080})),
            )
            .await;
        ok(&r, StatusCode::CREATED);
    }

    // A sees only entries they made or about their things, through the API and the page.
    let page = ok(
        &app.api("GET", "/audit", Some(&a), None).await,
        StatusCode::OK,
    );
    let items = page["items"].as_array().unwrap();
    assert!(!items.is_empty());
    for e in items {
        assert!(e["actor"]["id"] == a_id || e["owner_id"] == a_id, "{e}");
        assert_ne!(e["object"]["name"], "beta", "{e}");
    }
    assert!(items
        .iter()
        .any(|e| e["action"] == "app.create" && e["object"]["name"] == "alpha"));
    let r = a_browser
        .read("audit_log?mine=false&person=&action=&object=&name=&since=&until=")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let rows = r.json()["rows"].as_array().unwrap().clone();
    assert!(rows.iter().all(|e| e["object"] != "app beta"), "{rows:?}");
    assert!(rows.iter().any(|e| e["object"] == "app alpha"), "{rows:?}");
    // Asking for someone else's is refused, not silently narrowed.
    let r = app
        .api("GET", &format!("/audit?person={b_id}"), Some(&a), None)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let r = a_browser.read("audit_choices").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);

    // An admin token reads everyone's, filtered by person, action, object and name.
    let admin = app.token(ADMIN_EMAIL, "admin").await;
    let all = |q: String| {
        let app = &app;
        let admin = admin.clone();
        async move {
            ok(
                &app.api("GET", &format!("/audit{q}"), Some(&admin), None)
                    .await,
                StatusCode::OK,
            )["items"]
                .as_array()
                .unwrap()
                .clone()
        }
    };
    let of_b = all(format!("?person={b_id}")).await;
    assert!(of_b.iter().any(|e| e["object"]["name"] == "beta"));
    assert!(of_b
        .iter()
        .all(|e| e["actor"]["id"] == b_id || e["owner_id"] == b_id));
    let creates = all("?action=app.create".into()).await;
    assert_eq!(creates.len(), 4);
    assert_eq!(all("?action=app.".into()).await.len(), 4);
    assert_eq!(all("?object=app&name=alpha2".into()).await.len(), 1);
    assert!(all("?since=2999-01-01T00:00:00Z".into()).await.is_empty());
    assert_eq!(
        all("?until=2999-01-01T00:00:00Z&action=app.create".into())
            .await
            .len(),
        4
    );

    // Pages: newest first, no entry twice, the last page says so.
    let mut seen = Vec::new();
    let mut before = None::<i64>;
    loop {
        let q = match before {
            Some(b) => format!("/audit?action=app.create&limit=3&before={b}"),
            None => "/audit?action=app.create&limit=3".into(),
        };
        let page = ok(
            &app.api("GET", &q, Some(&admin), None).await,
            StatusCode::OK,
        );
        let ids: Vec<i64> = page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_i64().unwrap())
            .collect();
        assert!(ids.windows(2).all(|w| w[0] > w[1]), "{ids:?}");
        seen.extend(ids);
        match page["next_before"].as_i64() {
            Some(b) => before = Some(b),
            None => break,
        }
    }
    let mut unique = seen.clone();
    unique.dedup();
    assert_eq!((seen.len(), unique.len()), (4, 4), "{seen:?}");

    // An admin's read token reads only its owner's entries.
    let admin_read = app.token(ADMIN_EMAIL, "read").await;
    let page = ok(
        &app.api("GET", "/audit", Some(&admin_read), None).await,
        StatusCode::OK,
    );
    let admin_id = app.user_id(ADMIN_EMAIL).await;
    for e in page["items"].as_array().unwrap() {
        assert!(
            e["actor"]["id"] == admin_id || e["owner_id"] == admin_id,
            "{e}"
        );
    }

    // Bad filters are named.
    for (q, field) in [
        ("?action=app.explode", "action"),
        ("?action=nothing.", "action"),
        ("?object=planet", "object"),
        ("?since=yesterday", "since"),
        ("?limit=0", "limit"),
        ("?limit=201", "limit"),
    ] {
        let r = app
            .api("GET", &format!("/audit{q}"), Some(&admin), None)
            .await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{q}: {}",
            r.body
        );
        assert!(!r.api_field(field).is_empty(), "{q}: {}", r.body);
    }
    let r = app.api("GET", "/audit?color=red", Some(&admin), None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
}

#[sqlx::test(migrations = "../migrations")]
async fn entries_past_the_retention_are_removed(db: SqlitePool) {
    let app = TestApp::new(db.clone()).await;
    let admin = app.token(ADMIN_EMAIL, "admin").await;
    let day = 86_400;
    let now = pier_core::now();
    for age in [400 * day, 100 * day, 10 * day] {
        sqlx::query(
            "INSERT INTO audit_log (at, actor_email, action, object_kind, object_name, summary, outcome)
             VALUES (?, 'old@example.com', 'app.create', 'app', ?, '', 'ok')",
        )
        .bind(now - age)
        .bind(format!("aged-{}", age / day))
        .execute(&db)
        .await
        .unwrap();
    }
    let names = || async {
        sqlx::query_scalar::<_, String>(
            "SELECT object_name FROM audit_log WHERE object_name LIKE 'aged-%' ORDER BY at",
        )
        .fetch_all(&db)
        .await
        .unwrap()
    };
    // The default, a year.
    assert_eq!(app.pier.purge_old_audit_entries().await.unwrap(), 1);
    assert_eq!(names().await, ["aged-100", "aged-10"]);
    // Out of bounds is refused and recorded; the retention stays.
    let r = app
        .api(
            "PUT",
            "/audit/settings",
            Some(&admin),
            Some(json!({"retention_days": 3})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    let r = app.api("GET", "/audit/settings", Some(&admin), None).await;
    assert_eq!(ok(&r, StatusCode::OK)["retention_days"], 365);
    let r = app
        .api(
            "PUT",
            "/audit/settings",
            Some(&admin),
            Some(json!({"retention_days": 30})),
        )
        .await;
    ok(&r, StatusCode::OK);
    assert_eq!(app.pier.purge_old_audit_entries().await.unwrap(), 1);
    assert_eq!(names().await, ["aged-10"]);
    app.pier.flush_audit().await;
    let outcomes: Vec<String> = sqlx::query_scalar(
        "SELECT outcome FROM audit_log WHERE action = 'settings.audit_retention' ORDER BY id",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    assert_eq!(outcomes, ["invalid", "ok"]);
}

#[sqlx::test(migrations = "../migrations")]
async fn a_panel_without_the_log_records_nothing(db: SqlitePool) {
    let mut settings = common::test_settings();
    settings.audit.enabled = false;
    let app = TestApp::with_settings(db.clone(), settings).await;
    let admin = app.token(ADMIN_EMAIL, "admin").await;
    let r = app
        .api(
            "POST",
            "/users",
            Some(&admin),
            Some(json!({"email": "quiet@example.com", "role": "member"})),
        )
        .await;
    ok(&r, StatusCode::CREATED);
    app.pier.flush_audit().await;
    assert_eq!(last_id(&db).await, 0);
}
