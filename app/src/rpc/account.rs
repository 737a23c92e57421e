//! Signing in and out, one's own password and sessions, and accepting an invite.
// The forms have one argument per field.
#![allow(clippy::too_many_arguments)]

use leptos::prelude::*;
use serde::{Deserialize, Serialize};
use server_fn::codec::GetUrl;

use crate::error::AppError;

#[cfg(feature = "ssr")]
use super::ssr;
use super::Done;

/// The signed-in user, as the UI needs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Me {
    pub id: i64,
    pub email: String,
    pub is_admin: bool,
    pub max_apps: i64,
    pub max_memory_mb: i64,
    pub max_cpus: String,
    pub max_storage_mb: i64,
    /// Two factors are required and this person has none yet: they may only set one up.
    pub must_enrol: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionInfo {
    pub me: Option<Me>,
    /// Goes into every form as the hidden `csrf_token` field.
    pub csrf: String,
    /// The password was right a moment ago and a second factor is awaited: these.
    pub pending: Option<SecondFactors>,
}

/// The second factors an account can sign in with (a recovery code always works).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecondFactors {
    pub authenticator: bool,
    pub passkey: bool,
}

/// How the password step of signing in ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LoginStep {
    SignedIn,
    /// Ask for a code or a passkey.
    NeedsSecondFactor(SecondFactors),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRow {
    pub handle: String,
    pub created: String,
    pub last_seen: String,
    pub user_agent: String,
    pub ip: String,
    pub current: bool,
}

// ----- session ------------------------------------------------------------------------------

#[server(prefix = "/rpc", endpoint = "session", input = GetUrl)]
pub async fn session_state() -> Result<SessionInfo, AppError> {
    let c = ssr::ctx().await?;
    let actor = c.pier.current_actor(&c.session).await?;
    let must_enrol = match &actor {
        Some(a) => c.pier.must_enrol(a).await?,
        None => false,
    };
    let me = actor.map(|a| Me {
        must_enrol,
        id: a.user_id,
        is_admin: a.is_admin(),
        max_apps: a.quotas.max_apps,
        max_memory_mb: a.quotas.max_memory_mb,
        max_cpus: pier_core::validate::format_cpus(a.quotas.max_cpus_milli),
        max_storage_mb: a.quotas.max_storage_mb,
        email: a.email,
    });
    let csrf = c.pier.csrf_token(&c.session, &c.cookies).await?;
    let pending = match me {
        Some(_) => None,
        None => c
            .pier
            .pending_factors(&c.session)
            .await?
            .map(|f| SecondFactors {
                authenticator: f.authenticator,
                passkey: f.passkey,
            }),
    };
    Ok(SessionInfo { me, csrf, pending })
}

#[server(prefix = "/rpc", endpoint = "login")]
pub async fn login(
    email: String,
    password: String,
    csrf_token: String,
) -> Result<LoginStep, AppError> {
    let c = ssr::form_ctx(csrf_token).await?;
    let step = c
        .pier
        .sign_in(&c.session, &email, &password, &c.client)
        .await?;
    Ok(match step {
        pier_core::service::SignIn::Done(_) => LoginStep::SignedIn,
        pier_core::service::SignIn::NeedsSecondFactor(f) => {
            LoginStep::NeedsSecondFactor(SecondFactors {
                authenticator: f.authenticator,
                passkey: f.passkey,
            })
        }
    })
}

/// The second step of signing in: the authenticator's code or a recovery code.
#[server(prefix = "/rpc", endpoint = "login_code")]
pub async fn login_code(code: String, csrf_token: String) -> Result<(), AppError> {
    let c = ssr::form_ctx(csrf_token).await?;
    c.pier.sign_in_code(&c.session, &code, &c.client).await?;
    Ok(())
}

#[server(prefix = "/rpc", endpoint = "logout")]
pub async fn logout(csrf_token: String) -> Result<(), AppError> {
    let c = ssr::form_ctx(csrf_token).await?;
    c.pier.sign_out(&c.session, &c.client).await?;
    Ok(())
}

// ----- own account --------------------------------------------------------------------------

#[server(prefix = "/rpc", endpoint = "change_password")]
pub async fn change_password(
    current: String,
    new: String,
    confirm: String,
    /// A checked box ("on"): the caller's API tokens are revoked too.
    revoke_tokens: Option<String>,
    csrf_token: String,
) -> Result<String, AppError> {
    let (c, actor) = ssr::form(csrf_token).await?;
    let revoked = c
        .pier
        .change_password(
            &actor,
            &c.session,
            &current,
            &new,
            &confirm,
            revoke_tokens.is_some(),
        )
        .await?;
    Ok(match revoke_tokens {
        Some(_) => format!(
            "Password changed. Your other sessions were signed out and {revoked} API token{} revoked.",
            if revoked == 1 { " was" } else { "s were" }
        ),
        None => "Password changed. Your other sessions were signed out.".into(),
    })
}

#[server(prefix = "/rpc", endpoint = "my_sessions", input = GetUrl)]
pub async fn my_sessions() -> Result<Vec<SessionRow>, AppError> {
    let (c, actor) = ssr::signed_in().await?;
    let rows = c.pier.list_sessions(&actor, &c.session).await?;
    Ok(rows
        .into_iter()
        .map(|s| SessionRow {
            handle: s.handle,
            created: pier_core::format_time(s.created_at),
            last_seen: pier_core::format_time(s.last_seen_at),
            user_agent: s.user_agent.unwrap_or_else(|| "unknown browser".into()),
            ip: s.ip.unwrap_or_else(|| "unknown".into()),
            current: s.current,
        })
        .collect())
}

#[server(prefix = "/rpc", endpoint = "end_session")]
pub async fn end_session(handle: String, csrf_token: String) -> Result<Done, AppError> {
    let (c, actor) = ssr::form(csrf_token).await?;
    c.pier.end_session(&actor, &c.session, &handle).await?;
    Ok(Done {
        message: "Session ended.".into(),
        copy: None,
    })
}

#[server(prefix = "/rpc", endpoint = "end_other_sessions")]
pub async fn end_other_sessions(csrf_token: String) -> Result<Done, AppError> {
    let (c, actor) = ssr::form(csrf_token).await?;
    let n = c.pier.end_other_sessions(&actor, &c.session).await?;
    Ok(Done {
        message: match n {
            0 => "There were no other sessions.".into(),
            1 => "Ended 1 other session.".into(),
            n => format!("Ended {n} other sessions."),
        },
        copy: None,
    })
}

// ----- invites ------------------------------------------------------------------------------

#[server(prefix = "/rpc", endpoint = "invite_info", input = GetUrl)]
pub async fn invite_info(token: String) -> Result<String, AppError> {
    let c = ssr::ctx().await?;
    Ok(c.pier.invite_email(&token).await?)
}

#[server(prefix = "/rpc", endpoint = "accept_invite")]
pub async fn accept_invite(
    token: String,
    password: String,
    confirm: String,
    csrf_token: String,
) -> Result<(), AppError> {
    let c = ssr::form_ctx(csrf_token).await?;
    c.pier
        .accept_invite(&token, &password, &confirm, &c.client)
        .await?;
    Ok(())
}
