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
    replicas: i64,
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
            replicas: self.replicas,
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
                                    health_path, read_only, kind, capabilities, replicas, status, created_at)
           VALUES (?1, (SELECT COALESCE(MAX(number), 0) + 1 FROM deployments WHERE app_id = ?1),
                   ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?12, ?13, ?14, 'queued', ?11)
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
        caps,
        app.replicas
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
        r#"SELECT id AS "id!", app_id, number, cause, image, digest, env, port, memory_mb, cpus_milli, replicas,
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
        r#"SELECT id AS "id!", app_id, number, cause, image, digest, env, port, memory_mb, cpus_milli, replicas,
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
        r#"SELECT id AS "id!", app_id, number, cause, image, digest, env, port, memory_mb, cpus_milli, replicas,
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
        r#"SELECT id AS "id!", app_id, number, cause, image, digest, env, port, memory_mb, cpus_milli, replicas,
                  health_path, read_only, kind, capabilities, status, gap_ms, error, created_at, finished_at
           FROM deployments WHERE status IN ('queued', 'pulling', 'starting') ORDER BY id"#
    )
    .fetch_all(db)
    .await?
    .into_iter()
    .map(DeploymentRow::into_deployment)
    .collect()
}

/// How many copies each serving deployment runs, by deployment id.
pub async fn serving_replicas(
    db: impl SqliteExecutor<'_>,
) -> Result<std::collections::HashMap<i64, i64>> {
    Ok(sqlx::query!(
        r#"SELECT d.id AS "id!: i64", d.replicas AS "replicas!: i64"
           FROM deployments d JOIN apps a ON a.current_deployment_id = d.id"#
    )
    .fetch_all(db)
    .await?
    .into_iter()
    .map(|r| (r.id, r.replicas))
    .collect())
}

/// Moves an in-progress deployment on; false when it is no longer in progress (cancelled).
pub async fn advance(db: impl SqliteExecutor<'_>, id: i64, status: DeployStatus) -> Result<bool> {
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
