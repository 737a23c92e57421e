//! Delivers the notifications `pier_core::notify` queued: each delivery is tried when due,
//! marked sent, or tried again later with a growing pause (base × 1, 4, 20, 120, 720), and
//! given up after six attempts with the last error kept for the account page.

mod email;
mod webhook;

use std::time::Duration;

use pier_core::{now, repo, Pier};

/// Attempts before a delivery is given up.
const ATTEMPTS: i64 = 6;
const PAUSES: [i64; 5] = [1, 4, 20, 120, 720];
/// Deliveries taken per round.
const BATCH: i64 = 20;

/// When a delivery that failed for the `attempts`-th time is tried again, if at all.
pub fn retry_at(base_secs: i64, attempts: i64, now: i64) -> Option<i64> {
    if attempts >= ATTEMPTS {
        return None;
    }
    let i = usize::try_from(attempts - 1)
        .unwrap_or(0)
        .min(PAUSES.len() - 1);
    Some(now + base_secs.max(1) * PAUSES[i])
}

pub async fn deliver_forever(pier: Pier) {
    loop {
        if let Err(e) = deliver_due(&pier).await {
            tracing::error!(error = %e, "notification delivery round failed");
        }
        let wait = match repo::notify::next_due(pier.db()).await {
            Ok(Some(at)) => (at - now()).clamp(0, 30),
            _ => 30,
        };
        if wait == 0 {
            continue;
        }
        tokio::select! {
            _ = pier.notifications_queued() => {}
            _ = tokio::time::sleep(Duration::from_secs(wait as u64)) => {}
        }
    }
}

async fn deliver_due(pier: &Pier) -> anyhow::Result<()> {
    for d in repo::notify::due(pier.db(), now(), BATCH).await? {
        let outcome = match d.channel.as_str() {
            "webhook" => webhook::deliver(pier, &d).await,
            _ => email::deliver(pier, &d).await,
        };
        match outcome {
            Ok(()) => {
                repo::notify::sent(pier.db(), d.id, now()).await?;
                tracing::info!(
                    delivery = d.id,
                    channel = d.channel,
                    kind = d.kind,
                    "notification sent"
                );
            }
            Err(why) => {
                let attempts = d.attempts + 1;
                let again = retry_at(pier.settings().notify.retry_base_secs, attempts, now());
                tracing::warn!(delivery = d.id, channel = d.channel, attempts, error = %why, "notification not delivered");
                repo::notify::attempt_failed(pier.db(), d.id, &why, again).await?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_then_stop() {
        assert_eq!(retry_at(30, 1, 1000), Some(1030));
        assert_eq!(retry_at(30, 2, 1000), Some(1120));
        assert_eq!(retry_at(30, 5, 1000), Some(1000 + 30 * 720));
        assert_eq!(retry_at(30, 6, 1000), None);
        assert_eq!(retry_at(0, 1, 1000), Some(1001));
    }
}
