//! The tag follower: every `tag_poll_secs`, the apps that follow their image tag and are due
//! (`tag_check_secs`, spread per app) ask their registry for the tag's digest; a new one is
//! deployed through the normal rollout (`Pier::check_tag`). At most `PER_REGISTRY` checks per
//! registry per round, so that a registry's rate limit is never met by Pier alone; the rest wait
//! for the next round.

use std::{collections::HashMap, time::Duration};

use pier_core::{repo, validate, Pier};

const PER_REGISTRY: usize = 10;

pub async fn follow_forever(pier: Pier) {
    let poll = Duration::from_secs(pier.settings().engine.tag_poll_secs.max(1));
    loop {
        if let Err(e) = round(&pier).await {
            tracing::warn!(error = %e, "checking image tags failed");
        }
        tokio::time::sleep(poll).await;
    }
}

async fn round(pier: &Pier) -> pier_core::Result<()> {
    let due = pier.tags_due(pier.settings().engine.tag_check_secs).await?;
    let mut per_registry: HashMap<String, usize> = HashMap::new();
    for id in due {
        let Some(app) = repo::apps::by_id(pier.db(), id).await? else {
            continue;
        };
        let registry = validate::image(&app.image)
            .map(|i| i.registry)
            .unwrap_or_default();
        let n = per_registry.entry(registry).or_default();
        if *n >= PER_REGISTRY {
            continue;
        }
        *n += 1;
        // A failure is kept on the app (its page shows it) and retried at the next interval.
        if let Err(e) = pier.check_tag(&app).await {
            tracing::info!(app = %app.name, error = %e.public_message(), "tag check failed");
        }
    }
    Ok(())
}
