//! A real app in a real browser: PostgreSQL as an internal app with a volume, and a web app
//! that uses it by name; the web app shows its data, and the data survives a redeploy of the
//! database (which stops first, because it has a volume).

use std::time::Duration;

use end2end::{test_registry, ui::*, Driver, Panel};
use fantoccini::Locator;

const ADMIN: &str = "admin@example.com";
const ADMIN_PW: &str = "admin password 123";

/// The loopback port the app page says the app answers on.
async fn app_port(c: &fantoccini::Client) -> u16 {
    let text = wait_for(c, "h1 + p + p").await.text().await.unwrap();
    text.rsplit("127.0.0.1:")
        .next()
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("no port in {text:?}"))
}

fn post_note(port: u16, text: &str) -> u16 {
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "10",
        ])
        .args(["--data", &format!("text={text}")])
        .arg(format!("http://127.0.0.1:{port}/notes"))
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).parse().unwrap_or(0)
}

#[tokio::test]
async fn postgres_with_a_volume_serves_a_web_app_across_a_redeploy() {
    let (registry, _, _) = test_registry();
    let panel = Panel::start(ADMIN, ADMIN_PW);
    // Redis for the web app's visit counter, over the API (the browser part is Postgres).
    let token = panel.token(ADMIN, "write");
    panel.log_in_to_test_registry(&token);
    let (code, body) = panel.api(
        &token,
        "POST",
        "/apps",
        Some(&format!(
            r#"{{"name":"cache","image":"{registry}/pier-test/redis:1","port":6379,"kind":"internal"}}"#
        )),
    );
    assert_eq!(code, 201, "{body}");

    let driver = Driver::start();
    let c = driver.browser().await;
    let base = panel.url("");
    let result = async {
        sign_in_as(&c, &base, ADMIN, ADMIN_PW).await;

        // PostgreSQL: internal, a secret password, a 256 MiB volume for its data.
        open(&c, &format!("{base}/apps/new")).await;
        type_into(&c, "#f-name", "db").await;
        type_into(&c, "#f-image", &format!("{registry}/pier-test/postgres:1")).await;
        type_into(&c, "#f-port", "5432").await;
        wait_for(&c, "#f-kind")
            .await
            .select_by_value("internal")
            .await
            .unwrap();
        type_into(&c, "input[name='env[0][name]']", "POSTGRES_PASSWORD").await;
        type_into(&c, "input[name='env[0][value]']", "browser-pg-pass").await;
        click(&c, "input[name='env[0][secret]']").await;
        click(&c, "[data-testid=add-volume]").await;
        type_into(&c, "input[name='volumes[0][name]']", "db-data").await;
        type_into(
            &c,
            "input[name='volumes[0][path]']",
            "/var/lib/postgresql/data",
        )
        .await;
        type_into(&c, "input[name='volumes[0][size_mb]']", "256").await;
        click(&c, "[data-testid=create-app]").await;
        wait_for_path(&c, "/apps/db").await;
        wait_for_text_within(
            &c,
            "[data-testid=app-state]",
            "running",
            Duration::from_secs(120),
        )
        .await;
        wait_for_text(&c, "[data-testid=app-internal]", "db:5432").await;
        wait_for_text(&c, "[data-testid=app-volumes]", "db-data").await;

        // The web app, reaching the database by its name.
        open(&c, &format!("{base}/apps/new")).await;
        type_into(&c, "#f-name", "notes").await;
        type_into(&c, "#f-image", &format!("{registry}/pier-test/notes:1")).await;
        type_into(&c, "#f-port", "8080").await;
        type_into(&c, "#f-health_path", "/healthz").await;
        type_into(&c, "input[name='env[0][name]']", "DATABASE_URL").await;
        type_into(
            &c,
            "input[name='env[0][value]']",
            "postgres://postgres:browser-pg-pass@db:5432/postgres",
        )
        .await;
        type_into(&c, "input[name='env[1][name]']", "REDIS_URL").await;
        type_into(&c, "input[name='env[1][value]']", "redis://cache:6379/0").await;
        click(&c, "[data-testid=create-app]").await;
        wait_for_path(&c, "/apps/notes").await;
        wait_for_text_within(
            &c,
            "[data-testid=app-state]",
            "running",
            Duration::from_secs(90),
        )
        .await;
        let port = app_port(&c).await;
        assert_eq!(post_note(port, "written-in-the-browser-test"), 201);

        // The web app shows the row.
        c.goto(&format!("http://127.0.0.1:{port}/")).await.unwrap();
        let page = c
            .find(Locator::Css("body"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(page.contains("written-in-the-browser-test"), "{page}");

        // Redeploy the database from its page: it stops first, then serves #2 with the data.
        open(&c, &format!("{base}/apps/db")).await;
        click(&c, "[data-testid=action-redeploy]").await;
        wait_for_text_within(
            &c,
            "h1 + p + p",
            "Serving deployment #2",
            Duration::from_secs(120),
        )
        .await;
        wait_for_text_within(
            &c,
            "#volumes-title + p",
            "without a container for",
            Duration::from_secs(10),
        )
        .await;
        let mut shown = String::new();
        for _ in 0..40 {
            c.goto(&format!("http://127.0.0.1:{port}/")).await.unwrap();
            shown = c
                .find(Locator::Css("body"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            if shown.contains("written-in-the-browser-test") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        assert!(shown.contains("written-in-the-browser-test"), "{shown}");

        // The Volumes page lists it with its usage.
        open(&c, &format!("{base}/volumes")).await;
        wait_for_text(&c, "[data-testid=volumes]", "db-data").await;
        wait_for_text(&c, "[data-testid=volumes]", "MiB used").await;
    }
    .await;
    let _ = c.close().await;
    result
}
