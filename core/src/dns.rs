//! Whether a domain's DNS points at this server. It informs, it never blocks: a tenant may
//! register and attach a domain before (or without) changing its records.

use std::net::IpAddr;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{model::Actor, Error, Pier, Result};

/// Looks names up (the server's adapter is a DNS stub resolver).
#[async_trait]
pub trait Resolve: Send + Sync {
    /// The A and AAAA addresses of `name`; Err with a short reason (no such name, timeout…).
    async fn lookup(&self, name: &str) -> std::result::Result<Vec<IpAddr>, String>;

    /// The TXT records of `name` (each record's strings joined); Err with a short reason.
    async fn txt(&self, name: &str) -> std::result::Result<Vec<String>, String> {
        let _ = name;
        Err("this resolver does not look up TXT records".into())
    }

    /// True when the operator named the DNS server (`PIER_DNS_SERVER`). Names outside the public
    /// DNS then mean whatever that server says they mean, and checking them is the operator's
    /// choice; the tests rely on it too, with `*.pier.test` names on a mock server.
    fn operator_chosen(&self) -> bool {
        false
    }
}

/// Top-level names that never belong to the public DNS (RFC 6761, 6762, 7686, 8375, 9476 and
/// ICANN's `.internal`). Asking the system's resolver about them would ask the host's own
/// network (mDNS, a corporate resolver, /etc/hosts) and show a tenant what it answers.
const SPECIAL_USE: &[&str] = &[
    "alt",
    "arpa",
    "example",
    "home.arpa",
    "internal",
    "invalid",
    "local",
    "localhost",
    "onion",
    "test",
];

/// Refuses a name the public DNS cannot answer for: a single label, a special-use name, or one
/// whose top-level name is not on the public suffix list.
pub fn public_name(name: &str) -> std::result::Result<(), String> {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    if !name.contains('.') {
        return Err(format!("{name} is a single label, not a public DNS name."));
    }
    if let Some(tld) = SPECIAL_USE
        .iter()
        .find(|s| name == **s || name.ends_with(&format!(".{s}")))
    {
        return Err(format!(
            "Names under .{tld} are not in the public DNS, so this server does not look them up."
        ));
    }
    if !psl::suffix(name.as_bytes()).is_some_and(|s| s.is_known()) {
        return Err(format!(
            "{name} is not under a public top-level domain, so this server does not look it up."
        ));
    }
    Ok(())
}

/// The answer shown to the tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsCheck {
    pub domain: String,
    /// What the name resolves to now.
    pub addresses: Vec<IpAddr>,
    /// Whether one of them is this server; None when the operator did not say which addresses
    /// are this server's, or the name does not resolve.
    pub points_here: Option<bool>,
    pub message: String,
}

impl Pier {
    /// Before ordering a certificate: Some(reason) when this server's public addresses are
    /// configured and `name` does not point at any of them (ordering would fail validation and
    /// count against the CA's limits). None: go ahead (it points here, or there is no way to tell).
    pub async fn dns_blocks_certificate(&self, name: &str) -> Option<String> {
        let ours = &self.settings().routing.public_addrs;
        let resolver = self.resolver()?;
        if ours.is_empty() {
            return None;
        }
        match lookup(resolver.as_ref(), name).await {
            Ok(addrs) if addrs.iter().any(|a| ours.contains(a)) => None,
            Ok(addrs) => Some(format!(
                "waiting for DNS: {name} points at {}, not at this server ({})",
                list(&addrs),
                describe(ours)
            )),
            Err(why) => Some(format!("waiting for DNS: {name} does not resolve ({why})")),
        }
    }

    /// Looks the caller's domain up now and compares it with this server's public addresses.
    pub async fn check_domain_dns(&self, actor: &Actor, name: &str) -> Result<DnsCheck> {
        let d = self.domain(actor, name).await?;
        let Some(resolver) = self.resolver() else {
            return Err(Error::Unavailable(
                "DNS checks are not available on this Pier.".into(),
            ));
        };
        // A wildcard is checked through one name under it.
        let probe = match d.name.strip_prefix("*.") {
            Some(rest) => format!("pier-dns-check.{rest}"),
            None => d.name.clone(),
        };
        if !resolver.operator_chosen() {
            public_name(&probe).map_err(|m| Error::field("domain", m))?;
        }
        // Each check is a lookup this server makes for the tenant.
        self.tenant_limits()
            .dns_checks
            .take_for_tenant(actor.user_id, "DNS checks")?;
        let ours = &self.settings().routing.public_addrs;
        let check = match lookup(resolver.as_ref(), &probe).await {
            Err(why) => DnsCheck {
                domain: d.name.clone(),
                addresses: Vec::new(),
                points_here: None,
                message: format!(
                    "{probe} does not resolve yet ({why}). Add an A (or AAAA) record pointing at {}.",
                    describe(ours)
                ),
            },
            Ok(addrs) => {
                let list = list(&addrs);
                let (points_here, message) = if ours.is_empty() {
                    (
                        None,
                        format!("{probe} points at {list}. (The operator has not told Pier this server's public address, so it cannot say whether that is here.)"),
                    )
                } else if addrs.iter().any(|a| ours.contains(a)) {
                    (Some(true), format!("{probe} points at this server ({list})."))
                } else {
                    (
                        Some(false),
                        format!(
                            "{probe} points at {list}, not at this server ({}). Change its A/AAAA record; until then its visitors go elsewhere.",
                            describe(ours)
                        ),
                    )
                };
                DnsCheck {
                    domain: d.name.clone(),
                    addresses: addrs,
                    points_here,
                    message,
                }
            }
        };
        Ok(check)
    }
}

/// A lookup that gives up after 5 seconds.
async fn lookup(resolver: &dyn Resolve, name: &str) -> std::result::Result<Vec<IpAddr>, String> {
    tokio::time::timeout(std::time::Duration::from_secs(5), resolver.lookup(name))
        .await
        .unwrap_or_else(|_| Err("no answer within 5 s".into()))
}

/// `a, b, c`.
fn list(addrs: &[IpAddr]) -> String {
    addrs
        .iter()
        .map(IpAddr::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn describe(ours: &[IpAddr]) -> String {
    if ours.is_empty() {
        "this server's public address".into()
    } else {
        list(ours)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_names_are_looked_up() {
        for ok in [
            "example.com",
            "app.example.com",
            "shop.co.uk",
            "x.github.io.",
        ] {
            assert!(public_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "localhost",
            "intranet",
            "db.internal",
            "printer.local",
            "a.localhost",
            "here.pier.test",
            "site.example",
            "nas.home.arpa",
            "1.0.0.127.in-addr.arpa",
            "x.onion",
            "x.alt",
            "host.corp",
            "box.lan",
            "10.0.0.1",
            "Printer.LOCAL.",
        ] {
            assert!(public_name(bad).is_err(), "{bad}");
        }
    }
}
