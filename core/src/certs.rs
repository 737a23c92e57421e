//! Certificates as tenants and admins see them, and the rules the issuer follows (rate limits,
//! backoff, renewal time). The ACME conversation itself is the server's (`server/src/certs/`).

use serde::{Deserialize, Serialize};

use crate::{
    model::{Actor, Certificate, Role},
    now, repo, Error, Pier, Result,
};

/// How certificates are obtained; off when Pier runs without HAProxy.
#[derive(Debug, Clone)]
pub struct AcmeSettings {
    pub enabled: bool,
    /// The ACME directory URL.
    pub directory: String,
    pub email: Option<String>,
    /// An extra root to trust for the directory itself (test CAs).
    pub ca_file: Option<std::path::PathBuf>,
    /// The first retry after a failed order waits this long, doubling up to a day.
    pub retry_base_secs: i64,
    /// No new order for a name with this many failed validations in the last hour.
    pub max_invalid_per_hour: i64,
    /// Certificates per registered domain per week.
    pub weekly_budget: i64,
    /// Orders this Pier's account places in [`BUDGET_WINDOW_SECS`] (the CA's per-account limit
    /// is 300 new orders in 3 hours at Let's Encrypt; stay under it).
    pub orders_per_window: i64,
    /// Of those, how many only renewals (and the panel's own certificate) may use: a burst of
    /// new names never takes the last orders that keep serving certificates valid.
    pub renewal_reserve: i64,
    /// New certificates one tenant may order in the window.
    pub tenant_orders_per_window: i64,
    /// Order the panel host's own certificate (`PIER_PANEL_HOST`) too. Tests that count orders
    /// turn it off.
    pub panel_certificate: bool,
}

/// The window the order budgets count in.
pub const BUDGET_WINDOW_SECS: i64 = 3 * 3600;

/// Orders counted against the budgets when one more is considered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BudgetUse {
    /// Orders of the whole Pier in the window, and when the oldest of them leaves it.
    pub all: i64,
    pub all_oldest: Option<i64>,
    /// The tenant's orders in the window (0 for the panel), and their oldest.
    pub tenant: i64,
    pub tenant_oldest: Option<i64>,
}

/// Whether one more order may be placed now: None, or (why not, when to look again). Renewals
/// (and the panel's certificate, `tenant` None) may use the whole budget; new certificates leave
/// `renewal_reserve` orders to them, and each tenant has a budget of their own for new ones.
pub fn order_budget(
    s: &AcmeSettings,
    renewal: bool,
    tenant: Option<i64>,
    used: BudgetUse,
    now: i64,
) -> Option<(String, i64)> {
    let lifts = |oldest: Option<i64>| oldest.unwrap_or(now) + BUDGET_WINDOW_SECS;
    let window = BUDGET_WINDOW_SECS / 3600;
    let privileged = renewal || tenant.is_none();
    let cap = if privileged {
        s.orders_per_window
    } else {
        (s.orders_per_window - s.renewal_reserve).max(0)
    };
    if used.all >= cap {
        let why = if privileged {
            format!(
                "This Pier placed {} certificate orders in the last {window} hours, its budget with the CA: the order waits.",
                used.all
            )
        } else {
            format!(
                "This Pier placed {} certificate orders in the last {window} hours; the rest of its budget is kept for renewals, so new certificates wait.",
                used.all
            )
        };
        return Some((why, lifts(used.all_oldest)));
    }
    if !privileged && used.tenant >= s.tenant_orders_per_window {
        return Some((
            format!(
                "You placed {} certificate orders in the last {window} hours, the most one person may: the order waits.",
                used.tenant
            ),
            lifts(used.tenant_oldest),
        ));
    }
    None
}

pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";

impl Default for AcmeSettings {
    fn default() -> Self {
        AcmeSettings {
            enabled: false,
            directory: LETS_ENCRYPT.into(),
            email: None,
            ca_file: None,
            retry_base_secs: 60,
            max_invalid_per_hour: 5,
            weekly_budget: 50,
            orders_per_window: 250,
            renewal_reserve: 50,
            tenant_orders_per_window: 25,
            panel_certificate: true,
        }
    }
}

/// A certificate's state for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertView {
    /// `self-signed` (no CA certificate is wanted or possible: ACME off, wildcard, not
    /// attached), `pending`, `valid`, `renewing` or `failed`.
    pub status: String,
    pub valid_until: Option<i64>,
    /// The CA's own words the last time an order failed.
    pub error: Option<String>,
    /// When Pier tries again (pending, failed, renewing).
    pub next_try: Option<i64>,
}

impl CertView {
    pub fn self_signed() -> CertView {
        CertView {
            status: "self-signed".into(),
            valid_until: None,
            error: None,
            next_try: None,
        }
    }

    pub fn of(c: &Certificate) -> CertView {
        let waiting = c.status != "valid";
        CertView {
            status: c.status.clone(),
            valid_until: c.not_after,
            error: c.error.clone(),
            next_try: waiting.then_some(c.next_attempt_at),
        }
    }

    /// One line: "valid until 2027-01-20 10:00 UTC", "failed: … — next try …".
    pub fn describe(&self) -> String {
        let until = self
            .valid_until
            .map(|t| format!("valid until {}", crate::format_time(t)));
        let next = self.next_try.map(|t| {
            if t <= now() {
                "next try now".to_string()
            } else {
                format!("next try {}", crate::format_time(t))
            }
        });
        match self.status.as_str() {
            "self-signed" => {
                "self-signed certificate: browsers warn until a CA certificate is issued".into()
            }
            "valid" => until.unwrap_or_else(|| "valid".into()),
            "pending" => match (&self.error, next) {
                (Some(e), Some(n)) => format!("certificate pending: {e} — {n}"),
                _ => "certificate being requested".into(),
            },
            "renewing" => {
                let mut s = format!("renewing ({})", until.unwrap_or_default());
                if let Some(e) = &self.error {
                    s.push_str(&format!(": {e}"));
                }
                if let Some(n) = next {
                    s.push_str(&format!(" — {n}"));
                }
                s
            }
            _ => format!(
                "certificate failed: {} — {}",
                self.error.as_deref().unwrap_or("unknown error"),
                next.unwrap_or_default()
            ),
        }
    }
}

/// What the admin page shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertsOverview {
    pub enabled: bool,
    pub directory: String,
    pub account: Option<String>,
    pub certificates: Vec<(String, CertView)>,
    /// (registered domain, certificates issued this week, failed validations this week)
    pub week: Vec<(String, i64, i64)>,
    pub weekly_budget: i64,
    /// Orders in the last [`BUDGET_WINDOW_SECS`]: all of them, and per tenant (email, "the
    /// panel" or "a deleted account"), most first.
    pub window_orders: i64,
    pub window_by_tenant: Vec<(String, i64)>,
    pub orders_per_window: i64,
    pub renewal_reserve: i64,
    pub tenant_orders_per_window: i64,
}

/// The registered domain (public suffix + one label) a name belongs to: the unit of the CA's
/// weekly limit.
pub fn registered_domain(name: &str) -> String {
    let bare = name.strip_prefix("*.").unwrap_or(name);
    psl::domain_str(bare).unwrap_or(bare).to_owned()
}

/// Seconds until the next try after `failures` failed orders: base, doubling, at most a day.
pub fn backoff_secs(base: i64, failures: i64) -> i64 {
    let f = failures.clamp(1, 20) as u32 - 1;
    base.max(1).saturating_mul(1i64 << f.min(16)).min(86_400)
}

/// When to renew without ARI: a third of the lifetime before expiry, minus up to 1/30 of the
/// lifetime of jitter (`jitter` in 0..1), so a batch issued together does not renew together.
pub fn renew_at(not_before: i64, not_after: i64, jitter: f64) -> i64 {
    let life = (not_after - not_before).max(1);
    let spread = (life as f64 / 30.0 * jitter.clamp(0.0, 1.0)) as i64;
    not_after - life / 3 - spread
}

impl Pier {
    /// The certificate view of a domain, from its stored certificate (if any).
    pub(crate) fn cert_view(
        &self,
        name: &str,
        attached: bool,
        c: Option<&Certificate>,
    ) -> CertView {
        if !self.settings().acme.enabled || name.starts_with("*.") {
            return CertView::self_signed();
        }
        match c {
            Some(c) => CertView::of(c),
            None if attached => CertView {
                status: "pending".into(),
                valid_until: None,
                error: None,
                next_try: Some(now()),
            },
            None => CertView::self_signed(),
        }
    }

    /// "Retry now" on a domain whose certificate is pending, failed or renewing.
    pub async fn retry_certificate(&self, actor: &Actor, name: &str) -> Result<()> {
        let what = crate::audit::Change::new(crate::audit::Action::CertificateRetry, name.trim())
            .owner(actor.user_id)
            .summary("retry now");
        self.audited(actor, what, async {
            let d = self.own_domain(actor, name).await?;
            let cert = repo::certs::by_domain(self.db(), d.id).await?;
            if !match cert {
                Some(c) => repo::certs::retry_now(self.db(), c.id, now()).await?,
                None => false,
            } {
                return Err(Error::Conflict(
                    "There is nothing to retry: the certificate is valid, or no order was placed yet."
                        .into(),
                ));
            }
            self.wake_certs();
            Ok(())
        })
        .await
    }

    /// Orders a successor for a valid certificate now (admins only; the rate limits still
    /// apply, and the current certificate serves until the new one is installed).
    pub async fn renew_certificate_now(&self, actor: &Actor, name: &str) -> Result<()> {
        let what = crate::audit::Change::new(crate::audit::Action::CertificateRenew, name.trim())
            .summary("renew now");
        self.audited(actor, what, async {
            if actor.role != Role::Admin {
                return Err(Error::Forbidden);
            }
            let Some(c) = repo::certs::all(self.db())
                .await?
                .into_iter()
                .find(|c| c.name == name.trim())
            else {
                return Err(Error::NotFound);
            };
            if !repo::certs::renew_now(self.db(), c.id, now()).await? {
                return Err(Error::Conflict(
                    "Only a valid certificate can be renewed; use retry for the others.".into(),
                ));
            }
            self.wake_certs();
            Ok(())
        })
        .await
    }

    /// Every certificate, the ACME account and this week's orders (admins only).
    pub async fn certificates_overview(&self, actor: &Actor) -> Result<CertsOverview> {
        if actor.role != Role::Admin {
            return Err(Error::Forbidden);
        }
        let a = &self.settings().acme;
        let account = repo::certs::account(self.db(), &a.directory)
            .await?
            .map(|(url, _)| url);
        let certificates = repo::certs::all(self.db())
            .await?
            .iter()
            .map(|c| (c.name.clone(), CertView::of(c)))
            .collect();
        let week = repo::certs::usage_since(self.db(), now() - 7 * 86_400).await?;
        let since = now() - BUDGET_WINDOW_SECS;
        let window_orders = repo::certs::orders_since(self.db(), None, since).await?.all;
        let window_by_tenant = repo::certs::orders_by_tenant(self.db(), since).await?;
        Ok(CertsOverview {
            window_orders,
            window_by_tenant,
            orders_per_window: a.orders_per_window,
            renewal_reserve: a.renewal_reserve,
            tenant_orders_per_window: a.tenant_orders_per_window,
            enabled: a.enabled,
            directory: a.directory.clone(),
            account,
            certificates,
            week,
            weekly_budget: a.weekly_budget,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_domains() {
        assert_eq!(registered_domain("a.b.example.com"), "example.com");
        assert_eq!(registered_domain("shop.example.co.uk"), "example.co.uk");
        assert_eq!(registered_domain("*.example.org"), "example.org");
        assert_eq!(registered_domain("x.pier.test"), "pier.test");
    }

    #[test]
    fn budgets_keep_renewals_going() {
        let s = AcmeSettings {
            orders_per_window: 10,
            renewal_reserve: 3,
            tenant_orders_per_window: 4,
            ..AcmeSettings::default()
        };
        let used = |all, tenant| BudgetUse {
            all,
            all_oldest: Some(100),
            tenant,
            tenant_oldest: Some(200),
        };
        // A tenant's new certificates: their own budget first.
        assert_eq!(order_budget(&s, false, Some(1), used(3, 3), 1000), None);
        let (why, until) = order_budget(&s, false, Some(1), used(4, 4), 1000).unwrap();
        assert!(why.contains("You placed 4"), "{why}");
        assert_eq!(until, 200 + BUDGET_WINDOW_SECS);
        // The reserve: new certificates stop at 7 of 10, renewals and the panel go on to 10.
        let (why, until) = order_budget(&s, false, Some(2), used(7, 0), 1000).unwrap();
        assert!(why.contains("kept for renewals"), "{why}");
        assert_eq!(until, 100 + BUDGET_WINDOW_SECS);
        assert_eq!(order_budget(&s, true, Some(2), used(7, 9), 1000), None);
        assert_eq!(order_budget(&s, false, None, used(9, 0), 1000), None);
        let (why, _) = order_budget(&s, true, Some(2), used(10, 0), 1000).unwrap();
        assert!(why.contains("its budget with the CA"), "{why}");
    }

    #[test]
    fn backoff_doubles_to_a_day() {
        assert_eq!(backoff_secs(60, 1), 60);
        assert_eq!(backoff_secs(60, 2), 120);
        assert_eq!(backoff_secs(60, 5), 960);
        assert_eq!(backoff_secs(60, 50), 86_400);
        assert_eq!(backoff_secs(0, 1), 1);
    }

    #[test]
    fn renewal_at_a_third_of_the_lifetime() {
        // 90 days: renew 30 days before expiry, jitter up to 3 days earlier.
        let d = 86_400;
        assert_eq!(renew_at(0, 90 * d, 0.0), 60 * d);
        assert_eq!(renew_at(0, 90 * d, 1.0), 57 * d);
        // 45-day certificates (Let's Encrypt, 2028): 15 days before.
        assert_eq!(renew_at(0, 45 * d, 0.0), 30 * d);
        // Pebble's short-lived ones too.
        assert!(renew_at(100, 400, 0.5) < 300);
    }
}
