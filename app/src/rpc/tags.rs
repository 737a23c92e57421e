//! Server functions for following an app's image tag: the state, the switch, "Check for
//! update" and a new webhook URL. The rules live in `pier_core::tags`.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};
use server_fn::codec::GetUrl;

#[cfg(feature = "ssr")]
use super::ssr;
use crate::{error::AppError, rpc::Done};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageUpdatesView {
    pub follow: bool,
    /// None: the image is pinned by digest.
    pub tag: Option<String>,
    pub checked: Option<String>,
    pub remote_digest: Option<String>,
    pub serving_digest: Option<String>,
    pub error: Option<String>,
    pub webhook_url: String,
}

#[server(prefix = "/rpc", endpoint = "image_updates", input = GetUrl)]
pub async fn image_updates(app: String) -> Result<ImageUpdatesView, AppError> {
    let (c, actor) = ssr::signed_in().await?;
    let t = c.pier.tag_status(&actor, &app).await?;
    Ok(ImageUpdatesView {
        follow: t.follow,
        tag: t.tag,
        checked: t.checked_at.map(pier_core::format_time),
        remote_digest: t.remote_digest,
        serving_digest: t.serving_digest,
        error: t.error,
        webhook_url: format!("{}{}", c.origin, t.hook_path),
    })
}

#[server(prefix = "/rpc", endpoint = "follow_tag")]
pub async fn follow_tag(
    app: String,
    follow: Option<String>,
    csrf_token: String,
) -> Result<Done, AppError> {
    let (c, actor) = ssr::form(csrf_token).await?;
    let on = follow.is_some();
    c.pier.set_follow_tag(&actor, &app, on).await?;
    Ok(Done {
        message: if on {
            "The app follows its image tag: a new digest is deployed when the tag moves.".into()
        } else {
            "The app no longer follows its image tag.".into()
        },
        copy: None,
    })
}

#[server(prefix = "/rpc", endpoint = "check_for_update")]
pub async fn check_for_update(app: String, csrf_token: String) -> Result<Done, AppError> {
    let (c, actor) = ssr::form(csrf_token).await?;
    let r = c.pier.check_for_update(&actor, &app).await?;
    let message = match (r.deployed, r.up_to_date()) {
        (Some(n), _) => format!(
            "The tag now names {}: deployment #{n} is rolling it out.",
            r.remote_digest
        ),
        (None, true) => format!("Up to date: the app runs {}.", r.remote_digest),
        (None, false) => format!(
            "The tag names {}, which the app does not run. Redeploy to run it, or follow the tag.",
            r.remote_digest
        ),
    };
    Ok(Done {
        message,
        copy: None,
    })
}

#[server(prefix = "/rpc", endpoint = "new_tag_webhook")]
pub async fn new_tag_webhook(app: String, csrf_token: String) -> Result<Done, AppError> {
    let (c, actor) = ssr::form(csrf_token).await?;
    let t = c.pier.new_tag_hook(&actor, &app).await?;
    Ok(Done {
        message: "A new webhook URL; the old one no longer works. Give this one to your registry."
            .into(),
        copy: Some(format!("{}{}", c.origin, t.hook_path)),
    })
}
