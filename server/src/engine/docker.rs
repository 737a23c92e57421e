//! The Docker engine behind [`Runtime`], through bollard. Every container gets the hardened
//! defaults here, whatever the spec says: no privileges, every capability dropped (and only the
//! spec's profile added back), no new privileges, limits on memory, CPU and processes, an init
//! process, a port published on loopback only (web apps) or not at all (internal apps).
//! Volumes are size-limited file systems from [`Storage`].

use std::collections::HashMap;

use async_trait::async_trait;
use bollard::{
    auth::DockerCredentials,
    container::LogOutput,
    errors::Error as DockerError,
    exec::StartExecResults,
    models::{
        ContainerCreateBody, EndpointSettings, ExecConfig, HostConfig, HostConfigLogConfig, Mount,
        MountType, NetworkCreateRequest, NetworkingConfig, PortBinding, RestartPolicy,
        RestartPolicyNameEnum, VolumeCreateRequest,
    },
    query_parameters::{
        CreateContainerOptionsBuilder, CreateImageOptionsBuilder, ListContainersOptionsBuilder,
        ListNetworksOptionsBuilder, ListVolumesOptionsBuilder, LogsOptionsBuilder,
        RemoveContainerOptionsBuilder, RemoveImageOptionsBuilder, RestartContainerOptionsBuilder,
        StatsOptionsBuilder, StopContainerOptionsBuilder,
    },
    Docker,
};
use futures_util::{stream::BoxStream, StreamExt, TryStreamExt};

use super::storage::Storage;
use pier_core::{
    runtime::{
        keep_tail, Cluster, Container, ContainerSpec, ContainerState, EgressPolicy, EgressStatus,
        EngineInfo, ExecInput, ExecOutcome, ExecOutput, ExitInfo, LogLine, Network,
        NodeAvailability, ProgressFn, PullProgress, Pulled, RegistryAuth, Runtime, RuntimeError,
        Usage, VolumeInfo, VolumeSpec, VolumeUsage, LABEL_INSTANCE, LABEL_TENANT, LABEL_VOLUME,
    },
    validate::ImageRef,
};

/// The longest a pull may go without a progress message.
const PULL_IDLE_LIMIT: std::time::Duration = std::time::Duration::from_secs(5 * 60);

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
}

impl DockerRuntime {
    /// Nothing is sent (or even connected) until the first call. Volume file systems live in
    /// `volumes_dir`; stale device links there are removed now, before any volume is attached.
    pub fn new(volumes_dir: std::path::PathBuf) -> Self {
        Self::at(volumes_dir, None)
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
        }
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

fn label_filter(instance: &str) -> HashMap<String, Vec<String>> {
    HashMap::from([(
        "label".to_string(),
        vec![format!("{LABEL_INSTANCE}={instance}")],
    )])
}

/// Sums a pull's per-layer progress messages.
#[derive(Default)]
struct PullTally {
    layers: HashMap<String, (u64, u64, bool)>,
}

impl PullTally {
    fn add(&mut self, id: Option<&str>, status: &str, current: Option<i64>, total: Option<i64>) {
        let Some(id) = id.filter(|i| i.len() >= 12 && i.chars().all(|c| c.is_ascii_hexdigit()))
        else {
            return;
        };
        let e = self.layers.entry(id.to_owned()).or_default();
        if status == "Downloading" {
            if let Some(t) = total.filter(|t| *t > 0) {
                e.1 = t as u64;
            }
            if let Some(c) = current {
                e.0 = c.max(0) as u64;
            }
        }
        if matches!(
            status,
            "Download complete" | "Pull complete" | "Already exists"
        ) {
            e.0 = e.1;
            e.2 = true;
        }
    }

    fn progress(&self, status: &str) -> PullProgress {
        PullProgress {
            done_bytes: self.layers.values().map(|l| l.0).sum(),
            total_bytes: self.layers.values().map(|l| l.1).sum(),
            layers_done: self.layers.values().filter(|l| l.2).count() as u32,
            layers: self.layers.len() as u32,
            status: status.to_owned(),
        }
    }
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
                    ip,
                    created: c.created.unwrap_or_default(),
                }
            })
            .collect())
    }

    async fn pull(
        &self,
        image: &ImageRef,
        auth: Option<RegistryAuth>,
        progress: ProgressFn,
    ) -> Result<Pulled, RuntimeError> {
        let name = image.name();
        let reference = image
            .digest
            .clone()
            .or_else(|| image.tag.clone())
            .unwrap_or_else(|| "latest".into());
        let opts = CreateImageOptionsBuilder::new()
            .from_image(&name)
            .tag(&reference)
            .build();
        let creds = auth.map(|a| DockerCredentials {
            username: Some(a.username),
            password: Some(a.password),
            serveraddress: Some(a.server),
            ..Default::default()
        });
        let mut stream = self.docker()?.create_image(Some(opts), None, creds);
        let mut tally = PullTally::default();
        loop {
            // A registry that stops sending mid-pull must not hold the deployment forever.
            let next = tokio::time::timeout(PULL_IDLE_LIMIT, stream.next())
                .await
                .map_err(|_| {
                    RuntimeError::Failed(format!(
                        "the registry sent nothing for {} minutes",
                        PULL_IDLE_LIMIT.as_secs() / 60
                    ))
                })?;
            let Some(item) = next else { break };
            let info = item.map_err(map_err)?;
            let status = info.status.unwrap_or_default();
            let (cur, tot) = info
                .progress_detail
                .map(|d| (d.current, d.total))
                .unwrap_or((None, None));
            tally.add(info.id.as_deref(), &status, cur, tot);
            progress(tally.progress(&status));
        }
        let local = image.local();
        let inspect = self
            .docker()?
            .inspect_image(&local)
            .await
            .map_err(map_err)?;
        let digests = inspect.repo_digests.unwrap_or_default();
        let short = name
            .strip_prefix("docker.io/")
            .map(|n| n.strip_prefix("library/").unwrap_or(n).to_owned());
        let digest = digests
            .iter()
            .find(|d| {
                let repo = d.split('@').next().unwrap_or_default();
                repo == name || Some(repo) == short.as_deref()
            })
            .or(digests.first())
            .and_then(|d| d.split_once('@').map(|(_, dg)| dg.to_owned()));
        Ok(Pulled {
            image_id: inspect.id.unwrap_or(local),
            digest,
        })
    }

    async fn remote_digest(
        &self,
        image: &ImageRef,
        auth: Option<RegistryAuth>,
    ) -> Result<String, RuntimeError> {
        // The engine asks the registry for the manifest (HEAD, then GET where the registry wants
        // it), with the tenant's login: GET /distribution/{name}/json.
        let reference = format!(
            "{}:{}",
            image.name(),
            image.tag.as_deref().unwrap_or("latest")
        );
        let creds = auth.map(|a| DockerCredentials {
            username: Some(a.username),
            password: Some(a.password),
            serveraddress: Some(a.server),
            ..Default::default()
        });
        let found = tokio::time::timeout(
            std::time::Duration::from_secs(30),
            self.docker()?.inspect_registry_image(&reference, creds),
        )
        .await
        .map_err(|_| RuntimeError::Failed("the registry did not answer within 30 s".into()))?
        .map_err(map_err)?;
        found
            .descriptor
            .digest
            .filter(|d| d.starts_with("sha256:"))
            .ok_or_else(|| RuntimeError::Failed("the registry gave no digest".into()))
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
        let _one_at_a_time = self.networks.lock().await;
        // Docker does not keep network names unique: a create racing another (a panel killed
        // mid-create and restarted) can make two. So the oldest of that name is the network,
        // found by listing, and any younger twin is removed.
        let named = || async {
            let opts = ListNetworksOptionsBuilder::new()
                .filters(&HashMap::from([(
                    "name".to_string(),
                    vec![name.to_string()],
                )]))
                .build();
            let mut found: Vec<(String, String)> = self
                .docker()?
                .list_networks(Some(opts))
                .await
                .map_err(map_err)?
                .into_iter()
                .filter(|n| n.name.as_deref() == Some(name))
                .map(|n| (n.created.unwrap_or_default(), n.id.unwrap_or_default()))
                .collect();
            found.sort();
            Ok::<_, RuntimeError>(found)
        };
        let mut found = named().await?;
        if found.is_empty() {
            let req = NetworkCreateRequest {
                name: name.to_owned(),
                driver: Some("bridge".into()),
                labels: Some(labels.clone()),
                options: Some(HashMap::from([(
                    "com.docker.network.bridge.name".to_string(),
                    bridge.to_string(),
                )])),
                ..Default::default()
            };
            // A create that lost a race with an in-flight one (Docker answers "conflict", or
            // "networks have same bridge name" as a plain error) is fine when the network now
            // exists.
            // The other create may still be finishing: give it a moment to show.
            let created = self.docker()?.create_network(req).await.map_err(map_err);
            found = named().await?;
            if let Err(e) = created {
                let raced = matches!(&e, RuntimeError::Conflict(_))
                    || e.to_string().contains("same bridge name");
                let mut waits = if raced { 10 } else { 0 };
                while found.is_empty() && waits > 0 {
                    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                    found = named().await?;
                    waits -= 1;
                }
                if found.is_empty() {
                    return Err(e);
                }
                tracing::info!(%name, error = %e, "network made by a concurrent create");
            }
        }
        let Some((_, keep)) = found.first().cloned() else {
            return Err(RuntimeError::Failed(format!(
                "network {name} vanished after creation"
            )));
        };
        for (_, twin) in found.iter().skip(1) {
            tracing::warn!(%name, id = %twin, "removing a duplicate network");
            let _ = self.docker()?.remove_network(twin).await;
        }
        Ok(keep)
    }

    async fn remove_network(&self, name: &str) -> Result<(), RuntimeError> {
        match self.docker()?.remove_network(name).await.map_err(map_err) {
            Ok(()) | Err(RuntimeError::NotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn create(&self, spec: &ContainerSpec) -> Result<String, RuntimeError> {
        let port_key = format!("{}/tcp", spec.port);
        let host = HostConfig {
            memory: Some(spec.memory_bytes),
            // Equal to memory: no swap on top of the limit.
            memory_swap: Some(spec.memory_bytes),
            nano_cpus: Some(spec.nano_cpus),
            pids_limit: Some(spec.pids_limit),
            init: Some(true),
            privileged: Some(false),
            cap_drop: Some(vec!["ALL".into()]),
            cap_add: (!spec.cap_add.is_empty()).then(|| spec.cap_add.clone()),
            security_opt: Some(vec!["no-new-privileges:true".into()]),
            readonly_rootfs: Some(spec.read_only),
            storage_opt: spec
                .writable_layer_mb
                .map(|mb| HashMap::from([("size".to_string(), format!("{mb}M"))])),
            tmpfs: spec.read_only.then(|| {
                HashMap::from([("/tmp".to_string(), "rw,noexec,nosuid,size=64m".to_string())])
            }),
            network_mode: Some(spec.network.clone()),
            publish_all_ports: Some(false),
            port_bindings: spec.publish.then(|| {
                HashMap::from([(
                    port_key.clone(),
                    Some(vec![PortBinding {
                        host_ip: Some("127.0.0.1".into()),
                        // Empty: Docker picks a free port.
                        host_port: Some(String::new()),
                    }]),
                )])
            }),
            mounts: (!spec.mounts.is_empty()).then(|| {
                spec.mounts
                    .iter()
                    .map(|(volume, path)| Mount {
                        target: Some(path.clone()),
                        source: Some(volume.clone()),
                        typ: Some(MountType::VOLUME),
                        read_only: Some(false),
                        ..Default::default()
                    })
                    .collect()
            }),
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                maximum_retry_count: None,
            }),
            log_config: Some(HostConfigLogConfig {
                typ: Some("json-file".into()),
                config: Some(HashMap::from([
                    ("max-size".to_string(), "10m".to_string()),
                    ("max-file".to_string(), "3".to_string()),
                ])),
            }),
            ..Default::default()
        };
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            labels: Some(spec.labels.clone()),
            exposed_ports: Some(vec![port_key]),
            host_config: Some(host),
            networking_config: Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(
                    spec.network.clone(),
                    EndpointSettings {
                        aliases: Some(vec![spec.alias.clone()]),
                        ..Default::default()
                    },
                )])),
            }),
            ..Default::default()
        };
        let opts = CreateContainerOptionsBuilder::new()
            .name(&spec.name)
            .build();
        let created = self
            .docker()?
            .create_container(Some(opts.clone()), body.clone())
            .await
            .map_err(map_err);
        let created = match created {
            // Only the size was refused (no quota support under the driver after all): note it
            // (the admin page then says layers are unbounded) and create without it.
            Err(RuntimeError::Failed(why))
                if spec.writable_layer_mb.is_some() && refuses_layer_size(&why) =>
            {
                tracing::warn!(error = %why, "the engine cannot bound writable layers; containers are created without the bound");
                self.layer_refused
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                let mut body = body;
                if let Some(h) = body.host_config.as_mut() {
                    h.storage_opt = None;
                }
                self.docker()?
                    .create_container(Some(opts), body)
                    .await
                    .map_err(map_err)?
            }
            other => other?,
        };
        Ok(created.id)
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
        docker
            .logs(id, Some(opts))
            .map_err(map_err)
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

    async fn usage(&self, id: &str) -> Result<Usage, RuntimeError> {
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
        mut stdout: ExecOutput,
    ) -> Result<ExecOutcome, RuntimeError> {
        use tokio::io::AsyncWriteExt;
        let docker = self.docker()?;
        let config = ExecConfig {
            attach_stdin: Some(stdin.is_some()),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(false),
            cmd: Some(cmd.to_vec()),
            ..Default::default()
        };
        let exec = docker.create_exec(id, config).await.map_err(map_err)?;
        let StartExecResults::Attached {
            mut output,
            mut input,
        } = docker.start_exec(&exec.id, None).await.map_err(map_err)?
        else {
            return Err(RuntimeError::Failed("the command did not attach".into()));
        };
        let io = |e: std::io::Error| RuntimeError::Failed(e.to_string());
        // Input and output at once: a command that writes while it reads must not wait on us.
        let feed = async {
            if let Some(mut from) = stdin {
                // A command that exits before reading everything closes its end: its exit
                // status says what went wrong, not the broken pipe.
                let _ = tokio::io::copy(&mut from, &mut input).await;
            }
            // Closing our half of the connection is the command's end of input.
            let _ = input.shutdown().await;
        };
        let drain = async {
            let mut stderr = Vec::new();
            let mut written = 0u64;
            while let Some(chunk) = output.next().await {
                match chunk.map_err(map_err)? {
                    LogOutput::StdOut { message } => {
                        stdout.write_all(&message).await.map_err(io)?;
                        written += message.len() as u64;
                    }
                    LogOutput::StdErr { message } => keep_tail(&mut stderr, &message),
                    _ => {}
                }
            }
            stdout.shutdown().await.map_err(io)?;
            Ok::<_, RuntimeError>((stderr, written))
        };
        let ((), drained) = tokio::join!(feed, drain);
        let (stderr, stdout_bytes) = drained?;
        // The stream ends as the process exits; its status may take a moment to be recorded.
        for _ in 0..50 {
            let state = docker.inspect_exec(&exec.id).await.map_err(map_err)?;
            if state.running != Some(true) {
                return Ok(ExecOutcome {
                    exit_code: state.exit_code.unwrap_or(-1),
                    stderr: String::from_utf8_lossy(&stderr).into_owned(),
                    stdout_bytes,
                });
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        Err(RuntimeError::Failed(
            "the command's output ended but it did not exit".into(),
        ))
    }
}

/// Isolation facts from `docker info`: user namespaces show as a security option, and the
/// root directory of a remapped engine ends in `<uid>.<gid>` of container root.
/// Whether the dockerd on this host uses `docker-proxy` for published ports: its command line
/// (`--userland-proxy=false`) or `/etc/docker/daemon.json` (`"userland-proxy": false`) says it
/// does not; None when no dockerd runs here (a remote `DOCKER_HOST`).
fn local_userland_proxy() -> Option<bool> {
    let cmdline = std::fs::read_dir("/proc")
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        })
        .find_map(|e| {
            let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
            (comm.trim() == "dockerd")
                .then(|| std::fs::read(e.path().join("cmdline")).ok())
                .flatten()
        })?;
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let config = std::fs::read_to_string("/etc/docker/daemon.json").unwrap_or_default();
    Some(userland_proxy_from(&args, &config))
}

/// The flag wins over the configuration file; Docker's default is on.
fn userland_proxy_from(args: &[String], daemon_json: &str) -> bool {
    for (i, a) in args.iter().enumerate() {
        if let Some(v) = a.strip_prefix("--userland-proxy=") {
            return v != "false";
        }
        if a == "--userland-proxy" {
            return args.get(i + 1).is_none_or(|v| v != "false");
        }
    }
    serde_json::from_str::<serde_json::Value>(daemon_json)
        .ok()
        .and_then(|j| j.get("userland-proxy").and_then(|v| v.as_bool()))
        .unwrap_or(true)
}

/// Docker's answer when `--storage-opt size` cannot be honoured ("--storage-opt is supported
/// only for overlay over xfs with 'pquota' mount option", "quota ... not enabled", …).
fn refuses_layer_size(why: &str) -> bool {
    let w = why.to_ascii_lowercase();
    w.contains("storage-opt") || w.contains("storage opt") || w.contains("quota")
}

fn engine_info(
    version: String,
    security: &[String],
    root_dir: &str,
    driver: &str,
    driver_status: &[Vec<String>],
) -> EngineInfo {
    let backing_fs = driver_status
        .iter()
        .find(|kv| kv.first().map(String::as_str) == Some("Backing Filesystem"))
        .and_then(|kv| kv.get(1))
        .cloned()
        .unwrap_or_default();
    let layer_limit =
        matches!(driver, "btrfs" | "zfs") || (driver == "overlay2" && backing_fs == "xfs");
    let userns = security
        .iter()
        .any(|o| o.split(',').any(|kv| kv == "name=userns"));
    let (uid, gid) = root_dir
        .rsplit('/')
        .next()
        .and_then(|last| last.split_once('.'))
        .and_then(|(u, g)| Some((u.parse().ok()?, g.parse().ok()?)))
        .filter(|_| userns)
        .unwrap_or((0, 0));
    EngineInfo {
        version,
        root_dir: root_dir.to_owned(),
        user_namespaces: userns,
        root_uid: uid,
        root_gid: gid,
        storage_driver: driver.to_owned(),
        backing_fs,
        layer_limit,
        userland_proxy: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_namespaces_from_docker_info() {
        let i = engine_info(
            "20.10.24".into(),
            &[
                "name=apparmor".into(),
                "name=seccomp,profile=default".into(),
                "name=userns".into(),
            ],
            "/var/lib/docker/100000.100000",
            "overlay2",
            &[vec!["Backing Filesystem".into(), "extfs".into()]],
        );
        assert!(i.user_namespaces);
        assert_eq!((i.root_uid, i.root_gid), (100000, 100000));
        let plain = engine_info(
            "20.10.24".into(),
            &["name=seccomp,profile=default".into()],
            "/var/lib/docker",
            "overlay2",
            &[vec!["Backing Filesystem".into(), "xfs".into()]],
        );
        assert!(!plain.user_namespaces);
        assert_eq!((plain.root_uid, plain.root_gid), (0, 0));
        // Writable layers: bounded on overlay2 over xfs, not over ext4.
        assert!(plain.layer_limit);
        assert!(!i.layer_limit);
        assert_eq!(
            (i.storage_driver.as_str(), i.backing_fs.as_str()),
            ("overlay2", "extfs")
        );
    }

    #[test]
    fn userland_proxy_from_flags_and_config() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(userland_proxy_from(&args(&["dockerd"]), ""));
        assert!(!userland_proxy_from(
            &args(&[
                "dockerd",
                "--userns-remap=default",
                "--userland-proxy=false"
            ]),
            ""
        ));
        assert!(!userland_proxy_from(
            &args(&["dockerd"]),
            r#"{"userland-proxy": false}"#
        ));
        assert!(userland_proxy_from(
            &args(&["dockerd", "--userland-proxy=true"]),
            r#"{"userland-proxy": false}"#
        ));
    }

    #[test]
    fn a_refused_layer_size_is_recognised() {
        assert!(refuses_layer_size(
            "--storage-opt is supported only for overlay over xfs with 'pquota' mount option"
        ));
        assert!(refuses_layer_size("Filesystem does not support quota"));
        assert!(!refuses_layer_size("No such image: x"));
    }

    #[test]
    fn pull_progress_sums_layers() {
        let mut t = PullTally::default();
        let a = "aaaaaaaaaaaa";
        let b = "bbbbbbbbbbbb";
        t.add(Some(a), "Pulling fs layer", None, None);
        t.add(Some(b), "Pulling fs layer", None, None);
        t.add(Some(a), "Downloading", Some(50), Some(100));
        t.add(Some(b), "Downloading", Some(10), Some(300));
        let p = t.progress("Downloading");
        assert_eq!(
            (p.done_bytes, p.total_bytes, p.layers_done, p.layers),
            (60, 400, 0, 2)
        );
        t.add(Some(a), "Pull complete", None, None);
        // Messages about the image as a whole carry no layer id.
        t.add(Some("1"), "Pulling from pier-test/hello", None, None);
        let p = t.progress("Pull complete");
        assert_eq!((p.done_bytes, p.layers_done, p.layers), (110, 1, 2));
    }
}
