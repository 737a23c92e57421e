//! Drives the real router in-process, like a browser: a cookie jar, the CSRF token from the page,
//! and form posts to server functions.
#![allow(dead_code)]

pub mod docker_cli;
pub mod s3;
pub mod sites;

pub use test_support::{totp, Pebble};

use std::{net::SocketAddr, sync::Arc};

use axum::{
    body::Body,
    extract::connect_info::MockConnectInfo,
    http::{header, HeaderMap, Method, Request, StatusCode},
    Router,
};
use http_body_util::BodyExt;
use pier::{
    certs::Challenges,
    config::ServeArgs,
    http::{router, AppState},
    launch::{launch, Handles, Parts},
    proxy::{config::ProxyConfig, Files, Proxy},
};
use pier_core::{secret::SecretKey, service::Settings, Pier};
use sqlx::SqlitePool;
use tower::ServiceExt;

pub const ADMIN_EMAIL: &str = "admin@example.com";
pub const ADMIN_PASSWORD: &str = "correct horse battery staple";

pub struct TestApp {
    pub pier: Pier,
    pub router: Router,
    /// The started panel: its reconciler, sampler, issuer… (stopped with the test's runtime).
    handles: Handles,
    /// This installation's id: everything it makes in Docker carries it.
    pub instance: String,
    /// The HAProxy this panel runs, when the test asked for one.
    pub proxy: Option<Arc<Proxy>>,
    /// The ACME test CA this panel gets certificates from, when the test asked for one.
    pub pebble: Option<Pebble>,
}

/// HAProxy for a test: its own directory and free loopback ports; the panel behind it is this
/// test's router served on another loopback port.
pub struct TestProxy {
    pub files: Files,
    pub config: ProxyConfig,
}

impl TestProxy {
    /// HAProxy's files and configuration in a directory of their own, and the panel behind it
    /// serving `router`.
    pub async fn new(router: Router) -> TestProxy {
        let (tp, listener) = Self::bind(free_addr()).await;
        serve_panel(listener, router);
        tp
    }

    /// The same with HAProxy's HTTP port at `http`; the panel's listener is bound but not yet
    /// serving (see [`serve_panel`]), so the panel can be made after HAProxy starts.
    pub async fn bind(http: SocketAddr) -> (TestProxy, tokio::net::TcpListener) {
        let dir = std::env::temp_dir().join(format!(
            "pier-haproxy-{}-{}",
            std::process::id(),
            NEXT_DIR.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let panel = listener.local_addr().unwrap();
        let files = Files::in_dir(&dir);
        let config = files.config(http, free_addr(), panel, Some("panel.pier.test".into()));
        (TestProxy { files, config }, listener)
    }
}

/// Serves `router` on `listener`, as the panel behind a test's HAProxy.
pub fn serve_panel(listener: tokio::net::TcpListener, router: Router) {
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap()
    });
}

static NEXT_DIR: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

pub use test_support::ports::free_addr;

/// Settings for tests: short engine waits, and every container and network marked
/// `pier.test=1` so `scripts/services.sh stop` can sweep up after a crashed test.
pub fn test_settings() -> Settings {
    let mut s = Settings::default();
    s.engine.resync_secs = 2;
    s.engine.health_timeout_secs = 20;
    s.engine.stats_every_secs = 1;
    s.engine.stop_timeout_secs = 3;
    s.engine.extra_labels = vec![("pier.test".into(), "1".into())];
    // Never let a test make Docker reach out past this machine: only loopback registries.
    let local = std::env::var("PIER_TEST_REGISTRY").unwrap_or_else(|_| "127.0.0.1:5123".into());
    s.engine.allowed_registries = vec![local, "127.0.0.1:9".into()];
    s.engine.drain_ms = 300;
    s.routing.base_domain = Some("apps.pier.test".into());
    s.routing.panel_host = Some("panel.pier.test".into());
    // Proofs of ownership are tested on their own (api_domains.rs); elsewhere the mock names
    // are taken as the tenant's.
    s.routing.require_domain_proof = false;
    // The panel's own certificate is ordered only where a test asks for it (certs.rs), so the
    // others count just their domains' orders.
    s.acme.panel_certificate = false;
    // Webhook receivers in the tests listen on loopback; retries come after a second.
    s.notify.allow_private_webhooks = true;
    s.notify.retry_base_secs = 1;
    s
}

fn docker() -> std::sync::Arc<dyn pier_core::runtime::Runtime> {
    std::sync::Arc::new(pier::engine::docker::DockerRuntime::new(
        std::env::temp_dir().join("pier-test-volumes"),
    ))
}

pub fn serve_args() -> ServeArgs {
    ServeArgs {
        listen: "127.0.0.1:0".parse().unwrap(),
        base_domain: None,
        panel_host: None,
        site_root: "target/site".into(),
        allowed_registries: Vec::new(),
        backup_target_hosts: Vec::new(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        https_addr: "127.0.0.1:0".parse().unwrap(),
        no_proxy: true,
        allow_wildcard_domains: false,
        no_domain_proof: false,
        no_audit_log: false,
        notify_allow_private_webhooks: true,
        notify_hosts: Vec::new(),
        smtp_ca_file: None,
        tag_check_hours: 6,
        // Counts requests (the listener itself is not opened here; tests/metrics.rs scrapes the
        // metrics router directly).
        metrics_listen: Some("127.0.0.1:0".parse().unwrap()),
        public_addrs: Vec::new(),
        dns_server: None,
        acme_directory: pier_core::certs::LETS_ENCRYPT.into(),
        acme_email: None,
        acme_ca_file: None,
        no_acme: true,
        egress_block_private: false,
        engine: pier::config::EngineMode::Docker,
        swarm_encrypt: false,
    }
}

impl TestApp {
    pub async fn new(db: SqlitePool) -> Self {
        Self::with_settings(db, test_settings()).await
    }

    pub async fn with_settings(db: SqlitePool, settings: Settings) -> Self {
        Self::started(db, SecretKey::generate(), settings, None, None).await
    }

    /// A panel whose engine is the one at this Unix socket (a Swarm manager of
    /// `scripts/swarm.sh`, say) instead of the host's.
    pub async fn on_engine(db: SqlitePool, socket: &str) -> Self {
        let runtime: Arc<dyn pier_core::runtime::Runtime> =
            Arc::new(pier::engine::docker::DockerRuntime::at(
                std::env::temp_dir().join("pier-test-volumes"),
                Some(socket.to_owned()),
            ));
        Self::started_on(
            db,
            SecretKey::generate(),
            test_settings(),
            None,
            None,
            runtime,
        )
        .await
    }

    /// A panel running apps as Swarm services on the manager at `socket` (`scripts/swarm.sh`),
    /// pulling from `registry`, with its own HAProxy on loopback ports.
    pub async fn on_swarm(db: SqlitePool, socket: &str, registry: &str) -> Self {
        let local = pier::engine::docker::DockerRuntime::at(
            std::env::temp_dir().join("pier-test-volumes"),
            Some(socket.to_owned()),
        );
        let runtime: Arc<dyn pier_core::runtime::Runtime> = Arc::new(
            pier::engine::swarm::runtime::SwarmRuntime::new(local, false),
        );
        let mut settings = test_settings();
        settings.engine.allowed_registries = vec![registry.to_owned()];
        // A task is placed, its image pulled on its machine, then started (seconds here).
        settings.engine.health_timeout_secs = 30;
        let (tp, listener) = TestProxy::bind(free_addr()).await;
        let proxy = Proxy::start(tp.files, tp.config)
            .await
            .expect("haproxy starts");
        let app = Self::started_on(
            db,
            SecretKey::generate(),
            settings,
            Some(proxy),
            None,
            runtime,
        )
        .await;
        serve_panel(listener, app.router.clone());
        app
    }

    /// A panel with its own real HAProxy on loopback ports (stopped when the test ends).
    pub async fn with_proxy(db: SqlitePool) -> Self {
        let (tp, listener) = TestProxy::bind(free_addr()).await;
        let proxy = Proxy::start(tp.files, tp.config)
            .await
            .expect("haproxy starts");
        let app = Self::started(
            db,
            SecretKey::generate(),
            test_settings(),
            Some(proxy),
            None,
        )
        .await;
        serve_panel(listener, app.router.clone());
        app
    }

    /// A panel with its own HAProxy and an ACME test CA (pebble) of its own, which validates
    /// HTTP-01 challenges on this HAProxy's HTTP port; retries are fast.
    pub async fn with_acme(db: SqlitePool) -> Self {
        Self::with_acme_settings(db, |_| {}).await
    }

    pub async fn with_acme_settings(db: SqlitePool, tweak: impl FnOnce(&mut Settings)) -> Self {
        let http = free_addr();
        let pebble = Pebble::start(http.port(), mock_dns().0);
        let mut settings = test_settings();
        tweak(&mut settings);
        settings.acme.enabled = true;
        settings.acme.directory = pebble.directory.clone();
        settings.acme.ca_file = Some(pebble.ca_file.clone());
        settings.acme.retry_base_secs = 1;
        let (tp, listener) = TestProxy::bind(http).await;
        let proxy = Proxy::start(tp.files, tp.config)
            .await
            .expect("haproxy starts");
        let app = Self::started(
            db,
            SecretKey::generate(),
            settings,
            Some(proxy),
            Some(pebble),
        )
        .await;
        serve_panel(listener, app.router.clone());
        app
    }

    /// Starts a panel the way `pier serve` does ([`launch`]), with the bootstrap admin.
    async fn started(
        db: SqlitePool,
        key: SecretKey,
        settings: Settings,
        proxy: Option<Arc<Proxy>>,
        pebble: Option<Pebble>,
    ) -> TestApp {
        Self::started_on(db, key, settings, proxy, pebble, docker()).await
    }

    async fn started_on(
        db: SqlitePool,
        key: SecretKey,
        settings: Settings,
        proxy: Option<Arc<Proxy>>,
        pebble: Option<Pebble>,
        runtime: Arc<dyn pier_core::runtime::Runtime>,
    ) -> TestApp {
        let handles = launch(Parts {
            db,
            key,
            settings,
            runtime,
            resolver: None,
            proxy,
            challenges: Challenges::default(),
        });
        let pier = handles.pier.clone();
        pier.create_admin_from_cli(ADMIN_EMAIL, ADMIN_PASSWORD)
            .await
            .expect("bootstrap admin");
        let instance = pier.instance_id().await.expect("instance id");
        TestApp {
            router: Self::router_for(&pier, &handles.challenges),
            proxy: handles.proxy.clone(),
            pier,
            handles,
            instance,
            pebble,
        }
    }

    fn router_for(pier: &Pier, challenges: &Challenges) -> Router {
        Self::router_from(pier, challenges, SocketAddr::from(([127, 0, 0, 1], 40000)))
    }

    /// The router as seen by connections from `peer` (loopback: as through HAProxy).
    fn router_from(pier: &Pier, challenges: &Challenges, peer: SocketAddr) -> Router {
        let mut state = AppState::new(pier.clone(), &serve_args());
        state.challenges = challenges.clone();
        router(state).layer(MockConnectInfo(peer))
    }

    /// The HAProxy of this panel.
    pub fn proxy(&self) -> &Arc<Proxy> {
        self.proxy.as_ref().expect("a TestApp made with_proxy")
    }

    /// The same database and key behind a brand-new service, router and engine, as after a
    /// restart. Call [`TestApp::kill`] on the old one first to model a crash.
    pub async fn restarted(&self) -> TestApp {
        // HAProxy kept running; the new panel adopts it.
        let proxy = match &self.proxy {
            Some(p) => Some(
                Proxy::start(p.files().clone(), p.config().clone())
                    .await
                    .expect("haproxy adopted"),
            ),
            None => None,
        };
        self.restarted_with(proxy).await
    }

    /// As [`TestApp::restarted`], in front of `proxy` (one a test adopted itself).
    pub async fn restarted_with(&self, proxy: Option<Arc<Proxy>>) -> TestApp {
        let handles = launch(Parts {
            db: self.pier.db().clone(),
            key: self.pier.key().clone(),
            settings: self.pier.settings().clone(),
            runtime: docker(),
            resolver: None,
            proxy,
            challenges: Challenges::default(),
        });
        let pier = handles.pier.clone();
        TestApp {
            router: Self::router_for(&pier, &handles.challenges),
            proxy: handles.proxy.clone(),
            pier,
            handles,
            instance: self.instance.clone(),
            pebble: None,
        }
    }

    /// Stops this panel's engine at once, wherever it is (mid-pull, mid-create…), as a crash.
    pub fn kill(&mut self) {
        self.handles.abort();
    }

    /// This installation's containers, straight from Docker.
    pub async fn containers(&self) -> Vec<pier_core::runtime::Container> {
        let instance = self.pier.instance_id().await.unwrap();
        self.pier.runtime().containers(&instance).await.unwrap()
    }

    pub fn browser(&self) -> Browser {
        Browser {
            router: self.router.clone(),
            cookie: None,
            csrf_cookie: None,
            forwarded_for: None,
            headers: Vec::new(),
        }
    }

    /// A browser talking to the panel directly from `peer`, not through HAProxy.
    pub fn browser_from(&self, peer: SocketAddr) -> Browser {
        Browser {
            router: Self::router_from(&self.pier, &Challenges::default(), peer),
            ..self.browser()
        }
    }

    /// A browser signed in as the bootstrap admin.
    pub async fn admin(&self) -> Browser {
        let mut b = self.browser();
        b.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD)
            .await
            .expect("admin signs in");
        b
    }

    /// Creates a member with a password, and a browser signed in as them.
    pub async fn member(&self, email: &str) -> Browser {
        let mut admin = self.admin().await;
        let r = admin
            .call(
                "create_user",
                &[
                    ("email", email),
                    ("role", "member"),
                    ("password", "member password 1"),
                    ("max_apps", ""),
                    ("max_memory_mb", ""),
                    ("max_cpus", ""),
                ],
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let mut b = self.browser();
        b.sign_in(email, "member password 1")
            .await
            .expect("member signs in");
        b
    }

    /// A REST call with an optional bearer token and JSON body.
    pub async fn api(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> Reply {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("/api/v1{path}"));
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = match body {
            Some(b) => req
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(b.to_string())),
            None => req.body(Body::empty()),
        }
        .unwrap();
        self.browser().send(req).await
    }

    /// A token for a user, as `pier token create` makes it.
    pub async fn token(&self, email: &str, scope: &str) -> String {
        self.pier
            .create_token_from_cli(email, "test", scope)
            .await
            .expect("token")
            .1
    }

    /// Has the bootstrap admin add another admin (password "second admin pw").
    pub async fn second_admin(&self, admin: &mut Browser, email: &str) {
        let r = admin
            .call(
                "create_user",
                &[
                    ("email", email),
                    ("role", "admin"),
                    ("password", "second admin pw"),
                    ("max_apps", ""),
                    ("max_memory_mb", ""),
                    ("max_cpus", ""),
                ],
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }

    pub async fn user_id(&self, email: &str) -> i64 {
        pier_core::repo::users::by_email(self.pier.db(), email)
            .await
            .unwrap()
            .expect("user exists")
            .id
    }
}

#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// The message of a server function error.
    pub fn error_code(&self) -> String {
        self.json()["code"].as_str().unwrap_or_default().to_owned()
    }

    /// The message for `field` in a REST error (`{"error": {"fields": [{"field", "message"}]}}`).
    pub fn api_field(&self, field: &str) -> String {
        self.json()["error"]["fields"]
            .as_array()
            .unwrap_or_else(|| panic!("no fields: {}", self.body))
            .iter()
            .find(|f| f["field"] == field)
            .unwrap_or_else(|| panic!("no message for {field}: {}", self.body))["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    pub fn field_error(&self, field: &str) -> Option<String> {
        self.json()["fields"]
            .as_array()?
            .iter()
            .find(|f| f[0] == field)
            .map(|f| f[1].as_str().unwrap_or_default().to_owned())
    }
}

pub struct Browser {
    router: Router,
    /// The session cookie (`name=value`), when the panel set one.
    pub cookie: Option<String>,
    /// A visitor's CSRF cookie (`name=value`), when the panel set one.
    pub csrf_cookie: Option<String>,
    pub forwarded_for: Option<String>,
    /// Header lines added to every request (appended: a name may repeat).
    pub headers: Vec<(&'static str, String)>,
}

impl Browser {
    pub async fn send(&mut self, req: Request<Body>) -> Reply {
        let mut req = req;
        let jar: Vec<&str> = [&self.cookie, &self.csrf_cookie]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect();
        if !jar.is_empty() {
            req.headers_mut()
                .insert(header::COOKIE, jar.join("; ").parse().unwrap());
        }
        if let Some(ip) = &self.forwarded_for {
            req.headers_mut()
                .insert("x-forwarded-for", ip.parse().unwrap());
        }
        for (name, value) in &self.headers {
            req.headers_mut().append(*name, value.parse().unwrap());
        }
        let res = self.router.clone().oneshot(req).await.unwrap();
        for sc in res.headers().get_all(header::SET_COOKIE) {
            let sc = sc.to_str().unwrap();
            let pair = sc.split(';').next().unwrap();
            let slot = if pair.contains("pier_csrf=") {
                &mut self.csrf_cookie
            } else {
                &mut self.cookie
            };
            if sc.contains("Max-Age=0") {
                *slot = None;
            } else {
                *slot = Some(pair.to_owned());
            }
        }
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        Reply {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    pub async fn get(&mut self, path: &str) -> Reply {
        self.send(
            Request::get(path)
                .header(header::ACCEPT, "text/html")
                .body(Body::empty())
                .unwrap(),
        )
        .await
    }

    /// The session state as the page sees it (`me` and the CSRF token).
    pub async fn session(&mut self) -> serde_json::Value {
        let r = self
            .send(
                Request::get("/rpc/session")
                    .header(header::ACCEPT, "application/json")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        r.json()
    }

    pub async fn csrf(&mut self) -> String {
        self.session().await["csrf"].as_str().unwrap().to_owned()
    }

    /// Posts a form to a server function with the session's CSRF token, as `PostForm` does.
    pub async fn call(&mut self, endpoint: &str, fields: &[(&str, &str)]) -> Reply {
        let token = self.csrf().await;
        let mut all: Vec<(&str, &str)> = fields.to_vec();
        all.push(("csrf_token", &token));
        self.post_form(endpoint, &all).await
    }

    /// Posts a form exactly as given (no token added).
    pub async fn post_form(&mut self, endpoint: &str, fields: &[(&str, &str)]) -> Reply {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        self.send(
            Request::builder()
                .method(Method::POST)
                .uri(format!("/rpc/{endpoint}"))
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header(header::ACCEPT, "application/json")
                .body(Body::from(body))
                .unwrap(),
        )
        .await
    }

    /// A GET server function returning JSON.
    pub async fn read(&mut self, endpoint: &str) -> Reply {
        self.send(
            Request::get(format!("/rpc/{endpoint}"))
                .header(header::ACCEPT, "application/json")
                .body(Body::empty())
                .unwrap(),
        )
        .await
    }

    /// Posts the sign-in form with exactly this CSRF token.
    pub async fn login_with(&mut self, email: &str, password: &str, csrf_token: &str) -> Reply {
        self.post_form(
            "login",
            &[
                ("email", email),
                ("password", password),
                ("csrf_token", csrf_token),
            ],
        )
        .await
    }

    pub async fn sign_in(&mut self, email: &str, password: &str) -> Result<(), Reply> {
        let r = self
            .call("login", &[("email", email), ("password", password)])
            .await;
        if r.status == StatusCode::OK {
            Ok(())
        } else {
            Err(r)
        }
    }

    pub async fn me(&mut self) -> Option<String> {
        self.session().await["me"]["email"]
            .as_str()
            .map(str::to_owned)
    }
}

impl Drop for TestApp {
    /// Removes every container and network this installation made (found by its label).
    fn drop(&mut self) {
        self.kill();
        sweep(&self.instance);
        if let Some(p) = &self.proxy {
            // A supervisor aborted while it was starting HAProxy again leaves a process that
            // writes its pid file a moment later: look again until the file names no live one.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
            loop {
                pier::proxy::kill_pidfile(&p.files().pidfile);
                std::thread::sleep(std::time::Duration::from_millis(100));
                if !haproxy_alive(&p.files().pidfile) || std::time::Instant::now() > deadline {
                    break;
                }
            }
            let _ = std::fs::remove_dir_all(&p.files().dir);
        }
    }
}

/// Whether the pid file names a running (not zombie) haproxy.
fn haproxy_alive(pidfile: &std::path::Path) -> bool {
    let Some(pid) = std::fs::read_to_string(pidfile)
        .ok()
        .and_then(|t| t.trim().parse::<u32>().ok())
    else {
        return false;
    };
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let zombie = stat
        .rsplit_once(')')
        .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
    comm.trim() == "haproxy" && !zombie
}

/// Removes everything labelled with this instance from Docker, then its volumes' file systems
/// (loop devices detached, images deleted).
pub fn sweep(instance: &str) {
    test_support::docker::remove_labelled(instance);
    test_support::docker::remove_volume_files(&volumes_dir(), &format!("pier-{instance}-v"));
}

/// Where the tests' Docker runtime keeps volume file systems.
pub fn volumes_dir() -> std::path::PathBuf {
    std::env::temp_dir().join("pier-test-volumes")
}

/// The local registry `scripts/services.sh start` runs (its env file is read when the variables
/// are not set), as (host:port, user, password).
pub fn registry() -> (String, String, String) {
    if std::env::var("PIER_TEST_REGISTRY").is_err() {
        let path =
            std::env::var("PIER_SERVICES_DIR").unwrap_or_else(|_| "/tmp/pier-services".into());
        let text = std::fs::read_to_string(format!("{path}/env")).unwrap_or_else(|_| {
            panic!("no test registry: run `scripts/services.sh start` (scripts/test.sh does)")
        });
        for line in text.lines() {
            if let Some((k, v)) = line.trim_start_matches("export ").split_once('=') {
                std::env::set_var(k, v.trim_matches(|c| c == '"' || c == '\''));
            }
        }
    }
    let get = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} is not set"));
    (
        get("PIER_TEST_REGISTRY"),
        get("PIER_TEST_REGISTRY_USER"),
        get("PIER_TEST_REGISTRY_PASSWORD"),
    )
}

/// The mock DNS server `scripts/services.sh start` runs (pebble-challtestsrv): (DNS address,
/// management address).
pub fn mock_dns() -> (SocketAddr, String) {
    let _ = registry(); // loads the env file
    let get = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} is not set"));
    (
        get("PIER_TEST_DNS").parse().expect("PIER_TEST_DNS"),
        get("PIER_TEST_DNS_MANAGEMENT"),
    )
}

/// One call to the mock DNS server's management API.
fn mock_dns_call(management: &str, path: &str, body: &serde_json::Value, host: &str) {
    let ok = std::process::Command::new("curl")
        .args([
            "-sf",
            "--noproxy",
            "*",
            "-X",
            "POST",
            "-d",
            &body.to_string(),
        ])
        .arg(format!("http://{management}/{path}"))
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "the mock DNS server refused {path} for {host}");
}

/// Sets (Some) or clears (None) the mock DNS server's TXT record for `host`.
pub fn mock_dns_txt(management: &str, host: &str, value: Option<&str>) {
    let (path, body) = match value {
        Some(v) => (
            "set-txt",
            serde_json::json!({ "host": format!("{host}."), "value": v }),
        ),
        None => (
            "clear-txt",
            serde_json::json!({ "host": format!("{host}.") }),
        ),
    };
    mock_dns_call(management, path, &body, host);
}

/// Sets (or with an empty list, clears) the mock DNS server's A records for `host`.
pub fn mock_dns_a(management: &str, host: &str, addresses: &[&str]) {
    let (path, body) = if addresses.is_empty() {
        ("clear-a", serde_json::json!({ "host": format!("{host}.") }))
    } else {
        (
            "add-a",
            serde_json::json!({ "host": format!("{host}."), "addresses": addresses }),
        )
    };
    mock_dns_call(management, path, &body, host);
}

/// One test at a time uses the three-engine Swarm: some drain or cut off machines, others
/// count on every machine taking tasks.
pub static SWARM: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Pier's firewall rules are the host's, shared by every panel the tests run at once. A test
/// that takes them down to see them come back holds this for writing; a test whose checks rely
/// on them (a container must not reach something) holds it for reading while it checks.
pub static FIREWALL: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());
