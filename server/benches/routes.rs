//! HAProxy route changes at scale, on a real haproxy on loopback ports (run by `bench/run.sh`,
//! or `cargo bench -p pier --bench routes`). For 10, 1,000 and 10,000 host names (ten per app,
//! at least two: 2, 100 and 1,000 apps, each with its backend) it prints:
//!
//! * a host moved to another app as Pier does it — the map file rewritten (write + fsync +
//!   rename) and the running HAProxy told through its runtime API — median and worst of 50;
//! * a deployment switch: an app's address replaced (server added, old one drained and deleted
//!   through the runtime API, `haproxy.cfg` rewritten so a reload keeps it) — median of 50;
//! * a full reload — render, `haproxy -c`, write, reload through the master socket, until the new
//!   worker is up — median of 5.
//!
//! Nothing is served to anyone: the addresses are closed loopback ports.

use std::{
    collections::BTreeSet,
    net::SocketAddr,
    time::{Duration, Instant},
};

use pier::proxy::{Files, Proxy, RouteTable};
use test_support::ports::free_addr;

/// `n` host names, ten per app (at least two apps), each app on one closed loopback port.
fn routes(n: usize) -> RouteTable {
    let apps = (n / 10).max(2);
    let at = |app: usize| SocketAddr::from(([127, 0, 0, 1], 40000 + (app % 20000) as u16));
    RouteTable {
        hosts: (0..n)
            .map(|i| (format!("site-{i}.bench.pier.test"), (i % apps) as i64 + 1))
            .collect(),
        backends: (0..apps)
            .map(|a| (a as i64 + 1, BTreeSet::from([at(a)])))
            .collect(),
        spread: BTreeSet::new(),
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    println!("HAProxy route changes (haproxy {}):", haproxy_version());
    println!(
        "{:>8}  {:>6}  {:>20}  {:>14}  {:>22}  {:>18}",
        "hosts",
        "apps",
        "host moved (median)",
        "(worst of 50)",
        "deploy switch (median)",
        "full reload (med.)"
    );
    for n in [10usize, 1_000, 10_000] {
        let dir =
            std::env::temp_dir().join(format!("pier-bench-routes-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let files = Files::in_dir(&dir);
        let cfg = files.config(free_addr(), free_addr(), free_addr(), None);
        let proxy = Proxy::start(files.clone(), cfg).await?;
        let result = async {
            let mut want = routes(n);
            let apps = want.backends.len();
            // Loaded once (new backends: a reload from the files).
            proxy.set_routes(want.clone()).await?;
            assert_eq!(proxy.routes().await, want);
            let mut moves = Vec::new();
            for i in 0..50usize {
                let host = format!("site-{}.bench.pier.test", (i * 7919) % n);
                let to = (want.hosts[&host] % apps as i64) + 1;
                want.hosts.insert(host, to);
                let t = Instant::now();
                proxy.set_routes(want.clone()).await?;
                moves.push(t.elapsed());
            }
            let worst = *moves.iter().max().unwrap();
            let mut switches = Vec::new();
            for i in 0..50u16 {
                let app = (i as usize * 31) % apps + 1;
                want.backends.insert(
                    app as i64,
                    BTreeSet::from([SocketAddr::from(([127, 0, 0, 1], 30000 + i))]),
                );
                let t = Instant::now();
                proxy.set_routes(want.clone()).await?;
                switches.push(t.elapsed());
            }
            let mut reloads = Vec::new();
            for _ in 0..5 {
                let t = Instant::now();
                proxy.reload().await?;
                reloads.push(t.elapsed());
            }
            println!(
                "{n:>8}  {apps:>6}  {:>20}  {:>14}  {:>22}  {:>18}",
                ms(median(moves)),
                ms(worst),
                ms(median(switches)),
                ms(median(reloads))
            );
            anyhow::Ok(())
        }
        .await;
        proxy.stop().await;
        pier::proxy::kill_pidfile(&files.pidfile);
        let _ = std::fs::remove_dir_all(&dir);
        result?;
    }
    Ok(())
}

fn haproxy_version() -> String {
    std::process::Command::new("haproxy")
        .arg("-v")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .nth(2)
                .unwrap_or("?")
                .to_owned()
        })
        .unwrap_or_else(|_| "?".into())
}
