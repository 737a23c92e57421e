use super::*;

/// A person's authenticator, as stored (the secret still sealed).
#[derive(Debug, Clone)]
pub struct Totp {
    pub secret: String,
    pub created_at: i64,
    pub confirmed_at: Option<i64>,
    pub last_step: i64,
}

pub async fn totp(db: impl SqliteExecutor<'_>, user_id: i64) -> Result<Option<Totp>> {
    Ok(sqlx::query_as!(
        Totp,
        "SELECT secret, created_at, confirmed_at, last_step FROM totp WHERE user_id = ?",
        user_id
    )
    .fetch_optional(db)
    .await?)
}

/// Starts (or starts over) enrolling: a new secret, not yet confirmed. A confirmed authenticator
/// is never replaced this way (the caller turns it off first).
pub async fn begin_totp(
    db: impl SqliteExecutor<'_>,
    user_id: i64,
    sealed_secret: &str,
    at: i64,
) -> Result<bool> {
    let r = sqlx::query!(
        "INSERT INTO totp (user_id, secret, created_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (user_id) DO UPDATE SET secret = ?2, created_at = ?3, last_step = 0
         WHERE totp.confirmed_at IS NULL",
        user_id,
        sealed_secret,
        at
    )
    .execute(db)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Records that the code of `step` was accepted, only if no later (or the same) step was
/// accepted before: false means the code was already used. Confirms the authenticator with the
/// first accepted code.
pub async fn accept_step(
    db: impl SqliteExecutor<'_>,
    user_id: i64,
    step: i64,
    at: i64,
) -> Result<bool> {
    let r = sqlx::query!(
        "UPDATE totp SET last_step = ?2, confirmed_at = COALESCE(confirmed_at, ?3)
         WHERE user_id = ?1 AND last_step < ?2",
        user_id,
        step,
        at
    )
    .execute(db)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Removes every second factor: the authenticator, the passkeys and the recovery codes;
/// whether there was any factor to remove.
pub async fn delete_all(db: &mut sqlx::SqliteConnection, user_id: i64) -> Result<bool> {
    let a = sqlx::query!("DELETE FROM totp WHERE user_id = ?", user_id)
        .execute(&mut *db)
        .await?;
    let p = sqlx::query!("DELETE FROM passkeys WHERE user_id = ?", user_id)
        .execute(&mut *db)
        .await?;
    sqlx::query!("DELETE FROM recovery_codes WHERE user_id = ?", user_id)
        .execute(&mut *db)
        .await?;
    Ok(a.rows_affected() + p.rows_affected() > 0)
}

/// Removes the authenticator only.
pub async fn delete_totp(db: impl SqliteExecutor<'_>, user_id: i64) -> Result<()> {
    sqlx::query!("DELETE FROM totp WHERE user_id = ?", user_id)
        .execute(db)
        .await?;
    Ok(())
}

pub async fn delete_recovery_codes(db: impl SqliteExecutor<'_>, user_id: i64) -> Result<()> {
    sqlx::query!("DELETE FROM recovery_codes WHERE user_id = ?", user_id)
        .execute(db)
        .await?;
    Ok(())
}

/// Whether the person signs in with a second factor: a confirmed authenticator or a passkey.
pub async fn enrolled(db: impl SqliteExecutor<'_>, user_id: i64) -> Result<bool> {
    Ok(sqlx::query_scalar!(
        r#"SELECT (EXISTS (SELECT 1 FROM totp WHERE user_id = ?1 AND confirmed_at IS NOT NULL)
                OR EXISTS (SELECT 1 FROM passkeys WHERE user_id = ?1)) AS "yes: bool""#,
        user_id
    )
    .fetch_one(db)
    .await?)
}

/// Whether the person has a confirmed authenticator app.
pub async fn has_totp(db: impl SqliteExecutor<'_>, user_id: i64) -> Result<bool> {
    Ok(sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM totp WHERE user_id = ? AND confirmed_at IS NOT NULL)
           AS "yes: bool""#,
        user_id
    )
    .fetch_one(db)
    .await?)
}

/// Everyone who signs in with a second factor.
pub async fn enrolled_users(db: impl SqliteExecutor<'_>) -> Result<Vec<i64>> {
    Ok(sqlx::query_scalar!(
        r#"SELECT user_id AS "user_id!: i64" FROM totp WHERE confirmed_at IS NOT NULL
           UNION SELECT user_id FROM passkeys"#
    )
    .fetch_all(db)
    .await?)
}

/// Replaces a person's recovery codes with these (hashed) ones.
pub async fn replace_recovery_codes(
    db: &mut sqlx::SqliteConnection,
    user_id: i64,
    hashes: &[String],
) -> Result<()> {
    sqlx::query!("DELETE FROM recovery_codes WHERE user_id = ?", user_id)
        .execute(&mut *db)
        .await?;
    for h in hashes {
        sqlx::query!(
            "INSERT INTO recovery_codes (user_id, code_hash) VALUES (?, ?)",
            user_id,
            h
        )
        .execute(&mut *db)
        .await?;
    }
    Ok(())
}

/// Uses up the unused code with this hash; false when there is none (wrong or already used).
pub async fn use_recovery_code(
    db: impl SqliteExecutor<'_>,
    user_id: i64,
    hash: &str,
    at: i64,
) -> Result<bool> {
    let r = sqlx::query!(
        "UPDATE recovery_codes SET used_at = ?3
         WHERE user_id = ?1 AND code_hash = ?2 AND used_at IS NULL",
        user_id,
        hash,
        at
    )
    .execute(db)
    .await?;
    Ok(r.rows_affected() == 1)
}

pub async fn recovery_codes_left(db: impl SqliteExecutor<'_>, user_id: i64) -> Result<i64> {
    Ok(sqlx::query_scalar!(
        r#"SELECT COUNT(*) AS "n!: i64" FROM recovery_codes WHERE user_id = ? AND used_at IS NULL"#,
        user_id
    )
    .fetch_one(db)
    .await?)
}

pub async fn required(db: impl SqliteExecutor<'_>) -> Result<bool> {
    Ok(
        sqlx::query_scalar!(r#"SELECT require_two_factor AS "yes: bool" FROM instance LIMIT 1"#)
            .fetch_one(db)
            .await?,
    )
}

pub async fn set_required(db: impl SqliteExecutor<'_>, yes: bool) -> Result<()> {
    sqlx::query!("UPDATE instance SET require_two_factor = ?", yes)
        .execute(db)
        .await?;
    Ok(())
}
