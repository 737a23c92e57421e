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
    /// None: a kept volume (a restore beside the app's own).
    pub app_id: Option<i64>,
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

/// Deletes the tenant's volume `id` unless it belongs to an app. False when there is no such
/// kept volume.
pub async fn delete_kept(db: impl SqliteExecutor<'_>, user_id: i64, id: i64) -> Result<bool> {
    let done = sqlx::query!(
        "DELETE FROM volumes WHERE user_id = ? AND id = ? AND app_id IS NULL",
        user_id,
        id
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
