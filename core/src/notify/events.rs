//! The events people are told about: each with its kind, the key that makes it one occurrence,
//! the words of the e-mail, and the facts a webhook receives.

use serde_json::json;

use crate::format_time;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A deployment ended as failed (the previous one, if any, keeps serving).
    DeploymentFailed {
        app: String,
        deployment: i64,
        reason: String,
        /// Whether an older deployment keeps serving.
        previous_serves: bool,
    },
    /// A deployment Pier started because the image tag moved went live.
    TagDeployed {
        app: String,
        deployment: i64,
        digest: String,
    },
    /// A certificate could not be obtained or renewed; `since` is when the streak began.
    CertificateFailed {
        domain: String,
        error: String,
        since: i64,
    },
    /// A certificate runs out within 14 days and has not been renewed.
    CertificateExpiring { domain: String, not_after: i64 },
    /// A backup of an app failed.
    BackupFailed {
        app: String,
        job: i64,
        error: String,
    },
    /// A scheduled backup's slot passed (15 minutes ago or more) without a snapshot.
    BackupOverdue { app: String, app_id: i64, slot: i64 },
    /// A serving container crashed and was restarted (told at most once a day per deployment).
    AppCrashed {
        app: String,
        deployment: i64,
        restarts: u64,
        why: String,
        day: i64,
    },
    /// A quota is 90 % used or more (told at most once a week per quota and limit).
    QuotaNearlyUsed {
        what: &'static str,
        used: String,
        limit: String,
        week: i64,
    },
    /// Admins: the container engine has not answered since `since`.
    EngineDown { since: i64, error: String },
    /// Admins: HAProxy stopped and Pier is starting it again (at most once an hour).
    ProxyDown { at: i64, why: String },
    /// Admins: a disk Pier uses is nearly full (at most once a day per disk).
    DiskLow {
        path: String,
        free_mb: u64,
        percent_free: u64,
        day: i64,
    },
    /// Admins: a machine of the Swarm stopped answering (down or disconnected); its tasks are
    /// placed on the others.
    NodeDown {
        node: String,
        hostname: String,
        address: String,
        since: i64,
        message: String,
    },
    /// Admins: a machine that was down answers again.
    NodeBack {
        node: String,
        hostname: String,
        address: String,
        down_since: i64,
    },
    /// Sent from the account page.
    Test { nonce: String },
}

impl Event {
    pub fn kind(&self) -> &'static str {
        match self {
            Event::DeploymentFailed { .. } => "deployment.failed",
            Event::TagDeployed { .. } => "deployment.tag_moved",
            Event::CertificateFailed { .. } => "certificate.failed",
            Event::CertificateExpiring { .. } => "certificate.expiring",
            Event::BackupFailed { .. } => "backup.failed",
            Event::BackupOverdue { .. } => "backup.overdue",
            Event::AppCrashed { .. } => "app.crashed",
            Event::QuotaNearlyUsed { .. } => "quota.nearly_used",
            Event::EngineDown { .. } => "engine.down",
            Event::ProxyDown { .. } => "proxy.down",
            Event::DiskLow { .. } => "disk.low",
            Event::NodeDown { .. } => "node.down",
            Event::NodeBack { .. } => "node.back",
            Event::Test { .. } => "test",
        }
    }

    /// What makes two events the same occurrence (sent once).
    pub fn dedupe_key(&self) -> String {
        match self {
            Event::DeploymentFailed { deployment, .. } => format!("deployment.failed:{deployment}"),
            Event::TagDeployed { deployment, .. } => format!("deployment.tag_moved:{deployment}"),
            Event::CertificateFailed { domain, since, .. } => {
                format!("certificate.failed:{domain}:{since}")
            }
            Event::CertificateExpiring { domain, not_after } => {
                format!("certificate.expiring:{domain}:{not_after}")
            }
            Event::BackupFailed { job, .. } => format!("backup.failed:{job}"),
            Event::BackupOverdue { app_id, slot, .. } => format!("backup.overdue:{app_id}:{slot}"),
            Event::AppCrashed {
                deployment, day, ..
            } => format!("app.crashed:{deployment}:{day}"),
            Event::QuotaNearlyUsed {
                what, limit, week, ..
            } => format!("quota.nearly_used:{what}:{limit}:{week}"),
            Event::EngineDown { since, .. } => format!("engine.down:{since}"),
            Event::ProxyDown { at, .. } => format!("proxy.down:{}", at / 3600),
            Event::DiskLow { path, day, .. } => format!("disk.low:{path}:{day}"),
            Event::NodeDown { node, since, .. } => format!("node.down:{node}:{since}"),
            Event::NodeBack {
                node, down_since, ..
            } => format!("node.back:{node}:{down_since}"),
            Event::Test { nonce } => format!("test:{nonce}"),
        }
    }

    pub fn subject(&self) -> String {
        match self {
            Event::DeploymentFailed { app, .. } => format!("Deployment of {app} failed"),
            Event::TagDeployed { app, .. } => format!("{app} was redeployed: its image tag moved"),
            Event::CertificateFailed { domain, .. } => {
                format!("The certificate for {domain} could not be obtained")
            }
            Event::CertificateExpiring { domain, .. } => {
                format!("The certificate for {domain} expires soon")
            }
            Event::BackupFailed { app, .. } => format!("A backup of {app} failed"),
            Event::BackupOverdue { app, .. } => format!("The backup of {app} is overdue"),
            Event::AppCrashed { app, .. } => format!("{app} crashed and was restarted"),
            Event::QuotaNearlyUsed { what, .. } => format!("Your {what} quota is nearly used"),
            Event::EngineDown { .. } => "The container engine does not answer".into(),
            Event::ProxyDown { .. } => "HAProxy stopped; Pier is starting it again".into(),
            Event::DiskLow { path, .. } => format!("The disk holding {path} is nearly full"),
            Event::NodeDown { hostname, .. } => format!("The machine {hostname} is down"),
            Event::NodeBack { hostname, .. } => format!("The machine {hostname} is back"),
            Event::Test { .. } => "Test notification from Pier".into(),
        }
    }

    pub fn body(&self) -> String {
        match self {
            Event::DeploymentFailed {
                app,
                deployment,
                reason,
                previous_serves,
            } => format!(
                "Deployment #{deployment} of {app} failed: {reason}\n\n{}",
                if *previous_serves {
                    "The previous deployment keeps serving."
                } else {
                    "The app has no earlier deployment to fall back on: it is not serving."
                }
            ),
            Event::TagDeployed {
                app,
                deployment,
                digest,
            } => format!(
                "The image tag {app} follows now points at {digest}. Deployment #{deployment} is live."
            ),
            Event::CertificateFailed {
                domain,
                error,
                since,
            } => format!(
                "Pier could not obtain a certificate for {domain} (failing since {}): {error}\n\n\
                 Pier keeps trying with growing pauses; check that the domain's DNS points at this server.",
                format_time(*since)
            ),
            Event::CertificateExpiring { domain, not_after } => format!(
                "The certificate for {domain} expires {}, and renewing it has not worked yet.",
                format_time(*not_after)
            ),
            Event::BackupFailed { app, error, .. } => {
                format!("A backup of {app} failed: {error}\n\nThe next one is tried on schedule.")
            }
            Event::BackupOverdue { app, slot, .. } => format!(
                "{app} was to be backed up at {}, and no backup has succeeded since. The app's \
                 Backups section says what happened.",
                format_time(*slot)
            ),
            Event::AppCrashed {
                app, restarts, why, ..
            } => format!(
                "{app} stopped on its own ({why}) and Docker restarted it; it has restarted \
                 {restarts} time(s) so far. Its logs on the app page say more."
            ),
            Event::QuotaNearlyUsed {
                what, used, limit, ..
            } => format!(
                "Your apps use {used} of your {limit} {what} quota. Ask your admin for more, or \
                 make room, before the next app or deployment is refused."
            ),
            Event::EngineDown { since, error } => format!(
                "Pier has not reached the Docker engine since {}: {error}\n\nApps keep running \
                 as they are, but nothing can be deployed, started or stopped.",
                format_time(*since)
            ),
            Event::ProxyDown { why, .. } => format!(
                "HAProxy, which serves every site, stopped ({why}). Pier is starting it again; \
                 the admin page shows whether it runs."
            ),
            Event::DiskLow {
                path,
                free_mb,
                percent_free,
                ..
            } => format!(
                "The disk holding {path} has {free_mb} MiB free ({percent_free} %). When it is \
                 full, deployments, backups and the database fail."
            ),
            Event::NodeDown {
                hostname,
                address,
                since,
                message,
                ..
            } => format!(
                "The Swarm has not heard from {hostname} ({address}) since {}{}. Its tasks are \
                 placed on the other machines; the admin page's Machines section shows them.",
                format_time(*since),
                if message.is_empty() {
                    String::new()
                } else {
                    format!(" ({message})")
                }
            ),
            Event::NodeBack {
                hostname,
                address,
                down_since,
                ..
            } => format!(
                "{hostname} ({address}) answers again, after being down since {}. It takes \
                 tasks again as the Swarm places them.",
                format_time(*down_since)
            ),
            Event::Test { .. } => {
                "This is a test. If you read it, Pier's notifications reach you here.".into()
            }
        }
    }

    /// The event's facts, as a webhook receives them under `"event"`.
    pub fn details(&self) -> serde_json::Value {
        match self {
            Event::DeploymentFailed {
                app,
                deployment,
                reason,
                previous_serves,
            } => json!({ "app": app, "deployment": deployment, "reason": reason,
                         "previous_serves": previous_serves }),
            Event::TagDeployed {
                app,
                deployment,
                digest,
            } => json!({ "app": app, "deployment": deployment, "digest": digest }),
            Event::CertificateFailed {
                domain,
                error,
                since,
            } => json!({ "domain": domain, "error": error, "failing_since": format_time(*since) }),
            Event::CertificateExpiring { domain, not_after } => {
                json!({ "domain": domain, "not_after": format_time(*not_after) })
            }
            Event::BackupFailed { app, job, error } => {
                json!({ "app": app, "job": job, "error": error })
            }
            Event::BackupOverdue { app, slot, .. } => {
                json!({ "app": app, "due_at": format_time(*slot) })
            }
            Event::AppCrashed {
                app,
                deployment,
                restarts,
                why,
                ..
            } => json!({ "app": app, "deployment": deployment, "restarts": restarts, "why": why }),
            Event::QuotaNearlyUsed {
                what, used, limit, ..
            } => json!({ "quota": what, "used": used, "limit": limit }),
            Event::EngineDown { since, error } => {
                json!({ "since": format_time(*since), "error": error })
            }
            Event::ProxyDown { at, why } => json!({ "at": format_time(*at), "why": why }),
            Event::DiskLow {
                path,
                free_mb,
                percent_free,
                ..
            } => json!({ "path": path, "free_mb": free_mb, "percent_free": percent_free }),
            Event::NodeDown {
                node,
                hostname,
                address,
                since,
                message,
            } => json!({ "node": node, "hostname": hostname, "address": address,
                         "since": format_time(*since), "message": message }),
            Event::NodeBack {
                node,
                hostname,
                address,
                down_since,
            } => json!({ "node": node, "hostname": hostname, "address": address,
                         "down_since": format_time(*down_since) }),
            Event::Test { .. } => json!({}),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_occurrence_one_key() {
        let a = Event::DeploymentFailed {
            app: "blog".into(),
            deployment: 7,
            reason: "exited".into(),
            previous_serves: true,
        };
        let mut b = a.clone();
        if let Event::DeploymentFailed { reason, .. } = &mut b {
            *reason = "other words".into();
        }
        assert_eq!(a.dedupe_key(), b.dedupe_key());
        assert_eq!(a.kind(), "deployment.failed");
        assert!(a.body().contains("keeps serving"));
        let first = Event::DeploymentFailed {
            app: "blog".into(),
            deployment: 1,
            reason: "exited".into(),
            previous_serves: false,
        };
        assert!(first.body().contains("not serving"));
        assert_eq!(a.details()["deployment"], 7);
    }
}
