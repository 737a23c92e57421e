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
pub async fn restore(db: impl SqliteExecutor<'_>, reference: &str, pulled_at: i64) -> Result<()> {
    sqlx::query!(
        "INSERT INTO images (reference, pulled_at) VALUES (?, ?) ON CONFLICT (reference) DO NOTHING",
        reference,
        pulled_at
    )
    .execute(db)
    .await?;
    Ok(())
}
