//! Log streams for people: the app's log through the REST API (a token) or the browser (a
//! session). A followed log holds a connection open for as long as the reader wants, so each
//! person may hold only a few at once, and a stream ends by itself soon after what let it start
//! stops being valid: the token revoked or expired, the session ended, the account disabled.

use std::time::Duration;

use futures_util::{stream::BoxStream, StreamExt};

use crate::{
    model::Actor,
    now, repo,
    runtime::{LogLine, RuntimeError},
    Pier, Result,
};

/// Followed logs one person may hold open at once.
pub const MAX_FOLLOWS_PER_USER: usize = 4;

/// How often an open stream checks that its reader may still read.
pub(crate) const RECHECK: Duration = Duration::from_secs(5);

/// What the reader authenticated with; checked again while the stream is open.
#[derive(Debug, Clone)]
pub enum Credential {
    /// An API token (by id).
    Token(i64),
    /// A browser session (by id).
    Session(String),
}

impl Pier {
    /// The app's log for a reader: the last `tail` lines, streamed (never gathered in memory),
    /// then with `follow` new lines as they are written — within the reader's limit of open
    /// streams, and only while `credential` stays valid.
    pub async fn log_stream(
        &self,
        actor: &Actor,
        credential: Credential,
        name: &str,
        tail: usize,
        follow: bool,
    ) -> Result<BoxStream<'static, std::result::Result<LogLine, RuntimeError>>> {
        let slot = match follow {
            true => Some(self.log_slots().take(actor.user_id)?),
            false => None,
        };
        let lines = self.app_logs(actor, name, tail, follow).await?;
        if !follow {
            return Ok(lines);
        }
        let pier = self.clone();
        let user_id = actor.user_id;
        let revoked = async move {
            loop {
                tokio::time::sleep(RECHECK).await;
                match pier.may_still_read(user_id, &credential).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::info!(
                            user_id,
                            "log stream ended: its credential is no longer valid"
                        );
                        return;
                    }
                    Err(e) => tracing::warn!(error = %e, "checking a log reader failed"),
                }
            }
        };
        Ok(lines
            .take_until(Box::pin(revoked))
            .map(move |line| {
                // Held for as long as the stream lives.
                let _ = &slot;
                line
            })
            .boxed())
    }

    /// Whether the reader's token or session is still good and the account enabled.
    async fn may_still_read(&self, user_id: i64, credential: &Credential) -> Result<bool> {
        let t = now();
        Ok(match credential {
            Credential::Token(id) => repo::tokens::usable(self.db(), *id, t).await?,
            Credential::Session(id) => {
                repo::sessions::load(self.db(), id, t).await?.is_some()
                    && repo::users::by_id(self.db(), user_id)
                        .await?
                        .is_some_and(|u| !u.disabled)
            }
        })
    }
}
