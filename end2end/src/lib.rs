//! Test support for Pier's browser tests: start `pier serve` and `chromedriver` on loopback ports,
//! drive chromium through fantoccini, and stop every process (by process group) even when a test
//! panics.

use std::{
    io::{BufRead, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The `pier` binary that `cargo leptos build` produced.
pub fn pier_bin() -> PathBuf {
    if let Ok(p) = std::env::var("PIER_BIN") {
        return p.into();
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace().join("target"));
    target.join("debug").join("pier")
}

pub fn site_root() -> PathBuf {
    std::env::var("PIER_SITE_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace().join("target").join("site"))
}

pub use test_support::ports::free_port;

/// A child process in its own process group; dropping it kills the whole group (chromedriver
/// takes its chromium children with it).
pub struct Proc {
    child: Child,
    name: &'static str,
}

impl Proc {
    pub fn spawn(name: &'static str, cmd: &mut Command) -> Proc {
        use std::os::unix::process::CommandExt;
        let child = cmd
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        Proc { child, name }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
        eprintln!("stopped {} (pid {})", self.name, self.child.id());
    }
}

/// A plain HTTP/1.0 GET on loopback; returns the status code.
pub fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    // Only the status line: some servers keep the connection open regardless.
    let mut line = String::new();
    std::io::BufReader::new(s).read_line(&mut line).ok()?;
    line.split_whitespace().nth(1)?.parse().ok()
}

pub fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A running panel with a fresh data dir and one admin.
pub struct Panel {
    pub port: u16,
    /// Its HAProxy's HTTPS port on 127.0.0.1.
    pub https_port: u16,
    pub data_dir: PathBuf,
    proc: Option<Proc>,
}

/// The ACME test CA, shared with the server's tests.
pub use test_support::pebble;

/// Certificates for a panel: from this pebble, which validates on `http_port` (the panel's
/// HAProxy HTTP port).
pub struct Acme<'a> {
    pub pebble: &'a pebble::Pebble,
}

impl Panel {
    pub fn start(admin_email: &str, admin_password: &str) -> Panel {
        Self::start_with(admin_email, admin_password, None, None)
    }

    /// A panel whose engine is the one at `docker_host` (`unix://…`, a Swarm manager of
    /// `scripts/swarm.sh`, say).
    pub fn start_on_engine(admin_email: &str, admin_password: &str, docker_host: &str) -> Panel {
        Self::start_with(admin_email, admin_password, None, Some(docker_host))
    }

    /// A panel whose HAProxy takes plain HTTP on `acme.pebble.http_port` and which gets its
    /// certificates from that pebble.
    pub fn start_with_acme(admin_email: &str, admin_password: &str, acme: Acme<'_>) -> Panel {
        Self::start_with(admin_email, admin_password, Some(acme), None)
    }

    fn start_with(
        admin_email: &str,
        admin_password: &str,
        acme: Option<Acme<'_>>,
        docker_host: Option<&str>,
    ) -> Panel {
        let data_dir =
            std::env::temp_dir().join(format!("pier-e2e-{}-{}", std::process::id(), free_port()));
        let bin = pier_bin();
        assert!(
            bin.exists(),
            "{} is missing: run `cargo leptos build` first",
            bin.display()
        );
        let mut create = Command::new(&bin)
            .args(["--data-dir"])
            .arg(&data_dir)
            .args([
                "admin",
                "create",
                "--email",
                admin_email,
                "--password-stdin",
            ])
            .stdin(Stdio::piped())
            .spawn()
            .expect("pier admin create");
        writeln!(create.stdin.take().unwrap(), "{admin_password}").unwrap();
        assert!(create.wait().unwrap().success(), "pier admin create failed");

        let port = free_port();
        let http_port = acme.as_ref().map_or_else(free_port, |a| a.pebble.http_port);
        let https_port = free_port();
        let mut cmd = Command::new(&bin);
        match &acme {
            Some(a) => cmd
                .env("PIER_ACME_DIRECTORY", &a.pebble.directory)
                .env("PIER_ACME_CA_FILE", &a.pebble.ca_file),
            // No CA outside this machine is ever asked for a certificate.
            None => cmd.env("PIER_NO_ACME", "true"),
        };
        if let Some(host) = docker_host {
            cmd.env("DOCKER_HOST", host);
        }
        let proc = Proc::spawn(
            "pier serve",
            cmd.arg("--data-dir")
                .arg(&data_dir)
                .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
                .arg("--site-root")
                .arg(site_root())
                .env("PIER_LOG", "warn")
                // Its HAProxy on loopback ports; platform names under apps.pier.test.
                .env("PIER_HTTP_ADDR", format!("127.0.0.1:{http_port}"))
                .env("PIER_HTTPS_ADDR", format!("127.0.0.1:{https_port}"))
                .env("PIER_BASE_DOMAIN", "apps.pier.test")
                .env("PIER_NO_DOMAIN_PROOF", "true")
                // Notifications only to a closed loopback port: nothing leaves the machine.
                .env("PIER_NOTIFY_HOSTS", "127.0.0.1:9")
                // Docker never reaches past this machine in tests: only the local registry.
                .env(
                    "PIER_ALLOWED_REGISTRIES",
                    std::env::var("PIER_TEST_REGISTRY").unwrap_or_else(|_| "127.0.0.1:5123".into()),
                ),
        );
        wait_until("pier /healthz", Duration::from_secs(20), || {
            http_status(port, "/healthz") == Some(200)
        });
        Panel {
            port,
            https_port,
            data_dir,
            proc: Some(proc),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The same panel at `localhost` (also loopback): browsers allow passkeys there over plain
    /// HTTP, never at an IP address.
    pub fn localhost_url(&self, path: &str) -> String {
        format!("http://localhost:{}{path}", self.port)
    }

    /// `pier token create` for a user of this panel: the token.
    pub fn token(&self, email: &str, scope: &str) -> String {
        let out = Command::new(pier_bin())
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args([
                "token", "create", "--email", email, "--name", "e2e", "--scope", scope,
            ])
            .output()
            .expect("pier token create");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Saves the login of the test registry (`scripts/services.sh`) for the token's user, over
    /// the REST API.
    pub fn log_in_to_test_registry(&self, token: &str) {
        let (registry, user, password) = test_registry();
        let body = serde_json::json!({"username": user, "password": password}).to_string();
        let (status, answer) = self.api(
            token,
            "PUT",
            &format!("/registries/{registry}"),
            Some(&body),
        );
        assert_eq!(status, 200, "{answer}");
    }

    /// A REST call with curl on loopback: (status, body).
    pub fn api(&self, token: &str, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        let mut cmd = Command::new("curl");
        cmd.args([
            "-s",
            "--max-time",
            "10",
            "-X",
            method,
            "-w",
            "\n%{http_code}",
        ])
        .arg("-H")
        .arg(format!("Authorization: Bearer {token}"));
        if let Some(b) = body {
            cmd.args(["-H", "Content-Type: application/json", "--data", b]);
        }
        let out = cmd
            .arg(self.url(&format!("/api/v1{path}")))
            .output()
            .expect("curl");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        (code.trim().parse().unwrap_or(0), body.to_owned())
    }
}

impl Drop for Panel {
    /// Stops the panel, then removes the containers and networks it made (by its instance label).
    fn drop(&mut self) {
        drop(self.proc.take());
        // HAProxy outlives `pier serve` by design; stop the one this panel started, by its pid.
        let pidfile = self.data_dir.join("haproxy").join("haproxy.pid");
        if let Some(pid) = std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok())
        {
            let _ = Command::new("kill").arg(pid.to_string()).status();
            wait_until("haproxy to stop", Duration::from_secs(10), || {
                !std::path::Path::new(&format!("/proc/{pid}")).exists()
                    || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                        .is_ok_and(|s| s.contains(") Z"))
            });
        }
        let db = self.data_dir.join("pier.db");
        let instance = Command::new("sqlite3")
            .arg(&db)
            .arg("SELECT id FROM instance")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        if !instance.is_empty() {
            test_support::docker::remove_labelled(&instance);
        }
        // Volume file systems: their loop devices go before the files.
        test_support::docker::remove_volume_files(&self.data_dir.join("volumes"), "");
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// chromedriver on a loopback port, for any number of browser sessions.
pub struct Driver {
    pub port: u16,
    proc: Option<Proc>,
    /// The chromium profiles this driver's browsers used (removed with the driver).
    profiles: std::sync::Mutex<Vec<PathBuf>>,
}

impl Drop for Driver {
    /// Stops chromedriver and its browsers (one process group), then removes their profiles.
    fn drop(&mut self) {
        drop(self.proc.take());
        for p in std::mem::take(&mut *self.profiles.lock().unwrap()) {
            let _ = std::fs::remove_dir_all(p);
        }
    }
}

impl Driver {
    pub fn start() -> Driver {
        let port = free_port();
        let proc = Proc::spawn(
            "chromedriver",
            Command::new("chromedriver")
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        wait_until("chromedriver", Duration::from_secs(20), || {
            http_status(port, "/status") == Some(200)
        });
        Driver {
            port,
            proc: Some(proc),
            profiles: Default::default(),
        }
    }

    /// A new headless chromium with an empty profile.
    pub async fn browser(&self) -> fantoccini::Client {
        self.browser_with(&[]).await
    }

    /// A chromium that accepts the self-signed certificate HAProxy serves until a domain has a
    /// real one (every browser here resolves `*.pier.test` to 127.0.0.1).
    pub async fn browser_for_test_domains(&self) -> fantoccini::Client {
        self.browser_with(&["--ignore-certificate-errors"]).await
    }

    async fn browser_with(&self, extra: &[&str]) -> fantoccini::Client {
        let profile = std::env::temp_dir().join(format!(
            "pier-e2e-chrome-{}-{}",
            std::process::id(),
            free_port()
        ));
        self.profiles.lock().unwrap().push(profile.clone());
        let caps = serde_json::json!({
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1280,900",
                    // Names resolve on this machine only: *.pier.test is 127.0.0.1, anything else
                    // is not found (no lookup ever leaves the machine, not even a link prefetch).
                    "--host-resolver-rules=MAP *.pier.test 127.0.0.1, MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
                    format!("--user-data-dir={}", profile.display()),
                ]
            },
            "goog:loggingPrefs": {"browser": "ALL"}
        });
        let serde_json::Value::Object(mut caps) = caps else {
            unreachable!()
        };
        if let Some(args) = caps["goog:chromeOptions"]["args"].as_array_mut() {
            args.extend(extra.iter().map(|a| serde_json::Value::from(*a)));
        }
        let http = hyper_util::client::legacy::connect::HttpConnector::new();
        fantoccini::ClientBuilder::new(http)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("a chromium session")
    }
}

/// A POST to one of chromedriver's own endpoints for a session (`goog/cdp/execute`,
/// `se/log`, `webauthn/authenticator`), which fantoccini has no call for.
#[derive(Debug)]
struct SessionPost(&'static str, serde_json::Value);

impl fantoccini::wd::WebDriverCompatibleCommand for SessionPost {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        let session = session_id.expect("a WebDriver session");
        base_url.join(&format!("session/{session}/{}", self.0))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(self.1.to_string()))
    }
}

async fn session_post(
    c: &fantoccini::Client,
    endpoint: &'static str,
    body: serde_json::Value,
) -> serde_json::Value {
    c.issue_cmd(SessionPost(endpoint, body))
        .await
        .unwrap_or_else(|e| panic!("{endpoint}: {e}"))
}

/// Runs a Chrome DevTools Protocol command in the browser (`Network.setBlockedURLs`, …).
pub async fn cdp(c: &fantoccini::Client, cmd: &'static str, params: serde_json::Value) {
    session_post(
        c,
        "goog/cdp/execute",
        serde_json::json!({"cmd": cmd, "params": params}),
    )
    .await;
}

/// The messages the browser logged since the last call (errors of failed requests among them).
pub async fn browser_log(c: &fantoccini::Client) -> Vec<String> {
    let entries = session_post(c, "se/log", serde_json::json!({"type": "browser"})).await;
    entries
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["message"].as_str().map(str::to_owned))
        .collect()
}

/// Authenticator codes, computed apart from Pier's own code.
pub use test_support::totp;

/// WebDriver's WebAuthn extension: a virtual authenticator in the browser, with a user who is
/// present and verified (as a phone's fingerprint would say), holding resident keys.
pub mod webauthn {
    /// Makes every page this browser loads from now on look like a browser without WebAuthn's
    /// JSON helpers (`parseCreationOptionsFromJSON`, `parseRequestOptionsFromJSON`, `toJSON`),
    /// as Safari before 18.4 and Firefox before 119 are: Pier's own conversion is used.
    pub async fn hide_json_helpers(c: &fantoccini::Client) {
        let source = "delete PublicKeyCredential.parseCreationOptionsFromJSON;\n\
                      delete PublicKeyCredential.parseRequestOptionsFromJSON;\n\
                      delete PublicKeyCredential.prototype.toJSON;";
        crate::cdp(
            c,
            "Page.addScriptToEvaluateOnNewDocument",
            serde_json::json!({ "source": source }),
        )
        .await;
    }

    /// Gives the browser a virtual authenticator; its id.
    pub async fn add_authenticator(c: &fantoccini::Client) -> String {
        let body = serde_json::json!({
            "protocol": "ctap2",
            "transport": "internal",
            "hasResidentKey": true,
            "hasUserVerification": true,
            "isUserConsenting": true,
            "isUserVerified": true,
        });
        let id = crate::session_post(c, "webauthn/authenticator", body).await;
        id.as_str().unwrap_or_default().to_owned()
    }
}

/// Browser helpers shared by the tests: wait for an element, type, click, follow the URL.
pub mod ui {
    use std::time::{Duration, Instant};

    use fantoccini::{elements::Element, Client, Locator};

    pub const WAIT: Duration = Duration::from_secs(20);

    pub async fn wait_for(c: &Client, css: &str) -> Element {
        c.wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css}: {e}"))
    }

    pub async fn type_into(c: &Client, css: &str, text: &str) {
        wait_for(c, css).await.send_keys(text).await.unwrap();
    }

    pub async fn click(c: &Client, css: &str) {
        wait_for(c, css).await.click().await.unwrap();
    }

    pub async fn click_link(c: &Client, text: &str) {
        let link = c.find(Locator::LinkText(text)).await;
        link.unwrap_or_else(|e| panic!("no link {text:?}: {e}"))
            .click()
            .await
            .unwrap();
    }

    /// Loads a page and waits until the wasm has hydrated it (a browser-only effect marks the body).
    /// When it never is, the failure says what the page had loaded (and how each load ended).
    pub async fn open(c: &Client, url: &str) {
        c.goto(url).await.unwrap();
        let hydrated = c
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css("body[data-hydrated]"))
            .await;
        if let Err(e) = hydrated {
            let state = c
                .execute(
                    "return JSON.stringify({ready: document.readyState, url: location.href, \
                     resources: performance.getEntriesByType('resource').map(r => \
                       [r.name.split('/').pop(), r.responseStatus, Math.round(r.duration)]), \
                     body: document.body ? document.body.outerHTML.slice(0, 400) : null})",
                    vec![],
                )
                .await
                .map(|v| v.to_string())
                .unwrap_or_else(|e| format!("(the page could not be read: {e})"));
            panic!("{url} never hydrated ({e}); the page then: {state}");
        }
    }

    pub async fn wait_for_path(c: &Client, path: &str) {
        let deadline = Instant::now() + WAIT;
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
                Instant::now() < deadline,
                "still at {here}, expected {path}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn wait_for_text(c: &Client, css: &str, text: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(e) = c.find(Locator::Css(css)).await {
                if e.text().await.unwrap_or_default().contains(text) {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "{css} never showed {text:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits up to `timeout` until the element shows `text`.
    pub async fn wait_for_text_within(c: &Client, css: &str, text: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(e) = c.find(Locator::Css(css)).await {
                if e.text().await.unwrap_or_default().contains(text) {
                    return;
                }
            }
            if Instant::now() >= deadline {
                let page = match c.find(Locator::Css("body")).await {
                    Ok(b) => b.text().await.unwrap_or_default(),
                    Err(_) => String::new(),
                };
                panic!("{css} never showed {text:?}; the page says:\n{page}");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Signs in through the login form and waits for the apps page.
    pub async fn sign_in_as(c: &Client, base: &str, email: &str, password: &str) {
        open(c, &format!("{base}/login")).await;
        type_into(c, "#f-email", email).await;
        type_into(c, "#f-password", password).await;
        click(c, "form button[type=submit]").await;
        wait_for_path(c, "/").await;
    }
}

/// The test registry `scripts/services.sh start` runs: (host:port, user, password), from the
/// variables its env file exports (scripts/test.sh sources it).
pub fn test_registry() -> (String, String, String) {
    let get = |k: &str| {
        std::env::var(k).unwrap_or_else(|_| {
            panic!("{k} is not set: run `source \"$(scripts/services.sh env)\"` after `scripts/services.sh start`")
        })
    };
    (
        get("PIER_TEST_REGISTRY"),
        get("PIER_TEST_REGISTRY_USER"),
        get("PIER_TEST_REGISTRY_PASSWORD"),
    )
}

/// The mock DNS server `scripts/services.sh start` runs (pebble asks it for every name).
pub fn test_dns() -> std::net::SocketAddr {
    std::env::var("PIER_TEST_DNS")
        .unwrap_or_else(|_| {
            panic!("PIER_TEST_DNS is not set: run `source \"$(scripts/services.sh env)\"` after `scripts/services.sh start`")
        })
        .parse()
        .expect("PIER_TEST_DNS is ip:port")
}
