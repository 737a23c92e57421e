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
    /// The REST API's OpenAPI document as JSON text, for the API reference page and
    /// `/api/v1/openapi.json`. Kept as text: the document as a tree of values held about 2 MiB
    /// of the panel's heap for the rare request that reads it.
    pub api_doc: std::sync::Arc<str>,
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
    // Every context is read before the first await: the server may render a page twice on its
    // way and drop the first rendering, whose calls then run on without their context (see
    // `tokens::api_reference`).
    let pier = use_context::<Pier>().ok_or_else(|| internal("no Pier in context"))?;
    let parts = use_context::<http::request::Parts>()
        .ok_or_else(|| internal("no request parts in context"))?;
    let info = use_context::<PanelInfo>();
    let session = leptos_axum::extract::<Session>()
        .await
        .map_err(|e| internal(&format!("session layer missing: {e}")))?;
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

/// The context and the signed-in person, for a server function that reads.
pub async fn signed_in() -> Result<(Ctx, Actor), AppError> {
    let c = ctx().await?;
    let actor = c.actor().await?;
    Ok((c, actor))
}

/// The context and the signed-in person, for a form. Its CSRF token has been checked by the
/// server's CSRF layer before any server function runs; as a parameter of each form's function
/// it also makes the function's own parsing refuse a form without one. Taken (and dropped) here.
pub async fn form(csrf_token: String) -> Result<(Ctx, Actor), AppError> {
    drop(csrf_token);
    signed_in().await
}

/// As [`form`], for the forms that set up a second factor: also a person who still has to.
pub async fn form_enrolling(csrf_token: String) -> Result<(Ctx, Actor), AppError> {
    drop(csrf_token);
    let c = ctx().await?;
    let actor = c.actor_enrolling().await?;
    Ok((c, actor))
}

/// As [`form`], for the forms of someone not signed in (signing in, accepting an invite).
pub async fn form_ctx(csrf_token: String) -> Result<Ctx, AppError> {
    drop(csrf_token);
    ctx().await
}
