//! A notification as a signed JSON POST. The receiver checks
//! `X-Pier-Signature: v1=<hex HMAC-SHA-256 of "<X-Pier-Timestamp>.<body>" under the secret>`.
//! The host is resolved here and every address checked (no private networks or this machine
//! unless the operator allows them); the connection goes to the checked addresses only, so a
//! name cannot be switched to another address between check and connect. Redirects are not
//! followed.

use std::{
    future::Future,
    net::{IpAddr, SocketAddr},
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::{connect::dns::Name, connect::HttpConnector, Client};
use pier_core::{notify::forbidden_address, repo::notify::Due, Pier};
use sha2::Sha256;

const TIMEOUT: Duration = Duration::from_secs(10);

/// Resolves every name to the addresses checked beforehand.
#[derive(Clone)]
struct Checked(Vec<SocketAddr>);

impl tower::Service<Name> for Checked {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Name) -> Self::Future {
        let addrs = self.0.clone();
        Box::pin(async move { Ok(addrs.into_iter()) })
    }
}

/// `v1=<hex>` for this body at this time.
pub fn signature(secret: &str, timestamp: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(format!("{timestamp}.{body}").as_bytes());
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

async fn addresses(url: &url::Url, allow_private: bool) -> Result<Vec<SocketAddr>, String> {
    let port = url.port_or_known_default().unwrap_or(443);
    let found: Vec<SocketAddr> = match url.host() {
        Some(url::Host::Ipv4(ip)) => vec![SocketAddr::new(IpAddr::V4(ip), port)],
        Some(url::Host::Ipv6(ip)) => vec![SocketAddr::new(IpAddr::V6(ip), port)],
        Some(url::Host::Domain(d)) => tokio::net::lookup_host((d, port))
            .await
            .map_err(|e| format!("{d} could not be resolved: {e}"))?
            .collect(),
        None => return Err("the URL has no host".into()),
    };
    let allowed: Vec<SocketAddr> = found
        .into_iter()
        .filter(|a| allow_private || !forbidden_address(a.ip()))
        .collect();
    if allowed.is_empty() {
        return Err(
            "the host resolves only to addresses on this machine or a private network".into(),
        );
    }
    Ok(allowed)
}

pub async fn deliver(pier: &Pier, d: &Due) -> Result<(), String> {
    let Some((url, secret)) = pier
        .webhook_target(d.user_id)
        .await
        .map_err(|e| e.public_message())?
    else {
        return Err("no webhook is set any more".into());
    };
    let details: serde_json::Value =
        serde_json::from_str(&d.details).unwrap_or(serde_json::Value::Null);
    let body = serde_json::json!({
        "delivery": d.id,
        "kind": d.kind,
        "subject": d.subject,
        "text": d.body,
        "at": pier_core::format_time(d.created_at),
        "event": details,
    })
    .to_string();
    let timestamp = pier_core::now();
    let parsed = url::Url::parse(&url).map_err(|_| "the webhook URL is not valid".to_string())?;
    let n = &pier.settings().notify;
    let host = parsed.host_str().unwrap_or_default().to_ascii_lowercase();
    let port = parsed.port_or_known_default().unwrap_or(443);
    if !n.hosts.is_empty() && !pier_core::notify::listed(&n.hosts, &host, port) {
        return Err("the webhook's host is not on this server's list any more".into());
    }
    let allow_private =
        n.allow_private_webhooks || pier_core::notify::listed(&n.hosts, &host, port);
    let addrs = addresses(&parsed, allow_private).await?;

    let mut http = HttpConnector::new_with_resolver(Checked(addrs));
    http.enforce_http(false);
    http.set_connect_timeout(Some(TIMEOUT));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_native_roots()
        .map_err(|e| format!("no trusted roots: {e}"))?
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    let client: Client<_, Full<Bytes>> =
        Client::builder(hyper_util::rt::TokioExecutor::new()).build(https);
    let request = hyper::Request::post(url.as_str())
        .header("content-type", "application/json")
        .header("user-agent", "Pier")
        .header("x-pier-event", &d.kind)
        .header("x-pier-delivery", d.id.to_string())
        .header("x-pier-timestamp", timestamp.to_string())
        .header("x-pier-signature", signature(&secret, timestamp, &body))
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| format!("the request could not be made: {e}"))?;
    let response = tokio::time::timeout(TIMEOUT, client.request(request))
        .await
        .map_err(|_| "no answer within 10 seconds".to_string())?
        .map_err(|e| format!("could not connect: {}", root_cause(&e)))?;
    let status = response.status();
    // Read (a little of) the answer so the connection ends cleanly; its content is not kept.
    let _ = tokio::time::timeout(Duration::from_secs(2), response.into_body().collect()).await;
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("the receiver answered HTTP {}", status.as_u16()))
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_covers_the_time_and_the_body() {
        let a = signature("whsec_x", 1_700_000_000, "{}");
        assert!(a.starts_with("v1=") && a.len() == 3 + 64);
        assert_ne!(a, signature("whsec_x", 1_700_000_001, "{}"));
        assert_ne!(a, signature("whsec_x", 1_700_000_000, "{ }"));
        assert_ne!(a, signature("whsec_y", 1_700_000_000, "{}"));
    }
}
