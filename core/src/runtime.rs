//! The container engine as the apps service and the reconciler see it: a small trait, so the
//! rules can be tested without Docker. The real adapter (bollard) lives in the server crate.

use std::collections::HashMap;

use async_trait::async_trait;
use futures_util::stream::BoxStream;

use crate::validate::ImageRef;

/// Labels on every container and network Pier creates.
pub const LABEL_INSTANCE: &str = "pier.instance";
pub const LABEL_TENANT: &str = "pier.tenant";
pub const LABEL_APP: &str = "pier.app";
pub const LABEL_DEPLOYMENT: &str = "pier.deployment";
/// Which copy of its deployment a container is (0, 1, …); none on containers from before
/// replicas, which are copy 0.
pub const LABEL_REPLICA: &str = "pier.replica";
/// On volumes: the volume's id in the database.
pub const LABEL_VOLUME: &str = "pier.volume";

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum RuntimeError {
    /// The engine did not answer; worth retrying later.
    #[error("the Docker engine is not reachable ({0})")]
    Unavailable(String),
    #[error("no such container, image or network")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
    /// The engine refused; the text is the engine's own and is shown to the app's owner.
    #[error("{0}")]
    Failed(String),
}

impl RuntimeError {
    pub fn is_transient(&self) -> bool {
        matches!(self, RuntimeError::Unavailable(_))
    }
}

/// Login for a registry. Its `Debug` never shows the password.
#[derive(Clone)]
pub struct RegistryAuth {
    pub server: String,
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RegistryAuth({}@{}, …)", self.username, self.server)
    }
}

/// How far an image pull has come, summed over its layers.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PullProgress {
    pub done_bytes: u64,
    pub total_bytes: u64,
    pub layers_done: u32,
    pub layers: u32,
    pub status: String,
}

#[derive(Debug, Clone)]
pub struct Pulled {
    /// The local image id (`sha256:…`), what the container is created from.
    pub image_id: String,
    /// The registry digest of what was pulled (`sha256:…`), for exact rollbacks.
    pub digest: Option<String>,
}

/// Everything needed to create one app container. Its `Debug` never shows env values.
#[derive(Clone)]
pub struct ContainerSpec {
    pub name: String,
    /// The local image (its id, as pulled here).
    pub image: String,
    /// The image as another machine pulls it: the reference, pinned to the digest pulled here
    /// when there is one (a Swarm's nodes run exactly what this machine checked).
    pub reference: String,
    /// The registry login other machines pull `reference` with.
    pub registry_auth: Option<RegistryAuth>,
    pub env: Vec<(String, String)>,
    pub port: u16,
    pub memory_bytes: i64,
    pub nano_cpus: i64,
    pub pids_limit: i64,
    pub read_only: bool,
    /// The network's id.
    pub network: String,
    /// The name the tenant's other apps reach it by on that network (the app's name).
    pub alias: String,
    /// Publish the port on loopback (web apps, for HAProxy); internal apps are never published.
    pub publish: bool,
    /// Capabilities added back after all are dropped.
    pub cap_add: Vec<String>,
    /// Volumes to mount: (Docker volume name, path in the container).
    pub mounts: Vec<(String, String)>,
    /// The most its writable layer may hold (MiB), where the storage driver can bound it.
    pub writable_layer_mb: Option<i64>,
    pub labels: HashMap<String, String>,
}

impl std::fmt::Debug for ContainerSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContainerSpec")
            .field("name", &self.name)
            .field("image", &self.image)
            .field("env", &self.env.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .field("port", &self.port)
            .field("memory_bytes", &self.memory_bytes)
            .field("nano_cpus", &self.nano_cpus)
            .field("read_only", &self.read_only)
            .field("network", &self.network)
            .field("alias", &self.alias)
            .field("publish", &self.publish)
            .field("cap_add", &self.cap_add)
            .field("mounts", &self.mounts)
            .finish()
    }
}

/// A container's state, as the engine lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ContainerState {
    Created,
    Running,
    Paused,
    /// Waiting to be started again by its restart policy (after a crash).
    Restarting,
    /// Being removed.
    Removing,
    Exited,
    /// Broken: the engine could not stop or remove it cleanly.
    Dead,
}

impl ContainerState {
    /// Docker's word for it; anything unknown counts as dead (the reconciler replaces it).
    pub fn from_docker(s: &str) -> ContainerState {
        match s {
            "created" => ContainerState::Created,
            "running" => ContainerState::Running,
            "paused" => ContainerState::Paused,
            "restarting" => ContainerState::Restarting,
            "removing" => ContainerState::Removing,
            "exited" => ContainerState::Exited,
            _ => ContainerState::Dead,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ContainerState::Created => "created",
            ContainerState::Running => "running",
            ContainerState::Paused => "paused",
            ContainerState::Restarting => "restarting",
            ContainerState::Removing => "removing",
            ContainerState::Exited => "exited",
            ContainerState::Dead => "dead",
        }
    }
}

/// A container as listed by the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    pub id: String,
    pub name: String,
    pub labels: HashMap<String, String>,
    pub state: ContainerState,
    /// The port Docker chose for the app's port, published on `host`.
    pub host_port: Option<u16>,
    /// The machine the port is published on; None: this machine's loopback (a container of
    /// this engine). A Swarm task runs on a node and answers at that node's address.
    pub host: Option<std::net::IpAddr>,
    /// Its address on its network (how Pier reaches an internal app to check its health).
    pub ip: Option<std::net::IpAddr>,
    pub created: i64,
}

impl Container {
    fn label_id(&self, key: &str) -> Option<i64> {
        self.labels.get(key).and_then(|v| v.parse().ok())
    }
    pub fn tenant(&self) -> Option<i64> {
        self.label_id(LABEL_TENANT)
    }
    pub fn app_id(&self) -> Option<i64> {
        self.label_id(LABEL_APP)
    }
    pub fn deployment_id(&self) -> Option<i64> {
        self.label_id(LABEL_DEPLOYMENT)
    }
    /// Where it answers HTTP from the outside: HAProxy's server and the health check's address.
    pub fn endpoint(&self) -> Option<std::net::SocketAddr> {
        let ip = self
            .host
            .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
        self.host_port.map(|p| std::net::SocketAddr::new(ip, p))
    }

    /// Which copy of its deployment it is.
    pub fn replica(&self) -> i64 {
        self.label_id(LABEL_REPLICA).unwrap_or(0)
    }
    pub fn running(&self) -> bool {
        self.state == ContainerState::Running
    }
}

/// A persistent volume to make sure of: a file system of `size_mb`, known to the engine by
/// `name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeSpec {
    pub id: i64,
    pub name: String,
    pub size_mb: i64,
    pub labels: HashMap<String, String>,
}

/// A volume as listed by the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeInfo {
    pub name: String,
    /// Its id in the database (label), if it has one.
    pub id: Option<i64>,
}

/// How full a volume is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VolumeUsage {
    pub used_bytes: u64,
    pub total_bytes: u64,
}

/// What Pier tells the admin about the engine's isolation.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EngineInfo {
    pub version: String,
    /// Where the engine keeps images, containers and volumes (its disk is watched).
    pub root_dir: String,
    /// Containers run in user namespaces (`userns-remap`): container root is not host root.
    pub user_namespaces: bool,
    /// The host uid and gid that container root maps to (0 without user namespaces).
    pub root_uid: u32,
    pub root_gid: u32,
    /// The storage driver and the file system under it ("overlay2", "extfs").
    pub storage_driver: String,
    pub backing_fs: String,
    /// Whether the driver can bound a container's writable layer (`--storage-opt size`):
    /// overlay2 on xfs (mounted with pquota), btrfs, zfs.
    pub layer_limit: bool,
    /// Whether published ports go through `docker-proxy` (a userspace copy per connection and a
    /// process per port) rather than the kernel's NAT; None when the engine is not on this host.
    pub userland_proxy: Option<bool>,
}

pub use pier_types::{Cluster, Node, NodeAvailability, NodeRole, NodeState};

/// What tenants' containers may reach beyond their own network.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EgressPolicy {
    /// Also drop traffic to private address ranges (other than Pier's own networks).
    pub block_private: bool,
    /// Host ports containers may still open connections to (HAProxy's public ports).
    pub open_ports: Vec<u16>,
}

/// Whether the egress rules are in place, as the admin page shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EgressStatus {
    pub enforced: bool,
    pub policy: EgressPolicy,
    /// Why they are not in place.
    pub problem: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    pub name: String,
    pub tenant: Option<i64>,
}

/// Why a container stopped, in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitInfo {
    pub running: bool,
    /// How often Docker restarted the container (its restart policy).
    pub restarts: u64,
    pub exit_code: i64,
    pub oom_killed: bool,
    pub error: String,
}

impl ExitInfo {
    pub fn describe(&self) -> String {
        if self.oom_killed {
            "it ran out of memory (killed by the memory limit)".into()
        } else if !self.error.is_empty() {
            format!("it could not start: {}", self.error)
        } else {
            format!("it exited with code {}", self.exit_code)
        }
    }
}

/// Cumulative counters read from the engine; CPU use is the difference of two readings.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    pub cpu_ns: u64,
    pub system_ns: u64,
    pub online_cpus: u32,
    pub memory_bytes: u64,
    pub memory_limit: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LogLine {
    /// "stdout" or "stderr".
    pub stream: String,
    pub text: String,
}

pub type ProgressFn = Box<dyn Fn(PullProgress) + Send + Sync>;

/// What a command run inside a container fed on, and where its output goes.
pub type ExecInput = Box<dyn tokio::io::AsyncRead + Send + Unpin>;
pub type ExecOutput = Box<dyn tokio::io::AsyncWrite + Send + Unpin>;

/// How a command run inside a container ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutcome {
    pub exit_code: i64,
    /// The last few KiB it wrote to standard error.
    pub stderr: String,
    /// What it wrote to standard output, in bytes.
    pub stdout_bytes: u64,
}

/// The operations Pier needs from a container engine.
#[async_trait]
pub trait Runtime: Send + Sync + 'static {
    /// Every container (running or not) labelled with this installation's id.
    async fn containers(&self, instance: &str) -> Result<Vec<Container>, RuntimeError>;
    /// One item for each change to this installation's containers that [`Runtime::containers`]
    /// would show (created, started, died, removed, paused, renamed) from `since` (Unix
    /// seconds) on, as the engine reports it; the stream ends with the engine's connection.
    /// `None` when the engine cannot tell: callers then list as often as they need.
    fn container_events(
        &self,
        _instance: &str,
        _since: i64,
    ) -> Option<BoxStream<'static, Result<(), RuntimeError>>> {
        None
    }
    async fn pull(
        &self,
        image: &ImageRef,
        auth: Option<RegistryAuth>,
        progress: ProgressFn,
    ) -> Result<Pulled, RuntimeError>;
    /// The digest the image's tag names in its registry now, without pulling it.
    async fn remote_digest(
        &self,
        image: &ImageRef,
        auth: Option<RegistryAuth>,
    ) -> Result<String, RuntimeError>;
    async fn networks(&self, instance: &str) -> Result<Vec<Network>, RuntimeError>;
    /// Creates the network unless it exists; its id. `bridge` names its bridge on the host
    /// (egress rules match Pier's bridges by name).
    async fn ensure_network(
        &self,
        name: &str,
        bridge: &str,
        labels: &HashMap<String, String>,
    ) -> Result<String, RuntimeError>;
    async fn remove_network(&self, name: &str) -> Result<(), RuntimeError>;
    /// Creates a container; `Conflict` when one with that name exists.
    async fn create(&self, spec: &ContainerSpec) -> Result<String, RuntimeError>;
    async fn start(&self, id: &str) -> Result<(), RuntimeError>;
    /// Puts a started container's CPU limit in its steady form. An engine may start a container
    /// with the same limit counted over a longer period, so that its start (the engine's own
    /// set-up runs inside the container's limits too) is not throttled; the average share is the
    /// same in both forms. Nothing to do where the engine has one form only.
    async fn settle_cpu(&self, _id: &str, _nano_cpus: i64) -> Result<(), RuntimeError> {
        Ok(())
    }
    async fn stop(&self, id: &str, timeout_secs: i64) -> Result<(), RuntimeError>;
    async fn restart(&self, id: &str, timeout_secs: i64) -> Result<(), RuntimeError>;
    /// Removes a container, stopping it first; a missing container is not an error.
    async fn remove(&self, id: &str) -> Result<(), RuntimeError>;
    async fn exit_info(&self, id: &str) -> Result<ExitInfo, RuntimeError>;
    /// The last `tail` lines, then (when `follow`) new lines as they are written.
    fn logs(
        &self,
        id: &str,
        tail: usize,
        follow: bool,
    ) -> BoxStream<'static, Result<LogLine, RuntimeError>>;
    async fn usage(&self, id: &str) -> Result<Usage, RuntimeError>;
    /// Isolation facts about the engine.
    async fn info(&self) -> Result<EngineInfo, RuntimeError>;
    /// The Swarm this engine manages; None when it is not a Swarm manager.
    async fn cluster(&self) -> Result<Option<Cluster>, RuntimeError>;
    /// Whether a node takes tasks; `NotFound` for a node the Swarm does not know.
    async fn set_node_availability(
        &self,
        node: &str,
        availability: NodeAvailability,
    ) -> Result<(), RuntimeError>;
    /// Every volume labelled with this installation's id.
    async fn volumes(&self, instance: &str) -> Result<Vec<VolumeInfo>, RuntimeError>;
    /// Makes the volume exist, with its size, and ready to mount (again after a reboot).
    async fn ensure_volume(&self, spec: &VolumeSpec) -> Result<(), RuntimeError>;
    /// Removes a volume and its data; a missing one is not an error. Fails while a container
    /// uses it.
    async fn remove_volume(&self, name: &str) -> Result<(), RuntimeError>;
    /// Used and total space of a volume, when it exists.
    async fn volume_usage(&self, name: &str) -> Result<Option<VolumeUsage>, RuntimeError>;
    /// The names of the volumes whose data exists here (a crash between making the data and
    /// the engine's volume can leave data that the engine does not list).
    fn stored_volumes(&self) -> Vec<String>;
    /// Removes an image reference (the image itself once nothing else refers to it). A missing
    /// one is not an error; `Conflict` while a container uses it.
    async fn remove_image(&self, reference: &str) -> Result<(), RuntimeError>;
    /// Puts the egress rules for tenants' containers in place (idempotent; run every pass).
    async fn enforce_egress(&self, policy: &EgressPolicy) -> EgressStatus;
    /// Freezes every process of a container (`docker pause`); `unpause` thaws them.
    async fn pause(&self, id: &str) -> Result<(), RuntimeError>;
    async fn unpause(&self, id: &str) -> Result<(), RuntimeError>;
    /// Mounts a volume's file system at `at` (an empty directory) for Pier's own use, while
    /// containers may have it mounted too; `unmount_volume` undoes it.
    async fn mount_volume(&self, name: &str, at: &std::path::Path) -> Result<(), RuntimeError>;
    async fn unmount_volume(&self, at: &std::path::Path) -> Result<(), RuntimeError>;
    /// Runs `cmd` (an argument list, no shell) inside a running container as its user: `stdin`
    /// is fed to it (then closed), its standard output is copied into `stdout` as it comes.
    /// Returns once it has exited.
    async fn exec(
        &self,
        id: &str,
        cmd: &[String],
        stdin: Option<ExecInput>,
        stdout: ExecOutput,
    ) -> Result<ExecOutcome, RuntimeError>;
}

/// Keeps the last `STDERR_TAIL` bytes of what a command wrote to standard error.
pub const STDERR_TAIL: usize = 4096;

/// Appends to a bounded tail of standard error.
pub fn keep_tail(tail: &mut Vec<u8>, more: &[u8]) {
    tail.extend_from_slice(more);
    if tail.len() > STDERR_TAIL {
        tail.drain(..tail.len() - STDERR_TAIL);
    }
}

/// The engine's name of a volume.
pub fn volume_name(instance: &str, id: i64) -> String {
    format!("pier-{instance}-v{id}")
}
