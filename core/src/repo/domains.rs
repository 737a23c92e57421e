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
