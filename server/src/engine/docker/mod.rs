//! The Docker engine behind [`Runtime`], through bollard. Every container gets the hardened
//! defaults here, whatever the spec says: no privileges, every capability dropped (and only the
//! spec's profile added back), no new privileges, limits on memory, CPU and processes, an init
//! process, a port published on loopback only (web apps) or not at all (internal apps).
//! Volumes are size-limited file systems from [`Storage`].

use std::collections::HashMap;

use async_trait::async_trait;
use bollard::{
    container::LogOutput,
    errors::Error as DockerError,
    models::VolumeCreateRequest,
    query_parameters::{
        EventsOptions, ListContainersOptionsBuilder, ListNetworksOptionsBuilder,
        ListVolumesOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
        RemoveImageOptionsBuilder, RestartContainerOptionsBuilder, StatsOptionsBuilder,
        StopContainerOptionsBuilder,
    },
    Docker,
};
use futures_util::{stream::BoxStream, StreamExt, TryStreamExt};

use crate::engine::storage::Storage;

mod cgroup;
mod create;
mod exec;
mod info;
mod network;
mod pull;

use info::{engine_info, local_userland_proxy};
use pier_core::{
    runtime::{
        Cluster, Container, ContainerSpec, ContainerState, EgressPolicy, EgressStatus, EngineInfo,
        ExecInput, ExecOutcome, ExecOutput, ExitInfo, LogLine, Network, NodeAvailability,
        ProgressFn, Pulled, RegistryAuth, Runtime, RuntimeError, Usage, VolumeInfo, VolumeSpec,
        VolumeUsage, LABEL_INSTANCE, LABEL_TENANT, LABEL_VOLUME,
    },
    validate::ImageRef,
};

pub struct DockerRuntime {
    /// The engine's socket, when not the default one.
    socket: Option<String>,
    /// Connected on first use, and again after a failed connect: Pier starts (and shows the
    /// engine as unreachable) when dockerd is down, and recovers when it comes up.
    client: std::sync::Mutex<Option<Docker>>,
    /// Network creation one at a time: Docker allows two networks with one name, and parallel
    /// rollouts of one tenant's apps would otherwise race to make theirs.
    networks: tokio::sync::Mutex<()>,
    /// The volumes' file systems, under `<data dir>/volumes`.
    storage: Storage,
    /// Kept for a minute: it changes only when dockerd restarts with other settings, and new
    /// volumes must then be made for the new owner of container root.
    info: std::sync::Mutex<Option<(std::time::Instant, EngineInfo)>>,
    /// The engine refused `--storage-opt size` although its driver should take it (xfs without
    /// `pquota`, btrfs without quotas): writable layers stay unbounded from then on.
    layer_refused: std::sync::atomic::AtomicBool,
    /// Each running container's control group, found once (None: its files are not readable
    /// from here, and the engine is asked).
    groups: std::sync::Mutex<HashMap<String, Option<cgroup::Group>>>,
    /// Group reads run one at a time, holding this, so one blocking thread serves a whole
    /// sampling round (side by side, each round started a thread per concurrent read).
    host_cpu: std::sync::Arc<tokio::sync::Mutex<cgroup::HostCpu>>,
}

impl DockerRuntime {
    /// Nothing is sent (or even connected) until the first call. Volume file systems live in
    /// `volumes_dir`; stale device links there are removed now, before any volume is attached.
    pub fn new(volumes_dir: std::path::PathBuf) -> Self {
        Self::at(volumes_dir, None)
    }

    /// A running container's CPU and memory from its control group's files (see `cgroup`);
    /// None when they cannot be read here, and the engine must be asked.
    pub async fn usage_from_files(&self, id: &str) -> Option<Usage> {
        let known = self.groups.lock().expect("groups lock").get(id).cloned();
        let group = match known {
            Some(g) => g?,
            None => {
                let c = self
                    .docker()
                    .ok()?
                    .inspect_container(
                        id,
                        None::<bollard::query_parameters::InspectContainerOptions>,
                    )
                    .await
                    .ok()?;
                let full = c.id.unwrap_or_default();
                // Not running: no process, no group yet (asked again at the next sample).
                let pid = c.state.and_then(|s| s.pid).filter(|p| *p > 0)?;
                // Another pid namespace (Pier in a container) names other processes: a group
                // that does not carry the container's id is not its own.
                let g = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
                    .ok()
                    .and_then(|t| cgroup::group(&t, std::path::Path::new("/sys/fs/cgroup")))
                    .filter(|g| !full.is_empty() && g.names(&full));
                self.groups
                    .lock()
                    .expect("groups lock")
                    .insert(id.to_owned(), g.clone());
                g?
            }
        };
        // Off the async workers: at 1,000 containers a round's reads add up to tens of
        // milliseconds, which stalled the requests queued behind them (bench/scale.py).
        let mut host = self.host_cpu.clone().lock_owned().await;
        let read = tokio::task::spawn_blocking(move || cgroup::usage(&group, &mut host)).await;
        match read.unwrap_or_else(|e| Err(std::io::Error::other(e))) {
            Ok(u) => Some(u),
            Err(e) => {
                tracing::debug!(container = id, error = %e, "control group unreadable; asking the engine");
                self.groups.lock().expect("groups lock").remove(id);
                None
            }
        }
    }

    /// The engine at `socket` (a Unix socket path) rather than the one `DOCKER_HOST` (or the
    /// default socket) names.
    pub fn at(volumes_dir: std::path::PathBuf, socket: Option<String>) -> Self {
        let storage = Storage::new(volumes_dir);
        storage.sweep();
        DockerRuntime {
            socket,
            client: std::sync::Mutex::new(None),
            networks: tokio::sync::Mutex::new(()),
            layer_refused: std::sync::atomic::AtomicBool::new(false),
            storage,
            info: std::sync::Mutex::new(None),
            groups: Default::default(),
            host_cpu: Default::default(),
        }
    }

    /// The engine's client (the Swarm runtime drives the same engine).
    pub(crate) fn client(&self) -> Result<Docker, RuntimeError> {
        self.docker()
    }

    fn docker(&self) -> Result<Docker, RuntimeError> {
        let mut c = self.client.lock().expect("docker client lock");
        if let Some(d) = c.as_ref() {
            return Ok(d.clone());
        }
        let d = match &self.socket {
            Some(path) => Docker::connect_with_unix(path, 120, bollard::API_DEFAULT_VERSION),
            None => Docker::connect_with_local_defaults(),
        }
        .map_err(|e| RuntimeError::Unavailable(e.to_string()))?
        .with_timeout(std::time::Duration::from_secs(120));
        *c = Some(d.clone());
        Ok(d)
    }
}

pub(super) fn map_err(e: DockerError) -> RuntimeError {
    match e {
        DockerError::DockerResponseServerError {
            status_code: 404, ..
        } => RuntimeError::NotFound,
        DockerError::DockerResponseServerError {
            status_code: 409,
            message,
        } => RuntimeError::Conflict(message),
        DockerError::DockerResponseServerError { message, .. } => RuntimeError::Failed(message),
        DockerError::DockerStreamError { error } => RuntimeError::Failed(error),
        other => RuntimeError::Unavailable(other.to_string()),
    }
}

/// The engine's log output as lines (a chunk may hold several).
pub(crate) fn log_lines(
    out: impl futures_util::Stream<Item = Result<LogOutput, DockerError>> + Send + 'static,
) -> BoxStream<'static, Result<LogLine, RuntimeError>> {
    out.map_err(map_err)
        .map_ok(|out| {
            let stream = match out {
                LogOutput::StdErr { .. } => "stderr",
                _ => "stdout",
            };
            let text = String::from_utf8_lossy(out.as_ref());
            let lines: Vec<Result<LogLine, RuntimeError>> = text
                .split_terminator('\n')
                .map(|l| {
                    Ok(LogLine {
                        stream: stream.into(),
                        text: l.trim_end_matches('\r').to_owned(),
                    })
                })
                .collect();
            futures_util::stream::iter(lines)
        })
        .try_flatten()
        .boxed()
}

/// The container events that change what a container list shows: one appears or goes, its
/// state or name changes, or it gets its addresses (at start).
const LIST_CHANGES: [&str; 8] = [
    "create", "start", "restart", "die", "pause", "unpause", "rename", "destroy",
];

pub(crate) fn label_filter(instance: &str) -> HashMap<String, Vec<String>> {
    HashMap::from([(
        "label".to_string(),
        vec![format!("{LABEL_INSTANCE}={instance}")],
    )])
}

#[async_trait]
impl Runtime for DockerRuntime {
    async fn containers(&self, instance: &str) -> Result<Vec<Container>, RuntimeError> {
        let opts = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&label_filter(instance))
            .build();
        let list = self
            .docker()?
            .list_containers(Some(opts))
            .await
            .map_err(map_err)?;
        Ok(list
            .into_iter()
            .map(|c| {
                let labels = c.labels.unwrap_or_default();
                let host_port = c.ports.unwrap_or_default().into_iter().find_map(|p| {
                    (p.ip.as_deref() == Some("127.0.0.1"))
                        .then_some(p.public_port)
                        .flatten()
                });
                // Pier's containers are on exactly one network, their tenant's.
                let ip = c
                    .network_settings
                    .and_then(|n| n.networks)
                    .and_then(|n| n.into_values().find_map(|e| e.ip_address))
                    .and_then(|a| a.parse().ok());
                Container {
                    id: c.id.unwrap_or_default(),
                    name: c
                        .names
                        .and_then(|n| n.into_iter().next())
                        .unwrap_or_default()
                        .trim_start_matches('/')
                        .to_owned(),
                    labels,
                    state: ContainerState::from_docker(
                        &c.state.map(|s| s.to_string()).unwrap_or_default(),
                    ),
                    host_port,
                    host: None,
                    ip,
                    created: c.created.unwrap_or_default(),
                }
            })
            .collect())
    }

    fn container_events(
        &self,
        instance: &str,
        since: i64,
    ) -> Option<BoxStream<'static, Result<(), RuntimeError>>> {
        let docker = match self.docker() {
            Ok(d) => d,
            Err(e) => return Some(futures_util::stream::once(async { Err(e) }).boxed()),
        };
        let mut filters = label_filter(instance);
        filters.insert("type".into(), vec!["container".into()]);
        filters.insert(
            "event".into(),
            LIST_CHANGES.iter().map(|e| (*e).to_owned()).collect(),
        );
        let options = EventsOptions {
            since: Some(since.to_string()),
            until: None,
            filters: Some(filters),
        };
        Some(
            docker
                .events(Some(options))
                .map(|r| r.map(drop).map_err(map_err))
                .boxed(),
        )
    }

    async fn pull(
        &self,
        image: &ImageRef,
        auth: Option<RegistryAuth>,
        progress: ProgressFn,
    ) -> Result<Pulled, RuntimeError> {
        self.pull_image(image, auth, progress).await
    }

    async fn remote_digest(
        &self,
        image: &ImageRef,
        auth: Option<RegistryAuth>,
    ) -> Result<String, RuntimeError> {
        self.digest_of(image, auth).await
    }

    async fn networks(&self, instance: &str) -> Result<Vec<Network>, RuntimeError> {
        let opts = ListNetworksOptionsBuilder::new()
            .filters(&label_filter(instance))
            .build();
        let list = self
            .docker()?
            .list_networks(Some(opts))
            .await
            .map_err(map_err)?;
        Ok(list
            .into_iter()
            .map(|n| Network {
                tenant: n
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(LABEL_TENANT))
                    .and_then(|t| t.parse().ok()),
                name: n.name.unwrap_or_default(),
            })
            .collect())
    }

    async fn ensure_network(
        &self,
        name: &str,
        bridge: &str,
        labels: &HashMap<String, String>,
    ) -> Result<String, RuntimeError> {
        self.ensure_network_named(name, bridge, labels).await
    }

    async fn remove_network(&self, name: &str) -> Result<(), RuntimeError> {
        match self.docker()?.remove_network(name).await.map_err(map_err) {
            Ok(()) | Err(RuntimeError::NotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn create(&self, spec: &ContainerSpec) -> Result<String, RuntimeError> {
        self.create_container(spec).await
    }

    async fn start(&self, id: &str) -> Result<(), RuntimeError> {
        match self
            .docker()?
            .start_container(id, None::<bollard::query_parameters::StartContainerOptions>)
            .await
        {
            Ok(()) => Ok(()),
            // 304: already running.
            Err(DockerError::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(()),
            Err(e) => Err(map_err(e)),
        }
    }

    async fn settle_cpu(&self, id: &str, nano_cpus: i64) -> Result<(), RuntimeError> {
        if nano_cpus <= 0 {
            return Ok(());
        }
        let body = bollard::models::ContainerUpdateBody {
            cpu_period: Some(create::STEADY_PERIOD_US),
            cpu_quota: Some(create::quota_us(nano_cpus, create::STEADY_PERIOD_US)),
            ..Default::default()
        };
        self.docker()?
            .update_container(id, body)
            .await
            .map_err(map_err)
    }

    async fn stop(&self, id: &str, timeout_secs: i64) -> Result<(), RuntimeError> {
        let opts = StopContainerOptionsBuilder::new()
            .t(timeout_secs as i32)
            .build();
        match self.docker()?.stop_container(id, Some(opts)).await {
            Ok(()) => Ok(()),
            Err(DockerError::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(()),
            Err(e) => Err(map_err(e)),
        }
    }

    async fn restart(&self, id: &str, timeout_secs: i64) -> Result<(), RuntimeError> {
        let opts = RestartContainerOptionsBuilder::new()
            .t(timeout_secs as i32)
            .build();
        self.docker()?
            .restart_container(id, Some(opts))
            .await
            .map_err(map_err)
    }

    async fn remove(&self, id: &str) -> Result<(), RuntimeError> {
        self.groups.lock().expect("groups lock").remove(id);
        // `v`: anonymous volumes the image declared (`VOLUME` in its Dockerfile) go with the
        // container instead of piling up on the host.
        let opts = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(true)
            .build();
        match self
            .docker()?
            .remove_container(id, Some(opts))
            .await
            .map_err(map_err)
        {
            Ok(()) | Err(RuntimeError::NotFound) => Ok(()),
            // Removal already in progress.
            Err(RuntimeError::Conflict(m)) if m.contains("already in progress") => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn exit_info(&self, id: &str) -> Result<ExitInfo, RuntimeError> {
        let c = self
            .docker()?
            .inspect_container(
                id,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
            .map_err(map_err)?;
        let s = c.state.unwrap_or_default();
        Ok(ExitInfo {
            restarts: c
                .restart_count
                .and_then(|n| u64::try_from(n).ok())
                .unwrap_or(0),
            // Docker says "running" of a container waiting to be restarted after a crash too: a
            // crash loop is not a container that runs.
            running: s.running.unwrap_or(false) && !s.restarting.unwrap_or(false),
            exit_code: s.exit_code.unwrap_or_default(),
            oom_killed: s.oom_killed.unwrap_or(false),
            error: s.error.unwrap_or_default(),
        })
    }

    fn logs(
        &self,
        id: &str,
        tail: usize,
        follow: bool,
    ) -> BoxStream<'static, Result<LogLine, RuntimeError>> {
        let opts = LogsOptionsBuilder::new()
            .stdout(true)
            .stderr(true)
            .follow(follow)
            .tail(&tail.to_string())
            .build();
        let docker = match self.docker() {
            Ok(d) => d,
            Err(e) => return futures_util::stream::once(async move { Err(e) }).boxed(),
        };
        log_lines(docker.logs(id, Some(opts)))
    }

    async fn usage(&self, id: &str) -> Result<Usage, RuntimeError> {
        if let Some(u) = self.usage_from_files(id).await {
            return Ok(u);
        }
        let opts = StatsOptionsBuilder::new()
            .stream(false)
            .one_shot(true)
            .build();
        let s = self
            .docker()?
            .stats(id, Some(opts))
            .next()
            .await
            .ok_or(RuntimeError::NotFound)?
            .map_err(map_err)?;
        let cpu = s.cpu_stats.unwrap_or_default();
        let mem = s.memory_stats.unwrap_or_default();
        // What `docker stats` shows: usage minus the page cache.
        let cache = mem
            .stats
            .as_ref()
            .and_then(|m| m.get("total_inactive_file").or(m.get("inactive_file")))
            .copied()
            .unwrap_or(0);
        Ok(Usage {
            cpu_ns: cpu.cpu_usage.and_then(|u| u.total_usage).unwrap_or(0),
            system_ns: cpu.system_cpu_usage.unwrap_or(0),
            online_cpus: cpu.online_cpus.unwrap_or(1),
            memory_bytes: mem.usage.unwrap_or(0).saturating_sub(cache),
            memory_limit: mem.limit.unwrap_or(0),
        })
    }

    async fn cluster(&self) -> Result<Option<Cluster>, RuntimeError> {
        super::swarm::cluster(&self.docker()?).await
    }

    async fn set_node_availability(
        &self,
        node: &str,
        availability: NodeAvailability,
    ) -> Result<(), RuntimeError> {
        super::swarm::set_node_availability(&self.docker()?, node, availability).await
    }

    async fn info(&self) -> Result<EngineInfo, RuntimeError> {
        if let Some((at, i)) = self.info.lock().expect("info lock").clone() {
            if at.elapsed() < std::time::Duration::from_secs(60) {
                return Ok(i);
            }
        }
        let s = self.docker()?.info().await.map_err(map_err)?;
        let info = engine_info(
            s.server_version.unwrap_or_default(),
            &s.security_options.unwrap_or_default(),
            s.docker_root_dir.as_deref().unwrap_or_default(),
            s.driver.as_deref().unwrap_or_default(),
            &s.driver_status.unwrap_or_default(),
        );
        let mut info = info;
        info.layer_limit &= !self
            .layer_refused
            .load(std::sync::atomic::Ordering::Relaxed);
        info.userland_proxy = local_userland_proxy();
        *self.info.lock().expect("info lock") = Some((std::time::Instant::now(), info.clone()));
        Ok(info)
    }

    async fn volumes(&self, instance: &str) -> Result<Vec<VolumeInfo>, RuntimeError> {
        let opts = ListVolumesOptionsBuilder::new()
            .filters(&label_filter(instance))
            .build();
        let list = self
            .docker()?
            .list_volumes(Some(opts))
            .await
            .map_err(map_err)?;
        Ok(list
            .volumes
            .unwrap_or_default()
            .into_iter()
            .map(|v| VolumeInfo {
                id: v.labels.get(LABEL_VOLUME).and_then(|i| i.parse().ok()),
                name: v.name,
            })
            .collect())
    }

    async fn ensure_volume(&self, spec: &VolumeSpec) -> Result<(), RuntimeError> {
        let info = self.info().await?;
        let device = self
            .storage
            .ensure(&spec.name, spec.size_mb, (info.root_uid, info.root_gid))
            .await?;
        let docker = self.docker()?;
        match docker.inspect_volume(&spec.name).await.map_err(map_err) {
            Ok(_) => return Ok(()),
            Err(RuntimeError::NotFound) => {}
            Err(e) => return Err(e),
        }
        let mut labels = spec.labels.clone();
        labels.insert(LABEL_VOLUME.into(), spec.id.to_string());
        let req = VolumeCreateRequest {
            name: Some(spec.name.clone()),
            driver: Some("local".into()),
            driver_opts: Some(HashMap::from([
                ("type".to_string(), "ext4".to_string()),
                ("device".to_string(), device.to_string_lossy().into_owned()),
            ])),
            labels: Some(labels),
            ..Default::default()
        };
        docker.create_volume(req).await.map_err(map_err)?;
        Ok(())
    }

    async fn remove_volume(&self, name: &str) -> Result<(), RuntimeError> {
        match self
            .docker()?
            .remove_volume(name, None::<bollard::query_parameters::RemoveVolumeOptions>)
            .await
            .map_err(map_err)
        {
            Ok(()) | Err(RuntimeError::NotFound) => {}
            Err(e) => return Err(e),
        }
        self.storage.remove(name).await
    }

    async fn volume_usage(&self, name: &str) -> Result<Option<VolumeUsage>, RuntimeError> {
        self.storage.usage(name).await
    }

    fn stored_volumes(&self) -> Vec<String> {
        self.storage.names()
    }

    async fn remove_image(&self, reference: &str) -> Result<(), RuntimeError> {
        let opts = RemoveImageOptionsBuilder::new()
            .force(false)
            .noprune(false)
            .build();
        match self
            .docker()?
            .remove_image(reference, Some(opts), None)
            .await
            .map_err(map_err)
        {
            Ok(_) | Err(RuntimeError::NotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn enforce_egress(&self, policy: &EgressPolicy) -> EgressStatus {
        super::firewall::enforce(policy).await
    }

    async fn pause(&self, id: &str) -> Result<(), RuntimeError> {
        self.docker()?.pause_container(id).await.map_err(map_err)
    }

    async fn unpause(&self, id: &str) -> Result<(), RuntimeError> {
        self.docker()?.unpause_container(id).await.map_err(map_err)
    }

    async fn mount_volume(&self, name: &str, at: &std::path::Path) -> Result<(), RuntimeError> {
        self.storage.mount(name, at).await
    }

    async fn unmount_volume(&self, at: &std::path::Path) -> Result<(), RuntimeError> {
        self.storage.unmount(at).await
    }

    async fn exec(
        &self,
        id: &str,
        cmd: &[String],
        stdin: Option<ExecInput>,
        stdout: ExecOutput,
    ) -> Result<ExecOutcome, RuntimeError> {
        self.exec_in(id, cmd, stdin, stdout).await
    }
}
