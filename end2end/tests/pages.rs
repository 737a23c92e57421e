//! Every page of the panel works in a browser, whether it is the first one loaded (server HTML,
//! then hydrated once its chunk of wasm has arrived) or reached by a click (its chunk fetched
//! then). A page whose server HTML differs from what the browser's code renders (for example
//! markup the browser's parser rearranges) stops hydrating: the body never gets marked.

use end2end::{test_registry, ui::*, Driver, Panel};
use fantoccini::Locator;

const ADMIN: &str = "admin@example.com";
const ADMIN_PW: &str = "admin password 123";

/// Every signed-in page, with text it shows once rendered.
const PAGES: &[(&str, &str)] = &[
    ("/", "Your apps"),
    ("/apps/new", "New app"),
    ("/apps/shop", "shop"),
    ("/registries", "Registry logins"),
    ("/volumes", "Volumes"),
    ("/domains", "Domains"),
    ("/account", "Account"),
    ("/account/two-factor", "Two-factor sign-in"),
    ("/api-docs", "API reference"),
    ("/admin/users", "Users"),
    ("/admin/certificates", "Certificates"),
    ("/admin/audit", "Audit log"),
];

#[tokio::test]
async fn every_page_hydrates_loaded_first_or_reached_by_a_click() {
    let (registry, _, _) = test_registry();
    let panel = Panel::start(ADMIN, ADMIN_PW);
    // Something on the pages: a registry login and an app with a volume.
    let token = panel.token(ADMIN, "write");
    panel.log_in_to_test_registry(&token);
    let (s, body) = panel.api(
        &token,
        "POST",
        "/apps",
        Some(&format!(
            r#"{{"name":"shop","image":"{registry}/pier-test/hello:1","port":8080,"volumes":[{{"name":"shop-data","path":"/data","size_mb":16}}]}}"#
        )),
    );
    assert_eq!(s, 201, "{body}");

    let driver = Driver::start();
    let c = driver.browser().await;
    let base = panel.url("");
    let result = async {
        // Signed out: the sign-in page, and an invitation that does not exist.
        open(&c, &format!("{base}/login")).await;
        // The sign-in page loaded the main wasm and the chunk of the signed-out pages only.
        assert_eq!(chunks(&c).await, ["split_pier_entry"]);
        open(&c, &format!("{base}/invite/no-such-invitation")).await;
        wait_for_text(&c, "main h1", "Choose your password").await;

        sign_in_as(&c, &base, ADMIN, ADMIN_PW).await;
        // Each page as the first one loaded: `open` waits until it is hydrated.
        for (path, text) in PAGES {
            open(&c, &format!("{base}{path}")).await;
            wait_for_text(&c, "main h1", text).await;
        }
        open(&c, &format!("{base}/no-such-page")).await;
        wait_for_text(&c, "main h1", "Page not found").await;

        // Each page reached from the navigation, in a browser that has loaded none of their
        // chunks yet (a new profile), signed in again.
        let fresh = driver.browser().await;
        sign_in_as(&fresh, &base, ADMIN, ADMIN_PW).await;
        wait_for_text(&fresh, "main h1", "Your apps").await;
        // Signing in loaded the apps page from the server: its chunk was preloaded.
        assert_eq!(chunks(&fresh).await, ["split_pier_lists"]);
        for (link, text) in [
            ("Domains", "Domains"),
            ("Volumes", "Volumes"),
            ("Registries", "Registry logins"),
            ("Account", "Account"),
            ("API", "API reference"),
            ("Users", "Users"),
            ("Certificates", "Certificates"),
            ("Audit log", "Audit log"),
            ("Apps", "Your apps"),
        ] {
            click_link(&fresh, link).await;
            wait_for_text(&fresh, "main h1", text).await;
        }
        fresh
            .find(Locator::Css("a[href='/apps/shop']"))
            .await
            .expect("the app in the list")
            .click()
            .await
            .unwrap();
        wait_for_text(&fresh, "main h1", "shop").await;
        // Each chunk was fetched once, when a page of it was first shown.
        assert_eq!(
            chunks(&fresh).await,
            [
                "split_pier_lists",
                "split_pier_account",
                "split_pier_admin",
                "split_pier_app"
            ]
        );
        let _ = fresh.close().await;

        // A chunk whose first fetch fails (browsers abort requests in flight when the network
        // changes) is fetched again: the page still hydrates.
        end2end::cdp(&c, "Network.enable", serde_json::json!({})).await;
        block(&c, &["*split_pier_account*"]).await;
        let _ = end2end::browser_log(&c).await;
        c.goto(&format!("{base}/account")).await.unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut seen = Vec::new();
        // The chunks' loader says so in the console (the blocked request itself is not logged).
        while !seen.iter().any(|m: &String| m.contains("Failed to fetch")) {
            assert!(
                std::time::Instant::now() < deadline,
                "the blocked chunk was never asked for: {seen:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            seen.extend(end2end::browser_log(&c).await);
        }
        block(&c, &[]).await;
        wait_for(&c, "body[data-hydrated]").await;
        wait_for_text(&c, "main h1", "Account").await;

        // A chunk that cannot be fetched (the network failed, or a tab opened before an upgrade
        // asks for a file of the old build): the page is loaded from the server instead.
        open(&c, &format!("{base}/")).await;
        block(&c, &["*split_pier_admin*"]).await;
        click_link(&c, "Users").await;
        wait_for_path(&c, "/admin/users").await;
        wait_for_text(&c, "main h1", "Users").await;
        let reloaded = c
            .execute(
                "return performance.getEntriesByType('navigation')[0].name",
                vec![],
            )
            .await
            .unwrap();
        assert!(
            reloaded
                .as_str()
                .is_some_and(|u| u.ends_with("/admin/users")),
            "the page was not loaded from the server: {reloaded}"
        );
    }
    .await;
    let _ = c.close().await;
    result
}

/// The pages' wasm chunks this page has fetched so far, in order (`split_pier_<group>`, without
/// the content hash), from the browser's resource timing; each once: a chunk whose load failed
/// is fetched again (`retried` in app/src/routes.rs), which CI once saw on the sign-in page.
async fn chunks(c: &fantoccini::Client) -> Vec<String> {
    let names = c
        .execute(
            "return [...new Set(performance.getEntriesByType('resource')
                .map(e => new URL(e.name).pathname.split('/').pop())
                .filter(n => n.startsWith('split_pier_'))
                .map(n => n.split('.')[0]))];",
            vec![],
        )
        .await
        .unwrap();
    serde_json::from_value(names).unwrap()
}

/// Makes the browser refuse requests to these URL patterns (none: allow all again).
async fn block(c: &fantoccini::Client, urls: &[&str]) {
    end2end::cdp(
        c,
        "Network.setBlockedURLs",
        serde_json::json!({ "urls": urls }),
    )
    .await;
}
