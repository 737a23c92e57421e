//! What HAProxy routes, as plain data: each host name goes to an app, each app to the addresses
//! that serve it (one container on a single host; several replicas, maybe on several machines,
//! in a Swarm). Pure: rendering the files, reading them back, and the difference between two
//! tables as the runtime API's steps. `routes` applies them.
//!
//! Names that reach HAProxy's files and commands are made here from numbers and addresses only
//! (`app<id>`, `e<address>`); host names are checked against the domain grammar first.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write,
    net::SocketAddr,
};

/// Hosts → app ids, app ids → the addresses serving them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteTable {
    /// Only hosts whose app has a backend here; an app with no address yet answers 503.
    pub hosts: BTreeMap<String, i64>,
    /// Every routed app has a backend, even with no address for now (a stopped app, or one
    /// between containers): adding or removing a backend needs a reload, addresses do not.
    pub backends: BTreeMap<i64, BTreeSet<SocketAddr>>,
    /// Apps that run as several copies: a refused connection is tried again at once on another
    /// copy. (An app of one copy answers 503 at once instead: a retry would go to the same
    /// address after a second.) It is a backend setting, so a change needs a reload.
    pub spread: BTreeSet<i64>,
}

impl RouteTable {
    /// The table with its host names checked (a bad one is left out with a warning: one name
    /// must not stop every other route from changing) and hosts without a backend dropped.
    pub fn routable(mut self) -> RouteTable {
        let backends = &self.backends;
        self.spread.retain(|app| backends.contains_key(app));
        self.hosts.retain(|h, app| {
            let ok = is_routable(h);
            if !ok {
                tracing::warn!(host = ?h, "not routing an invalid host name");
            }
            ok && backends.contains_key(app)
        });
        self
    }

    /// How many addresses all backends have together.
    pub fn endpoints(&self) -> usize {
        self.backends.values().map(BTreeSet::len).sum()
    }
}

/// A host name as stored: normalised, and valid under the domain grammar (wildcards included).
pub fn is_routable(h: &str) -> bool {
    pier_core::validate::domain(h, true).is_ok_and(|n| n == h)
}

/// The backend of app `id`.
pub fn backend_name(id: i64) -> String {
    format!("app{id}")
}

/// An app id back from a backend name (`app12` → 12); None for anything else.
pub fn backend_id(name: &str) -> Option<i64> {
    let digits = name.strip_prefix("app")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.len() > 18 {
        return None;
    }
    digits.parse().ok()
}

/// How a server is watched: an address on another machine (a Swarm task) is health-checked
/// every second (every quarter second once one failed) and out of the rotation after two failed
/// checks, so a lost machine stops getting requests within seconds; a container on this
/// machine's loopback is not (its engine knows first, and the planner takes it out).
pub fn server_options(addr: &SocketAddr) -> &'static str {
    if addr.ip().is_loopback() {
        ""
    } else {
        " check inter 1s fastinter 250ms fall 2 rise 1"
    }
}

/// What a server added through the runtime API needs to keep idle connections to its app for
/// the next requests, as one written in the configuration does by default: HAProxy 2.6 gives
/// runtime servers no pool at all, so every request opened a connection (measured: 6.9k
/// requests/s through such a server against 11.3k through one from the file).
pub const RUNTIME_POOL: &str = " pool-max-conn -1 pool-purge-delay 5s";

/// The server name of an address: `e` and its characters, with everything but digits and
/// letters as `-` (`127.0.0.1:32768` → `e127-0-0-1-32768`). The same address always gets the
/// same name, so a table's difference is a difference of names.
pub fn server_name(addr: &SocketAddr) -> String {
    let text = match addr {
        SocketAddr::V4(a) => format!("{}:{}", a.ip(), a.port()),
        SocketAddr::V6(a) => format!("6{}:{}", a.ip(), a.port()),
    };
    let mut out = String::with_capacity(text.len() + 1);
    out.push('e');
    out.extend(
        text.chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }),
    );
    out
}

/// The host map file: `host app<id>` lines, sorted.
pub fn render_map(hosts: &BTreeMap<String, i64>) -> String {
    let mut out = String::new();
    for (host, app) in hosts {
        let _ = writeln!(out, "{host} {}", backend_name(*app));
    }
    out
}

/// The map file's lines back (anything else is skipped: a map of an older version is empty).
pub fn parse_map(text: &str) -> BTreeMap<String, i64> {
    text.lines()
        .filter_map(|l| {
            let (h, v) = l.split_once(' ')?;
            Some((h.to_owned(), backend_id(v.trim())?))
        })
        .filter(|(h, _)| is_routable(h))
        .collect()
}

/// `show map`: `0x55d… host app<id>` lines.
pub fn parse_show_map(text: &str) -> BTreeMap<String, i64> {
    parse_map(
        &text
            .lines()
            .filter_map(|l| l.split_once(' ').map(|(_, rest)| rest))
            .collect::<Vec<_>>()
            .join("\n"),
    )
}

/// The apps' backends, for the end of `haproxy.cfg`.
pub fn render_backends(out: &mut String, table: &RouteTable) {
    for (id, addrs) in &table.backends {
        let _ = writeln!(out);
        let _ = writeln!(out, "backend {}", backend_name(*id));
        if table.spread.contains(id) {
            // Several copies: a refused connection (a copy restarting or just gone) is tried
            // again at once on another one; redispatching skips the one-second pause HAProxy
            // takes before trying the same address again.
            let _ = writeln!(out, "    retries 2");
            let _ = writeln!(out, "    option redispatch 1");
            // A copy on a machine that stopped answering: another one after a second, not
            // five (its health check takes it out of the rotation soon after).
            let _ = writeln!(out, "    timeout connect 1s");
        } else {
            // One copy: a refused connection is not retried, since a retry goes to the same
            // address a second later, so while an app is between containers (a stop-first
            // redeploy) every request waited 3 s for the same 503. It is answered at once.
            let _ = writeln!(out, "    retries 0");
        }
        for a in addrs {
            let _ = writeln!(
                out,
                "    server {} {a}{}",
                server_name(a),
                server_options(a)
            );
        }
    }
}

/// The backends back from a configuration `render_backends` wrote (other lines are skipped),
/// and which of them are spread over several copies.
pub fn parse_backends(text: &str) -> (BTreeMap<i64, BTreeSet<SocketAddr>>, BTreeSet<i64>) {
    let mut out: BTreeMap<i64, BTreeSet<SocketAddr>> = BTreeMap::new();
    let mut spread = BTreeSet::new();
    let mut current = None;
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("backend ") {
            current = backend_id(name.trim());
            if let Some(id) = current {
                out.entry(id).or_default();
            }
            continue;
        }
        if !line.starts_with(' ') {
            current = None;
            continue;
        }
        let Some(id) = current else { continue };
        if line.trim() == "option redispatch 1" {
            spread.insert(id);
            continue;
        }
        let mut words = line.split_whitespace();
        if words.next() != Some("server") {
            continue;
        }
        let (Some(name), Some(addr)) = (words.next(), words.next()) else {
            continue;
        };
        if let Ok(a) = addr.parse::<SocketAddr>() {
            if server_name(&a) == name {
                out.entry(id).or_default().insert(a);
            }
        }
    }
    (out, spread)
}

/// The running HAProxy's backends and servers, from `show backend` (names, one per line) and
/// `show servers state` (a server row: backend name at 1, server name at 3, address at 4, admin
/// state at 6, port at 18). A server in maintenance (being removed) counts as gone.
pub fn parse_running_backends(
    backends: &str,
    servers: &str,
) -> BTreeMap<i64, BTreeSet<SocketAddr>> {
    let mut out: BTreeMap<i64, BTreeSet<SocketAddr>> = backends
        .lines()
        .filter_map(|l| backend_id(l.trim()))
        .map(|id| (id, BTreeSet::new()))
        .collect();
    for line in servers.lines().filter(|l| !l.starts_with('#')) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 19 || f[6] != "0" {
            continue;
        }
        let (Some(id), Ok(ip), Ok(port)) = (
            backend_id(f[1]),
            f[4].parse::<std::net::IpAddr>(),
            f[18].parse::<u16>(),
        ) else {
            continue;
        };
        let addr = SocketAddr::new(ip, port);
        if server_name(&addr) == f[3] {
            if let Some(set) = out.get_mut(&id) {
                set.insert(addr);
            }
        }
    }
    out
}

/// One step of the runtime API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    AddServer(i64, SocketAddr),
    SetHost(String, i64),
    RemoveHost(String),
    RemoveServer(i64, SocketAddr),
}

/// How to get from `have` to `want` without a reload, in an order that never leaves a host
/// without the addresses it had: new addresses first, then the hosts, then the old addresses.
/// None when the backends themselves differ (a reload is needed).
pub fn steps(have: &RouteTable, want: &RouteTable) -> Option<Vec<Step>> {
    if !have.backends.keys().eq(want.backends.keys()) || have.spread != want.spread {
        return None;
    }
    let mut out = Vec::new();
    for (id, addrs) in &want.backends {
        for a in addrs.difference(&have.backends[id]) {
            out.push(Step::AddServer(*id, *a));
        }
    }
    for (h, app) in &want.hosts {
        if have.hosts.get(h) != Some(app) {
            out.push(Step::SetHost(h.clone(), *app));
        }
    }
    for h in have.hosts.keys().filter(|h| !want.hosts.contains_key(*h)) {
        out.push(Step::RemoveHost(h.clone()));
    }
    for (id, addrs) in &want.backends {
        for a in have.backends[id].difference(addrs) {
            out.push(Step::RemoveServer(*id, *a));
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn table(hosts: &[(&str, i64)], backends: &[(i64, &[&str])]) -> RouteTable {
        RouteTable {
            hosts: hosts.iter().map(|(h, a)| (h.to_string(), *a)).collect(),
            backends: backends
                .iter()
                .map(|(id, addrs)| (*id, addrs.iter().map(|a| addr(a)).collect()))
                .collect(),
            spread: BTreeSet::new(),
        }
    }

    #[test]
    fn names_come_from_numbers_and_addresses_only() {
        assert_eq!(backend_name(12), "app12");
        assert_eq!(backend_id("app12"), Some(12));
        for bad in [
            "app",
            "app-1",
            "app1 x",
            "apps",
            "x12",
            "app99999999999999999999",
        ] {
            assert_eq!(backend_id(bad), None, "{bad}");
        }
        assert_eq!(server_name(&addr("127.0.0.1:32768")), "e127-0-0-1-32768");
        assert_eq!(server_name(&addr("[::1]:80")), "e6--1-80");
        // Different addresses, different names.
        assert_ne!(
            server_name(&addr("10.0.0.1:1234")),
            server_name(&addr("10.0.0.11:234"))
        );
    }

    #[test]
    fn files_parse_back_to_the_table() {
        let t = table(
            &[("a.io", 1), ("*.b.io", 2)],
            &[
                (1, &["127.0.0.1:40001"]),
                (2, &["10.213.0.11:30001", "10.213.0.12:30002"]),
                (3, &[]),
            ],
        );
        assert_eq!(parse_map(&render_map(&t.hosts)), t.hosts);
        assert_eq!(render_map(&t.hosts), "*.b.io app2\na.io app1\n");
        let mut cfg = String::from(
            "global\n    maxconn 10\n\nbackend panel\n    server panel 127.0.0.1:3000\n",
        );
        render_backends(&mut cfg, &t);
        assert_eq!(parse_backends(&cfg), (t.backends.clone(), BTreeSet::new()));
        assert!(cfg.contains(
            "backend app1\n    retries 0\n    server e127-0-0-1-40001 127.0.0.1:40001\n"
        ));
        assert!(cfg.contains(
            "backend app2\n    retries 0\n    server e10-213-0-11-30001 10.213.0.11:30001 check"
        ));
        // Spread over copies: retried at once on another one; read back as such.
        let mut spread = t.clone();
        spread.spread.insert(2);
        let mut cfg = String::new();
        render_backends(&mut cfg, &spread);
        assert!(cfg.contains(
            "backend app2\n    retries 2\n    option redispatch 1\n    timeout connect 1s\n    server "
        ));
        // Addresses on other machines are health-checked; loopback ones are not.
        assert!(cfg.contains(
            "    server e10-213-0-11-30001 10.213.0.11:30001 check inter 1s fastinter 250ms fall 2 rise 1\n"
        ));
        assert_eq!(
            parse_backends(&cfg),
            (spread.backends.clone(), spread.spread.clone())
        );
        // Changing it is a backend setting: a reload.
        assert_eq!(steps(&t, &spread), None);
        let shown = "0x5581 a.io app1\n0x5582 *.b.io app2\n";
        assert_eq!(parse_show_map(shown), t.hosts);
        // An older map (`host 127.0.0.1:port`) and junk read as nothing.
        assert!(parse_map("a.io 127.0.0.1:40001\njunk\nx.io app1 extra\nA.io app1\n").is_empty());
    }

    #[test]
    fn running_backends_read_from_the_runtime_api() {
        // As HAProxy 2.6 prints them; app3's second server is in maintenance (being removed).
        let backends = "# name\nhttp\npanel\napp3\napp4\nunknown_host\n";
        let servers = "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port\n\
            3 panel 1 panel 127.0.0.1 2 0 1 1 5 1 0 0 0 0 0 0 - 3000 - 0 0 - - 0\n\
            5 app3 1 e127-0-0-1-40001 127.0.0.1 2 0 1 1 5 1 0 0 0 0 0 0 - 40001 - 0 0 - - 0\n\
            5 app3 2 e127-0-0-1-40002 127.0.0.1 0 1 1 1 5 1 0 0 0 0 0 0 - 40002 - 0 0 - - 0\n";
        assert_eq!(
            parse_running_backends(backends, servers),
            BTreeMap::from([
                (3, BTreeSet::from([addr("127.0.0.1:40001")])),
                (4, BTreeSet::new())
            ])
        );
    }

    #[test]
    fn bad_hosts_and_hosts_without_backend_are_not_routable() {
        let t = table(
            &[
                ("a.example.com", 1),
                ("b.example.com\nbackend x", 1),
                ("A.example.com", 1),
                ("c.example.com", 9),
            ],
            &[(1, &["127.0.0.1:1"])],
        )
        .routable();
        assert_eq!(t.hosts, BTreeMap::from([("a.example.com".to_string(), 1)]));
    }

    #[test]
    fn steps_add_first_and_remove_last() {
        let have = table(
            &[("a.io", 1), ("b.io", 1), ("c.io", 2)],
            &[(1, &["127.0.0.1:1"]), (2, &["127.0.0.1:2"])],
        );
        let want = table(
            &[("a.io", 1), ("b.io", 2), ("d.io", 2)],
            &[(1, &["127.0.0.1:3"]), (2, &["127.0.0.1:2", "127.0.0.1:4"])],
        );
        assert_eq!(
            steps(&have, &want).unwrap(),
            vec![
                Step::AddServer(1, addr("127.0.0.1:3")),
                Step::AddServer(2, addr("127.0.0.1:4")),
                Step::SetHost("b.io".into(), 2),
                Step::SetHost("d.io".into(), 2),
                Step::RemoveHost("c.io".into()),
                Step::RemoveServer(1, addr("127.0.0.1:1")),
            ]
        );
        assert_eq!(steps(&want, &want).unwrap(), vec![]);
        // A backend more or less is a reload.
        let more = table(&[], &[(1, &[]), (2, &[]), (3, &[])]);
        assert_eq!(steps(&want, &more), None);
        assert_eq!(steps(&more, &want), None);
    }
}
