//! Values the service, the REST API and the browser share: what state an app is in, where a
//! deployment is, an app's kind and capability profile. Plain enums with serde only, so the
//! browser's (wasm) build can use them as they are and compare variants, not strings.

use serde::{Deserialize, Serialize};

/// What an app is doing, as a person would say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AppState {
    /// A deployment is being rolled out.
    Deploying,
    Running,
    /// The container exited or keeps restarting.
    Crashed,
    Stopped,
    /// Wanted stopped, still running.
    Stopping,
    /// Wanted running, not running yet (the engine is on it).
    Starting,
    /// Never deployed successfully.
    Failed,
    /// The container engine does not answer.
    Unknown,
}

impl AppState {
    pub fn as_str(self) -> &'static str {
        match self {
            AppState::Deploying => "deploying",
            AppState::Running => "running",
            AppState::Crashed => "crashed",
            AppState::Stopped => "stopped",
            AppState::Stopping => "stopping",
            AppState::Starting => "starting",
            AppState::Failed => "failed",
            AppState::Unknown => "unknown",
        }
    }
}

/// Where a deployment is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeployStatus {
    Queued,
    Pulling,
    Starting,
    Running,
    Superseded,
    Failed,
    Cancelled,
}

impl DeployStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeployStatus::Queued => "queued",
            DeployStatus::Pulling => "pulling",
            DeployStatus::Starting => "starting",
            DeployStatus::Running => "running",
            DeployStatus::Superseded => "superseded",
            DeployStatus::Failed => "failed",
            DeployStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> DeployStatus {
        match s {
            "queued" => DeployStatus::Queued,
            "pulling" => DeployStatus::Pulling,
            "starting" => DeployStatus::Starting,
            "running" => DeployStatus::Running,
            "superseded" => DeployStatus::Superseded,
            "cancelled" => DeployStatus::Cancelled,
            _ => DeployStatus::Failed,
        }
    }

    /// Still being rolled out.
    pub fn in_progress(self) -> bool {
        matches!(
            self,
            DeployStatus::Queued | DeployStatus::Pulling | DeployStatus::Starting
        )
    }

    /// Rolled out successfully at some point (so it can be rolled back to).
    pub fn succeeded(self) -> bool {
        matches!(self, DeployStatus::Running | DeployStatus::Superseded)
    }
}

/// Whether an app is reached from outside (over HTTP, through HAProxy) or only by the same
/// tenant's other apps (a database, a cache).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AppKind {
    #[default]
    Web,
    Internal,
}

impl AppKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AppKind::Web => "web",
            AppKind::Internal => "internal",
        }
    }

    pub fn parse(s: &str) -> Option<AppKind> {
        match s {
            "web" => Some(AppKind::Web),
            "internal" => Some(AppKind::Internal),
            _ => None,
        }
    }
}

/// Which Linux capabilities an app's container keeps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CapProfile {
    /// What official images need to start as root and drop to a service user.
    #[default]
    Default,
    /// None at all, for images built to run unprivileged.
    Strict,
}

/// The capabilities of the default profile: Docker's default set without NET_RAW, MKNOD,
/// AUDIT_WRITE, SETFCAP and SETPCAP.
pub const DEFAULT_CAPABILITIES: [&str; 9] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
];

impl CapProfile {
    pub fn as_str(self) -> &'static str {
        match self {
            CapProfile::Default => "default",
            CapProfile::Strict => "strict",
        }
    }

    pub fn parse(s: &str) -> Option<CapProfile> {
        match s {
            "default" => Some(CapProfile::Default),
            "strict" => Some(CapProfile::Strict),
            _ => None,
        }
    }

    /// The capabilities added back after dropping all.
    pub fn capabilities(self) -> &'static [&'static str] {
        match self {
            CapProfile::Default => &DEFAULT_CAPABILITIES,
            CapProfile::Strict => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The REST API and the browser read serde's words, the database and the UI `as_str`'s:
    /// they must be the same words, and `parse` must read them back.
    #[test]
    fn serde_and_as_str_say_the_same_words() {
        fn word<T: Serialize>(v: T) -> String {
            serde_json::to_value(v)
                .unwrap()
                .as_str()
                .unwrap()
                .to_owned()
        }
        use AppState::*;
        for s in [
            Deploying, Running, Crashed, Stopped, Stopping, Starting, Failed, Unknown,
        ] {
            assert_eq!(word(s), s.as_str());
        }
        use DeployStatus as D;
        for s in [
            D::Queued,
            D::Pulling,
            D::Starting,
            D::Running,
            D::Superseded,
            D::Failed,
            D::Cancelled,
        ] {
            assert_eq!(word(s), s.as_str());
            assert_eq!(DeployStatus::parse(s.as_str()), s);
        }
        for k in [AppKind::Web, AppKind::Internal] {
            assert_eq!(word(k), k.as_str());
            assert_eq!(AppKind::parse(k.as_str()), Some(k));
        }
        for c in [CapProfile::Default, CapProfile::Strict] {
            assert_eq!(word(c), c.as_str());
            assert_eq!(CapProfile::parse(c.as_str()), Some(c));
        }
    }
}

/// A machine's part in a Docker Swarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeRole {
    /// Keeps the Swarm's state; Pier talks to one.
    Manager,
    /// Only runs tasks.
    Worker,
}

impl NodeRole {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeRole::Manager => "manager",
            NodeRole::Worker => "worker",
        }
    }
}

/// Whether the Swarm hears from a machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    Ready,
    /// It stopped answering (switched off, cut off, its engine gone): its tasks are placed
    /// elsewhere.
    Down,
    Disconnected,
    Unknown,
}

impl NodeState {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Ready => "ready",
            NodeState::Down => "down",
            NodeState::Disconnected => "disconnected",
            NodeState::Unknown => "unknown",
        }
    }
}

/// Whether a machine takes tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeAvailability {
    /// Takes new tasks.
    Active,
    /// Keeps its tasks, takes no new ones.
    Pause,
    /// Its tasks move to the other machines (before maintenance).
    Drain,
}

impl NodeAvailability {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeAvailability::Active => "active",
            NodeAvailability::Pause => "pause",
            NodeAvailability::Drain => "drain",
        }
    }

    pub fn parse(s: &str) -> Option<NodeAvailability> {
        match s {
            "active" => Some(NodeAvailability::Active),
            "pause" => Some(NodeAvailability::Pause),
            "drain" => Some(NodeAvailability::Drain),
            _ => None,
        }
    }
}

/// Formats thousandths of a CPU for display ("1.5").
pub fn format_cpus(milli: i64) -> String {
    if milli % 1000 == 0 {
        (milli / 1000).to_string()
    } else {
        let s = format!("{}.{:03}", milli / 1000, milli % 1000);
        s.trim_end_matches('0').to_string()
    }
}

/// One machine of a Docker Swarm.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// The Swarm's id for it (25 lowercase letters and digits).
    pub id: String,
    pub hostname: String,
    /// The address the other machines (and HAProxy) reach it at.
    pub address: String,
    pub role: NodeRole,
    /// The manager that leads the Swarm (Raft).
    pub leader: bool,
    pub state: NodeState,
    /// Why it is in that state, when the Swarm says.
    pub message: String,
    pub availability: NodeAvailability,
    pub cpus_milli: i64,
    pub memory_bytes: i64,
    /// Tasks meant to be running there.
    pub tasks: u32,
    pub engine_version: String,
}

/// The Swarm an engine manages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cluster {
    pub nodes: Vec<Node>,
    /// Adds a machine as a worker: `docker swarm join --token … ADDR:2377`. Holds a secret.
    pub join_command: String,
}
