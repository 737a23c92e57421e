//! The admin drains a machine of the Swarm from the admin page and lets it take tasks again,
//! in a real browser, against the three-engine Swarm of `scripts/swarm.sh up`.

use end2end::{ui::*, Driver, Panel};
use fantoccini::{Client, Locator};
use test_support::swarm::Swarm;

const ADMIN: &str = "admin@example.com";
const ADMIN_PW: &str = "admin password 123";

/// Every node back to active, now and when dropped (whatever the test did).
struct Restore(Swarm);

impl Drop for Restore {
    fn drop(&mut self) {
        self.0.reactivate_all();
    }
}

/// Presses `button` in `host`'s row of the Machines section, then waits for the flash to say
/// `flash` and the row to say `takes` in its "Takes tasks" column.
async fn press(c: &Client, host: &str, button: &str, flash: &str, takes: &str) {
    c.find(Locator::XPath(&format!(
        "//tr[@data-hostname='{host}']//button[normalize-space()='{button}']"
    )))
    .await
    .unwrap()
    .click()
    .await
    .unwrap();
    wait_for_text(c, "[data-testid=machine-outcome]", flash).await;
    wait_for_text(
        c,
        &format!("tr[data-hostname='{host}'] [data-testid=availability]"),
        takes,
    )
    .await;
}

#[tokio::test]
async fn drain_a_machine_and_activate_it_again() {
    let swarm = Swarm::from_env();
    let host = format!("pier-node{}", swarm.addrs.len());
    swarm.reactivate_all();
    let panel = Panel::start_on_engine(ADMIN, ADMIN_PW, &swarm.manager);
    let swarm = Restore(swarm);

    let driver = Driver::start();
    let c = driver.browser().await;
    let base = panel.url("");
    let result = async {
        sign_in_as(&c, &base, ADMIN, ADMIN_PW).await;
        click_link(&c, "Users").await;
        wait_for_path(&c, "/admin/users").await;
        wait_for(&c, "body[data-hydrated]").await;
        wait_for_text(&c, "[data-testid=machines]", "Machines").await;
        wait_for_text(
            &c,
            "[data-testid=join-command]",
            "docker swarm join --token",
        )
        .await;

        press(&c, &host, "Drain", "is draining", "no (drained)").await;
        assert_eq!(swarm.0.availability(&host), "drain");
        press(&c, &host, "Activate", "takes tasks again", "yes").await;
        assert_eq!(swarm.0.availability(&host), "active");
    }
    .await;
    c.close().await.unwrap();
    result
}
