//! Server functions for notifications: a person's channels, their last deliveries and a test;
//! the operator's mail server. The rules live in `pier_core::notify`.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};
use server_fn::codec::GetUrl;

#[cfg(feature = "ssr")]
use super::ssr;
use crate::{error::AppError, rpc::Done};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryRow {
    pub id: i64,
    pub kind: String,
    pub subject: String,
    pub channel: String,
    pub status: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub created: String,
    pub sent: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotifyView {
    pub email: bool,
    pub email_available: bool,
    pub address: String,
    pub webhook_url: Option<String>,
    pub webhook_secret: Option<String>,
    pub deliveries: Vec<DeliveryRow>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SmtpRow {
    pub host: String,
    pub port: u16,
    pub security: String,
    pub username: Option<String>,
    pub has_password: bool,
    pub from_address: String,
}

#[server(prefix = "/rpc", endpoint = "notifications", input = GetUrl)]
pub async fn notifications() -> Result<NotifyView, AppError> {
    let (c, actor) = ssr::signed_in().await?;
    let ch = c.pier.channels(&actor).await?;
    let deliveries = c
        .pier
        .deliveries(&actor, 20)
        .await?
        .into_iter()
        .map(|d| DeliveryRow {
            id: d.id,
            kind: d.kind,
            subject: d.subject,
            channel: d.channel,
            status: d.status,
            attempts: d.attempts,
            last_error: d.last_error,
            created: pier_core::format_time(d.created_at),
            sent: d.sent_at.map(pier_core::format_time),
        })
        .collect();
    Ok(NotifyView {
        email: ch.email,
        email_available: ch.email_available,
        address: actor.email,
        webhook_url: ch.webhook_url,
        webhook_secret: ch.webhook_secret,
        deliveries,
    })
}

#[server(prefix = "/rpc", endpoint = "set_notifications")]
pub async fn set_notifications(
    /// A checked box ("on").
    email: Option<String>,
    webhook_url: String,
    /// A checked box ("on"): a new signing secret.
    new_secret: Option<String>,
    csrf_token: String,
) -> Result<Done, AppError> {
    let (c, actor) = ssr::form(csrf_token).await?;
    c.pier
        .set_channels(&actor, email.is_some(), &webhook_url, new_secret.is_some())
        .await?;
    Ok(Done {
        message: "Saved.".into(),
        copy: None,
    })
}

#[server(prefix = "/rpc", endpoint = "send_test_notification")]
pub async fn send_test_notification(csrf_token: String) -> Result<Done, AppError> {
    let (c, actor) = ssr::form(csrf_token).await?;
    c.pier.send_test_notification(&actor).await?;
    Ok(Done {
        message: "A test is on its way; its delivery shows below in a moment.".into(),
        copy: None,
    })
}

#[server(prefix = "/rpc", endpoint = "smtp_settings", input = GetUrl)]
pub async fn smtp_settings() -> Result<Option<SmtpRow>, AppError> {
    let (c, actor) = ssr::signed_in().await?;
    Ok(c.pier.smtp_settings(&actor).await?.map(|s| SmtpRow {
        host: s.host,
        port: s.port,
        security: s.security,
        username: s.username,
        has_password: s.has_password,
        from_address: s.from_address,
    }))
}

#[server(prefix = "/rpc", endpoint = "set_smtp")]
pub async fn set_smtp(
    host: String,
    port: String,
    security: String,
    username: String,
    password: String,
    from_address: String,
    csrf_token: String,
) -> Result<Done, AppError> {
    let (c, actor) = ssr::form(csrf_token).await?;
    let input = pier_core::notify::SmtpInput {
        host,
        port,
        security,
        username,
        password,
        from_address,
    };
    let s = c.pier.set_smtp(&actor, input).await?;
    Ok(Done {
        message: format!(
            "Mail goes out through {}:{} from {}.",
            s.host, s.port, s.from_address
        ),
        copy: None,
    })
}

#[server(prefix = "/rpc", endpoint = "delete_smtp")]
pub async fn delete_smtp(csrf_token: String) -> Result<Done, AppError> {
    let (c, actor) = ssr::form(csrf_token).await?;
    c.pier.delete_smtp(&actor).await?;
    Ok(Done {
        message: "The mail server is removed: no e-mail goes out.".into(),
        copy: None,
    })
}
