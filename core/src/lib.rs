//! Pier's domain layer.
//!
//! Everything that decides *whether* something may happen lives here: validation, permission
//! checks, throttling and the SQL behind them. The Leptos server functions (`app`) and the REST
//! API (`server`) both call [`service::Pier`], so each rule is written once.

pub mod accounts;
pub mod apps;
pub mod audit;
pub mod backup_target;
pub mod backups;
pub mod certs;
pub mod cluster;
pub mod db;
pub mod dns;
pub mod domains;
pub mod error;
#[cfg(any(test, feature = "test-support"))]
pub mod fake_runtime;
pub mod image_ref;
pub mod logs;
pub mod metrics;
pub mod model;
pub mod notify;
pub mod observed;
pub mod password;
pub mod repo;
pub mod runtime;
pub mod secret;
pub mod service;
pub mod session_store;
pub mod slots;
pub mod tags;
pub mod telemetry;
#[cfg(any(test, feature = "test-support"))]
pub mod testkit;
pub mod throttle;
pub mod tokens;
pub mod two_factor;
pub mod users;
pub mod validate;

pub use error::{Error, FieldError, Result};
pub use service::Pier;

/// Seconds since the Unix epoch; every timestamp in the database uses this unit.
pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Formats a Unix timestamp for people: `2026-11-22 14:05 UTC`.
pub fn format_time(ts: i64) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    time::OffsetDateTime::from_unix_timestamp(ts)
        .ok()
        .and_then(|t| t.format(&fmt).ok())
        .unwrap_or_else(|| "—".into())
}
