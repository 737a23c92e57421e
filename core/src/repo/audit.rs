use super::*;

use crate::audit::{AuditEntry, AuditQuery};

/// Writes many entries in one statement, from a JSON array of objects with the columns' names:
/// one statement holds SQLite's write lock for far less time than one per entry.
pub async fn insert_json(db: impl SqliteExecutor<'_>, entries_json: &str) -> Result<u64> {
    Ok(sqlx::query!(
        "INSERT INTO audit_log (at, actor_id, actor_email, token_id, address, action, object_kind,
                                object_name, owner_id, summary, outcome, message)
         SELECT json_extract(value, '$.at'), json_extract(value, '$.actor_id'),
                json_extract(value, '$.actor_email'), json_extract(value, '$.token_id'),
                json_extract(value, '$.address'), json_extract(value, '$.action'),
                json_extract(value, '$.object_kind'), json_extract(value, '$.object_name'),
                json_extract(value, '$.owner_id'), json_extract(value, '$.summary'),
                json_extract(value, '$.outcome'), json_extract(value, '$.message')
         FROM json_each(?)",
        entries_json
    )
    .execute(db)
    .await?
    .rows_affected())
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
