//! HAProxy route changes at scale, on a real haproxy on loopback ports (run by `bench/run.sh`,
//! or `cargo bench -p pier --bench routes`). For 10, 1,000 and 10,000 routes it prints:
//!
//! * one route change as Pier makes it — the map file rewritten (write + fsync + rename) and the
//!   running HAProxy told through its runtime API — median and worst of 50 changes;
//! * a full reload — render, `haproxy -c`, write, reload through the master socket, until the new
//!   worker is up — median of 5.
//!
//! Nothing is served to anyone: the routes point at a closed loopback port.

use std::{
    collections::BTreeMap,
    net::{SocketAddr, TcpListener},
    time::{Duration, Instant},
};

use pier::proxy::{Files, Proxy};

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn routes(n: usize) -> BTreeMap<String, u16> {
    (0..n)
        .map(|i| {
            (
                format!("site-{i}.bench.pier.test"),
                40000 + (i % 20000) as u16,
            )
        })
        .collect()
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
        "{:>8}  {:>22}  {:>14}  {:>18}",
        "routes", "one change (median)", "(worst of 50)", "full reload (med.)"
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
            // Loaded once (more than the runtime API takes in one go: a reload from the file).
            proxy.set_routes(want.clone()).await?;
            assert_eq!(proxy.routes().await.len(), n);
            let mut changes = Vec::new();
            for i in 0..50u16 {
                let host = format!("site-{}.bench.pier.test", (i as usize * 7919) % n);
                want.insert(host, 30000 + i);
                let t = Instant::now();
                proxy.set_routes(want.clone()).await?;
                changes.push(t.elapsed());
            }
            let worst = *changes.iter().max().unwrap();
            let mut reloads = Vec::new();
            for _ in 0..5 {
                let t = Instant::now();
                proxy.reload().await?;
                reloads.push(t.elapsed());
            }
            println!(
                "{n:>8}  {:>22}  {:>14}  {:>18}",
                ms(median(changes)),
                ms(worst),
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
