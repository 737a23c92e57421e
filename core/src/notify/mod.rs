//! Notifications: what happened, recorded once per occurrence for the person it concerns, and
//! handed to their channels (e-mail to their address through the operator's SMTP server, and
//! their webhook). The server's worker (`server/src/notify`) delivers with retries and backoff;
//! the account page shows the last deliveries and sends a test.

pub mod events;

use std::net::IpAddr;

use rand::RngCore;

use crate::{
    audit::{Action, Change},
    model::Actor,
    now, repo, validate, Error, Pier, Result,
};

pub use events::Event;

/// A person's channels, as their account page shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channels {
    pub email: bool,
    /// Whether the operator has set a mail server (without one, e-mail cannot be sent).
    pub email_available: bool,
    pub webhook_url: Option<String>,
    /// The signing secret, for the owner's eyes (there only while a webhook is set).
    pub webhook_secret: Option<String>,
}

/// The operator's mail server, without its password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpView {
    pub host: String,
    pub port: u16,
    pub security: String,
    pub username: Option<String>,
    pub has_password: bool,
    pub from_address: String,
}

/// As typed into the admin form; an empty password keeps the saved one.
#[derive(Debug, Clone, Default)]
pub struct SmtpInput {
    pub host: String,
    pub port: String,
    pub security: String,
    pub username: String,
    pub password: String,
    pub from_address: String,
}

/// One delivery, as the account page lists it.
pub use crate::repo::notify::DeliveryRow as Delivery;

fn webhook_context(user_id: i64) -> String {
    format!("user:{user_id}:webhook")
}

fn new_webhook_secret() -> String {
    let mut b = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut b);
    format!("whsec_{}", hex::encode(b))
}

/// Whether an address is one a webhook may not be sent to: this machine, private networks,
/// link-local (cloud metadata), anything not a unicast internet address.
pub fn forbidden_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                // 100.64.0.0/10, carrier-grade NAT.
                || (v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64)
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => forbidden_address(IpAddr::V4(v4)),
            None => {
                v6.is_loopback()
                    || v6.is_unspecified()
                    || v6.is_multicast()
                    // fc00::/7 unique local, fe80::/10 link-local.
                    || (v6.segments()[0] & 0xfe00) == 0xfc00
                    || (v6.segments()[0] & 0xffc0) == 0xfe80
            }
        },
    }
}

/// Whether the operator's list (`host` or `host:port` entries) names this host and port; an
/// empty list names nothing.
pub fn listed(hosts: &[String], host: &str, port: u16) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    hosts.iter().any(|h| {
        let h = h.trim().to_ascii_lowercase();
        h == host || h == format!("{host}:{port}") || h == format!("[{host}]:{port}")
    })
}

/// Checks the operator's list of notification hosts, when there is one.
fn check_listed(hosts: &[String], host: &str, port: u16) -> std::result::Result<(), String> {
    if hosts.is_empty() || listed(hosts, host, port) {
        Ok(())
    } else {
        Err(format!(
            "This server sends notifications only to {}.",
            hosts.join(", ")
        ))
    }
}

/// Checks a webhook URL: http(s), a host, no credentials in it, not an address on this machine
/// or a private network (unless the operator allows private targets, or lists the host), and
/// on the operator's list of hosts when there is one.
pub fn webhook_url(
    raw: &str,
    allow_private: bool,
    hosts: &[String],
) -> std::result::Result<String, String> {
    let raw = raw.trim();
    if raw.len() > 2000 {
        return Err("That URL is too long.".into());
    }
    let url = url::Url::parse(raw).map_err(|_| "Enter a URL such as https://example.com/hook.")?;
    if !matches!(url.scheme(), "https" | "http") {
        return Err("The URL must start with https:// (or http://).".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("Put no user name or password in the URL; check the signature instead.".into());
    }
    let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
    let port = url.port_or_known_default().unwrap_or(443);
    check_listed(hosts, &host, port)?;
    let allow_private = allow_private || listed(hosts, &host, port);
    match url.host() {
        None => return Err("The URL needs a host.".into()),
        Some(url::Host::Ipv4(ip)) if !allow_private && forbidden_address(IpAddr::V4(ip)) => {
            return Err("That address is on this machine or a private network.".into())
        }
        Some(url::Host::Ipv6(ip)) if !allow_private && forbidden_address(IpAddr::V6(ip)) => {
            return Err("That address is on this machine or a private network.".into())
        }
        Some(url::Host::Domain(d))
            if !allow_private && (d == "localhost" || d.ends_with(".localhost")) =>
        {
            return Err("That address is on this machine.".into())
        }
        _ => {}
    }
    Ok(url.to_string())
}

impl Pier {
    /// Records `event` for `user_id` (once per occurrence) and queues it for their channels.
    /// A failure is logged, never the caller's: the thing that happened has happened.
    pub async fn notify(&self, user_id: i64, event: Event) {
        if let Err(e) = self.try_notify(user_id, &event).await {
            tracing::error!(user_id, kind = event.kind(), error = %e, "notification not recorded");
        }
    }

    /// Notifies every enabled admin.
    pub async fn notify_admins(&self, event: Event) {
        match repo::notify::admins(self.db()).await {
            Ok(ids) => {
                for id in ids {
                    self.notify(id, event.clone()).await;
                }
            }
            Err(e) => tracing::error!(error = %e, "admins not found for a notification"),
        }
    }

    /// Whether anything was queued.
    async fn try_notify(&self, user_id: i64, event: &Event) -> Result<bool> {
        let settings = repo::notify::settings(self.db(), user_id).await?;
        let email = settings.email && repo::notify::smtp(self.db()).await?.is_some();
        let webhook = settings.webhook_url.is_some();
        let t = now();
        let mut tx = self.db().begin().await?;
        let Some(id) = repo::notify::insert(
            &mut tx,
            user_id,
            event.kind(),
            &event.dedupe_key(),
            &event.subject(),
            &event.body(),
            &event.details().to_string(),
            t,
        )
        .await?
        else {
            return Ok(false);
        };
        if email {
            repo::notify::add_delivery(&mut *tx, id, "email", t).await?;
        }
        if webhook {
            repo::notify::add_delivery(&mut *tx, id, "webhook", t).await?;
        }
        tx.commit().await?;
        self.0.wake_notify.notify_one();
        Ok(email || webhook)
    }

    /// Tells the owners of certificates that run out within 14 days (renewal starts 30 days
    /// before, so these are renewals that have not worked), admins for the panel's own. Once
    /// per certificate: a renewed one has a new expiry. Run hourly.
    pub async fn notify_expiring_certificates(&self) -> Result<usize> {
        let soon = now() + 14 * 86_400;
        let mut told = 0;
        for c in repo::certs::all(self.db()).await? {
            let Some(not_after) = c.not_after.filter(|t| *t < soon) else {
                continue;
            };
            let event = Event::CertificateExpiring {
                domain: c.name.clone(),
                not_after,
            };
            match c.domain_id {
                Some(_) => {
                    if let Some(owner) = repo::domains::owner(self.db(), &c.name).await? {
                        self.notify(owner, event).await;
                    }
                }
                None => self.notify_admins(event).await,
            }
            told += 1;
        }
        Ok(told)
    }

    /// Tells the owners of apps whose scheduled backup is overdue (the slot passed 15 minutes
    /// ago or more and no snapshot succeeded since), once per missed slot. Run hourly.
    pub async fn notify_overdue_backups(&self) -> Result<usize> {
        let t = now();
        let mut told = 0;
        for (app_id, policy) in repo::backups::scheduled(self.db()).await? {
            let (last_done, _) = repo::backups::latest(self.db(), app_id).await?;
            let Some(slot) = policy.last_slot(t) else {
                continue;
            };
            if !policy.overdue(t, last_done) {
                continue;
            }
            let Some(app) = repo::apps::by_id(self.db(), app_id).await? else {
                continue;
            };
            let event = Event::BackupOverdue {
                app: app.name,
                app_id,
                slot,
            };
            self.notify(app.user_id, event).await;
            told += 1;
        }
        Ok(told)
    }

    /// Tells each person whose quota is 90 % used or more (at most once a week per quota and
    /// limit). Run hourly.
    pub async fn notify_quotas_nearly_used(&self) -> Result<usize> {
        let week = now() / (7 * 86_400);
        let mut told = 0;
        for u in repo::users::list(self.db()).await? {
            if u.disabled {
                continue;
            }
            let q = u.quotas;
            let (apps, memory, cpus) = repo::apps::usage(self.db(), u.id, None).await?;
            let storage = repo::volumes::usage(self.db(), u.id).await?;
            let backups = repo::backups::stored_for_user(self.db(), u.id).await? / (1024 * 1024);
            let cpu = validate::format_cpus;
            let checks: [(&'static str, i64, i64, String, String); 5] = [
                (
                    "apps",
                    apps,
                    q.max_apps,
                    apps.to_string(),
                    q.max_apps.to_string(),
                ),
                (
                    "memory",
                    memory,
                    q.max_memory_mb,
                    format!("{memory} MiB"),
                    format!("{} MiB", q.max_memory_mb),
                ),
                (
                    "CPU",
                    cpus,
                    q.max_cpus_milli,
                    cpu(cpus),
                    cpu(q.max_cpus_milli),
                ),
                (
                    "storage",
                    storage,
                    q.max_storage_mb,
                    format!("{storage} MiB"),
                    format!("{} MiB", q.max_storage_mb),
                ),
                (
                    "backup",
                    backups,
                    q.max_backup_mb,
                    format!("{backups} MiB"),
                    format!("{} MiB", q.max_backup_mb),
                ),
            ];
            for (what, used, limit, used_text, limit_text) in checks {
                if limit > 0 && used * 10 >= limit * 9 {
                    let event = Event::QuotaNearlyUsed {
                        what,
                        used: used_text,
                        limit: limit_text,
                        week,
                    };
                    self.notify(u.id, event).await;
                    told += 1;
                }
            }
        }
        Ok(told)
    }

    /// Waits until a notification is queued (the delivery worker's wake-up).
    pub async fn notifications_queued(&self) {
        self.0.wake_notify.notified().await
    }

    pub async fn channels(&self, actor: &Actor) -> Result<Channels> {
        let s = repo::notify::settings(self.db(), actor.user_id).await?;
        let secret = match (&s.webhook_url, &s.webhook_secret) {
            (Some(_), Some(sealed)) => Some(
                String::from_utf8(
                    self.key()
                        .decrypt(sealed, &webhook_context(actor.user_id))?,
                )
                .map_err(Error::internal)?,
            ),
            _ => None,
        };
        Ok(Channels {
            email: s.email,
            email_available: repo::notify::smtp(self.db()).await?.is_some(),
            webhook_url: s.webhook_url,
            webhook_secret: secret,
        })
    }

    /// Sets where the caller's notifications go. An empty URL removes the webhook; a new URL
    /// keeps the signing secret, `new_secret` makes another.
    pub async fn set_channels(
        &self,
        actor: &Actor,
        email: bool,
        webhook: &str,
        new_secret: bool,
    ) -> Result<Channels> {
        let what = Change::new(Action::NotifySettings, &actor.email)
            .owner(actor.user_id)
            .summary(format!(
                "e-mail {}; webhook {}{}",
                if email { "on" } else { "off" },
                if webhook.trim().is_empty() {
                    "none"
                } else {
                    "set"
                },
                if new_secret {
                    "; new signing secret"
                } else {
                    ""
                }
            ));
        self.audited(actor, what, async {
            let url = match webhook.trim() {
                "" => None,
                raw => Some(
                    webhook_url(
                        raw,
                        self.settings().notify.allow_private_webhooks,
                        &self.settings().notify.hosts,
                    )
                    .map_err(|m| Error::field("webhook_url", m))?,
                ),
            };
            let current = repo::notify::settings(self.db(), actor.user_id).await?;
            let secret = match (&url, current.webhook_secret) {
                (None, _) => None,
                (Some(_), Some(s)) if !new_secret => Some(s),
                (Some(_), _) => Some(self.key().encrypt(
                    new_webhook_secret().as_bytes(),
                    &webhook_context(actor.user_id),
                )),
            };
            let s = repo::notify::Settings {
                email,
                webhook_url: url,
                webhook_secret: secret,
            };
            repo::notify::set_settings(self.db(), actor.user_id, &s).await?;
            self.channels(actor).await
        })
        .await
    }

    /// Sends a test notification to the caller's channels.
    pub async fn send_test_notification(&self, actor: &Actor) -> Result<()> {
        let mut nonce = [0u8; 8];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let queued = self
            .try_notify(
                actor.user_id,
                &Event::Test {
                    nonce: hex::encode(nonce),
                },
            )
            .await?;
        if !queued {
            return Err(Error::Conflict(
                "Nothing to send to: set a webhook, or turn on e-mail once the operator has set a mail server."
                    .into(),
            ));
        }
        Ok(())
    }

    /// The caller's latest deliveries, newest first.
    pub async fn deliveries(&self, actor: &Actor, limit: i64) -> Result<Vec<Delivery>> {
        repo::notify::recent(self.db(), actor.user_id, limit.clamp(1, 100)).await
    }

    /// The webhook secret of `user_id` (for the delivery worker).
    pub async fn webhook_target(&self, user_id: i64) -> Result<Option<(String, String)>> {
        let s = repo::notify::settings(self.db(), user_id).await?;
        match (s.webhook_url, s.webhook_secret) {
            (Some(url), Some(sealed)) => {
                let secret = self.key().decrypt(&sealed, &webhook_context(user_id))?;
                Ok(Some((
                    url,
                    String::from_utf8(secret).map_err(Error::internal)?,
                )))
            }
            _ => Ok(None),
        }
    }

    pub async fn smtp_settings(&self, actor: &Actor) -> Result<Option<SmtpView>> {
        Self::require_admin(actor)?;
        Ok(repo::notify::smtp(self.db()).await?.map(|s| SmtpView {
            host: s.host,
            port: u16::try_from(s.port).unwrap_or(0),
            security: s.security,
            username: s.username,
            has_password: s.password.is_some(),
            from_address: s.from_address,
        }))
    }

    /// The mail server with its password (for the delivery worker).
    pub async fn smtp_with_password(&self) -> Result<Option<(repo::notify::Smtp, Option<String>)>> {
        let Some(s) = repo::notify::smtp(self.db()).await? else {
            return Ok(None);
        };
        let password = match &s.password {
            Some(sealed) => Some(
                String::from_utf8(self.key().decrypt(sealed, "smtp:password")?)
                    .map_err(Error::internal)?,
            ),
            None => None,
        };
        Ok(Some((s, password)))
    }

    /// Sets the operator's mail server (admins). `none` (no TLS) only for a server on this
    /// machine; an empty password keeps the saved one.
    pub async fn set_smtp(&self, actor: &Actor, input: SmtpInput) -> Result<SmtpView> {
        let what = Change::new(Action::SmtpSet, input.host.trim()).summary(format!(
            "mail server {}:{} ({}), from {}; password {}",
            input.host.trim(),
            input.port.trim(),
            input.security.trim(),
            input.from_address.trim(),
            if input.password.is_empty() {
                "kept"
            } else {
                "replaced"
            }
        ));
        self.audited(actor, what, async {
            Self::require_admin(actor)?;
            let mut c = validate::Checks::default();
            let host = c.check("host", validate::hostname(input.host.trim()));
            let port = c.check(
                "port",
                input
                    .port
                    .trim()
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| "A port from 1 to 65535 (587 for STARTTLS, 465 for TLS).".to_string()),
            );
            let security = input.security.trim().to_owned();
            if !matches!(security.as_str(), "starttls" | "tls" | "none") {
                c.check::<()>("security", Err("Choose STARTTLS, TLS or none.".into()));
            }
            let from = c.check("from_address", validate::email(input.from_address.trim()));
            c.finish()?;
            let host = host.unwrap_or_default();
            check_listed(&self.settings().notify.hosts, &host, port.unwrap_or_default())
                .map_err(|m| Error::field("host", m))?;
            let local = host == "localhost"
                || host
                    .parse::<IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if security == "none" && !local {
                return Err(Error::field(
                    "security",
                    "Without TLS only for a mail server on this machine: passwords and mail would cross the network in the clear.",
                ));
            }
            let current = repo::notify::smtp(self.db()).await?;
            let password = match input.password.as_str() {
                "" => current.and_then(|c| c.password),
                p => Some(self.key().encrypt(p.as_bytes(), "smtp:password")),
            };
            let username = Some(input.username.trim().to_owned()).filter(|u| !u.is_empty());
            let row = repo::notify::Smtp {
                host,
                port: i64::from(port.unwrap_or_default()),
                security,
                username,
                password,
                from_address: from.unwrap_or_default(),
            };
            repo::notify::set_smtp(self.db(), &row).await?;
            Ok(self.smtp_settings(actor).await?.expect("just saved"))
        })
        .await
    }

    pub async fn delete_smtp(&self, actor: &Actor) -> Result<()> {
        let what =
            Change::new(Action::SmtpDelete, "mail server").summary("removed the mail server");
        self.audited(actor, what, async {
            Self::require_admin(actor)?;
            repo::notify::delete_smtp(self.db()).await
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_urls_are_checked() {
        assert_eq!(
            webhook_url(" https://hooks.example.com/p?q=1 ", false, &[]).unwrap(),
            "https://hooks.example.com/p?q=1"
        );
        for bad in [
            "ftp://example.com/",
            "https://user:pw@example.com/",
            "not a url",
            "https://127.0.0.1/",
            "http://10.1.2.3/",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]/",
            "http://[fd00::1]/",
            "http://localhost:8080/",
            "http://100.64.0.1/",
            "http://[::ffff:127.0.0.1]/",
        ] {
            assert!(webhook_url(bad, false, &[]).is_err(), "{bad}");
        }
        // The operator may allow private targets (a LAN receiver; the tests' loopback one).
        assert!(webhook_url("http://127.0.0.1:9/", true, &[]).is_ok());
        // Or name the hosts notifications may go to: only those, private or not.
        let hosts = vec!["127.0.0.1:9".to_string(), "hooks.example.com".to_string()];
        assert!(webhook_url("http://127.0.0.1:9/x", false, &hosts).is_ok());
        assert!(webhook_url("http://127.0.0.1:10/x", false, &hosts).is_err());
        assert!(webhook_url("https://hooks.example.com/a", false, &hosts).is_ok());
        assert!(webhook_url("https://example.org/a", false, &hosts).is_err());
    }
}
