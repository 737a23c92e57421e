//! The machines of the Docker Swarm Pier runs on, for the admin page.

use leptos::prelude::*;
use pier_types::Cluster;
#[cfg(feature = "ssr")]
use pier_types::NodeAvailability;
use server_fn::codec::GetUrl;

#[cfg(feature = "ssr")]
use super::ssr;
use super::Done;
use crate::error::AppError;

/// None when Pier's engine manages no Swarm.
#[server(prefix = "/rpc", endpoint = "cluster_status", input = GetUrl)]
pub async fn cluster_status() -> Result<Option<Cluster>, AppError> {
    let (c, actor) = ssr::signed_in().await?;
    Ok(c.pier.cluster(&actor).await?)
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
