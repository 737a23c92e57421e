//! Certificates from a real ACME CA: pebble (started per test on loopback ports, asking the mock
//! DNS server for every name, which answers 127.0.0.1) validates HTTP-01 challenges through the
//! panel's own HAProxy, and the certificate it issues is then served for the domain.

use crate::common;

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::{sites::*, Browser, TestApp};
use serde_json::Value;
use sqlx::SqlitePool;

/// The caller's domain row from the Domains page's server function.
async fn domain_row(b: &mut Browser, name: &str) -> Value {
    let r = b.read("my_domains").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.json()["domains"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no {name}: {}", r.body))
}

async fn until_certificate(b: &mut Browser, name: &str, status: &str, secs: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let d = domain_row(b, name).await;
        if d["certificate"] == status {
            return d;
        }
        assert!(Instant::now() < deadline, "{name} never {status}: {d:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `openssl s_client` against HAProxy with SNI `host`, verifying with `ca`: (verified, serial).
async fn served_certificate(app: &TestApp, host: &str, ca: &std::path::Path) -> (bool, String) {
    let port = app.proxy().config().https_addr.port();
    let out = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "echo | openssl s_client -connect 127.0.0.1:{port} -servername {host} -CAfile {} -verify_return_error 2>/dev/null | openssl x509 -noout -serial",
            ca.display()
        ))
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (
        out.status.success() && text.starts_with("serial="),
        text.trim_start_matches("serial=").to_owned(),
    )
}

#[sqlx::test(migrations = "../migrations")]
async fn an_attached_domain_gets_a_certificate_served_without_a_reload(db: SqlitePool) {
    let app = TestApp::with_acme(db).await;
    let mut ann = tenant(&app, "ann@example.com").await;
    create(&mut ann, "site", "secure site").await;
    until_running(&mut ann, "site", 1).await;
    let workers = app.proxy().workers().await.unwrap();

    // Registered but not attached: nothing is ordered.
    domain(&mut ann, "add_domain", "secure.pier.test", "").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        domain_row(&mut ann, "secure.pier.test").await["certificate"],
        "self-signed"
    );

    // Attached: ordered, validated through HAProxy, issued and installed.
    let t0 = Instant::now();
    domain(&mut ann, "attach_domain", "secure.pier.test", "site").await;
    let d = until_certificate(&mut ann, "secure.pier.test", "valid", 60).await;
    println!("certificate valid {:?} after attaching", t0.elapsed());
    assert!(
        d["certificate_note"]
            .as_str()
            .unwrap()
            .starts_with("valid until"),
        "{d}"
    );

    // HAProxy serves it for that name, verified against pebble's root.
    let root = std::env::temp_dir().join(format!("pier-pebble-root-{}.pem", std::process::id()));
    std::fs::write(&root, app.pebble.as_ref().unwrap().root()).unwrap();
    let (verified, serial) = served_certificate(&app, "secure.pier.test", &root).await;
    assert!(
        verified,
        "HAProxy does not serve a certificate pebble's root verifies"
    );
    let port = app.proxy().config().https_addr.port();
    let out = tokio::process::Command::new("curl")
        .args(["-s", "--max-time", "5", "--cacert"])
        .arg(&root)
        .arg("--resolve")
        .arg(format!("secure.pier.test:{port}:127.0.0.1"))
        .arg(format!("https://secure.pier.test:{port}/"))
        .output()
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "secure site");
    // Other names still get the default certificate (which pebble's root does not verify).
    assert!(!served_certificate(&app, "other.pier.test", &root).await.0);
    assert_eq!(
        app.proxy().workers().await.unwrap(),
        workers,
        "installed without a reload"
    );

    // The key: sealed in the database, 0600 on disk, never in the REST answer.
    let (sealed, stored_serial): (String, String) = sqlx::query_as(
        "SELECT sealed_key, serial FROM certificates WHERE name = 'secure.pier.test'",
    )
    .fetch_one(app.pier.db())
    .await
    .unwrap();
    assert!(!sealed.contains("PRIVATE KEY"));
    assert_eq!(
        stored_serial.replace(':', "").to_uppercase(),
        serial.to_uppercase()
    );
    let file = app.proxy().files().dir.join("certs/secure.pier.test.pem");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let token = app.token("ann@example.com", "read").await;
    let r = app
        .api("GET", "/domains/secure.pier.test", Some(&token), None)
        .await;
    let j = r.json();
    assert_eq!(j["certificate"]["status"], "valid", "{j}");
    assert!(j["certificate"]["valid_until"].is_string());
    assert!(!r.body.contains("PRIVATE"));

    // A restart of HAProxy brings it back from the files.
    let mut app = app;
    app.kill();
    let again = app.restarted().await;
    assert!(
        served_certificate(&again, "secure.pier.test", &root)
            .await
            .0
    );
    drop(again);
    let _ = std::fs::remove_file(&root);
}

#[sqlx::test(migrations = "../migrations")]
async fn a_challenge_that_cannot_be_answered_fails_with_the_cas_words_within_the_limits(
    db: SqlitePool,
) {
    let (_, dns_management) = common::mock_dns();
    let app = TestApp::with_acme(db).await;
    let mut ann = tenant(&app, "ann@example.com").await;
    create(&mut ann, "site", "x").await;
    until_running(&mut ann, "site", 1).await;
    // The name points at a loopback address where nothing listens: validation cannot succeed.
    common::mock_dns_a(&dns_management, "nowhere.pier.test", &["127.0.0.9"]);
    domain(&mut ann, "add_domain", "nowhere.pier.test", "site").await;
    let d = until_certificate(&mut ann, "nowhere.pier.test", "failed", 60).await;
    let note = d["certificate_note"].as_str().unwrap().to_owned();
    println!("failed: {note}");
    assert!(
        note.contains("127.0.0.9") && note.contains("connection refused"),
        "{note}"
    );
    assert!(note.contains("next try"), "{note}");
    // Retried with backoff (1, 2, 4, 8 s here) until 5 validations failed within the hour;
    // then Pier stops asking and says why. "Retry now" does not get past the limit.
    let orders = || {
        let db = app.pier.db().clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT COUNT(*) FROM acme_orders WHERE name = 'nowhere.pier.test' AND outcome = 'invalid'",
            )
            .fetch_one(&db)
            .await
            .unwrap()
        }
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    let note = loop {
        let d = domain_row(&mut ann, "nowhere.pier.test").await;
        let note = d["certificate_note"].as_str().unwrap().to_owned();
        if note.contains("failed validations in the last hour") {
            break note;
        }
        assert!(
            Instant::now() < deadline,
            "no limit after {} orders: {note}",
            orders().await
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    println!("limited: {note}");
    assert_eq!(orders().await, 5);
    let r = ann
        .call("retry_certificate", &[("domain", "nowhere.pier.test")])
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(orders().await, 5, "no order past the limit");
    // Another tenant cannot retry it.
    let mut bob = app.member("bob@example.com").await;
    let r = bob
        .call("retry_certificate", &[("domain", "nowhere.pier.test")])
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    common::mock_dns_a(&dns_management, "nowhere.pier.test", &[]);
}

#[sqlx::test(migrations = "../migrations")]
async fn no_order_until_the_dns_points_here(db: SqlitePool) {
    let (dns, dns_management) = common::mock_dns();
    let app = TestApp::with_acme_settings(db, |s| {
        s.routing.public_addrs = vec!["127.0.0.1".parse().unwrap()];
    })
    .await;
    app.pier.set_resolver(std::sync::Arc::new(
        pier::dns::DnsResolver::new(Some(dns)).unwrap(),
    ));
    let mut ann = tenant(&app, "ann@example.com").await;
    create(&mut ann, "site", "x").await;
    until_running(&mut ann, "site", 1).await;
    common::mock_dns_a(&dns_management, "later.pier.test", &["192.0.2.44"]);
    domain(&mut ann, "add_domain", "later.pier.test", "site").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let d = domain_row(&mut ann, "later.pier.test").await;
        let note = d["certificate_note"].as_str().unwrap();
        if note.contains("waiting for DNS") {
            assert!(note.contains("192.0.2.44"), "{note}");
            break;
        }
        assert!(Instant::now() < deadline, "{d:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM acme_orders")
        .fetch_one(app.pier.db())
        .await
        .unwrap();
    assert_eq!(n, 0, "no order while the name points elsewhere");
    // DNS fixed: the next try orders and gets it.
    common::mock_dns_a(&dns_management, "later.pier.test", &[]);
    let r = ann
        .call("retry_certificate", &[("domain", "later.pier.test")])
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    until_certificate(&mut ann, "later.pier.test", "valid", 60).await;
}

#[sqlx::test(migrations = "../migrations")]
async fn renewal_replaces_the_certificate_hitlessly_and_survives_a_ca_outage(db: SqlitePool) {
    let mut app = TestApp::with_acme(db).await;
    let mut ann = tenant(&app, "ann@example.com").await;
    create(&mut ann, "site", "renewed site").await;
    until_running(&mut ann, "site", 1).await;
    domain(&mut ann, "add_domain", "renew.pier.test", "site").await;
    until_certificate(&mut ann, "renew.pier.test", "valid", 60).await;
    let root = std::env::temp_dir().join(format!("pier-pebble-root-r-{}.pem", std::process::id()));
    std::fs::write(&root, app.pebble.as_ref().unwrap().root()).unwrap();
    let (ok, first) = served_certificate(&app, "renew.pier.test", &root).await;
    assert!(ok);
    let workers = app.proxy().workers().await.unwrap();

    // A bounded load on the domain all along (HTTPS; trust is checked separately).
    let port = app.proxy().config().https_addr.port();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let (mut ok, mut failed) = (0u32, Vec::new());
            let t0 = Instant::now();
            while !stop.load(std::sync::atomic::Ordering::Relaxed)
                && t0.elapsed() < Duration::from_secs(120)
            {
                let out = std::process::Command::new("curl")
                    .args([
                        "-sk",
                        "--max-time",
                        "5",
                        "-o",
                        "/dev/null",
                        "-w",
                        "%{http_code}",
                    ])
                    .arg("--resolve")
                    .arg(format!("renew.pier.test:{port}:127.0.0.1"))
                    .arg(format!("https://renew.pier.test:{port}/"))
                    .output()
                    .unwrap();
                let code = String::from_utf8_lossy(&out.stdout).to_string();
                if code == "200" {
                    ok += 1;
                } else {
                    failed.push(code);
                }
            }
            (ok, failed)
        })
    };

    // Renewal time comes (the admin's "renew now" makes it due): a new certificate is served.
    let mut admin = app.admin().await;
    let r = admin
        .call("renew_certificate", &[("domain", "renew.pier.test")])
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let deadline = Instant::now() + Duration::from_secs(60);
    let second = loop {
        let (ok, serial) = served_certificate(&app, "renew.pier.test", &root).await;
        if ok && serial != first {
            break serial;
        }
        assert!(Instant::now() < deadline, "still serving {first}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    until_certificate(&mut ann, "renew.pier.test", "valid", 10).await;

    // The CA is down when the next renewal is due: Pier backs off, says when it tries again,
    // and the current certificate keeps serving.
    app.pebble.as_mut().unwrap().stop();
    let r = admin
        .call("renew_certificate", &[("domain", "renew.pier.test")])
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let d = loop {
        let d = domain_row(&mut ann, "renew.pier.test").await;
        if d["certificate"] == "renewing"
            && d["certificate_note"].as_str().unwrap().contains("next try")
        {
            break d;
        }
        assert!(Instant::now() < deadline + Duration::from_secs(30), "{d:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    println!("while the CA is down: {}", d["certificate_note"]);
    assert_eq!(
        served_certificate(&app, "renew.pier.test", &root).await,
        (true, second.clone())
    );

    // The CA is back (a new pebble: new root, no memory of Pier's account): renewed.
    app.pebble.as_mut().unwrap().restart();
    std::fs::write(&root, app.pebble.as_ref().unwrap().root()).unwrap();
    let r = ann
        .call("retry_certificate", &[("domain", "renew.pier.test")])
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (ok, serial) = served_certificate(&app, "renew.pier.test", &root).await;
        if ok && serial != second {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not renewed after the CA came back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed) = load.join().unwrap();
    println!(
        "during renewals: {ok} requests answered 200, {} failed",
        failed.len()
    );
    assert!(failed.is_empty(), "{failed:?}");
    assert!(ok > 20);
    assert_eq!(app.proxy().workers().await.unwrap(), workers, "no reload");
    // The admin sees the certificate, the account and this week's orders.
    let r = admin.read("certificates_overview").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("renew.pier.test"), "{}", r.body);
    let r = ann.read("certificates_overview").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let _ = std::fs::remove_file(&root);
}

#[sqlx::test(migrations = "../migrations")]
async fn the_weekly_budget_per_registered_domain_holds(db: SqlitePool) {
    let app = TestApp::with_acme_settings(db, |s| s.acme.weekly_budget = 1).await;
    let mut ann = tenant(&app, "ann@example.com").await;
    create(&mut ann, "site", "x").await;
    until_running(&mut ann, "site", 1).await;
    domain(&mut ann, "add_domain", "one.budget.test", "site").await;
    until_certificate(&mut ann, "one.budget.test", "valid", 60).await;
    // A second name under the same registered domain: over budget, no order, and it says so.
    domain(&mut ann, "add_domain", "two.budget.test", "site").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let d = domain_row(&mut ann, "two.budget.test").await;
        let note = d["certificate_note"].as_str().unwrap();
        if note.contains("weekly limit") {
            assert!(note.contains("budget.test"), "{note}");
            break;
        }
        assert!(Instant::now() < deadline, "{d:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let n: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM acme_orders WHERE name = 'two.budget.test'")
            .fetch_one(app.pier.db())
            .await
            .unwrap();
    assert_eq!(n, 0);
    // Another registered domain is not affected.
    domain(&mut ann, "add_domain", "other.pier.test", "site").await;
    until_certificate(&mut ann, "other.pier.test", "valid", 60).await;
}

/// `curl -sI https://<host>/login` through the panel's HAProxy, trusting `ca` (None: any
/// certificate): the response headers, lower-cased.
async fn panel_headers(app: &TestApp, host: &str, ca: Option<&std::path::Path>) -> String {
    let port = app.proxy().config().https_addr.port();
    let mut cmd = tokio::process::Command::new("curl");
    cmd.args(["-sS", "-o", "/dev/null", "-D", "-", "--max-time", "5"]);
    match ca {
        Some(ca) => cmd.arg("--cacert").arg(ca),
        None => cmd.arg("-k"),
    };
    let out = cmd
        .arg("--resolve")
        .arg(format!("{host}:{port}:127.0.0.1"))
        .arg(format!("https://{host}:{port}/login"))
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_ascii_lowercase()
}

#[sqlx::test(migrations = "../migrations")]
async fn no_hsts_while_the_panel_has_no_ca_certificate(db: SqlitePool) {
    // ACME off: the self-signed default serves the panel. HSTS now would lock people out behind
    // a warning they could not click through.
    let plain = TestApp::with_proxy(db).await;
    let headers = panel_headers(&plain, "panel.pier.test", None).await;
    assert_eq!(headers.split_whitespace().nth(1), Some("200"), "{headers}");
    assert!(!headers.contains("strict-transport-security"), "{headers}");
}

#[sqlx::test(migrations = "../migrations")]
async fn the_panel_gets_its_own_certificate_and_then_hsts(db: SqlitePool) {
    let app = TestApp::with_acme_settings(db, |s| s.acme.panel_certificate = true).await;
    let root = std::env::temp_dir().join(format!("pier-pebble-root-p-{}.pem", std::process::id()));
    std::fs::write(&root, app.pebble.as_ref().unwrap().root()).unwrap();
    // Ordered with no tenant domain at all, and served for the panel's name.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status: Option<String> = sqlx::query_scalar(
            "SELECT status FROM certificates WHERE name = 'panel.pier.test' AND domain_id IS NULL",
        )
        .fetch_optional(app.pier.db())
        .await
        .unwrap();
        if status.as_deref() == Some("valid") {
            break;
        }
        assert!(Instant::now() < deadline, "panel certificate: {status:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(served_certificate(&app, "panel.pier.test", &root).await.0);
    let headers = panel_headers(&app, "panel.pier.test", Some(&root)).await;
    assert!(
        headers.contains("strict-transport-security: max-age=31536000"),
        "{headers}"
    );
    // The admin's Certificates page lists it.
    let mut admin = app.admin().await;
    let r = admin.read("certificates_overview").await;
    assert!(r.body.contains("panel.pier.test"), "{}", r.body);
    // Another host on the same HAProxy (an app's domain) gets no HSTS from the panel.
    let other = panel_headers(&app, "other.pier.test", None).await;
    assert!(!other.contains("strict-transport-security"), "{other}");
    let _ = std::fs::remove_file(&root);
}

#[sqlx::test(migrations = "../migrations")]
async fn order_budgets_per_tenant_keep_renewals_going(db: SqlitePool) {
    let app = TestApp::with_acme_settings(db, |s| s.acme.tenant_orders_per_window = 2).await;
    let mut ann = tenant(&app, "ann@example.com").await;
    create(&mut ann, "site", "x").await;
    until_running(&mut ann, "site", 1).await;
    for n in ["b1.quota.test", "b2.quota.test"] {
        domain(&mut ann, "add_domain", n, "site").await;
        until_certificate(&mut ann, n, "valid", 60).await;
    }
    // The third new certificate waits for the tenant's budget, and says so; no order is placed.
    domain(&mut ann, "add_domain", "b3.quota.test", "site").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let d = domain_row(&mut ann, "b3.quota.test").await;
        let note = d["certificate_note"].as_str().unwrap();
        if note.contains("You placed 2 certificate orders") {
            break;
        }
        assert!(Instant::now() < deadline, "{d:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let orders = |name: &'static str| {
        let db = app.pier.db().clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM acme_orders WHERE name = ?")
                .bind(name)
                .fetch_one(&db)
                .await
                .unwrap()
        }
    };
    assert_eq!(orders("b3.quota.test").await, 0);
    // Another tenant has a budget of their own.
    let mut bob = tenant(&app, "bob@example.com").await;
    create(&mut bob, "blog", "y").await;
    until_running(&mut bob, "blog", 1).await;
    domain(&mut bob, "add_domain", "bob.quota.test", "blog").await;
    until_certificate(&mut bob, "bob.quota.test", "valid", 60).await;
    // A renewal of Ann's goes ahead although her budget for new ones is spent.
    let mut admin = app.admin().await;
    let r = admin
        .call("renew_certificate", &[("domain", "b1.quota.test")])
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let deadline = Instant::now() + Duration::from_secs(60);
    while orders("b1.quota.test").await < 2 {
        assert!(Instant::now() < deadline, "the renewal was never ordered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    until_certificate(&mut ann, "b1.quota.test", "valid", 60).await;
    let renewal: i64 = sqlx::query_scalar(
        "SELECT renewal FROM acme_orders WHERE name = 'b1.quota.test' ORDER BY id DESC LIMIT 1",
    )
    .fetch_one(app.pier.db())
    .await
    .unwrap();
    assert_eq!(renewal, 1);
    assert_eq!(orders("b3.quota.test").await, 0, "still waiting");
    // The admin page shows the window's orders per tenant.
    let r = admin.read("certificates_overview").await;
    let j = r.json();
    assert_eq!(j["window_orders"], 4, "{j}");
    assert!(r.body.contains("ann@example.com"), "{}", r.body);
}

#[sqlx::test(migrations = "../migrations")]
async fn a_deleted_domains_certificate_leaves_haproxy_and_the_disk(db: SqlitePool) {
    let app = TestApp::with_acme(db).await;
    let mut ann = tenant(&app, "ann@example.com").await;
    create(&mut ann, "site", "x").await;
    until_running(&mut ann, "site", 1).await;
    domain(&mut ann, "add_domain", "gone.pier.test", "site").await;
    until_certificate(&mut ann, "gone.pier.test", "valid", 60).await;
    let file = app.proxy().files().dir.join("certs/gone.pier.test.pem");
    assert!(file.exists());
    let r = ann
        .call("remove_domain", &[("domain", "gone.pier.test")])
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let list = app.proxy().config().crt_list.clone();
    let deadline = Instant::now() + Duration::from_secs(70);
    while file.exists() {
        assert!(Instant::now() < deadline, "the certificate file stays");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let listed = std::fs::read_to_string(&list).unwrap();
    assert!(!listed.contains("gone.pier.test"), "{listed}");
    // Nor does the running HAProxy hold it: the name gets the default certificate again.
    let socket = app.proxy().config().stats_socket.clone();
    let certs = pier::proxy::runtime::command(&socket, "show ssl cert")
        .await
        .unwrap();
    assert!(!certs.contains("gone.pier.test"), "{certs}");
    let entries =
        pier::proxy::runtime::command(&socket, &format!("show ssl crt-list {}", list.display()))
            .await
            .unwrap();
    assert!(!entries.contains("gone.pier.test"), "{entries}");
}
