use super::*;

pub async fn upsert(
    db: impl SqliteExecutor<'_>,
    user_id: i64,
    registry: &str,
    username: &str,
    sealed_password: &str,
    now: i64,
) -> Result<()> {
    sqlx::query!(
        "INSERT INTO registry_credentials (user_id, registry, username, password, created_at)
         VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (user_id, registry) DO UPDATE SET username = excluded.username,
             password = excluded.password, created_at = excluded.created_at",
        user_id,
        registry,
        username,
        sealed_password,
        now
    )
    .execute(db)
    .await?;
    Ok(())
}

pub async fn list_for_user(
    db: impl SqliteExecutor<'_>,
    user_id: i64,
) -> Result<Vec<RegistryCredential>> {
    Ok(sqlx::query_as!(
        RegistryCredential,
        r#"SELECT id AS "id!", user_id, registry, username, password AS sealed_password, created_at
           FROM registry_credentials WHERE user_id = ? ORDER BY registry"#,
        user_id
    )
    .fetch_all(db)
    .await?)
}

pub async fn for_registry(
    db: impl SqliteExecutor<'_>,
    user_id: i64,
    registry: &str,
) -> Result<Option<RegistryCredential>> {
    Ok(sqlx::query_as!(
        RegistryCredential,
        r#"SELECT id AS "id!", user_id, registry, username, password AS sealed_password, created_at
           FROM registry_credentials WHERE user_id = ? AND registry = ?"#,
        user_id,
        registry
    )
    .fetch_optional(db)
    .await?)
}

pub async fn delete(db: impl SqliteExecutor<'_>, user_id: i64, registry: &str) -> Result<bool> {
    let done = sqlx::query!(
        "DELETE FROM registry_credentials WHERE user_id = ? AND registry = ?",
        user_id,
        registry
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}
