//! Domain types shared by the repository and the services.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Member,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "member" => Some(Role::Member),
            _ => None,
        }
    }
}

/// Per-user limits, set by an admin and enforced by the apps engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quotas {
    pub max_apps: i64,
    pub max_memory_mb: i64,
    /// Thousandths of a CPU (1500 = 1.5 CPUs).
    pub max_cpus_milli: i64,
    /// What the user's volumes may take together.
    pub max_storage_mb: i64,
    /// What the snapshots of the user's apps may take in the backup repository.
    pub max_backup_mb: i64,
}

impl Default for Quotas {
    fn default() -> Self {
        Quotas {
            max_apps: 5,
            max_memory_mb: 2048,
            max_cpus_milli: 2000,
            max_storage_mb: 5120,
            max_backup_mb: 10240,
        }
    }
}

#[derive(Debug, Clone)]
pub struct User {
    pub id: i64,
    pub email: String,
    pub password_hash: Option<String>,
    pub role: Role,
    pub disabled: bool,
    pub quotas: Quotas,
    pub created_at: i64,
    pub last_sign_in_at: Option<i64>,
}

/// Who is acting: the signed-in user, as loaded for this request.
#[derive(Debug, Clone)]
pub struct Actor {
    pub user_id: i64,
    pub email: String,
    pub role: Role,
    pub quotas: Quotas,
    /// Where the request came from, for the audit log.
    pub origin: Origin,
}

/// How a request reached Pier: the API token it carried and the client's address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    pub token_id: Option<i64>,
    pub address: Option<String>,
}

impl From<User> for Actor {
    fn from(u: User) -> Self {
        Actor {
            user_id: u.id,
            email: u.email,
            role: u.role,
            quotas: u.quotas,
            origin: Origin::default(),
        }
    }
}

impl Actor {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

/// One of a user's browser sessions, as shown on the account page.
#[derive(Debug, Clone)]
pub struct SessionSummary {
    /// A handle derived from the session id; the id itself (the cookie value) is never shown.
    pub handle: String,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub expires_at: i64,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    pub current: bool,
}

/// What a personal access token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Read the owner's things.
    Read,
    /// Also change them.
    Write,
    /// Also administer users (only an admin's token can have it).
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        match s {
            "read" => Some(Scope::Read),
            "write" => Some(Scope::Write),
            "admin" => Some(Scope::Admin),
            _ => None,
        }
    }
}

/// A personal access token as listed (never its secret).
#[derive(Debug, Clone)]
pub struct ApiToken {
    pub id: i64,
    pub user_id: i64,
    pub name: String,
    pub prefix: String,
    pub scope: Scope,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub last_used_at: Option<i64>,
}

/// One environment variable as stored: a plain value, or a value sealed with the operator's key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredEnv {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<String>,
}

impl StoredEnv {
    pub fn is_secret(&self) -> bool {
        self.sealed.is_some()
    }
}

/// What the tenant wants an app to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Desired {
    Running,
    Stopped,
}

impl Desired {
    pub fn as_str(self) -> &'static str {
        match self {
            Desired::Running => "running",
            Desired::Stopped => "stopped",
        }
    }
}

pub use pier_types::{AppKind, CapProfile, DeployStatus, DEFAULT_CAPABILITIES};

/// A tenant's persistent volume: a file system of a fixed size, mounted into one app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    pub id: i64,
    pub user_id: i64,
    pub name: String,
    /// The app it belongs to; none when it was kept after its app was deleted.
    pub app_id: Option<i64>,
    pub app_name: Option<String>,
    /// Where the app mounts it (for a kept volume: where its last app did).
    pub path: String,
    pub size_mb: i64,
    pub created_at: i64,
}

/// What an app should run (its spec) and what the tenant wants of it.
#[derive(Debug, Clone)]
pub struct App {
    pub id: i64,
    pub user_id: i64,
    pub name: String,
    pub image: String,
    pub port: u16,
    pub env: Vec<StoredEnv>,
    pub memory_mb: i64,
    pub cpus_milli: i64,
    /// How many copies run side by side (web apps; always 1 for an internal app).
    pub replicas: i64,
    pub health_path: Option<String>,
    pub read_only: bool,
    pub kind: AppKind,
    pub capabilities: CapProfile,
    pub desired: Desired,
    pub current_deployment_id: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// One rollout of an app, with the spec it ran.
#[derive(Debug, Clone)]
pub struct Deployment {
    pub id: i64,
    pub app_id: i64,
    pub number: i64,
    pub cause: String,
    pub image: String,
    pub digest: Option<String>,
    pub env: Vec<StoredEnv>,
    pub port: u16,
    pub memory_mb: i64,
    pub cpus_milli: i64,
    /// How many copies run side by side (web apps; always 1 for an internal app).
    pub replicas: i64,
    pub health_path: Option<String>,
    pub read_only: bool,
    pub kind: AppKind,
    pub capabilities: CapProfile,
    pub status: DeployStatus,
    /// For a stop-first replacement: how long nothing served, in milliseconds.
    pub gap_ms: Option<i64>,
    pub error: Option<String>,
    pub created_at: i64,
    pub finished_at: Option<i64>,
}

/// A tenant's login for a registry (the password stays sealed).
#[derive(Debug, Clone)]
pub struct RegistryCredential {
    pub id: i64,
    pub user_id: i64,
    pub registry: String,
    pub username: String,
    pub sealed_password: String,
    pub created_at: i64,
}

/// A domain a tenant registered, and the app it is attached to (if any).
#[derive(Debug, Clone)]
pub struct Domain {
    pub id: i64,
    pub user_id: i64,
    pub name: String,
    pub app_id: Option<i64>,
    pub app_name: Option<String>,
    /// Its app should run and has a deployment that serves.
    pub serving: bool,
    /// When its owner proved it theirs (None: not yet).
    pub verified_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A domain's certificate as stored (the key stays sealed).
#[derive(Debug, Clone)]
pub struct Certificate {
    pub id: i64,
    /// None: the panel's own certificate.
    pub domain_id: Option<i64>,
    pub name: String,
    /// pending, valid, renewing, failed.
    pub status: String,
    pub chain_pem: Option<String>,
    pub sealed_key: Option<String>,
    pub serial: Option<String>,
    pub not_before: Option<i64>,
    pub not_after: Option<i64>,
    pub renew_at: Option<i64>,
    pub error: Option<String>,
    pub failures: i64,
    pub next_attempt_at: i64,
    pub updated_at: i64,
}
