//! `/api/v1/registries`: the caller's registry logins, used to pull their private images.
//! Passwords go in and are never shown again (not even sealed).

use axum::{
    extract::{Path, State},
    http::StatusCode,
    routing::{get, put},
    Json, Router,
};
use pier_core::model::{RegistryCredential, Scope};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[allow(unused_imports)]
use super::ErrorBody;
use super::{format_time, ApiResult, Body, Caller};
use crate::http::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/registries", get(list))
        .route("/registries/{registry}", put(set).delete(remove))
}

/// A registry login, without its password.
#[derive(Debug, Serialize, ToSchema)]
pub struct RegistryOut {
    /// `host[:port]`, as in image references.
    #[schema(example = "ghcr.io")]
    registry: String,
    username: String,
    created_at: String,
}

impl From<RegistryCredential> for RegistryOut {
    fn from(c: RegistryCredential) -> Self {
        RegistryOut {
            registry: c.registry,
            username: c.username,
            created_at: format_time(c.created_at),
        }
    }
}

/// The login for a registry. (No `Debug`: it holds a password.)
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegistryLogin {
    username: String,
    /// The password or access token; stored encrypted, never shown.
    password: String,
}

/// The caller's registry logins.
#[utoipa::path(get, path = "/api/v1/registries", tag = "registries",
    operation_id = "list_registries",
    security(("token" = [])),
    responses((status = 200, body = Vec<RegistryOut>), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)))]
pub async fn list(State(s): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<RegistryOut>>> {
    caller.require(Scope::Read)?;
    let all = s.pier.registry_credentials(&caller.actor).await?;
    Ok(Json(all.into_iter().map(RegistryOut::from).collect()))
}

/// Sets (or replaces) the login for a registry; pulls from it use it from the next deployment.
#[utoipa::path(put, path = "/api/v1/registries/{registry}", tag = "registries",
    operation_id = "set_registry", request_body = RegistryLogin,
    params(("registry" = String, Path, description = "The registry's host[:port], like ghcr.io")),
    security(("token" = [])),
    responses((status = 200, body = RegistryOut), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn set(
    State(s): State<AppState>,
    caller: Caller,
    Path(registry): Path<String>,
    Body(b): Body<RegistryLogin>,
) -> ApiResult<Json<RegistryOut>> {
    caller.require(Scope::Write)?;
    let host = s
        .pier
        .set_registry_credential(&caller.actor, &registry, &b.username, &b.password)
        .await?;
    let saved = s
        .pier
        .registry_credentials(&caller.actor)
        .await?
        .into_iter()
        .find(|c| c.registry == host)
        .ok_or(pier_core::Error::NotFound)?;
    Ok(Json(saved.into()))
}

/// Forgets the login for a registry.
#[utoipa::path(delete, path = "/api/v1/registries/{registry}", tag = "registries",
    operation_id = "delete_registry",
    params(("registry" = String, Path, description = "The registry's host[:port]")),
    security(("token" = [])),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn remove(
    State(s): State<AppState>,
    caller: Caller,
    Path(registry): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require(Scope::Write)?;
    s.pier
        .delete_registry_credential(&caller.actor, &registry)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
