//! Server functions: the browser's calls into Pier. Each is a thin wrapper around
//! `pier_core::Pier`, where validation and permission checks live.
//!
//! Reads are `GET`; every state change is a `POST` whose form carries the session's CSRF token
//! (checked by the server's CSRF layer before any of these run).
// The user forms have one argument per field.
#![allow(clippy::too_many_arguments)]

use leptos::prelude::*;
use serde::{Deserialize, Serialize};
use server_fn::codec::GetUrl;

use crate::error::AppError;

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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenRow {
    pub id: i64,
    pub name: String,
    pub prefix: String,
    pub scope: String,
    pub created: String,
    pub expires: Option<String>,
    pub last_used: Option<String>,
}

/// One REST endpoint, for the API reference page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Endpoint {
    pub tag: String,
    pub method: String,
    pub path: String,
    pub summary: String,
    pub statuses: Vec<String>,
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

/// The outcome of an admin action, shown as a flash message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Done {
    pub message: String,
    /// Something to copy: an invite link to hand on, or a token shown only this once.
    pub copy: Option<String>,
}

#[cfg(feature = "ssr")]
pub mod ssr {
    //! What every server function needs: the service, the session, and who is asking.

    use std::net::SocketAddr;

    use axum::extract::ConnectInfo;
    use leptos::prelude::*;
    use pier_core::{model::Actor, service::Client, Pier};
    use tower_sessions::Session;

    use crate::error::AppError;

    /// Panel facts the UI needs, provided as context by the server.
    #[derive(Debug, Clone)]
    pub struct PanelInfo {
        /// `https://panel.example.com` when the panel has a public host name.
        pub public_origin: Option<String>,
        /// The REST API's OpenAPI document, for the API reference page.
        pub api_doc: std::sync::Arc<serde_json::Value>,
    }

    pub struct Ctx {
        pub pier: Pier,
        pub session: Session,
        /// The request's cookie jar (a visitor's CSRF cookie).
        pub cookies: tower_cookies::Cookies,
        pub client: Client,
        pub origin: String,
    }

    impl Ctx {
        /// The signed-in user, with the address their request came from (for the audit log).
        /// Refused while the person still has to set up a required second factor.
        pub async fn actor(&self) -> Result<Actor, AppError> {
            let mut actor = self.pier.require_actor(&self.session).await?;
            actor.origin.address = Some(self.client.ip.clone());
            Ok(actor)
        }

        /// The signed-in user, even one who still has to set up a second factor (for the
        /// calls that set it up).
        pub async fn actor_enrolling(&self) -> Result<Actor, AppError> {
            let mut actor = self.pier.require_actor_enrolling(&self.session).await?;
            actor.origin.address = Some(self.client.ip.clone());
            Ok(actor)
        }
    }

    /// The TCP peer of a request (also under axum's `MockConnectInfo`, which tests use).
    pub fn peer_ip(extensions: &http::Extensions) -> Option<std::net::IpAddr> {
        use axum::extract::connect_info::MockConnectInfo;
        extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
            .or_else(|| {
                extensions
                    .get::<MockConnectInfo<SocketAddr>>()
                    .map(|c| c.0.ip())
            })
    }

    /// Whether the request came through Pier's own HAProxy, the only party whose
    /// `X-Forwarded-*` headers are believed. HAProxy reaches the panel over loopback; anyone
    /// else (a browser talking to the panel directly) may write those headers freely.
    fn from_local_proxy(extensions: &http::Extensions) -> bool {
        peer_ip(extensions).is_some_and(|ip| ip.is_loopback())
    }

    /// The last value of the last `name` header: HAProxy replaces `X-Forwarded-*` with one value
    /// of its own, and were another header line or list entry to slip in front of it (a proxy
    /// that appends instead), the one nearest to the panel is still the one its proxy wrote.
    fn last_forwarded(headers: &http::HeaderMap, name: &str) -> Option<String> {
        let line = headers.get_all(name).iter().next_back()?.to_str().ok()?;
        Some(line.rsplit(',').next()?.trim().to_owned())
    }

    /// The client's address: the TCP peer, or the one Pier's HAProxy gives in `X-Forwarded-For`.
    pub fn client_ip(extensions: &http::Extensions, headers: &http::HeaderMap) -> String {
        let forwarded = from_local_proxy(extensions)
            .then(|| last_forwarded(headers, "x-forwarded-for"))
            .flatten()
            .and_then(|v| v.parse::<std::net::IpAddr>().ok());
        match (forwarded, peer_ip(extensions)) {
            (Some(ip), _) | (None, Some(ip)) => ip.to_string(),
            (None, None) => "unknown".into(),
        }
    }

    /// Whether the browser reached the panel over HTTPS, as Pier's HAProxy says.
    pub fn via_https(extensions: &http::Extensions, headers: &http::HeaderMap) -> bool {
        from_local_proxy(extensions)
            && last_forwarded(headers, "x-forwarded-proto")
                .is_some_and(|v| v.eq_ignore_ascii_case("https"))
    }

    fn internal(what: &str) -> AppError {
        pier_core::Error::internal(what).into()
    }

    pub async fn ctx() -> Result<Ctx, AppError> {
        let pier = use_context::<Pier>().ok_or_else(|| internal("no Pier in context"))?;
        let session = leptos_axum::extract::<Session>()
            .await
            .map_err(|e| internal(&format!("session layer missing: {e}")))?;
        let parts = use_context::<http::request::Parts>()
            .ok_or_else(|| internal("no request parts in context"))?;
        let header = |name: &str| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let ip = client_ip(&parts.extensions, &parts.headers);
        let cookies = parts
            .extensions
            .get::<tower_cookies::Cookies>()
            .cloned()
            .ok_or_else(|| internal("cookie layer missing"))?;
        let info = use_context::<PanelInfo>();
        let origin = info
            .and_then(|i| i.public_origin)
            .or_else(|| header("host").map(|h| format!("http://{h}")))
            .unwrap_or_default();
        Ok(Ctx {
            pier,
            session,
            cookies,
            client: Client {
                ip,
                user_agent: header("user-agent"),
            },
            origin,
        })
    }
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
    // Checked by the server's CSRF layer before this runs; a parameter so that ActionForm sends it.
    let _ = csrf_token;
    let c = ssr::ctx().await?;
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
    // Checked by the server's CSRF layer before this runs; a parameter so that ActionForm sends it.
    let _ = csrf_token;
    let c = ssr::ctx().await?;
    c.pier.sign_in_code(&c.session, &code, &c.client).await?;
    Ok(())
}

#[server(prefix = "/rpc", endpoint = "logout")]
pub async fn logout(csrf_token: String) -> Result<(), AppError> {
    // Checked by the server's CSRF layer before this runs; a parameter so that ActionForm sends it.
    let _ = csrf_token;
    let c = ssr::ctx().await?;
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
    // Checked by the server's CSRF layer before this runs; a parameter so that ActionForm sends it.
    let _ = csrf_token;
    let c = ssr::ctx().await?;
    let actor = c.actor().await?;
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
    let c = ssr::ctx().await?;
    let actor = c.actor().await?;
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
    // Checked by the server's CSRF layer before this runs; a parameter so that ActionForm sends it.
    let _ = csrf_token;
    let c = ssr::ctx().await?;
    let actor = c.actor().await?;
    c.pier.end_session(&actor, &c.session, &handle).await?;
    Ok(Done {
        message: "Session ended.".into(),
        copy: None,
    })
}

#[server(prefix = "/rpc", endpoint = "end_other_sessions")]
pub async fn end_other_sessions(csrf_token: String) -> Result<Done, AppError> {
    // Checked by the server's CSRF layer before this runs; a parameter so that ActionForm sends it.
    let _ = csrf_token;
    let c = ssr::ctx().await?;
    let actor = c.actor().await?;
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
    // Checked by the server's CSRF layer before this runs; a parameter so that ActionForm sends it.
    let _ = csrf_token;
    let c = ssr::ctx().await?;
    c.pier
        .accept_invite(&token, &password, &confirm, &c.client)
        .await?;
    Ok(())
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

/// None when this Pier runs without HAProxy.
#[server(prefix = "/rpc", endpoint = "proxy_status", input = GetUrl)]
pub async fn proxy_status() -> Result<Option<ProxyRow>, AppError> {
    let c = ssr::ctx().await?;
    let actor = c.actor().await?;
    Ok(c.pier.proxy_status(&actor)?.map(|s| ProxyRow {
        running: s.running,
        workers: s.workers,
        routes: s.routes,
        error: s.error,
    }))
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

/// None when the engine does not answer.
#[server(prefix = "/rpc", endpoint = "engine_status", input = GetUrl)]
pub async fn engine_status() -> Result<Option<EngineRow>, AppError> {
    let c = ssr::ctx().await?;
    let actor = c.actor().await?;
    let egress = c.pier.egress_status(&actor)?;
    Ok(c.pier.engine_info(&actor).await?.map(|i| EngineRow {
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
    }))
}

#[server(prefix = "/rpc", endpoint = "list_users", input = GetUrl)]
pub async fn list_users() -> Result<Vec<UserRow>, AppError> {
    let c = ssr::ctx().await?;
    let actor = c.actor().await?;
    let two_factor = c.pier.two_factor_users(&actor).await?;
    Ok(c.pier
        .list_users(&actor)
        .await?
        .into_iter()
        .map(|u| user_row(u, &two_factor))
        .collect())
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
    // Checked by the server's CSRF layer before this runs; a parameter so that ActionForm sends it.
    let _ = csrf_token;
    let c = ssr::ctx().await?;
    let actor = c.actor().await?;
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
            copy: Some(format!("{}/invite/{t}", c.origin)),
        },
        None => Done {
            message: format!("Created {} with the password you chose.", user.email),
            copy: None,
        },
    })
}

#[server(prefix = "/rpc", endpoint = "set_role")]
pub async fn set_role(id: i64, role: String, csrf_token: String) -> Result<Done, AppError> {
    // Checked by the server's CSRF layer before this runs; a parameter so that ActionForm sends it.
    let _ = csrf_token;
    let c = ssr::ctx().await?;
    let actor = c.actor().await?;
    let u = c.pier.set_role(&actor, id, &role).await?;
    Ok(Done {
        message: format!(
            "{} is now {}.",
            u.email,
            if role == "admin" {
                "an admin"
            } else {
                "a member"
            }
        ),
        copy: None,
    })
}

#[server(prefix = "/rpc", endpoint = "set_disabled")]
pub async fn set_disabled(id: i64, disabled: bool, csrf_token: String) -> Result<Done, AppError> {
    // Checked by the server's CSRF layer before this runs; a parameter so that ActionForm sends it.
    let _ = csrf_token;
    let c = ssr::ctx().await?;
    let actor = c.actor().await?;
    let u = c.pier.set_disabled(&actor, id, disabled).await?;
    Ok(Done {
        message: if disabled {
            format!("Disabled {}; their sessions have ended.", u.email)
        } else {
            format!("Enabled {}.", u.email)
        },
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
    // Checked by the server's CSRF layer before this runs; a parameter so that ActionForm sends it.
    let _ = csrf_token;
    let c = ssr::ctx().await?;
    let actor = c.actor().await?;
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
        copy: Some(format!("{}/invite/{token}", c.origin)),
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
    // Checked by the server's CSRF layer before this runs; a parameter so that ActionForm sends it.
    let _ = csrf_token;
    let c = ssr::ctx().await?;
    let actor = c.actor().await?;
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

#[server(prefix = "/rpc", endpoint = "delete_user")]
pub async fn delete_user(id: i64, csrf_token: String) -> Result<Done, AppError> {
    // Checked by the server's CSRF layer before this runs; a parameter so that ActionForm sends it.
    let _ = csrf_token;
    let c = ssr::ctx().await?;
    let actor = c.actor().await?;
    c.pier.delete_user(&actor, id).await?;
    Ok(Done {
        message: "User deleted.".into(),
        copy: None,
    })
}

// ----- API tokens and reference -------------------------------------------------------------

#[server(prefix = "/rpc", endpoint = "my_tokens", input = GetUrl)]
pub async fn my_tokens() -> Result<Vec<TokenRow>, AppError> {
    let c = ssr::ctx().await?;
    let actor = c.actor().await?;
    let fmt = pier_core::format_time;
    Ok(c.pier
        .list_tokens(&actor)
        .await?
        .into_iter()
        .map(|t| TokenRow {
            id: t.id,
            name: t.name,
            prefix: t.prefix,
            scope: t.scope.as_str().into(),
            created: fmt(t.created_at),
            expires: t.expires_at.map(fmt),
            last_used: t.last_used_at.map(fmt),
        })
        .collect())
}

#[server(prefix = "/rpc", endpoint = "create_token")]
pub async fn create_token(
    name: String,
    scope: String,
    expires_in_days: String,
    csrf_token: String,
) -> Result<Done, AppError> {
    // Checked by the server's CSRF layer before this runs; a parameter so that ActionForm sends it.
    let _ = csrf_token;
    let c = ssr::ctx().await?;
    let actor = c.actor().await?;
    let days = match expires_in_days.trim() {
        "" => None,
        d => Some(d.parse::<i64>().map_err(|_| {
            pier_core::Error::field(
                "expires_in_days",
                "Enter a whole number of days, or leave it empty.",
            )
        })?),
    };
    let (token, secret) = c
        .pier
        .create_token(
            &actor,
            pier_core::tokens::Minter::Person,
            &name,
            &scope,
            days,
        )
        .await?;
    Ok(Done {
        message: format!(
            "Created \"{}\" ({}). Copy it now: it is not shown again.",
            token.name,
            token.scope.as_str()
        ),
        copy: Some(secret),
    })
}

#[server(prefix = "/rpc", endpoint = "revoke_token")]
pub async fn revoke_token(id: i64, csrf_token: String) -> Result<Done, AppError> {
    // Checked by the server's CSRF layer before this runs; a parameter so that ActionForm sends it.
    let _ = csrf_token;
    let c = ssr::ctx().await?;
    let actor = c.actor().await?;
    c.pier.revoke_token(&actor, id).await?;
    Ok(Done {
        message: "Token revoked; it stops working at once.".into(),
        copy: None,
    })
}

/// The REST endpoints, read from the OpenAPI document the server generates.
#[server(prefix = "/rpc", endpoint = "api_reference", input = GetUrl)]
pub async fn api_reference() -> Result<Vec<Endpoint>, AppError> {
    let c = ssr::ctx().await?;
    c.actor().await?;
    let doc = use_context::<ssr::PanelInfo>()
        .map(|p| p.api_doc)
        .unwrap_or_default();
    let mut out = Vec::new();
    if let Some(paths) = doc["paths"].as_object() {
        for (path, ops) in paths {
            let Some(ops) = ops.as_object() else { continue };
            for (method, op) in ops {
                let mut statuses: Vec<String> = op["responses"]
                    .as_object()
                    .map(|r| r.keys().cloned().collect())
                    .unwrap_or_default();
                statuses.sort();
                out.push(Endpoint {
                    tag: op["tags"][0].as_str().unwrap_or("other").into(),
                    method: method.to_uppercase(),
                    path: path.clone(),
                    summary: op["summary"].as_str().unwrap_or_default().into(),
                    statuses,
                });
            }
        }
    }
    out.sort_by(|a, b| (&a.tag, &a.path, &a.method).cmp(&(&b.tag, &b.path, &b.method)));
    Ok(out)
}
