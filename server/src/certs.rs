//! The certificate issuer: for every attached domain, an ACME order (HTTP-01, answered by the
//! panel behind HAProxy's `/.well-known/acme-challenge/` route), a fresh P-256 key per
//! certificate, the chain and the sealed key in the database, and the certificate installed into
//! the running HAProxy without a reload. Renewal is scheduled at issue time (ARI's window when
//! the CA offers it, else a third of the lifetime before expiry, with jitter); failures back off
//! exponentially and the previous certificate keeps serving. Rate limits are checked before
//! every order: one order per name at a time (orders run one after another), no order for a
//! name with 5 failed validations in the last hour, a weekly budget per registered domain.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::Duration,
};

use anyhow::Context;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use pier_core::{
    certs::{
        backoff_secs, order_budget, registered_domain, renew_at, BudgetUse, BUDGET_WINDOW_SECS,
    },
    now,
    repo::{self, certs::Due},
    Pier,
};

use crate::proxy::Proxy;

/// HTTP-01 tokens and their key authorizations while an order waits for validation.
#[derive(Clone, Default)]
pub struct Challenges(Arc<RwLock<HashMap<String, String>>>);

impl Challenges {
    pub fn answer(&self, token: &str) -> Option<String> {
        self.0.read().expect("challenges lock").get(token).cloned()
    }
    fn set(&self, token: String, key_authorization: String) {
        self.0
            .write()
            .expect("challenges lock")
            .insert(token, key_authorization);
    }
    fn clear(&self, token: &str) {
        self.0.write().expect("challenges lock").remove(token);
    }
}

/// Why an order did not give a certificate.
#[derive(Debug)]
struct OrderFailure {
    /// The CA refused the validation (counts against the per-hour limit).
    invalid: bool,
    /// The CA's own words, or what went wrong on the way.
    message: String,
    /// The CA asked to wait this long.
    retry_after: Option<Duration>,
}

impl From<anyhow::Error> for OrderFailure {
    fn from(e: anyhow::Error) -> Self {
        OrderFailure {
            invalid: false,
            message: format!("{e:#}"),
            retry_after: None,
        }
    }
}

pub struct Issuer {
    pier: Pier,
    proxy: Arc<Proxy>,
    challenges: Challenges,
    account: tokio::sync::Mutex<Option<Account>>,
}

impl Issuer {
    pub fn new(pier: Pier, proxy: Arc<Proxy>, challenges: Challenges) -> Issuer {
        Issuer {
            pier,
            proxy,
            challenges,
            account: tokio::sync::Mutex::new(None),
        }
    }

    /// Installs what the database holds, then orders what is due: when woken (a domain attached,
    /// "retry now"), when the next retry or renewal is due, and at least once a minute.
    pub async fn run(self) {
        if let Err(e) = self.install_stored().await {
            tracing::warn!(
                error = format!("{e:#}"),
                "stored certificates not installed"
            );
        }
        loop {
            if let Err(e) = self.pass().await {
                tracing::warn!(error = format!("{e:#}"), "certificate pass failed");
            }
            let wait = match repo::certs::next_due(self.pier.db()).await {
                Ok(Some(t)) => (t - now()).clamp(1, 60),
                _ => 60,
            };
            tokio::select! {
                _ = self.pier.certs_woken() => {}
                _ = tokio::time::sleep(Duration::from_secs(wait as u64)) => {}
            }
        }
    }

    /// Every certificate in the database into HAProxy's files and memory (at start: the files
    /// may be missing, HAProxy may have been restarted without them).
    async fn install_stored(&self) -> anyhow::Result<()> {
        let panel = self.pier.panel_certificate_name();
        for c in repo::certs::all(self.pier.db()).await? {
            let (Some(chain), Some(sealed)) = (&c.chain_pem, &c.sealed_key) else {
                continue;
            };
            let key = self.open_key(&c.name, sealed)?;
            self.proxy.install_certificate(&c.name, chain, &key).await?;
            if c.domain_id.is_none() && panel == Some(c.name.as_str()) {
                self.pier.set_panel_certificate(c.not_after.unwrap_or(0));
            }
        }
        Ok(())
    }

    /// Takes certificates of names that no longer have one in the database (a deleted domain,
    /// a panel host the operator changed) out of HAProxy and off the disk.
    async fn sweep(&self) -> anyhow::Result<()> {
        let keep: std::collections::HashSet<String> = repo::certs::names(self.pier.db())
            .await?
            .into_iter()
            .collect();
        for name in self.proxy.installed_certificates()? {
            if !keep.contains(&name) {
                // One that cannot be removed does not keep the others served.
                match self.proxy.remove_certificate(&name).await {
                    Ok(()) => tracing::info!(domain = %name, "certificate removed"),
                    Err(e) => {
                        tracing::warn!(domain = %name, error = format!("{e:#}"), "removing a certificate failed")
                    }
                }
            }
        }
        Ok(())
    }

    fn open_key(&self, name: &str, sealed: &str) -> anyhow::Result<String> {
        let key = self
            .pier
            .key()
            .decrypt(sealed, &key_context(name))
            .context("a certificate key could not be decrypted with this Pier's key")?;
        Ok(String::from_utf8(key)?)
    }

    async fn pass(&self) -> anyhow::Result<()> {
        let t = now();
        let db = self.pier.db();
        repo::certs::ensure_panel(db, self.pier.panel_certificate_name(), t).await?;
        repo::certs::ensure_for_domains(db, t).await?;
        if let Err(e) = self.sweep().await {
            tracing::warn!(error = format!("{e:#}"), "removing old certificates failed");
        }
        // Renewals come first (the list is ordered so), then new certificates.
        for due in repo::certs::due(db, t).await? {
            if let Some((why, until)) = self.limited(&due).await? {
                repo::certs::defer(db, due.id, &why, until, now()).await?;
                continue;
            }
            if let Some(why) = self.pier.dns_blocks_certificate(&due.name).await {
                // Checked again in a minute; no order, so no failure counts against the CA's limits.
                repo::certs::defer(db, due.id, &why, now() + 60, now()).await?;
                continue;
            }
            repo::certs::mark_renewing(db, due.id, now()).await?;
            self.issue(&due).await?;
        }
        Ok(())
    }

    /// A rate limit that forbids ordering for `due` now: (why, when it lifts).
    async fn limited(&self, due: &Due) -> anyhow::Result<Option<(String, i64)>> {
        let a = &self.pier.settings().acme;
        let t = now();
        let counts =
            repo::certs::orders_since(self.pier.db(), due.user_id, t - BUDGET_WINDOW_SECS).await?;
        let used = BudgetUse {
            all: counts.all,
            all_oldest: counts.oldest,
            tenant: counts.tenant,
            tenant_oldest: counts.tenant_oldest,
        };
        if let Some(refused) = order_budget(a, due.renewal, due.user_id, used, t) {
            return Ok(Some(refused));
        }
        let name = due.name.as_str();
        let (invalid, oldest) = repo::certs::invalid_since(self.pier.db(), name, t - 3600).await?;
        if invalid >= a.max_invalid_per_hour {
            return Ok(Some((
                format!("{invalid} failed validations in the last hour: Pier waits before asking the CA again (its limit)."),
                oldest.unwrap_or(t) + 3600,
            )));
        }
        let reg = registered_domain(name);
        let (issued, oldest) =
            repo::certs::issued_since(self.pier.db(), &reg, t - 7 * 86_400).await?;
        if issued >= a.weekly_budget {
            return Ok(Some((
                format!(
                    "{issued} certificates for {reg} this week: the CA's weekly limit is reached."
                ),
                oldest.unwrap_or(t) + 7 * 86_400,
            )));
        }
        Ok(None)
    }

    async fn issue(&self, due: &Due) -> anyhow::Result<()> {
        let (id, name) = (due.id, due.name.as_str());
        let started = now();
        let reg = registered_domain(name);
        let order = |outcome, error| repo::certs::Order {
            name,
            registered: &reg,
            user_id: due.user_id,
            renewal: due.renewal,
            started_at: started,
            outcome,
            error,
        };
        tracing::info!(domain = name, "ordering a certificate");
        let result = tokio::time::timeout(Duration::from_secs(180), self.order(name))
            .await
            .unwrap_or_else(|_| {
                Err(OrderFailure {
                    invalid: false,
                    message: "the CA did not finish within 3 minutes".into(),
                    retry_after: None,
                })
            });
        match result {
            Ok((chain, key)) => {
                let info = parse_leaf(&chain)?;
                let sealed = self.pier.key().encrypt(key.as_bytes(), &key_context(name));
                let renew = self.renewal_time(&info).await;
                // Installed first: the database says valid only for what HAProxy serves.
                self.proxy.install_certificate(name, &chain, &key).await?;
                repo::certs::issued(
                    self.pier.db(),
                    id,
                    &repo::certs::Issued {
                        chain_pem: &chain,
                        sealed_key: &sealed,
                        serial: &info.serial,
                        not_before: info.not_before,
                        not_after: info.not_after,
                        renew_at: renew,
                    },
                    now(),
                )
                .await?;
                repo::certs::record_order(self.pier.db(), &order("issued", None)).await?;
                if due.user_id.is_none() {
                    self.pier.set_panel_certificate(info.not_after);
                }
                tracing::info!(domain = name, serial = %info.serial, not_after = info.not_after, "certificate installed");
            }
            Err(f) => {
                let failures = repo::certs::by_id(self.pier.db(), id)
                    .await?
                    .map_or(0, |c| c.failures)
                    + 1;
                let base = self.pier.settings().acme.retry_base_secs;
                let mut wait = backoff_secs(base, failures);
                if let Some(ra) = f.retry_after {
                    wait = wait.max(i64::try_from(ra.as_secs()).unwrap_or(i64::MAX));
                }
                let outcome = if f.invalid { "invalid" } else { "error" };
                tracing::warn!(domain = name, error = %f.message, retry_in_secs = wait, "certificate order failed");
                repo::certs::record_order(self.pier.db(), &order(outcome, Some(&f.message)))
                    .await?;
                repo::certs::failed(self.pier.db(), id, &f.message, now() + wait, now()).await?;
                // Told once per streak of failures, at its first.
                if failures == 1 {
                    let event = pier_core::notify::Event::CertificateFailed {
                        domain: name.to_owned(),
                        error: f.message.clone(),
                        since: now(),
                    };
                    match due.user_id {
                        Some(user) => self.pier.notify(user, event).await,
                        None => self.pier.notify_admins(event).await,
                    }
                }
            }
        }
        Ok(())
    }

    /// The ACME account for the configured directory: loaded from the database, or created and
    /// saved (sealed) the first time.
    async fn account(&self) -> anyhow::Result<Account> {
        let mut slot = self.account.lock().await;
        if let Some(a) = slot.as_ref() {
            return Ok(a.clone());
        }
        let a = &self.pier.settings().acme;
        let builder = || -> anyhow::Result<instant_acme::AccountBuilder> {
            Ok(match &a.ca_file {
                Some(ca) => Account::builder_with_root(ca)?,
                None => Account::builder()?,
            })
        };
        let context = format!("acme account\0{}", a.directory);
        let account = match repo::certs::account(self.pier.db(), &a.directory).await? {
            Some((_, sealed)) => {
                let json = self
                    .pier
                    .key()
                    .decrypt(&sealed, &context)
                    .context("the ACME account key could not be decrypted")?;
                let creds: AccountCredentials = serde_json::from_slice(&json)?;
                builder()?.from_credentials(creds).await?
            }
            None => {
                let contact = a.email.as_ref().map(|e| format!("mailto:{e}"));
                let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
                let (account, creds) = builder()?
                    .create(
                        &NewAccount {
                            contact: &contacts,
                            terms_of_service_agreed: true,
                            only_return_existing: false,
                        },
                        a.directory.clone(),
                        None,
                    )
                    .await
                    .context("creating the ACME account")?;
                let sealed = self
                    .pier
                    .key()
                    .encrypt(serde_json::to_string(&creds)?.as_bytes(), &context);
                repo::certs::save_account(
                    self.pier.db(),
                    &a.directory,
                    account.id(),
                    &sealed,
                    now(),
                )
                .await?;
                tracing::info!(directory = %a.directory, account = account.id(), "ACME account created");
                account
            }
        };
        *slot = Some(account.clone());
        Ok(account)
    }

    /// When to renew: a random moment in the window the CA suggests (ACME Renewal Information,
    /// RFC 9773) when it offers one, else a third of the lifetime before expiry with jitter.
    async fn renewal_time(&self, leaf: &Leaf) -> i64 {
        let fallback = renew_at(leaf.not_before, leaf.not_after, rand::random::<f64>());
        let Ok(account) = self.account().await else {
            return fallback;
        };
        let der = rustls_pki_types::CertificateDer::from(leaf.der.clone());
        let Ok(id) = instant_acme::CertificateIdentifier::try_from(&der) else {
            return fallback;
        };
        match account.renewal_info(&id).await {
            Ok((info, _)) => {
                let (start, end) = (
                    info.suggested_window.start.unix_timestamp(),
                    info.suggested_window.end.unix_timestamp(),
                );
                if end <= start {
                    return start.min(fallback);
                }
                start + (rand::random::<f64>() * (end - start) as f64) as i64
            }
            Err(instant_acme::Error::Unsupported(_)) => fallback,
            Err(e) => {
                tracing::debug!(error = %e, "no renewal information; renewing at a third of the lifetime");
                fallback
            }
        }
    }

    async fn forget_account(&self) -> anyhow::Result<()> {
        *self.account.lock().await = None;
        repo::certs::delete_account(self.pier.db(), &self.pier.settings().acme.directory).await?;
        Ok(())
    }

    /// One order for `name`: (certificate chain PEM, private key PEM).
    async fn order(&self, name: &str) -> Result<(String, String), OrderFailure> {
        let ids = [Identifier::Dns(name.to_owned())];
        let account = self.account().await?;
        let mut order = match account.new_order(&NewOrder::new(&ids)).await {
            Ok(o) => o,
            Err(instant_acme::Error::Api(p))
                if p.r#type
                    .as_deref()
                    .is_some_and(|t| t.ends_with(":accountDoesNotExist")) =>
            {
                // The CA forgot the account (a test CA restarted, or it was deactivated
                // elsewhere): a new one, once.
                tracing::warn!("the CA no longer knows Pier's ACME account; registering a new one");
                self.forget_account().await?;
                self.account()
                    .await?
                    .new_order(&NewOrder::new(&ids))
                    .await
                    .map_err(acme_failure)?
            }
            Err(e) => return Err(acme_failure(e)),
        };
        let mut tokens = Vec::new();
        let result = async {
            let mut authzs = order.authorizations();
            while let Some(authz) = authzs.next().await {
                let mut authz = authz.map_err(acme_failure)?;
                if authz.status == AuthorizationStatus::Valid {
                    continue;
                }
                let mut ch =
                    authz
                        .challenge(ChallengeType::Http01)
                        .ok_or_else(|| OrderFailure {
                            invalid: false,
                            message: "the CA offered no HTTP-01 challenge".into(),
                            retry_after: None,
                        })?;
                self.challenges
                    .set(ch.token.clone(), ch.key_authorization().as_str().to_owned());
                tokens.push(ch.token.clone());
                ch.set_ready().await.map_err(acme_failure)?;
            }
            let policy = RetryPolicy::new()
                .initial_delay(Duration::from_millis(250))
                .timeout(Duration::from_secs(90));
            let status = match order.poll_ready(&policy).await {
                Ok(s) => s,
                // The order went invalid: the CA's problem document says why (a failed
                // validation, which counts against the per-hour limit).
                Err(instant_acme::Error::Api(p)) => {
                    return Err(OrderFailure {
                        invalid: true,
                        message: p.detail.clone().unwrap_or_else(|| p.to_string()),
                        retry_after: None,
                    })
                }
                Err(e) => return Err(acme_failure(e)),
            };
            if status != OrderStatus::Ready {
                return Err(OrderFailure {
                    invalid: status == OrderStatus::Invalid,
                    message: why_invalid(&mut order).await,
                    retry_after: None,
                });
            }
            let key = order.finalize().await.map_err(acme_failure)?;
            let chain = order
                .poll_certificate(&policy)
                .await
                .map_err(acme_failure)?;
            Ok((chain, key))
        }
        .await;
        for t in &tokens {
            self.challenges.clear(t);
        }
        result
    }
}

/// The CA's reason for an invalid order, from the failed challenge (or the order itself).
async fn why_invalid(order: &mut instant_acme::Order) -> String {
    {
        let mut authzs = order.authorizations();
        while let Some(Ok(authz)) = authzs.next().await {
            for ch in &authz.challenges {
                if let Some(p) = &ch.error {
                    return p
                        .detail
                        .clone()
                        .unwrap_or_else(|| p.r#type.clone().unwrap_or_default());
                }
            }
        }
    }
    order
        .state()
        .error
        .as_ref()
        .and_then(|p| p.detail.clone())
        .unwrap_or_else(|| "the CA marked the order invalid".into())
}

fn acme_failure(e: instant_acme::Error) -> OrderFailure {
    let retry_after = match &e {
        instant_acme::Error::Timeout(Some(at)) => {
            Some(at.saturating_duration_since(std::time::Instant::now()))
        }
        _ => None,
    };
    let message = match &e {
        instant_acme::Error::Api(p) => p.detail.clone().unwrap_or_else(|| p.to_string()),
        instant_acme::Error::Hyper(_) | instant_acme::Error::Other(_) => {
            format!("the CA did not answer ({e})")
        }
        other => other.to_string(),
    };
    OrderFailure {
        invalid: false,
        message,
        retry_after,
    }
}

fn key_context(name: &str) -> String {
    format!("certificate key\0{name}")
}

struct Leaf {
    der: Vec<u8>,
    serial: String,
    not_before: i64,
    not_after: i64,
}

/// The serial and validity of the first certificate in a PEM chain.
fn parse_leaf(chain: &str) -> anyhow::Result<Leaf> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(chain.as_bytes())
        .map_err(|e| anyhow::anyhow!("the CA's certificate is not PEM: {e}"))?;
    let cert = pem
        .parse_x509()
        .map_err(|e| anyhow::anyhow!("the CA's certificate does not parse: {e}"))?;
    Ok(Leaf {
        der: pem.contents.clone(),
        // The number's own bytes, as `openssl x509 -serial` shows it: not DER's leading zero
        // (added when the top bit is set).
        serial: cert
            .serial
            .to_bytes_be()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":"),
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
    })
}
