//! Server functions for domains: thin wrappers around `pier_core::Pier`, which checks the name
//! (IDNA, public suffix list), that the app is the caller's, and that no one else has the name.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};
use server_fn::codec::GetUrl;

#[cfg(feature = "ssr")]
use super::ssr;
use crate::{error::AppError, rpc::Done};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DomainRow {
    pub name: String,
    pub app: Option<String>,
    pub serving: bool,
    /// self-signed, pending, valid, renewing, failed.
    pub certificate: String,
    /// The certificate's state in words (with the CA's error and the next try).
    pub certificate_note: String,
    pub added: String,
    /// Whether its owner proved it theirs.
    pub verified: bool,
    /// While it is not: (TXT record name, value).
    pub proof: Option<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DomainsData {
    pub domains: Vec<DomainRow>,
    /// The caller's apps, to attach domains to.
    pub apps: Vec<String>,
    /// (app, platform host name) for each name that routes, when the operator set a base domain.
    pub platform: Vec<(String, String)>,
    /// The caller's token for proofs, when this Pier asks for them.
    pub proof_token: Option<String>,
}

#[server(prefix = "/rpc", endpoint = "my_domains", input = GetUrl)]
pub async fn my_domains() -> Result<DomainsData, AppError> {
    let (c, actor) = ssr::signed_in().await?;
    let (views, _) = c.pier.list_domains_page(&actor, i64::MAX, 0).await?;
    let apps = c.pier.app_names(&actor).await?;
    let platform = c.pier.platform_hosts(&actor).await?;
    let proof_token = match c.pier.settings().routing.require_domain_proof {
        true => Some(c.pier.domain_proof_token(&actor).await?),
        false => None,
    };
    Ok(DomainsData {
        proof_token,
        domains: views
            .into_iter()
            .map(|d| DomainRow {
                name: d.name,
                app: d.app,
                serving: d.serving,
                certificate_note: d.certificate.describe(),
                certificate: d.certificate.status,
                added: pier_core::format_time(d.created_at),
                verified: d.verified,
                proof: d.proof.map(|p| (p.record, p.value)),
            })
            .collect(),
        apps,
        platform,
    })
}

#[server(prefix = "/rpc", endpoint = "add_domain")]
pub async fn add_domain(domain: String, app: String, csrf_token: String) -> Result<Done, AppError> {
    let (c, actor) = ssr::form(csrf_token).await?;
    let d = c
        .pier
        .register_domain(&actor, &domain, Some(app.as_str()))
        .await?;
    let message = match &d.app {
        Some(a) => format!("Added {}; it serves {a} as soon as {a} runs.", d.name),
        None => format!("Added {}. Attach it to an app to serve it.", d.name),
    };
    Ok(Done {
        message,
        copy: None,
    })
}

/// Attaches, moves (`app` set) or detaches (`app` empty) a domain.
#[server(prefix = "/rpc", endpoint = "attach_domain")]
pub async fn attach_domain(
    domain: String,
    app: String,
    csrf_token: String,
) -> Result<Done, AppError> {
    let (c, actor) = ssr::form(csrf_token).await?;
    let d = c
        .pier
        .set_domain_app(&actor, &domain, Some(app.as_str()))
        .await?;
    let message = match &d.app {
        Some(a) => format!("{} now goes to {a}.", d.name),
        None => format!("{} is detached; it serves nothing now.", d.name),
    };
    Ok(Done {
        message,
        copy: None,
    })
}

#[server(prefix = "/rpc", endpoint = "remove_domain")]
pub async fn remove_domain(domain: String, csrf_token: String) -> Result<Done, AppError> {
    let (c, actor) = ssr::form(csrf_token).await?;
    c.pier.delete_domain(&actor, &domain).await?;
    Ok(Done {
        message: format!("Deleted {}.", domain.trim()),
        copy: None,
    })
}

/// Looks the domain's proof record up now and marks it proven.
#[server(prefix = "/rpc", endpoint = "verify_domain")]
pub async fn verify_domain(domain: String, csrf_token: String) -> Result<Done, AppError> {
    let (c, actor) = ssr::form(csrf_token).await?;
    let d = c.pier.verify_domain(&actor, &domain).await?;
    Ok(Done {
        message: format!("{} is proven yours; attach it to an app.", d.name),
        copy: None,
    })
}

/// Looks the domain's DNS up now; the message says whether it points at this server.
#[server(prefix = "/rpc", endpoint = "check_dns")]
pub async fn check_dns(domain: String, csrf_token: String) -> Result<Done, AppError> {
    let (c, actor) = ssr::form(csrf_token).await?;
    let check = c.pier.check_domain_dns(&actor, &domain).await?;
    Ok(Done {
        message: check.message,
        copy: None,
    })
}

#[server(prefix = "/rpc", endpoint = "retry_certificate")]
pub async fn retry_certificate(domain: String, csrf_token: String) -> Result<Done, AppError> {
    let (c, actor) = ssr::form(csrf_token).await?;
    c.pier.retry_certificate(&actor, &domain).await?;
    Ok(Done {
        message: format!("Asking for a certificate for {} again now.", domain.trim()),
        copy: None,
    })
}

/// One certificate on the admin page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CertRow {
    pub domain: String,
    pub status: String,
    pub note: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CertsAdmin {
    pub enabled: bool,
    pub directory: String,
    pub account: Option<String>,
    pub certificates: Vec<CertRow>,
    /// (registered domain, issued this week, failed validations this week)
    pub week: Vec<(String, i64, i64)>,
    pub weekly_budget: i64,
    /// Orders in the budget window (hours): all, and per tenant.
    pub window_hours: i64,
    pub window_orders: i64,
    pub window_by_tenant: Vec<(String, i64)>,
    pub orders_per_window: i64,
    pub renewal_reserve: i64,
    pub tenant_orders_per_window: i64,
}

#[server(prefix = "/rpc", endpoint = "certificates_overview", input = GetUrl)]
pub async fn certificates_overview() -> Result<CertsAdmin, AppError> {
    let (c, actor) = ssr::signed_in().await?;
    let o = c.pier.certificates_overview(&actor).await?;
    Ok(CertsAdmin {
        enabled: o.enabled,
        directory: o.directory,
        account: o.account,
        certificates: o
            .certificates
            .into_iter()
            .map(|(domain, v)| CertRow {
                domain,
                note: v.describe(),
                status: v.status,
            })
            .collect(),
        week: o.week,
        weekly_budget: o.weekly_budget,
        window_hours: pier_core::certs::BUDGET_WINDOW_SECS / 3600,
        window_orders: o.window_orders,
        window_by_tenant: o.window_by_tenant,
        orders_per_window: o.orders_per_window,
        renewal_reserve: o.renewal_reserve,
        tenant_orders_per_window: o.tenant_orders_per_window,
    })
}

#[server(prefix = "/rpc", endpoint = "renew_certificate")]
pub async fn renew_certificate(domain: String, csrf_token: String) -> Result<Done, AppError> {
    let (c, actor) = ssr::form(csrf_token).await?;
    c.pier.renew_certificate_now(&actor, &domain).await?;
    Ok(Done {
        message: format!("Renewing the certificate of {} now.", domain.trim()),
        copy: None,
    })
}
