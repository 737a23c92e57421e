use super::*;

#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub email: bool,
    pub webhook_url: Option<String>,
    /// Sealed.
    pub webhook_secret: Option<String>,
}

pub async fn settings(db: impl SqliteExecutor<'_>, user_id: i64) -> Result<Settings> {
    Ok(sqlx::query_as!(
        Settings,
        r#"SELECT email AS "email: bool", webhook_url, webhook_secret
           FROM notify_settings WHERE user_id = ?"#,
        user_id
    )
    .fetch_optional(db)
    .await?
    .unwrap_or(Settings {
        email: true,
        ..Settings::default()
    }))
}

pub async fn set_settings(db: impl SqliteExecutor<'_>, user_id: i64, s: &Settings) -> Result<()> {
    sqlx::query!(
        "INSERT INTO notify_settings (user_id, email, webhook_url, webhook_secret)
         VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (user_id) DO UPDATE SET email = ?2, webhook_url = ?3, webhook_secret = ?4",
        user_id,
        s.email,
        s.webhook_url,
        s.webhook_secret
    )
    .execute(db)
    .await?;
    Ok(())
}

#[derive(Debug, Clone)]
pub struct Smtp {
    pub host: String,
    pub port: i64,
    pub security: String,
    pub username: Option<String>,
    /// Sealed.
    pub password: Option<String>,
    pub from_address: String,
}

pub async fn smtp(db: impl SqliteExecutor<'_>) -> Result<Option<Smtp>> {
    Ok(sqlx::query_as!(
        Smtp,
        "SELECT host, port, security, username, password, from_address FROM smtp_settings"
    )
    .fetch_optional(db)
    .await?)
}

pub async fn set_smtp(db: impl SqliteExecutor<'_>, s: &Smtp) -> Result<()> {
    sqlx::query!(
        "INSERT INTO smtp_settings (id, host, port, security, username, password, from_address)
         VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (id) DO UPDATE SET host = ?1, port = ?2, security = ?3, username = ?4,
             password = ?5, from_address = ?6",
        s.host,
        s.port,
        s.security,
        s.username,
        s.password,
        s.from_address
    )
    .execute(db)
    .await?;
    Ok(())
}

pub async fn delete_smtp(db: impl SqliteExecutor<'_>) -> Result<()> {
    sqlx::query!("DELETE FROM smtp_settings")
        .execute(db)
        .await?;
    Ok(())
}

/// Records a notification once per (user, dedupe key); its id, or None when it was already
/// recorded.
#[allow(clippy::too_many_arguments)]
pub async fn insert(
    db: &mut sqlx::SqliteConnection,
    user_id: i64,
    kind: &str,
    dedupe_key: &str,
    subject: &str,
    body: &str,
    details: &str,
    at: i64,
) -> Result<Option<i64>> {
    Ok(sqlx::query_scalar!(
        r#"INSERT INTO notifications (user_id, kind, dedupe_key, subject, body, details, created_at)
           VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (user_id, dedupe_key) DO NOTHING
           RETURNING id AS "id!""#,
        user_id,
        kind,
        dedupe_key,
        subject,
        body,
        details,
        at
    )
    .fetch_optional(&mut *db)
    .await?)
}

pub async fn add_delivery(
    db: impl SqliteExecutor<'_>,
    notification_id: i64,
    channel: &str,
    at: i64,
) -> Result<()> {
    sqlx::query!(
        "INSERT INTO deliveries (notification_id, channel, next_attempt_at) VALUES (?, ?, ?)",
        notification_id,
        channel,
        at
    )
    .execute(db)
    .await?;
    Ok(())
}

/// A delivery with what it carries.
#[derive(Debug, Clone)]
pub struct Due {
    pub id: i64,
    pub channel: String,
    pub attempts: i64,
    pub user_id: i64,
    pub email: String,
    pub kind: String,
    pub subject: String,
    pub body: String,
    pub details: String,
    pub created_at: i64,
}

/// Deliveries whose time has come, oldest first.
pub async fn due(db: impl SqliteExecutor<'_>, now: i64, limit: i64) -> Result<Vec<Due>> {
    Ok(sqlx::query_as!(
        Due,
        r#"SELECT d.id AS "id!", d.channel, d.attempts, n.user_id, u.email, n.kind, n.subject,
                  n.body, n.details, n.created_at
           FROM deliveries d JOIN notifications n ON n.id = d.notification_id
           JOIN users u ON u.id = n.user_id
           WHERE d.status = 'pending' AND d.next_attempt_at <= ?
           ORDER BY d.next_attempt_at, d.id LIMIT ?"#,
        now,
        limit
    )
    .fetch_all(db)
    .await?)
}

/// The earliest pending attempt, for the worker's sleep.
pub async fn next_due(db: impl SqliteExecutor<'_>) -> Result<Option<i64>> {
    Ok(sqlx::query_scalar!(
        r#"SELECT MIN(next_attempt_at) AS "at: i64" FROM deliveries WHERE status = 'pending'"#
    )
    .fetch_one(db)
    .await?)
}

pub async fn sent(db: impl SqliteExecutor<'_>, id: i64, at: i64) -> Result<()> {
    sqlx::query!(
        "UPDATE deliveries SET status = 'sent', attempts = attempts + 1, sent_at = ?, last_error = NULL
         WHERE id = ?",
        at,
        id
    )
    .execute(db)
    .await?;
    Ok(())
}

/// A failed attempt: tried again at `retry_at`, or given up (`retry_at` None).
pub async fn attempt_failed(
    db: impl SqliteExecutor<'_>,
    id: i64,
    error: &str,
    retry_at: Option<i64>,
) -> Result<()> {
    let status = if retry_at.is_some() {
        "pending"
    } else {
        "failed"
    };
    let next = retry_at.unwrap_or(0);
    sqlx::query!(
        "UPDATE deliveries SET status = ?, attempts = attempts + 1, last_error = ?,
             next_attempt_at = CASE WHEN ? > 0 THEN ? ELSE next_attempt_at END
         WHERE id = ?",
        status,
        error,
        next,
        next,
        id
    )
    .execute(db)
    .await?;
    Ok(())
}

/// One delivery as the account page lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRow {
    pub id: i64,
    pub kind: String,
    pub subject: String,
    pub channel: String,
    pub status: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub sent_at: Option<i64>,
}

pub async fn recent(
    db: impl SqliteExecutor<'_>,
    user_id: i64,
    limit: i64,
) -> Result<Vec<DeliveryRow>> {
    Ok(sqlx::query_as!(
        DeliveryRow,
        r#"SELECT d.id AS "id!", n.kind, n.subject, d.channel, d.status, d.attempts, d.last_error,
                  n.created_at, d.sent_at
           FROM deliveries d JOIN notifications n ON n.id = d.notification_id
           WHERE n.user_id = ? ORDER BY d.id DESC LIMIT ?"#,
        user_id,
        limit
    )
    .fetch_all(db)
    .await?)
}

/// Admins, for the events only they get.
pub async fn admins(db: impl SqliteExecutor<'_>) -> Result<Vec<i64>> {
    Ok(sqlx::query_scalar!(
        r#"SELECT id AS "id!" FROM users WHERE role = 'admin' AND disabled = 0"#
    )
    .fetch_all(db)
    .await?)
}
