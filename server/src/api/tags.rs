//! `/api/v1/apps/{name}/image-updates`: following an app's image tag, checking for a new
//! digest, the app's webhook URL; and the webhook itself, `/api/v1/hooks/tags/{app}/{token}`,
//! which a registry calls without a token (the URL is the secret).

use axum::{
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    routing::{get, post},
    Json, Router,
};
use pier_core::{
    model::Scope,
    tags::{TagCheck, TagStatus},
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[allow(unused_imports)]
use super::ErrorBody;
use super::{format_time, panel_origin, ApiResult, Body, Caller};
use crate::http::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/apps/{name}/image-updates", get(show).put(set))
        .route("/apps/{name}/image-updates/check", post(check))
        .route("/apps/{name}/image-updates/webhook", post(new_webhook))
        .route("/hooks/tags/{app}/{token}", post(hook))
}

/// Whether the app follows its image tag, what the last check found, and its webhook.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImageUpdatesOut {
    /// Redeploy when the tag moves.
    follow: bool,
    /// The tag followed; absent when the image is pinned by digest.
    tag: Option<String>,
    checked_at: Option<String>,
    /// What the registry said at the last check.
    remote_digest: Option<String>,
    /// What the serving deployment runs.
    serving_digest: Option<String>,
    /// Why the last check failed, when it did.
    error: Option<String>,
    /// POST here (no token; the URL is the secret) to check at once: give it to the registry.
    webhook_url: String,
}

fn out(t: TagStatus, origin: &str) -> ImageUpdatesOut {
    ImageUpdatesOut {
        follow: t.follow,
        tag: t.tag,
        checked_at: t.checked_at.map(format_time),
        remote_digest: t.remote_digest,
        serving_digest: t.serving_digest,
        error: t.error,
        webhook_url: format!("{origin}{}", t.hook_path),
    }
}

/// What a check found.
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckOut {
    remote_digest: String,
    serving_digest: Option<String>,
    /// The serving deployment runs what the tag names.
    up_to_date: bool,
    /// The deployment queued for the new digest (apps that follow their tag).
    deployment: Option<i64>,
}

impl From<TagCheck> for CheckOut {
    fn from(c: TagCheck) -> Self {
        CheckOut {
            up_to_date: c.up_to_date(),
            remote_digest: c.remote_digest,
            serving_digest: c.serving_digest,
            deployment: c.deployed,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FollowBody {
    follow: bool,
}

/// The app's image updates.
#[utoipa::path(get, path = "/api/v1/apps/{name}/image-updates", tag = "apps",
    params(("name" = String, Path, description = "The app's name")),
    security(("token" = [])),
    responses((status = 200, body = ImageUpdatesOut), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn show(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult<Json<ImageUpdatesOut>> {
    caller.require(Scope::Read)?;
    let t = s.pier.tag_status(&caller.actor, &name).await?;
    Ok(Json(out(t, &panel_origin(&s, &headers))))
}

/// Follows the image tag (a new digest is deployed through the normal rollout) or stops.
/// 409 for an image pinned by digest.
#[utoipa::path(put, path = "/api/v1/apps/{name}/image-updates", tag = "apps",
    params(("name" = String, Path, description = "The app's name")), request_body = FollowBody,
    security(("token" = [])),
    responses((status = 200, body = ImageUpdatesOut), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn set(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(name): Path<String>,
    Body(b): Body<FollowBody>,
) -> ApiResult<Json<ImageUpdatesOut>> {
    caller.require(Scope::Write)?;
    let t = s
        .pier
        .set_follow_tag(&caller.actor, &name, b.follow)
        .await?;
    Ok(Json(out(t, &panel_origin(&s, &headers))))
}

/// Asks the registry for the tag's digest now; an app that follows its tag deploys a new one.
#[utoipa::path(post, path = "/api/v1/apps/{name}/image-updates/check", tag = "apps",
    params(("name" = String, Path, description = "The app's name")),
    security(("token" = [])),
    responses((status = 200, body = CheckOut), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 503, body = ErrorBody)))]
pub async fn check(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<CheckOut>> {
    caller.require(Scope::Write)?;
    Ok(Json(
        s.pier.check_for_update(&caller.actor, &name).await?.into(),
    ))
}

/// A new webhook URL; the old one stops working.
#[utoipa::path(post, path = "/api/v1/apps/{name}/image-updates/webhook", tag = "apps",
    params(("name" = String, Path, description = "The app's name")),
    security(("token" = [])),
    responses((status = 200, body = ImageUpdatesOut), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn new_webhook(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult<Json<ImageUpdatesOut>> {
    caller.require(Scope::Write)?;
    let t = s.pier.new_tag_hook(&caller.actor, &name).await?;
    Ok(Json(out(t, &panel_origin(&s, &headers))))
}

/// The app's webhook, for its registry: checks the tag now (at most every 10 s) and deploys a
/// new digest when the app follows its tag (calls for one app run at most once a second; the
/// others wait their turn). Any
/// body is ignored. 404 for a wrong URL.
#[utoipa::path(post, path = "/api/v1/hooks/tags/{app}/{token}", tag = "apps",
    params(("app" = String, Path, description = "The app's id"),
        ("token" = String, Path, description = "The webhook's secret")),
    responses((status = 202, body = CheckOut), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn hook(
    State(s): State<AppState>,
    headers: HeaderMap,
    extensions: axum::http::Extensions,
    Path((app, token)): Path<(String, String)>,
) -> ApiResult<(StatusCode, Json<CheckOut>)> {
    let app: i64 = app.parse().map_err(|_| pier_core::Error::NotFound)?;
    let address = app::rpc::ssr::client_ip(&extensions, &headers);
    let c = s.pier.tag_hook(app, &token, &address).await?;
    Ok((StatusCode::ACCEPTED, Json(c.into())))
}
