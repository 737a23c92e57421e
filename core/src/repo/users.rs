use super::*;

pub async fn insert(
    db: impl SqliteExecutor<'_>,
    email: &str,
    password_hash: Option<&str>,
    role: Role,
    q: Quotas,
    now: i64,
) -> Result<i64> {
    let role = role.as_str();
    let id = sqlx::query_scalar!(
        r#"INSERT INTO users (email, password_hash, role, max_apps, max_memory_mb, max_cpus_milli, max_storage_mb, max_backup_mb, created_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id AS "id!: i64""#,
        email,
        password_hash,
        role,
        q.max_apps,
        q.max_memory_mb,
        q.max_cpus_milli,
        q.max_storage_mb,
        q.max_backup_mb,
        now
    )
    .fetch_one(db)
    .await?;
    Ok(id)
}

/// Gives a new user a handle (the tenant part of platform host names): their e-mail's local
/// part as a DNS label, or with `-<id>` when taken, or `u<id>`.
pub async fn assign_handle(
    conn: &mut sqlx::SqliteConnection,
    id: i64,
    email: &str,
) -> Result<String> {
    let base = crate::validate::handle_from_email(email);
    let candidates = [base.clone(), format!("{base}-{id}"), format!("u{id}")];
    // Never a handle with `--` in it: it separates app and handle in platform host names.
    for h in candidates.iter().filter(|h| crate::validate::handle(h)) {
        let done = sqlx::query!(
            "UPDATE users SET handle = ? WHERE id = ?
               AND NOT EXISTS (SELECT 1 FROM users WHERE handle = ?)",
            h,
            id,
            h
        )
        .execute(&mut *conn)
        .await?;
        if done.rows_affected() == 1 {
            return Ok(h.clone());
        }
    }
    Err(Error::internal("no free handle"))
}

/// Every user's handle, by id.
pub async fn handles(db: impl SqliteExecutor<'_>) -> Result<Vec<(i64, String)>> {
    let rows = sqlx::query!(
        r#"SELECT id AS "id!: i64", handle AS "handle!" FROM users WHERE handle IS NOT NULL"#
    )
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(|r| (r.id, r.handle)).collect())
}

pub async fn handle(db: impl SqliteExecutor<'_>, id: i64) -> Result<Option<String>> {
    Ok(
        sqlx::query_scalar!("SELECT handle FROM users WHERE id = ?", id)
            .fetch_optional(db)
            .await?
            .flatten(),
    )
}

pub async fn by_id(db: impl SqliteExecutor<'_>, id: i64) -> Result<Option<User>> {
    let row = sqlx::query_as!(
        UserRow,
        r#"SELECT id AS "id!", email, password_hash, role, disabled AS "disabled: bool",
                  max_apps, max_memory_mb, max_cpus_milli, max_storage_mb, max_backup_mb, created_at, last_sign_in_at
           FROM users WHERE id = ?"#,
        id
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(User::from))
}

pub async fn by_email(db: impl SqliteExecutor<'_>, email: &str) -> Result<Option<User>> {
    let row = sqlx::query_as!(
        UserRow,
        r#"SELECT id AS "id!", email, password_hash, role, disabled AS "disabled: bool",
                  max_apps, max_memory_mb, max_cpus_milli, max_storage_mb, max_backup_mb, created_at, last_sign_in_at
           FROM users WHERE email = ?"#,
        email
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(User::from))
}

pub async fn list(db: impl SqliteExecutor<'_>) -> Result<Vec<User>> {
    let rows = sqlx::query_as!(
        UserRow,
        r#"SELECT id AS "id!", email, password_hash, role, disabled AS "disabled: bool",
                  max_apps, max_memory_mb, max_cpus_milli, max_storage_mb, max_backup_mb, created_at, last_sign_in_at
           FROM users ORDER BY email"#
    )
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(User::from).collect())
}

pub async fn count(db: impl SqliteExecutor<'_>) -> Result<i64> {
    Ok(
        sqlx::query_scalar!(r#"SELECT COUNT(*) AS "n!: i64" FROM users"#)
            .fetch_one(db)
            .await?,
    )
}

/// Changes a role unless that would leave no enabled admin. Returns false when refused (or
/// when the user does not exist).
pub async fn set_role_keeping_an_admin(
    db: impl SqliteExecutor<'_>,
    id: i64,
    role: Role,
) -> Result<bool> {
    let role = role.as_str();
    let done = sqlx::query!(
        r#"UPDATE users SET role = ?1
           WHERE id = ?2
             AND (?1 = 'admin' OR role <> 'admin' OR disabled
                  OR (SELECT COUNT(*) FROM users WHERE role = 'admin' AND NOT disabled) > 1)"#,
        role,
        id
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Disables or enables a user unless that would leave no enabled admin.
pub async fn set_disabled_keeping_an_admin(
    db: impl SqliteExecutor<'_>,
    id: i64,
    disabled: bool,
) -> Result<bool> {
    let done = sqlx::query!(
        r#"UPDATE users SET disabled = ?1
           WHERE id = ?2
             AND (NOT ?1 OR role <> 'admin' OR disabled
                  OR (SELECT COUNT(*) FROM users WHERE role = 'admin' AND NOT disabled) > 1)"#,
        disabled,
        id
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Deletes a user unless they are the last enabled admin.
pub async fn delete_keeping_an_admin(db: impl SqliteExecutor<'_>, id: i64) -> Result<bool> {
    let done = sqlx::query!(
        r#"DELETE FROM users
           WHERE id = ?1
             AND (role <> 'admin' OR disabled
                  OR (SELECT COUNT(*) FROM users WHERE role = 'admin' AND NOT disabled) > 1)"#,
        id
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn set_password(db: impl SqliteExecutor<'_>, id: i64, hash: &str) -> Result<()> {
    sqlx::query!("UPDATE users SET password_hash = ? WHERE id = ?", hash, id)
        .execute(db)
        .await?;
    Ok(())
}

/// The password stops working (an invite link sets a new one).
pub async fn clear_password(db: impl SqliteExecutor<'_>, id: i64) -> Result<()> {
    sqlx::query!("UPDATE users SET password_hash = NULL WHERE id = ?", id)
        .execute(db)
        .await?;
    Ok(())
}

pub async fn set_quotas(db: impl SqliteExecutor<'_>, id: i64, q: Quotas) -> Result<bool> {
    let done = sqlx::query!(
        "UPDATE users SET max_apps = ?, max_memory_mb = ?, max_cpus_milli = ?, max_storage_mb = ?,
                max_backup_mb = ?
         WHERE id = ?",
        q.max_apps,
        q.max_memory_mb,
        q.max_cpus_milli,
        q.max_storage_mb,
        q.max_backup_mb,
        id
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn touch_sign_in(db: impl SqliteExecutor<'_>, id: i64, now: i64) -> Result<()> {
    sqlx::query!("UPDATE users SET last_sign_in_at = ? WHERE id = ?", now, id)
        .execute(db)
        .await?;
    Ok(())
}

/// The tenant's token for domain proofs, made (`fresh`) the first time it is asked for.
pub async fn domain_token(
    db: impl SqliteExecutor<'_> + Copy,
    user_id: i64,
    fresh: &str,
) -> Result<String> {
    let have = sqlx::query_scalar!("SELECT domain_token FROM users WHERE id = ?", user_id)
        .fetch_optional(db)
        .await?
        .flatten();
    if let Some(t) = have {
        return Ok(t);
    }
    sqlx::query!(
        "UPDATE users SET domain_token = ? WHERE id = ? AND domain_token IS NULL",
        fresh,
        user_id
    )
    .execute(db)
    .await?;
    sqlx::query_scalar!(
        r#"SELECT domain_token AS "t!" FROM users WHERE id = ?"#,
        user_id
    )
    .fetch_optional(db)
    .await?
    .ok_or(Error::NotFound)
}
