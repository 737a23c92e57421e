//! Following an image tag, against the real registry: the test moves a tag by pushing other
//! images' manifests under it (blobs mounted from their repositories, as `docker push` would
//! upload them), the app's webhook makes Pier look, the new digest is rolled out once, and a
//! broken one fails while the previous deployment keeps serving.

use crate::common::{
    self,
    sites::{detail, domain, tenant, until_running, until_serves},
};

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::{registry, Browser, TestApp};
use sqlx::SqlitePool;

/// The registry's HTTP API, with the test user's login: (status, headers, body).
fn registry_call(
    method: &str,
    path: &str,
    headers: &[&str],
    body: Option<&[u8]>,
) -> (u16, String, Vec<u8>) {
    let (host, user, pw) = registry();
    let dir = tempfile_dir();
    let head = dir.join("head");
    let mut cmd = std::process::Command::new("curl");
    cmd.args(["-s", "-X", method, "-u", &format!("{user}:{pw}"), "-D"])
        .arg(&head)
        .args(["-o", "-", "-w", ""]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    if let Some(b) = body {
        let file = dir.join("body");
        std::fs::write(&file, b).unwrap();
        cmd.arg("--data-binary").arg(format!("@{}", file.display()));
    }
    let out = cmd
        .arg(format!("http://{host}{path}"))
        .output()
        .expect("curl");
    let headers = std::fs::read_to_string(&head).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    let status = headers
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, headers, out.stdout)
}

fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!(
        "pier-test-registry-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn header<'a>(headers: &'a str, name: &str) -> Option<&'a str> {
    headers.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

const ACCEPT: &str = "Accept: application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json";

/// Points `dst:tag` at the image `src:src_tag`; its digest.
fn push_as(src: &str, src_tag: &str, dst: &str, tag: &str) -> String {
    let (status, headers, manifest) = registry_call(
        "GET",
        &format!("/v2/{src}/manifests/{src_tag}"),
        &[ACCEPT],
        None,
    );
    assert_eq!(status, 200, "{src}:{src_tag}: {headers}");
    let content_type = header(&headers, "content-type").unwrap().to_owned();
    let digest = header(&headers, "docker-content-digest")
        .unwrap()
        .to_owned();
    let m: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    let mut blobs = vec![m["config"]["digest"].as_str().unwrap().to_owned()];
    blobs.extend(
        m["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["digest"].as_str().unwrap().to_owned()),
    );
    for b in blobs {
        let (status, headers, _) = registry_call(
            "POST",
            &format!("/v2/{dst}/blobs/uploads/?mount={b}&from={src}"),
            &["Content-Length: 0"],
            None,
        );
        assert_eq!(status, 201, "mounting {b}: {headers}");
    }
    let (status, headers, _) = registry_call(
        "PUT",
        &format!("/v2/{dst}/manifests/{tag}"),
        &[&format!("Content-Type: {content_type}")],
        Some(&manifest),
    );
    assert_eq!(status, 201, "pushing {dst}:{tag}: {headers}");
    digest
}

/// Removes what the test pushed (its own repository's manifests) when it ends, however.
struct Pushed {
    repo: String,
    digests: Vec<String>,
}

impl Drop for Pushed {
    fn drop(&mut self) {
        for d in &self.digests {
            registry_call(
                "DELETE",
                &format!("/v2/{}/manifests/{d}", self.repo),
                &[],
                None,
            );
        }
    }
}

async fn deployments(b: &mut Browser, app: &str) -> Vec<serde_json::Value> {
    detail(b, app).await["deployments"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

async fn updates(b: &mut Browser, app: &str) -> serde_json::Value {
    let r = b.read(&format!("image_updates?app={app}")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.json()
}

#[sqlx::test(migrations = "../migrations")]
async fn a_followed_tag_is_deployed_once_per_digest_and_a_broken_one_leaves_the_old_serving(
    db: SqlitePool,
) {
    let app = TestApp::with_proxy(db).await;
    let (host, _, _) = registry();
    let repo = format!("pier-test/follow-{}", &app.instance[..8]);
    let mut pushed = Pushed {
        repo: repo.clone(),
        digests: Vec::new(),
    };
    let one = push_as("pier-test/hello", "1", &repo, "live");
    pushed.digests.push(one.clone());

    let mut ann = tenant(&app, "ann@example.com").await;
    let image = format!("{host}/{repo}:live");
    let r = ann
        .call(
            "create_app",
            &[
                ("name", "site"),
                ("image", &image),
                ("port", "8080"),
                ("health_path", "/healthz"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    until_running(&mut ann, "site", 1).await;
    domain(&mut ann, "add_domain", "follow.pier.test", "site").await;
    until_serves(&app, "follow.pier.test", (200, "hello from pier"), 30).await;

    // Following: the first look finds the digest it runs, and deploys nothing.
    let r = ann
        .call("follow_tag", &[("app", "site"), ("follow", "on")])
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let u = updates(&mut ann, "site").await;
    assert_eq!(u["follow"], true, "{u}");
    assert_eq!(u["remote_digest"], one.as_str(), "{u}");
    assert_eq!(u["serving_digest"], one.as_str(), "{u}");
    assert_eq!(deployments(&mut ann, "site").await.len(), 1);

    // The tag moves; the registry calls the webhook (no token: the URL is the secret).
    let two = push_as("pier-test/hello", "2", &repo, "live");
    pushed.digests.push(two.clone());
    let hook = u["webhook_url"].as_str().unwrap();
    let hook = &hook[hook.find("/api/v1").unwrap() + "/api/v1".len()..];
    // The same URL with its last character changed.
    let other = if hook.ends_with('0') { '1' } else { '0' };
    let wrong = format!("{}{other}", &hook[..hook.len() - 1]);
    assert_eq!(app.api("POST", &wrong, None, None).await.status, 404);
    let r = app.api("POST", hook, None, None).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    assert_eq!(r.json()["remote_digest"], two.as_str());
    assert_eq!(r.json()["deployment"], 2);
    until_serves(&app, "follow.pier.test", (200, "hello from pier v2"), 60).await;
    until_running(&mut ann, "site", 2).await;
    assert_eq!(
        updates(&mut ann, "site").await["serving_digest"],
        two.as_str()
    );

    // The same digest again: nothing more is deployed.
    let r = ann.call("check_for_update", &[("app", "site")]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .starts_with("Up to date"),
        "{}",
        r.body
    );
    assert_eq!(deployments(&mut ann, "site").await.len(), 2);

    // A broken image under the tag (it never answers): its deployment fails, v2 keeps serving,
    // and it is not tried again while the tag stays.
    let broken = push_as("pier-test/sleeper", "1", &repo, "live");
    pushed.digests.push(broken.clone());
    let r = ann.call("check_for_update", &[("app", "site")]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("deployment #3"),
        "{}",
        r.body
    );
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let d = deployments(&mut ann, "site").await;
        if d.iter()
            .any(|d| d["number"] == 3 && d["status"] == "failed")
        {
            break;
        }
        assert!(Instant::now() < deadline, "#3 never failed: {d:#?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    until_serves(&app, "follow.pier.test", (200, "hello from pier v2"), 5).await;
    assert_eq!(detail(&mut ann, "site").await["row"]["current"], 2);
    let r = ann.call("check_for_update", &[("app", "site")]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(deployments(&mut ann, "site").await.len(), 3);

    // Every step is in the tenant's audit log.
    app.pier.flush_audit().await;
    let actions: Vec<(String, String)> = sqlx::query_as(
        "SELECT action, actor_email FROM audit_log
         WHERE object_name = 'site' AND action LIKE 'app.%' ORDER BY id",
    )
    .fetch_all(app.pier.db())
    .await
    .unwrap();
    let ann_ = "ann@example.com".to_owned();
    assert_eq!(
        actions,
        [
            ("app.create".into(), ann_.clone()),
            ("app.follow_tag".into(), ann_.clone()),
            ("app.deploy".into(), "registry webhook".into()),
            ("app.deploy".into(), ann_),
        ],
        "{actions:?}"
    );
    // On the tenant's Activity, the webhook's deployment says it came through the webhook.
    let r = ann
        .read("audit_log?mine=true&person=&action=app.deploy&object=&name=&since=&until=")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let rows = r.json()["rows"].as_array().unwrap().clone();
    let vias: Vec<(&str, &str)> = rows
        .iter()
        .map(|e| (e["actor"].as_str().unwrap(), e["via"].as_str().unwrap()))
        .collect();
    assert_eq!(
        vias,
        [
            ("ann@example.com", "browser"),
            ("registry webhook", "webhook")
        ],
        "{rows:?}"
    );
    drop(pushed);
}

#[sqlx::test(migrations = "../migrations")]
async fn a_pinned_image_has_no_tag_to_follow(db: SqlitePool) {
    let app = TestApp::new(db).await;
    let mut ann = app.member("pin@example.com").await;
    let image = format!("127.0.0.1:9/pier-test/none@sha256:{}", "a".repeat(64));
    let r = ann
        .call(
            "create_app",
            &[("name", "pinned"), ("image", &image), ("port", "8080")],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = ann
        .call("follow_tag", &[("app", "pinned"), ("follow", "on")])
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    assert!(r.body.contains("pinned by digest"), "{}", r.body);
    assert_eq!(
        updates(&mut ann, "pinned").await["tag"],
        serde_json::Value::Null
    );
    // Another tenant's app is not found, and neither is a made-up webhook.
    let mut bob = app.member("bob@example.com").await;
    let r = bob.read("image_updates?app=pinned").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    let r = app
        .api(
            "POST",
            &format!("/hooks/tags/1/{}", "0".repeat(40)),
            None,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
}
