//! Waiting for an app's deployment to end: a script that deploys asks once (`GET
//! /api/v1/apps/{name}?wait=N`) and is answered when the app is live or its deployment failed,
//! instead of asking again and again.

use std::time::{Duration, Instant};

use crate::{model::Actor, repo, Pier, Result};

use super::AppView;

/// The longest one request may wait.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

/// Waits one person may hold open at once (more are a 429): each is a connection and a task
/// that looks at the database every second.
pub const MAX_WAITS_PER_USER: usize = 16;

/// How often a waiter looks again without being told: a deployment also ends where no rollout
/// runs (the app deleted, a newer deployment queued), and those do not tell.
const LOOK_AGAIN: Duration = Duration::from_secs(1);

impl Pier {
    /// Tells waiters that a rollout ended: it went live, failed, was cancelled, or will be
    /// retried.
    pub fn rollout_ended(&self) {
        self.0
            .rollouts_ended
            .send_modify(|n| *n = n.wrapping_add(1));
    }

    /// The app (as [`Pier::app_view`]) once its newest deployment is no longer queued, pulling
    /// or starting, or when `limit` (at most [`MAX_WAIT`]) has passed, whichever comes first.
    /// Another tenant's app, or one deleted meanwhile, is `NotFound`; a person already holding
    /// [`MAX_WAITS_PER_USER`] waits is `RateLimited`.
    pub async fn app_view_when_deployed(
        &self,
        actor: &Actor,
        name: &str,
        limit: Duration,
    ) -> Result<AppView> {
        let deadline = Instant::now() + limit.min(MAX_WAIT);
        let _slot = self.wait_slots().take(actor.user_id)?;
        // Subscribed before the first look: a rollout that ends after it is never missed.
        let mut ended = self.0.rollouts_ended.subscribe();
        loop {
            let app = self.own_app(actor, name).await?;
            let newest = repo::deployments::list_for_app(self.db(), app.id, 1, 0).await?;
            let deploying = newest.first().is_some_and(|d| d.status.in_progress());
            let left = deadline.saturating_duration_since(Instant::now());
            if !deploying || left.is_zero() {
                break;
            }
            // Timing out is looking again; the sender lives as long as `self`.
            let _ = tokio::time::timeout(left.min(LOOK_AGAIN), ended.changed()).await;
        }
        self.app_view(actor, name).await
    }
}
