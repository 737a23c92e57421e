//! The Docker Swarm a manager engine leads, read and steered through the engine API: its
//! nodes, their tasks, the command that adds a machine.

use std::collections::HashMap;

use bollard::{
    models::{
        LocalNodeState, NodeSpecAvailabilityEnum, NodeSpecRoleEnum, NodeState as DockerNodeState,
        TaskState,
    },
    query_parameters::{ListNodesOptions, ListTasksOptionsBuilder, UpdateNodeOptions},
    Docker,
};
use pier_core::runtime::{Cluster, Node, NodeAvailability, NodeRole, NodeState, RuntimeError};

use crate::engine::docker::map_err;

pub mod runtime;
pub mod services;

/// None when the engine is not a manager of an active Swarm.
pub(super) async fn cluster(docker: &Docker) -> Result<Option<Cluster>, RuntimeError> {
    let info = docker.info().await.map_err(map_err)?;
    let swarm = info.swarm.unwrap_or_default();
    if swarm.local_node_state != Some(LocalNodeState::ACTIVE)
        || swarm.control_available != Some(true)
    {
        return Ok(None);
    }
    let nodes = docker
        .list_nodes(None::<ListNodesOptions>)
        .await
        .map_err(map_err)?;
    let running = ListTasksOptionsBuilder::new()
        .filters(&HashMap::from([(
            "desired-state".to_string(),
            vec!["running".to_string()],
        )]))
        .build();
    let mut tasks: HashMap<String, u32> = HashMap::new();
    for t in docker.list_tasks(Some(running)).await.map_err(map_err)? {
        // Tasks still meant to run and not finished (a task on a lost node keeps its desired
        // state until the Swarm notices).
        let live = !matches!(
            t.status.as_ref().and_then(|s| s.state),
            Some(TaskState::SHUTDOWN | TaskState::FAILED | TaskState::COMPLETE)
        );
        if let (true, Some(node)) = (live, t.node_id) {
            *tasks.entry(node).or_default() += 1;
        }
    }
    let secrets = docker.inspect_swarm().await.map_err(map_err)?;
    let token = secrets
        .join_tokens
        .and_then(|t| t.worker)
        .unwrap_or_default();
    // The address workers join at: this manager's own (host:2377).
    let mut manager_addr = swarm
        .remote_managers
        .unwrap_or_default()
        .into_iter()
        .find(|m| m.node_id == swarm.node_id)
        .and_then(|m| m.addr)
        .unwrap_or_default();
    let mut out: Vec<Node> = nodes
        .into_iter()
        .map(|n| {
            let id = n.id.unwrap_or_default();
            let spec = n.spec.unwrap_or_default();
            let desc = n.description.unwrap_or_default();
            let status = n.status.unwrap_or_default();
            let manager = n.manager_status.unwrap_or_default();
            if manager_addr.is_empty() && Some(&id) == swarm.node_id.as_ref() {
                manager_addr = manager.addr.clone().unwrap_or_default();
            }
            let resources = desc.resources.unwrap_or_default();
            Node {
                tasks: tasks.get(&id).copied().unwrap_or(0),
                hostname: desc.hostname.unwrap_or_default(),
                address: status.addr.unwrap_or_default(),
                role: match spec.role {
                    Some(NodeSpecRoleEnum::MANAGER) => NodeRole::Manager,
                    _ => NodeRole::Worker,
                },
                leader: manager.leader.unwrap_or(false),
                state: match status.state {
                    Some(DockerNodeState::READY) => NodeState::Ready,
                    Some(DockerNodeState::DOWN) => NodeState::Down,
                    Some(DockerNodeState::DISCONNECTED) => NodeState::Disconnected,
                    _ => NodeState::Unknown,
                },
                message: status.message.unwrap_or_default(),
                availability: match spec.availability {
                    Some(NodeSpecAvailabilityEnum::DRAIN) => NodeAvailability::Drain,
                    Some(NodeSpecAvailabilityEnum::PAUSE) => NodeAvailability::Pause,
                    _ => NodeAvailability::Active,
                },
                cpus_milli: resources.nano_cpus.unwrap_or(0) / 1_000_000,
                memory_bytes: resources.memory_bytes.unwrap_or(0),
                engine_version: desc
                    .engine
                    .and_then(|e| e.engine_version)
                    .unwrap_or_default(),
                id,
            }
        })
        .collect();
    // Managers first, then by name: the order a person reads a list of machines in.
    out.sort_by(|a, b| {
        (a.role != NodeRole::Manager, &a.hostname, &a.id).cmp(&(
            b.role != NodeRole::Manager,
            &b.hostname,
            &b.id,
        ))
    });
    Ok(Some(Cluster {
        nodes: out,
        join_command: format!("docker swarm join --token {token} {manager_addr}"),
    }))
}

/// Changes only the availability, at the node's current version (a concurrent change makes the
/// engine refuse rather than one overwriting the other).
pub(super) async fn set_node_availability(
    docker: &Docker,
    node: &str,
    availability: NodeAvailability,
) -> Result<(), RuntimeError> {
    let current = docker.inspect_node(node).await.map_err(map_err)?;
    let version = current
        .version
        .and_then(|v| v.index)
        .and_then(|i| i64::try_from(i).ok())
        .ok_or_else(|| RuntimeError::Failed("the node has no version".into()))?;
    let mut spec = current.spec.unwrap_or_default();
    spec.availability = Some(match availability {
        NodeAvailability::Active => NodeSpecAvailabilityEnum::ACTIVE,
        NodeAvailability::Pause => NodeSpecAvailabilityEnum::PAUSE,
        NodeAvailability::Drain => NodeSpecAvailabilityEnum::DRAIN,
    });
    docker
        .update_node(node, spec, UpdateNodeOptions { version })
        .await
        .map_err(map_err)
}
