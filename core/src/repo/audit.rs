use super::*;

use crate::audit::{AuditEntry, AuditQuery};

/// An entry as it is written; `at` is the caller's clock.
pub struct NewEntry<'a> {
    pub at: i64,
    pub actor_id: Option<i64>,
    pub actor_email: &'a str,
    pub token_id: Option<i64>,
    pub address: Option<&'a str>,
    pub action: &'a str,
    pub object_kind: &'a str,
    pub object_name: &'a str,
    pub owner_id: Option<i64>,
    pub summary: &'a str,
    pub outcome: &'a str,
    pub message: Option<&'a str>,
}

pub async fn insert(db: impl SqliteExecutor<'_>, e: &NewEntry<'_>) -> Result<()> {
    sqlx::query!(
        "INSERT INTO audit_log (at, actor_id, actor_email, token_id, address, action, object_kind,
                                object_name, owner_id, summary, outcome, message)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        e.at,
        e.actor_id,
        e.actor_email,
        e.token_id,
        e.address,
        e.action,
        e.object_kind,
        e.object_name,
        e.owner_id,
        e.summary,
        e.outcome,
        e.message,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Newest first, `limit` entries older than the `before` id. `person` matches the actor or the
/// owner; `action` matches a whole action ("app.create") or a prefix ending in a dot ("app.").
pub async fn page(db: impl SqliteExecutor<'_>, q: &AuditQuery) -> Result<Vec<AuditEntry>> {
    let before = q.before.unwrap_or(i64::MAX);
    let action_prefix = q.action.as_deref().map(|a| {
        if a.ends_with('.') {
            format!("{a}%")
        } else {
            a.to_owned()
        }
    });
    let since = q.since.unwrap_or(i64::MIN);
    let until = q.until.unwrap_or(i64::MAX);
    Ok(sqlx::query_as!(
        AuditEntry,
        r#"SELECT id AS "id!", at, actor_id, actor_email, token_id, address, action, object_kind,
                  object_name, owner_id, summary, outcome, message
           FROM audit_log
           WHERE id < ?1
             AND (?2 IS NULL OR actor_id = ?2 OR owner_id = ?2)
             AND (?3 IS NULL OR action LIKE ?3)
             AND (?4 IS NULL OR object_kind = ?4)
             AND (?5 IS NULL OR object_name = ?5)
             AND at >= ?6 AND at < ?7
           ORDER BY id DESC
           LIMIT ?8"#,
        before,
        q.person,
        action_prefix,
        q.object_kind,
        q.object_name,
        since,
        until,
        q.limit,
    )
    .fetch_all(db)
    .await?)
}

/// Removes entries written before `cutoff`; the number removed.
pub async fn delete_before(db: impl SqliteExecutor<'_>, cutoff: i64) -> Result<u64> {
    Ok(sqlx::query!("DELETE FROM audit_log WHERE at < ?", cutoff)
        .execute(db)
        .await?
        .rows_affected())
}

pub async fn retention_days(db: impl SqliteExecutor<'_>) -> Result<i64> {
    Ok(
        sqlx::query_scalar!("SELECT audit_retention_days FROM instance LIMIT 1")
            .fetch_one(db)
            .await?,
    )
}

pub async fn set_retention_days(db: impl SqliteExecutor<'_>, days: i64) -> Result<()> {
    sqlx::query!("UPDATE instance SET audit_retention_days = ?", days)
        .execute(db)
        .await?;
    Ok(())
}
