//! Notifications: a signed webhook to a receiver on loopback, a failing receiver retried with
//! the failure shown, e-mail through a real SMTP server (aiosmtpd) on loopback, and the
//! settings' refusals.

use std::{
    net::SocketAddr,
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicU16, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use axum::{
    body::Bytes,
    http::{HeaderMap, StatusCode},
    routing::post,
    Router,
};
use hmac::{Hmac, Mac};
use sqlx::SqlitePool;

use crate::common::{free_addr, TestApp};

/// What a receiver got: the headers and body of each POST.
type Got = Arc<Mutex<Vec<(HeaderMap, String)>>>;

/// A webhook receiver on loopback answering `status` (changeable while it runs).
async fn receiver(status: Arc<AtomicU16>) -> (SocketAddr, Got) {
    let got: Got = Arc::default();
    let seen = got.clone();
    let app = Router::new().route(
        "/hook",
        post(move |headers: HeaderMap, body: Bytes| {
            let seen = seen.clone();
            let status = status.clone();
            async move {
                seen.lock()
                    .unwrap()
                    .push((headers, String::from_utf8_lossy(&body).into_owned()));
                StatusCode::from_u16(status.load(Ordering::SeqCst)).unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, got)
}

async fn wait_until<T>(what: &str, secs: u64, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn verify(secret: &str, headers: &HeaderMap, body: &str) -> bool {
    let ts = headers["x-pier-timestamp"].to_str().unwrap();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{ts}.{body}").as_bytes());
    let expected = format!("v1={}", hex::encode(mac.finalize().into_bytes()));
    headers["x-pier-signature"].to_str().unwrap() == expected
}

#[sqlx::test(migrations = "../migrations")]
async fn a_test_notification_reaches_a_signed_webhook(db: SqlitePool) {
    let app = TestApp::new(db).await;
    let mut b = app.member("ada@example.com").await;
    let (addr, got) = receiver(Arc::new(AtomicU16::new(200))).await;

    // Nowhere to send yet (no webhook, no mail server).
    let r = b.call("send_test_notification", &[]).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);

    for bad in ["ftp://example.com/x", "https://u:p@example.com/", "example"] {
        let r = b.call("set_notifications", &[("webhook_url", bad)]).await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad}: {}",
            r.body
        );
        assert!(r.field_error("webhook_url").is_some());
    }
    let url = format!("http://{addr}/hook");
    let r = b.call("set_notifications", &[("webhook_url", &url)]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let v = b.read("notifications").await.json();
    assert_eq!(v["webhook_url"], url.as_str());
    assert_eq!(v["email"], false);
    let secret = v["webhook_secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");

    let r = b.call("send_test_notification", &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let (headers, body) = wait_until("the webhook", 15, async || {
        got.lock().unwrap().first().cloned()
    })
    .await;
    assert!(
        verify(&secret, &headers, &body),
        "bad signature: {headers:?}"
    );
    assert!(!verify("whsec_other", &headers, &body));
    assert_eq!(headers["x-pier-event"], "test");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["kind"], "test");
    assert_eq!(json["subject"], "Test notification from Pier");

    let d = wait_until("the delivery to be marked sent", 10, async || {
        let v = b.read("notifications").await.json();
        let d = v["deliveries"][0].clone();
        (d["status"] == "sent").then_some(d)
    })
    .await;
    assert_eq!(d["channel"], "webhook");
    assert_eq!(d["attempts"], 1);

    // A new secret: the old one no longer signs.
    let r = b
        .call(
            "set_notifications",
            &[("webhook_url", &url), ("new_secret", "on")],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let fresh = b.read("notifications").await.json()["webhook_secret"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(fresh, secret);
    // Sealed at rest.
    let stored: String = sqlx::query_scalar("SELECT webhook_secret FROM notify_settings")
        .fetch_one(app.pier.db())
        .await
        .unwrap();
    assert!(!stored.contains(&fresh));
}

#[sqlx::test(migrations = "../migrations")]
async fn a_failing_receiver_is_retried_and_the_failure_shown(db: SqlitePool) {
    let app = TestApp::new(db).await;
    let mut b = app.member("ada@example.com").await;
    let status = Arc::new(AtomicU16::new(500));
    let (addr, got) = receiver(status.clone()).await;
    let url = format!("http://{addr}/hook");
    let r = b.call("set_notifications", &[("webhook_url", &url)]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = b.call("send_test_notification", &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    // Two attempts refused (the retry comes a second later); the page says so.
    let d = wait_until("a second attempt", 15, async || {
        let v = b.read("notifications").await.json();
        let d = v["deliveries"][0].clone();
        (d["attempts"].as_i64() >= Some(2)).then_some(d)
    })
    .await;
    assert_eq!(d["status"], "pending");
    assert_eq!(
        d["last_error"].as_str().unwrap(),
        "the receiver answered HTTP 500"
    );
    assert!(got.lock().unwrap().len() >= 2);

    // The receiver recovers: the next attempt (4 s later) gets through, once.
    status.store(204, Ordering::SeqCst);
    let d = wait_until("the retry to get through", 20, async || {
        let v = b.read("notifications").await.json();
        let d = v["deliveries"][0].clone();
        (d["status"] == "sent").then_some(d)
    })
    .await;
    assert!(d["attempts"].as_i64().unwrap() >= 3, "{d}");
    let posts = got.lock().unwrap().len();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        got.lock().unwrap().len(),
        posts,
        "sent again after it got through"
    );
}

/// aiosmtpd on loopback, keeping what it receives in a Maildir; stopped with the test.
struct SmtpSink {
    child: Child,
    port: u16,
    maildir: std::path::PathBuf,
}

impl SmtpSink {
    fn start() -> SmtpSink {
        Self::start_with(&[])
    }

    /// With `--tlscert`, aiosmtpd offers STARTTLS and refuses mail sent without it.
    fn start_with(extra: &[&std::path::Path]) -> SmtpSink {
        let port = free_addr().port();
        let maildir = std::env::temp_dir().join(format!("pier-test-mail-{port}"));
        let _ = std::fs::remove_dir_all(&maildir);
        let child = Command::new("/usr/bin/python3")
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
            .args(match extra {
                [cert, key] => vec![
                    std::ffi::OsString::from("--tlscert"),
                    cert.as_os_str().to_owned(),
                    std::ffi::OsString::from("--tlskey"),
                    key.as_os_str().to_owned(),
                ],
                _ => Vec::new(),
            })
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("aiosmtpd (python3-aiosmtpd; scripts/setup.sh --test installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "aiosmtpd did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        SmtpSink {
            child,
            port,
            maildir,
        }
    }

    fn messages(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.maildir.join("new")) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .collect()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.maildir);
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn e_mail_goes_out_through_the_operators_mail_server(db: SqlitePool) {
    let sink = SmtpSink::start();
    let app = TestApp::new(db).await;
    let mut admin = app.admin().await;
    let port = sink.port.to_string();
    let form = |host: &'static str, security: &'static str| {
        vec![
            ("host", host),
            ("port", "PORT"),
            ("security", security),
            ("username", ""),
            ("password", ""),
            ("from_address", "pier@example.com"),
        ]
    };
    let with_port = |f: Vec<(&'static str, &'static str)>| -> Vec<(&'static str, String)> {
        f.into_iter()
            .map(|(k, v)| {
                (
                    k,
                    if v == "PORT" {
                        port.clone()
                    } else {
                        v.to_owned()
                    },
                )
            })
            .collect()
    };
    let send = async |b: &mut crate::common::Browser, fields: Vec<(&'static str, String)>| {
        let borrowed: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        b.call("set_smtp", &borrowed).await
    };

    // Without TLS only to this machine; a member may not set it at all.
    let r = send(&mut admin, with_port(form("mail.example.com", "none"))).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert!(r.field_error("security").unwrap().contains("this machine"));
    let r = send(&mut admin, with_port(form("127.0.0.1", "carrier-pigeon"))).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    let mut member = app.member("ada@example.com").await;
    let r = send(&mut member, with_port(form("127.0.0.1", "none"))).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);

    let r = send(&mut admin, with_port(form("127.0.0.1", "none"))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        admin.read("smtp_settings").await.json()["host"],
        "127.0.0.1"
    );

    // E-mail is on by default: the test arrives at the member's address.
    let r = member.call("send_test_notification", &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let mail = wait_until("the e-mail", 15, async || {
        sink.messages().into_iter().next()
    })
    .await;
    assert!(
        mail.contains("Subject: [Pier] Test notification from Pier"),
        "{mail}"
    );
    assert!(mail.contains("To: ada@example.com"), "{mail}");
    assert!(mail.contains("From: pier@example.com"), "{mail}");
    assert!(
        mail.contains("Pier's notifications reach you here"),
        "{mail}"
    );
    let d = wait_until("the delivery to be marked sent", 10, async || {
        let v = member.read("notifications").await.json();
        let d = v["deliveries"][0].clone();
        (d["status"] == "sent").then_some(d)
    })
    .await;
    assert_eq!(d["channel"], "email");

    // Switched off: nothing more to send to.
    let r = member
        .call("set_notifications", &[("webhook_url", "")])
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = member.call("send_test_notification", &[]).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);

    // The audit log names the mail server and whether a password was set, never one.
    app.pier.flush_audit().await;
    let summary: String = sqlx::query_scalar(
        "SELECT summary FROM audit_log WHERE action = 'settings.smtp' AND outcome = 'ok'",
    )
    .fetch_one(app.pier.db())
    .await
    .unwrap();
    assert!(
        summary.contains("127.0.0.1") && summary.contains("password kept"),
        "{summary}"
    );
}

async fn told(db: &SqlitePool, kind: &str) -> Vec<(i64, String)> {
    sqlx::query_as("SELECT user_id, body FROM notifications WHERE kind = ? ORDER BY id")
        .bind(kind)
        .fetch_all(db)
        .await
        .unwrap()
}

#[sqlx::test(migrations = "../migrations")]
async fn admins_hear_when_haproxy_stops(db: SqlitePool) {
    let app = TestApp::with_proxy(db.clone()).await;
    let admin = app.user_id(crate::common::ADMIN_EMAIL).await;
    pier::proxy::kill_pidfile(&app.proxy().files().pidfile);
    let rows = wait_until("the notification", 20, async || {
        let rows = told(&db, "proxy.down").await;
        (!rows.is_empty()).then_some(rows)
    })
    .await;
    assert_eq!(rows[0].0, admin);
    assert!(rows[0].1.contains("HAProxy"), "{}", rows[0].1);
}

#[sqlx::test(migrations = "../migrations")]
async fn nearly_used_quotas_and_nearly_full_disks_are_told_once(db: SqlitePool) {
    let app = TestApp::new(db.clone()).await;
    let mut ada = app.member("ada@example.com").await;
    let ada_id = app.user_id("ada@example.com").await;
    let admin_token = app.token(crate::common::ADMIN_EMAIL, "admin").await;
    let r = app
        .api(
            "PATCH",
            &format!("/users/{ada_id}"),
            Some(&admin_token),
            Some(serde_json::json!({ "max_apps": 1 })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(app.pier.notify_quotas_nearly_used().await.unwrap(), 0);
    let r = ada
        .call(
            "create_app",
            &[
                ("name", "web"),
                ("image", "127.0.0.1:9/nothing:1"),
                ("port", "8080"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    app.pier.notify_quotas_nearly_used().await.unwrap();
    app.pier.notify_quotas_nearly_used().await.unwrap();
    let rows = told(&db, "quota.nearly_used").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].0, ada_id);
    assert!(
        rows[0].1.contains("use 1 of your 1 apps quota"),
        "{}",
        rows[0].1
    );

    // A disk below the line (every disk is below 101 %): the admins, once a day.
    let dir = std::env::temp_dir();
    assert_eq!(
        pier::disk::check(&app.pier, &[dir.as_path()], 101, 0).await,
        1
    );
    pier::disk::check(&app.pier, &[dir.as_path()], 101, 0).await;
    assert_eq!(
        pier::disk::check(&app.pier, &[dir.as_path()], 0, 0).await,
        0
    );
    let rows = told(&db, "disk.low").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].0, app.user_id(crate::common::ADMIN_EMAIL).await);
}

#[sqlx::test(migrations = "../migrations")]
async fn the_rest_api_sets_channels_sends_tests_and_lists_deliveries(db: SqlitePool) {
    let app = TestApp::new(db).await;
    app.member("ada@example.com").await;
    let read = app.token("ada@example.com", "read").await;
    let write = app.token("ada@example.com", "write").await;
    let admin = app.token(crate::common::ADMIN_EMAIL, "admin").await;
    let (addr, got) = receiver(Arc::new(AtomicU16::new(200))).await;

    let r = app
        .api("POST", "/notifications/test", Some(&write), None)
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    let body = |url: &str| serde_json::json!({ "email": false, "webhook_url": url });
    let r = app
        .api(
            "PUT",
            "/notifications",
            Some(&write),
            Some(body("gopher://x")),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert!(!r.api_field("webhook_url").is_empty());
    let r = app
        .api(
            "PUT",
            "/notifications",
            Some(&read),
            Some(body("http://127.0.0.1:1/")),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let url = format!("http://{addr}/hook");
    let r = app
        .api("PUT", "/notifications", Some(&write), Some(body(&url)))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let secret = r.json()["webhook_secret"].as_str().unwrap().to_owned();
    // A read token sees where notifications go, not the secret.
    let r = app.api("GET", "/notifications", Some(&read), None).await;
    assert_eq!(r.json()["webhook_url"], url.as_str());
    assert_eq!(r.json()["webhook_secret"], serde_json::Value::Null);

    let r = app
        .api("POST", "/notifications/test", Some(&write), None)
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let (headers, body) = wait_until("the webhook", 15, async || {
        got.lock().unwrap().first().cloned()
    })
    .await;
    assert!(verify(&secret, &headers, &body));
    let list = wait_until("the delivery", 10, async || {
        let r = app
            .api(
                "GET",
                "/notifications/deliveries?limit=5",
                Some(&read),
                None,
            )
            .await;
        let v = r.json();
        (v[0]["status"] == "sent").then_some(v)
    })
    .await;
    assert_eq!(list[0]["kind"], "test");
    assert_eq!(list[0]["channel"], "webhook");

    // The mail server: admins only; absent until set; its password never comes back.
    let r = app.api("GET", "/settings/smtp", Some(&write), None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let r = app.api("GET", "/settings/smtp", Some(&admin), None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    let smtp = serde_json::json!({ "host": "127.0.0.1", "port": 2525, "security": "none",
        "username": "pier", "password": "mail-password-77", "from_address": "pier@example.com" });
    let r = app
        .api("PUT", "/settings/smtp", Some(&admin), Some(smtp))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["has_password"], true);
    assert!(!r.body.contains("mail-password-77"));
    let stored: String = sqlx::query_scalar("SELECT password FROM smtp_settings")
        .fetch_one(app.pier.db())
        .await
        .unwrap();
    assert!(!stored.contains("mail-password-77"));
    let r = app
        .api("DELETE", "/settings/smtp", Some(&admin), None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
}

/// The operator's list of notification hosts: nothing else, private or public.
#[sqlx::test(migrations = "../migrations")]
async fn only_the_operators_hosts_get_notifications_when_listed(db: SqlitePool) {
    let mut settings = crate::common::test_settings();
    settings.notify.allow_private_webhooks = false;
    settings.notify.hosts = vec!["127.0.0.1:9".into()];
    let app = TestApp::with_settings(db, settings).await;
    let mut b = app.admin().await;
    for (url, ok) in [
        ("http://127.0.0.1:9/hook", true),
        ("http://127.0.0.1:10/hook", false),
        ("https://hooks.example.com/", false),
    ] {
        let r = b.call("set_notifications", &[("webhook_url", url)]).await;
        assert_eq!(r.status == StatusCode::OK, ok, "{url}: {}", r.body);
        if !ok {
            assert!(r
                .field_error("webhook_url")
                .unwrap()
                .contains("only to 127.0.0.1:9"));
        }
    }
    let r = b
        .call(
            "set_smtp",
            &[
                ("host", "mail.example.com"),
                ("port", "587"),
                ("security", "starttls"),
                ("username", ""),
                ("password", ""),
                ("from_address", "pier@example.com"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert!(r.field_error("host").unwrap().contains("only to"));
}

#[sqlx::test(migrations = "../migrations")]
async fn an_overdue_scheduled_backup_is_told_once_per_missed_slot(db: SqlitePool) {
    let app = TestApp::new(db.clone()).await;
    let mut ada = app.member("ada@example.com").await;
    let ada_id = app.user_id("ada@example.com").await;
    let token = app.token("ada@example.com", "write").await;
    let r = ada
        .call(
            "create_app",
            &[
                ("name", "db"),
                ("image", "127.0.0.1:9/nothing:1"),
                ("port", "5432"),
                ("kind", "internal"),
                ("volumes[0][name]", "db-data"),
                ("volumes[0][path]", "/data"),
                ("volumes[0][size_mb]", "64"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // Hourly, at a minute 20 minutes ago: that slot passed with no snapshot.
    let minute = (pier_core::now() / 60 - 20).rem_euclid(60);
    let r = app
        .api(
            "PUT",
            "/apps/db/backup-policy",
            Some(&token),
            Some(serde_json::json!({ "schedule": "hourly", "at": format!("00:{minute:02}") })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // Set just now, the policy owes nothing yet.
    assert_eq!(app.pier.notify_overdue_backups().await.unwrap(), 0);
    // As if it had been set yesterday.
    sqlx::query("UPDATE backup_policies SET updated_at = 0")
        .execute(&db)
        .await
        .unwrap();
    assert_eq!(app.pier.notify_overdue_backups().await.unwrap(), 1);
    app.pier.notify_overdue_backups().await.unwrap();
    let rows = told(&db, "backup.overdue").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].0, ada_id);
    assert!(
        rows[0].1.starts_with("db was to be backed up at"),
        "{}",
        rows[0].1
    );
}

/// STARTTLS to a mail server whose certificate a private CA signed (`PIER_SMTP_CA_FILE`); the
/// server refuses mail without TLS, so a delivered message went encrypted.
#[sqlx::test(migrations = "../migrations")]
async fn e_mail_goes_over_starttls_trusting_the_operators_ca(db: SqlitePool) {
    let dir = std::env::temp_dir().join(format!("pier-test-smtp-tls-{}", free_addr().port()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=127.0.0.1"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .args(["-addext", "extendedKeyUsage=serverAuth"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl");
    assert!(made.success());
    let sink = SmtpSink::start_with(&[cert.as_path(), key.as_path()]);
    let mut settings = crate::common::test_settings();
    settings.notify.smtp_ca_file = Some(cert.clone());
    let app = TestApp::with_settings(db, settings).await;
    let mut admin = app.admin().await;
    let port = sink.port.to_string();
    let r = admin
        .call(
            "set_smtp",
            &[
                ("host", "127.0.0.1"),
                ("port", &port),
                ("security", "starttls"),
                ("username", ""),
                ("password", ""),
                ("from_address", "pier@example.com"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = admin.call("send_test_notification", &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let mail = wait_until("the e-mail", 20, async || {
        sink.messages().into_iter().next()
    })
    .await;
    assert!(
        mail.contains("Subject: [Pier] Test notification from Pier"),
        "{mail}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
