//! Server functions for two-factor sign-in: a person's own authenticator and recovery codes, and
//! an admin's reset and policy. The rules live in `pier_core::two_factor`.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};
use server_fn::codec::GetUrl;

#[cfg(feature = "ssr")]
use super::ssr;
use crate::{error::AppError, rpc::Done};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TwoFactorView {
    /// Any second factor.
    pub enabled: bool,
    /// An authenticator app, since when.
    pub authenticator: bool,
    pub since: Option<String>,
    pub passkeys: Vec<PasskeyRow>,
    pub recovery_codes_left: i64,
    pub required: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PasskeyRow {
    pub id: i64,
    pub name: String,
    pub created: String,
    pub last_used: Option<String>,
}

/// What the setup step shows: the QR code and the secret to type by hand.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuthenticatorSetup {
    /// An SVG drawn by the server from the otpauth URI (no user input in it).
    pub qr_svg: String,
    pub uri: String,
    pub secret: String,
}

#[server(prefix = "/rpc", endpoint = "two_factor", input = GetUrl)]
pub async fn two_factor() -> Result<TwoFactorView, AppError> {
    let c = ssr::ctx().await?;
    let actor = c.actor_enrolling().await?;
    let s = c.pier.two_factor_status(&actor).await?;
    let passkeys = c
        .pier
        .passkeys(&actor)
        .await?
        .into_iter()
        .map(|p| PasskeyRow {
            id: p.id,
            name: p.name,
            created: pier_core::format_time(p.created_at),
            last_used: p.last_used_at.map(pier_core::format_time),
        })
        .collect();
    Ok(TwoFactorView {
        enabled: s.enabled,
        authenticator: s.authenticator,
        passkeys,
        since: s.since.map(pier_core::format_time),
        recovery_codes_left: s.recovery_codes_left,
        required: s.required,
    })
}

#[server(prefix = "/rpc", endpoint = "begin_two_factor")]
pub async fn begin_two_factor(csrf_token: String) -> Result<AuthenticatorSetup, AppError> {
    let (c, actor) = ssr::form_enrolling(csrf_token).await?;
    let s = c.pier.begin_totp(&actor).await?;
    Ok(AuthenticatorSetup {
        qr_svg: s.qr_svg,
        uri: s.uri,
        secret: s.secret,
    })
}

/// Turns it on with the first code; the recovery codes come back, shown once.
#[server(prefix = "/rpc", endpoint = "confirm_two_factor")]
pub async fn confirm_two_factor(code: String, csrf_token: String) -> Result<Vec<String>, AppError> {
    let (c, actor) = ssr::form_enrolling(csrf_token).await?;
    Ok(c.pier.confirm_totp(&actor, &code, &c.client).await?)
}

#[server(prefix = "/rpc", endpoint = "new_recovery_codes")]
pub async fn new_recovery_codes(code: String, csrf_token: String) -> Result<Vec<String>, AppError> {
    let (c, actor) = ssr::form_enrolling(csrf_token).await?;
    Ok(c.pier.new_recovery_codes(&actor, &code, &c.client).await?)
}

#[server(prefix = "/rpc", endpoint = "disable_two_factor")]
pub async fn disable_two_factor(code: String, csrf_token: String) -> Result<Done, AppError> {
    let (c, actor) = ssr::form_enrolling(csrf_token).await?;
    c.pier.disable_two_factor(&actor, &code, &c.client).await?;
    let on = c.pier.two_factor_status(&actor).await?.enabled;
    Ok(Done {
        message: if on {
            "The authenticator app is removed; your passkeys still sign you in.".into()
        } else {
            "Two-factor sign-in is off: your password alone signs you in.".into()
        },
        copy: None,
    })
}

#[server(prefix = "/rpc", endpoint = "set_two_factor_policy")]
pub async fn set_two_factor_policy(
    /// A checked box ("on"): required for everyone.
    required: Option<String>,
    csrf_token: String,
) -> Result<Done, AppError> {
    let (c, actor) = ssr::form(csrf_token).await?;
    let on = c
        .pier
        .set_two_factor_required(&actor, required.is_some())
        .await?;
    Ok(Done {
        message: if on {
            "Two-factor sign-in is required: people without it set it up at their next page.".into()
        } else {
            "Two-factor sign-in is optional.".into()
        },
        copy: None,
    })
}

// ----- passkeys -----------------------------------------------------------------------------

/// The options for `navigator.credentials.create()`, as JSON text.
#[server(prefix = "/rpc", endpoint = "begin_passkey")]
pub async fn begin_passkey(name: String, csrf_token: String) -> Result<String, AppError> {
    let (c, actor) = ssr::form_enrolling(csrf_token).await?;
    let options = c
        .pier
        .begin_passkey(&actor, &c.session, &c.origin, &name)
        .await?;
    Ok(options.to_string())
}

/// Keeps the passkey the browser made; the account's first second factor brings its recovery
/// codes.
#[server(prefix = "/rpc", endpoint = "finish_passkey")]
pub async fn finish_passkey(
    credential: String,
    csrf_token: String,
) -> Result<Option<Vec<String>>, AppError> {
    let (c, actor) = ssr::form_enrolling(csrf_token).await?;
    Ok(c.pier
        .finish_passkey(&actor, &c.session, &c.origin, &credential)
        .await?)
}

#[server(prefix = "/rpc", endpoint = "remove_passkey")]
pub async fn remove_passkey(id: i64, csrf_token: String) -> Result<Done, AppError> {
    let (c, actor) = ssr::form_enrolling(csrf_token).await?;
    c.pier.remove_passkey(&actor, id).await?;
    Ok(Done {
        message: "The passkey is removed.".into(),
        copy: None,
    })
}

/// The options for `navigator.credentials.get()`: for the account whose password was just
/// given, or for `email` (signing in without the password).
#[server(prefix = "/rpc", endpoint = "begin_passkey_login")]
pub async fn begin_passkey_login(email: String, csrf_token: String) -> Result<String, AppError> {
    let c = ssr::form_ctx(csrf_token).await?;
    let options = c
        .pier
        .begin_passkey_sign_in(&c.session, &c.origin, &email, &c.client)
        .await?;
    Ok(options.to_string())
}

#[server(prefix = "/rpc", endpoint = "finish_passkey_login")]
pub async fn finish_passkey_login(credential: String, csrf_token: String) -> Result<(), AppError> {
    let c = ssr::form_ctx(csrf_token).await?;
    c.pier
        .finish_passkey_sign_in(&c.session, &c.origin, &credential, &c.client)
        .await?;
    Ok(())
}
