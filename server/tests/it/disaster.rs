//! Disaster recovery with the real `pier` binary: a Pier with an app and its data is backed up
//! (the app's volume and Pier itself) and copied to an S3 bucket (s3s-fs on loopback), then the
//! machine is lost (data directory with its local repository, containers, volumes); `pier
//! restore --from s3:…` with the operator's passphrase onto an empty data directory and `pier
//! serve` bring the app back with its data, under the same token. Traffic goes only to
//! 127.0.0.1.

use crate::common;

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::{docker_cli, registry, s3};
use serde_json::{json, Value};

const PIER: &str = env!("CARGO_BIN_EXE_pier");
const PASSPHRASE: &str = "a long passphrase kept elsewhere";

/// Runs `pier` with `args`, `stdin` piped in; its stdout. Panics with stderr on failure.
fn pier(data: &Path, args: &[&str], stdin: Option<&str>) -> String {
    use std::io::Write;
    let mut c = Command::new(PIER)
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env("PIER_LOG", "warn")
        .env("AWS_ACCESS_KEY_ID", s3::ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", s3::SECRET_KEY)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("pier runs");
    if let Some(s) = stdin {
        c.stdin
            .take()
            .unwrap()
            .write_all(format!("{s}\n").as_bytes())
            .unwrap();
    }
    drop(c.stdin.take());
    let out = c.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "pier {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `pier serve` on a free loopback port, without HAProxy; killed when dropped.
struct Served {
    child: Child,
    port: u16,
}

impl Served {
    fn start(data: &Path) -> Served {
        let port = common::free_addr().port();
        let child = Command::new(PIER)
            .arg("--data-dir")
            .arg(data)
            .args(["serve", "--no-proxy", "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--allowed-registries")
            .arg(registry().0)
            .env("PIER_LOG", "warn,pier=info")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("pier serve");
        let s = Served { child, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        while s.call("GET", "/healthz", None, None).0 != 200 {
            assert!(Instant::now() < deadline, "pier serve did not come up");
            std::thread::sleep(Duration::from_millis(200));
        }
        s
    }

    /// (status, body) of a request with an optional token and JSON body.
    fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, String) {
        let mut c = Command::new("curl");
        c.args([
            "-s",
            "--max-time",
            "10",
            "-X",
            method,
            "-w",
            "\n%{http_code}",
        ]);
        if let Some(t) = token {
            c.arg("-H").arg(format!("Authorization: Bearer {t}"));
        }
        if let Some(b) = body {
            c.args(["-H", "Content-Type: application/json", "--data-binary"])
                .arg(b.to_string());
        }
        let out = c
            .arg(format!("http://127.0.0.1:{}{path}", self.port))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        (code.trim().parse().unwrap_or(0), body.to_owned())
    }

    fn api(&self, method: &str, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
        let (status, text) = self.call(method, &format!("/api/v1{path}"), Some(token), body);
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    fn until(&self, token: &str, path: &str, secs: u64, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let (status, v) = self.api("GET", path, token, None);
            if status == 200 && pred(&v) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out on {path}: {status} {v:#}"
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    fn stop(mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn docker(args: &[&str]) -> String {
    String::from_utf8_lossy(&docker_cli::docker(args).stdout).into_owned()
}

/// The running container of the app (by Pier's label).
fn container(instance: &str) -> Option<String> {
    docker(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=pier.instance={instance}"),
    ])
    .split_whitespace()
    .next()
    .map(str::to_owned)
}

/// Everything a lost machine loses: containers, networks and volumes of the instance, the
/// volumes' loop devices and the data directory.
fn lose_everything(instance: &str, data: &Path) {
    common::sweep(instance);
    let vols = data.join("volumes");
    if let Ok(entries) = std::fs::read_dir(&vols) {
        for e in entries.flatten() {
            if e.path().extension().is_some_and(|x| x == "img") {
                let _ = Command::new("sh")
                    .args([
                        "-c",
                        "for d in $(losetup -n -O NAME -j \"$1\"); do losetup -d \"$d\"; done",
                        "sh",
                    ])
                    .arg(e.path())
                    .status();
            }
        }
    }
    let _ = std::fs::remove_dir_all(data);
}

struct Cleanup(Vec<PathBuf>, String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if !self.1.is_empty() {
            for d in &self.0 {
                lose_everything(&self.1, d);
            }
        }
        for d in &self.0 {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_whole_pier_comes_back_on_an_empty_machine() {
    tokio::task::spawn_blocking(disaster).await.unwrap();
}

fn disaster() {
    let root = std::env::temp_dir().join(format!("pier-test-dr-{}", std::process::id()));
    let (one, two) = (root.join("one"), root.join("two"));
    let _ = std::fs::remove_dir_all(&root);
    let mut cleanup = Cleanup(vec![one.clone(), two.clone(), root.clone()], String::new());

    let s3 = s3::S3::start();
    let bucket = format!("s3:{}/pier-dr/pier", s3.endpoint());

    // A Pier with one app keeping data in a volume, and a recovery passphrase.
    pier(
        &one,
        &[
            "admin",
            "create",
            "--email",
            "op@example.com",
            "--password-stdin",
        ],
        Some("operator password 1"),
    );
    let token = pier(
        &one,
        &[
            "token",
            "create",
            "--email",
            "op@example.com",
            "--name",
            "ci",
            "--scope",
            "admin",
        ],
        None,
    )
    .trim()
    .to_owned();
    pier(
        &one,
        &["backup", "passphrase", "--passphrase-stdin"],
        Some(PASSPHRASE),
    );
    let served = Served::start(&one);
    let (host, user, pw) = registry();
    let (s, v) = served.api(
        "PUT",
        &format!("/registries/{host}"),
        &token,
        Some(json!({"username": user, "password": pw})),
    );
    assert_eq!(s, 200, "{v}");
    let (s, v) = served.api(
        "PUT",
        "/backup-target",
        &token,
        Some(json!({"endpoint": s3.endpoint(), "bucket": "pier-dr",
                    "access_key": s3::ACCESS_KEY, "secret_key": s3::SECRET_KEY})),
    );
    assert_eq!(s, 200, "{v}");
    let (s, v) = served.api(
        "POST",
        "/apps",
        &token,
        Some(json!({
            "name": "vault", "image": format!("{host}/pier-test/hello:1"), "port": 8080,
            "volumes": [{"name": "vault-data", "path": "/data", "size_mb": 32}]
        })),
    );
    assert_eq!(s, 201, "{v}");
    served.until(&token, "/apps/vault", 90, |a| a["state"] == "running");
    let instance = Command::new("sqlite3")
        .arg(one.join("pier.db"))
        .arg("SELECT id FROM instance")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap();
    cleanup.1 = instance.clone();
    let c = container(&instance).expect("the app's container");
    docker(&["exec", &c, "sh", "-c", "echo precious > /data/keep.txt"]);

    // Back up the app's volume, then Pier itself; both reach the bucket.
    let (s, snap) = served.api("POST", "/apps/vault/backups", &token, None);
    assert_eq!(s, 202, "{snap}");
    let id = snap["id"].as_i64().unwrap();
    let done = served.until(&token, &format!("/apps/vault/backups/{id}"), 120, |s| {
        s["state"] == "done" || s["state"] == "failed"
    });
    assert_eq!(done["state"], "done", "{done:#}");
    let (s, v) = served.api("POST", "/pier-backups", &token, None);
    assert_eq!(s, 201, "{v}");
    let panel = v["snapshot"].as_str().unwrap().to_owned();
    // The bucket opens with the passphrase alone and holds the app's snapshot and this one.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let out = Command::new("restic")
            .args(["snapshots", "--json", "--no-lock", "--tag", "pier-panel"])
            .env("RESTIC_REPOSITORY", &bucket)
            .env("RESTIC_PASSWORD", PASSPHRASE)
            .env("RESTIC_CACHE_DIR", root.join("check-cache"))
            .env("AWS_ACCESS_KEY_ID", s3::ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", s3::SECRET_KEY)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        // A copy names the snapshot it was copied from.
        if out.status.success() && text.contains(&panel) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Pier's backup {panel} never reached the bucket: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    served.stop();

    // The machine is lost: its data directory (and the local repository in it), containers and
    // volumes.
    lose_everything(&instance, &one);
    assert!(container(&instance).is_none());

    // A wrong passphrase opens nothing and leaves the directory empty.
    let bad = Command::new(PIER)
        .arg("--data-dir")
        .arg(&two)
        .args(["restore", "--from", &bucket, "--passphrase-stdin"])
        .env("AWS_ACCESS_KEY_ID", s3::ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", s3::SECRET_KEY)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(b"not the passphrase\n")?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(!bad.status.success());
    assert!(!two.join("pier.db").exists());

    // Restore onto the empty machine and start: the app serves its old data.
    let out = pier(
        &two,
        &["restore", "--from", &bucket, "--passphrase-stdin"],
        Some(PASSPHRASE),
    );
    assert!(out.contains("1 apps get their volumes back"), "{out}");
    let served = Served::start(&two);
    served.until(&token, "/apps/vault", 120, |a| a["state"] == "running");
    let c = container(&instance).expect("the app's container, recreated");
    assert_eq!(docker(&["exec", &c, "cat", "/data/keep.txt"]), "precious\n");
    // Its snapshots came back too, and backups go on in the repository now in place.
    let list = served.until(&token, "/apps/vault/backups", 10, |l| l["total"] == 1);
    assert_eq!(list["items"][0]["id"], id);
    let (s, snap) = served.api("POST", "/apps/vault/backups", &token, None);
    assert_eq!(s, 202, "{snap}");
    let id2 = snap["id"].as_i64().unwrap();
    let done = served.until(&token, &format!("/apps/vault/backups/{id2}"), 120, |s| {
        s["state"] == "done" || s["state"] == "failed"
    });
    assert_eq!(done["state"], "done", "{done:#}");
    served.stop();
    drop(cleanup);
}
