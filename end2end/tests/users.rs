//! The foundation's story in a real browser: the admin signs in, invites a member, the member
//! sets a password and signs in, cannot open the admin page, and is sent to sign-in at the next
//! click once the admin disables them.

use std::time::Duration;

use end2end::{Driver, Panel};
use fantoccini::{Client, Locator};

const ADMIN: &str = "admin@example.com";
const ADMIN_PW: &str = "admin password 123";
const MEMBER: &str = "member@example.com";
const MEMBER_PW: &str = "member password 456";
const WAIT: Duration = Duration::from_secs(20);

async fn wait_for(c: &Client, css: &str) -> fantoccini::elements::Element {
    c.wait()
        .at_most(WAIT)
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"))
}

async fn wait_for_path(c: &Client, path: &str) {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let url = c.current_url().await.unwrap();
        let here = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        };
        if here == path {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still at {here}, expected {path}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_for_text(c: &Client, css: &str, text: &str) {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        if let Ok(e) = c.find(Locator::Css(css)).await {
            if e.text().await.unwrap_or_default().contains(text) {
                return;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{css} never showed {text:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the wasm has hydrated the sign-in page: the show-password toggle only works then.
async fn wait_for_hydration(c: &Client) {
    let deadline = std::time::Instant::now() + WAIT;
    let password = wait_for(c, "#f-password").await;
    loop {
        assert_eq!(
            password.attr("type").await.unwrap().as_deref(),
            Some("password")
        );
        c.find(Locator::Css("[data-testid=toggle-password]"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
        if password.attr("type").await.unwrap().as_deref() == Some("text") {
            // Hydrated: the click changed the input. Put it back.
            c.find(Locator::Css("[data-testid=toggle-password]"))
                .await
                .unwrap()
                .click()
                .await
                .unwrap();
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the page never hydrated"
        );
    }
}

async fn sign_in(c: &Client, base: &str, email: &str, password: &str) {
    c.goto(&format!("{base}/login")).await.unwrap();
    wait_for_hydration(c).await;
    wait_for(c, "#f-email")
        .await
        .send_keys(email)
        .await
        .unwrap();
    c.find(Locator::Css("#f-password"))
        .await
        .unwrap()
        .send_keys(password)
        .await
        .unwrap();
    c.find(Locator::Css("form button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_path(c, "/").await;
    wait_for_text(c, "[data-testid=me]", email).await;
}

async fn story(base: String, admin: Client, member: Client) {
    let (admin, member) = (&admin, &member);
    let url = |p: &str| format!("{base}{p}");
    // A wrong password is refused on the page, with the form still there.
    admin.goto(&url("/login")).await.unwrap();
    wait_for_hydration(admin).await;
    wait_for(admin, "#f-email")
        .await
        .send_keys(ADMIN)
        .await
        .unwrap();
    admin
        .find(Locator::Css("#f-password"))
        .await
        .unwrap()
        .send_keys("not my password")
        .await
        .unwrap();
    admin
        .find(Locator::Css("form button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_text(admin, "[data-flash=error]", "Wrong email or password").await;

    sign_in(admin, &base, ADMIN, ADMIN_PW).await;
    wait_for_text(admin, "h1", "Your apps").await;

    // The admin adds a member, who gets an invite link.
    admin
        .find(Locator::LinkText("Users"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_path(admin, "/admin/users").await;
    wait_for(admin, "#f-email")
        .await
        .send_keys(MEMBER)
        .await
        .unwrap();
    let create = admin
        .find(Locator::XPath("//button[normalize-space()='Add person']"))
        .await
        .unwrap();
    create.click().await.unwrap();
    let link = wait_for(
        admin,
        "[data-testid=create-outcome] input[data-testid=link]",
    )
    .await;
    let invite = link.prop("value").await.unwrap().expect("an invite link");
    assert!(invite.contains("/invite/"), "{invite}");
    wait_for(admin, &format!("tr[data-email='{MEMBER}']")).await;

    // The member chooses a password through the link, then signs in.
    member.goto(&invite).await.unwrap();
    wait_for_text(member, "[data-testid=invite-email]", MEMBER).await;
    // Hydration: the first submit must go through the wasm ActionForm (it navigates on success).
    tokio::time::sleep(Duration::from_millis(500)).await;
    wait_for(member, "#f-password")
        .await
        .send_keys(MEMBER_PW)
        .await
        .unwrap();
    member
        .find(Locator::Css("#f-confirm"))
        .await
        .unwrap()
        .send_keys(MEMBER_PW)
        .await
        .unwrap();
    member
        .find(Locator::Css("form button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_path(member, "/login?notice=password-set").await;
    wait_for_text(member, "[data-flash=info]", "Your password is set").await;
    sign_in(member, &base, MEMBER, MEMBER_PW).await;

    // Members have no way into the admin page.
    assert!(member.find(Locator::LinkText("Users")).await.is_err());
    member.goto(&url("/admin/users")).await.unwrap();
    wait_for_text(member, "h1", "Admins only").await;
    assert!(!member.source().await.unwrap().contains(ADMIN));
    member
        .find(Locator::LinkText("Apps"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_path(member, "/").await;

    // The admin disables the member…
    admin.refresh().await.unwrap();
    let toggle = wait_for(
        admin,
        &format!("tr[data-email='{MEMBER}'] button[data-action=toggle-disabled]"),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    toggle.click().await.unwrap();
    wait_for_text(
        admin,
        "[data-testid=row-outcome]",
        "their sessions have ended",
    )
    .await;

    // …and the member's next click lands on the sign-in page.
    member
        .find(Locator::LinkText("Account"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_path(member, "/login?next=/account").await;
    wait_for(member, "#f-email").await;
}

#[tokio::test]
async fn admin_invites_member_then_disables_them() {
    let panel = Panel::start(ADMIN, ADMIN_PW);
    let driver = Driver::start();
    let admin = driver.browser().await;
    let member = driver.browser().await;
    // The story runs in its own task so that a failed assertion still lets both browsers close.
    let outcome = tokio::spawn(story(panel.url(""), admin.clone(), member.clone())).await;
    if outcome.is_err() {
        // What each browser showed when the story failed, for whoever reads the CI log.
        for (name, c) in [("admin", &admin), ("member", &member)] {
            let path = std::env::temp_dir().join(format!("pier-e2e-{name}.png"));
            if let Ok(png) = c.screenshot().await {
                let _ = std::fs::write(&path, png);
                eprintln!("screenshot of the {name} browser: {}", path.display());
            }
            if let Ok(url) = c.current_url().await {
                eprintln!("{name} browser was at {url}");
            }
        }
    }
    let _ = admin.close().await;
    let _ = member.close().await;
    drop(driver);
    drop(panel);
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}
