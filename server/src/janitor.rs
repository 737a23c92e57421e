//! The hourly chores: expired sessions and old audit entries removed; owners told of expiring
//! certificates, overdue backups and nearly used quotas; admins of disks running full.

use std::{path::PathBuf, time::Duration};

use pier_core::Pier;

/// Runs the chores now and then every hour, until stopped.
pub async fn run(pier: Pier, data_dir: PathBuf) {
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tick.tick().await;
        match pier.purge_expired_sessions().await {
            Ok(n) if n > 0 => tracing::info!(removed = n, "purged expired sessions"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "purging expired sessions failed"),
        }
        if let Err(e) = pier.notify_expiring_certificates().await {
            tracing::warn!(error = %e, "checking certificates' expiry failed");
        }
        if let Err(e) = pier.notify_overdue_backups().await {
            tracing::warn!(error = %e, "checking overdue backups failed");
        }
        if let Err(e) = pier.notify_quotas_nearly_used().await {
            tracing::warn!(error = %e, "checking quotas failed");
        }
        let docker = match pier.runtime().info().await {
            Ok(i) if !i.root_dir.is_empty() => Some(PathBuf::from(i.root_dir)),
            _ => None,
        };
        let mut disks = vec![data_dir.as_path()];
        disks.extend(docker.as_deref());
        crate::disk::check(
            &pier,
            &disks,
            crate::disk::MIN_FREE_PERCENT,
            crate::disk::MIN_FREE_MB,
        )
        .await;
        match pier.purge_old_audit_entries().await {
            Ok(n) if n > 0 => tracing::info!(removed = n, "removed old audit entries"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "removing old audit entries failed"),
        }
    }
}
