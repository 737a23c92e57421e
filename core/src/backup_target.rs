//! The offsite backup target: an S3-compatible bucket every snapshot is copied to. Admins set
//! it; its secret key is sealed with the operator's key and never shown again.

use crate::{model::Actor, now, repo, Error, Pier, Result};

/// The target as the admin page shows it (no secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetView {
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    pub access_key: String,
    pub last_ok_at: Option<i64>,
    pub last_error: Option<String>,
    pub last_error_at: Option<i64>,
    pub failures: i64,
    /// Snapshots taken but not copied yet.
    pub pending: i64,
}

/// The target as typed. An empty secret keeps the stored one.
#[derive(Debug, Clone, Default)]
pub struct TargetInput {
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    pub access_key: String,
    pub secret: String,
}

impl TargetInput {
    /// The target as the audit log tells it: where, never the secret key.
    pub fn describe(&self) -> String {
        let short = |s: &str| -> String { s.trim().chars().take(200).collect() };
        format!(
            "endpoint {}, bucket {}, region {}; {}",
            short(&self.endpoint),
            short(&self.bucket),
            short(&self.region),
            if self.secret.is_empty() {
                "secret key kept"
            } else {
                "secret key replaced"
            }
        )
    }
}

/// How the worker reaches the target.
pub struct TargetAccess {
    /// restic's location: `s3:<endpoint>/<bucket>/pier`.
    pub repository: String,
    pub access_key: String,
    pub secret: String,
    pub region: String,
}

impl std::fmt::Debug for TargetAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TargetAccess")
            .field("repository", &self.repository)
            .finish_non_exhaustive()
    }
}

const SECRET_CONTEXT: &str = "backup target: s3 secret key";

/// `http(s)://host[:port]`: a DNS name or an IP address, nothing after the port.
pub fn endpoint(s: &str) -> Option<String> {
    let s = s.trim().trim_end_matches('/').to_ascii_lowercase();
    let (scheme, rest) = s.split_once("://")?;
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (h, Some(p)),
        _ => (rest, None),
    };
    if let Some(p) = port {
        let n: u16 = p.parse().ok()?;
        if n == 0 || p.starts_with('0') {
            return None;
        }
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let ok = bare.parse::<std::net::IpAddr>().is_ok()
        || crate::validate::domain(bare, false).is_ok_and(|d| d == bare);
    (ok && !host.is_empty()).then_some(s)
}

/// S3 bucket names: 3–63 of lowercase letters, digits, hyphens and dots, starting and ending
/// with a letter or digit.
pub fn bucket(s: &str) -> bool {
    let b = s.as_bytes();
    (3..=63).contains(&b.len())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-' || *c == b'.')
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && !s.contains("..")
}

fn region(s: &str) -> bool {
    (1..=32).contains(&s.len())
        && s.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
}

fn access_key(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"+/=._-".contains(&c))
}

fn secret(s: &str) -> bool {
    (1..=256).contains(&s.len()) && s.bytes().all(|c| (0x21..0x7f).contains(&c))
}

impl TargetInput {
    fn check(&self, has_secret: bool) -> Result<(String, String, String, String)> {
        let mut errors = Vec::new();
        let ep = endpoint(&self.endpoint);
        if ep.is_none() {
            errors.push((
                "endpoint",
                "Give the endpoint as http(s)://host[:port], nothing after the port.",
            ));
        }
        let region_v = self.region.trim();
        let region_v = if region_v.is_empty() {
            "us-east-1"
        } else {
            region_v
        };
        if !region(region_v) {
            errors.push(("region", "Use lowercase letters, digits and hyphens."));
        }
        let bucket_v = self.bucket.trim();
        if !bucket(bucket_v) {
            errors.push((
                "bucket",
                "A bucket name has 3–63 lowercase letters, digits, hyphens and dots.",
            ));
        }
        let key = self.access_key.trim();
        if !access_key(key) {
            errors.push(("access_key", "Give the access key id."));
        }
        if self.secret.is_empty() && !has_secret {
            errors.push(("secret", "Give the secret key."));
        } else if !self.secret.is_empty() && !secret(&self.secret) {
            errors.push((
                "secret",
                "A secret key has 1–256 printable characters and no spaces.",
            ));
        }
        if !errors.is_empty() {
            return Err(Error::Invalid(
                errors
                    .into_iter()
                    .map(|(f, m)| crate::error::FieldError {
                        field: f.into(),
                        message: m.into(),
                    })
                    .collect(),
            ));
        }
        Ok((
            ep.unwrap_or_default(),
            region_v.to_owned(),
            bucket_v.to_owned(),
            key.to_owned(),
        ))
    }
}

impl Pier {
    /// The offsite target (admins only).
    pub async fn backup_target(&self, actor: &Actor) -> Result<Option<TargetView>> {
        Self::require_admin(actor)?;
        repo::backup_target::view(self.db()).await
    }

    /// Sets (or replaces) the offsite target; copying starts with the next round.
    pub async fn set_backup_target(
        &self,
        actor: &Actor,
        input: &TargetInput,
    ) -> Result<TargetView> {
        let what =
            crate::audit::Change::new(crate::audit::Action::BackupTargetSet, "offsite target")
                .summary(input.describe());
        self.audited(actor, what, async {
            Self::require_admin(actor)?;
            let old = repo::backup_target::sealed_secret(self.db()).await?;
            let (endpoint, region, bucket, access_key) = input.check(old.is_some())?;
            let allowed = &self.settings().backups.target_hosts;
            let host = endpoint.split_once("://").map_or("", |(_, h)| h);
            if !allowed.is_empty() && !allowed.iter().any(|a| a == host) {
                return Err(Error::field(
                    "endpoint",
                    format!("This server copies backups only to {}.", allowed.join(", ")),
                ));
            }
            let sealed = if input.secret.is_empty() {
                old.unwrap_or_default()
            } else {
                self.key().encrypt(input.secret.as_bytes(), SECRET_CONTEXT)
            };
            repo::backup_target::set(
                self.db(),
                &repo::backup_target::Row {
                    endpoint: &endpoint,
                    region: &region,
                    bucket: &bucket,
                    access_key: &access_key,
                    secret_sealed: &sealed,
                },
                now(),
            )
            .await?;
            tracing::info!(%endpoint, %bucket, admin = actor.user_id, "offsite backup target set");
            self.wake_backups();
            repo::backup_target::view(self.db())
                .await?
                .ok_or_else(|| Error::internal("target vanished"))
        })
        .await
    }

    /// Removes the offsite target (what was copied stays in the bucket).
    pub async fn delete_backup_target(&self, actor: &Actor) -> Result<()> {
        let what =
            crate::audit::Change::new(crate::audit::Action::BackupTargetDelete, "offsite target")
                .summary("removed");
        self.audited(actor, what, async {
            Self::require_admin(actor)?;
            if !repo::backup_target::delete(self.db()).await? {
                return Err(Error::NotFound);
            }
            Ok(())
        })
        .await
    }

    /// The target as it stands and how the worker reaches it, if there is one.
    pub async fn backup_target_access(&self) -> Result<Option<(TargetView, TargetAccess)>> {
        let Some((v, sealed)) = repo::backup_target::with_secret(self.db()).await? else {
            return Ok(None);
        };
        let secret = String::from_utf8(self.key().decrypt(&sealed, SECRET_CONTEXT)?)
            .map_err(|_| Error::internal("the target's secret is not text"))?;
        let access = TargetAccess {
            repository: format!("s3:{}/{}/pier", v.endpoint, v.bucket),
            access_key: v.access_key.clone(),
            secret,
            region: v.region.clone(),
        };
        Ok(Some((v, access)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_scheme_host_port_only() {
        assert_eq!(
            endpoint("http://127.0.0.1:9000/").as_deref(),
            Some("http://127.0.0.1:9000")
        );
        assert_eq!(
            endpoint("https://S3.example.com").as_deref(),
            Some("https://s3.example.com")
        );
        assert_eq!(
            endpoint("http://[::1]:9000").as_deref(),
            Some("http://[::1]:9000")
        );
        for bad in [
            "",
            "s3.example.com",
            "ftp://s3.example.com",
            "http://s3.example.com/path",
            "http://s3.example.com:0",
            "http://s3.example.com:99999",
            "http://a b.com",
            "http://s3.example.com:9000?x=1",
            "http://user@s3.example.com",
            "http://",
        ] {
            assert_eq!(endpoint(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn bucket_names_follow_s3() {
        for ok in ["abc", "my-backups", "pier.backups.1"] {
            assert!(bucket(ok), "{ok}");
        }
        for bad in [
            "ab",
            "-abc",
            "abc-",
            "ABC",
            "a_b_c",
            "a..b",
            &"a".repeat(64),
        ] {
            assert!(!bucket(bad), "{bad}");
        }
    }

    #[test]
    fn every_wrong_field_is_named() {
        let e = TargetInput {
            endpoint: "nope".into(),
            region: "US East".into(),
            bucket: "B".into(),
            access_key: "".into(),
            secret: "".into(),
        }
        .check(false)
        .unwrap_err();
        let f: Vec<&str> = e.fields().iter().map(|f| f.field.as_str()).collect();
        assert_eq!(f, ["endpoint", "region", "bucket", "access_key", "secret"]);
        // An empty secret keeps the stored one.
        let ok = TargetInput {
            endpoint: "http://127.0.0.1:9000".into(),
            region: "".into(),
            bucket: "pier".into(),
            access_key: "AKIA1".into(),
            secret: "".into(),
        }
        .check(true)
        .unwrap();
        assert_eq!(ok.1, "us-east-1");
    }
}
