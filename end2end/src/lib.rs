//! Test support for Pier's browser tests: start `pier serve` and `chromedriver` on loopback ports,
//! drive chromium through fantoccini, and stop every process (by process group) even when a test
//! panics.

use std::{
    io::{BufRead, Write},
    net::{TcpListener, TcpStream},
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

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

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
    pub data_dir: PathBuf,
    _proc: Proc,
}

impl Panel {
    pub fn start(admin_email: &str, admin_password: &str) -> Panel {
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
        let proc = Proc::spawn(
            "pier serve",
            Command::new(&bin)
                .arg("--data-dir")
                .arg(&data_dir)
                .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
                .arg("--site-root")
                .arg(site_root())
                .env("PIER_LOG", "warn"),
        );
        wait_until("pier /healthz", Duration::from_secs(20), || {
            http_status(port, "/healthz") == Some(200)
        });
        Panel {
            port,
            data_dir,
            _proc: proc,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Panel {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// chromedriver on a loopback port, for any number of browser sessions.
pub struct Driver {
    pub port: u16,
    _proc: Proc,
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
        Driver { port, _proc: proc }
    }

    /// A new headless chromium with an empty profile.
    pub async fn browser(&self) -> fantoccini::Client {
        let profile = std::env::temp_dir().join(format!(
            "pier-e2e-chrome-{}-{}",
            std::process::id(),
            free_port()
        ));
        let caps = serde_json::json!({
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.display()),
                ]
            }
        });
        let serde_json::Value::Object(caps) = caps else {
            unreachable!()
        };
        let http = hyper_util::client::legacy::connect::HttpConnector::new();
        fantoccini::ClientBuilder::new(http)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("a chromium session")
    }
}
