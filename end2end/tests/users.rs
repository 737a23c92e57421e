//! The foundation's story in a real browser: the admin signs in, invites a member, the member
//! sets a password and signs in, cannot open the admin page, and is sent to sign-in at the next
//! click once the admin disables them.

use std::time::{Duration, Instant};

use end2end::{totp, ui::*, Driver, Panel};
use fantoccini::{Client, Locator};

const ADMIN: &str = "admin@example.com";
const ADMIN_PW: &str = "admin password 123";
const MEMBER: &str = "member@example.com";
const MEMBER_PW: &str = "member password 456";
/// The show-password toggle works only with the wasm loaded: proof that hydration ran.
async fn toggle_password_visibility(c: &Client) {
    let password = wait_for(c, "#f-password").await;
    assert_eq!(
        password.attr("type").await.unwrap().as_deref(),
        Some("password")
    );
    click(c, "[data-testid=toggle-password]").await;
    let deadline = Instant::now() + WAIT;
    while password.attr("type").await.unwrap().as_deref() != Some("text") {
        assert!(
            Instant::now() < deadline,
            "the show-password toggle did nothing"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    click(c, "[data-testid=toggle-password]").await;
}

async fn submit_sign_in(c: &Client, base: &str, email: &str, password: &str) {
    open(c, &format!("{base}/login")).await;
    toggle_password_visibility(c).await;
    type_into(c, "#f-email", email).await;
    type_into(c, "#f-password", password).await;
    click(c, "form button[type=submit]").await;
}

async fn sign_in(c: &Client, base: &str, email: &str, password: &str) {
    submit_sign_in(c, base, email, password).await;
    wait_for_path(c, "/").await;
    wait_for_text(c, "[data-testid=me]", email).await;
}

async fn story(base: String, admin: Client, member: Client) {
    let (admin, member) = (&admin, &member);
    let url = |p: &str| format!("{base}{p}");

    // A wrong password is refused on the page, with the form still there.
    submit_sign_in(admin, &base, ADMIN, "not my password").await;
    wait_for_text(admin, "[data-flash=error]", "Wrong email or password").await;
    wait_for_path(admin, "/login").await;

    sign_in(admin, &base, ADMIN, ADMIN_PW).await;
    wait_for_text(admin, "h1", "Your apps").await;

    // The admin adds a member, who gets an invite link.
    click_link(admin, "Users").await;
    wait_for_path(admin, "/admin/users").await;
    type_into(admin, "#f-email", MEMBER).await;
    admin
        .find(Locator::XPath("//button[normalize-space()='Add person']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let link = wait_for(
        admin,
        "[data-testid=create-outcome] input[data-testid=link]",
    )
    .await;
    let invite = link.prop("value").await.unwrap().expect("an invite link");
    assert!(invite.contains("/invite/"), "{invite}");
    wait_for(admin, &format!("tr[data-email='{MEMBER}']")).await;

    // The member chooses a password through the link, then signs in.
    open(member, &invite).await;
    wait_for_text(member, "[data-testid=invite-email]", MEMBER).await;
    type_into(member, "#f-password", MEMBER_PW).await;
    type_into(member, "#f-confirm", MEMBER_PW).await;
    click(member, "form button[type=submit]").await;
    wait_for_path(member, "/login?notice=password-set").await;
    wait_for_text(member, "[data-flash=info]", "Your password is set").await;
    sign_in(member, &base, MEMBER, MEMBER_PW).await;

    // The member makes an API token; it is shown once.
    click_link(member, "Account").await;
    wait_for_path(member, "/account").await;
    type_into(member, "input[name=name]", "laptop").await;
    member
        .find(Locator::XPath("//button[normalize-space()='Create token']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let secret = wait_for(
        member,
        "[data-testid=token-outcome] input[data-testid=link]",
    )
    .await;
    let secret = secret.prop("value").await.unwrap().unwrap_or_default();
    assert!(secret.starts_with("pier_"), "{secret}");
    wait_for_text(member, "[data-testid=tokens]", "laptop").await;

    // The account page lists what the member did: the token, the sign-in before it.
    click(member, "[data-testid=activity-refresh]").await;
    wait_for(
        member,
        "[data-testid=audit-entries] tr[data-action='token.create']",
    )
    .await;
    wait_for_text(member, "[data-testid=audit-entries]", "account.sign_in").await;
    wait_for_text(member, "[data-testid=audit-entries]", "scope write").await;

    // The member turns on two-factor sign-in: the key from the page into "their app", a code
    // back, ten recovery codes shown once.
    click_link(member, "Manage").await;
    wait_for_path(member, "/account/two-factor").await;
    wait_for_text(member, "[data-testid=two-factor-state]", "off").await;
    click(member, "[data-testid=begin-two-factor]").await;
    wait_for(member, "[role=img] svg").await;
    let key = wait_for(member, "[data-testid=totp-secret]")
        .await
        .text()
        .await
        .unwrap();
    let setup_step = totp::step_now();
    type_into(member, "#f-confirm-code", &totp::code(&key, setup_step)).await;
    member
        .find(Locator::XPath(
            "//button[normalize-space()='Turn on two-factor sign-in']",
        ))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(member, "[data-testid=recovery-codes]").await;
    let codes = member
        .find_all(Locator::Css("[data-testid=recovery-codes] li"))
        .await
        .unwrap();
    assert_eq!(codes.len(), 10);
    wait_for_text(
        member,
        "[data-testid=two-factor-state]",
        "10 recovery codes left",
    )
    .await;
    click(member, "[data-testid=codes-saved]").await;
    wait_for_path(member, "/account").await;
    wait_for_text(
        member,
        "[data-testid=two-factor-summary]",
        "On: an authenticator app",
    )
    .await;

    // Signing in now takes the password, then a code (a fresh one: each is good once).
    member
        .find(Locator::XPath("//button[normalize-space()='Sign out']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_path(member, "/login?notice=signed-out").await;
    submit_sign_in(member, &base, MEMBER, MEMBER_PW).await;
    wait_for_text(member, "h1", "Two-factor sign-in").await;
    type_into(member, "#f-code", &totp::code(&key, setup_step + 1)).await;
    click(member, "form button[type=submit]").await;
    wait_for_path(member, "/").await;
    wait_for_text(member, "[data-testid=me]", MEMBER).await;

    // Notifications: a webhook that does not answer; the test's failed attempt is shown.
    click_link(member, "Account").await;
    wait_for_path(member, "/account").await;
    type_into(member, "#f-webhook_url", "http://127.0.0.1:9/hook").await;
    member
        .find(Locator::XPath(
            "//section[@aria-labelledby='notify-title']//button[normalize-space()='Save']",
        ))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let secret = wait_for(member, "[data-testid=webhook-secret]").await;
    let secret = secret.prop("value").await.unwrap().unwrap_or_default();
    assert!(secret.starts_with("whsec_"), "{secret}");
    click(member, "[data-testid=send-test]").await;
    let deadline = Instant::now() + WAIT;
    loop {
        click(member, "[data-testid=deliveries-refresh]").await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let rows = member
            .find_all(Locator::Css("[data-testid=deliveries] tr[data-kind=test]"))
            .await
            .unwrap();
        let mut text = String::new();
        for r in &rows {
            text.push_str(&r.text().await.unwrap_or_default());
        }
        if text.contains("retrying") && text.contains("could not connect") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no failed attempt shown: {text:?}"
        );
    }

    // The link works once.
    open(admin, &invite).await;
    wait_for_text(admin, "[data-flash=error]", "already used").await;

    // Members have no way into the admin page.
    assert!(member.find(Locator::LinkText("Users")).await.is_err());
    open(member, &url("/admin/users")).await;
    wait_for_text(member, "h1", "Admins only").await;
    assert!(!member.source().await.unwrap().contains(ADMIN));
    open(member, &url("/admin/audit")).await;
    wait_for_text(member, "h1", "Admins only").await;
    click_link(member, "Apps").await;
    wait_for_path(member, "/").await;

    // The admin's audit log has everyone's entries: their own failed sign-in, the member's
    // token. Filtering by an action narrows it, in the address too.
    open(admin, &url("/admin/users")).await;
    click_link(admin, "Audit log").await;
    wait_for_path(admin, "/admin/audit").await;
    wait_for_text(admin, "[data-testid=audit-entries]", "bad_credentials").await;
    wait_for_text(admin, "[data-testid=audit-entries]", "laptop").await;
    admin
        .find(Locator::Css(
            "select[name=action] option[value='user.create']",
        ))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    click(admin, "[data-testid=audit-filters] button[type=submit]").await;
    wait_for_text(admin, "[data-testid=audit-entries]", MEMBER).await;
    let deadline = Instant::now() + WAIT;
    loop {
        let rows = admin
            .find_all(Locator::Css("[data-testid=audit-entry]"))
            .await
            .unwrap();
        let mut actions = Vec::new();
        for r in &rows {
            actions.push(r.attr("data-action").await.unwrap().unwrap_or_default());
        }
        if !actions.is_empty() && actions.iter().all(|a| a == "user.create") {
            break;
        }
        assert!(Instant::now() < deadline, "filter left {actions:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The filter is in the address: the page can be bookmarked or shared.
    let here = admin.current_url().await.unwrap();
    assert!(
        here.query()
            .is_some_and(|q| q.contains("action=user.create")),
        "{here}"
    );

    // The admin disables the member…
    open(admin, &url("/admin/users")).await;
    click(
        admin,
        &format!("tr[data-email='{MEMBER}'] button[data-action=toggle-disabled]"),
    )
    .await;
    wait_for_text(
        admin,
        "[data-testid=row-outcome]",
        "their sessions have ended",
    )
    .await;
    wait_for_text(admin, &format!("tr[data-email='{MEMBER}']"), "disabled").await;

    // …and the member's next click lands on the sign-in page.
    click_link(member, "Account").await;
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

/// Passkeys in chromium with WebDriver's virtual authenticator: the admin adds one (their first
/// second factor, so the recovery codes come with it), then signs in with it instead of the
/// password, and with it as the second step after the password.
async fn passkey_story(panel_url: impl Fn(&str) -> String, c: Client, json_helpers: bool) {
    let c = &c;
    end2end::webauthn::add_authenticator(c).await;
    if !json_helpers {
        end2end::webauthn::hide_json_helpers(c).await;
    }
    open(c, &panel_url("/login")).await;
    let has_helpers = c
        .execute(
            "return typeof PublicKeyCredential.parseRequestOptionsFromJSON === 'function'",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(has_helpers, serde_json::Value::Bool(json_helpers));
    type_into(c, "#f-email", ADMIN).await;
    type_into(c, "#f-password", ADMIN_PW).await;
    click(c, "form button[type=submit]").await;
    wait_for_text(c, "[data-testid=me]", ADMIN).await;

    open(c, &panel_url("/account/two-factor")).await;
    wait_for_text(c, "[data-testid=two-factor-state]", "off").await;
    type_into(c, "#f-passkey-name", "Virtual key").await;
    click(c, "[data-testid=add-passkey]").await;
    wait_for_text(c, "[data-testid=passkey-outcome]", "The passkey is added.").await;
    wait_for(c, "[data-testid=recovery-codes]").await;
    wait_for_text(c, "[data-testid=passkeys]", "Virtual key").await;
    wait_for_text(c, "[data-testid=two-factor-state]", "on, with a passkey").await;

    // Without the password: the e-mail, then the passkey.
    c.find(Locator::XPath("//button[normalize-space()='Sign out']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_path(c, "/login?notice=signed-out").await;
    wait_for(c, "body[data-hydrated]").await;
    type_into(c, "#f-email", ADMIN).await;
    click(c, "[data-testid=passkey-sign-in]").await;
    wait_for_path(c, "/").await;
    wait_for_text(c, "[data-testid=me]", ADMIN).await;

    // With the password, the passkey is the second step.
    c.find(Locator::XPath("//button[normalize-space()='Sign out']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_path(c, "/login?notice=signed-out").await;
    wait_for(c, "body[data-hydrated]").await;
    type_into(c, "#f-email", ADMIN).await;
    type_into(c, "#f-password", ADMIN_PW).await;
    click(c, "form button[type=submit]").await;
    click(c, "[data-testid=passkey-second-factor]").await;
    wait_for_path(c, "/").await;
    wait_for_text(c, "[data-testid=me]", ADMIN).await;

    open(c, &panel_url("/account/two-factor")).await;
    wait_for_text(c, "[data-testid=passkeys]", "last used").await;
}

#[tokio::test]
async fn passkeys_sign_in_with_and_without_the_password() {
    passkeys_in_a_browser(true).await;
}

/// The same in a browser without WebAuthn's JSON helpers: the options and the answer are
/// converted by Pier's own code (`app/src/webauthn.rs`).
#[tokio::test]
async fn passkeys_work_without_the_browsers_json_helpers() {
    passkeys_in_a_browser(false).await;
}

async fn passkeys_in_a_browser(json_helpers: bool) {
    let panel = Panel::start(ADMIN, ADMIN_PW);
    let driver = Driver::start();
    let c = driver.browser().await;
    let base = panel.localhost_url("");
    let outcome = tokio::spawn(passkey_story(
        move |p| format!("{base}{p}"),
        c.clone(),
        json_helpers,
    ))
    .await;
    if outcome.is_err() {
        let path = std::env::temp_dir().join("pier-e2e-passkeys.png");
        if let Ok(png) = c.screenshot().await {
            let _ = std::fs::write(&path, png);
            eprintln!("screenshot: {}", path.display());
        }
        if let Ok(url) = c.current_url().await {
            eprintln!("the browser was at {url}");
        }
    }
    let _ = c.close().await;
    drop(driver);
    drop(panel);
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}
