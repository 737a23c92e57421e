//! Loopback ports for the servers tests start (a panel, HAProxy, pebble, a mock receiver).
//!
//! A port picked by binding port 0 comes from the kernel's ephemeral range, the same range
//! outgoing connections take their source ports from: between the pick and the server's own
//! bind, a connection (to the registry, to dockerd's proxy, between two test servers) can take
//! it, and the server fails with "Address already in use" (seen in CI: HAProxy's HTTPS frontend
//! in a browser test). So ports are picked below that range, where only listeners live.

use std::{
    net::{SocketAddr, TcpListener},
    sync::atomic::{AtomicU32, Ordering},
};

/// How many ports below the ephemeral range are tried (the range starts at 32768 by default).
const SPAN: u32 = 12_000;

/// The next candidate, counted on from a start that differs per process (tests of one binary
/// get different ports; a binary run just after another starts elsewhere).
static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);

/// The first port of the ephemeral range (`net.ipv4.ip_local_port_range`).
fn ephemeral_start() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .filter(|&low: &u32| low > SPAN + 1024)
        .unwrap_or(32_768)
}

/// A loopback port no one listens on now, below the ephemeral range.
pub fn free_port() -> u16 {
    let top = ephemeral_start();
    let bottom = top - SPAN;
    let seed = std::process::id().wrapping_mul(7_919) % SPAN;
    let _ = NEXT.compare_exchange(u32::MAX, seed, Ordering::Relaxed, Ordering::Relaxed);
    for _ in 0..SPAN {
        let port = bottom + NEXT.fetch_add(1, Ordering::Relaxed) % SPAN;
        let port = u16::try_from(port).expect("below the ephemeral range");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {bottom}..{top}");
}

/// [`free_port`] on 127.0.0.1.
pub fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_below_the_ephemeral_range_distinct_and_bindable() {
        let top = ephemeral_start();
        let ports: Vec<u16> = (0..50).map(|_| free_port()).collect();
        let mut unique = ports.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), ports.len(), "{ports:?}");
        for p in ports {
            assert!(u32::from(p) < top && u32::from(p) >= top - SPAN, "{p}");
            TcpListener::bind(("127.0.0.1", p)).expect("bindable");
        }
        // A port something listens on is passed over.
        let held = TcpListener::bind(("127.0.0.1", free_port())).unwrap();
        let taken = held.local_addr().unwrap().port();
        assert!((0..50).map(|_| free_port()).all(|p| p != taken));
    }
}
