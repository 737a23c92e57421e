//! Follows the engine's events for this installation's containers, so pages reuse the last
//! container list until something changes instead of listing every second. At 1,000 containers
//! a list costs the engine tens of milliseconds, and pages under load asked for one each second
//! (bench/scale.py). Engines that cannot report events (a Swarm) keep the one-second lists.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use pier_core::Pier;

/// Waits between attempts to follow again, doubling up to this after quick failures.
const MAX_WAIT: Duration = Duration::from_secs(30);
/// How far back a subscription asks for events (dockerd replays what it still holds).
const SINCE_BACK_SECS: i64 = 60;

pub async fn follow_forever(pier: Pier) {
    let mut wait = Duration::from_secs(1);
    loop {
        let Ok(instance) = pier.instance_id().await else {
            tokio::time::sleep(wait).await;
            continue;
        };
        // From a minute back, by this machine's clock: an event between now and the engine
        // taking the subscription is sent all the same, even from an engine whose clock runs
        // up to a minute behind (a repeat only costs one more list).
        let since = pier_core::now() - SINCE_BACK_SECS;
        let Some(mut events) = pier.runtime().container_events(&instance, since) else {
            return;
        };
        pier.following_container_events(true);
        let started = Instant::now();
        let ended = loop {
            match events.next().await {
                Some(Ok(())) => pier.container_changed(),
                Some(Err(e)) => break Some(e),
                None => break None,
            }
        };
        pier.following_container_events(false);
        match ended {
            Some(e) => tracing::warn!(error = %e, "following the engine's container events failed"),
            None => tracing::debug!("the engine ended its event stream"),
        }
        wait = if started.elapsed() > MAX_WAIT {
            Duration::from_secs(1)
        } else {
            (wait * 2).min(MAX_WAIT)
        };
        tokio::time::sleep(wait).await;
    }
}
