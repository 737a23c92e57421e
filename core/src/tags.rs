//! Apps that follow their image tag. Pier asks the registry which digest the tag names now (the
//! engine's distribution API: a `HEAD`/`GET` of the manifest, which Docker Hub does not count as
//! a pull), on a schedule the operator bounds or when the app's webhook is called, and deploys a
//! digest it has not deployed before through the normal rollout: the new one must be healthy
//! before it serves, and a broken one fails while the old keeps serving. A digest is deployed
//! once: after a failed deployment of it, Pier waits for the tag to move again.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::{
    audit::{Action, Change},
    model::{Actor, App},
    now, repo, validate, Error, Pier, Result,
};

/// How often an app that follows its tag is checked by default (6 hours).
/// How a deployment the tag started begins its cause (what its notification is told by).
pub const TAG_CAUSE: &str = "the tag moved to";

pub const DEFAULT_CHECK_SECS: i64 = 6 * 3600;
/// A webhook call waits until the app's last webhook check is this old: a burst of calls (a
/// multi-platform push sends several) makes one registry request per gap, and none is dropped.
const HOOK_MIN_GAP: std::time::Duration = std::time::Duration::from_secs(1);

/// An app's tag following, as its page and the API show it.
#[derive(Debug, Clone, PartialEq)]
pub struct TagStatus {
    pub follow: bool,
    /// The tag followed (`registry/repo:tag`); None when the image is pinned by digest.
    pub tag: Option<String>,
    pub checked_at: Option<i64>,
    /// What the registry said at the last check.
    pub remote_digest: Option<String>,
    /// The digest the serving deployment runs.
    pub serving_digest: Option<String>,
    pub error: Option<String>,
    /// The webhook's path (`/api/v1/hooks/tags/{app}/{token}`), a secret.
    pub hook_path: String,
}

/// What one check found and did.
#[derive(Debug, Clone, PartialEq)]
pub struct TagCheck {
    pub remote_digest: String,
    pub serving_digest: Option<String>,
    /// The deployment it queued (its number), when it found a new digest to follow.
    pub deployed: Option<i64>,
}

impl TagCheck {
    pub fn up_to_date(&self) -> bool {
        self.serving_digest.as_deref() == Some(self.remote_digest.as_str())
    }
}

/// When an app last checked at `checked_at` is due again: the interval, spread by ±10 % per
/// app so that apps set up together do not all ask the registry at once.
pub fn next_check(app_id: i64, checked_at: Option<i64>, interval: i64) -> i64 {
    let Some(at) = checked_at else { return 0 };
    // A fixed spread per app (Fibonacci hashing of its id).
    let spread = (app_id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 54; // 0..1023
    let factor = 0.9 + 0.2 * (spread as f64 / 1023.0);
    at + (interval as f64 * factor) as i64
}

impl Pier {
    fn hook_token(&self, app_id: i64, generation: i64) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key().derive("tag webhook"))
            .expect("HMAC takes any key length");
        mac.update(format!("{app_id}:{generation}").as_bytes());
        hex::encode(&mac.finalize().into_bytes()[..20])
    }

    /// The digest the app's serving deployment runs.
    async fn serving_digest(&self, app: &App) -> Result<Option<String>> {
        Ok(match app.current_deployment_id {
            Some(id) => repo::deployments::by_id(self.db(), id)
                .await?
                .and_then(|d| d.digest),
            None => None,
        })
    }

    async fn tag_status_of(&self, app: &App) -> Result<TagStatus> {
        let f = repo::tags::get(self.db(), app.id).await?;
        let image = validate::image(&app.image).ok();
        let serving = self.serving_digest(app).await?;
        Ok(TagStatus {
            follow: f.enabled,
            tag: image
                .filter(|i| i.digest.is_none())
                .map(|i| format!("{}:{}", i.name(), i.tag.as_deref().unwrap_or("latest"))),
            checked_at: f.checked_at,
            remote_digest: f.remote_digest,
            serving_digest: serving,
            error: f.error,
            hook_path: format!(
                "/api/v1/hooks/tags/{}/{}",
                app.id,
                self.hook_token(app.id, f.hook_generation)
            ),
        })
    }

    /// The caller's app's tag following.
    pub async fn tag_status(&self, actor: &Actor, name: &str) -> Result<TagStatus> {
        let app = self.own_app(actor, name).await?;
        self.tag_status_of(&app).await
    }

    /// Turns following on or off. On: the first check runs at once.
    pub async fn set_follow_tag(&self, actor: &Actor, name: &str, on: bool) -> Result<TagStatus> {
        let what = Change::new(Action::AppFollowTag, name.trim())
            .owner(actor.user_id)
            .summary(if on {
                "follows its image tag"
            } else {
                "no longer follows its image tag"
            });
        self.audited(actor, what, async {
            let app = self.own_app(actor, name).await?;
            if on {
                pinned_refusal(&app)?;
            }
            repo::tags::set_enabled(self.db(), app.id, on).await?;
            if on {
                // A first look now: a failure is kept for the page and retried on schedule.
                let _ = self.check_tag(&app).await;
            }
            self.tag_status_of(&app).await
        })
        .await
    }

    /// A new webhook URL for the caller's app; the old one stops working.
    pub async fn new_tag_hook(&self, actor: &Actor, name: &str) -> Result<TagStatus> {
        let what = Change::new(Action::AppTagHook, name.trim())
            .owner(actor.user_id)
            .summary("new webhook URL; the old one no longer works");
        self.audited(actor, what, async {
            let app = self.own_app(actor, name).await?;
            repo::tags::bump_hook(self.db(), app.id).await?;
            self.tag_status_of(&app).await
        })
        .await
    }

    /// "Check for update": asks the registry now; an app that follows its tag deploys a new
    /// digest at once.
    pub async fn check_for_update(&self, actor: &Actor, name: &str) -> Result<TagCheck> {
        let app = self.own_app(actor, name).await?;
        let r = self.check_tag(&app).await;
        if let Ok(TagCheck {
            deployed: Some(n),
            remote_digest,
            ..
        }) = &r
        {
            let what = Change::new(Action::AppDeploy, &app.name)
                .owner(actor.user_id)
                .summary(format!("deployment #{n}: the tag moved to {remote_digest}"));
            self.record(actor, what, &r).await;
        }
        r
    }

    /// The registry's webhook: `token` must be the app's current one (else 404, as for an app
    /// that does not exist). A deployment it starts is recorded in the app owner's audit log as
    /// the webhook's, from `address`.
    pub async fn tag_hook(&self, app_id: i64, token: &str, address: &str) -> Result<TagCheck> {
        let app = repo::apps::by_id(self.db(), app_id)
            .await?
            .ok_or(Error::NotFound)?;
        let f = repo::tags::get(self.db(), app.id).await?;
        let want = self.hook_token(app.id, f.hook_generation);
        if !bool::from(want.as_bytes().ct_eq(token.as_bytes())) {
            return Err(Error::NotFound);
        }
        // The slot after the app's last webhook check (claimed now, so concurrent calls queue).
        let slot = {
            let mut last = self.0.tag_hooks.lock().expect("tag hook lock");
            let t = std::time::Instant::now();
            let slot = last
                .get(&app.id)
                .map_or(t, |prev| (*prev + HOOK_MIN_GAP).max(t));
            last.retain(|_, at| t.duration_since(*at) < HOOK_MIN_GAP);
            last.insert(app.id, slot);
            slot
        };
        tokio::time::sleep_until(slot.into()).await;
        let r = self.check_tag(&app).await;
        if let Ok(TagCheck {
            deployed: Some(n),
            remote_digest,
            ..
        }) = &r
        {
            let who = crate::audit::Who {
                user_id: None,
                email: "registry webhook".into(),
                origin: crate::model::Origin {
                    token_id: None,
                    address: Some(address.to_owned()),
                },
            };
            let what = Change::new(Action::AppDeploy, &app.name)
                .owner(app.user_id)
                .summary(format!("deployment #{n}: the tag moved to {remote_digest}"));
            self.record_as(&who, what, &r).await;
        }
        r
    }

    /// Apps that follow their tag and are due for a check, by id.
    pub async fn tags_due(&self, interval: i64) -> Result<Vec<i64>> {
        let t = now();
        Ok(repo::tags::following(self.db())
            .await?
            .into_iter()
            .filter(|(id, at)| next_check(*id, *at, interval) <= t)
            .map(|(id, _)| id)
            .collect())
    }

    /// Asks the registry for the app's tag; when the app follows it and the digest is one not
    /// deployed yet, queues its deployment. The outcome is kept for the app's page.
    pub async fn check_tag(&self, app: &App) -> Result<TagCheck> {
        let r = self.look_up_tag(app).await;
        let t = now();
        match &r {
            Ok(d) => repo::tags::checked(self.db(), app.id, t, Ok(d)).await?,
            Err(e) => repo::tags::checked(self.db(), app.id, t, Err(&e.public_message())).await?,
        }
        let remote = r?;
        let f = repo::tags::get(self.db(), app.id).await?;
        let serving = self.serving_digest(app).await?;
        let latest = repo::deployments::list_for_app(self.db(), app.id, 1, 0)
            .await?
            .into_iter()
            .next();
        // Deployed already (whatever became of it), or a deployment by the tag under way.
        let known = latest.as_ref().is_some_and(|d| {
            d.digest.as_deref() == Some(remote.as_str())
                || (d.status.in_progress() && d.digest.is_none())
        }) || serving.as_deref() == Some(remote.as_str());
        let mut deployed = None;
        if f.enabled && !known && app.desired == crate::model::Desired::Running {
            let short = remote.get(..19).unwrap_or(&remote);
            let cause = format!("{TAG_CAUSE} {short}…");
            let d = self.queue_deployment(app, &cause, Some(&remote)).await?;
            deployed = Some(d.number);
            tracing::info!(app = %app.name, digest = %remote, "the tag moved: deploying");
        }
        Ok(TagCheck {
            remote_digest: remote,
            serving_digest: serving,
            deployed,
        })
    }

    /// The digest the app's tag names in its registry now.
    async fn look_up_tag(&self, app: &App) -> Result<String> {
        let image = validate::image(&app.image).map_err(|e| Error::field("image", e))?;
        pinned_refusal(app)?;
        let allowed = &self.settings().engine.allowed_registries;
        if !allowed.is_empty() && !allowed.contains(&image.registry) {
            return Err(Error::Conflict(format!(
                "This Pier only pulls from {}.",
                allowed.join(", ")
            )));
        }
        if allowed.is_empty() {
            validate::public_registry(&image.registry).map_err(Error::Conflict)?;
        }
        let auth = self.registry_auth(app.user_id, &image.registry).await?;
        self.runtime()
            .remote_digest(&image, auth)
            .await
            .map_err(|e| match e {
                crate::runtime::RuntimeError::Unavailable(_) => crate::apps::engine_error(e),
                other => Error::Conflict(format!("The registry did not say: {other}")),
            })
    }
}

/// An image pinned by digest has no tag to follow.
fn pinned_refusal(app: &App) -> Result<()> {
    match validate::image(&app.image) {
        Ok(i) if i.digest.is_some() => Err(Error::Conflict(
            "This app's image is pinned by digest: there is no tag to follow.".into(),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_are_spread_around_the_interval() {
        assert_eq!(next_check(7, None, 3600), 0);
        let mut seen = std::collections::HashSet::new();
        for id in 1..200 {
            let at = next_check(id, Some(1_000_000), 3600);
            assert!(
                (1_000_000 + 3240..=1_000_000 + 3960).contains(&at),
                "{id}: {at}"
            );
            seen.insert(at);
        }
        assert!(seen.len() > 100, "the spread is too coarse: {}", seen.len());
    }
}
