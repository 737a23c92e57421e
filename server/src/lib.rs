//! The Pier server: configuration, the HTTP router, and the command line behind `main.rs`.

pub mod api;
pub mod assets;
pub mod backup;
pub mod certs;
pub mod cli;
pub mod config;
pub mod csrf;
pub mod disk;
pub mod dns;
pub mod downloads;
pub mod engine;
pub mod events;
pub mod files;
pub mod http;
pub mod janitor;
pub mod launch;
pub mod metrics;
pub mod notify;
pub mod proxy;
