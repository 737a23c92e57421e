//! The machines of the Docker Swarm Pier runs on, for the admin page.

use leptos::prelude::*;
use pier_types::{NodeAvailability, NodeRole, NodeState};
use serde::{Deserialize, Serialize};
use server_fn::codec::GetUrl;

#[cfg(feature = "ssr")]
use super::ssr;
use super::Done;
use crate::error::AppError;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeRow {
    pub id: String,
    pub hostname: String,
    pub address: String,
    pub role: NodeRole,
    pub leader: bool,
    pub state: NodeState,
    pub message: String,
    pub availability: NodeAvailability,
    /// CPUs as a decimal ("2").
    pub cpus: String,
    pub memory_mb: i64,
    pub tasks: u32,
    pub engine_version: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterRow {
    pub nodes: Vec<NodeRow>,
    pub join_command: String,
}

/// None when Pier's engine manages no Swarm.
#[server(prefix = "/rpc", endpoint = "cluster_status", input = GetUrl)]
pub async fn cluster_status() -> Result<Option<ClusterRow>, AppError> {
    let (c, actor) = ssr::signed_in().await?;
    Ok(c.pier.cluster(&actor).await?.map(|cl| ClusterRow {
        join_command: cl.join_command,
        nodes: cl
            .nodes
            .into_iter()
            .map(|n| NodeRow {
                cpus: pier_core::validate::format_cpus(n.cpus_milli),
                memory_mb: n.memory_bytes / (1024 * 1024),
                id: n.id,
                hostname: n.hostname,
                address: n.address,
                role: n.role,
                leader: n.leader,
                state: n.state,
                message: n.message,
                availability: n.availability,
                tasks: n.tasks,
                engine_version: n.engine_version,
            })
            .collect(),
    }))
}

#[server(prefix = "/rpc", endpoint = "set_node_availability")]
pub async fn set_node_availability(
    id: String,
    availability: String,
    csrf_token: String,
) -> Result<Done, AppError> {
    let (c, actor) = ssr::form(csrf_token).await?;
    let to = NodeAvailability::parse(&availability)
        .ok_or_else(|| pier_core::Error::field("availability", "Choose active, pause or drain."))?;
    let node = c.pier.set_node_availability(&actor, &id, to).await?;
    Ok(Done {
        message: match to {
            NodeAvailability::Active => format!("{} takes tasks again.", node.hostname),
            NodeAvailability::Pause => {
                format!("{} keeps its tasks and takes no new ones.", node.hostname)
            }
            NodeAvailability::Drain => format!(
                "{} is draining: its tasks move to the other machines.",
                node.hostname
            ),
        },
        copy: None,
    })
}
