//! HAProxy, the only thing facing the internet (groundwork for the routing issue: the
//! configuration renderer and the runtime API, checked against a real haproxy in
//! `tests/proxy.rs`).

pub mod config;
pub mod runtime;
