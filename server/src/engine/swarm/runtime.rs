//! The engine on a Docker Swarm: every copy of an app (what single-host Pier runs as a
//! container) is a Swarm service of one task, which Swarm places on a node, restarts when it
//! fails and moves off a lost node. The rest of the engine is unchanged: rollouts, the planner,
//! health checks and routing see "containers" with an address (the node's, and the port Swarm
//! published there), so the same rules hold on one machine or many.
//!
//! A "container id" here is the service's id. Created means the service asks for no task yet
//! (as `docker create` does not start), started one task, stopped none. Networks are overlays;
//! volumes, images, the firewall and the machine's own numbers stay with the manager's engine,
//! and an app with volumes runs on the manager, where its volumes are.

use std::{collections::HashMap, net::IpAddr};

use async_trait::async_trait;
use bollard::{
    auth::DockerCredentials,
    models::{Service, Task, TaskState},
    query_parameters::{
        InspectServiceOptions, ListServicesOptionsBuilder, ListTasksOptions,
        ListTasksOptionsBuilder, LogsOptionsBuilder, UpdateServiceOptionsBuilder,
    },
    Docker,
};
use futures_util::stream::BoxStream;
use pier_core::{
    runtime::{
        Cluster, Container, ContainerSpec, ContainerState, EgressPolicy, EgressStatus, EngineInfo,
        ExecInput, ExecOutcome, ExecOutput, ExitInfo, LogLine, Network, NodeAvailability,
        ProgressFn, Pulled, RegistryAuth, Runtime, RuntimeError, Usage, VolumeInfo, VolumeSpec,
        VolumeUsage,
    },
    validate::ImageRef,
};

use super::services::{self, docker_spec, Order, ServiceSpec};
use crate::engine::docker::{label_filter, log_lines, map_err, DockerRuntime};

pub struct SwarmRuntime {
    /// The manager's engine: what is not per app (images, volumes, networks' listing, the
    /// firewall, the machines) goes to it as on one host.
    local: DockerRuntime,
    /// Tenants' overlay networks are encrypted between machines (IPsec).
    encrypted: bool,
}

impl SwarmRuntime {
    pub fn new(local: DockerRuntime, encrypted: bool) -> Self {
        SwarmRuntime { local, encrypted }
    }

    fn docker(&self) -> Result<Docker, RuntimeError> {
        self.local.client()
    }

    /// The service's tasks, newest first.
    async fn tasks(&self, docker: &Docker, service: &str) -> Result<Vec<Task>, RuntimeError> {
        let filters = HashMap::from([("service".to_string(), vec![service.to_string()])]);
        let mut tasks = docker
            .list_tasks(Some(
                ListTasksOptionsBuilder::new().filters(&filters).build(),
            ))
            .await
            .map_err(map_err)?;
        tasks.sort_by_key(|t| std::cmp::Reverse(version(t)));
        Ok(tasks)
    }

    /// The container of the service's running task, when it runs on this machine (pausing,
    /// statistics and commands reach only this engine's containers).
    async fn local_container(&self, service: &str) -> Result<String, RuntimeError> {
        let docker = self.docker()?;
        let me = this_node(&docker).await?.unwrap_or_default();
        self.tasks(&docker, service)
            .await?
            .into_iter()
            .filter(|t| running(t) && t.node_id.as_deref() == Some(me.as_str()))
            .find_map(|t| t.status?.container_status?.container_id)
            .ok_or_else(|| {
                RuntimeError::Failed("the app's task does not run on this machine".into())
            })
    }

    /// Sets how many tasks the service asks for, and (for a restart) has them replaced. The
    /// Swarm moves a new service's version on by itself (as it allocates it): an update against
    /// a version that moved meanwhile is tried again on the new one.
    async fn update(
        &self,
        id: &str,
        replicas: Option<i64>,
        force: bool,
    ) -> Result<(), RuntimeError> {
        let mut tries = 0;
        loop {
            match self.update_once(id, replicas, force).await {
                Err(RuntimeError::Failed(m)) if m.contains("out of sequence") && tries < 10 => {
                    tries += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(50 * tries)).await;
                }
                other => return other,
            }
        }
    }

    async fn update_once(
        &self,
        id: &str,
        replicas: Option<i64>,
        force: bool,
    ) -> Result<(), RuntimeError> {
        let docker = self.docker()?;
        let current = docker
            .inspect_service(id, None::<InspectServiceOptions>)
            .await
            .map_err(map_err)?;
        let version = current
            .version
            .and_then(|v| v.index)
            .ok_or_else(|| RuntimeError::Failed("the service has no version".into()))?;
        let mut spec = current.spec.unwrap_or_default();
        if let Some(n) = replicas {
            let mode = spec.mode.get_or_insert_with(Default::default);
            let replicated = mode.replicated.get_or_insert_with(Default::default);
            if replicated.replicas == Some(n) && !force {
                return Ok(());
            }
            replicated.replicas = Some(n);
        }
        if force {
            let task = spec.task_template.get_or_insert_with(Default::default);
            task.force_update = Some(task.force_update.unwrap_or(0) + 1);
        }
        let options = UpdateServiceOptionsBuilder::new()
            .version(i32::try_from(version).unwrap_or(i32::MAX))
            .build();
        docker
            .update_service(id, spec, options, None)
            .await
            .map_err(map_err)?;
        Ok(())
    }
}

/// The Swarm's id of the machine this engine runs on.
async fn this_node(docker: &Docker) -> Result<Option<String>, RuntimeError> {
    Ok(docker
        .info()
        .await
        .map_err(map_err)?
        .swarm
        .and_then(|s| s.node_id))
}

/// The task's place in the Swarm's history (later is newer).
fn version(t: &Task) -> u64 {
    t.version.as_ref().and_then(|v| v.index).unwrap_or(0)
}

fn running(t: &Task) -> bool {
    t.status.as_ref().and_then(|s| s.state) == Some(TaskState::RUNNING)
}

fn wanted_running(t: &Task) -> bool {
    t.desired_state == Some(TaskState::RUNNING)
}

/// One service as the engine's "container": its state from its newest task, and where that
/// task answers (its node's address, the port Swarm published there).
pub(super) fn as_container(
    service: Service,
    tasks: &[&Task],
    nodes: &HashMap<String, IpAddr>,
) -> Container {
    let spec = service.spec.clone().unwrap_or_default();
    let replicas = spec
        .mode
        .as_ref()
        .and_then(|m| m.replicated.as_ref())
        .and_then(|r| r.replicas)
        .unwrap_or(0);
    let live = tasks.iter().find(|t| running(t) && wanted_running(t));
    // A task that failed (or was refused: no image, no machine fits) since the last one that
    // ended in order (newest first): the Swarm is trying again, as Docker restarts a crashed
    // container.
    let failed = tasks
        .iter()
        .map(|t| t.status.as_ref().and_then(|s| s.state))
        .find(|s| {
            matches!(
                s,
                Some(
                    TaskState::FAILED
                        | TaskState::REJECTED
                        | TaskState::SHUTDOWN
                        | TaskState::COMPLETE
                )
            )
        })
        .is_some_and(|s| matches!(s, Some(TaskState::FAILED | TaskState::REJECTED)));
    let state = match live {
        Some(_) => ContainerState::Running,
        None if replicas == 0 => ContainerState::Exited,
        None if failed => ContainerState::Restarting,
        // Asked for, its task on the way (placed, pulling, starting).
        None => ContainerState::Created,
    };
    let (host, host_port) = live
        .map(|t| {
            let host = t.node_id.as_ref().and_then(|n| nodes.get(n)).copied();
            let port = t
                .status
                .as_ref()
                .and_then(|s| s.port_status.as_ref())
                .and_then(|p| p.ports.as_ref())
                .and_then(|p| p.first())
                .and_then(|p| p.published_port)
                .and_then(|p| u16::try_from(p).ok());
            (host, port)
        })
        .unwrap_or((None, None));
    Container {
        id: service.id.unwrap_or_default(),
        name: spec.name.unwrap_or_default(),
        labels: spec.labels.unwrap_or_default(),
        state,
        host_port: host_port.filter(|_| host.is_some()),
        host,
        ip: None,
        created: service
            .version
            .and_then(|v| v.index)
            .and_then(|i| i64::try_from(i).ok())
            .unwrap_or(0),
    }
}

fn credentials(auth: &Option<RegistryAuth>) -> Option<DockerCredentials> {
    auth.as_ref().map(|a| DockerCredentials {
        username: Some(a.username.clone()),
        password: Some(a.password.clone()),
        serveraddress: Some(a.server.clone()),
        ..Default::default()
    })
}

#[async_trait]
impl Runtime for SwarmRuntime {
    async fn containers(&self, instance: &str) -> Result<Vec<Container>, RuntimeError> {
        let docker = self.docker()?;
        let services = docker
            .list_services(Some(
                ListServicesOptionsBuilder::new()
                    .filters(&label_filter(instance))
                    .build(),
            ))
            .await
            .map_err(map_err)?;
        if services.is_empty() {
            return Ok(Vec::new());
        }
        let nodes = services::node_addresses(&docker).await?;
        let mut tasks = docker
            .list_tasks(None::<ListTasksOptions>)
            .await
            .map_err(map_err)?;
        tasks.sort_by_key(|t| std::cmp::Reverse(version(t)));
        let mut by_service: HashMap<&str, Vec<&Task>> = HashMap::new();
        for t in &tasks {
            if let Some(s) = t.service_id.as_deref() {
                by_service.entry(s).or_default().push(t);
            }
        }
        Ok(services
            .into_iter()
            .map(|s| {
                let mine =
                    s.id.as_deref()
                        .and_then(|id| by_service.get(id))
                        .cloned()
                        .unwrap_or_default();
                as_container(s, &mine, &nodes)
            })
            .collect())
    }

    async fn pull(
        &self,
        image: &ImageRef,
        auth: Option<RegistryAuth>,
        progress: ProgressFn,
    ) -> Result<Pulled, RuntimeError> {
        // Here for the digest (every node then pulls exactly it) and for apps on the manager.
        self.local.pull(image, auth, progress).await
    }

    async fn remote_digest(
        &self,
        image: &ImageRef,
        auth: Option<RegistryAuth>,
    ) -> Result<String, RuntimeError> {
        self.local.remote_digest(image, auth).await
    }

    async fn networks(&self, instance: &str) -> Result<Vec<Network>, RuntimeError> {
        self.local.networks(instance).await
    }

    async fn ensure_network(
        &self,
        name: &str,
        _bridge: &str,
        labels: &HashMap<String, String>,
    ) -> Result<String, RuntimeError> {
        let docker = self.docker()?;
        services::ensure_overlay(&docker, name, labels, self.encrypted).await
    }

    async fn remove_network(&self, name: &str) -> Result<(), RuntimeError> {
        self.local.remove_network(name).await
    }

    async fn create(&self, spec: &ContainerSpec) -> Result<String, RuntimeError> {
        let docker = self.docker()?;
        // An app with volumes runs where they are: on this manager.
        let node = if spec.mounts.is_empty() {
            None
        } else {
            this_node(&docker).await?
        };
        let service = ServiceSpec {
            name: spec.name.clone(),
            image: spec.reference.clone(),
            env: spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            labels: spec.labels.clone(),
            port: spec.port,
            replicas: 0,
            memory_bytes: spec.memory_bytes,
            nano_cpus: spec.nano_cpus,
            pids_limit: spec.pids_limit,
            read_only: spec.read_only,
            cap_add: spec.cap_add.clone(),
            network: spec.network.clone(),
            alias: Some(spec.alias.clone()),
            order: if spec.mounts.is_empty() {
                Order::StartFirst
            } else {
                Order::StopFirst
            },
            node,
            mounts: spec.mounts.clone(),
        };
        let made = docker
            .create_service(docker_spec(&service), credentials(&spec.registry_auth))
            .await
            .map_err(map_err)?;
        Ok(made.id.unwrap_or_default())
    }

    async fn start(&self, id: &str) -> Result<(), RuntimeError> {
        self.update(id, Some(1), false).await
    }

    async fn stop(&self, id: &str, timeout_secs: i64) -> Result<(), RuntimeError> {
        self.update(id, Some(0), false).await?;
        // Stopped when its task is: an app with volumes starts its next copy right after, and
        // two must never run on one data directory.
        let docker = self.docker()?;
        let deadline = tokio::time::Instant::now()
            + std::time::Duration::from_secs(u64::try_from(timeout_secs.max(0)).unwrap_or(0) + 30);
        loop {
            let tasks = self.tasks(&docker, id).await?;
            if !tasks.iter().any(|t| {
                matches!(
                    t.status.as_ref().and_then(|s| s.state),
                    Some(TaskState::RUNNING | TaskState::STARTING)
                )
            }) {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(RuntimeError::Failed(
                    "the app's task did not stop in time".into(),
                ));
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }

    async fn restart(&self, id: &str, _timeout_secs: i64) -> Result<(), RuntimeError> {
        self.update(id, None, true).await
    }

    async fn remove(&self, id: &str) -> Result<(), RuntimeError> {
        services::remove(&self.docker()?, id).await
    }

    async fn exit_info(&self, id: &str) -> Result<ExitInfo, RuntimeError> {
        let docker = self.docker()?;
        let tasks = self.tasks(&docker, id).await?;
        let live = tasks.iter().any(|t| running(t) && wanted_running(t));
        // Tasks that ended by themselves: each one a restart Swarm made.
        let ended: Vec<&Task> = tasks
            .iter()
            .filter(|t| {
                matches!(
                    t.status.as_ref().and_then(|s| s.state),
                    Some(TaskState::FAILED | TaskState::REJECTED)
                )
            })
            .collect();
        let last = ended
            .first()
            .and_then(|t| t.status.clone())
            .unwrap_or_default();
        Ok(ExitInfo {
            running: live,
            restarts: ended.len() as u64,
            exit_code: last
                .container_status
                .as_ref()
                .and_then(|c| c.exit_code)
                .unwrap_or_default(),
            oom_killed: false,
            error: last.err.unwrap_or_default(),
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
        match self.docker() {
            Ok(docker) => log_lines(docker.service_logs(id, Some(opts))),
            Err(e) => Box::pin(futures_util::stream::once(async move { Err(e) })),
        }
    }

    async fn usage(&self, id: &str) -> Result<Usage, RuntimeError> {
        // Only this machine's engine has the numbers (a task elsewhere is not sampled).
        let container = self.local_container(id).await?;
        self.local.usage(&container).await
    }

    async fn info(&self) -> Result<EngineInfo, RuntimeError> {
        self.local.info().await
    }

    async fn cluster(&self) -> Result<Option<Cluster>, RuntimeError> {
        self.local.cluster().await
    }

    async fn set_node_availability(
        &self,
        node: &str,
        availability: NodeAvailability,
    ) -> Result<(), RuntimeError> {
        self.local.set_node_availability(node, availability).await
    }

    async fn volumes(&self, instance: &str) -> Result<Vec<VolumeInfo>, RuntimeError> {
        self.local.volumes(instance).await
    }

    async fn ensure_volume(&self, spec: &VolumeSpec) -> Result<(), RuntimeError> {
        self.local.ensure_volume(spec).await
    }

    async fn remove_volume(&self, name: &str) -> Result<(), RuntimeError> {
        self.local.remove_volume(name).await
    }

    async fn volume_usage(&self, name: &str) -> Result<Option<VolumeUsage>, RuntimeError> {
        self.local.volume_usage(name).await
    }

    fn stored_volumes(&self) -> Vec<String> {
        self.local.stored_volumes()
    }

    async fn remove_image(&self, reference: &str) -> Result<(), RuntimeError> {
        self.local.remove_image(reference).await
    }

    async fn enforce_egress(&self, policy: &EgressPolicy) -> EgressStatus {
        self.local.enforce_egress(policy).await
    }

    async fn pause(&self, id: &str) -> Result<(), RuntimeError> {
        let container = self.local_container(id).await?;
        self.local.pause(&container).await
    }

    async fn unpause(&self, id: &str) -> Result<(), RuntimeError> {
        let container = self.local_container(id).await?;
        self.local.unpause(&container).await
    }

    async fn mount_volume(&self, name: &str, at: &std::path::Path) -> Result<(), RuntimeError> {
        self.local.mount_volume(name, at).await
    }

    async fn unmount_volume(&self, at: &std::path::Path) -> Result<(), RuntimeError> {
        self.local.unmount_volume(at).await
    }

    async fn exec(
        &self,
        id: &str,
        cmd: &[String],
        stdin: Option<ExecInput>,
        stdout: ExecOutput,
    ) -> Result<ExecOutcome, RuntimeError> {
        let container = self.local_container(id).await?;
        self.local.exec(&container, cmd, stdin, stdout).await
    }
}

#[cfg(test)]
mod tests {
    use bollard::models::{
        ObjectVersion, PortStatus, ServiceSpec as DockerServiceSpec, ServiceSpecMode,
        ServiceSpecModeReplicated, TaskStatus,
    };

    use super::*;

    fn service(replicas: i64) -> Service {
        Service {
            id: Some("svc1".into()),
            version: Some(ObjectVersion { index: Some(7) }),
            spec: Some(DockerServiceSpec {
                name: Some("pier-x-t1-web-d3-r1".into()),
                labels: Some(HashMap::from([("pier.app".to_string(), "3".to_string())])),
                mode: Some(ServiceSpecMode {
                    replicated: Some(ServiceSpecModeReplicated {
                        replicas: Some(replicas),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn task(index: u64, state: TaskState, desired: TaskState, port: Option<i64>) -> Task {
        Task {
            version: Some(ObjectVersion { index: Some(index) }),
            node_id: Some("n2".into()),
            desired_state: Some(desired),
            status: Some(TaskStatus {
                state: Some(state),
                port_status: port.map(|p| PortStatus {
                    ports: Some(vec![bollard::models::EndpointPortConfig {
                        published_port: Some(p),
                        target_port: Some(8080),
                        ..Default::default()
                    }]),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_service_of_one_task_reads_as_a_container_at_its_machine() {
        let nodes = HashMap::from([("n2".to_string(), "10.213.0.12".parse().unwrap())]);
        // Running on n2, published on 30001: reached at the machine's address.
        let live = task(9, TaskState::RUNNING, TaskState::RUNNING, Some(30001));
        let old = task(5, TaskState::SHUTDOWN, TaskState::SHUTDOWN, None);
        let c = as_container(service(1), &[&live, &old], &nodes);
        assert_eq!(c.state, ContainerState::Running);
        assert_eq!(c.endpoint(), Some("10.213.0.12:30001".parse().unwrap()));
        assert_eq!((c.id.as_str(), c.app_id()), ("svc1", Some(3)));
        assert_eq!(c.name, "pier-x-t1-web-d3-r1");
        // Asked for no task: stopped (or created, not started yet).
        assert_eq!(
            as_container(service(0), &[&old], &nodes).state,
            ContainerState::Exited
        );
        // A task on its way: starting; one that failed: the Swarm restarts it.
        let pending = task(10, TaskState::PREPARING, TaskState::RUNNING, None);
        assert_eq!(
            as_container(service(1), &[&pending], &nodes).state,
            ContainerState::Created
        );
        let failed = task(11, TaskState::FAILED, TaskState::SHUTDOWN, None);
        let again = task(12, TaskState::PENDING, TaskState::RUNNING, None);
        let c = as_container(service(1), &[&again, &failed, &old], &nodes);
        assert_eq!(c.state, ContainerState::Restarting);
        assert_eq!(c.endpoint(), None, "not routed");
        // Started again after an orderly stop: an older failure does not count.
        let stopped = task(13, TaskState::SHUTDOWN, TaskState::SHUTDOWN, None);
        let new = task(14, TaskState::PENDING, TaskState::RUNNING, None);
        let c = as_container(service(1), &[&new, &stopped, &failed], &nodes);
        assert_eq!(c.state, ContainerState::Created);
        // A machine the Swarm no longer lists: no address, so not routed.
        let c = as_container(service(1), &[&live], &HashMap::new());
        assert_eq!(c.endpoint(), None);
    }
}
