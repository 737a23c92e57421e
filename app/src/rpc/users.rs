//! The admin's pages: users and their quotas, HAProxy's and the engine's state.
// The forms have one argument per field.
#![allow(clippy::too_many_arguments)]

use leptos::prelude::*;
use serde::{Deserialize, Serialize};
use server_fn::codec::GetUrl;

use crate::error::AppError;

#[cfg(feature = "ssr")]
use super::ssr;
use super::Done;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserRow {
    pub id: i64,
    pub email: String,
    pub is_admin: bool,
    pub disabled: bool,
    pub has_password: bool,
    pub created: String,
    pub last_sign_in: Option<String>,
    pub max_apps: i64,
    pub max_memory_mb: i64,
    pub max_cpus: String,
    pub max_storage_mb: i64,
    pub max_backup_mb: i64,
    /// Signs in with a second factor.
    pub two_factor: bool,
}

#[cfg(feature = "ssr")]
fn user_row(u: pier_core::model::User, two_factor: &[i64]) -> UserRow {
    use pier_core::{format_time, model::Role, validate::format_cpus};
    UserRow {
        id: u.id,
        is_admin: u.role == Role::Admin,
        disabled: u.disabled,
        has_password: u.password_hash.is_some(),
        created: format_time(u.created_at),
        last_sign_in: u.last_sign_in_at.map(format_time),
        max_apps: u.quotas.max_apps,
        max_memory_mb: u.quotas.max_memory_mb,
        max_cpus: format_cpus(u.quotas.max_cpus_milli),
        max_storage_mb: u.quotas.max_storage_mb,
        max_backup_mb: u.quotas.max_backup_mb,
        two_factor: two_factor.contains(&u.id),
        email: u.email,
    }
}

// ----- administration -----------------------------------------------------------------------

/// HAProxy as the admin sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProxyRow {
    pub running: bool,
    pub workers: Vec<u32>,
    pub routes: usize,
    pub error: Option<String>,
}

/// The container engine's isolation, as the admin sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EngineRow {
    pub version: String,
    pub user_namespaces: bool,
    pub root_uid: u32,
    /// None before the engine first checked the egress rules.
    pub egress_enforced: Option<bool>,
    pub egress_block_private: bool,
    pub egress_problem: Option<String>,
    /// The storage driver (and file system) and the bound on writable layers (MiB), if any.
    pub storage: String,
    pub writable_layer_mb: Option<i64>,
    /// Published ports through docker-proxy (None: the engine is not on this host).
    pub userland_proxy: Option<bool>,
}

/// HAProxy's and the engine's state, the banners at the top of the admin page (one call, one
/// resource for both).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdminStatus {
    /// None when this Pier runs without HAProxy.
    pub proxy: Option<ProxyRow>,
    /// None when the engine does not answer.
    pub engine: Option<EngineRow>,
}

#[server(prefix = "/rpc", endpoint = "panel_status", input = GetUrl)]
pub async fn panel_status() -> Result<AdminStatus, AppError> {
    let (c, actor) = ssr::signed_in().await?;
    let proxy = c.pier.proxy_status(&actor)?.map(|s| ProxyRow {
        running: s.running,
        workers: s.workers,
        routes: s.routes,
        error: s.error,
    });
    let egress = c.pier.egress_status(&actor)?;
    let engine = c.pier.engine_info(&actor).await?.map(|i| EngineRow {
        version: i.version,
        user_namespaces: i.user_namespaces,
        root_uid: i.root_uid,
        egress_enforced: egress.as_ref().map(|e| e.enforced),
        egress_block_private: egress.as_ref().is_some_and(|e| e.policy.block_private),
        egress_problem: egress.and_then(|e| e.problem),
        storage: format!("{} on {}", i.storage_driver, i.backing_fs),
        writable_layer_mb: (i.layer_limit && c.pier.settings().engine.writable_layer_mb > 0)
            .then_some(c.pier.settings().engine.writable_layer_mb),
        userland_proxy: i.userland_proxy,
    });
    Ok(AdminStatus { proxy, engine })
}

/// The users page's table, and the rule everyone signs in under.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsersView {
    pub users: Vec<UserRow>,
    /// Everyone must sign in with two factors.
    pub two_factor_required: bool,
}

#[server(prefix = "/rpc", endpoint = "list_users", input = GetUrl)]
pub async fn list_users() -> Result<UsersView, AppError> {
    let (c, actor) = ssr::signed_in().await?;
    let two_factor = c.pier.two_factor_users(&actor).await?;
    let users = c
        .pier
        .list_users(&actor)
        .await?
        .into_iter()
        .map(|u| user_row(u, &two_factor))
        .collect();
    Ok(UsersView {
        users,
        two_factor_required: c.pier.two_factor_policy(&actor).await?,
    })
}

#[server(prefix = "/rpc", endpoint = "create_user")]
pub async fn create_user(
    email: String,
    role: String,
    password: String,
    max_apps: String,
    max_memory_mb: String,
    max_cpus: String,
    #[server(default)] max_storage_mb: String,
    #[server(default)] max_backup_mb: String,
    csrf_token: String,
) -> Result<Done, AppError> {
    let (c, actor) = ssr::form(csrf_token).await?;
    let (user, token) = c
        .pier
        .create_user(
            &actor,
            pier_core::users::NewUser {
                email,
                role,
                password,
                max_apps,
                max_memory_mb,
                max_cpus,
                max_storage_mb,
                max_backup_mb,
            },
        )
        .await?;
    Ok(match token {
        Some(t) => Done {
            message: format!(
                "Created {}. Send them this link to choose a password (valid 48 hours):",
                user.email
            ),
            copy: Some(pier_core::accounts::invite_url(&c.origin, &t)),
        },
        None => Done {
            message: format!("Created {} with the password you chose.", user.email),
            copy: None,
        },
    })
}

/// The one-button changes to a person (one server function, so the admin page carries one
/// action's code for them rather than four): `action` is `make-admin`, `make-member`,
/// `disable`, `enable`, `reset-two-factor` (they lost their authenticator) or `delete`.
#[server(prefix = "/rpc", endpoint = "user_action")]
pub async fn user_action(id: i64, action: String, csrf_token: String) -> Result<Done, AppError> {
    let (c, actor) = ssr::form(csrf_token).await?;
    let p = &c.pier;
    let message = match action.as_str() {
        "make-admin" | "make-member" => {
            let admin = action == "make-admin";
            let u = p
                .set_role(&actor, id, if admin { "admin" } else { "member" })
                .await?;
            let role = if admin { "an admin" } else { "a member" };
            format!("{} is now {role}.", u.email)
        }
        "disable" => {
            let u = p.set_disabled(&actor, id, true).await?;
            format!("Disabled {}; their sessions have ended.", u.email)
        }
        "enable" => format!(
            "Enabled {}.",
            p.set_disabled(&actor, id, false).await?.email
        ),
        "reset-two-factor" => {
            p.reset_two_factor(&actor, id).await?;
            let u = p.user(&actor, id).await?;
            let then = if p.two_factor_required().await? {
                "they set it up again at their next sign-in"
            } else {
                "their password alone signs them in until they set it up again"
            };
            format!(
                "Removed {}'s authenticator, passkeys and recovery codes; {then}.",
                u.email
            )
        }
        "delete" => {
            p.delete_user(&actor, id).await?;
            "User deleted.".into()
        }
        _ => {
            return Err(pier_core::Error::field(
                "action",
                "Choose make-admin, make-member, disable, enable, reset-two-factor or delete.",
            )
            .into())
        }
    };
    Ok(Done {
        message,
        copy: None,
    })
}

#[server(prefix = "/rpc", endpoint = "reset_password")]
pub async fn reset_password(
    id: i64,
    /// A checked box ("on"): the user's API tokens are revoked too.
    revoke_tokens: Option<String>,
    csrf_token: String,
) -> Result<Done, AppError> {
    let (c, actor) = ssr::form(csrf_token).await?;
    let (u, token, revoked) = c
        .pier
        .reset_password(&actor, id, revoke_tokens.is_some())
        .await?;
    let tokens = match revoke_tokens {
        Some(_) => format!(
            " Locked out until then: their sessions ended, {revoked} API token(s) of theirs were revoked and the old password no longer works."
        ),
        None => String::new(),
    };
    Ok(Done {
        message: format!(
            "Send {} this link to choose a new password (valid 48 hours):{tokens}",
            u.email
        ),
        copy: Some(pier_core::accounts::invite_url(&c.origin, &token)),
    })
}

#[server(prefix = "/rpc", endpoint = "set_quotas")]
pub async fn set_quotas(
    id: i64,
    max_apps: String,
    max_memory_mb: String,
    max_cpus: String,
    #[server(default)] max_storage_mb: String,
    #[server(default)] max_backup_mb: String,
    csrf_token: String,
) -> Result<Done, AppError> {
    let (c, actor) = ssr::form(csrf_token).await?;
    let u = c
        .pier
        .set_quotas(
            &actor,
            id,
            [
                &max_apps,
                &max_memory_mb,
                &max_cpus,
                &max_storage_mb,
                &max_backup_mb,
            ],
        )
        .await?;
    Ok(Done {
        message: format!("Saved the quotas of {}.", u.email),
        copy: None,
    })
}
