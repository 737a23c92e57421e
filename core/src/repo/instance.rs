use super::*;

/// This installation's id (created by the migration).
pub async fn id(db: impl SqliteExecutor<'_>) -> Result<String> {
    Ok(
        sqlx::query_scalar!(r#"SELECT id AS "id!" FROM instance LIMIT 1"#)
            .fetch_one(db)
            .await?,
    )
}
