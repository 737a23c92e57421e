//! Domains: a tenant registers names, attaches each to one of their apps, moves or detaches it,
//! and deletes it. A name belongs to one tenant at most. Every lookup is scoped to the caller:
//! another tenant's domain is a 404 (and registering it is a 409 that names no one).

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::{
    model::{Actor, AppKind, Certificate, Domain},
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
    /// Whether its owner proved it theirs (always true when the operator turned proofs off).
    pub verified: bool,
    /// While it is not proven: the TXT record that proves it.
    pub proof: Option<DomainProof>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The DNS record that proves a domain is the tenant's: a TXT record named `record` holding
/// `value` (the tenant's token; the same for all their domains).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainProof {
    pub record: String,
    pub value: String,
}

/// The TXT record name that proves `domain` (a wildcard is proven at its parent).
pub fn proof_record(domain: &str) -> String {
    format!(
        "_pier-challenge.{}",
        domain.strip_prefix("*.").unwrap_or(domain)
    )
}

/// How a proof attempt ended.
enum Proof {
    Proven,
    /// Not (yet): the record that would prove it, and what was found, in words.
    Missing {
        proof: DomainProof,
        found: String,
    },
}

impl Pier {
    /// The caller's token for domain proofs (made the first time).
    pub async fn domain_proof_token(&self, actor: &Actor) -> Result<String> {
        let fresh = crate::service::random_token()[..32].to_owned();
        repo::users::domain_token(self.db(), actor.user_id, &format!("pier-{fresh}")).await
    }

    /// What the caller must publish to prove `domain` theirs.
    pub async fn domain_proof(&self, actor: &Actor, domain: &str) -> Result<DomainProof> {
        Ok(DomainProof {
            record: proof_record(domain),
            value: self.domain_proof_token(actor).await?,
        })
    }

    /// Looks the proof record up now. Err: no DNS here, a name the public DNS cannot answer for.
    async fn look_for_proof(&self, actor: &Actor, domain: &str) -> Result<Proof> {
        let Some(resolver) = self.resolver() else {
            return Err(Error::Unavailable(
                "DNS lookups are not available on this Pier, so domains cannot be proven; ask the operator.".into(),
            ));
        };
        let proof = self.domain_proof(actor, domain).await?;
        if !resolver.operator_chosen() {
            crate::dns::public_name(&proof.record).map_err(|m| Error::field("domain", m))?;
        }
        let found = match resolver.txt(&proof.record).await {
            Ok(values) if values.iter().any(|v| v.trim() == proof.value) => {
                return Ok(Proof::Proven)
            }
            Ok(values) => format!(
                "the TXT record {} holds {}, not your token",
                proof.record,
                values
                    .iter()
                    .map(|v| format!("{v:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Err(why) => format!("{}: {why}", proof.record),
        };
        Ok(Proof::Missing { proof, found })
    }

    /// Looks the proof record up now (one of the caller's DNS checks): Ok when it holds the
    /// caller's token, else a field error under `field` saying how to prove `domain`.
    async fn check_proof(&self, actor: &Actor, domain: &str, field: &str) -> Result<()> {
        self.tenant_limits()
            .dns_checks
            .take_for_tenant(actor.user_id, "DNS checks")?;
        match self.look_for_proof(actor, domain).await? {
            Proof::Proven => Ok(()),
            Proof::Missing { proof, found } => Err(Error::field(
                field,
                format!(
                    "Prove that {domain} is yours first: add a TXT record {} with the value {} at your DNS provider, then try again (found: {found}).",
                    proof.record, proof.value
                ),
            )),
        }
    }

    /// Checks the caller's proof record for a registered domain and marks it proven.
    pub async fn verify_domain(&self, actor: &Actor, name: &str) -> Result<DomainView> {
        let what = crate::audit::Change::new(crate::audit::Action::DomainVerify, name.trim())
            .owner(actor.user_id)
            .summary("proof checked");
        self.audited(actor, what, async {
            let d = self.own_domain(actor, name).await?;
            if d.verified_at.is_none() {
                self.check_proof(actor, &d.name, "domain").await?;
                repo::domains::set_verified(self.db(), actor.user_id, &d.name, now()).await?;
                tracing::info!(domain = %d.name, tenant = actor.user_id, "domain proven");
                self.wake_certs();
            }
            self.domain(actor, &d.name).await
        })
        .await
    }

    /// Before `domain` is attached: Ok when proofs are off or it is proven now; else a field
    /// error under `field` saying how to prove it.
    async fn require_proof(&self, actor: &Actor, domain: &str, field: &str) -> Result<()> {
        if !self.settings().routing.require_domain_proof {
            return Ok(());
        }
        self.check_proof(actor, domain, field).await
    }

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

    /// Views of the caller's domains: their certificates in one query, the proof token once.
    async fn domain_views(&self, actor: &Actor, ds: Vec<Domain>) -> Result<Vec<DomainView>> {
        let mut certs = repo::certs::for_user(self.db(), actor.user_id).await?;
        let proofs = self.settings().routing.require_domain_proof;
        let token = match proofs && ds.iter().any(|d| d.verified_at.is_none()) {
            true => Some(self.domain_proof_token(actor).await?),
            false => None,
        };
        Ok(ds
            .into_iter()
            .map(|d| {
                let cert = certs.remove(&d.id);
                self.domain_view(d, cert.as_ref(), token.as_deref())
            })
            .collect())
    }

    fn domain_view(
        &self,
        d: Domain,
        cert: Option<&Certificate>,
        token: Option<&str>,
    ) -> DomainView {
        let certificate = self.cert_view(&d.name, d.app_id.is_some(), cert);
        let verified = d.verified_at.is_some() || !self.settings().routing.require_domain_proof;
        let proof = match (verified, token) {
            (false, Some(t)) => Some(DomainProof {
                record: proof_record(&d.name),
                value: t.to_owned(),
            }),
            _ => None,
        };
        DomainView {
            verified,
            proof,
            name: d.name,
            app: d.app_name,
            serving: d.serving,
            certificate,
            created_at: d.created_at,
            updated_at: d.updated_at,
        }
    }

    /// Registers a domain for the caller, attached to `app` when given.
    pub async fn register_domain(
        &self,
        actor: &Actor,
        domain: &str,
        app: Option<&str>,
    ) -> Result<DomainView> {
        let what = crate::audit::Change::new(crate::audit::Action::DomainCreate, domain.trim())
            .owner(actor.user_id)
            .summary(match app {
                Some(a) => format!("registered for {}", a.trim()),
                None => "registered".into(),
            });
        self.audited(actor, what, async {
            let name = self.check_domain(domain)?;
            let app_id = self.app_to_attach(actor, app).await?;
            let max = self.settings().routing.max_domains_per_user;
            if repo::domains::count_for_user(self.db(), actor.user_id).await? >= max {
                return Err(Error::Quota(format!(
                    "You have registered {max} domains, the most one person may; delete one first."
                )));
            }
            let proofs = self.settings().routing.require_domain_proof;
            let taken = || {
                Error::Conflict(format!(
                    "{name} is already registered on this Pier by someone else."
                ))
            };
            let mut proven = false;
            match repo::domains::claim(self.db(), &name).await? {
                Some((owner, _)) if owner == actor.user_id => {
                    return Err(Error::Conflict(format!(
                        "You have already registered {name}."
                    )))
                }
                // Someone registered it without proving it: whoever proves it takes it, so a name
                // cannot be held hostage by typing it first.
                Some((_, false)) if proofs => {
                    if let Err(e) = self.require_proof(actor, &name, "domain").await {
                        return Err(match e {
                            Error::Invalid(_) => {
                                let p = self.domain_proof(actor, &name).await?;
                                Error::Conflict(format!(
                                    "{name} is registered by someone else who has not proven it theirs: publish the TXT record {} with the value {} and add it again to take it.",
                                    p.record, p.value
                                ))
                            }
                            other => other,
                        });
                    }
                    repo::domains::drop_unproven(self.db(), &name, actor.user_id).await?;
                    tracing::info!(domain = %name, tenant = actor.user_id, "an unproven claim gave way to a proof");
                    proven = true;
                }
                Some(_) => return Err(taken()),
                None => {}
            }
            if app_id.is_some() && !proven {
                // Attached at once only when proven now.
                self.require_proof(actor, &name, "domain").await?;
                proven = proofs;
            }
            // Proven now, or proofs are off; otherwise later, by Verify or a first attachment.
            let verified_at = (proven || !proofs).then(now);
            repo::domains::insert(self.db(), actor.user_id, &name, app_id, verified_at, now())
                .await
                .map_err(|e| e.on_unique(taken))?;
            tracing::info!(domain = %name, tenant = actor.user_id, "domain registered");
            self.wake_engine();
            self.wake_certs();
            self.domain(actor, &name).await
        })
        .await
    }

    pub async fn domain(&self, actor: &Actor, name: &str) -> Result<DomainView> {
        let d = self.own_domain(actor, name).await?;
        Ok(self.domain_views(actor, vec![d]).await?.remove(0))
    }

    /// One page of the caller's domains (by name), and how many there are.
    pub async fn list_domains_page(
        &self,
        actor: &Actor,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<DomainView>, usize)> {
        let total = repo::domains::count_for_user(self.db(), actor.user_id).await?;
        let page = repo::domains::page(self.db(), actor.user_id, limit, offset).await?;
        let out = self.domain_views(actor, page).await?;
        Ok((out, usize::try_from(total).unwrap_or(0)))
    }

    /// Attaches the domain to `app`, moves it there, or (None) detaches it.
    pub async fn set_domain_app(
        &self,
        actor: &Actor,
        name: &str,
        app: Option<&str>,
    ) -> Result<DomainView> {
        let what = crate::audit::Change::new(crate::audit::Action::DomainAttach, name.trim())
            .owner(actor.user_id)
            .summary(match app {
                Some(a) => format!("attached to {}", a.trim()),
                None => "detached".into(),
            });
        self.audited(actor, what, async {
            let d = self.own_domain(actor, name).await?;
            let app_id = self.app_to_attach(actor, app).await?;
            if app_id.is_some() && d.verified_at.is_none() {
                // Moving between one's own apps needs no new proof; the first attachment does.
                self.require_proof(actor, &d.name, "app").await?;
                repo::domains::set_verified(self.db(), actor.user_id, &d.name, now()).await?;
            }
            if !repo::domains::set_app(self.db(), actor.user_id, &d.name, app_id, now()).await? {
                // The domain or the app went away meanwhile.
                return Err(Error::NotFound);
            }
            tracing::info!(domain = %d.name, tenant = actor.user_id, app = ?app, "domain attached");
            self.wake_engine();
            self.wake_certs();
            self.domain(actor, &d.name).await
        })
        .await
    }

    pub async fn delete_domain(&self, actor: &Actor, name: &str) -> Result<()> {
        let what = crate::audit::Change::new(crate::audit::Action::DomainDelete, name.trim())
            .owner(actor.user_id)
            .summary("deleted");
        self.audited(actor, what, async {
            let d = self.own_domain(actor, name).await?;
            if !repo::domains::delete(self.db(), actor.user_id, &d.name).await? {
                return Err(Error::NotFound);
            }
            tracing::info!(domain = %d.name, tenant = actor.user_id, "domain deleted");
            self.wake_engine();
            // Its certificate leaves HAProxy and the disk.
            self.wake_certs();
            Ok(())
        })
        .await
    }

    /// Every app's routable platform host names as of now (see [`platform_names`]); None
    /// without a base domain.
    pub async fn platform_names_now(&self) -> Result<Option<PlatformNames>> {
        let Some(base) = self.settings().routing.base_domain.clone() else {
            return Ok(None);
        };
        let mut tx = self.db().begin().await?;
        let apps = repo::apps::list_all(&mut *tx).await?;
        let handles = repo::users::handles(&mut *tx).await?;
        let domains = repo::domains::all_names(&mut *tx).await?;
        tx.rollback().await?;
        Ok(Some(platform_names_of(
            &base,
            &apps,
            &handles.into_iter().collect(),
            &domains.into_iter().collect(),
        )))
    }

    /// Where an app of the caller's answers: its domains and its platform host name.
    pub async fn app_hosts(&self, actor: &Actor, app: &str) -> Result<Vec<String>> {
        let app = self.own_app(actor, app).await?;
        let mut hosts = repo::domains::names_for_app(self.db(), app.id).await?;
        // Only the platform names that route: internal apps have none, and an ambiguous or
        // over-long name is left out (see `platform_names`).
        if app.kind == AppKind::Web {
            if let Some(mut names) = self.platform_names_now().await? {
                hosts.extend(names.hosts.remove(&app.id).unwrap_or_default());
            }
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

    /// (app, platform host name) for each routable platform name of the caller's web apps;
    /// empty without a base domain.
    pub async fn platform_hosts(&self, actor: &Actor) -> Result<Vec<(String, String)>> {
        let Some(mut names) = self.platform_names_now().await? else {
            return Ok(Vec::new());
        };
        Ok(repo::apps::list_for_user(self.db(), actor.user_id)
            .await?
            .into_iter()
            .filter(|a| a.kind == AppKind::Web)
            .flat_map(|a| {
                let hosts = names.hosts.remove(&a.id).unwrap_or_default();
                hosts.into_iter().map(move |h| (a.name.clone(), h))
            })
            .collect())
    }
}

// ----- platform host names ----------------------------------------------------------------

/// One app that gets platform host names: its id, its name and its owner's handle.
#[derive(Debug, Clone, Copy)]
pub struct PlatformApp<'a> {
    pub app_id: i64,
    pub app: &'a str,
    pub handle: &'a str,
}

/// Which platform host names route, and which do not and why.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PlatformNames {
    /// App id → its routable platform names (the `--` name first, then the old one).
    pub hosts: HashMap<i64, Vec<String>>,
    /// (host name, app id, reason) for each name left out.
    pub skipped: Vec<(String, i64, &'static str)>,
}

/// Whether `host` fits DNS: at most 253 characters, no label empty or over 63.
pub fn host_fits(host: &str) -> bool {
    host.len() <= 253 && host.split('.').all(|l| !l.is_empty() && l.len() <= 63)
}

/// [`platform_names`] of every app whose owner has a handle.
pub fn platform_names_of(
    base: &str,
    apps: &[crate::model::App],
    handles: &HashMap<i64, String>,
    domains: &HashSet<String>,
) -> PlatformNames {
    let claims: Vec<PlatformApp<'_>> = apps
        .iter()
        .filter_map(|a| {
            Some(PlatformApp {
                app_id: a.id,
                app: &a.name,
                handle: handles.get(&a.user_id)?,
            })
        })
        .collect();
    platform_names(base, &claims, domains)
}

/// The platform host names of `apps` under `base` (every app of every tenant, whatever its kind
/// or state, so a name does not change owner when another app starts or stops).
///
/// - `<app>--<handle>.<base>` is the name. App names and handles cannot contain `--` (nor start
///   or end with `-`), so the `--` splits the name in exactly one way and no two apps share one.
///   Apps named before `--` was forbidden may still contain it; if such a name comes out equal
///   for two apps, it routes to neither (left out with a reason, which the routing sync logs
///   for the operator) rather than to whichever app came last. Their old name may still work.
/// - `<app>-<handle>.<base>`, the old name, keeps working only while it is unambiguous: no other
///   app's old name is the same string, no app's `--` name is, and no registered domain is. An
///   ambiguous old name routes to no one; the owners keep their `--` names.
/// - A name over 253 characters or with a label over 63 is left out.
pub fn platform_names(
    base: &str,
    apps: &[PlatformApp<'_>],
    domains: &HashSet<String>,
) -> PlatformNames {
    let new = |a: &PlatformApp<'_>| format!("{}--{}.{base}", a.app, a.handle);
    let old = |a: &PlatformApp<'_>| format!("{}-{}.{base}", a.app, a.handle);
    let mut new_claims: HashMap<String, HashSet<i64>> = HashMap::new();
    let mut old_claims: HashMap<String, HashSet<i64>> = HashMap::new();
    for a in apps {
        new_claims.entry(new(a)).or_default().insert(a.app_id);
        old_claims.entry(old(a)).or_default().insert(a.app_id);
    }
    let mut out = PlatformNames::default();
    for a in apps {
        let mut mine = Vec::new();
        let n = new(a);
        if new_claims[&n].len() > 1 {
            out.skipped.push((
                n,
                a.app_id,
                "another app has the same platform name (an app name or handle contains --)",
            ));
        } else if !host_fits(&n) {
            out.skipped
                .push((n, a.app_id, "longer than a host name may be"));
        } else {
            mine.push(n);
        }
        let o = old(a);
        if old_claims[&o].len() > 1 || new_claims.contains_key(&o) || domains.contains(&o) {
            out.skipped.push((
                o,
                a.app_id,
                "old-style name is ambiguous: another app or a domain has the same name",
            ));
        } else if !host_fits(&o) {
            out.skipped
                .push((o, a.app_id, "longer than a host name may be"));
        } else {
            mine.push(o);
        }
        out.hosts.entry(a.app_id).or_default().extend(mine);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(app_id: i64, app: &'static str, handle: &'static str) -> PlatformApp<'static> {
        PlatformApp {
            app_id,
            app,
            handle,
        }
    }

    #[test]
    fn an_ambiguous_old_name_routes_to_no_one_and_new_names_to_their_own() {
        // ann-lee's blog and lee's blog-ann both make blog-ann-lee.<base> the old way.
        let apps = [app(1, "blog", "ann-lee"), app(2, "blog-ann", "lee")];
        let n = platform_names("apps.test", &apps, &HashSet::new());
        assert_eq!(n.hosts[&1], vec!["blog--ann-lee.apps.test".to_string()]);
        assert_eq!(n.hosts[&2], vec!["blog-ann--lee.apps.test".to_string()]);
        let skipped: Vec<_> = n
            .skipped
            .iter()
            .map(|(h, id, _)| (h.as_str(), *id))
            .collect();
        assert_eq!(
            skipped,
            vec![("blog-ann-lee.apps.test", 1), ("blog-ann-lee.apps.test", 2)]
        );
        // Alone, each keeps its old name too.
        let n = platform_names("apps.test", &apps[..1], &HashSet::new());
        assert_eq!(
            n.hosts[&1],
            vec![
                "blog--ann-lee.apps.test".to_string(),
                "blog-ann-lee.apps.test".to_string()
            ]
        );
        assert!(n.skipped.is_empty());
    }

    #[test]
    fn an_old_name_equal_to_a_domain_or_a_new_name_is_left_out() {
        let domains: HashSet<String> = ["blog-ann.apps.test".to_string()].into();
        let n = platform_names("apps.test", &[app(1, "blog", "ann")], &domains);
        assert_eq!(n.hosts[&1], vec!["blog--ann.apps.test".to_string()]);
        // An old name with -- in it (legacy app "a--b", handle "c" → a--b-c) equals the new
        // name of ("a", "b-c"): the new name wins.
        let apps = [app(1, "a--b", "c"), app(2, "a", "b-c")];
        let n = platform_names("apps.test", &apps, &HashSet::new());
        assert_eq!(n.hosts[&1], vec!["a--b--c.apps.test".to_string()]);
        assert_eq!(
            n.hosts[&2],
            vec![
                "a--b-c.apps.test".to_string(),
                "a-b-c.apps.test".to_string()
            ]
        );
    }

    #[test]
    fn legacy_names_with_double_hyphens_that_collide_route_to_no_one() {
        let apps = [app(1, "a--b", "c"), app(2, "a", "b--c")];
        let n = platform_names("apps.test", &apps, &HashSet::new());
        assert!(!n.hosts.values().flatten().any(|h| h == "a--b--c.apps.test"));
        assert_eq!(n.hosts[&1], vec!["a--b-c.apps.test".to_string()]);
        assert_eq!(n.hosts[&2], vec!["a-b--c.apps.test".to_string()]);
        assert_eq!(
            n.skipped
                .iter()
                .filter(|(h, _, _)| h == "a--b--c.apps.test")
                .count(),
            2
        );
    }

    #[test]
    fn over_long_names_are_left_out() {
        let long = "a".repeat(40);
        let handle = "h".repeat(23);
        let apps = [PlatformApp {
            app_id: 1,
            app: &long,
            handle: &handle,
        }];
        // 40 + 1 + 23 = 64 for the old name, 65 for the new one: both over 63.
        let n = platform_names("apps.test", &apps, &HashSet::new());
        assert!(n.hosts[&1].is_empty(), "{n:?}");
        assert_eq!(n.skipped.len(), 2);
        assert!(host_fits(&format!("{}.apps.test", "a".repeat(63))));
        assert!(!host_fits(&format!("{}.apps.test", "a".repeat(64))));
        assert!(!host_fits(&vec!["abc"; 70].join(".")));
        assert!(!host_fits("a..b"));
    }
}
