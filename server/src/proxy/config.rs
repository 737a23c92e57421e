//! HAProxy's configuration, rendered from typed values only (the apps' backends are added by
//! `table`). Host names reach the files only after `pier_core::validate::domain` (or `hostname`)
//! accepted them, and ports are numbers, so nothing a user typed can add a line.

use std::{fmt::Write, net::SocketAddr, path::PathBuf};

/// Where HAProxy listens and where its files are.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub http_addr: SocketAddr,
    pub https_addr: SocketAddr,
    /// The panel's own address (loopback); ACME challenges and the panel host go there.
    pub panel_addr: SocketAddr,
    /// The panel's public host name, if it has one.
    pub panel_host: Option<String>,
    /// Runtime API socket (admin level; only root and Pier can reach it).
    pub stats_socket: PathBuf,
    /// `host app<id>` lines: which app's backend serves which host.
    pub hosts_map: PathBuf,
    /// The certificate used until a host has its own (self-signed).
    pub default_cert: PathBuf,
    /// Per-host certificates (HAProxy crt-list).
    pub crt_list: PathBuf,
    /// The user (and group of the same name) HAProxy's workers run as once the ports are bound;
    /// None: as whoever started it.
    pub run_as: Option<String>,
    /// HAProxy's worker threads (`threads_for`).
    pub threads: usize,
}

/// How many threads HAProxy gets on a machine with `cpus` CPUs: half of them, rounded up. Its
/// default, one per CPU, lets it take every core from the apps it serves, and its threads then
/// wake each other across cores for the same requests: on two cores one thread passed 13 % more
/// requests/s through to nginx than two (bench/routing.py), and the apps keep a core.
pub fn threads_for(cpus: usize) -> usize {
    cpus.div_ceil(2).max(1)
}

/// A system account name HAProxy may switch to: the Debian package's `haproxy`, when Pier runs
/// as root and the account and its group exist.
pub fn unprivileged_account() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .nth(1)?
        .to_owned();
    if euid != "0" {
        return None;
    }
    let listed = |file: &str| {
        std::fs::read_to_string(file)
            .is_ok_and(|t| t.lines().any(|l| l.split(':').next() == Some("haproxy")))
    };
    (listed("/etc/passwd") && listed("/etc/group")).then(|| "haproxy".to_owned())
}

/// A user name HAProxy's `user`/`group` lines may carry (POSIX portable names).
fn account_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 32
        && !n.starts_with('-')
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// The whole `haproxy.cfg`.
pub fn render(c: &ProxyConfig) -> String {
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(w, "# Written by Pier; changes here are overwritten.");
    let _ = writeln!(w, "global");
    let _ = writeln!(
        w,
        "    stats socket {} mode 600 level admin expose-fd listeners",
        c.stats_socket.display()
    );
    // The workers give up root once the ports and the socket are bound; the master keeps it to
    // re-read the files on a reload. Certificates reach the workers through the socket.
    if let Some(user) = c.run_as.as_deref().filter(|u| account_name(u)) {
        let _ = writeln!(w, "    user {user}");
        let _ = writeln!(w, "    group {user}");
    }
    let _ = writeln!(w, "    nbthread {}", c.threads.max(1));
    let _ = writeln!(w, "    hard-stop-after 30s");
    let _ = writeln!(w, "    ssl-default-bind-options ssl-min-ver TLSv1.2");
    let _ = writeln!(w);
    let _ = writeln!(w, "defaults");
    let _ = writeln!(w, "    mode http");
    // Connections to apps stay open and are reused by later requests (HAProxy's keep-alive
    // mode; `safe`: a client's first request never rides another client's idle connection).
    // Idle connections hold a server back from deletion: `runtime::delete_server` closes them.
    let _ = writeln!(w, "    option http-keep-alive");
    let _ = writeln!(w, "    http-reuse safe");
    // Without it, reloads under load dropped requests (seen here: 3–20 of 20 reloads).
    let _ = writeln!(w, "    option idle-close-on-response");
    let _ = writeln!(w, "    timeout connect 5s");
    let _ = writeln!(w, "    timeout client 60s");
    let _ = writeln!(w, "    timeout server 60s");
    let _ = writeln!(w, "    timeout http-request 10s");
    let _ = writeln!(w);
    let _ = writeln!(w, "frontend http");
    let _ = writeln!(w, "    bind {}", c.http_addr);
    forwarded_headers(w, "http");
    // Plain HTTP only answers ACME challenges (the panel does); everything else goes to HTTPS.
    if c.https_addr.port() == 443 {
        let _ = writeln!(
            w,
            "    http-request redirect scheme https code 301 unless {{ path_beg /.well-known/acme-challenge/ }}"
        );
    } else {
        // HTTPS elsewhere than 443: the redirect names the port (the host without its own).
        let _ = writeln!(
            w,
            "    http-request redirect code 301 location https://%[req.hdr(host),field(1,:)]:{}%[capture.req.uri] unless {{ path_beg /.well-known/acme-challenge/ }}",
            c.https_addr.port()
        );
    }
    let _ = writeln!(w, "    default_backend panel");
    let _ = writeln!(w);
    let _ = writeln!(w, "frontend https");
    let _ = writeln!(
        w,
        "    bind {} ssl crt {} crt-list {} alpn h2,http/1.1",
        c.https_addr,
        c.default_cert.display(),
        c.crt_list.display()
    );
    forwarded_headers(w, "https");
    let _ = writeln!(
        w,
        "    http-request set-var(txn.route) req.hdr(host),lower,field(1,:),map({})",
        c.hosts_map.display()
    );
    // No exact entry: a wildcard one (`*.example.com` for `shop.example.com`).
    let _ = writeln!(
        w,
        "    http-request set-var(txn.route) req.hdr(host),lower,field(1,:),regsub(^[^.]*,*),map({}) unless {{ var(txn.route) -m found }}",
        c.hosts_map.display()
    );
    if let Some(h) = &c.panel_host {
        let _ = writeln!(
            w,
            "    use_backend panel if {{ req.hdr(host),lower,field(1,:) -m str {h} }}"
        );
    }
    // The map gives `app<id>`, the app's backend (made only from a number: see `table`).
    let _ = writeln!(
        w,
        "    use_backend %[var(txn.route)] if {{ var(txn.route) -m found }}"
    );
    let _ = writeln!(w, "    default_backend unknown_host");
    let _ = writeln!(w);
    let _ = writeln!(w, "backend panel");
    let _ = writeln!(w, "    server panel {}", c.panel_addr);
    let _ = writeln!(w);
    let _ = writeln!(w, "backend unknown_host");
    let _ = writeln!(
        w,
        "    http-request return status 404 content-type text/plain string \"No site is served at this address.\""
    );
    out
}

/// Who the client is and how it came, as HAProxy saw it. The headers are *replaced*, never
/// appended to (`option forwardfor` appends a line after whatever the client sent): the panel
/// and the apps behind this HAProxy can then believe them, and a client cannot choose the
/// address the sign-in throttle and the session list see.
fn forwarded_headers(w: &mut String, scheme: &str) {
    let _ = writeln!(w, "    http-request set-header X-Forwarded-For %[src]");
    let _ = writeln!(w, "    http-request set-header X-Forwarded-Proto {scheme}");
    // The standard header says the same things; nothing here writes it, so nobody may.
    let _ = writeln!(w, "    http-request del-header Forwarded");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ProxyConfig {
        ProxyConfig {
            http_addr: "127.0.0.1:18080".parse().unwrap(),
            https_addr: "127.0.0.1:18443".parse().unwrap(),
            panel_addr: "127.0.0.1:3000".parse().unwrap(),
            panel_host: Some("panel.example.com".into()),
            stats_socket: "/var/lib/pier/haproxy/admin.sock".into(),
            hosts_map: "/var/lib/pier/haproxy/hosts.map".into(),
            default_cert: "/var/lib/pier/haproxy/default.pem".into(),
            crt_list: "/var/lib/pier/haproxy/certs.list".into(),
            run_as: Some("haproxy".into()),
            threads: 2,
        }
    }

    #[test]
    fn haproxy_takes_half_the_cpus() {
        assert_eq!(threads_for(0), 1);
        assert_eq!(threads_for(1), 1);
        assert_eq!(threads_for(2), 1);
        assert_eq!(threads_for(3), 2);
        assert_eq!(threads_for(16), 8);
        assert!(render(&cfg()).contains("\n    nbthread 2\n"));
        let mut none = cfg();
        none.threads = 0;
        assert!(render(&none).contains("\n    nbthread 1\n"));
    }

    #[test]
    fn workers_drop_root_to_a_checked_account() {
        let c = render(&cfg());
        assert!(c.contains("    user haproxy\n    group haproxy\n"), "{c}");
        let mut odd = cfg();
        odd.run_as = Some("x\n    stats socket /tmp/s".into());
        assert!(!render(&odd).contains("user "));
        odd.run_as = None;
        assert!(!render(&odd).contains("user "));
    }

    #[test]
    fn config_routes_by_host_and_redirects_plain_http() {
        let c = render(&cfg());
        assert!(c.contains("bind 127.0.0.1:18080\n"));
        assert!(c.contains("bind 127.0.0.1:18443 ssl crt /var/lib/pier/haproxy/default.pem"));
        assert!(c.contains("path_beg /.well-known/acme-challenge/"));
        assert!(c.contains(
            "redirect code 301 location https://%[req.hdr(host),field(1,:)]:18443%[capture.req.uri] unless { path_beg /.well-known/acme-challenge/ }"
        ));
        let mut standard = cfg();
        standard.https_addr = "0.0.0.0:443".parse().unwrap();
        assert!(render(&standard).contains(
            "redirect scheme https code 301 unless { path_beg /.well-known/acme-challenge/ }"
        ));
        assert!(c.contains("map(/var/lib/pier/haproxy/hosts.map)"));
        assert!(c.contains("-m str panel.example.com"));
        assert!(c.contains("option idle-close-on-response"));
        // Connections to the apps are kept and reused, never closed after each answer.
        assert!(c.contains("    option http-keep-alive\n    http-reuse safe\n"));
        assert!(!c.contains("http-server-close"));
        assert!(c.contains("return status 404"));
        assert!(c.contains("use_backend %[var(txn.route)] if { var(txn.route) -m found }\n"));
        // Both ways in replace the client's forwarding headers instead of appending to them.
        assert!(!c.contains("forwardfor"));
        for scheme in ["http", "https"] {
            let frontend = c
                .split("\nfrontend ")
                .find(|f| f.starts_with(&format!("{scheme}\n")))
                .unwrap();
            assert!(frontend.contains("http-request set-header X-Forwarded-For %[src]\n"));
            assert!(frontend.contains(&format!(
                "http-request set-header X-Forwarded-Proto {scheme}\n"
            )));
            assert!(frontend.contains("http-request del-header Forwarded\n"));
        }
        let mut no_panel = cfg();
        no_panel.panel_host = None;
        assert!(!render(&no_panel).contains("-m str"));
    }
}
