//! `backup_targets`: the one offsite target, and which snapshots were copied to it.

use super::*;
use crate::backup_target::TargetView;

pub struct Row<'a> {
    pub endpoint: &'a str,
    pub region: &'a str,
    pub bucket: &'a str,
    pub access_key: &'a str,
    pub secret_sealed: &'a str,
}

/// Sets the target; a changed bucket starts with a clean record.
pub async fn set(db: impl SqliteExecutor<'_>, r: &Row<'_>, now: i64) -> Result<()> {
    sqlx::query!(
        "INSERT INTO backup_targets (id, endpoint, region, bucket, access_key, secret_sealed,
                                     created_at)
         VALUES (1, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (id) DO UPDATE SET endpoint = excluded.endpoint, region = excluded.region,
             bucket = excluded.bucket, access_key = excluded.access_key,
             secret_sealed = excluded.secret_sealed, created_at = excluded.created_at,
             last_ok_at = NULL, last_error = NULL, last_error_at = NULL, failures = 0",
        r.endpoint,
        r.region,
        r.bucket,
        r.access_key,
        r.secret_sealed,
        now
    )
    .execute(db)
    .await?;
    Ok(())
}

pub async fn delete(db: &sqlx::SqlitePool) -> Result<bool> {
    let done = sqlx::query!("DELETE FROM backup_targets")
        .execute(db)
        .await?;
    Ok(done.rows_affected() > 0)
}

pub async fn sealed_secret(db: impl SqliteExecutor<'_>) -> Result<Option<String>> {
    Ok(
        sqlx::query_scalar!("SELECT secret_sealed FROM backup_targets WHERE id = 1")
            .fetch_optional(db)
            .await?,
    )
}

pub async fn view(db: &sqlx::SqlitePool) -> Result<Option<TargetView>> {
    Ok(with_secret(db).await?.map(|(v, _)| v))
}

/// The target and its sealed secret.
pub async fn with_secret(db: &sqlx::SqlitePool) -> Result<Option<(TargetView, String)>> {
    let row = sqlx::query!(
        r#"SELECT endpoint, region, bucket, access_key, secret_sealed, last_ok_at, last_error,
                  last_error_at, failures,
                  (SELECT COUNT(*) FROM snapshots
                   WHERE state = 'done' AND offsite_at IS NULL) AS "pending!: i64"
           FROM backup_targets WHERE id = 1"#
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| {
        (
            TargetView {
                endpoint: r.endpoint,
                region: r.region,
                bucket: r.bucket,
                access_key: r.access_key,
                last_ok_at: r.last_ok_at,
                last_error: r.last_error,
                last_error_at: r.last_error_at,
                failures: r.failures,
                pending: r.pending,
            },
            r.secret_sealed,
        )
    }))
}

/// A copy that began at `done_before` went through: every snapshot done by then is offsite
/// now, and the target is current as of then (a snapshot finished meanwhile goes next time).
pub async fn copied(db: &sqlx::SqlitePool, done_before: i64, now: i64) -> Result<()> {
    sqlx::query!(
        "UPDATE snapshots SET offsite_at = ?
         WHERE state = 'done' AND offsite_at IS NULL AND finished_at < ?",
        now,
        done_before
    )
    .execute(db)
    .await?;
    sqlx::query!(
        "UPDATE backup_targets SET last_ok_at = ?, last_error = NULL, last_error_at = NULL,
             failures = 0",
        done_before
    )
    .execute(db)
    .await?;
    Ok(())
}

pub async fn failed(db: impl SqliteExecutor<'_>, reason: &str, now: i64) -> Result<i64> {
    Ok(sqlx::query_scalar!(
        r#"UPDATE backup_targets SET last_error = ?, last_error_at = ?, failures = failures + 1
           RETURNING failures AS "failures!: i64""#,
        reason,
        now
    )
    .fetch_optional(db)
    .await?
    .unwrap_or(0))
}

/// Apps with finished snapshots not yet in the bucket (after a copy, their retention is applied
/// there too).
pub async fn apps_to_copy(db: impl SqliteExecutor<'_>, done_before: i64) -> Result<Vec<i64>> {
    Ok(sqlx::query_scalar!(
        "SELECT DISTINCT app_id FROM snapshots
         WHERE state = 'done' AND offsite_at IS NULL AND finished_at < ?",
        done_before
    )
    .fetch_all(db)
    .await?)
}
