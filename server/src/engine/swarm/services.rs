//! Apps as Swarm services: the engine calls the Swarm engine (issue 13) is built on. One service
//! per app, updated in place for each deployment, with the hardened defaults single-host
//! containers get; its tasks published on their node's own address (there is no IPVS here, so
//! no routing mesh: HAProxy goes to each task directly), on the tenant's overlay network.
//!
//! Rollouts are Swarm's: one task at a time, `start-first` (a new task runs before an old one
//! goes) or `stop-first` (apps with volumes), watched for a monitor period; a failed update
//! rolls back by itself, and [`status`] says so, so a deployment can be shown as *failed,
//! rolled back*, never as a success.

use std::{collections::HashMap, net::SocketAddr};

use bollard::{
    auth::DockerCredentials,
    models::{
        EndpointPortConfig, EndpointPortConfigProtocolEnum, EndpointPortConfigPublishModeEnum,
        EndpointSpec, EndpointSpecModeEnum, Limit, Mount, MountTmpfsOptions, MountType,
        NetworkAttachmentConfig, NetworkCreateRequest, ServiceSpec as DockerServiceSpec,
        ServiceSpecMode, ServiceSpecModeReplicated, ServiceSpecRollbackConfig,
        ServiceSpecRollbackConfigFailureActionEnum, ServiceSpecRollbackConfigOrderEnum,
        ServiceSpecUpdateConfig, ServiceSpecUpdateConfigFailureActionEnum,
        ServiceSpecUpdateConfigOrderEnum, ServiceUpdateStatusStateEnum, TaskSpec,
        TaskSpecContainerSpec, TaskSpecContainerSpecPrivileges, TaskSpecLogDriver,
        TaskSpecPlacement, TaskSpecResources, TaskSpecRestartPolicy,
        TaskSpecRestartPolicyConditionEnum, TaskState,
    },
    query_parameters::{
        InspectNetworkOptions, InspectServiceOptions, ListNodesOptions, ListTasksOptionsBuilder,
        UpdateServiceOptionsBuilder,
    },
    Docker,
};
use pier_core::runtime::RuntimeError;

use crate::engine::docker::map_err;

/// How long a new task must keep running before Swarm counts it as updated (nanoseconds in
/// the API). A task that exits within it fails the update, and the update rolls back.
const MONITOR_NS: i64 = 5_000_000_000;

/// The label on every task's container that says which spec it runs ([`revision`]).
pub const LABEL_REVISION: &str = "pier.revision";

/// A fingerprint of everything a spec asks of its tasks. Swarm clears a service's update status
/// when it takes an update, so right after one the old tasks look like a finished rollout;
/// counting only the tasks that carry the service's revision tells them apart.
fn revision(spec: &ServiceSpec) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let labels: std::collections::BTreeMap<_, _> = spec.labels.iter().collect();
    (
        &spec.image,
        &spec.env,
        labels,
        spec.port,
        spec.memory_bytes,
        spec.nano_cpus,
        spec.pids_limit,
        spec.read_only,
        &spec.cap_add,
        &spec.network,
    )
        .hash(&mut h);
    (&spec.alias, &spec.node, &spec.mounts).hash(&mut h);
    format!("{:016x}", h.finish())
}

/// Which goes first when a task is replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// The new task runs before the old one stops: no gap (apps without volumes).
    StartFirst,
    /// The old task stops first: never two at once on one volume.
    StopFirst,
}

/// An app as a service, everything already checked (names and labels are Pier's own).
#[derive(Debug, Clone)]
pub struct ServiceSpec {
    pub name: String,
    /// A pinned reference (`…@sha256:…`), so every node runs the same image.
    pub image: String,
    pub env: Vec<String>,
    pub labels: HashMap<String, String>,
    /// The port the app listens on; published on each task's node, on a port Docker picks.
    pub port: u16,
    pub replicas: u64,
    pub memory_bytes: i64,
    pub nano_cpus: i64,
    pub pids_limit: i64,
    pub read_only: bool,
    /// Added back after every capability is dropped.
    pub cap_add: Vec<String>,
    /// The tenant's overlay network.
    pub network: String,
    /// The name the tenant's other apps reach it by there (the app's name), if any.
    pub alias: Option<String>,
    pub order: Order,
    /// The node the tasks must run on (an app with a volume runs where its volume is).
    pub node: Option<String>,
    /// Volumes of that node: (engine volume name, path in the container).
    pub mounts: Vec<(String, String)>,
}

/// Where a service's rollout stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rollout {
    /// Tasks are being replaced (or started for the first time).
    Updating,
    /// Every wanted task runs the newest spec.
    Done,
    /// The update failed and Swarm went back to the previous spec: the reason Swarm gave.
    RolledBack(String),
    /// The update (or its rollback) stopped half way: the reason Swarm gave.
    Stuck(String),
}

/// What [`status`] reads: the rollout and the tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub rollout: Rollout,
    /// Replicas running: slots with a task meant to run and running. Swarm can leave two such
    /// tasks in one slot after a rollback (its restart supervisor and the rollback both replace
    /// the failed task: moby/moby#41804, moby/swarmkit#2242) until the service's next update;
    /// that is still one replica, and both answer with the same spec.
    pub running: u64,
    pub wanted: u64,
}

/// One running task and where it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub task: String,
    pub node: String,
    pub addr: SocketAddr,
}

/// The tenant's overlay network, made once (encrypted when asked: IPsec between nodes).
pub async fn ensure_overlay(
    docker: &Docker,
    name: &str,
    labels: &HashMap<String, String>,
    encrypted: bool,
) -> Result<String, RuntimeError> {
    if let Ok(n) = docker
        .inspect_network(name, None::<InspectNetworkOptions>)
        .await
    {
        return Ok(n.id.unwrap_or_default());
    }
    let options = if encrypted {
        HashMap::from([("encrypted".to_string(), String::new())])
    } else {
        HashMap::new()
    };
    let made = docker
        .create_network(NetworkCreateRequest {
            name: name.to_owned(),
            driver: Some("overlay".into()),
            attachable: Some(false),
            labels: Some(labels.clone()),
            options: Some(options),
            ..Default::default()
        })
        .await
        .map_err(map_err)?;
    Ok(made.id)
}

/// The volumes, and for a read-only app a small scratch /tmp, as a single-host container has.
fn mounts(spec: &ServiceSpec) -> Vec<Mount> {
    let mut out: Vec<Mount> = spec
        .mounts
        .iter()
        .map(|(source, target)| Mount {
            source: Some(source.clone()),
            target: Some(target.clone()),
            typ: Some(MountType::VOLUME),
            ..Default::default()
        })
        .collect();
    if spec.read_only {
        out.push(Mount {
            target: Some("/tmp".into()),
            typ: Some(MountType::TMPFS),
            tmpfs_options: Some(MountTmpfsOptions {
                size_bytes: Some(64 << 20),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    out
}

/// The service as the engine API wants it.
pub(super) fn docker_spec(spec: &ServiceSpec) -> DockerServiceSpec {
    let mut labels = spec.labels.clone();
    labels.insert(LABEL_REVISION.into(), revision(spec));
    let container = TaskSpecContainerSpec {
        image: Some(spec.image.clone()),
        labels: Some(labels),
        env: Some(spec.env.clone()),
        read_only: Some(spec.read_only),
        init: Some(true),
        capability_drop: Some(vec!["ALL".into()]),
        capability_add: Some(spec.cap_add.clone()),
        privileges: Some(TaskSpecContainerSpecPrivileges {
            no_new_privileges: Some(true),
            ..Default::default()
        }),
        mounts: Some(mounts(spec)),
        ..Default::default()
    };
    let (update_order, rollback_order) = match spec.order {
        Order::StartFirst => (
            ServiceSpecUpdateConfigOrderEnum::START_FIRST,
            ServiceSpecRollbackConfigOrderEnum::START_FIRST,
        ),
        Order::StopFirst => (
            ServiceSpecUpdateConfigOrderEnum::STOP_FIRST,
            ServiceSpecRollbackConfigOrderEnum::STOP_FIRST,
        ),
    };
    DockerServiceSpec {
        name: Some(spec.name.clone()),
        labels: Some(spec.labels.clone()),
        task_template: Some(TaskSpec {
            container_spec: Some(container),
            resources: Some(TaskSpecResources {
                limits: Some(Limit {
                    nano_cpus: Some(spec.nano_cpus),
                    memory_bytes: Some(spec.memory_bytes),
                    pids: Some(spec.pids_limit),
                }),
                ..Default::default()
            }),
            restart_policy: Some(TaskSpecRestartPolicy {
                condition: Some(TaskSpecRestartPolicyConditionEnum::ANY),
                delay: Some(1_000_000_000),
                ..Default::default()
            }),
            placement: spec.node.as_ref().map(|n| TaskSpecPlacement {
                constraints: Some(vec![format!("node.id=={n}")]),
                ..Default::default()
            }),
            networks: Some(vec![NetworkAttachmentConfig {
                target: Some(spec.network.clone()),
                aliases: spec.alias.clone().map(|a| vec![a]),
                ..Default::default()
            }]),
            log_driver: Some(TaskSpecLogDriver {
                name: Some("json-file".into()),
                options: Some(HashMap::from([
                    ("max-size".to_string(), "10m".to_string()),
                    ("max-file".to_string(), "3".to_string()),
                ])),
            }),
            ..Default::default()
        }),
        mode: Some(ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated {
                replicas: Some(spec.replicas as i64),
            }),
            ..Default::default()
        }),
        update_config: Some(ServiceSpecUpdateConfig {
            parallelism: Some(1),
            failure_action: Some(ServiceSpecUpdateConfigFailureActionEnum::ROLLBACK),
            monitor: Some(MONITOR_NS),
            max_failure_ratio: Some(0.0),
            order: Some(update_order),
            ..Default::default()
        }),
        rollback_config: Some(ServiceSpecRollbackConfig {
            parallelism: Some(1),
            failure_action: Some(ServiceSpecRollbackConfigFailureActionEnum::PAUSE),
            monitor: Some(MONITOR_NS),
            max_failure_ratio: Some(0.0),
            order: Some(rollback_order),
            ..Default::default()
        }),
        endpoint_spec: Some(EndpointSpec {
            // No virtual IP: there is no IPVS on this kernel, and HAProxy reaches tasks itself.
            mode: Some(EndpointSpecModeEnum::DNSRR),
            ports: Some(vec![EndpointPortConfig {
                protocol: Some(EndpointPortConfigProtocolEnum::TCP),
                target_port: Some(i64::from(spec.port)),
                publish_mode: Some(EndpointPortConfigPublishModeEnum::HOST),
                ..Default::default()
            }]),
        }),
        ..Default::default()
    }
}

/// Creates the service, or updates it to `spec` (a rolling update in `spec.order`).
pub async fn deploy(
    docker: &Docker,
    spec: &ServiceSpec,
    auth: Option<DockerCredentials>,
) -> Result<(), RuntimeError> {
    let wanted = docker_spec(spec);
    match docker
        .inspect_service(&spec.name, None::<InspectServiceOptions>)
        .await
    {
        Ok(existing) => {
            let version = existing
                .version
                .and_then(|v| v.index)
                .ok_or_else(|| RuntimeError::Failed("the service has no version".into()))?;
            let options = UpdateServiceOptionsBuilder::new()
                .version(i32::try_from(version).unwrap_or(i32::MAX))
                .build();
            docker
                .update_service(&spec.name, wanted, options, auth)
                .await
                .map_err(map_err)?;
        }
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => {
            docker.create_service(wanted, auth).await.map_err(map_err)?;
        }
        Err(e) => return Err(map_err(e)),
    }
    Ok(())
}

/// The service's rollout and its tasks now: done only once as many tasks as wanted run the
/// service's current spec (its revision), whatever Swarm's update status says meanwhile.
pub async fn status(docker: &Docker, name: &str) -> Result<Status, RuntimeError> {
    let service = docker
        .inspect_service(name, None::<InspectServiceOptions>)
        .await
        .map_err(map_err)?;
    let spec = service.spec.unwrap_or_default();
    let wanted = spec
        .mode
        .as_ref()
        .and_then(|m| m.replicated.as_ref())
        .and_then(|r| r.replicas)
        .unwrap_or(0)
        .max(0) as u64;
    let current = revision_of(spec.task_template.as_ref());
    let tasks = running_tasks(docker, name).await?;
    let running = slots(tasks.iter());
    let running_current = slots(
        tasks
            .iter()
            .filter(|t| current.is_some() && revision_of(t.spec.as_ref()) == current),
    );
    let update = service.update_status.unwrap_or_default();
    let message = update.message.unwrap_or_default();
    let rollout = match update.state {
        Some(ServiceUpdateStatusStateEnum::ROLLBACK_COMPLETED) => Rollout::RolledBack(message),
        Some(ServiceUpdateStatusStateEnum::PAUSED)
        | Some(ServiceUpdateStatusStateEnum::ROLLBACK_PAUSED) => Rollout::Stuck(message),
        Some(ServiceUpdateStatusStateEnum::UPDATING)
        | Some(ServiceUpdateStatusStateEnum::ROLLBACK_STARTED) => Rollout::Updating,
        // Completed, a first creation, or an update Swarm has taken but not started yet.
        _ if running_current >= wanted => Rollout::Done,
        _ => Rollout::Updating,
    };
    Ok(Status {
        rollout,
        running,
        wanted,
    })
}

/// How many slots (replicas) the tasks fill; a task without a slot counts on its own.
fn slots<'a>(tasks: impl Iterator<Item = &'a bollard::models::Task>) -> u64 {
    let mut seen = std::collections::HashSet::new();
    tasks
        .filter(|t| t.slot.is_none_or(|slot| seen.insert(slot)))
        .count() as u64
}

/// The revision label of a task spec's container.
fn revision_of(task: Option<&TaskSpec>) -> Option<String> {
    task?
        .container_spec
        .as_ref()?
        .labels
        .as_ref()?
        .get(LABEL_REVISION)
        .cloned()
}

/// The service's tasks meant to run and running, with their node.
async fn running_tasks(
    docker: &Docker,
    name: &str,
) -> Result<Vec<bollard::models::Task>, RuntimeError> {
    let filters = HashMap::from([
        ("service".to_string(), vec![name.to_string()]),
        ("desired-state".to_string(), vec!["running".to_string()]),
    ]);
    let tasks = docker
        .list_tasks(Some(
            ListTasksOptionsBuilder::new().filters(&filters).build(),
        ))
        .await
        .map_err(map_err)?;
    Ok(tasks
        .into_iter()
        .filter(|t| t.status.as_ref().and_then(|s| s.state) == Some(TaskState::RUNNING))
        .collect())
}

/// Where each running task answers: its node's address and the port Docker published there.
pub async fn endpoints(
    docker: &Docker,
    name: &str,
    port: u16,
) -> Result<Vec<Endpoint>, RuntimeError> {
    let nodes = node_addresses(docker).await?;
    let mut out = Vec::new();
    for t in running_tasks(docker, name).await? {
        let (Some(task), Some(node)) = (t.id.clone(), t.node_id.clone()) else {
            continue;
        };
        let Some(ip) = nodes.get(&node).copied() else {
            continue;
        };
        let published = t
            .status
            .and_then(|s| s.port_status)
            .and_then(|p| p.ports)
            .unwrap_or_default()
            .into_iter()
            .find(|p| p.target_port == Some(i64::from(port)))
            .and_then(|p| p.published_port)
            .and_then(|p| u16::try_from(p).ok());
        if let Some(published) = published {
            out.push(Endpoint {
                task,
                node,
                addr: SocketAddr::new(ip, published),
            });
        }
    }
    out.sort_by_key(|e| e.addr);
    Ok(out)
}

/// Every node's address, by node id.
pub(super) async fn node_addresses(
    docker: &Docker,
) -> Result<HashMap<String, std::net::IpAddr>, RuntimeError> {
    Ok(docker
        .list_nodes(None::<ListNodesOptions>)
        .await
        .map_err(map_err)?
        .into_iter()
        .filter_map(|n| Some((n.id.clone()?, node_ip(&n)?)))
        .collect())
}

/// A node's address: the one it reports, or for a manager that reports none (`0.0.0.0` when it
/// listens everywhere) the address it manages the Swarm at.
fn node_ip(n: &bollard::models::Node) -> Option<std::net::IpAddr> {
    let reported = n
        .status
        .as_ref()
        .and_then(|s| s.addr.as_deref())
        .and_then(|a| a.parse::<std::net::IpAddr>().ok())
        .filter(|ip| !ip.is_unspecified());
    reported.or_else(|| {
        let addr = n.manager_status.as_ref()?.addr.as_deref()?;
        addr.parse::<SocketAddr>().ok().map(|a| a.ip())
    })
}

/// Removes the service (its tasks stop); absent is fine.
pub async fn remove(docker: &Docker, name: &str) -> Result<(), RuntimeError> {
    match docker.delete_service(name).await {
        Ok(())
        | Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(()),
        Err(e) => Err(map_err(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_tasks_in_one_slot_are_one_replica() {
        let task = |slot: Option<i64>| bollard::models::Task {
            slot,
            ..Default::default()
        };
        // After a rollback Swarm may run two tasks in slot 1 (moby/moby#41804).
        let tasks = [task(Some(1)), task(Some(1)), task(Some(2)), task(Some(3))];
        assert_eq!(slots(tasks.iter()), 3);
        assert_eq!(slots(tasks[..2].iter()), 1);
        // Tasks of a global service have no slot: each is one.
        assert_eq!(slots([task(None), task(None)].iter()), 2);
        assert_eq!(slots([].iter()), 0);
    }

    fn labels_of(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn spec(order: Order, node: Option<&str>) -> ServiceSpec {
        ServiceSpec {
            name: "pier-x-a1".into(),
            image: "r.example/web@sha256:abc".into(),
            env: vec!["A=1".into()],
            labels: labels_of(&[("pier.app", "1")]),
            port: 8080,
            replicas: 3,
            memory_bytes: 64 << 20,
            nano_cpus: 500_000_000,
            pids_limit: 256,
            read_only: true,
            cap_add: vec!["NET_BIND_SERVICE".into()],
            network: "pier-x-t1".into(),
            alias: Some("web".into()),
            order,
            node: node.map(str::to_owned),
            mounts: Vec::new(),
        }
    }

    #[test]
    fn services_are_hardened_published_per_node_and_roll_back() {
        let d = docker_spec(&spec(Order::StartFirst, None));
        let task = d.task_template.unwrap();
        let c = task.container_spec.unwrap();
        assert_eq!(c.capability_drop, Some(vec!["ALL".to_string()]));
        assert_eq!(c.capability_add, Some(vec!["NET_BIND_SERVICE".to_string()]));
        assert_eq!((c.read_only, c.init), (Some(true), Some(true)));
        assert_eq!(c.privileges.unwrap().no_new_privileges, Some(true));
        let tmp = &c.mounts.unwrap()[0];
        assert_eq!(
            (tmp.target.as_deref(), tmp.typ),
            (Some("/tmp"), Some(MountType::TMPFS))
        );
        assert_eq!(task.log_driver.unwrap().options.unwrap()["max-size"], "10m");
        // Every task says which spec it runs; another spec, another revision.
        let rev = c.labels.unwrap()[LABEL_REVISION].clone();
        assert_eq!(rev, revision(&spec(Order::StartFirst, None)));
        let mut other = spec(Order::StartFirst, None);
        other.env.push("B=2".into());
        assert_ne!(rev, revision(&other));
        let limits = task.resources.unwrap().limits.unwrap();
        assert_eq!(
            (limits.memory_bytes, limits.nano_cpus, limits.pids),
            (Some(64 << 20), Some(500_000_000), Some(256))
        );
        assert!(task.placement.is_none());
        let ports = d.endpoint_spec.as_ref().unwrap().ports.as_ref().unwrap();
        assert_eq!(
            ports[0].publish_mode,
            Some(EndpointPortConfigPublishModeEnum::HOST)
        );
        assert_eq!(ports[0].published_port, None, "Docker picks the port");
        assert_eq!(
            d.endpoint_spec.unwrap().mode,
            Some(EndpointSpecModeEnum::DNSRR)
        );
        let u = d.update_config.unwrap();
        assert_eq!(
            (u.parallelism, u.order, u.failure_action),
            (
                Some(1),
                Some(ServiceSpecUpdateConfigOrderEnum::START_FIRST),
                Some(ServiceSpecUpdateConfigFailureActionEnum::ROLLBACK)
            )
        );
        assert_eq!(d.mode.unwrap().replicated.unwrap().replicas, Some(3));
        // A volume app: stop-first, pinned to its node.
        let d = docker_spec(&spec(Order::StopFirst, Some("n1")));
        assert_eq!(
            d.update_config.unwrap().order,
            Some(ServiceSpecUpdateConfigOrderEnum::STOP_FIRST)
        );
        assert_eq!(
            d.task_template.unwrap().placement.unwrap().constraints,
            Some(vec!["node.id==n1".to_string()])
        );
    }
}
