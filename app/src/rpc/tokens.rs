//! API tokens and the REST API's reference page.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};
use server_fn::codec::GetUrl;

use crate::error::AppError;

#[cfg(feature = "ssr")]
use super::ssr;
use super::Done;

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

// ----- API tokens and reference -------------------------------------------------------------

#[server(prefix = "/rpc", endpoint = "my_tokens", input = GetUrl)]
pub async fn my_tokens() -> Result<Vec<TokenRow>, AppError> {
    let (c, actor) = ssr::signed_in().await?;
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
    let (c, actor) = ssr::form(csrf_token).await?;
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
    let (c, actor) = ssr::form(csrf_token).await?;
    c.pier.revoke_token(&actor, id).await?;
    Ok(Done {
        message: "Token revoked; it stops working at once.".into(),
        copy: None,
    })
}

/// The REST endpoints, read from the OpenAPI document the server generates.
#[server(prefix = "/rpc", endpoint = "api_reference", input = GetUrl)]
pub async fn api_reference() -> Result<Vec<Endpoint>, AppError> {
    // Read before the first await: the server may render a page twice on its way and drop the
    // first rendering, whose call then runs on without its context. Its answer is still the
    // one the browser hydrates with (the first resource of that page), so it must be the same.
    let panel = use_context::<ssr::PanelInfo>();
    // Signed-in people only.
    ssr::signed_in().await?;
    let doc: serde_json::Value = panel
        .and_then(|p| serde_json::from_str(&p.api_doc).ok())
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
