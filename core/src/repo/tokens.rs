use super::*;

pub struct TokenRow {
    id: i64,
    user_id: i64,
    name: String,
    prefix: String,
    scope: String,
    created_at: i64,
    expires_at: Option<i64>,
    last_used_at: Option<i64>,
}

impl From<TokenRow> for ApiToken {
    fn from(r: TokenRow) -> Self {
        ApiToken {
            id: r.id,
            user_id: r.user_id,
            name: r.name,
            prefix: r.prefix,
            // The column has a CHECK constraint; read is the safe reading of anything else.
            scope: Scope::parse(&r.scope).unwrap_or(Scope::Read),
            created_at: r.created_at,
            expires_at: r.expires_at,
            last_used_at: r.last_used_at,
        }
    }
}

pub struct NewToken<'a> {
    pub user_id: i64,
    pub name: &'a str,
    pub prefix: &'a str,
    pub secret_hash: &'a str,
    pub scope: Scope,
    pub expires_at: Option<i64>,
}

pub async fn insert(db: impl SqliteExecutor<'_>, t: &NewToken<'_>, now: i64) -> Result<i64> {
    let scope = t.scope.as_str();
    Ok(sqlx::query_scalar!(
        r#"INSERT INTO api_tokens (user_id, name, prefix, secret_hash, scope, created_at, expires_at)
           VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id AS "id!: i64""#,
        t.user_id,
        t.name,
        t.prefix,
        t.secret_hash,
        scope,
        now,
        t.expires_at
    )
    .fetch_one(db)
    .await?)
}

/// A token and its owner in one statement (every API request asks this first).
pub async fn by_hash_with_user(
    db: impl SqliteExecutor<'_>,
    hash: &str,
) -> Result<Option<(ApiToken, User)>> {
    let row = sqlx::query!(
        r#"SELECT t.id AS "id!", t.user_id, t.name, t.prefix, t.scope, t.created_at,
                  t.expires_at, t.last_used_at,
                  u.email, u.password_hash, u.role, u.disabled AS "disabled: bool", u.max_apps,
                  u.max_memory_mb, u.max_cpus_milli, u.max_storage_mb, u.max_backup_mb,
                  u.created_at AS user_created_at, u.last_sign_in_at
           FROM api_tokens t JOIN users u ON u.id = t.user_id
           WHERE t.secret_hash = ?"#,
        hash
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| {
        let user = User::from(UserRow {
            id: r.user_id,
            email: r.email,
            password_hash: r.password_hash,
            role: r.role,
            disabled: r.disabled,
            max_apps: r.max_apps,
            max_memory_mb: r.max_memory_mb,
            max_cpus_milli: r.max_cpus_milli,
            max_storage_mb: r.max_storage_mb,
            max_backup_mb: r.max_backup_mb,
            created_at: r.user_created_at,
            last_sign_in_at: r.last_sign_in_at,
        });
        let token = ApiToken::from(TokenRow {
            id: r.id,
            user_id: r.user_id,
            name: r.name,
            prefix: r.prefix,
            scope: r.scope,
            created_at: r.created_at,
            expires_at: r.expires_at,
            last_used_at: r.last_used_at,
        });
        (token, user)
    }))
}

pub async fn list_for_user(db: impl SqliteExecutor<'_>, user_id: i64) -> Result<Vec<ApiToken>> {
    let rows = sqlx::query_as!(
        TokenRow,
        r#"SELECT id AS "id!", user_id, name, prefix, scope, created_at, expires_at, last_used_at
           FROM api_tokens WHERE user_id = ? ORDER BY created_at DESC, id DESC"#,
        user_id
    )
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(ApiToken::from).collect())
}

/// Whether the token still exists, has not expired and its user is not disabled.
pub async fn usable(db: impl SqliteExecutor<'_>, id: i64, now: i64) -> Result<bool> {
    Ok(sqlx::query_scalar!(
        r#"SELECT COUNT(*) AS "n!: i64" FROM api_tokens t JOIN users u ON u.id = t.user_id
           WHERE t.id = ? AND (t.expires_at IS NULL OR t.expires_at > ?) AND NOT u.disabled"#,
        id,
        now
    )
    .fetch_one(db)
    .await?
        > 0)
}

/// Deletes every token of a user (a password change or reset that asks for it); how many.
pub async fn delete_all_for_user(db: impl SqliteExecutor<'_>, user_id: i64) -> Result<u64> {
    let done = sqlx::query!("DELETE FROM api_tokens WHERE user_id = ?", user_id)
        .execute(db)
        .await?;
    Ok(done.rows_affected())
}

/// Deletes one of a user's tokens; false when that user has no such token.
pub async fn delete_for_user(db: impl SqliteExecutor<'_>, user_id: i64, id: i64) -> Result<bool> {
    let done = sqlx::query!(
        "DELETE FROM api_tokens WHERE id = ? AND user_id = ?",
        id,
        user_id
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn touch(db: impl SqliteExecutor<'_>, id: i64, now: i64) -> Result<()> {
    sqlx::query!(
        "UPDATE api_tokens SET last_used_at = ? WHERE id = ?",
        now,
        id
    )
    .execute(db)
    .await?;
    Ok(())
}
