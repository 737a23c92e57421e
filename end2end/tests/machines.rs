//! The admin drains a machine of the Swarm from the admin page and lets it take tasks again,
//! in a real browser, against the three-engine Swarm of `scripts/swarm.sh up`.

use std::process::Command;

use end2end::{ui::*, Driver, Panel};
use fantoccini::Locator;

const ADMIN: &str = "admin@example.com";
const ADMIN_PW: &str = "admin password 123";

/// Every node back to active, now and when dropped (whatever the test did).
struct Restore(String);

impl Restore {
    fn all(&self) {
        let out = Command::new("docker")
            .args(["-H", &self.0, "node", "ls", "-q"])
            .output()
            .unwrap();
        for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = Command::new("docker")
                .args([
                    "-H",
                    &self.0,
                    "node",
                    "update",
                    "--availability",
                    "active",
                    id,
                ])
                .output();
        }
    }

    fn availability(&self, host: &str) -> String {
        let out = Command::new("docker")
            .args([
                "-H",
                &self.0,
                "node",
                "inspect",
                host,
                "--format",
                "{{.Spec.Availability}}",
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Drop for Restore {
    fn drop(&mut self) {
        self.all();
    }
}

#[tokio::test]
async fn drain_a_machine_and_activate_it_again() {
    let manager = std::env::var("PIER_SWARM_MANAGER").expect(
        "PIER_SWARM_MANAGER is not set: run scripts/swarm.sh up and source \"$(scripts/swarm.sh env)\"",
    );
    let nodes = std::env::var("PIER_SWARM_ADDRS")
        .unwrap()
        .split_whitespace()
        .count();
    let restore = Restore(manager.clone());
    restore.all();
    let panel = Panel::start_on_engine(ADMIN, ADMIN_PW, &manager);
    let host = format!("pier-node{nodes}");
    let row = format!("//tr[@data-hostname='{host}']");

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

        c.find(Locator::XPath(&format!(
            "{row}//button[normalize-space()='Drain']"
        )))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
        wait_for_text(&c, "[data-testid=machine-outcome]", "is draining").await;
        wait_for_text(
            &c,
            &format!("tr[data-hostname='{host}'] [data-testid=availability]"),
            "no (drained)",
        )
        .await;
        assert_eq!(restore.availability(&host), "drain");

        c.find(Locator::XPath(&format!(
            "{row}//button[normalize-space()='Activate']"
        )))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
        wait_for_text(&c, "[data-testid=machine-outcome]", "takes tasks again").await;
        wait_for_text(
            &c,
            &format!("tr[data-hostname='{host}'] [data-testid=availability]"),
            "yes",
        )
        .await;
        assert_eq!(restore.availability(&host), "active");
    }
    .await;
    c.close().await.unwrap();
    result
}
