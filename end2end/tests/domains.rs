//! A tenant adds a domain in the browser, attaches it to their app, watches its certificate go
//! from pending to valid (issued by pebble, the ACME test CA, on loopback), and opens it over
//! HTTPS through the panel's own HAProxy (chromium maps *.pier.test to 127.0.0.1).

use std::time::Duration;

use end2end::{pebble::Pebble, test_dns, test_registry, ui::*, Acme, Driver, Panel};

const ADMIN: &str = "admin@example.com";
const ADMIN_PW: &str = "admin password 123";

#[tokio::test]
async fn add_a_domain_attach_it_and_open_the_app_over_https() {
    let (registry, _, _) = test_registry();
    let pebble = Pebble::start(end2end::free_port(), test_dns());
    let panel = Panel::start_with_acme(ADMIN, ADMIN_PW, Acme { pebble: &pebble });
    // The app and the registry login through the REST API; the domain through the browser.
    let token = panel.token(ADMIN, "write");
    panel.log_in_to_test_registry(&token);
    let (s, body) = panel.api(
        &token,
        "POST",
        "/apps",
        Some(&format!(
            r#"{{"name":"shop","image":"{registry}/pier-test/hello:1","port":8080,"env":{{"GREETING":"welcome to the shop"}},"health_path":"/healthz"}}"#
        )),
    );
    assert_eq!(s, 201, "{body}");

    let driver = Driver::start();
    let c = driver.browser().await;
    let base = panel.url("");
    let result = async {
        sign_in_as(&c, &base, ADMIN, ADMIN_PW).await;
        wait_for(&c, "body[data-hydrated]").await;
        click_link(&c, "Domains").await;
        wait_for_path(&c, "/domains").await;
        wait_for(&c, "body[data-hydrated]").await;
        // A bad name is refused with a message, and nothing is added.
        type_into(&c, "#f-domain", "not a domain").await;
        click(&c, "[data-testid=add-domain]").await;
        wait_for_text(&c, "main", "is not a domain name").await;
        let field = wait_for(&c, "#f-domain").await;
        field.clear().await.unwrap();
        field.send_keys("Shop.Pier.Test").await.unwrap();
        c.find(fantoccini::Locator::Css("select[name=app]"))
            .await
            .unwrap()
            .select_by_value("shop")
            .await
            .unwrap();
        click(&c, "[data-testid=add-domain]").await;
        wait_for_text(&c, "[data-testid=domains]", "shop.pier.test").await;
        // It serves once the app runs, and its certificate goes from pending to valid.
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        let mut seen: Vec<String> = Vec::new();
        loop {
            open(&c, &format!("{base}/domains")).await;
            let text = wait_for(&c, "[data-testid=domain-state]")
                .await
                .text()
                .await
                .unwrap();
            if seen.last() != Some(&text) {
                seen.push(text.clone());
            }
            if text.starts_with("serving") && text.contains("valid until") {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "never served with a certificate: {seen:?}"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        println!("domain states seen: {seen:?}");

        // Open the domain over HTTPS, through HAProxy.
        // Another browser for the sites themselves: it accepts the self-signed certificate.
        let sites = driver.browser_for_test_domains().await;
        site_shows(
            &sites,
            &format!("https://shop.pier.test:{}/", panel.https_port),
            "welcome to the shop",
        )
        .await;
        // The platform name answers too.
        site_shows(
            &sites,
            &format!("https://shop-admin.apps.pier.test:{}/", panel.https_port),
            "welcome to the shop",
        )
        .await;
        // An unknown name gets HAProxy's page.
        site_shows(
            &sites,
            &format!("https://nothing.pier.test:{}/", panel.https_port),
            "No site is served at this address.",
        )
        .await;

        // Detach in the browser: the domain stops serving.
        open(&c, &format!("{base}/domains")).await;
        wait_for(&c, "body[data-hydrated]").await;
        c.find(fantoccini::Locator::Css(
            "[data-testid=domain-row] select[name=app]",
        ))
        .await
        .unwrap()
        .select_by_value("")
        .await
        .unwrap();
        click(&c, "[data-testid=attach-domain]").await;
        wait_for_text(&c, "main", "is detached").await;
        site_shows(
            &sites,
            &format!("https://shop.pier.test:{}/", panel.https_port),
            "No site is served at this address.",
        )
        .await;
        sites.close().await.unwrap();
    }
    .await;
    c.close().await.unwrap();
    result
}

/// Opens `url` in the sites' browser until its page shows `text` (up to 20 s). Loaded again
/// each time: a load the browser gave up on (HAProxy reloading, or chromium's
/// `ERR_NETWORK_CHANGED` when a container starts beside it) does not end the test.
async fn site_shows(sites: &fantoccini::Client, url: &str, text: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        sites.goto(url).await.unwrap();
        let body = match sites.find(fantoccini::Locator::Css("body")).await {
            Ok(b) => b.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if body.contains(text) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{url} never showed {text:?}; it shows:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
