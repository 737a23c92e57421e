//! The rendered HAProxy configuration against a real `haproxy` on loopback ports: it validates,
//! routes HTTPS by host name to the app's backend, answers unknown hosts with 404, redirects
//! plain HTTP to HTTPS, sends ACME challenges to the panel, and takes route and server changes
//! through the runtime API at once (an app's requests balanced over all its addresses); a
//! HAProxy an older Pier left running keeps serving until the new one moves it over.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{SocketAddr, TcpListener},
    path::Path,
    process::{Child, Command},
    time::{Duration, Instant},
};

use axum::{routing::get, Router};
use pier::proxy::{
    config::{render, ProxyConfig},
    table::{render_backends, render_map},
    RouteTable,
};

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A tiny HTTP server on a loopback port answering `body` (and ACME tokens for the panel).
async fn serve(body: &'static str) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = Router::new()
        .route("/", get(move || async move { body }))
        .route(
            "/slow",
            get(move || async move {
                tokio::time::sleep(Duration::from_millis(1500)).await;
                body
            }),
        )
        .route(
            "/.well-known/acme-challenge/{token}",
            get(
                move |axum::extract::Path(t): axum::extract::Path<String>| async move {
                    format!("{body}:{t}")
                },
            ),
        );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    port
}

/// haproxy, killed when dropped.
struct Haproxy(Child);

impl Drop for Haproxy {
    /// SIGTERM to the master, which stops its worker and exits; SIGKILL if it lingers.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `curl` on loopback: (status, body, redirect target).
fn curl(args: &[&str]) -> (u16, String, String) {
    let out = Command::new("curl")
        .args([
            "-sk",
            "--max-time",
            "5",
            "-w",
            "\n%{http_code} %{redirect_url}",
        ])
        .args(args)
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, tail) = text.rsplit_once('\n').unwrap_or(("", &text));
    let mut parts = tail.splitn(2, ' ');
    let status = parts.next().unwrap_or("0").parse().unwrap_or(0);
    (
        status,
        body.to_owned(),
        parts.next().unwrap_or("").to_owned(),
    )
}

fn self_signed(dir: &Path) -> std::path::PathBuf {
    let (key, cert) = (dir.join("k.pem"), dir.join("c.pem"));
    let ok = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .args(["-days", "1", "-subj", "/CN=pier-default"])
        .output()
        .expect("openssl")
        .status
        .success();
    assert!(ok, "openssl could not make a certificate");
    let pem = dir.join("default.pem");
    let both = [std::fs::read(&cert).unwrap(), std::fs::read(&key).unwrap()].concat();
    std::fs::write(&pem, both).unwrap();
    pem
}

#[tokio::test]
async fn rendered_config_routes_by_host_on_a_real_haproxy() {
    let dir = std::env::temp_dir().join(format!("pier-proxy-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let app_port = serve("app says hi").await;
    let panel_port = serve("panel").await;
    let cfg = ProxyConfig {
        http_addr: free_addr(),
        https_addr: free_addr(),
        panel_addr: SocketAddr::from(([127, 0, 0, 1], panel_port)),
        panel_host: Some("panel.example.com".into()),
        stats_socket: dir.join("admin.sock"),
        hosts_map: dir.join("hosts.map"),
        default_cert: self_signed(&dir),
        crt_list: dir.join("certs.list"),
        run_as: None,
        threads: 1,
    };
    std::fs::write(&cfg.crt_list, "").unwrap();
    // App 1 is served by `app_port`, app 2 by the panel's port (a stand-in), app 3 has no
    // address yet.
    let at = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    std::fs::write(
        &cfg.hosts_map,
        render_map(&BTreeMap::from([("a.example.com".into(), 1)])),
    )
    .unwrap();
    let mut text = render(&cfg);
    render_backends(
        &mut text,
        &RouteTable {
            backends: BTreeMap::from([
                (1, BTreeSet::from([at(app_port)])),
                (2, BTreeSet::from([at(panel_port)])),
                (3, BTreeSet::new()),
            ]),
            ..Default::default()
        },
    );
    let file = dir.join("haproxy.cfg");
    std::fs::write(&file, text).unwrap();

    let check = Command::new("haproxy")
        .arg("-c")
        .arg("-f")
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "haproxy -c: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(
        !String::from_utf8_lossy(&check.stderr).contains("WARNING"),
        "warnings: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let _haproxy = Haproxy(
        Command::new("haproxy")
            .arg("-W")
            .arg("-f")
            .arg(&file)
            .spawn()
            .expect("haproxy"),
    );
    let https = cfg.https_addr.port();
    let resolve = |host: &str| format!("{host}:{https}:127.0.0.1");
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpListener::bind(cfg.https_addr).is_ok() {
        assert!(Instant::now() < deadline, "haproxy never listened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let c = |args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        curl(&args)
    };
    // HTTPS by host name to the mapped loopback port (blocking curl off the runtime).
    let r = tokio::task::spawn_blocking({
        let (r, u) = (
            resolve("a.example.com"),
            format!("https://a.example.com:{https}/"),
        );
        move || c(vec!["--resolve".into(), r, u])
    })
    .await
    .unwrap();
    assert_eq!((r.0, r.1.as_str()), (200, "app says hi"));
    // The panel's own host name goes to the panel.
    let r = tokio::task::spawn_blocking({
        let (r, u) = (
            resolve("panel.example.com"),
            format!("https://panel.example.com:{https}/"),
        );
        move || c(vec!["--resolve".into(), r, u])
    })
    .await
    .unwrap();
    assert_eq!((r.0, r.1.as_str()), (200, "panel"));
    // Unknown host: a clean 404 from HAProxy itself.
    let r = tokio::task::spawn_blocking({
        let (r, u) = (
            resolve("b.example.com"),
            format!("https://b.example.com:{https}/"),
        );
        move || c(vec!["--resolve".into(), r, u])
    })
    .await
    .unwrap();
    assert_eq!(r.0, 404);
    assert!(r.1.contains("No site is served"), "{}", r.1);
    // Plain HTTP: redirected to HTTPS, except ACME challenges, which the panel answers.
    let http = format!("http://127.0.0.1:{}", cfg.http_addr.port());
    let r = tokio::task::spawn_blocking({
        let u = format!("{http}/some/page");
        move || c(vec!["-H".into(), "Host: a.example.com".into(), u])
    })
    .await
    .unwrap();
    // HTTPS is not on 443 here, so the redirect names its port.
    assert_eq!(
        (r.0, r.2),
        (
            301,
            format!("https://a.example.com:{}/some/page", cfg.https_addr.port())
        )
    );
    let r = tokio::task::spawn_blocking({
        let u = format!("{http}/.well-known/acme-challenge/tok123");
        move || c(vec!["-H".into(), "Host: a.example.com".into(), u])
    })
    .await
    .unwrap();
    assert_eq!((r.0, r.1.as_str()), (200, "panel:tok123"));

    // Route changes through the runtime API, effective at once, no reload.
    use pier::proxy::runtime::{
        add_server, command, delete_server, remove_route, remove_server, set_route,
    };
    let sock = cfg.stats_socket.clone();
    set_route(&sock, &cfg.hosts_map, "c.example.com", 2)
        .await
        .unwrap();
    let get = |host: &'static str| {
        let (r, u) = (resolve(host), format!("https://{host}:{https}/"));
        tokio::task::spawn_blocking(move || c(vec!["--resolve".into(), r, u]))
    };
    let r = get("c.example.com").await.unwrap();
    assert_eq!((r.0, r.1.as_str()), (200, "panel"));
    // Moved to another port, then removed.
    set_route(&sock, &cfg.hosts_map, "c.example.com", 1)
        .await
        .unwrap();
    assert_eq!(get("c.example.com").await.unwrap().1, "app says hi");

    // Several addresses for one app: requests go to each in turn; one taken out gets no more;
    // none left answers 503. No reload: the same workers throughout.
    let workers = command(&sock, "show info").await.unwrap();
    let pid = workers
        .lines()
        .find(|l| l.starts_with("Pid:"))
        .unwrap()
        .to_owned();
    let (one, two) = (serve("replica one").await, serve("replica two").await);
    set_route(&sock, &cfg.hosts_map, "r.example.com", 3)
        .await
        .unwrap();
    assert_eq!(get("r.example.com").await.unwrap().0, 503, "no address yet");
    add_server(&sock, 3, at(one)).await.unwrap();
    add_server(&sock, 3, at(two)).await.unwrap();
    // Adding again is fine (a retried sync).
    add_server(&sock, 3, at(two)).await.unwrap();
    let mut seen = BTreeSet::new();
    for _ in 0..6 {
        let r = get("r.example.com").await.unwrap();
        assert_eq!(r.0, 200);
        seen.insert(r.1);
    }
    assert_eq!(
        seen,
        BTreeSet::from(["replica one".to_string(), "replica two".to_string()])
    );
    assert!(
        remove_server(&sock, 3, at(one)).await.unwrap(),
        "idle: deleted"
    );
    for _ in 0..4 {
        assert_eq!(get("r.example.com").await.unwrap().1, "replica two");
    }
    // Removing what is gone is fine too.
    assert!(remove_server(&sock, 3, at(one)).await.unwrap());
    // A server with a request under way stays (in maintenance) until the request is done; the
    // request is answered, and new ones go elsewhere meanwhile.
    add_server(&sock, 3, at(one)).await.unwrap();
    remove_server(&sock, 3, at(one)).await.unwrap();
    let slow = tokio::task::spawn_blocking({
        let (r, u) = (
            resolve("r.example.com"),
            format!("https://r.example.com:{https}/slow"),
        );
        move || c(vec!["--resolve".into(), r, u])
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !remove_server(&sock, 3, at(two)).await.unwrap(),
        "kept while its request runs"
    );
    assert_eq!(
        get("r.example.com").await.unwrap().0,
        503,
        "no new requests"
    );
    assert_eq!(
        slow.await.unwrap(),
        (200, "replica two".into(), String::new())
    );
    assert!(
        delete_server(&sock, 3, at(two)).await.unwrap(),
        "deleted once idle"
    );
    assert_eq!(get("r.example.com").await.unwrap().0, 503);
    // Back again after removal.
    add_server(&sock, 3, at(one)).await.unwrap();
    assert_eq!(get("r.example.com").await.unwrap().1, "replica one");
    // A backend that does not exist is an error (the caller reloads).
    assert!(add_server(&sock, 99, at(one)).await.is_err());
    assert!(remove_server(&sock, 99, at(one)).await.is_err());
    let still = command(&sock, "show info").await.unwrap();
    assert!(still.contains(&pid), "no reload happened");
    remove_route(&sock, &cfg.hosts_map, "c.example.com")
        .await
        .unwrap();
    assert_eq!(get("c.example.com").await.unwrap().0, 404);
    // Nothing unchecked reaches the socket: a second command smuggled in a host is refused.
    for bad in [
        "x.example.com\nshutdown frontend https",
        "x.example.com; del map",
        "X.Example.com",
    ] {
        assert!(
            set_route(&sock, &cfg.hosts_map, bad, 1).await.is_err(),
            "{bad:?}"
        );
    }
    assert!(command(&sock, "show map")
        .await
        .unwrap()
        .contains("hosts.map"));
    assert_eq!(get("a.example.com").await.unwrap().1, "app says hi");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A HAProxy a Pier of the one-map era left running (host → `127.0.0.1:port`, one shared
/// backend): the new Pier adopts it without a reload, so its sites keep answering, and the
/// first route sync moves it to a backend per app.
#[tokio::test]
async fn a_haproxy_from_before_app_backends_keeps_serving_until_the_first_sync() {
    use pier::proxy::{runtime::command, Files, Proxy, RouteTable};
    let dir = std::env::temp_dir().join(format!("pier-proxy-legacy-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let files = Files::in_dir(&dir);
    let cfg = files.config(free_addr(), free_addr(), free_addr(), None);
    let app_port = serve("old era").await;
    // Whatever happens, the HAProxy this test starts is stopped by its pid file.
    struct Stop(std::path::PathBuf);
    impl Drop for Stop {
        fn drop(&mut self) {
            pier::proxy::kill_pidfile(&self.0);
        }
    }
    let _stop = Stop(files.pidfile.clone());
    let https = cfg.https_addr.port();
    let get = move |host: &'static str| {
        let (r, u) = (
            format!("{host}:{https}:127.0.0.1"),
            format!("https://{host}:{https}/"),
        );
        tokio::task::spawn_blocking(move || curl(&["--resolve", &r, &u]))
    };

    // Today's Pier starts HAProxy; then its files are turned into the old era's, as that Pier
    // wrote them, and HAProxy is reloaded on them by hand.
    let proxy = Proxy::start(files.clone(), cfg.clone()).await.unwrap();
    let text = std::fs::read_to_string(&files.cfg).unwrap().replace(
        "    use_backend %[var(txn.route)] if { var(txn.route) -m found }\n",
        "    use_backend apps if { var(txn.route) -m found }\n",
    );
    let text = format!(
        "{text}\nbackend apps\n    http-request set-dst var(txn.route),field(1,:)\n    http-request set-dst-port var(txn.route),field(2,:)\n    retries 0\n    server app 0.0.0.0:0\n"
    );
    std::fs::write(&files.cfg, text).unwrap();
    std::fs::write(
        &cfg.hosts_map,
        format!("a.example.com 127.0.0.1:{app_port}\n"),
    )
    .unwrap();
    let before = proxy.workers().await.unwrap();
    command(&files.master_socket, "reload").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let workers = loop {
        let now = proxy.workers().await.unwrap_or_default();
        if !now.is_empty() && now.iter().all(|p| !before.contains(p)) {
            break now;
        }
        assert!(
            Instant::now() < deadline,
            "the old-era reload never happened"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    drop(proxy);
    assert_eq!(get("a.example.com").await.unwrap().1, "old era");

    // The new Pier adopts it: no reload, the site still answers.
    let proxy = Proxy::start(files.clone(), cfg.clone()).await.unwrap();
    assert_eq!(proxy.workers().await.unwrap(), workers, "adopted as it is");
    assert_eq!(get("a.example.com").await.unwrap().1, "old era");
    // The first sync gives the app its backend.
    let at = SocketAddr::from(([127, 0, 0, 1], app_port));
    proxy
        .set_routes(RouteTable {
            hosts: BTreeMap::from([("a.example.com".to_string(), 7)]),
            backends: BTreeMap::from([(7, BTreeSet::from([at]))]),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_ne!(proxy.workers().await.unwrap(), workers, "reloaded");
    assert_eq!(get("a.example.com").await.unwrap().1, "old era");
    assert!(std::fs::read_to_string(&files.cfg)
        .unwrap()
        .contains("backend app7\n"));
    proxy.stop().await;
    drop(_stop);
    let _ = std::fs::remove_dir_all(&dir);
}
