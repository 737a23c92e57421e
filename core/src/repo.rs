//! The repository layer: every SQL statement Pier runs, checked against the schema at compile
//! time (`.sqlx/` holds the offline data, so a build needs no database).

use sqlx::SqliteExecutor;

use crate::{
    model::{ApiToken, Quotas, Role, Scope, User},
    Result,
};

struct UserRow {
    id: i64,
    email: String,
    password_hash: Option<String>,
    role: String,
    disabled: bool,
    max_apps: i64,
    max_memory_mb: i64,
    max_cpus_milli: i64,
    created_at: i64,
    last_sign_in_at: Option<i64>,
}

impl From<UserRow> for User {
    fn from(r: UserRow) -> Self {
        User {
            id: r.id,
            email: r.email,
            password_hash: r.password_hash,
            // The column has a CHECK constraint; anything else is a corrupted row.
            role: Role::parse(&r.role).unwrap_or(Role::Member),
            disabled: r.disabled,
            quotas: Quotas {
                max_apps: r.max_apps,
                max_memory_mb: r.max_memory_mb,
                max_cpus_milli: r.max_cpus_milli,
            },
            created_at: r.created_at,
            last_sign_in_at: r.last_sign_in_at,
        }
    }
}

pub mod users {
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
            r#"INSERT INTO users (email, password_hash, role, max_apps, max_memory_mb, max_cpus_milli, created_at)
               VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id AS "id!: i64""#,
            email,
            password_hash,
            role,
            q.max_apps,
            q.max_memory_mb,
            q.max_cpus_milli,
            now
        )
        .fetch_one(db)
        .await?;
        Ok(id)
    }

    pub async fn by_id(db: impl SqliteExecutor<'_>, id: i64) -> Result<Option<User>> {
        let row = sqlx::query_as!(
            UserRow,
            r#"SELECT id AS "id!", email, password_hash, role, disabled AS "disabled: bool",
                      max_apps, max_memory_mb, max_cpus_milli, created_at, last_sign_in_at
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
                      max_apps, max_memory_mb, max_cpus_milli, created_at, last_sign_in_at
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
                      max_apps, max_memory_mb, max_cpus_milli, created_at, last_sign_in_at
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

    pub async fn set_quotas(db: impl SqliteExecutor<'_>, id: i64, q: Quotas) -> Result<bool> {
        let done = sqlx::query!(
            "UPDATE users SET max_apps = ?, max_memory_mb = ?, max_cpus_milli = ? WHERE id = ?",
            q.max_apps,
            q.max_memory_mb,
            q.max_cpus_milli,
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
}

pub mod invites {
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
}

pub mod sessions {
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
}

pub mod tokens {
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

    pub async fn by_hash(db: impl SqliteExecutor<'_>, hash: &str) -> Result<Option<ApiToken>> {
        let row = sqlx::query_as!(
            TokenRow,
            r#"SELECT id AS "id!", user_id, name, prefix, scope, created_at, expires_at, last_used_at
               FROM api_tokens WHERE secret_hash = ?"#,
            hash
        )
        .fetch_optional(db)
        .await?;
        Ok(row.map(ApiToken::from))
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

    /// Deletes one of a user's tokens; false when that user has no such token.
    pub async fn delete_for_user(
        db: impl SqliteExecutor<'_>,
        user_id: i64,
        id: i64,
    ) -> Result<bool> {
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
}
