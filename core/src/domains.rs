//! Domains: a tenant registers names, attaches each to one of their apps, moves or detaches it,
//! and deletes it. A name belongs to one tenant at most. Every lookup is scoped to the caller:
//! another tenant's domain is a 404 (and registering it is a 409 that names no one).

use serde::{Deserialize, Serialize};

use crate::{
    model::{Actor, Domain},
    now, repo, validate, Error, Pier, Result,
};

/// A domain as tenants see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainView {
    pub name: String,
    /// The app it is attached to.
    pub app: Option<String>,
    /// Whether HAProxy sends its traffic to a running container now.
    pub serving: bool,
    /// The certificate HTTPS serves for it.
    pub certificate: crate::certs::CertView,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Pier {
    /// Checks and normalises a name a tenant typed (IDNA, public suffix list, wildcards only if
    /// the operator allows them, and never the panel's or the platform's own names).
    pub fn check_domain(&self, input: &str) -> Result<String> {
        let r = &self.settings().routing;
        let name =
            validate::domain(input, r.allow_wildcards).map_err(|m| Error::field("domain", m))?;
        let bare = name.strip_prefix("*.").unwrap_or(&name);
        if r.panel_host.as_deref() == Some(bare) {
            return Err(Error::field("domain", "This is the panel's own address."));
        }
        if let Some(base) = &r.base_domain {
            if bare == base || bare.ends_with(&format!(".{base}")) {
                return Err(Error::field(
                    "domain",
                    format!("Names under {base} are given to apps by Pier; register a domain of your own."),
                ));
            }
        }
        Ok(name)
    }

    /// The caller's domain by name (as typed or normalised), or 404.
    pub(crate) async fn own_domain(&self, actor: &Actor, name: &str) -> Result<Domain> {
        let Ok(name) = validate::domain(name, true) else {
            return Err(Error::NotFound);
        };
        repo::domains::by_name(self.db(), actor.user_id, &name)
            .await?
            .ok_or(Error::NotFound)
    }

    /// The caller's app by name for attaching, as a field error when it does not exist.
    async fn app_to_attach(&self, actor: &Actor, app: Option<&str>) -> Result<Option<i64>> {
        match app.map(str::trim).filter(|a| !a.is_empty()) {
            None => Ok(None),
            Some(a) => match repo::apps::by_name(self.db(), actor.user_id, a).await? {
                Some(app) if app.kind == crate::model::AppKind::Internal => Err(Error::field(
                    "app",
                    format!("{a} is an internal app: it is reached by your other apps, not from the internet, so it takes no domain."),
                )),
                Some(app) => Ok(Some(app.id)),
                None => Err(Error::field("app", format!("You have no app called {a}."))),
            },
        }
    }

    async fn domain_view(&self, d: Domain) -> Result<DomainView> {
        let certificate = self.cert_view(d.id, &d.name, d.app_id.is_some()).await?;
        Ok(DomainView {
            name: d.name,
            app: d.app_name,
            serving: d.serving,
            certificate,
            created_at: d.created_at,
            updated_at: d.updated_at,
        })
    }

    /// Registers a domain for the caller, attached to `app` when given.
    pub async fn register_domain(
        &self,
        actor: &Actor,
        domain: &str,
        app: Option<&str>,
    ) -> Result<DomainView> {
        let name = self.check_domain(domain)?;
        let app_id = self.app_to_attach(actor, app).await?;
        let max = self.settings().routing.max_domains_per_user;
        if repo::domains::count_for_user(self.db(), actor.user_id).await? >= max {
            return Err(Error::Quota(format!(
                "You have registered {max} domains, the most one person may; delete one first."
            )));
        }
        match repo::domains::insert(self.db(), actor.user_id, &name, app_id, now()).await {
            Ok(_) => {}
            Err(Error::Database(e)) if crate::error::is_unique_violation(&e) => {
                let mine = repo::domains::owner(self.db(), &name).await? == Some(actor.user_id);
                return Err(Error::Conflict(if mine {
                    format!("You have already registered {name}.")
                } else {
                    format!("{name} is already registered on this Pier by someone else.")
                }));
            }
            Err(e) => return Err(e),
        }
        tracing::info!(domain = %name, tenant = actor.user_id, "domain registered");
        self.wake_engine();
        self.wake_certs();
        self.domain(actor, &name).await
    }

    pub async fn domain(&self, actor: &Actor, name: &str) -> Result<DomainView> {
        let d = self.own_domain(actor, name).await?;
        self.domain_view(d).await
    }

    /// One page of the caller's domains (by name), and how many there are.
    pub async fn list_domains_page(
        &self,
        actor: &Actor,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<DomainView>, usize)> {
        let total = repo::domains::count_for_user(self.db(), actor.user_id).await?;
        let mut out = Vec::new();
        for d in repo::domains::page(self.db(), actor.user_id, limit, offset).await? {
            out.push(self.domain_view(d).await?);
        }
        Ok((out, usize::try_from(total).unwrap_or(0)))
    }

    /// Attaches the domain to `app`, moves it there, or (None) detaches it.
    pub async fn set_domain_app(
        &self,
        actor: &Actor,
        name: &str,
        app: Option<&str>,
    ) -> Result<DomainView> {
        let d = self.own_domain(actor, name).await?;
        let app_id = self.app_to_attach(actor, app).await?;
        if !repo::domains::set_app(self.db(), actor.user_id, &d.name, app_id, now()).await? {
            // The domain or the app went away meanwhile.
            return Err(Error::NotFound);
        }
        tracing::info!(domain = %d.name, tenant = actor.user_id, app = ?app, "domain attached");
        self.wake_engine();
        self.wake_certs();
        self.domain(actor, &d.name).await
    }

    pub async fn delete_domain(&self, actor: &Actor, name: &str) -> Result<()> {
        let d = self.own_domain(actor, name).await?;
        if !repo::domains::delete(self.db(), actor.user_id, &d.name).await? {
            return Err(Error::NotFound);
        }
        tracing::info!(domain = %d.name, tenant = actor.user_id, "domain deleted");
        self.wake_engine();
        Ok(())
    }

    /// `<app>-<handle>.<base domain>` when the operator set a base domain.
    pub fn platform_host(&self, app: &str, handle: &str) -> Option<String> {
        let base = self.settings().routing.base_domain.as_ref()?;
        Some(format!("{app}-{handle}.{base}"))
    }

    /// Where an app of the caller's answers: its domains and its platform host name.
    pub async fn app_hosts(&self, actor: &Actor, app: &str) -> Result<Vec<String>> {
        let app = self.own_app(actor, app).await?;
        let mut hosts = repo::domains::names_for_app(self.db(), app.id).await?;
        if let Some(handle) = repo::users::handle(self.db(), actor.user_id).await? {
            hosts.extend(self.platform_host(&app.name, &handle));
        }
        Ok(hosts)
    }

    /// The caller's app names, for choosing where a domain goes.
    pub async fn app_names(&self, actor: &Actor) -> Result<Vec<String>> {
        Ok(repo::apps::list_for_user(self.db(), actor.user_id)
            .await?
            .into_iter()
            .map(|a| a.name)
            .collect())
    }

    /// (app, platform host name) for each of the caller's apps; empty without a base domain.
    pub async fn platform_hosts(&self, actor: &Actor) -> Result<Vec<(String, String)>> {
        if self.settings().routing.base_domain.is_none() {
            return Ok(Vec::new());
        }
        let Some(handle) = repo::users::handle(self.db(), actor.user_id).await? else {
            return Ok(Vec::new());
        };
        Ok(self
            .app_names(actor)
            .await?
            .into_iter()
            .filter_map(|a| self.platform_host(&a, &handle).map(|h| (a, h)))
            .collect())
    }
}
