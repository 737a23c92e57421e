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

pub async fn by_domain(db: impl SqliteExecutor<'_>, domain_id: i64) -> Result<Option<Certificate>> {
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

/// The certificates of a tenant's domains, by domain id (one query for a whole list).
pub async fn for_user(
    db: impl SqliteExecutor<'_>,
    user_id: i64,
) -> Result<std::collections::HashMap<i64, Certificate>> {
    let rows = sqlx::query_as!(
        Certificate,
        r#"SELECT c.id AS "id!", c.domain_id, c.name, c.status, c.chain_pem, c.sealed_key, c.serial,
                  c.not_before, c.not_after, c.renew_at, c.error, c.failures, c.next_attempt_at,
                  c.updated_at
           FROM certificates c JOIN domains d ON d.id = c.domain_id WHERE d.user_id = ?"#,
        user_id
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|c| c.domain_id.map(|d| (d, c)))
        .collect())
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

/// Every certificate's name (without the chains and keys [`all`] reads).
pub async fn names(db: impl SqliteExecutor<'_>) -> Result<Vec<String>> {
    Ok(
        sqlx::query_scalar!("SELECT name FROM certificates ORDER BY name")
            .fetch_all(db)
            .await?,
    )
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

pub async fn issued(db: impl SqliteExecutor<'_>, id: i64, c: &Issued<'_>, now: i64) -> Result<()> {
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
