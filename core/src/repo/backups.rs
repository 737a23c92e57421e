//! `backup_policies`, `snapshots` and `restores`. The two job tables are also the backup
//! worker's queue; the guards against a second job per app live in the statements.

use super::*;
use crate::backups::{BackupPolicy, Consistency, JobState, Restore, Schedule, Snapshot, Trigger};

struct PolicyRow {
    schedule: String,
    at_minute: i64,
    weekday: i64,
    mode: String,
    keep_last: i64,
    keep_daily: i64,
    keep_weekly: i64,
    updated_at: i64,
    command: String,
    restore_command: String,
}

impl From<PolicyRow> for BackupPolicy {
    fn from(r: PolicyRow) -> Self {
        BackupPolicy {
            schedule: Schedule::parse(&r.schedule).unwrap_or_default(),
            at_minute: r.at_minute,
            weekday: r.weekday,
            mode: Consistency::parse(&r.mode).unwrap_or_default(),
            keep_last: r.keep_last,
            keep_daily: r.keep_daily,
            keep_weekly: r.keep_weekly,
            updated_at: r.updated_at,
            command: r.command,
            restore_command: r.restore_command,
        }
    }
}

struct SnapshotRow {
    id: i64,
    app_id: i64,
    trigger: String,
    mode: String,
    state: String,
    reason: Option<String>,
    restic_id: Option<String>,
    bytes: i64,
    total_bytes: i64,
    files: i64,
    added_bytes: Option<i64>,
    paused_ms: Option<i64>,
    created_at: i64,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    offsite_at: Option<i64>,
}

fn state(s: &str) -> JobState {
    JobState::parse(s).unwrap_or(JobState::Failed)
}

impl From<SnapshotRow> for Snapshot {
    fn from(r: SnapshotRow) -> Self {
        Snapshot {
            id: r.id,
            app_id: r.app_id,
            trigger: Trigger::parse(&r.trigger).unwrap_or(Trigger::Manual),
            mode: Consistency::parse(&r.mode).unwrap_or_default(),
            state: state(&r.state),
            reason: r.reason,
            restic_id: r.restic_id,
            bytes: r.bytes,
            total_bytes: r.total_bytes,
            files: r.files,
            added_bytes: r.added_bytes,
            paused_ms: r.paused_ms,
            created_at: r.created_at,
            started_at: r.started_at,
            finished_at: r.finished_at,
            offsite_at: r.offsite_at,
        }
    }
}

struct RestoreRow {
    id: i64,
    app_id: i64,
    snapshot_id: i64,
    state: String,
    reason: Option<String>,
    created_at: i64,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    from_volume_id: Option<i64>,
    into_volume_id: Option<i64>,
    into_volume: Option<String>,
}

impl From<RestoreRow> for Restore {
    fn from(r: RestoreRow) -> Self {
        Restore {
            id: r.id,
            app_id: r.app_id,
            snapshot_id: r.snapshot_id,
            state: state(&r.state),
            reason: r.reason,
            created_at: r.created_at,
            started_at: r.started_at,
            finished_at: r.finished_at,
            from_volume_id: r.from_volume_id,
            into_volume_id: r.into_volume_id,
            into_volume: r.into_volume,
        }
    }
}

pub async fn policy(db: impl SqliteExecutor<'_>, app_id: i64) -> Result<Option<BackupPolicy>> {
    let row = sqlx::query_as!(
        PolicyRow,
        "SELECT schedule, at_minute, weekday, mode, keep_last, keep_daily, keep_weekly, updated_at,
                command, restore_command
         FROM backup_policies WHERE app_id = ?",
        app_id
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(BackupPolicy::from))
}

pub async fn set_policy(db: impl SqliteExecutor<'_>, app_id: i64, p: &BackupPolicy) -> Result<()> {
    let (schedule, mode) = (p.schedule.as_str(), p.mode.as_str());
    sqlx::query!(
        "INSERT INTO backup_policies
             (app_id, schedule, at_minute, weekday, mode, keep_last, keep_daily, keep_weekly,
              updated_at, command, restore_command)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (app_id) DO UPDATE SET schedule = excluded.schedule,
             at_minute = excluded.at_minute, weekday = excluded.weekday, mode = excluded.mode,
             keep_last = excluded.keep_last, keep_daily = excluded.keep_daily,
             keep_weekly = excluded.keep_weekly, updated_at = excluded.updated_at,
             command = excluded.command, restore_command = excluded.restore_command",
        app_id,
        schedule,
        p.at_minute,
        p.weekday,
        mode,
        p.keep_last,
        p.keep_daily,
        p.keep_weekly,
        p.updated_at,
        p.command,
        p.restore_command
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Every app with a schedule.
pub async fn scheduled(db: impl SqliteExecutor<'_>) -> Result<Vec<(i64, BackupPolicy)>> {
    let rows = sqlx::query!(
        r#"SELECT app_id AS "app_id!", schedule, at_minute, weekday, mode, keep_last, keep_daily,
                  keep_weekly, updated_at, command, restore_command
           FROM backup_policies WHERE schedule <> 'off' ORDER BY app_id"#
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            (
                r.app_id,
                BackupPolicy::from(PolicyRow {
                    schedule: r.schedule,
                    at_minute: r.at_minute,
                    weekday: r.weekday,
                    mode: r.mode,
                    keep_last: r.keep_last,
                    keep_daily: r.keep_daily,
                    keep_weekly: r.keep_weekly,
                    updated_at: r.updated_at,
                    command: r.command,
                    restore_command: r.restore_command,
                }),
            )
        })
        .collect())
}

/// An app's snapshots made at or after `since`: (state, finished_at), oldest first.
pub async fn attempts_since(
    db: impl SqliteExecutor<'_>,
    app_id: i64,
    since: i64,
) -> Result<Vec<(JobState, Option<i64>)>> {
    let rows = sqlx::query!(
        "SELECT state, finished_at FROM snapshots WHERE app_id = ? AND created_at >= ?
         ORDER BY id",
        app_id,
        since
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| (state(&r.state), r.finished_at))
        .collect())
}

/// An app's snapshots, newest first.
pub async fn list(db: impl SqliteExecutor<'_>, app_id: i64, limit: i64) -> Result<Vec<Snapshot>> {
    let rows = sqlx::query_as!(
        SnapshotRow,
        r#"SELECT id AS "id!", app_id, trigger, mode, state, reason, restic_id, bytes, total_bytes,
                  files, added_bytes, paused_ms, created_at, started_at, finished_at, offsite_at
           FROM snapshots WHERE app_id = ? ORDER BY id DESC LIMIT ?"#,
        app_id,
        limit
    )
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(Snapshot::from).collect())
}

/// One of an app's snapshots.
pub async fn snapshot(
    db: impl SqliteExecutor<'_>,
    app_id: i64,
    id: i64,
) -> Result<Option<Snapshot>> {
    let row = sqlx::query_as!(
        SnapshotRow,
        r#"SELECT id AS "id!", app_id, trigger, mode, state, reason, restic_id, bytes, total_bytes,
                  files, added_bytes, paused_ms, created_at, started_at, finished_at, offsite_at
           FROM snapshots WHERE app_id = ? AND id = ?"#,
        app_id,
        id
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(Snapshot::from))
}

/// When the app's latest good snapshot finished, and its latest finished attempt.
pub async fn latest(
    db: impl sqlx::Acquire<'_, Database = sqlx::Sqlite>,
    app_id: i64,
) -> Result<(Option<i64>, Option<Snapshot>)> {
    let mut conn = db.acquire().await?;
    let done = sqlx::query_scalar!(
        r#"SELECT MAX(finished_at) AS "at?: i64" FROM snapshots WHERE app_id = ? AND state = 'done'"#,
        app_id
    )
    .fetch_one(&mut *conn)
    .await?;
    let last = sqlx::query_as!(
        SnapshotRow,
        r#"SELECT id AS "id!", app_id, trigger, mode, state, reason, restic_id, bytes, total_bytes,
                  files, added_bytes, paused_ms, created_at, started_at, finished_at, offsite_at
           FROM snapshots WHERE app_id = ? AND state IN ('done', 'failed')
           ORDER BY id DESC LIMIT 1"#,
        app_id
    )
    .fetch_optional(&mut *conn)
    .await?;
    Ok((done, last.map(Snapshot::from)))
}

/// Queues a snapshot unless one of the app's is queued or running already; either way, the
/// id of the one that will run.
pub async fn queue_snapshot(
    db: impl sqlx::Acquire<'_, Database = sqlx::Sqlite>,
    app_id: i64,
    trigger: Trigger,
    mode: Consistency,
    now: i64,
) -> Result<i64> {
    let mut conn = db.acquire().await?;
    let (trigger, mode) = (trigger.as_str(), mode.as_str());
    let made = sqlx::query_scalar!(
        r#"INSERT INTO snapshots (app_id, trigger, mode, created_at)
           SELECT ?1, ?2, ?3, ?4
           WHERE NOT EXISTS (SELECT 1 FROM snapshots
                             WHERE app_id = ?1 AND state IN ('queued', 'running'))
           RETURNING id AS "id!: i64""#,
        app_id,
        trigger,
        mode,
        now
    )
    .fetch_optional(&mut *conn)
    .await?;
    match made {
        Some(id) => Ok(id),
        None => Ok(sqlx::query_scalar!(
            r#"SELECT id AS "id!" FROM snapshots
               WHERE app_id = ? AND state IN ('queued', 'running') ORDER BY id LIMIT 1"#,
            app_id
        )
        .fetch_one(&mut *conn)
        .await?),
    }
}

/// Queues a restore unless a snapshot or a restore of the app is queued or running (None).
pub async fn queue_restore(
    db: impl SqliteExecutor<'_>,
    app_id: i64,
    snapshot_id: i64,
    into: Option<(i64, i64)>,
    now: i64,
) -> Result<Option<i64>> {
    let (from, into) = (into.map(|i| i.0), into.map(|i| i.1));
    Ok(sqlx::query_scalar!(
        r#"INSERT INTO restores (app_id, snapshot_id, created_at, from_volume_id, into_volume_id)
           SELECT ?1, ?2, ?3, ?4, ?5
           WHERE NOT EXISTS (SELECT 1 FROM snapshots
                             WHERE app_id = ?1 AND state IN ('queued', 'running'))
             AND NOT EXISTS (SELECT 1 FROM restores
                             WHERE app_id = ?1 AND state IN ('queued', 'running'))
           RETURNING id AS "id!: i64""#,
        app_id,
        snapshot_id,
        now,
        from,
        into
    )
    .fetch_optional(db)
    .await?)
}

pub async fn restore(db: impl SqliteExecutor<'_>, app_id: i64, id: i64) -> Result<Option<Restore>> {
    let row = sqlx::query_as!(
        RestoreRow,
        r#"SELECT id AS "id!", app_id, snapshot_id, state, reason, created_at, started_at,
                  finished_at, from_volume_id, into_volume_id,
                  (SELECT name FROM volumes v WHERE v.id = into_volume_id) AS into_volume
           FROM restores WHERE app_id = ? AND id = ?"#,
        app_id,
        id
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(Restore::from))
}

pub async fn latest_restore(db: impl SqliteExecutor<'_>, app_id: i64) -> Result<Option<Restore>> {
    let row = sqlx::query_as!(
        RestoreRow,
        r#"SELECT id AS "id!", app_id, snapshot_id, state, reason, created_at, started_at,
                  finished_at, from_volume_id, into_volume_id,
                  (SELECT name FROM volumes v WHERE v.id = into_volume_id) AS into_volume
           FROM restores WHERE app_id = ? ORDER BY id DESC LIMIT 1"#,
        app_id
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(Restore::from))
}

/// Apps with a schedule or any snapshot: (app id, owner's email, app name).
pub async fn apps_with_backups(db: impl SqliteExecutor<'_>) -> Result<Vec<(i64, String, String)>> {
    let rows = sqlx::query!(
        r#"SELECT a.id AS "id!", u.email, a.name FROM apps a JOIN users u ON u.id = a.user_id
           WHERE EXISTS (SELECT 1 FROM backup_policies p
                         WHERE p.app_id = a.id AND p.schedule <> 'off')
              OR EXISTS (SELECT 1 FROM snapshots s WHERE s.app_id = a.id)
           ORDER BY u.email, a.name"#
    )
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(|r| (r.id, r.email, r.name)).collect())
}

// ----- the worker's side ------------------------------------------------------------------

/// Work left running by a panel that stopped is failed (its container was unpaused or
/// restarted by then); returns how many rows.
pub async fn fail_interrupted(db: &sqlx::SqlitePool, now: i64) -> Result<u64> {
    let snaps = sqlx::query!(
        "UPDATE snapshots SET state = 'failed', finished_at = ?,
             reason = 'Pier stopped while this backup ran; it was not finished.'
         WHERE state = 'running'",
        now
    )
    .execute(db)
    .await?;
    let restores = sqlx::query!(
        "UPDATE restores SET state = 'failed', finished_at = ?,
             reason = 'Pier stopped while this restore ran: the volumes may hold part of the \
                       snapshot. Restore it again.'
         WHERE state = 'running'",
        now
    )
    .execute(db)
    .await?;
    Ok(snaps.rows_affected() + restores.rows_affected())
}

/// Fails every queued job with `reason` (the worker cannot run them).
pub async fn fail_queued(db: &sqlx::SqlitePool, reason: &str, now: i64) -> Result<()> {
    sqlx::query!(
        "UPDATE snapshots SET state = 'failed', reason = ?, finished_at = ? WHERE state = 'queued'",
        reason,
        now
    )
    .execute(db)
    .await?;
    sqlx::query!(
        "UPDATE restores SET state = 'failed', reason = ?, finished_at = ? WHERE state = 'queued'",
        reason,
        now
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Apps with a restore into their volumes queued or running: the reconciler leaves their
/// containers alone until it is done (on a machine restored from a backup, none is made before
/// the data is back). A dump's restore needs the app running; one into a new volume leaves it.
pub async fn restoring_apps(db: impl SqliteExecutor<'_>) -> Result<Vec<i64>> {
    Ok(sqlx::query_scalar!(
        r#"SELECT DISTINCT r.app_id AS "app_id!: i64" FROM restores r
           JOIN snapshots s ON s.id = r.snapshot_id
           WHERE r.state IN ('queued', 'running') AND r.from_volume_id IS NULL
             AND s.mode <> 'command'"#
    )
    .fetch_all(db)
    .await?)
}

/// A job for the worker.
#[derive(Debug, Clone)]
pub enum Job {
    Snapshot(Snapshot),
    Restore(Restore),
}

/// The oldest queued job, snapshots and restores alike, skipping apps in `skip`.
pub async fn next_job(
    db: impl sqlx::Acquire<'_, Database = sqlx::Sqlite>,
    skip: &std::collections::HashSet<i64>,
) -> Result<Option<Job>> {
    let mut conn = db.acquire().await?;
    let snaps = sqlx::query_as!(
        SnapshotRow,
        r#"SELECT id AS "id!", app_id, trigger, mode, state, reason, restic_id, bytes, total_bytes,
                  files, added_bytes, paused_ms, created_at, started_at, finished_at, offsite_at
           FROM snapshots WHERE state = 'queued' ORDER BY id LIMIT 100"#
    )
    .fetch_all(&mut *conn)
    .await?;
    let restores = sqlx::query_as!(
        RestoreRow,
        r#"SELECT id AS "id!", app_id, snapshot_id, state, reason, created_at, started_at,
                  finished_at, from_volume_id, into_volume_id,
                  (SELECT name FROM volumes v WHERE v.id = into_volume_id) AS into_volume
           FROM restores WHERE state = 'queued' ORDER BY id LIMIT 100"#
    )
    .fetch_all(&mut *conn)
    .await?;
    let s = snaps.into_iter().find(|s| !skip.contains(&s.app_id));
    let r = restores.into_iter().find(|r| !skip.contains(&r.app_id));
    Ok(match (s, r) {
        (Some(s), Some(r)) if r.created_at < s.created_at => Some(Job::Restore(r.into())),
        (Some(s), _) => Some(Job::Snapshot(s.into())),
        (None, Some(r)) => Some(Job::Restore(r.into())),
        (None, None) => None,
    })
}

/// Queued → running; false if it was not queued any more.
pub async fn start_snapshot(db: impl SqliteExecutor<'_>, id: i64, now: i64) -> Result<bool> {
    let done = sqlx::query!(
        "UPDATE snapshots SET state = 'running', started_at = ? WHERE id = ? AND state = 'queued'",
        now,
        id
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn snapshot_progress(
    db: impl SqliteExecutor<'_>,
    id: i64,
    bytes: i64,
    total_bytes: i64,
    files: i64,
) -> Result<()> {
    sqlx::query!(
        "UPDATE snapshots SET bytes = ?, total_bytes = ?, files = ? WHERE id = ? AND state = 'running'",
        bytes,
        total_bytes,
        files,
        id
    )
    .execute(db)
    .await?;
    Ok(())
}

/// What a finished snapshot recorded.
#[derive(Debug, Clone, Default)]
pub struct Taken {
    pub restic_id: String,
    pub bytes: i64,
    pub files: i64,
    pub added_bytes: i64,
}

pub async fn finish_snapshot(
    db: impl SqliteExecutor<'_>,
    id: i64,
    t: &Taken,
    paused_ms: Option<i64>,
    now: i64,
) -> Result<()> {
    sqlx::query!(
        "UPDATE snapshots SET state = 'done', restic_id = ?, bytes = ?, total_bytes = ?, files = ?,
             added_bytes = ?, paused_ms = ?, finished_at = ?, reason = NULL
         WHERE id = ?",
        t.restic_id,
        t.bytes,
        t.bytes,
        t.files,
        t.added_bytes,
        paused_ms,
        now,
        id
    )
    .execute(db)
    .await?;
    Ok(())
}

pub async fn fail_snapshot(
    db: impl SqliteExecutor<'_>,
    id: i64,
    reason: &str,
    paused_ms: Option<i64>,
    now: i64,
) -> Result<()> {
    sqlx::query!(
        "UPDATE snapshots SET state = 'failed', reason = ?, paused_ms = ?, finished_at = ?
         WHERE id = ?",
        reason,
        paused_ms,
        now,
        id
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Removes the rows of snapshots retention took out of the repository.
pub async fn forget(
    db: impl SqliteExecutor<'_>,
    app_id: i64,
    restic_ids: &[String],
) -> Result<u64> {
    if restic_ids.is_empty() {
        return Ok(0);
    }
    let list = serde_json::to_string(restic_ids).unwrap_or_else(|_| "[]".into());
    let done = sqlx::query!(
        "DELETE FROM snapshots WHERE app_id = ? AND state = 'done'
             AND restic_id IN (SELECT value FROM json_each(?))",
        app_id,
        list
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}

pub async fn start_restore(db: impl SqliteExecutor<'_>, id: i64, now: i64) -> Result<bool> {
    let done = sqlx::query!(
        "UPDATE restores SET state = 'running', started_at = ? WHERE id = ? AND state = 'queued'",
        now,
        id
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn end_restore(
    db: impl SqliteExecutor<'_>,
    id: i64,
    failure: Option<&str>,
    now: i64,
) -> Result<()> {
    let state = if failure.is_some() { "failed" } else { "done" };
    sqlx::query!(
        "UPDATE restores SET state = ?, reason = ?, finished_at = ? WHERE id = ?",
        state,
        failure,
        now,
        id
    )
    .execute(db)
    .await?;
    Ok(())
}

/// The restic snapshot a done snapshot row names (worker side, unscoped).
pub async fn restic_id(db: impl SqliteExecutor<'_>, id: i64) -> Result<Option<String>> {
    Ok(sqlx::query_scalar!(
        "SELECT restic_id FROM snapshots WHERE id = ? AND state = 'done'",
        id
    )
    .fetch_optional(db)
    .await?
    .flatten())
}

// ----- Pier's own backups -----------------------------------------------------------------

/// One backup of Pier itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PanelBackup {
    pub id: i64,
    pub trigger: Trigger,
    pub state: JobState,
    pub reason: Option<String>,
    pub restic_id: Option<String>,
    pub bytes: i64,
    pub created_at: i64,
    pub finished_at: i64,
}

pub async fn record_panel_backup(
    db: impl SqliteExecutor<'_>,
    trigger: Trigger,
    outcome: std::result::Result<(&str, i64), &str>,
    created_at: i64,
    now: i64,
) -> Result<i64> {
    let trigger = trigger.as_str();
    let (state, reason, restic_id, bytes) = match outcome {
        Ok((id, bytes)) => ("done", None, Some(id), bytes),
        Err(why) => ("failed", Some(why), None, 0),
    };
    Ok(sqlx::query_scalar!(
        r#"INSERT INTO panel_backups (trigger, state, reason, restic_id, bytes, created_at,
                                      finished_at)
           VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id AS "id!: i64""#,
        trigger,
        state,
        reason,
        restic_id,
        bytes,
        created_at,
        now
    )
    .fetch_one(db)
    .await?)
}

/// Pier's own backups, newest first.
pub async fn panel_backups(db: impl SqliteExecutor<'_>, limit: i64) -> Result<Vec<PanelBackup>> {
    let rows = sqlx::query!(
        r#"SELECT id AS "id!", trigger, state, reason, restic_id, bytes, created_at, finished_at
           FROM panel_backups ORDER BY id DESC LIMIT ?"#,
        limit
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| PanelBackup {
            id: r.id,
            trigger: Trigger::parse(&r.trigger).unwrap_or(Trigger::Manual),
            state: state(&r.state),
            reason: r.reason,
            restic_id: r.restic_id,
            bytes: r.bytes,
            created_at: r.created_at,
            finished_at: r.finished_at,
        })
        .collect())
}

/// Pier's own backups made at or after `since`: (state, finished_at).
pub async fn panel_attempts_since(
    db: impl SqliteExecutor<'_>,
    since: i64,
) -> Result<Vec<(JobState, Option<i64>)>> {
    let rows = sqlx::query!(
        "SELECT state, finished_at FROM panel_backups WHERE created_at >= ? ORDER BY id",
        since
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| (state(&r.state), Some(r.finished_at)))
        .collect())
}

/// Records the recovery passphrase (sealed); the bucket's repository needs it added again.
pub async fn set_passphrase(db: &sqlx::SqlitePool, sealed: &str, now: i64) -> Result<()> {
    sqlx::query!(
        "UPDATE instance SET backup_passphrase_at = ?, backup_passphrase_sealed = ?",
        now,
        sealed
    )
    .execute(db)
    .await?;
    sqlx::query!("UPDATE backup_targets SET passphrase_added = 0")
        .execute(db)
        .await?;
    Ok(())
}

/// The sealed recovery passphrase, when the bucket's repository still needs it as a key.
pub async fn passphrase_for_target(db: impl SqliteExecutor<'_>) -> Result<Option<String>> {
    Ok(sqlx::query_scalar!(
        "SELECT i.backup_passphrase_sealed FROM instance i, backup_targets t
         WHERE t.passphrase_added = 0 AND i.backup_passphrase_sealed IS NOT NULL LIMIT 1"
    )
    .fetch_optional(db)
    .await?
    .flatten())
}

pub async fn passphrase_added(db: impl SqliteExecutor<'_>) -> Result<()> {
    sqlx::query!("UPDATE backup_targets SET passphrase_added = 1")
        .execute(db)
        .await?;
    Ok(())
}

/// When the latest snapshot (of an app or of Pier) finished.
pub async fn latest_change(db: impl SqliteExecutor<'_>) -> Result<Option<i64>> {
    Ok(sqlx::query_scalar!(
        r#"SELECT MAX(t) AS "t?: i64" FROM (
               SELECT MAX(finished_at) AS t FROM snapshots WHERE state = 'done'
               UNION ALL
               SELECT MAX(finished_at) AS t FROM panel_backups WHERE state = 'done')"#
    )
    .fetch_one(db)
    .await?)
}

pub async fn passphrase_at(db: impl SqliteExecutor<'_>) -> Result<Option<i64>> {
    Ok(
        sqlx::query_scalar!("SELECT backup_passphrase_at FROM instance LIMIT 1")
            .fetch_optional(db)
            .await?
            .flatten(),
    )
}

/// After a restore onto a new machine: a snapshot found in the repository that the restored
/// database did not know yet (taken after Pier's own backup), recorded as done.
pub async fn adopt_snapshot(
    db: impl SqliteExecutor<'_>,
    app_id: i64,
    restic_id: &str,
    mode: Consistency,
    taken_at: i64,
) -> Result<i64> {
    let mode = mode.as_str();
    Ok(sqlx::query_scalar!(
        r#"INSERT INTO snapshots (app_id, trigger, mode, state, restic_id, created_at, started_at,
                                  finished_at)
           VALUES (?, 'schedule', ?, 'done', ?, ?, ?, ?) RETURNING id AS "id!: i64""#,
        app_id,
        mode,
        restic_id,
        taken_at,
        taken_at,
        taken_at
    )
    .fetch_one(db)
    .await?)
}

/// Every app's latest done snapshot: (app id, snapshot id, restic id).
pub async fn latest_done_per_app(db: impl SqliteExecutor<'_>) -> Result<Vec<(i64, i64, String)>> {
    let rows = sqlx::query!(
        r#"SELECT s.app_id AS "app_id!", s.id AS "id!", s.restic_id AS "restic_id!"
           FROM snapshots s
           WHERE s.state = 'done' AND s.restic_id IS NOT NULL
             AND s.id = (SELECT MAX(t.id) FROM snapshots t
                         WHERE t.app_id = s.app_id AND t.state = 'done')
           ORDER BY s.app_id"#
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| (r.app_id, r.id, r.restic_id))
        .collect())
}

/// After a restore through a copy of the repository, a snapshot's new id.
pub async fn rename_restic_id(db: impl SqliteExecutor<'_>, old: &str, new: &str) -> Result<()> {
    sqlx::query!(
        "UPDATE snapshots SET restic_id = ? WHERE restic_id = ?",
        new,
        old
    )
    .execute(db)
    .await?;
    Ok(())
}

/// What an app's snapshots take in the repository, as last measured.
pub async fn set_stored(db: impl SqliteExecutor<'_>, app_id: i64, bytes: i64) -> Result<()> {
    sqlx::query!(
        "UPDATE apps SET backup_bytes = ? WHERE id = ?",
        bytes,
        app_id
    )
    .execute(db)
    .await?;
    Ok(())
}

/// What the snapshots of a tenant's apps take together, in bytes.
pub async fn stored_for_user(db: impl SqliteExecutor<'_>, user_id: i64) -> Result<i64> {
    Ok(sqlx::query_scalar!(
        r#"SELECT COALESCE(SUM(backup_bytes), 0) AS "n!: i64" FROM apps WHERE user_id = ?"#,
        user_id
    )
    .fetch_one(db)
    .await?)
}

/// What one app's snapshots take, in bytes.
pub async fn stored_for_app(db: impl SqliteExecutor<'_>, app_id: i64) -> Result<i64> {
    Ok(sqlx::query_scalar!(
        r#"SELECT backup_bytes AS "n!: i64" FROM apps WHERE id = ?"#,
        app_id
    )
    .fetch_optional(db)
    .await?
    .unwrap_or(0))
}

/// When each app's last snapshot succeeded: (app id, unix seconds).
pub async fn last_done_per_app(db: impl SqliteExecutor<'_>) -> Result<Vec<(i64, i64)>> {
    let rows = sqlx::query!(
        r#"SELECT app_id AS "app_id!", MAX(finished_at) AS "at!: i64"
           FROM snapshots WHERE state = 'done' AND finished_at IS NOT NULL GROUP BY app_id"#
    )
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(|r| (r.app_id, r.at)).collect())
}
