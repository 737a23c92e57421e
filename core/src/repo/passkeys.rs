use super::*;

/// A stored passkey; `passkey` is webauthn-rs's credential as JSON.
#[derive(Debug, Clone)]
pub struct StoredPasskey {
    pub id: i64,
    pub name: String,
    pub credential_id: String,
    pub passkey: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

pub async fn list_for_user(
    db: impl SqliteExecutor<'_>,
    user_id: i64,
) -> Result<Vec<StoredPasskey>> {
    Ok(sqlx::query_as!(
        StoredPasskey,
        r#"SELECT id AS "id!", name, credential_id, passkey, created_at, last_used_at
         FROM passkeys WHERE user_id = ? ORDER BY id"#,
        user_id
    )
    .fetch_all(db)
    .await?)
}

/// Adds one; false when the credential is already registered (to anyone).
pub async fn insert(
    db: impl SqliteExecutor<'_>,
    user_id: i64,
    name: &str,
    credential_id: &str,
    passkey: &str,
    at: i64,
) -> Result<bool> {
    let r = sqlx::query!(
        "INSERT INTO passkeys (user_id, name, credential_id, passkey, created_at)
         VALUES (?, ?, ?, ?, ?) ON CONFLICT (credential_id) DO NOTHING",
        user_id,
        name,
        credential_id,
        passkey,
        at
    )
    .execute(db)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Records a sign-in with it, and its credential as it is now (the signature counter moves).
pub async fn used(db: impl SqliteExecutor<'_>, id: i64, passkey: &str, at: i64) -> Result<()> {
    sqlx::query!(
        "UPDATE passkeys SET passkey = ?, last_used_at = ? WHERE id = ?",
        passkey,
        at,
        id
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Removes one of the user's passkeys (scoped by the user: another's is "not there").
pub async fn delete(db: impl SqliteExecutor<'_>, user_id: i64, id: i64) -> Result<bool> {
    let r = sqlx::query!(
        "DELETE FROM passkeys WHERE id = ? AND user_id = ?",
        id,
        user_id
    )
    .execute(db)
    .await?;
    Ok(r.rows_affected() == 1)
}

pub async fn count_for_user(db: impl SqliteExecutor<'_>, user_id: i64) -> Result<i64> {
    Ok(sqlx::query_scalar!(
        r#"SELECT COUNT(*) AS "n!: i64" FROM passkeys WHERE user_id = ?"#,
        user_id
    )
    .fetch_one(db)
    .await?)
}
