use super::*;

pub struct Row {
    pub id: String,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub expires_at: i64,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
}

pub struct Owner<'a> {
    pub user_id: Option<i64>,
    pub user_agent: Option<&'a str>,
    pub ip: Option<&'a str>,
}

/// Inserts a new session; false when the id is taken.
pub async fn insert(
    db: impl SqliteExecutor<'_>,
    id: &str,
    data: &str,
    expires_at: i64,
    owner: &Owner<'_>,
    now: i64,
) -> Result<bool> {
    let done = sqlx::query!(
        r#"INSERT INTO sessions (id, user_id, data, expires_at, created_at, last_seen_at, user_agent, ip)
           VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6, ?7) ON CONFLICT (id) DO NOTHING"#,
        id,
        owner.user_id,
        data,
        expires_at,
        now,
        owner.user_agent,
        owner.ip
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Updates an existing session. A session that was deleted (signed out elsewhere, user
/// disabled) is not brought back by a request that was still in flight.
pub async fn update(
    db: impl SqliteExecutor<'_>,
    id: &str,
    data: &str,
    expires_at: i64,
    owner: &Owner<'_>,
    now: i64,
) -> Result<()> {
    sqlx::query!(
        r#"UPDATE sessions
           SET data = ?2, expires_at = ?3, last_seen_at = ?4, user_id = ?5,
               user_agent = COALESCE(?6, user_agent), ip = COALESCE(?7, ip)
           WHERE id = ?1"#,
        id,
        data,
        expires_at,
        now,
        owner.user_id,
        owner.user_agent,
        owner.ip
    )
    .execute(db)
    .await?;
    Ok(())
}

pub async fn load(
    db: impl SqliteExecutor<'_>,
    id: &str,
    now: i64,
) -> Result<Option<(String, i64)>> {
    let row = sqlx::query!(
        "SELECT data, expires_at FROM sessions WHERE id = ? AND expires_at > ?",
        id,
        now
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| (r.data, r.expires_at)))
}

pub async fn delete(db: impl SqliteExecutor<'_>, id: &str) -> Result<()> {
    sqlx::query!("DELETE FROM sessions WHERE id = ?", id)
        .execute(db)
        .await?;
    Ok(())
}

pub async fn delete_for_user(db: impl SqliteExecutor<'_>, user_id: i64) -> Result<u64> {
    let done = sqlx::query!("DELETE FROM sessions WHERE user_id = ?", user_id)
        .execute(db)
        .await?;
    Ok(done.rows_affected())
}

pub async fn delete_for_user_except(
    db: impl SqliteExecutor<'_>,
    user_id: i64,
    keep: &str,
) -> Result<u64> {
    let done = sqlx::query!(
        "DELETE FROM sessions WHERE user_id = ? AND id <> ?",
        user_id,
        keep
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}

pub async fn list_for_user(
    db: impl SqliteExecutor<'_>,
    user_id: i64,
    now: i64,
) -> Result<Vec<Row>> {
    Ok(sqlx::query_as!(
        Row,
        r#"SELECT id AS "id!", created_at, last_seen_at, expires_at, user_agent, ip
           FROM sessions WHERE user_id = ? AND expires_at > ? ORDER BY last_seen_at DESC"#,
        user_id,
        now
    )
    .fetch_all(db)
    .await?)
}

pub async fn touch(db: impl SqliteExecutor<'_>, id: &str, now: i64) -> Result<()> {
    sqlx::query!("UPDATE sessions SET last_seen_at = ? WHERE id = ?", now, id)
        .execute(db)
        .await?;
    Ok(())
}

pub async fn delete_expired(db: impl SqliteExecutor<'_>, now: i64) -> Result<u64> {
    let done = sqlx::query!("DELETE FROM sessions WHERE expires_at <= ?", now)
        .execute(db)
        .await?;
    Ok(done.rows_affected())
}
