//! `/api/v1/audit`: the audit log. A person reads the entries they made and those that changed
//! their things; an admin token reads everyone's, filtered.

use axum::{extract::State, routing::get, Json, Router};
use pier_core::{
    audit::{AuditEntry, AuditQuery},
    model::Scope,
    Error,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

#[allow(unused_imports)]
use super::ErrorBody;
use super::{format_time, ApiResult, Body, Caller, Q};
use crate::http::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/audit", get(list))
        .route("/audit/settings", get(settings).put(set_settings))
}

/// `GET /api/v1/audit` filters; every one is optional.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    /// Entries this user made or that changed their things (admins; a person's own id always
    /// works).
    person: Option<i64>,
    /// A whole action (`app.create`) or every action on a kind of object (`app.`).
    action: Option<String>,
    /// The kind of object: account, session, user, token, app, volume, domain, certificate,
    /// registry, backup, settings.
    object: Option<String>,
    /// The object's name, exactly (an app's or domain's name, a user's e-mail).
    name: Option<String>,
    /// From this time on (RFC 3339).
    since: Option<String>,
    /// Before this time (RFC 3339).
    until: Option<String>,
    /// The previous page's `next_before`.
    before: Option<i64>,
    /// 1–200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<i64>,
}

/// One entry: who did what to which object, from where, and how it ended.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntryOut {
    id: i64,
    at: String,
    actor: ActorOut,
    /// The API token the request carried (none for the browser and the command line).
    token_id: Option<i64>,
    /// The client's address as Pier's HAProxy saw it.
    address: Option<String>,
    #[schema(example = "app.create")]
    action: String,
    object: ObjectOut,
    /// The user whose object it is.
    owner_id: Option<i64>,
    /// What changed (never a secret value).
    summary: String,
    /// `ok`, or the error code the request was answered with.
    #[schema(example = "ok")]
    outcome: String,
    /// Why it failed, when it did.
    message: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ActorOut {
    /// None for the command line and for sign-in attempts with an unknown e-mail.
    id: Option<i64>,
    email: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ObjectOut {
    #[schema(example = "app")]
    kind: String,
    name: String,
}

impl From<AuditEntry> for AuditEntryOut {
    fn from(e: AuditEntry) -> Self {
        AuditEntryOut {
            id: e.id,
            at: format_time(e.at),
            actor: ActorOut {
                id: e.actor_id,
                email: e.actor_email,
            },
            token_id: e.token_id,
            address: e.address,
            action: e.action,
            object: ObjectOut {
                kind: e.object_kind,
                name: e.object_name,
            },
            owner_id: e.owner_id,
            summary: e.summary,
            outcome: e.outcome,
            message: e.message,
        }
    }
}

/// A page of entries, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPageOut {
    items: Vec<AuditEntryOut>,
    /// Pass as `before` for the next, older page; absent on the last page.
    next_before: Option<i64>,
}

fn instant(field: &str, v: Option<&str>) -> Result<Option<i64>, Error> {
    let Some(v) = v else { return Ok(None) };
    time::OffsetDateTime::parse(v.trim(), &time::format_description::well_known::Rfc3339)
        .map(|t| Some(t.unix_timestamp()))
        .map_err(|_| Error::field(field, "Give a time in RFC 3339, like 2026-12-01T00:00:00Z."))
}

/// Audit entries, newest first. A token without admin scope (or a member's) reads only the
/// entries its owner made or that changed their things.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(AuditParams),
    security(("token" = [])),
    responses((status = 200, body = AuditPageOut), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn list(
    State(s): State<AppState>,
    caller: Caller,
    Q(p): Q<AuditParams>,
) -> ApiResult<Json<AuditPageOut>> {
    caller.require(Scope::Read)?;
    let everyone = caller.actor.is_admin() && caller.scope == Scope::Admin;
    let person = match p.person {
        Some(id) if !everyone && id != caller.actor.user_id => return Err(Error::Forbidden.into()),
        None if !everyone => Some(caller.actor.user_id),
        other => other,
    };
    let q = AuditQuery {
        person,
        action: p.action.map(|a| a.trim().to_owned()),
        object_kind: p.object.map(|o| o.trim().to_owned()),
        object_name: p.name.map(|n| n.trim().to_owned()),
        since: instant("since", p.since.as_deref())?,
        until: instant("until", p.until.as_deref())?,
        before: p.before,
        limit: p.limit.unwrap_or(50),
    };
    let page = s.pier.audit_log(&caller.actor, q).await?;
    Ok(Json(AuditPageOut {
        items: page.entries.into_iter().map(Into::into).collect(),
        next_before: page.next_before,
    }))
}

/// How long the log keeps entries.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditSettings {
    /// 7–3650 days (default 365).
    retention_days: i64,
}

/// The log's retention (admin scope).
#[utoipa::path(get, path = "/api/v1/audit/settings", tag = "audit",
    security(("token" = [])),
    responses((status = 200, body = AuditSettings), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)))]
pub async fn settings(State(s): State<AppState>, caller: Caller) -> ApiResult<Json<AuditSettings>> {
    caller.require(Scope::Admin)?;
    let retention_days = s.pier.audit_retention_days(&caller.actor).await?;
    Ok(Json(AuditSettings { retention_days }))
}

/// Sets the log's retention (admin scope); older entries go at the next hourly sweep.
#[utoipa::path(put, path = "/api/v1/audit/settings", tag = "audit", request_body = AuditSettings,
    security(("token" = [])),
    responses((status = 200, body = AuditSettings), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn set_settings(
    State(s): State<AppState>,
    caller: Caller,
    Body(b): Body<AuditSettings>,
) -> ApiResult<Json<AuditSettings>> {
    caller.require(Scope::Admin)?;
    let retention_days = s
        .pier
        .set_audit_retention_days(&caller.actor, b.retention_days)
        .await?;
    Ok(Json(AuditSettings { retention_days }))
}
