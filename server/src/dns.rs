//! The DNS adapter for domain checks: hickory's stub resolver, with the system's configuration
//! or one given server (`PIER_DNS_SERVER`; the tests use a mock DNS server on loopback).

use std::net::{IpAddr, SocketAddr};

use async_trait::async_trait;
use hickory_resolver::{
    config::{NameServerConfigGroup, ResolverConfig},
    name_server::TokioConnectionProvider,
    Resolver, TokioResolver,
};

pub struct DnsResolver {
    resolver: TokioResolver,
    /// Whether the operator named the server (see `Resolve::operator_chosen`).
    chosen: bool,
}

impl DnsResolver {
    pub fn new(server: Option<SocketAddr>) -> anyhow::Result<DnsResolver> {
        let mut builder = match server {
            Some(s) => Resolver::builder_with_config(
                ResolverConfig::from_parts(
                    None,
                    vec![],
                    NameServerConfigGroup::from_ips_clear(&[s.ip()], s.port(), true),
                ),
                TokioConnectionProvider::default(),
            ),
            None => Resolver::builder_tokio()?,
        };
        // Every lookup is a person asking "now" (Check DNS, Verify, before an order): a cached
        // "no such record" from a minute ago would hide the record they just added.
        builder.options_mut().cache_size = 0;
        builder.options_mut().negative_max_ttl = Some(std::time::Duration::ZERO);
        let r = builder.build();
        Ok(DnsResolver {
            resolver: r,
            chosen: server.is_some(),
        })
    }
}

#[async_trait]
impl pier_core::dns::Resolve for DnsResolver {
    async fn lookup(&self, name: &str) -> Result<Vec<IpAddr>, String> {
        // Fully qualified: no search domains appended.
        match self.resolver.lookup_ip(format!("{name}.")).await {
            Ok(found) => {
                let mut v: Vec<IpAddr> = found.iter().collect();
                v.sort();
                v.dedup();
                if v.is_empty() {
                    Err("no A or AAAA record".into())
                } else {
                    Ok(v)
                }
            }
            Err(e) if e.is_no_records_found() => Err("no A or AAAA record".into()),
            Err(e) => Err(e.to_string()),
        }
    }

    async fn txt(&self, name: &str) -> Result<Vec<String>, String> {
        match self.resolver.txt_lookup(format!("{name}.")).await {
            Ok(found) => {
                let v: Vec<String> = found
                    .iter()
                    .map(|t| {
                        t.txt_data()
                            .iter()
                            .map(|part| String::from_utf8_lossy(part).into_owned())
                            .collect::<String>()
                    })
                    .collect();
                if v.is_empty() {
                    Err("no TXT record".into())
                } else {
                    Ok(v)
                }
            }
            Err(e) if e.is_no_records_found() => Err("no TXT record".into()),
            Err(e) => Err(e.to_string()),
        }
    }

    fn operator_chosen(&self) -> bool {
        self.chosen
    }
}
