//! A tenant's first app in a real browser: save a registry login, create an app from the form,
//! watch it reach Running, read its live logs and its answer, then delete it.

use std::time::Duration;

use end2end::{http_status, test_registry, ui::*, Driver, Panel};
use fantoccini::Locator;

const ADMIN: &str = "admin@example.com";
const ADMIN_PW: &str = "admin password 123";

#[tokio::test]
async fn create_an_app_see_it_run_and_read_its_logs() {
    let (registry, user, password) = test_registry();
    let panel = Panel::start(ADMIN, ADMIN_PW);
    let driver = Driver::start();
    let c = driver.browser().await;
    let base = panel.url("");
    let result = async {
        sign_in_as(&c, &base, ADMIN, ADMIN_PW).await;
        wait_for(&c, "[data-testid=apps-empty]").await;

        // A registry login (the test registry wants one).
        open(&c, &format!("{base}/registries")).await;
        type_into(&c, "#f-registry", &registry).await;
        type_into(&c, "#f-username", &user).await;
        type_into(&c, "#f-password", &password).await;
        click(&c, "[data-testid=save-registry]").await;
        wait_for_text_within(
            &c,
            "[data-testid=registries]",
            &registry,
            Duration::from_secs(10),
        )
        .await;

        // The create form, with an env var in the first row.
        open(&c, &format!("{base}/")).await;
        click(&c, "[data-testid=new-app]").await;
        wait_for_path(&c, "/apps/new").await;
        wait_for(&c, "body[data-hydrated]").await;
        type_into(&c, "#f-name", "web").await;
        type_into(&c, "#f-image", &format!("{registry}/pier-test/hello:1")).await;
        type_into(&c, "#f-port", "8080").await;
        type_into(&c, "input[name='env[0][name]']", "GREETING").await;
        type_into(&c, "input[name='env[0][value]']", "hello from the browser").await;
        // Rows can be added on the page (hydrated).
        let before = c
            .find_all(Locator::Css("[data-testid=env-row]"))
            .await
            .unwrap()
            .len();
        c.find(Locator::XPath("//button[normalize-space()='Add variable']"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let after = c
            .find_all(Locator::Css("[data-testid=env-row]"))
            .await
            .unwrap()
            .len();
        assert_eq!(after, before + 1);
        click(&c, "[data-testid=create-app]").await;

        // Its page: deploying, then running.
        wait_for_path(&c, "/apps/web").await;
        wait_for_text_within(
            &c,
            "[data-testid=app-state]",
            "running",
            Duration::from_secs(90),
        )
        .await;
        wait_for_text_within(
            &c,
            "[data-testid=logs]",
            "serving on port 8080",
            Duration::from_secs(30),
        )
        .await;
        wait_for_text(&c, "[data-testid=logs-status]", "Live").await;

        // It answers on its loopback port with the env var from the form.
        let text = c
            .find(Locator::Css("h1 + p + p"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let port: u16 = text
            .rsplit("127.0.0.1:")
            .next()
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("no port in {text:?}"));
        assert_eq!(http_status(port, "/"), Some(200));
        // A request shows up in the live log.
        wait_for_text_within(
            &c,
            "[data-testid=logs]",
            "response:200",
            Duration::from_secs(15),
        )
        .await;
        wait_for_text(&c, "[data-testid=deployments]", "#1 · created").await;

        // Image updates: the registry's digest for the tag is the one running.
        click(&c, "[data-testid=check-update]").await;
        wait_for_text(
            &c,
            "[data-testid=image-updates] [data-flash=success]",
            "Up to date",
        )
        .await;
        let running = wait_for(&c, "[data-testid=serving-digest]")
            .await
            .text()
            .await
            .unwrap();
        assert!(running.starts_with("sha256:"), "{running}");
        wait_for_text(&c, "[data-testid=remote-digest]", &running).await;

        // Change the env var in the settings form; what is typed survives the page's status
        // refreshes (every 2 s), and saving rolls out deployment #2.
        let value = wait_for(&c, "input[name='env[0][value]']").await;
        value.clear().await.unwrap();
        value.send_keys("changed in the browser").await.unwrap();
        tokio::time::sleep(Duration::from_secs(3)).await;
        let kept = wait_for(&c, "input[name='env[0][value]']")
            .await
            .prop("value")
            .await
            .unwrap();
        assert_eq!(kept.as_deref(), Some("changed in the browser"));
        // And two copies instead of one.
        let replicas = wait_for(&c, "#f-replicas").await;
        replicas.clear().await.unwrap();
        replicas.send_keys("2").await.unwrap();
        click(&c, "[data-testid=save-settings]").await;
        wait_for_text_within(
            &c,
            "[data-testid=deployments]",
            "#2 · settings changed",
            Duration::from_secs(10),
        )
        .await;
        wait_for_text_within(
            &c,
            "h1 + p + p",
            "Serving deployment #2",
            Duration::from_secs(60),
        )
        .await;
        // The page says so, and where each copy answers.
        wait_for_text_within(
            &c,
            "[data-testid=app-replicas]",
            "2 replicas",
            Duration::from_secs(15),
        )
        .await;
        wait_for_text_within(
            &c,
            "[data-testid=app-copies]",
            "Copy 2: running at 127.0.0.1:",
            Duration::from_secs(15),
        )
        .await;

        // Delete, with confirmation.
        c.find(Locator::XPath(
            "//summary[normalize-space()='Delete this app']",
        ))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
        click(&c, "[data-testid=action-delete]").await;
        wait_for_path(&c, "/").await;
        wait_for(&c, "[data-testid=apps-empty]").await;
    }
    .await;
    let _ = c.close().await;
    result
}
