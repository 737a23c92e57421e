//! The repository layer: every SQL statement Pier runs, checked against the schema at compile
//! time (`.sqlx/` holds the offline data, so a build needs no database). One module per table
//! (`repo/<table>.rs`); the row conversions they share live here.

use sqlx::SqliteExecutor;

use crate::{
    model::{
        ApiToken, App, AppKind, CapProfile, DeployStatus, Deployment, Desired, Quotas,
        RegistryCredential, Role, Scope, StoredEnv, User, Volume,
    },
    Error, Result,
};

struct UserRow {
    id: i64,
    email: String,
    password_hash: Option<String>,
    role: String,
    disabled: bool,
    max_apps: i64,
    max_memory_mb: i64,
    max_cpus_milli: i64,
    max_storage_mb: i64,
    max_backup_mb: i64,
    created_at: i64,
    last_sign_in_at: Option<i64>,
}

impl From<UserRow> for User {
    fn from(r: UserRow) -> Self {
        User {
            id: r.id,
            email: r.email,
            password_hash: r.password_hash,
            // The column has a CHECK constraint; anything else is a corrupted row.
            role: Role::parse(&r.role).unwrap_or(Role::Member),
            disabled: r.disabled,
            quotas: Quotas {
                max_apps: r.max_apps,
                max_memory_mb: r.max_memory_mb,
                max_cpus_milli: r.max_cpus_milli,
                max_storage_mb: r.max_storage_mb,
                max_backup_mb: r.max_backup_mb,
            },
            created_at: r.created_at,
            last_sign_in_at: r.last_sign_in_at,
        }
    }
}

pub mod users;

pub mod invites;

pub mod sessions;

pub mod tokens;

pub mod instance;

fn env_from_json(s: &str) -> Result<Vec<StoredEnv>> {
    serde_json::from_str(s).map_err(|e| Error::internal(format!("stored env is not JSON: {e}")))
}

fn env_to_json(env: &[StoredEnv]) -> String {
    serde_json::to_string(env).expect("env serialises")
}

pub mod apps;

/// One page of a user's apps with each one's serving and latest deployment, read as a single
/// JSON row: SQLite builds the list, so the driver hands over one row instead of hundreds (the
/// per-row hand-off between sqlx's SQLite thread and the caller dominated list requests).
pub mod app_list;

pub mod deployments;

pub mod volumes;

pub mod registries;

pub mod domains;

pub mod certs;

pub mod images;

pub mod backups;

pub mod backup_target;

pub mod audit;

/// Notifications, their deliveries, and where they go.
pub mod notify;
/// WebAuthn credentials.
pub mod passkeys;
pub mod tags;
/// Authenticators and recovery codes.
pub mod two_factor;
