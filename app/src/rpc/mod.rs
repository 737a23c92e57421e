//! Server functions (remote procedure calls, under `/rpc`): the browser's calls into Pier. The
//! REST API is `server::api`; both call the same service. Each is a thin wrapper around
//! `pier_core::Pier`, where validation and permission checks live.
//!
//! Reads are `GET`; every state change is a `POST` whose form carries the session's CSRF token
//! (checked by the server's CSRF layer before any of these run).

use serde::{Deserialize, Serialize};

pub mod account;
pub mod apps;
pub mod audit;
pub mod backups;
pub mod domains;
pub mod nodes;
pub mod notify;
#[cfg(feature = "ssr")]
pub mod ssr;
pub mod tags;
pub mod tokens;
pub mod two_factor;
pub mod users;

/// The outcome of an admin action, shown as a flash message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Done {
    pub message: String,
    /// Something to copy: an invite link to hand on, or a token shown only this once.
    pub copy: Option<String>,
}
