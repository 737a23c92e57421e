//! Backups in a real browser: set an app's schedule and retention, back it up now and watch the
//! snapshot finish, then restore it after the confirmation and find the old data back, and
//! restore it again into a new volume beside the app's.

use std::{process::Command, time::Duration};

use end2end::{test_registry, ui::*, Driver, Panel};

const ADMIN: &str = "admin@example.com";
const ADMIN_PW: &str = "admin password 123";

/// The app's running container (its name holds `-<app>-d<deployment>`).
fn container(app: &str) -> String {
    let out = Command::new("docker")
        .args(["ps", "-q", "--filter", &format!("name=-{app}-d")])
        .output()
        .expect("docker ps");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_else(|| panic!("no running container for {app}"))
        .to_owned()
}

fn exec(id: &str, script: &str) -> String {
    let out = Command::new("docker")
        .args(["exec", id, "sh", "-c", script])
        .output()
        .expect("docker exec");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn schedule_back_up_now_and_restore_after_confirming() {
    let (registry, _, _) = test_registry();
    let panel = Panel::start(ADMIN, ADMIN_PW);
    let token = panel.token(ADMIN, "write");
    panel.log_in_to_test_registry(&token);
    let (code, body) = panel.api(
        &token,
        "POST",
        "/apps",
        Some(&format!(
            r#"{{"name":"diary","image":"{registry}/pier-test/hello:1","port":8080,
                "volumes":[{{"name":"diary-data","path":"/data","size_mb":32}}]}}"#
        )),
    );
    assert_eq!(code, 201, "{body}");

    let driver = Driver::start();
    let c = driver.browser().await;
    let base = panel.url("");
    let result = async {
        sign_in_as(&c, &base, ADMIN, ADMIN_PW).await;
        open(&c, &format!("{base}/apps/diary")).await;
        wait_for_text_within(
            &c,
            "[data-testid=app-state]",
            "running",
            Duration::from_secs(90),
        )
        .await;
        let id = container("diary");
        exec(&id, "echo 'first entry' > /data/page.txt");

        // Schedule: daily at 04:30 UTC, keep 5; a wrong time is refused at its field.
        wait_for_text(&c, "[data-testid=backup-summary]", "No good backup yet").await;
        wait_for(&c, "[data-testid=backup-schedule]")
            .await
            .select_by_value("daily")
            .await
            .unwrap();
        let at = wait_for(&c, "[data-testid=backup-at]").await;
        at.clear().await.unwrap();
        at.send_keys("25:00").await.unwrap();
        click(&c, "[data-testid=save-backup-policy]").await;
        wait_for_text(&c, "#backup-policy-title ~ form", "HH:MM").await;
        // What else was chosen stays chosen after a refusal.
        let kept = wait_for(&c, "[data-testid=backup-schedule]").await;
        assert_eq!(kept.prop("value").await.unwrap().as_deref(), Some("daily"));
        let at = wait_for(&c, "[data-testid=backup-at]").await;
        at.clear().await.unwrap();
        at.send_keys("04:30").await.unwrap();
        let keep = wait_for(&c, "input[name=keep_last]").await;
        keep.clear().await.unwrap();
        keep.send_keys("5").await.unwrap();
        click(&c, "[data-testid=save-backup-policy]").await;
        wait_for_text_within(
            &c,
            "#backup-policy-title ~ div",
            "daily at 04:30 UTC",
            Duration::from_secs(20),
        )
        .await;

        // Back up now: the snapshot appears and finishes, with its size and pause time.
        click(&c, "[data-testid=backup-now]").await;
        wait_for_text_within(
            &c,
            "[data-testid=snapshots] li[data-state=done]",
            "paused for",
            Duration::from_secs(120),
        )
        .await;
        wait_for_text(&c, "[data-testid=backup-summary]", "Last good backup").await;
        wait_for(&c, "[data-testid=snapshot-download]").await;

        // New data, then restore the snapshot: confirm first; the old data is back.
        exec(&id, "echo 'second entry' > /data/page.txt");
        click(&c, "[data-testid=snapshot-restore] summary").await;
        wait_for_text(
            &c,
            "[data-testid=snapshot-restore]",
            "What changed since is lost",
        )
        .await;
        click(&c, "[data-testid=confirm-restore]").await;
        wait_for_text_within(
            &c,
            "[data-testid=restore-state]",
            "was restored",
            Duration::from_secs(120),
        )
        .await;
        wait_for_text_within(
            &c,
            "[data-testid=app-state]",
            "running",
            Duration::from_secs(60),
        )
        .await;
        assert_eq!(
            exec(&container("diary"), "cat /data/page.txt"),
            "first entry\n"
        );

        // The same snapshot into a new volume beside the app's, named in the form.
        click(&c, "[data-testid=snapshot-restore-beside] summary").await;
        let name = wait_for(&c, "[data-testid=restore-into-volume]").await;
        name.clear().await.unwrap();
        name.send_keys("diary-then").await.unwrap();
        click(&c, "[data-testid=confirm-restore-beside]").await;
        wait_for_text_within(
            &c,
            "[data-testid=restore-state]",
            "restored into the volume diary-then",
            Duration::from_secs(120),
        )
        .await;
        let (code, body) = panel.api(&token, "GET", "/volumes", None);
        assert_eq!(code, 200, "{body}");
        assert!(body.contains(r#""name":"diary-then""#), "{body}");
    }
    .await;
    let _ = c.close().await;
    result
}
