//! `/api/v1/nodes`: the machines of the Docker Swarm Pier runs on (admin scope).

use axum::{
    extract::{Path, State},
    routing::get,
    Json, Router,
};
use pier_core::{
    model::Scope,
    runtime::{Node, NodeAvailability},
    validate::format_cpus,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[allow(unused_imports)]
use super::ErrorBody;
use super::{ApiResult, Body, Caller};
use crate::http::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/nodes", get(list))
        .route("/nodes/{id}", axum::routing::patch(update))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NodeOut {
    id: String,
    hostname: String,
    /// The address the other machines reach it at.
    address: String,
    /// manager or worker.
    #[schema(example = "worker")]
    role: &'static str,
    /// The manager leading the Swarm.
    leader: bool,
    /// ready, down, disconnected or unknown.
    #[schema(example = "ready")]
    state: &'static str,
    /// Why it is in that state, when the Swarm says.
    message: String,
    /// active (takes tasks), pause (keeps its tasks) or drain (hands them to the others).
    #[schema(example = "active")]
    availability: &'static str,
    /// CPUs as a decimal string ("2").
    cpus: String,
    memory_mb: i64,
    /// Tasks meant to be running there.
    tasks: u32,
    engine_version: String,
}

impl From<Node> for NodeOut {
    fn from(n: Node) -> Self {
        NodeOut {
            role: n.role.as_str(),
            state: n.state.as_str(),
            availability: n.availability.as_str(),
            cpus: format_cpus(n.cpus_milli),
            memory_mb: n.memory_bytes / (1024 * 1024),
            id: n.id,
            hostname: n.hostname,
            address: n.address,
            leader: n.leader,
            message: n.message,
            tasks: n.tasks,
            engine_version: n.engine_version,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NodesOut {
    /// Whether Pier's engine manages a Swarm; without one, `nodes` is empty.
    swarm: bool,
    nodes: Vec<NodeOut>,
    /// What to run on a new machine to add it as a worker (holds the Swarm's join token).
    join_command: Option<String>,
}

/// The Swarm's machines (admin scope).
#[utoipa::path(get, path = "/api/v1/nodes", tag = "nodes",
    security(("token" = [])),
    responses((status = 200, body = NodesOut), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn list(State(s): State<AppState>, caller: Caller) -> ApiResult<Json<NodesOut>> {
    caller.require(Scope::Admin)?;
    Ok(Json(match s.pier.cluster(&caller.actor).await? {
        Some(c) => NodesOut {
            swarm: true,
            nodes: c.nodes.into_iter().map(NodeOut::from).collect(),
            join_command: Some(c.join_command),
        },
        None => NodesOut {
            swarm: false,
            nodes: Vec::new(),
            join_command: None,
        },
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchNode {
    /// active, pause or drain.
    #[schema(example = "drain")]
    availability: String,
}

/// Lets a machine take tasks, keep only its own, or hand them all to the others (admin scope).
/// The last machine taking tasks cannot be paused or drained (409).
#[utoipa::path(patch, path = "/api/v1/nodes/{id}", tag = "nodes", request_body = PatchNode,
    params(("id" = String, Path, description = "The node's id")),
    security(("token" = [])),
    responses((status = 200, body = NodeOut), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn update(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(p): Body<PatchNode>,
) -> ApiResult<Json<NodeOut>> {
    caller.require(Scope::Admin)?;
    let availability = NodeAvailability::parse(&p.availability)
        .ok_or_else(|| pier_core::Error::field("availability", "Choose active, pause or drain."))?;
    let node = s
        .pier
        .set_node_availability(&caller.actor, &id, availability)
        .await?;
    Ok(Json(node.into()))
}
