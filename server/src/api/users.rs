//! `/api/v1/users`: user administration, for admins with an admin-scoped token.

use axum::{
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    routing::get,
    Json, Router,
};
use pier_core::{
    model::{Role, Scope, User},
    users::{NewUser, UserPatch},
    validate::format_cpus,
};
use serde::{Deserialize, Serialize};

use utoipa::ToSchema;

#[allow(unused_imports)]
use super::ErrorBody;
use super::{format_time, ApiResult, Body, Caller, Page, PageQuery, Q};
use crate::http::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/users", get(list).post(create))
        .route("/users/{id}", axum::routing::patch(update).delete(remove))
        .route(
            "/users/{id}/two-factor",
            axum::routing::delete(reset_two_factor),
        )
        .route(
            "/settings/two-factor",
            get(two_factor_policy).put(set_two_factor_policy),
        )
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Quotas {
    max_apps: i64,
    max_memory_mb: i64,
    /// CPUs as a decimal string ("1.5").
    max_cpus: String,
    /// What the user's volumes may take together.
    max_storage_mb: i64,
    /// What the snapshots of the user's apps may take in the backup repository.
    max_backup_mb: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    id: i64,
    email: String,
    /// admin or member.
    #[schema(value_type = String, example = "member")]
    role: Role,
    disabled: bool,
    has_password: bool,
    created_at: String,
    last_sign_in_at: Option<String>,
    /// Signs in with a second factor (an authenticator app).
    two_factor: bool,
    quotas: Quotas,
}

impl UserView {
    fn new(u: User, two_factor: bool) -> Self {
        UserView {
            two_factor,
            id: u.id,
            role: u.role,
            disabled: u.disabled,
            has_password: u.password_hash.is_some(),
            created_at: format_time(u.created_at),
            last_sign_in_at: u.last_sign_in_at.map(format_time),
            quotas: Quotas {
                max_apps: u.quotas.max_apps,
                max_memory_mb: u.quotas.max_memory_mb,
                max_cpus: format_cpus(u.quotas.max_cpus_milli),
                max_storage_mb: u.quotas.max_storage_mb,
                max_backup_mb: u.quotas.max_backup_mb,
            },
            email: u.email,
        }
    }
}

fn id_of(raw: &str) -> ApiResult<i64> {
    Ok(raw.parse().map_err(|_| pier_core::Error::NotFound)?)
}

/// Every user (admin scope).
#[utoipa::path(get, path = "/api/v1/users", tag = "users", params(PageQuery),
    security(("token" = [])),
    responses((status = 200, body = Page<UserView>), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn list(
    State(s): State<AppState>,
    caller: Caller,
    Q(q): Q<PageQuery>,
) -> ApiResult<Json<Page<UserView>>> {
    caller.require(Scope::Admin)?;
    let all = s.pier.list_users(&caller.actor).await?;
    let two_factor = s.pier.two_factor_users(&caller.actor).await?;
    Ok(Json(
        q.paginate(
            all.into_iter()
                .map(|u| {
                    let on = two_factor.contains(&u.id);
                    UserView::new(u, on)
                })
                .collect(),
        )?,
    ))
}

/// A number of CPUs given as a JSON number (1.5) or string ("1.5").
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Cpus {
    Number(f64),
    Text(String),
}

impl Cpus {
    fn text(&self) -> String {
        match self {
            Cpus::Number(n) => n.to_string(),
            Cpus::Text(s) => s.clone(),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUserBody {
    email: String,
    /// Without one, the response carries an invite link (valid 48 hours).
    password: Option<String>,
    /// admin or member.
    #[schema(example = "member")]
    role: String,
    max_apps: Option<i64>,
    max_memory_mb: Option<i64>,
    max_cpus: Option<Cpus>,
    max_storage_mb: Option<i64>,
    max_backup_mb: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedUser {
    user: UserView,
    invite_url: Option<String>,
}

/// Creates a user (admin scope); without a password the response has an invite link.
#[utoipa::path(post, path = "/api/v1/users", tag = "users", request_body = NewUserBody,
    security(("token" = [])),
    responses((status = 201, body = CreatedUser), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn create(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Body(b): Body<NewUserBody>,
) -> ApiResult<(StatusCode, Json<CreatedUser>)> {
    caller.require(Scope::Admin)?;
    let (user, token) = s
        .pier
        .create_user(
            &caller.actor,
            NewUser {
                email: b.email,
                role: b.role,
                password: b.password.unwrap_or_default(),
                max_apps: b.max_apps.map(|n| n.to_string()).unwrap_or_default(),
                max_memory_mb: b.max_memory_mb.map(|n| n.to_string()).unwrap_or_default(),
                max_cpus: b.max_cpus.map(|c| c.text()).unwrap_or_default(),
                max_storage_mb: b.max_storage_mb.map(|n| n.to_string()).unwrap_or_default(),
                max_backup_mb: b.max_backup_mb.map(|n| n.to_string()).unwrap_or_default(),
            },
        )
        .await?;
    let origin = super::panel_origin(&s, &headers);
    Ok((
        StatusCode::CREATED,
        Json(CreatedUser {
            user: UserView::new(user, false),
            invite_url: token.map(|t| pier_core::accounts::invite_url(&origin, &t)),
        }),
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchUser {
    role: Option<String>,
    disabled: Option<bool>,
    max_apps: Option<i64>,
    max_memory_mb: Option<i64>,
    max_cpus: Option<Cpus>,
    max_storage_mb: Option<i64>,
    /// What the snapshots of the user's apps may take in the backup repository.
    max_backup_mb: Option<i64>,
}

/// Changes a user's role, status or quotas (admin scope); all or nothing on invalid input.
#[utoipa::path(patch, path = "/api/v1/users/{id}", tag = "users", request_body = PatchUser,
    params(("id" = String, Path, description = "The user's id")),
    security(("token" = [])),
    responses((status = 200, body = UserView), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn update(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(p): Body<PatchUser>,
) -> ApiResult<Json<UserView>> {
    caller.require(Scope::Admin)?;
    let id = id_of(&id)?;
    let actor = &caller.actor;
    // Everything is checked before anything changes; then one transaction applies it.
    let current = s.pier.user(actor, id).await?;
    let role = match &p.role {
        Some(r) => Some(
            Role::parse(r)
                .ok_or_else(|| pier_core::Error::field("role", "Choose admin or member."))?,
        ),
        None => None,
    };
    let quotas_given = p.max_apps.is_some()
        || p.max_memory_mb.is_some()
        || p.max_cpus.is_some()
        || p.max_storage_mb.is_some()
        || p.max_backup_mb.is_some();
    let quotas = match quotas_given {
        true => Some(pier_core::validate::quotas(
            &p.max_apps.unwrap_or(current.quotas.max_apps).to_string(),
            &p.max_memory_mb
                .unwrap_or(current.quotas.max_memory_mb)
                .to_string(),
            &p.max_cpus
                .map(|c| c.text())
                .unwrap_or_else(|| format_cpus(current.quotas.max_cpus_milli)),
            &p.max_storage_mb
                .unwrap_or(current.quotas.max_storage_mb)
                .to_string(),
            &p.max_backup_mb
                .unwrap_or(current.quotas.max_backup_mb)
                .to_string(),
            current.quotas,
        )?),
        false => None,
    };
    let patch = UserPatch {
        role,
        disabled: p.disabled,
        quotas,
    };
    let user = s.pier.patch_user(actor, id, patch).await?;
    let on = s.pier.two_factor_users(actor).await?.contains(&user.id);
    Ok(Json(UserView::new(user, on)))
}

/// Deletes a user (admin scope); never yourself or the last admin.
#[utoipa::path(delete, path = "/api/v1/users/{id}", tag = "users",
    params(("id" = String, Path, description = "The user's id")),
    security(("token" = [])),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn remove(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require(Scope::Admin)?;
    s.pier.delete_user(&caller.actor, id_of(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Removes a person's authenticator and recovery codes (admin scope), when they lost their
/// phone: their password alone signs them in until they set it up again.
#[utoipa::path(delete, path = "/api/v1/users/{id}/two-factor", tag = "users",
    params(("id" = String, Path, description = "The user's id")),
    security(("token" = [])),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn reset_two_factor(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require(Scope::Admin)?;
    s.pier.reset_two_factor(&caller.actor, id_of(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TwoFactorPolicy {
    /// Everyone must sign in with a second factor; people without one set it up first.
    required: bool,
}

/// Whether two-factor sign-in is required for everyone (admin scope).
#[utoipa::path(get, path = "/api/v1/settings/two-factor", tag = "users",
    security(("token" = [])),
    responses((status = 200, body = TwoFactorPolicy), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)))]
pub async fn two_factor_policy(
    State(s): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<TwoFactorPolicy>> {
    caller.require(Scope::Admin)?;
    let required = s.pier.two_factor_policy(&caller.actor).await?;
    Ok(Json(TwoFactorPolicy { required }))
}

/// Requires two-factor sign-in for everyone, or makes it optional (admin scope). Requiring it
/// needs the caller's own account to have a second factor (409 otherwise).
#[utoipa::path(put, path = "/api/v1/settings/two-factor", tag = "users",
    request_body = TwoFactorPolicy, security(("token" = [])),
    responses((status = 200, body = TwoFactorPolicy), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn set_two_factor_policy(
    State(s): State<AppState>,
    caller: Caller,
    Body(b): Body<TwoFactorPolicy>,
) -> ApiResult<Json<TwoFactorPolicy>> {
    caller.require(Scope::Admin)?;
    let required = s
        .pier
        .set_two_factor_required(&caller.actor, b.required)
        .await?;
    Ok(Json(TwoFactorPolicy { required }))
}
