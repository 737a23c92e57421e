use super::*;

pub struct Invite {
    pub id: i64,
    pub user_id: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
}

pub async fn insert(
    db: impl SqliteExecutor<'_>,
    user_id: i64,
    token_hash: &str,
    now: i64,
    expires_at: i64,
) -> Result<()> {
    sqlx::query!(
        "INSERT INTO invites (user_id, token_hash, created_at, expires_at) VALUES (?, ?, ?, ?)",
        user_id,
        token_hash,
        now,
        expires_at
    )
    .execute(db)
    .await?;
    Ok(())
}

/// A new link replaces any earlier unused one.
pub async fn delete_unused(db: impl SqliteExecutor<'_>, user_id: i64) -> Result<()> {
    sqlx::query!(
        "DELETE FROM invites WHERE user_id = ? AND used_at IS NULL",
        user_id
    )
    .execute(db)
    .await?;
    Ok(())
}

pub async fn by_token_hash(db: impl SqliteExecutor<'_>, hash: &str) -> Result<Option<Invite>> {
    Ok(sqlx::query_as!(
        Invite,
        r#"SELECT id AS "id!", user_id, expires_at, used_at FROM invites WHERE token_hash = ?"#,
        hash
    )
    .fetch_optional(db)
    .await?)
}

/// Marks an invite used; false when it was used concurrently.
pub async fn mark_used(db: impl SqliteExecutor<'_>, id: i64, now: i64) -> Result<bool> {
    let done = sqlx::query!(
        "UPDATE invites SET used_at = ? WHERE id = ? AND used_at IS NULL",
        now,
        id
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}
