//! A tenant's bridge network, made once and adopted when a racing create made it first.

use std::collections::HashMap;

use bollard::{models::NetworkCreateRequest, query_parameters::ListNetworksOptionsBuilder};

use pier_core::runtime::RuntimeError;

use super::{map_err, DockerRuntime};

impl DockerRuntime {
    pub(super) async fn ensure_network_named(
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
}
