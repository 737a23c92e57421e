//! Server functions for the audit log: a person's own entries (account page) and everyone's,
//! filtered, for admins. The rules (who sees what, which filters exist) live in core.
// The filter form has one argument per field.
#![allow(clippy::too_many_arguments)]

use leptos::prelude::*;
use serde::{Deserialize, Serialize};
use server_fn::codec::GetUrl;

#[cfg(feature = "ssr")]
use super::ssr;
use crate::{error::AppError, rpc::Done};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRow {
    pub id: i64,
    pub at: String,
    pub actor: String,
    /// "API token #7", "browser", "command line" or "webhook".
    pub via: String,
    pub address: String,
    pub action: String,
    pub object: String,
    pub summary: String,
    pub ok: bool,
    /// "ok", or the error code and why.
    pub outcome: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditView {
    pub rows: Vec<AuditRow>,
    /// For the "Older entries" link.
    pub next_before: Option<i64>,
}

/// What the admin page's filters offer, and the log's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditFilters {
    /// (id, e-mail) of every user.
    pub people: Vec<(i64, String)>,
    pub actions: Vec<String>,
    pub objects: Vec<String>,
    pub retention_days: i64,
    /// False when the operator turned the log off (`--no-audit-log`).
    pub enabled: bool,
}

/// A page of the log. `mine`: only the caller's own entries, whoever they are; otherwise an
/// admin's filtered view of everyone's. Filters are as typed into the page's form (an empty one
/// matches everything; days are `YYYY-MM-DD`, UTC, both included).
#[server(prefix = "/rpc", endpoint = "audit_log", input = GetUrl)]
pub async fn audit_log(
    mine: bool,
    person: String,
    action: String,
    object: String,
    name: String,
    since: String,
    until: String,
    before: Option<i64>,
) -> Result<AuditView, AppError> {
    use pier_core::{audit::AuditQuery, Error};
    let (c, actor) = ssr::signed_in().await?;
    let given = |s: &str| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
    let person = match given(&person) {
        _ if mine || !actor.is_admin() => Some(actor.user_id),
        None => None,
        Some(p) => Some(
            p.parse::<i64>()
                .map_err(|_| Error::field("person", "Choose a person from the list."))?,
        ),
    };
    let day = |field: &str, s: &str, end: bool| -> Result<Option<i64>, Error> {
        match given(s) {
            None => Ok(None),
            Some(d) => pier_core::audit::day_start(&d)
                .map(|t| Some(if end { t + 86_400 } else { t }))
                .ok_or_else(|| Error::field(field, "Give a day as YYYY-MM-DD.")),
        }
    };
    let q = AuditQuery {
        person,
        action: given(&action),
        object_kind: given(&object),
        object_name: given(&name),
        since: day("since", &since, false)?,
        until: day("until", &until, true)?,
        before,
        limit: 50,
    };
    let page = c.pier.audit_log(&actor, q).await?;
    Ok(AuditView {
        rows: page
            .entries
            .into_iter()
            .map(|e| AuditRow {
                id: e.id,
                at: pier_core::format_time(e.at),
                actor: e.actor_email,
                via: match (e.token_id, e.actor_id, &e.address) {
                    (Some(t), _, _) => format!("API token #{t}"),
                    (None, Some(_), _) => "browser".into(),
                    _ if e.action == "account.sign_in" => "browser".into(),
                    // No person: the command line (on the machine, no address) or an app's
                    // registry webhook (from an address).
                    (None, None, None) => "command line".into(),
                    (None, None, Some(_)) => "webhook".into(),
                },
                address: e.address.unwrap_or_default(),
                action: e.action,
                object: format!("{} {}", e.object_kind, e.object_name),
                summary: e.summary,
                ok: e.outcome == "ok",
                outcome: match e.message {
                    Some(m) => format!("{}: {m}", e.outcome),
                    None => e.outcome,
                },
            })
            .collect(),
        next_before: page.next_before,
    })
}

#[server(prefix = "/rpc", endpoint = "audit_choices", input = GetUrl)]
pub async fn audit_choices() -> Result<AuditFilters, AppError> {
    use pier_core::audit::{Action, ObjectKind};
    let (c, actor) = ssr::signed_in().await?;
    let retention_days = c.pier.audit_retention_days(&actor).await?;
    let people = c
        .pier
        .list_users(&actor)
        .await?
        .into_iter()
        .map(|u| (u.id, u.email))
        .collect();
    Ok(AuditFilters {
        people,
        actions: Action::ALL.iter().map(|a| a.as_str().to_owned()).collect(),
        objects: ObjectKind::ALL
            .iter()
            .map(|k| k.as_str().to_owned())
            .collect(),
        retention_days,
        enabled: c.pier.settings().audit.enabled,
    })
}

#[server(prefix = "/rpc", endpoint = "set_audit_retention")]
pub async fn set_audit_retention(days: String, csrf_token: String) -> Result<Done, AppError> {
    let (c, actor) = ssr::form(csrf_token).await?;
    let days = days
        .trim()
        .parse::<i64>()
        .map_err(|_| pier_core::Error::field("days", "Give a whole number of days."))?;
    let days = c.pier.set_audit_retention_days(&actor, days).await?;
    Ok(Done {
        message: format!("Entries are kept for {days} days."),
        copy: None,
    })
}
