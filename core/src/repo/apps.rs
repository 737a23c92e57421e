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
    replicas: i64,
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
            replicas: self.replicas,
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
    pub replicas: i64,
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
                             kind, capabilities, replicas, created_at, updated_at)
           SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?14, ?15, ?16, ?10, ?10
           WHERE (SELECT COUNT(*) FROM apps WHERE user_id = ?1) < ?11
             AND (SELECT COALESCE(SUM(memory_mb * replicas), 0) FROM apps WHERE user_id = ?1) + ?6 * ?16 <= ?12
             AND (SELECT COALESCE(SUM(cpus_milli * replicas), 0) FROM apps WHERE user_id = ?1) + ?7 * ?16 <= ?13
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
        caps,
        spec.replicas
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
               health_path = ?8, read_only = ?9, updated_at = ?10, kind = ?13, capabilities = ?14,
               replicas = ?15
           WHERE id = ?1 AND user_id = ?2
             AND (SELECT COALESCE(SUM(memory_mb * replicas), 0) FROM apps WHERE user_id = ?2 AND id != ?1) + ?6 * ?15 <= ?11
             AND (SELECT COALESCE(SUM(cpus_milli * replicas), 0) FROM apps WHERE user_id = ?2 AND id != ?1) + ?7 * ?15 <= ?12"#,
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
        caps,
        spec.replicas
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
        r#"SELECT COUNT(*) AS "apps!: i64", COALESCE(SUM(memory_mb * replicas), 0) AS "memory!: i64",
                  COALESCE(SUM(cpus_milli * replicas), 0) AS "cpus!: i64"
           FROM apps WHERE user_id = ? AND id != ?"#,
        user_id,
        except
    )
    .fetch_one(db)
    .await?;
    Ok((r.apps, r.memory, r.cpus))
}

pub async fn by_name(db: impl SqliteExecutor<'_>, user_id: i64, name: &str) -> Result<Option<App>> {
    sqlx::query_as!(
        AppRow,
        r#"SELECT id AS "id!", user_id, name, image, port, env, memory_mb, cpus_milli, replicas, health_path,
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
        r#"SELECT id AS "id!", user_id, name, image, port, env, memory_mb, cpus_milli, replicas, health_path,
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
        r#"SELECT id AS "id!", user_id, name, image, port, env, memory_mb, cpus_milli, replicas, health_path,
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
        r#"SELECT id AS "id!", user_id, name, image, port, env, memory_mb, cpus_milli, replicas, health_path,
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

/// Deletes the tenant's app and notes its id (its backups are removed later). Inside the
/// caller's transaction.
pub async fn delete(conn: &mut sqlx::SqliteConnection, id: i64, user_id: i64) -> Result<bool> {
    let done = sqlx::query!("DELETE FROM apps WHERE id = ? AND user_id = ?", id, user_id)
        .execute(&mut *conn)
        .await?;
    if done.rows_affected() != 1 {
        return Ok(false);
    }
    let now = crate::now();
    sqlx::query!(
        "INSERT OR IGNORE INTO deleted_apps (app_id, deleted_at) VALUES (?, ?)",
        id,
        now
    )
    .execute(&mut *conn)
    .await?;
    Ok(true)
}

/// Makes new apps' ids start above `n` (ids other data already refers to). Plain statements:
/// `sqlite_sequence` is SQLite's own table, which the compile-time checks do not describe.
pub async fn reserve_ids_through(db: &sqlx::SqlitePool, n: i64) -> Result<()> {
    let mut tx = db.begin().await?;
    sqlx::query("UPDATE sqlite_sequence SET seq = MAX(seq, ?) WHERE name = 'apps'")
        .bind(n)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO sqlite_sequence (name, seq) SELECT 'apps', ?
         WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'apps')",
    )
    .bind(n)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// The ids of apps deleted here.
pub async fn deleted_ids(db: impl SqliteExecutor<'_>) -> Result<Vec<i64>> {
    Ok(
        sqlx::query_scalar!(r#"SELECT app_id AS "id!: i64" FROM deleted_apps"#)
            .fetch_all(db)
            .await?,
    )
}
