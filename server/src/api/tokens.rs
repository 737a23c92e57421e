//! `/api/v1/tokens`: the caller's own personal access tokens.

use axum::{
    extract::{Path, State},
    http::StatusCode,
    routing::{delete, get},
    Json, Router,
};
use pier_core::{
    model::{ApiToken, Scope},
    tokens::Minter,
};
use serde::{Deserialize, Serialize};

use utoipa::ToSchema;

#[allow(unused_imports)]
use super::ErrorBody;
use super::{format_time, ApiResult, Body, Caller, Page, PageQuery, Q};
use crate::http::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/tokens", get(list).post(create))
        .route("/tokens/{id}", delete(revoke))
}

/// A personal access token, without its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenView {
    id: i64,
    name: String,
    /// The first characters of the token, to tell it apart.
    prefix: String,
    /// read, write or admin.
    #[schema(value_type = String, example = "write")]
    scope: Scope,
    created_at: String,
    expires_at: Option<String>,
    last_used_at: Option<String>,
}

impl From<ApiToken> for TokenView {
    fn from(t: ApiToken) -> Self {
        TokenView {
            id: t.id,
            name: t.name,
            prefix: t.prefix,
            scope: t.scope,
            created_at: format_time(t.created_at),
            expires_at: t.expires_at.map(format_time),
            last_used_at: t.last_used_at.map(format_time),
        }
    }
}

/// The caller's tokens.
#[utoipa::path(get, path = "/api/v1/tokens", tag = "tokens", params(PageQuery),
    security(("token" = [])),
    responses((status = 200, body = Page<TokenView>), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn list(
    State(s): State<AppState>,
    caller: Caller,
    Q(q): Q<PageQuery>,
) -> ApiResult<Json<Page<TokenView>>> {
    caller.require(Scope::Read)?;
    let all = s.pier.list_tokens(&caller.actor).await?;
    Ok(Json(q.paginate(
        all.into_iter().map(TokenView::from).collect(),
    )?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// 1–64 characters, e.g. "deploy script".
    name: String,
    /// read, write or admin (admin only for admins, and not above the calling token's own).
    #[schema(example = "write")]
    scope: String,
    /// 1–3650; none means it never expires. Not later than the calling token's own expiry (an
    /// expiring token cannot create one that never expires).
    expires_in_days: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Created {
    token: TokenView,
    /// Shown once: store it now.
    secret: String,
}

/// Creates a token; its secret is in this response only.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "tokens", request_body = NewToken,
    security(("token" = [])),
    responses((status = 201, body = Created), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(
    State(s): State<AppState>,
    caller: Caller,
    Body(new): Body<NewToken>,
) -> ApiResult<(StatusCode, Json<Created>)> {
    caller.require(Scope::Write)?;
    // A token cannot mint one stronger than itself.
    if pier_core::model::Scope::parse(new.scope.trim()).is_some_and(|want| want > caller.scope) {
        return Err(pier_core::Error::Forbidden.into());
    }
    let (token, secret) = s
        .pier
        .create_token(
            &caller.actor,
            Minter::Token {
                expires_at: caller.expires_at,
            },
            &new.name,
            &new.scope,
            new.expires_in_days,
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(Created {
            token: token.into(),
            secret,
        }),
    ))
}

/// Revokes one of the caller's tokens, effective at the next request.
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "tokens",
    params(("id" = String, Path, description = "The token's id")),
    security(("token" = [])),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn revoke(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require(Scope::Write)?;
    let id: i64 = id.parse().map_err(|_| pier_core::Error::NotFound)?;
    s.pier.revoke_token(&caller.actor, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
