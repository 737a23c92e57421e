//! Watches the Swarm's machines and tells the admins when one goes down or comes back. On a
//! single engine it only checks, once a minute, whether the engine joined a Swarm since.

use std::{collections::HashMap, time::Duration};

use pier_core::{cluster::node_events, Pier};

pub async fn watch_forever(pier: Pier) {
    let every = Duration::from_secs(pier.settings().engine.node_check_secs.max(1));
    // Machines seen down, since when.
    let mut down: HashMap<String, i64> = HashMap::new();
    loop {
        let wait = match pier.runtime().cluster().await {
            Ok(Some(cluster)) => {
                for event in node_events(&mut down, &cluster.nodes, pier_core::now()) {
                    tracing::warn!(kind = event.kind(), subject = %event.subject(), "swarm node");
                    pier.notify_admins(event).await;
                }
                every
            }
            Ok(None) => Duration::from_secs(60).max(every),
            // The reconciler tells the admins about an engine that does not answer.
            Err(e) => {
                tracing::debug!(error = %e, "swarm nodes not read");
                every
            }
        };
        tokio::time::sleep(wait).await;
    }
}
