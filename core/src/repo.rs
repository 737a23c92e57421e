//! The repository layer: every SQL statement Pier runs, checked against the schema at compile
//! time (`.sqlx/` holds the offline data, so a build needs no database).

use sqlx::SqliteExecutor;

use crate::{
    model::{
        ApiToken, App, AppKind, CapProfile, DeployStatus, Deployment, Desired, Quotas,
        RegistryCredential, Role, Scope, StoredEnv, User, Volume,
    },
    Error, Result,
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
    max_storage_mb: i64,
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
                max_storage_mb: r.max_storage_mb,
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
            r#"INSERT INTO users (email, password_hash, role, max_apps, max_memory_mb, max_cpus_milli, max_storage_mb, created_at)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id AS "id!: i64""#,
            email,
            password_hash,
            role,
            q.max_apps,
            q.max_memory_mb,
            q.max_cpus_milli,
            q.max_storage_mb,
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
                      max_apps, max_memory_mb, max_cpus_milli, max_storage_mb, created_at, last_sign_in_at
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
                      max_apps, max_memory_mb, max_cpus_milli, max_storage_mb, created_at, last_sign_in_at
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
                      max_apps, max_memory_mb, max_cpus_milli, max_storage_mb, created_at, last_sign_in_at
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
            "UPDATE users SET max_apps = ?, max_memory_mb = ?, max_cpus_milli = ?, max_storage_mb = ?
             WHERE id = ?",
            q.max_apps,
            q.max_memory_mb,
            q.max_cpus_milli,
            q.max_storage_mb,
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

pub mod instance {
    use super::*;

    /// This installation's id (created by the migration).
    pub async fn id(db: impl SqliteExecutor<'_>) -> Result<String> {
        Ok(
            sqlx::query_scalar!(r#"SELECT id AS "id!" FROM instance LIMIT 1"#)
                .fetch_one(db)
                .await?,
        )
    }
}

fn env_from_json(s: &str) -> Result<Vec<StoredEnv>> {
    serde_json::from_str(s).map_err(|e| Error::internal(format!("stored env is not JSON: {e}")))
}

fn env_to_json(env: &[StoredEnv]) -> String {
    serde_json::to_string(env).expect("env serialises")
}

pub mod apps {
    use super::*;

    pub(crate) struct AppRow {
        id: i64,
        user_id: i64,
        name: String,
        image: String,
        port: i64,
        env: String,
        memory_mb: i64,
        cpus_milli: i64,
        health_path: Option<String>,
        read_only: bool,
        kind: String,
        capabilities: String,
        desired: String,
        current_deployment_id: Option<i64>,
        last_error: Option<String>,
        created_at: i64,
        updated_at: i64,
    }

    impl AppRow {
        fn into_app(self) -> Result<App> {
            Ok(App {
                id: self.id,
                user_id: self.user_id,
                name: self.name,
                image: self.image,
                port: u16::try_from(self.port).unwrap_or(0),
                env: env_from_json(&self.env)?,
                memory_mb: self.memory_mb,
                cpus_milli: self.cpus_milli,
                health_path: self.health_path,
                read_only: self.read_only,
                kind: AppKind::parse(&self.kind).unwrap_or_default(),
                capabilities: CapProfile::parse(&self.capabilities).unwrap_or_default(),
                desired: if self.desired == "stopped" {
                    Desired::Stopped
                } else {
                    Desired::Running
                },
                current_deployment_id: self.current_deployment_id,
                last_error: self.last_error,
                created_at: self.created_at,
                updated_at: self.updated_at,
            })
        }
    }

    fn all(rows: Vec<AppRow>) -> Result<Vec<App>> {
        rows.into_iter().map(AppRow::into_app).collect()
    }

    /// An app's spec as written by create and update.
    pub struct Spec<'a> {
        pub image: &'a str,
        pub port: u16,
        pub env: &'a [StoredEnv],
        pub memory_mb: i64,
        pub cpus_milli: i64,
        pub health_path: Option<&'a str>,
        pub read_only: bool,
        pub kind: AppKind,
        pub capabilities: CapProfile,
    }

    /// Inserts an app unless that would take the owner past their quotas (checked in the same
    /// statement, so two concurrent creates cannot both squeeze in). None when over quota.
    pub async fn insert_within_quota(
        db: impl SqliteExecutor<'_>,
        user_id: i64,
        name: &str,
        spec: &Spec<'_>,
        q: Quotas,
        now: i64,
    ) -> Result<Option<i64>> {
        let env = env_to_json(spec.env);
        let port = i64::from(spec.port);
        let (kind, caps) = (spec.kind.as_str(), spec.capabilities.as_str());
        Ok(sqlx::query_scalar!(
            r#"INSERT INTO apps (user_id, name, image, port, env, memory_mb, cpus_milli, health_path, read_only,
                                 kind, capabilities, created_at, updated_at)
               SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?14, ?15, ?10, ?10
               WHERE (SELECT COUNT(*) FROM apps WHERE user_id = ?1) < ?11
                 AND (SELECT COALESCE(SUM(memory_mb), 0) FROM apps WHERE user_id = ?1) + ?6 <= ?12
                 AND (SELECT COALESCE(SUM(cpus_milli), 0) FROM apps WHERE user_id = ?1) + ?7 <= ?13
               RETURNING id AS "id!: i64""#,
            user_id,
            name,
            spec.image,
            port,
            env,
            spec.memory_mb,
            spec.cpus_milli,
            spec.health_path,
            spec.read_only,
            now,
            q.max_apps,
            q.max_memory_mb,
            q.max_cpus_milli,
            kind,
            caps
        )
        .fetch_optional(db)
        .await?)
    }

    /// Replaces an app's spec unless the owner's quotas would be exceeded. False when over.
    pub async fn update_within_quota(
        db: impl SqliteExecutor<'_>,
        id: i64,
        user_id: i64,
        spec: &Spec<'_>,
        q: Quotas,
        now: i64,
    ) -> Result<bool> {
        let env = env_to_json(spec.env);
        let port = i64::from(spec.port);
        let (kind, caps) = (spec.kind.as_str(), spec.capabilities.as_str());
        let done = sqlx::query!(
            r#"UPDATE apps SET image = ?3, port = ?4, env = ?5, memory_mb = ?6, cpus_milli = ?7,
                   health_path = ?8, read_only = ?9, updated_at = ?10, kind = ?13, capabilities = ?14
               WHERE id = ?1 AND user_id = ?2
                 AND (SELECT COALESCE(SUM(memory_mb), 0) FROM apps WHERE user_id = ?2 AND id != ?1) + ?6 <= ?11
                 AND (SELECT COALESCE(SUM(cpus_milli), 0) FROM apps WHERE user_id = ?2 AND id != ?1) + ?7 <= ?12"#,
            id,
            user_id,
            spec.image,
            port,
            env,
            spec.memory_mb,
            spec.cpus_milli,
            spec.health_path,
            spec.read_only,
            now,
            q.max_memory_mb,
            q.max_cpus_milli,
            kind,
            caps
        )
        .execute(db)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Apps, memory and CPU a user's apps take, optionally leaving one app out.
    pub async fn usage(
        db: impl SqliteExecutor<'_>,
        user_id: i64,
        except: Option<i64>,
    ) -> Result<(i64, i64, i64)> {
        let except = except.unwrap_or(0);
        let r = sqlx::query!(
            r#"SELECT COUNT(*) AS "apps!: i64", COALESCE(SUM(memory_mb), 0) AS "memory!: i64",
                      COALESCE(SUM(cpus_milli), 0) AS "cpus!: i64"
               FROM apps WHERE user_id = ? AND id != ?"#,
            user_id,
            except
        )
        .fetch_one(db)
        .await?;
        Ok((r.apps, r.memory, r.cpus))
    }

    pub async fn by_name(
        db: impl SqliteExecutor<'_>,
        user_id: i64,
        name: &str,
    ) -> Result<Option<App>> {
        sqlx::query_as!(
            AppRow,
            r#"SELECT id AS "id!", user_id, name, image, port, env, memory_mb, cpus_milli, health_path,
                      read_only, kind, capabilities, desired, current_deployment_id, last_error, created_at, updated_at
               FROM apps WHERE user_id = ? AND name = ?"#,
            user_id,
            name
        )
        .fetch_optional(db)
        .await?
        .map(AppRow::into_app)
        .transpose()
    }

    pub async fn by_id(db: impl SqliteExecutor<'_>, id: i64) -> Result<Option<App>> {
        sqlx::query_as!(
            AppRow,
            r#"SELECT id AS "id!", user_id, name, image, port, env, memory_mb, cpus_milli, health_path,
                      read_only, kind, capabilities, desired, current_deployment_id, last_error, created_at, updated_at
               FROM apps WHERE id = ?"#,
            id
        )
        .fetch_optional(db)
        .await?
        .map(AppRow::into_app)
        .transpose()
    }

    pub async fn list_for_user(db: impl SqliteExecutor<'_>, user_id: i64) -> Result<Vec<App>> {
        all(sqlx::query_as!(
            AppRow,
            r#"SELECT id AS "id!", user_id, name, image, port, env, memory_mb, cpus_milli, health_path,
                      read_only, kind, capabilities, desired, current_deployment_id, last_error, created_at, updated_at
               FROM apps WHERE user_id = ? ORDER BY name"#,
            user_id
        )
        .fetch_all(db)
        .await?)
    }

    /// Every app of every tenant: the reconciler's desired state.
    pub async fn list_all(db: impl SqliteExecutor<'_>) -> Result<Vec<App>> {
        all(sqlx::query_as!(
            AppRow,
            r#"SELECT id AS "id!", user_id, name, image, port, env, memory_mb, cpus_milli, health_path,
                      read_only, kind, capabilities, desired, current_deployment_id, last_error, created_at, updated_at
               FROM apps ORDER BY id"#
        )
        .fetch_all(db)
        .await?)
    }

    pub async fn count_for_user(db: impl SqliteExecutor<'_>, user_id: i64) -> Result<i64> {
        Ok(sqlx::query_scalar!(
            r#"SELECT COUNT(*) AS "n!: i64" FROM apps WHERE user_id = ?"#,
            user_id
        )
        .fetch_one(db)
        .await?)
    }

    pub async fn set_desired(
        db: impl SqliteExecutor<'_>,
        id: i64,
        desired: Desired,
        now: i64,
    ) -> Result<()> {
        let d = desired.as_str();
        sqlx::query!(
            "UPDATE apps SET desired = ?, last_error = NULL, updated_at = ? WHERE id = ?",
            d,
            now,
            id
        )
        .execute(db)
        .await?;
        Ok(())
    }

    pub async fn set_last_error(
        db: impl SqliteExecutor<'_>,
        id: i64,
        error: Option<&str>,
    ) -> Result<()> {
        sqlx::query!("UPDATE apps SET last_error = ? WHERE id = ?", error, id)
            .execute(db)
            .await?;
        Ok(())
    }

    pub async fn delete(db: impl SqliteExecutor<'_>, id: i64, user_id: i64) -> Result<bool> {
        let done = sqlx::query!("DELETE FROM apps WHERE id = ? AND user_id = ?", id, user_id)
            .execute(db)
            .await?;
        Ok(done.rows_affected() == 1)
    }
}

/// One page of a user's apps with each one's serving and latest deployment, read as a single
/// JSON row: SQLite builds the list, so the driver hands over one row instead of hundreds (the
/// per-row hand-off between sqlx's SQLite thread and the caller dominated list requests).
pub mod app_list {
    use serde::Deserialize;

    use super::*;

    #[derive(Deserialize)]
    struct DeploymentJson {
        id: i64,
        app_id: i64,
        number: i64,
        cause: String,
        image: String,
        digest: Option<String>,
        env: Vec<StoredEnv>,
        port: i64,
        memory_mb: i64,
        cpus_milli: i64,
        health_path: Option<String>,
        read_only: i64,
        kind: String,
        capabilities: String,
        status: String,
        gap_ms: Option<i64>,
        error: Option<String>,
        created_at: i64,
        finished_at: Option<i64>,
    }

    impl From<DeploymentJson> for Deployment {
        fn from(d: DeploymentJson) -> Self {
            Deployment {
                id: d.id,
                app_id: d.app_id,
                number: d.number,
                cause: d.cause,
                image: d.image,
                digest: d.digest,
                env: d.env,
                port: u16::try_from(d.port).unwrap_or(0),
                memory_mb: d.memory_mb,
                cpus_milli: d.cpus_milli,
                health_path: d.health_path,
                read_only: d.read_only != 0,
                kind: AppKind::parse(&d.kind).unwrap_or_default(),
                capabilities: CapProfile::parse(&d.capabilities).unwrap_or_default(),
                status: DeployStatus::parse(&d.status),
                gap_ms: d.gap_ms,
                error: d.error,
                created_at: d.created_at,
                finished_at: d.finished_at,
            }
        }
    }

    #[derive(Deserialize)]
    struct AppJson {
        id: i64,
        user_id: i64,
        name: String,
        image: String,
        port: i64,
        env: Vec<StoredEnv>,
        memory_mb: i64,
        cpus_milli: i64,
        health_path: Option<String>,
        read_only: i64,
        kind: String,
        capabilities: String,
        desired: String,
        current_deployment_id: Option<i64>,
        last_error: Option<String>,
        created_at: i64,
        updated_at: i64,
        current: Option<DeploymentJson>,
        latest: Option<DeploymentJson>,
    }

    /// Apps by name, each with (serving deployment, latest deployment).
    pub async fn page(
        db: impl SqliteExecutor<'_>,
        user_id: i64,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<(App, Option<Deployment>, Option<Deployment>)>> {
        let json = sqlx::query_scalar!(
            r#"WITH page AS (SELECT * FROM apps WHERE user_id = ?1 ORDER BY name LIMIT ?2 OFFSET ?3),
                    dep AS (SELECT id, app_id, json_object(
                        'id', id, 'app_id', app_id, 'number', number, 'cause', cause, 'image', image,
                        'digest', digest, 'env', json(env), 'port', port, 'memory_mb', memory_mb,
                        'cpus_milli', cpus_milli, 'health_path', health_path, 'read_only', read_only,
                        'kind', kind, 'capabilities', capabilities, 'gap_ms', gap_ms, 'status', status, 'error', error, 'created_at', created_at,
                        'finished_at', finished_at) AS doc, number
                      FROM deployments WHERE app_id IN (SELECT id FROM page))
               SELECT json_group_array(json_object(
                   'id', a.id, 'user_id', a.user_id, 'name', a.name, 'image', a.image, 'port', a.port,
                   'env', json(a.env), 'memory_mb', a.memory_mb, 'cpus_milli', a.cpus_milli,
                   'health_path', a.health_path, 'read_only', a.read_only, 'kind', a.kind,
                   'capabilities', a.capabilities, 'desired', a.desired,
                   'current_deployment_id', a.current_deployment_id, 'last_error', a.last_error,
                   'created_at', a.created_at, 'updated_at', a.updated_at,
                   'current', json((SELECT doc FROM dep WHERE dep.id = a.current_deployment_id)),
                   'latest', json((SELECT doc FROM dep WHERE dep.app_id = a.id ORDER BY number DESC LIMIT 1))
               )) AS "apps!: String"
               FROM page a"#,
            user_id,
            limit,
            offset
        )
        .fetch_one(db)
        .await?;
        let rows: Vec<AppJson> = serde_json::from_str(&json)
            .map_err(|e| Error::internal(format!("apps list JSON: {e}")))?;
        let mut out: Vec<_> = rows
            .into_iter()
            .map(|a| {
                let app = App {
                    id: a.id,
                    user_id: a.user_id,
                    name: a.name,
                    image: a.image,
                    port: u16::try_from(a.port).unwrap_or(0),
                    env: a.env,
                    memory_mb: a.memory_mb,
                    cpus_milli: a.cpus_milli,
                    health_path: a.health_path,
                    read_only: a.read_only != 0,
                    kind: AppKind::parse(&a.kind).unwrap_or_default(),
                    capabilities: CapProfile::parse(&a.capabilities).unwrap_or_default(),
                    desired: if a.desired == "stopped" {
                        Desired::Stopped
                    } else {
                        Desired::Running
                    },
                    current_deployment_id: a.current_deployment_id,
                    last_error: a.last_error,
                    created_at: a.created_at,
                    updated_at: a.updated_at,
                };
                (
                    app,
                    a.current.map(Deployment::from),
                    a.latest.map(Deployment::from),
                )
            })
            .collect();
        // json_group_array keeps the page's order in practice; this makes it a guarantee.
        out.sort_by(|x, y| x.0.name.cmp(&y.0.name));
        Ok(out)
    }
}

pub mod deployments {
    use super::*;

    pub(crate) struct DeploymentRow {
        id: i64,
        app_id: i64,
        number: i64,
        cause: String,
        image: String,
        digest: Option<String>,
        env: String,
        port: i64,
        memory_mb: i64,
        cpus_milli: i64,
        health_path: Option<String>,
        read_only: bool,
        kind: String,
        capabilities: String,
        status: String,
        gap_ms: Option<i64>,
        error: Option<String>,
        created_at: i64,
        finished_at: Option<i64>,
    }

    impl DeploymentRow {
        fn into_deployment(self) -> Result<Deployment> {
            Ok(Deployment {
                id: self.id,
                app_id: self.app_id,
                number: self.number,
                cause: self.cause,
                image: self.image,
                digest: self.digest,
                env: env_from_json(&self.env)?,
                port: u16::try_from(self.port).unwrap_or(0),
                memory_mb: self.memory_mb,
                cpus_milli: self.cpus_milli,
                health_path: self.health_path,
                read_only: self.read_only,
                kind: AppKind::parse(&self.kind).unwrap_or_default(),
                capabilities: CapProfile::parse(&self.capabilities).unwrap_or_default(),
                status: DeployStatus::parse(&self.status),
                gap_ms: self.gap_ms,
                error: self.error,
                created_at: self.created_at,
                finished_at: self.finished_at,
            })
        }
    }

    /// Queues a deployment of the app's current spec (the digest pins an exact image, for
    /// rollbacks), cancelling any rollout still in progress. Returns its id.
    pub async fn queue(
        conn: &mut sqlx::SqliteConnection,
        app: &App,
        cause: &str,
        digest: Option<&str>,
        now: i64,
    ) -> Result<i64> {
        sqlx::query!(
            "UPDATE deployments SET status = 'cancelled', finished_at = ?
             WHERE app_id = ? AND status IN ('queued', 'pulling', 'starting')",
            now,
            app.id
        )
        .execute(&mut *conn)
        .await?;
        let env = env_to_json(&app.env);
        let port = i64::from(app.port);
        let (kind, caps) = (app.kind.as_str(), app.capabilities.as_str());
        let id = sqlx::query_scalar!(
            r#"INSERT INTO deployments (app_id, number, cause, image, digest, env, port, memory_mb, cpus_milli,
                                        health_path, read_only, kind, capabilities, status, created_at)
               VALUES (?1, (SELECT COALESCE(MAX(number), 0) + 1 FROM deployments WHERE app_id = ?1),
                       ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?12, ?13, 'queued', ?11)
               RETURNING id AS "id!: i64""#,
            app.id,
            cause,
            app.image,
            digest,
            env,
            port,
            app.memory_mb,
            app.cpus_milli,
            app.health_path,
            app.read_only,
            now,
            kind,
            caps
        )
        .fetch_one(&mut *conn)
        .await?;
        sqlx::query!(
            "UPDATE apps SET last_error = NULL, updated_at = ? WHERE id = ?",
            now,
            app.id
        )
        .execute(&mut *conn)
        .await?;
        // History is bounded: the newest deployments, and always the one that serves.
        sqlx::query!(
            "DELETE FROM deployments WHERE app_id = ?1
               AND id != COALESCE((SELECT current_deployment_id FROM apps WHERE id = ?1), 0)
               AND id NOT IN (SELECT id FROM deployments WHERE app_id = ?1 ORDER BY number DESC LIMIT ?2)",
            app.id,
            KEEP_DEPLOYMENTS
        )
        .execute(&mut *conn)
        .await?;
        Ok(id)
    }

    /// How many deployments of an app are kept (plus the serving one).
    pub const KEEP_DEPLOYMENTS: i64 = 50;

    pub async fn by_id(db: impl SqliteExecutor<'_>, id: i64) -> Result<Option<Deployment>> {
        sqlx::query_as!(
            DeploymentRow,
            r#"SELECT id AS "id!", app_id, number, cause, image, digest, env, port, memory_mb, cpus_milli,
                      health_path, read_only, kind, capabilities, status, gap_ms, error, created_at, finished_at
               FROM deployments WHERE id = ?"#,
            id
        )
        .fetch_optional(db)
        .await?
        .map(DeploymentRow::into_deployment)
        .transpose()
    }

    pub async fn by_number(
        db: impl SqliteExecutor<'_>,
        app_id: i64,
        number: i64,
    ) -> Result<Option<Deployment>> {
        sqlx::query_as!(
            DeploymentRow,
            r#"SELECT id AS "id!", app_id, number, cause, image, digest, env, port, memory_mb, cpus_milli,
                      health_path, read_only, kind, capabilities, status, gap_ms, error, created_at, finished_at
               FROM deployments WHERE app_id = ? AND number = ?"#,
            app_id,
            number
        )
        .fetch_optional(db)
        .await?
        .map(DeploymentRow::into_deployment)
        .transpose()
    }

    /// An app's deployments, newest first.
    pub async fn list_for_app(
        db: impl SqliteExecutor<'_>,
        app_id: i64,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<Deployment>> {
        sqlx::query_as!(
            DeploymentRow,
            r#"SELECT id AS "id!", app_id, number, cause, image, digest, env, port, memory_mb, cpus_milli,
                      health_path, read_only, kind, capabilities, status, gap_ms, error, created_at, finished_at
               FROM deployments WHERE app_id = ? ORDER BY number DESC LIMIT ? OFFSET ?"#,
            app_id,
            limit,
            offset
        )
        .fetch_all(db)
        .await?
        .into_iter()
        .map(DeploymentRow::into_deployment)
        .collect()
    }

    /// Every deployment still being rolled out, across all apps.
    pub async fn in_progress(db: impl SqliteExecutor<'_>) -> Result<Vec<Deployment>> {
        sqlx::query_as!(
            DeploymentRow,
            r#"SELECT id AS "id!", app_id, number, cause, image, digest, env, port, memory_mb, cpus_milli,
                      health_path, read_only, kind, capabilities, status, gap_ms, error, created_at, finished_at
               FROM deployments WHERE status IN ('queued', 'pulling', 'starting') ORDER BY id"#
        )
        .fetch_all(db)
        .await?
        .into_iter()
        .map(DeploymentRow::into_deployment)
        .collect()
    }

    /// Moves an in-progress deployment on; false when it is no longer in progress (cancelled).
    pub async fn advance(
        db: impl SqliteExecutor<'_>,
        id: i64,
        status: DeployStatus,
    ) -> Result<bool> {
        let s = status.as_str();
        let done = sqlx::query!(
            "UPDATE deployments SET status = ? WHERE id = ? AND status IN ('queued', 'pulling', 'starting')",
            s,
            id
        )
        .execute(db)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records how long a stop-first replacement left the app without a container that serves.
    pub async fn set_gap(db: impl SqliteExecutor<'_>, id: i64, gap_ms: i64) -> Result<()> {
        sqlx::query!("UPDATE deployments SET gap_ms = ? WHERE id = ?", gap_ms, id)
            .execute(db)
            .await?;
        Ok(())
    }

    pub async fn set_digest(db: impl SqliteExecutor<'_>, id: i64, digest: &str) -> Result<()> {
        sqlx::query!("UPDATE deployments SET digest = ? WHERE id = ?", digest, id)
            .execute(db)
            .await?;
        Ok(())
    }

    /// (image, digest) of the deployments whose images stay on the engine: the last `keep` of
    /// each app, every app's serving one, and any in progress.
    pub async fn kept_images(
        db: impl SqliteExecutor<'_>,
        keep: i64,
    ) -> Result<Vec<(String, Option<String>)>> {
        let rows = sqlx::query!(
            r#"SELECT d.image, d.digest FROM deployments d
               WHERE d.status IN ('queued', 'pulling', 'starting')
                  OR d.id IN (SELECT current_deployment_id FROM apps)
                  OR (SELECT COUNT(*) FROM deployments n
                      WHERE n.app_id = d.app_id AND n.number > d.number) < ?"#,
            keep
        )
        .fetch_all(db)
        .await?;
        Ok(rows.into_iter().map(|r| (r.image, r.digest)).collect())
    }

    /// Ends an in-progress deployment as failed with its reason; false when it had already ended.
    pub async fn fail(db: impl SqliteExecutor<'_>, id: i64, error: &str, now: i64) -> Result<bool> {
        let done = sqlx::query!(
            "UPDATE deployments SET status = 'failed', error = ?, finished_at = ?
             WHERE id = ? AND status IN ('queued', 'pulling', 'starting')",
            error,
            now,
            id
        )
        .execute(db)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Makes a healthy deployment the one that serves: it becomes `running`, the app points at
    /// it and the deployment it replaces becomes `superseded` — all or nothing. False when the
    /// deployment was cancelled meanwhile.
    pub async fn promote(conn: &mut sqlx::SqliteConnection, id: i64, now: i64) -> Result<bool> {
        let done = sqlx::query!(
            "UPDATE deployments SET status = 'running', error = NULL, finished_at = ?
             WHERE id = ? AND status IN ('queued', 'pulling', 'starting')",
            now,
            id
        )
        .execute(&mut *conn)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        sqlx::query!(
            "UPDATE deployments SET status = 'superseded'
             WHERE app_id = (SELECT app_id FROM deployments WHERE id = ?1) AND status = 'running' AND id != ?1",
            id
        )
        .execute(&mut *conn)
        .await?;
        sqlx::query!(
            "UPDATE apps SET current_deployment_id = ?1, last_error = NULL
             WHERE id = (SELECT app_id FROM deployments WHERE id = ?1)",
            id
        )
        .execute(&mut *conn)
        .await?;
        Ok(true)
    }
}

pub mod volumes {
    use super::*;

    struct VolumeRow {
        id: i64,
        user_id: i64,
        name: String,
        app_id: Option<i64>,
        app_name: Option<String>,
        path: String,
        size_mb: i64,
        created_at: i64,
    }

    impl From<VolumeRow> for Volume {
        fn from(r: VolumeRow) -> Self {
            Volume {
                id: r.id,
                user_id: r.user_id,
                name: r.name,
                app_id: r.app_id,
                app_name: r.app_name,
                path: r.path,
                size_mb: r.size_mb,
                created_at: r.created_at,
            }
        }
    }

    /// A tenant's volumes by name, with the app each belongs to.
    pub async fn list_for_user(db: impl SqliteExecutor<'_>, user_id: i64) -> Result<Vec<Volume>> {
        let rows = sqlx::query_as!(
            VolumeRow,
            r#"SELECT v.id AS "id!", v.user_id, v.name, v.app_id, a.name AS "app_name?", v.path,
                      v.size_mb, v.created_at
               FROM volumes v LEFT JOIN apps a ON a.id = v.app_id
               WHERE v.user_id = ? ORDER BY v.name"#,
            user_id
        )
        .fetch_all(db)
        .await?;
        Ok(rows.into_iter().map(Volume::from).collect())
    }

    /// Every volume of every tenant: the reconciler's desired state.
    pub async fn list_all(db: impl SqliteExecutor<'_>) -> Result<Vec<Volume>> {
        let rows = sqlx::query_as!(
            VolumeRow,
            r#"SELECT v.id AS "id!", v.user_id, v.name, v.app_id, a.name AS "app_name?", v.path,
                      v.size_mb, v.created_at
               FROM volumes v LEFT JOIN apps a ON a.id = v.app_id ORDER BY v.id"#
        )
        .fetch_all(db)
        .await?;
        Ok(rows.into_iter().map(Volume::from).collect())
    }

    /// The volumes an app mounts, by path.
    pub async fn for_app(db: impl SqliteExecutor<'_>, app_id: i64) -> Result<Vec<Volume>> {
        let rows = sqlx::query_as!(
            VolumeRow,
            r#"SELECT v.id AS "id!", v.user_id, v.name, v.app_id, a.name AS "app_name?", v.path,
                      v.size_mb, v.created_at
               FROM volumes v JOIN apps a ON a.id = v.app_id
               WHERE v.app_id = ? ORDER BY v.path"#,
            app_id
        )
        .fetch_all(db)
        .await?;
        Ok(rows.into_iter().map(Volume::from).collect())
    }

    /// A volume to make for an app.
    pub struct NewVolume<'a> {
        pub user_id: i64,
        pub app_id: i64,
        pub name: &'a str,
        pub path: &'a str,
        pub size_mb: i64,
    }

    /// A new volume for an app, unless the owner's storage quota would be exceeded (checked in
    /// the same statement). None when over quota.
    pub async fn insert_within_quota(
        db: impl SqliteExecutor<'_>,
        v: &NewVolume<'_>,
        max_storage_mb: i64,
        now: i64,
    ) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar!(
            r#"INSERT INTO volumes (user_id, app_id, name, path, size_mb, created_at)
               SELECT ?1, ?2, ?3, ?4, ?5, ?6
               WHERE (SELECT COALESCE(SUM(size_mb), 0) FROM volumes WHERE user_id = ?1) + ?5 <= ?7
               RETURNING id AS "id!: i64""#,
            v.user_id,
            v.app_id,
            v.name,
            v.path,
            v.size_mb,
            now,
            max_storage_mb
        )
        .fetch_optional(db)
        .await?)
    }

    /// Gives a kept volume of the tenant to an app (or moves it to another path of the same
    /// app). False when it belongs to another app.
    pub async fn attach(
        db: impl SqliteExecutor<'_>,
        user_id: i64,
        id: i64,
        app_id: i64,
        path: &str,
    ) -> Result<bool> {
        let done = sqlx::query!(
            "UPDATE volumes SET app_id = ?3, path = ?4
             WHERE id = ?1 AND user_id = ?2 AND (app_id IS NULL OR app_id = ?3)",
            id,
            user_id,
            app_id,
            path
        )
        .execute(db)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Takes every volume off an app except those in `keep` (they stay, unattached).
    pub async fn detach_others(
        conn: &mut sqlx::SqliteConnection,
        app_id: i64,
        keep: &[i64],
    ) -> Result<()> {
        let keep = serde_json::to_string(keep).expect("ids serialise");
        sqlx::query!(
            "UPDATE volumes SET app_id = NULL
             WHERE app_id = ? AND id NOT IN (SELECT value FROM json_each(?))",
            app_id,
            keep
        )
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// Storage the tenant's volumes take, in MiB.
    pub async fn usage(db: impl SqliteExecutor<'_>, user_id: i64) -> Result<i64> {
        Ok(sqlx::query_scalar!(
            r#"SELECT COALESCE(SUM(size_mb), 0) AS "mb!: i64" FROM volumes WHERE user_id = ?"#,
            user_id
        )
        .fetch_one(db)
        .await?)
    }

    /// Deletes the tenant's volume unless it belongs to an app. False when there is no such
    /// kept volume.
    pub async fn delete_kept(
        db: impl SqliteExecutor<'_>,
        user_id: i64,
        name: &str,
    ) -> Result<bool> {
        let done = sqlx::query!(
            "DELETE FROM volumes WHERE user_id = ? AND name = ? AND app_id IS NULL",
            user_id,
            name
        )
        .execute(db)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Deletes every volume of an app (the app is being deleted with its data).
    pub async fn delete_for_app(conn: &mut sqlx::SqliteConnection, app_id: i64) -> Result<()> {
        sqlx::query!("DELETE FROM volumes WHERE app_id = ?", app_id)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }
}

pub mod registries {
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
}

pub mod domains {
    use super::*;
    use crate::model::Domain;

    pub async fn insert(
        db: impl SqliteExecutor<'_>,
        user_id: i64,
        name: &str,
        app_id: Option<i64>,
        verified_at: Option<i64>,
        now: i64,
    ) -> Result<i64> {
        Ok(sqlx::query_scalar!(
            r#"INSERT INTO domains (user_id, name, app_id, verified_at, created_at, updated_at)
               VALUES (?, ?, ?, ?, ?, ?) RETURNING id AS "id!: i64""#,
            user_id,
            name,
            app_id,
            verified_at,
            now,
            now
        )
        .fetch_one(db)
        .await?)
    }

    /// Whose the name is, if anyone's (to tell "yours already" from "taken").
    pub async fn owner(db: impl SqliteExecutor<'_>, name: &str) -> Result<Option<i64>> {
        Ok(
            sqlx::query_scalar!("SELECT user_id FROM domains WHERE name = ?", name)
                .fetch_optional(db)
                .await?,
        )
    }

    /// Whose the name is and whether they proved it theirs.
    pub async fn claim(db: impl SqliteExecutor<'_>, name: &str) -> Result<Option<(i64, bool)>> {
        let r = sqlx::query!(
            r#"SELECT user_id, verified_at IS NOT NULL AS "verified!: bool" FROM domains WHERE name = ?"#,
            name
        )
        .fetch_optional(db)
        .await?;
        Ok(r.map(|r| (r.user_id, r.verified)))
    }

    /// Removes another tenant's unproven claim on `name` (someone who proved it takes it).
    pub async fn drop_unproven(
        db: impl SqliteExecutor<'_>,
        name: &str,
        except_user: i64,
    ) -> Result<bool> {
        let done = sqlx::query!(
            "DELETE FROM domains WHERE name = ? AND user_id != ? AND verified_at IS NULL",
            name,
            except_user
        )
        .execute(db)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn by_name(
        db: impl SqliteExecutor<'_>,
        user_id: i64,
        name: &str,
    ) -> Result<Option<Domain>> {
        Ok(sqlx::query_as!(
            Domain,
            r#"SELECT d.id AS "id!", d.user_id, d.name, d.app_id, a.name AS "app_name?",
                      COALESCE(a.desired = 'running' AND a.current_deployment_id IS NOT NULL, FALSE)
                          AS "serving!: bool",
                      d.verified_at, d.created_at, d.updated_at
               FROM domains d LEFT JOIN apps a ON a.id = d.app_id
               WHERE d.user_id = ? AND d.name = ?"#,
            user_id,
            name
        )
        .fetch_optional(db)
        .await?)
    }

    pub async fn page(
        db: impl SqliteExecutor<'_>,
        user_id: i64,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<Domain>> {
        Ok(sqlx::query_as!(
            Domain,
            r#"SELECT d.id AS "id!", d.user_id, d.name, d.app_id, a.name AS "app_name?",
                      COALESCE(a.desired = 'running' AND a.current_deployment_id IS NOT NULL, FALSE)
                          AS "serving!: bool",
                      d.verified_at, d.created_at, d.updated_at
               FROM domains d LEFT JOIN apps a ON a.id = d.app_id
               WHERE d.user_id = ? ORDER BY d.name LIMIT ? OFFSET ?"#,
            user_id,
            limit,
            offset
        )
        .fetch_all(db)
        .await?)
    }

    pub async fn count_for_user(db: impl SqliteExecutor<'_>, user_id: i64) -> Result<i64> {
        Ok(
            sqlx::query_scalar!("SELECT COUNT(*) FROM domains WHERE user_id = ?", user_id)
                .fetch_one(db)
                .await?,
        )
    }

    /// The domains an app serves, by name.
    pub async fn names_for_app(db: impl SqliteExecutor<'_>, app_id: i64) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar!(
            "SELECT name FROM domains WHERE app_id = ? ORDER BY name",
            app_id
        )
        .fetch_all(db)
        .await?)
    }

    /// Points a domain at one of the same tenant's apps, or at none. The app is looked up in the
    /// same statement, scoped to the domain's owner, so no other tenant's app can be attached.
    pub async fn set_app(
        db: impl SqliteExecutor<'_>,
        user_id: i64,
        name: &str,
        app_id: Option<i64>,
        now: i64,
    ) -> Result<bool> {
        let done = sqlx::query!(
            "UPDATE domains SET app_id = (SELECT id FROM apps WHERE id = ? AND user_id = ?),
                 updated_at = ?
             WHERE user_id = ? AND name = ?
               AND (? IS NULL OR EXISTS (SELECT 1 FROM apps WHERE id = ? AND user_id = ?))",
            app_id,
            user_id,
            now,
            user_id,
            name,
            app_id,
            app_id,
            user_id
        )
        .execute(db)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The owner showed a TXT record with their token (or proofs are off).
    pub async fn set_verified(
        db: impl SqliteExecutor<'_>,
        user_id: i64,
        name: &str,
        now: i64,
    ) -> Result<bool> {
        let done = sqlx::query!(
            "UPDATE domains SET verified_at = ?, updated_at = ?
             WHERE user_id = ? AND name = ? AND verified_at IS NULL",
            now,
            now,
            user_id,
            name
        )
        .execute(db)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn delete(db: impl SqliteExecutor<'_>, user_id: i64, name: &str) -> Result<bool> {
        let done = sqlx::query!(
            "DELETE FROM domains WHERE user_id = ? AND name = ?",
            user_id,
            name
        )
        .execute(db)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Every registered domain's name, attached or not.
    pub async fn all_names(db: impl SqliteExecutor<'_>) -> Result<Vec<String>> {
        Ok(
            sqlx::query_scalar!("SELECT name FROM domains ORDER BY name")
                .fetch_all(db)
                .await?,
        )
    }

    /// Every attached domain with its app: what HAProxy should route.
    pub async fn attached(db: impl SqliteExecutor<'_>) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query!(
            r#"SELECT name, app_id AS "app_id!" FROM domains
               WHERE app_id IS NOT NULL AND verified_at IS NOT NULL ORDER BY name"#
        )
        .fetch_all(db)
        .await?;
        Ok(rows.into_iter().map(|r| (r.name, r.app_id)).collect())
    }
}

pub mod certs {
    use super::*;
    use crate::model::Certificate;

    /// A certificate that needs an order now.
    #[derive(Debug, Clone)]
    pub struct Due {
        pub id: i64,
        pub name: String,
        /// The tenant whose domain it is; None for the panel's own.
        pub user_id: Option<i64>,
        /// A certificate serves and this orders its successor on schedule (a renewal that
        /// already failed counts as a new order: retrying it gets no priority).
        pub renewal: bool,
    }

    /// Pending rows for attached, proven, non-wildcard domains that have none yet.
    pub async fn ensure_for_domains(db: impl SqliteExecutor<'_>, now: i64) -> Result<()> {
        sqlx::query!(
            "INSERT INTO certificates (domain_id, name, status, next_attempt_at, updated_at)
             SELECT d.id, d.name, 'pending', ?, ? FROM domains d
             WHERE d.app_id IS NOT NULL AND d.verified_at IS NOT NULL AND d.name NOT LIKE '*.%'
               AND NOT EXISTS (SELECT 1 FROM certificates c WHERE c.domain_id = d.id)
             ON CONFLICT DO NOTHING",
            now,
            now
        )
        .execute(db)
        .await?;
        Ok(())
    }

    /// The panel's own certificate row for `name` (none when None); a row for another panel
    /// name (the operator changed it) is dropped.
    pub async fn ensure_panel(
        db: impl SqliteExecutor<'_> + Copy,
        name: Option<&str>,
        now: i64,
    ) -> Result<()> {
        sqlx::query!(
            "DELETE FROM certificates WHERE domain_id IS NULL AND name IS NOT ?",
            name
        )
        .execute(db)
        .await?;
        if let Some(name) = name {
            sqlx::query!(
                "INSERT INTO certificates (domain_id, name, status, next_attempt_at, updated_at)
                 VALUES (NULL, ?, 'pending', ?, ?) ON CONFLICT DO NOTHING",
                name,
                now,
                now
            )
            .execute(db)
            .await?;
        }
        Ok(())
    }

    /// Certificates that need an order now, renewals first: the panel's, and those of attached,
    /// proven domains whose next attempt or renewal time has come.
    pub async fn due(db: impl SqliteExecutor<'_>, now: i64) -> Result<Vec<Due>> {
        let rows = sqlx::query!(
            r#"SELECT c.id AS "id!: i64", c.name AS "name!", d.user_id AS "user_id?: i64",
                      (c.chain_pem IS NOT NULL AND c.failures = 0) AS "renewal!: bool"
               FROM certificates c LEFT JOIN domains d ON d.id = c.domain_id
               WHERE (c.domain_id IS NULL
                      OR (d.app_id IS NOT NULL AND d.verified_at IS NOT NULL))
                 AND ((c.status IN ('pending', 'failed', 'renewing') AND c.next_attempt_at <= ?)
                      OR (c.status = 'valid' AND c.renew_at <= ?))
               ORDER BY c.chain_pem IS NULL, c.name"#,
            now,
            now
        )
        .fetch_all(db)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| Due {
                id: r.id,
                name: r.name,
                user_id: r.user_id,
                renewal: r.renewal,
            })
            .collect())
    }

    /// The earliest time a certificate [`due`] would list needs attention (a retry or a
    /// renewal).
    pub async fn next_due(db: impl SqliteExecutor<'_>) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar!(
            r#"SELECT MIN(CASE WHEN c.status = 'valid' THEN c.renew_at ELSE c.next_attempt_at END)
                      AS "t: i64"
               FROM certificates c LEFT JOIN domains d ON d.id = c.domain_id
               WHERE c.domain_id IS NULL
                  OR (d.app_id IS NOT NULL AND d.verified_at IS NOT NULL)"#
        )
        .fetch_one(db)
        .await?)
    }

    pub async fn by_domain(
        db: impl SqliteExecutor<'_>,
        domain_id: i64,
    ) -> Result<Option<Certificate>> {
        Ok(sqlx::query_as!(
            Certificate,
            r#"SELECT id AS "id!", domain_id, name, status, chain_pem, sealed_key, serial, not_before,
                      not_after, renew_at, error, failures, next_attempt_at, updated_at
               FROM certificates WHERE domain_id = ?"#,
            domain_id
        )
        .fetch_optional(db)
        .await?)
    }

    pub async fn by_id(db: impl SqliteExecutor<'_>, id: i64) -> Result<Option<Certificate>> {
        Ok(sqlx::query_as!(
            Certificate,
            r#"SELECT id AS "id!", domain_id, name, status, chain_pem, sealed_key, serial, not_before,
                      not_after, renew_at, error, failures, next_attempt_at, updated_at
               FROM certificates WHERE id = ?"#,
            id
        )
        .fetch_optional(db)
        .await?)
    }

    /// Every certificate (the admin page, and installing them into HAProxy at start).
    pub async fn all(db: impl SqliteExecutor<'_>) -> Result<Vec<Certificate>> {
        Ok(sqlx::query_as!(
            Certificate,
            r#"SELECT id AS "id!", domain_id, name, status, chain_pem, sealed_key, serial, not_before,
                      not_after, renew_at, error, failures, next_attempt_at, updated_at
               FROM certificates ORDER BY name"#
        )
        .fetch_all(db)
        .await?)
    }

    /// A valid certificate ordering its successor.
    pub async fn mark_renewing(db: impl SqliteExecutor<'_>, id: i64, now: i64) -> Result<()> {
        sqlx::query!(
            "UPDATE certificates SET status = 'renewing', updated_at = ? WHERE id = ? AND status = 'valid'",
            now,
            id
        )
        .execute(db)
        .await?;
        Ok(())
    }

    pub struct Issued<'a> {
        pub chain_pem: &'a str,
        pub sealed_key: &'a str,
        pub serial: &'a str,
        pub not_before: i64,
        pub not_after: i64,
        pub renew_at: i64,
    }

    pub async fn issued(
        db: impl SqliteExecutor<'_>,
        id: i64,
        c: &Issued<'_>,
        now: i64,
    ) -> Result<()> {
        sqlx::query!(
            "UPDATE certificates SET status = 'valid', chain_pem = ?, sealed_key = ?, serial = ?,
                 not_before = ?, not_after = ?, renew_at = ?, error = NULL, failures = 0,
                 next_attempt_at = ?, updated_at = ?
             WHERE id = ?",
            c.chain_pem,
            c.sealed_key,
            c.serial,
            c.not_before,
            c.not_after,
            c.renew_at,
            c.renew_at,
            now,
            id
        )
        .execute(db)
        .await?;
        Ok(())
    }

    /// An order failed: the error, one more failure, the next try. A certificate that still
    /// serves stays `renewing`; without one the status is `failed`.
    pub async fn failed(
        db: impl SqliteExecutor<'_>,
        id: i64,
        error: &str,
        next_attempt_at: i64,
        now: i64,
    ) -> Result<()> {
        sqlx::query!(
            "UPDATE certificates SET error = ?, failures = failures + 1, next_attempt_at = ?,
                 status = CASE WHEN chain_pem IS NULL THEN 'failed' ELSE 'renewing' END,
                 updated_at = ?
             WHERE id = ?",
            error,
            next_attempt_at,
            now,
            id
        )
        .execute(db)
        .await?;
        Ok(())
    }

    /// Held back by a rate limit: no failure counted, just the time of the next try and why.
    pub async fn defer(
        db: impl SqliteExecutor<'_>,
        id: i64,
        why: &str,
        until: i64,
        now: i64,
    ) -> Result<()> {
        sqlx::query!(
            "UPDATE certificates SET error = ?, next_attempt_at = ?, updated_at = ? WHERE id = ?",
            why,
            until,
            now,
            id
        )
        .execute(db)
        .await?;
        Ok(())
    }

    /// "Retry now": the next attempt is due at once.
    pub async fn retry_now(db: impl SqliteExecutor<'_>, id: i64, now: i64) -> Result<bool> {
        let done = sqlx::query!(
            "UPDATE certificates SET next_attempt_at = ?, updated_at = ?
             WHERE id = ? AND status IN ('pending', 'failed', 'renewing')",
            now,
            now,
            id
        )
        .execute(db)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// One order placed with the CA, and how it ended.
    pub struct Order<'a> {
        pub name: &'a str,
        pub registered: &'a str,
        /// The tenant (None: the panel's own certificate).
        pub user_id: Option<i64>,
        pub renewal: bool,
        pub started_at: i64,
        /// issued, invalid or error.
        pub outcome: &'a str,
        pub error: Option<&'a str>,
    }

    pub async fn record_order(db: impl SqliteExecutor<'_>, o: &Order<'_>) -> Result<()> {
        sqlx::query!(
            "INSERT INTO acme_orders (name, registered, user_id, renewal, started_at, outcome, error)
             VALUES (?, ?, ?, ?, ?, ?, ?)",
            o.name,
            o.registered,
            o.user_id,
            o.renewal,
            o.started_at,
            o.outcome,
            o.error
        )
        .execute(db)
        .await?;
        Ok(())
    }

    /// Orders placed since `since`: (all, the tenant's (when given), oldest start overall, the
    /// tenant's oldest start).
    pub async fn orders_since(
        db: impl SqliteExecutor<'_>,
        user_id: Option<i64>,
        since: i64,
    ) -> Result<OrderCounts> {
        let r = sqlx::query!(
            r#"SELECT COUNT(*) AS "all!: i64",
                      COALESCE(SUM(user_id IS ?), 0) AS "tenant!: i64",
                      MIN(started_at) AS "oldest: i64",
                      MIN(CASE WHEN user_id IS ? THEN started_at END) AS "tenant_oldest: i64"
               FROM acme_orders WHERE started_at >= ?"#,
            user_id,
            user_id,
            since
        )
        .fetch_one(db)
        .await?;
        Ok(OrderCounts {
            all: r.all,
            tenant: if user_id.is_some() { r.tenant } else { 0 },
            oldest: r.oldest,
            tenant_oldest: r.tenant_oldest,
        })
    }

    #[derive(Debug, Clone, Copy, Default)]
    pub struct OrderCounts {
        pub all: i64,
        pub tenant: i64,
        pub oldest: Option<i64>,
        pub tenant_oldest: Option<i64>,
    }

    /// Orders per tenant since `since` (who: the tenant's email, "the panel", or "a deleted
    /// account"; orders), most first: the admin's budget view.
    pub async fn orders_by_tenant(
        db: impl SqliteExecutor<'_>,
        since: i64,
    ) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query!(
            r#"SELECT CASE WHEN o.user_id IS NULL THEN 'the panel'
                           ELSE COALESCE(u.email, 'a deleted account') END AS "who!: String",
                      COUNT(*) AS "n!: i64"
               FROM acme_orders o LEFT JOIN users u ON u.id = o.user_id
               WHERE o.started_at >= ? GROUP BY o.user_id ORDER BY 2 DESC, 1"#,
            since
        )
        .fetch_all(db)
        .await?;
        Ok(rows.into_iter().map(|r| (r.who, r.n)).collect())
    }

    /// (count, oldest start) of a name's failed validations since `since`.
    pub async fn invalid_since(
        db: impl SqliteExecutor<'_>,
        name: &str,
        since: i64,
    ) -> Result<(i64, Option<i64>)> {
        let r = sqlx::query!(
            r#"SELECT COUNT(*) AS "n!: i64", MIN(started_at) AS "oldest: i64" FROM acme_orders
               WHERE name = ? AND outcome = 'invalid' AND started_at >= ?"#,
            name,
            since
        )
        .fetch_one(db)
        .await?;
        Ok((r.n, r.oldest))
    }

    /// (count, oldest start) of certificates issued under a registered domain since `since`.
    pub async fn issued_since(
        db: impl SqliteExecutor<'_>,
        registered: &str,
        since: i64,
    ) -> Result<(i64, Option<i64>)> {
        let r = sqlx::query!(
            r#"SELECT COUNT(*) AS "n!: i64", MIN(started_at) AS "oldest: i64" FROM acme_orders
               WHERE registered = ? AND outcome = 'issued' AND started_at >= ?"#,
            registered,
            since
        )
        .fetch_one(db)
        .await?;
        Ok((r.n, r.oldest))
    }

    /// Orders per registered domain since `since`, most first: the admin's rate-limit view.
    pub async fn usage_since(
        db: impl SqliteExecutor<'_>,
        since: i64,
    ) -> Result<Vec<(String, i64, i64)>> {
        let rows = sqlx::query!(
            r#"SELECT registered AS "registered!", SUM(outcome = 'issued') AS "issued!: i64",
                      SUM(outcome = 'invalid') AS "invalid!: i64"
               FROM acme_orders WHERE started_at >= ? GROUP BY registered ORDER BY 2 DESC, 1"#,
            since
        )
        .fetch_all(db)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| (r.registered, r.issued, r.invalid))
            .collect())
    }

    pub async fn account(
        db: impl SqliteExecutor<'_>,
        directory: &str,
    ) -> Result<Option<(String, String)>> {
        let r = sqlx::query!(
            "SELECT account_url, credentials FROM acme_accounts WHERE directory = ?",
            directory
        )
        .fetch_optional(db)
        .await?;
        Ok(r.map(|r| (r.account_url, r.credentials)))
    }

    pub async fn delete_account(db: impl SqliteExecutor<'_>, directory: &str) -> Result<()> {
        sqlx::query!("DELETE FROM acme_accounts WHERE directory = ?", directory)
            .execute(db)
            .await?;
        Ok(())
    }

    /// Makes a valid certificate due for renewal now (the admin's "renew now", and tests).
    pub async fn renew_now(db: impl SqliteExecutor<'_>, id: i64, now: i64) -> Result<bool> {
        let done = sqlx::query!(
            "UPDATE certificates SET renew_at = ?, updated_at = ? WHERE id = ? AND status = 'valid'",
            now,
            now,
            id
        )
        .execute(db)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn save_account(
        db: impl SqliteExecutor<'_>,
        directory: &str,
        account_url: &str,
        sealed: &str,
        now: i64,
    ) -> Result<()> {
        sqlx::query!(
            "INSERT INTO acme_accounts (directory, account_url, credentials, created_at) VALUES (?, ?, ?, ?)
             ON CONFLICT (directory) DO UPDATE SET account_url = excluded.account_url,
                 credentials = excluded.credentials",
            directory,
            account_url,
            sealed,
            now
        )
        .execute(db)
        .await?;
        Ok(())
    }
}

pub mod images {
    use super::*;

    /// Pier pulled an image under `reference` (again).
    pub async fn record(db: impl SqliteExecutor<'_>, reference: &str, now: i64) -> Result<()> {
        sqlx::query!(
            "INSERT INTO images (reference, pulled_at) VALUES (?, ?)
             ON CONFLICT (reference) DO UPDATE SET pulled_at = excluded.pulled_at",
            reference,
            now
        )
        .execute(db)
        .await?;
        Ok(())
    }

    /// Every reference Pier pulled and has not removed, with when it was last pulled.
    pub async fn all(db: impl SqliteExecutor<'_>) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query!("SELECT reference, pulled_at FROM images ORDER BY reference")
            .fetch_all(db)
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| (r.reference, r.pulled_at))
            .collect())
    }

    /// Takes a reference off the list unless it was pulled since `before`: true when it was
    /// taken (the caller removes it from the engine, or puts it back with [`restore`]).
    pub async fn claim(db: impl SqliteExecutor<'_>, reference: &str, before: i64) -> Result<bool> {
        let done = sqlx::query!(
            "DELETE FROM images WHERE reference = ? AND pulled_at < ?",
            reference,
            before
        )
        .execute(db)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Puts a claimed reference back (the engine kept it), unless it was pulled again meanwhile.
    pub async fn restore(
        db: impl SqliteExecutor<'_>,
        reference: &str,
        pulled_at: i64,
    ) -> Result<()> {
        sqlx::query!(
            "INSERT INTO images (reference, pulled_at) VALUES (?, ?) ON CONFLICT (reference) DO NOTHING",
            reference,
            pulled_at
        )
        .execute(db)
        .await?;
        Ok(())
    }
}
