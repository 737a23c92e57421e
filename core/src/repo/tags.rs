use super::*;

/// An app's tag-following state (the defaults for an app that never set it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TagFollow {
    pub enabled: bool,
    pub checked_at: Option<i64>,
    pub remote_digest: Option<String>,
    pub error: Option<String>,
    pub hook_generation: i64,
}

pub async fn get(db: impl SqliteExecutor<'_>, app_id: i64) -> Result<TagFollow> {
    Ok(sqlx::query_as!(
        TagFollow,
        r#"SELECT enabled AS "enabled: bool", checked_at, remote_digest, error, hook_generation
           FROM tag_follow WHERE app_id = ?"#,
        app_id
    )
    .fetch_optional(db)
    .await?
    .unwrap_or_default())
}

pub async fn set_enabled(db: impl SqliteExecutor<'_>, app_id: i64, enabled: bool) -> Result<()> {
    sqlx::query!(
        "INSERT INTO tag_follow (app_id, enabled) VALUES (?1, ?2)
         ON CONFLICT (app_id) DO UPDATE SET enabled = ?2",
        app_id,
        enabled
    )
    .execute(db)
    .await?;
    Ok(())
}

/// A new webhook URL: the old one stops working.
pub async fn bump_hook(db: impl SqliteExecutor<'_>, app_id: i64) -> Result<()> {
    sqlx::query!(
        "INSERT INTO tag_follow (app_id, hook_generation) VALUES (?1, 1)
         ON CONFLICT (app_id) DO UPDATE SET hook_generation = hook_generation + 1",
        app_id
    )
    .execute(db)
    .await?;
    Ok(())
}

/// What a check found: the digest, or why there is none.
pub async fn checked(
    db: impl SqliteExecutor<'_>,
    app_id: i64,
    at: i64,
    found: std::result::Result<&str, &str>,
) -> Result<()> {
    let (digest, error) = match found {
        Ok(d) => (Some(d), None),
        Err(e) => (None, Some(e)),
    };
    sqlx::query!(
        "INSERT INTO tag_follow (app_id, checked_at, remote_digest, error) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (app_id) DO UPDATE SET checked_at = ?2,
             remote_digest = COALESCE(?3, remote_digest), error = ?4",
        app_id,
        at,
        digest,
        error
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Apps that follow their tag, with when each was last checked (None: never).
pub async fn following(db: impl SqliteExecutor<'_>) -> Result<Vec<(i64, Option<i64>)>> {
    let rows =
        sqlx::query!(r#"SELECT app_id AS "app_id!", checked_at FROM tag_follow WHERE enabled"#)
            .fetch_all(db)
            .await?;
    Ok(rows.into_iter().map(|r| (r.app_id, r.checked_at)).collect())
}
