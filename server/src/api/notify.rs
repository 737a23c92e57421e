//! `/api/v1/notifications`: where a person's notifications go, their last deliveries and a
//! test; `/api/v1/settings/smtp`: the operator's mail server (admin scope).

use axum::{extract::State, http::StatusCode, routing::get, Json, Router};
use pier_core::{
    model::Scope,
    notify::{Channels, Delivery, SmtpInput, SmtpView},
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

#[allow(unused_imports)]
use super::ErrorBody;
use super::{format_time, ApiResult, Body, Caller, Q};
use crate::http::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/notifications", get(channels).put(set_channels))
        .route("/notifications/test", axum::routing::post(test))
        .route("/notifications/deliveries", get(deliveries))
        .route(
            "/settings/smtp",
            get(smtp).put(set_smtp).delete(delete_smtp),
        )
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ChannelsOut {
    /// E-mail to the account's address.
    email: bool,
    /// Whether the operator has set a mail server.
    email_available: bool,
    webhook_url: Option<String>,
    /// The webhook signing secret (for write and admin tokens only).
    webhook_secret: Option<String>,
}

impl ChannelsOut {
    fn new(c: Channels, scope: Scope) -> Self {
        ChannelsOut {
            email: c.email,
            email_available: c.email_available,
            webhook_url: c.webhook_url,
            webhook_secret: c.webhook_secret.filter(|_| scope >= Scope::Write),
        }
    }
}

/// Where the caller's notifications go (read scope; the secret needs write).
#[utoipa::path(get, path = "/api/v1/notifications", tag = "notifications",
    security(("token" = [])),
    responses((status = 200, body = ChannelsOut), (status = 401, body = ErrorBody)))]
pub async fn channels(State(s): State<AppState>, caller: Caller) -> ApiResult<Json<ChannelsOut>> {
    caller.require(Scope::Read)?;
    let c = s.pier.channels(&caller.actor).await?;
    Ok(Json(ChannelsOut::new(c, caller.scope)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelsIn {
    email: bool,
    /// Null or empty: no webhook.
    webhook_url: Option<String>,
    /// Make a new signing secret (the old one stops working).
    #[serde(default)]
    new_secret: bool,
}

/// Sets where the caller's notifications go (write scope).
#[utoipa::path(put, path = "/api/v1/notifications", tag = "notifications",
    request_body = ChannelsIn, security(("token" = [])),
    responses((status = 200, body = ChannelsOut), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn set_channels(
    State(s): State<AppState>,
    caller: Caller,
    Body(b): Body<ChannelsIn>,
) -> ApiResult<Json<ChannelsOut>> {
    caller.require(Scope::Write)?;
    let c = s
        .pier
        .set_channels(
            &caller.actor,
            b.email,
            b.webhook_url.as_deref().unwrap_or_default(),
            b.new_secret,
        )
        .await?;
    Ok(Json(ChannelsOut::new(c, caller.scope)))
}

/// Sends a test notification to the caller's channels (write scope); 409 when there is none.
#[utoipa::path(post, path = "/api/v1/notifications/test", tag = "notifications",
    security(("token" = [])),
    responses((status = 202), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub async fn test(State(s): State<AppState>, caller: Caller) -> ApiResult<StatusCode> {
    caller.require(Scope::Write)?;
    s.pier.send_test_notification(&caller.actor).await?;
    Ok(StatusCode::ACCEPTED)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeliveriesQuery {
    /// 1–100 (default 20).
    limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryOut {
    id: i64,
    /// deployment.failed, certificate.expiring, test, …
    kind: String,
    subject: String,
    /// email or webhook.
    channel: String,
    /// pending, sent or failed (given up).
    status: String,
    attempts: i64,
    last_error: Option<String>,
    created_at: String,
    sent_at: Option<String>,
}

impl From<Delivery> for DeliveryOut {
    fn from(d: Delivery) -> Self {
        DeliveryOut {
            id: d.id,
            kind: d.kind,
            subject: d.subject,
            channel: d.channel,
            status: d.status,
            attempts: d.attempts,
            last_error: d.last_error,
            created_at: format_time(d.created_at),
            sent_at: d.sent_at.map(format_time),
        }
    }
}

/// The caller's last deliveries, newest first (read scope).
#[utoipa::path(get, path = "/api/v1/notifications/deliveries", tag = "notifications",
    params(DeliveriesQuery), security(("token" = [])),
    responses((status = 200, body = [DeliveryOut]), (status = 401, body = ErrorBody)))]
pub async fn deliveries(
    State(s): State<AppState>,
    caller: Caller,
    Q(q): Q<DeliveriesQuery>,
) -> ApiResult<Json<Vec<DeliveryOut>>> {
    caller.require(Scope::Read)?;
    let list = s
        .pier
        .deliveries(&caller.actor, q.limit.unwrap_or(20))
        .await?;
    Ok(Json(list.into_iter().map(DeliveryOut::from).collect()))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SmtpOut {
    host: String,
    port: u16,
    /// starttls, tls or none.
    security: String,
    username: Option<String>,
    has_password: bool,
    from_address: String,
}

impl From<SmtpView> for SmtpOut {
    fn from(v: SmtpView) -> Self {
        SmtpOut {
            host: v.host,
            port: v.port,
            security: v.security,
            username: v.username,
            has_password: v.has_password,
            from_address: v.from_address,
        }
    }
}

/// The mail server (admin scope); 404 when none is set.
#[utoipa::path(get, path = "/api/v1/settings/smtp", tag = "notifications",
    security(("token" = [])),
    responses((status = 200, body = SmtpOut), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn smtp(State(s): State<AppState>, caller: Caller) -> ApiResult<Json<SmtpOut>> {
    caller.require(Scope::Admin)?;
    let v = s
        .pier
        .smtp_settings(&caller.actor)
        .await?
        .ok_or(pier_core::Error::NotFound)?;
    Ok(Json(v.into()))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SmtpIn {
    host: String,
    port: u16,
    /// starttls (default), tls, or none (a server on this machine only).
    security: Option<String>,
    username: Option<String>,
    /// Absent or empty: keep the saved one.
    password: Option<String>,
    from_address: String,
}

/// Sets the mail server (admin scope).
#[utoipa::path(put, path = "/api/v1/settings/smtp", tag = "notifications",
    request_body = SmtpIn, security(("token" = [])),
    responses((status = 200, body = SmtpOut), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn set_smtp(
    State(s): State<AppState>,
    caller: Caller,
    Body(b): Body<SmtpIn>,
) -> ApiResult<Json<SmtpOut>> {
    caller.require(Scope::Admin)?;
    let input = SmtpInput {
        host: b.host,
        port: b.port.to_string(),
        security: b.security.unwrap_or_else(|| "starttls".into()),
        username: b.username.unwrap_or_default(),
        password: b.password.unwrap_or_default(),
        from_address: b.from_address,
    };
    Ok(Json(s.pier.set_smtp(&caller.actor, input).await?.into()))
}

/// Removes the mail server (admin scope): no e-mail goes out.
#[utoipa::path(delete, path = "/api/v1/settings/smtp", tag = "notifications",
    security(("token" = [])),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn delete_smtp(State(s): State<AppState>, caller: Caller) -> ApiResult<StatusCode> {
    caller.require(Scope::Admin)?;
    s.pier.delete_smtp(&caller.actor).await?;
    Ok(StatusCode::NO_CONTENT)
}
