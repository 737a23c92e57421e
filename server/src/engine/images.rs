//! Image collection: every `image_gc_secs`, the references Pier pulled that no kept deployment
//! needs (see [`super::plan::images`]) are removed from the engine. An image a container still
//! uses is refused by the engine and tried again next time; one the operator tagged otherwise
//! only loses Pier's reference. Rollbacks to a collected image pull it again by digest.

use std::time::Duration;

use pier_core::{now, repo, runtime::RuntimeError, Pier};

/// A reference pulled this recently is left alone (its rollout may not have made its
/// container yet).
const GRACE_SECS: i64 = 600;

pub async fn collect_forever(pier: Pier) {
    let every = Duration::from_secs(pier.settings().engine.image_gc_secs.max(1));
    loop {
        tokio::time::sleep(every).await;
        match collect(&pier).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(removed = n, "unneeded images removed"),
            Err(e) => tracing::warn!(error = format!("{e:#}"), "collecting images failed"),
        }
    }
}

/// One collection; how many references went.
pub async fn collect(pier: &Pier) -> anyhow::Result<usize> {
    let started = now();
    let keep = pier.settings().engine.keep_images.max(1);
    let (pulled, kept) = {
        let mut tx = pier.db().begin().await?;
        let pulled = repo::images::all(&mut *tx).await?;
        let kept = repo::deployments::kept_images(&mut *tx, keep).await?;
        tx.rollback().await?;
        (pulled, kept)
    };
    let grace_from = started - grace_secs(pier);
    let mut removed = 0;
    for reference in super::plan::images(&pulled, &kept, grace_from) {
        // Claimed first: a rollout that pulls it again now records it anew, and the claim fails.
        if !repo::images::claim(pier.db(), &reference, grace_from).await? {
            continue;
        }
        match pier.runtime().remove_image(&reference).await {
            Ok(()) => {
                tracing::debug!(%reference, "image removed");
                removed += 1;
            }
            Err(e) => {
                match e {
                    // A container (perhaps the operator's) uses it: next time.
                    RuntimeError::Conflict(why) => {
                        tracing::debug!(%reference, why, "image still in use")
                    }
                    e => tracing::warn!(%reference, error = %e, "removing an image failed"),
                }
                repo::images::restore(pier.db(), &reference, grace_from - 1).await?;
            }
        }
    }
    Ok(removed)
}

/// Tests collect at once; a real engine waits [`GRACE_SECS`].
fn grace_secs(pier: &Pier) -> i64 {
    GRACE_SECS.min(i64::try_from(pier.settings().engine.image_gc_secs).unwrap_or(GRACE_SECS))
}
