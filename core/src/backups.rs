//! Backups of apps' volumes: each app's policy (schedule, consistency, retention), its
//! snapshots, and restores. The service queues the work; the server's backup worker takes
//! snapshots with restic and records what happened on the same rows.
//!
//! Every lookup goes through the caller's own app (`own_app`), so another tenant's app, snapshot
//! or restore is simply not found.

use serde::{Deserialize, Serialize};

use crate::{model::Actor, now, repo, validate, Error, Pier, Result};

/// Where backups go and how often the scheduler looks.
#[derive(Debug, Clone)]
pub struct BackupSettings {
    /// The local repository (`repo/`), restic's cache and the mount points a snapshot reads
    /// through live here. None: backups are off.
    pub dir: Option<std::path::PathBuf>,
    /// How often the scheduler looks for apps whose snapshot is due.
    pub check_every_secs: u64,
    /// The secret key's file, for Pier's own daily backup (None: not taken).
    pub key_file: Option<std::path::PathBuf>,
    /// After a failed copy to the offsite target, the next try waits this long, doubling
    /// with each failure (to an hour at most).
    pub offsite_retry_secs: u64,
    /// Offsite endpoints must be at one of these `host[:port]` (empty: any).
    pub target_hosts: Vec<String>,
    /// How often the data of deleted apps (and of first passes a stop left) is removed from
    /// the repositories.
    pub sweep_every_secs: u64,
}

impl Default for BackupSettings {
    fn default() -> Self {
        BackupSettings {
            dir: None,
            check_every_secs: 30,
            key_file: None,
            offsite_retry_secs: 60,
            target_hosts: Vec::new(),
            sweep_every_secs: 6 * 3600,
        }
    }
}

/// When an app is backed up on its own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    #[default]
    Off,
    Hourly,
    Daily,
    Weekly,
}

/// How the files are made consistent while they are read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Consistency {
    /// The container's processes are frozen (`docker pause`) while the snapshot is taken: the
    /// files are as after a power cut, which databases recover from.
    #[default]
    Pause,
    /// The container is stopped, and started again after the snapshot.
    Stop,
    /// A command run inside the container (`pg_dump -Fc …`) writes the backup to its standard
    /// output; the app keeps running. Restored by the policy's restore command, which reads it
    /// from its standard input.
    Command,
}

/// Where a snapshot or a restore stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Running,
    Done,
    Failed,
}

/// Who asked for a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    Manual,
    Schedule,
}

macro_rules! text_enum {
    ($t:ty { $($v:ident = $s:literal),* $(,)? }) => {
        impl $t {
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$v => $s),* }
            }
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($s => Some(Self::$v),)* _ => None }
            }
        }
    };
}
text_enum!(Schedule { Off = "off", Hourly = "hourly", Daily = "daily", Weekly = "weekly" });
text_enum!(Consistency { Pause = "pause", Stop = "stop", Command = "command" });
text_enum!(JobState { Queued = "queued", Running = "running", Done = "done", Failed = "failed" });
text_enum!(Trigger { Manual = "manual", Schedule = "schedule" });

pub const WEEKDAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

/// An app's backup policy. Apps without one have the default: not scheduled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupPolicy {
    pub schedule: Schedule,
    /// Minutes after midnight UTC (daily, weekly); hourly runs at this minute (mod 60).
    pub at_minute: i64,
    /// 0 = Monday … 6 = Sunday (weekly).
    pub weekday: i64,
    pub mode: Consistency,
    /// Retention: the latest N snapshots, the last of each of D days and of W weeks.
    pub keep_last: i64,
    pub keep_daily: i64,
    pub keep_weekly: i64,
    /// When the policy last changed (slots before it are not owed).
    pub updated_at: i64,
    /// Command mode: what runs inside the container to write the backup to standard output,
    /// and what reads it back on a restore (shell-like quoting, no shell; empty: none).
    pub command: String,
    pub restore_command: String,
}

impl Default for BackupPolicy {
    fn default() -> Self {
        BackupPolicy {
            schedule: Schedule::Off,
            at_minute: 3 * 60,
            weekday: 0,
            mode: Consistency::Pause,
            keep_last: 7,
            keep_daily: 7,
            keep_weekly: 4,
            updated_at: 0,
            command: String::new(),
            restore_command: String::new(),
        }
    }
}

impl BackupPolicy {
    /// "HH:MM", UTC.
    pub fn at_text(&self) -> String {
        format!("{:02}:{:02}", self.at_minute / 60, self.at_minute % 60)
    }

    pub fn weekday_text(&self) -> &'static str {
        WEEKDAYS[usize::try_from(self.weekday).unwrap_or(0).min(6)]
    }

    /// The newest moment at or before `now` when a scheduled snapshot was owed.
    pub fn last_slot(&self, now: i64) -> Option<i64> {
        const HOUR: i64 = 3600;
        const DAY: i64 = 24 * HOUR;
        const WEEK: i64 = 7 * DAY;
        let (period, offset) = match self.schedule {
            Schedule::Off => return None,
            Schedule::Hourly => (HOUR, (self.at_minute % 60) * 60),
            Schedule::Daily => (DAY, self.at_minute * 60),
            // 1970-01-01 was a Thursday (weekday 3).
            Schedule::Weekly => (WEEK, (self.weekday - 3) * DAY + self.at_minute * 60),
        };
        Some((now - offset).div_euclid(period) * period + offset)
    }

    /// Whether the scheduler should queue a snapshot now. `attempts`: this app's snapshots
    /// since the policy's last slot, as (state, finished_at). Failures are retried after 5 min,
    /// doubling to an hour.
    pub fn due(&self, now: i64, attempts: &[(JobState, Option<i64>)]) -> bool {
        let Some(slot) = self.last_slot(now) else {
            return false;
        };
        if slot < self.updated_at {
            return false;
        }
        if attempts.iter().any(|(s, _)| *s != JobState::Failed) {
            return false;
        }
        let failures = attempts.len() as u32;
        if failures == 0 {
            return true;
        }
        let last = attempts.iter().filter_map(|(_, f)| *f).max().unwrap_or(now);
        let delay = (300i64 << (failures - 1).min(4)).min(3600);
        now >= last + delay
    }

    /// The last slot passed more than 15 minutes ago and no snapshot succeeded since.
    pub fn overdue(&self, now: i64, last_done_at: Option<i64>) -> bool {
        let Some(slot) = self.last_slot(now) else {
            return false;
        };
        slot >= self.updated_at && now - slot > 15 * 60 && last_done_at.is_none_or(|d| d < slot)
    }
}

/// Pier's own backups: daily at 02:30 UTC; the last 7, one a day for 14 days, one a week for 8
/// weeks.
pub const PANEL_POLICY: BackupPolicy = BackupPolicy {
    schedule: Schedule::Daily,
    at_minute: 150,
    weekday: 0,
    mode: Consistency::Pause,
    keep_last: 7,
    keep_daily: 14,
    keep_weekly: 8,
    updated_at: 0,
    command: String::new(),
    restore_command: String::new(),
};

/// Pier's own backups at a glance, for the admin page.
#[derive(Debug, Clone)]
pub struct PanelBackupStatus {
    pub last_done_at: Option<i64>,
    /// The latest attempt, when it failed.
    pub last_failure: Option<(String, i64)>,
    /// When the operator set the passphrase that opens the backups on a new machine.
    pub passphrase_at: Option<i64>,
    pub overdue: bool,
}

/// Changes to a policy, as typed; what is left out stays.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PolicyPatch {
    pub schedule: Option<String>,
    /// "HH:MM", UTC.
    pub at: Option<String>,
    /// "monday" … "sunday".
    pub weekday: Option<String>,
    pub mode: Option<String>,
    pub keep_last: Option<i64>,
    pub keep_daily: Option<i64>,
    pub keep_weekly: Option<i64>,
    pub command: Option<String>,
    pub restore_command: Option<String>,
}

impl PolicyPatch {
    /// The policy after the patch, or every field that is wrong.
    pub fn apply(&self, old: &BackupPolicy) -> Result<BackupPolicy> {
        let mut p = old.clone();
        let mut errors = Vec::new();
        if let Some(s) = &self.schedule {
            match Schedule::parse(s.trim()) {
                Some(v) => p.schedule = v,
                None => errors.push(("schedule", "Choose off, hourly, daily or weekly.".into())),
            }
        }
        if let Some(at) = &self.at {
            match parse_hhmm(at.trim()) {
                Some(m) => p.at_minute = m,
                None => errors.push(("at", "Give a time as HH:MM (00:00 to 23:59, UTC).".into())),
            }
        }
        if let Some(d) = &self.weekday {
            let d = d.trim().to_ascii_lowercase();
            match WEEKDAYS.iter().position(|w| *w == d) {
                Some(i) => p.weekday = i as i64,
                None => errors.push(("weekday", "Choose a day, monday to sunday.".into())),
            }
        }
        if let Some(m) = &self.mode {
            match Consistency::parse(m.trim()) {
                Some(v) => p.mode = v,
                None => errors.push(("mode", "Choose pause, stop or command.".into())),
            }
        }
        for (field, value, min, slot) in [
            ("keep_last", self.keep_last, 1, &mut p.keep_last),
            ("keep_daily", self.keep_daily, 0, &mut p.keep_daily),
            ("keep_weekly", self.keep_weekly, 0, &mut p.keep_weekly),
        ] {
            if let Some(v) = value {
                if (min..=1000).contains(&v) {
                    *slot = v;
                } else {
                    errors.push((field, format!("Give a number from {min} to 1000.")));
                }
            }
        }
        for (field, value, slot) in [
            ("command", &self.command, &mut p.command),
            (
                "restore_command",
                &self.restore_command,
                &mut p.restore_command,
            ),
        ] {
            if let Some(v) = value {
                match command_args(v) {
                    Ok(_) => *slot = v.trim().to_owned(),
                    Err(m) => errors.push((field, m)),
                }
            }
        }
        if p.mode == Consistency::Command && p.command.is_empty() && errors.is_empty() {
            errors.push((
                "command",
                "Give the command whose output is the backup, e.g. pg_dump -Fc -U postgres app."
                    .into(),
            ));
        }
        if errors.is_empty() {
            Ok(p)
        } else {
            Err(Error::Invalid(
                errors
                    .into_iter()
                    .map(|(f, m)| crate::error::FieldError {
                        field: f.into(),
                        message: m,
                    })
                    .collect(),
            ))
        }
    }
}

/// A command as the argument list it runs with: shell-like quoting (`'…'`, `"…"`, `\\`), no
/// shell, so nothing in it is expanded or piped (`sh -c '…'` does that, inside the container).
/// Empty text is no command.
pub fn command_args(text: &str) -> std::result::Result<Vec<String>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(Vec::new());
    }
    if text.len() > 1000 {
        return Err("Keep the command under 1000 characters.".into());
    }
    if text.chars().any(char::is_control) {
        return Err("Write the command on one line, without control characters.".into());
    }
    let args =
        shlex::split(text).ok_or_else(|| "A quote in the command is not closed.".to_string())?;
    if args.len() > 64 {
        return Err("Give the command at most 64 arguments.".into());
    }
    if args.first().is_none_or(|a| a.is_empty()) {
        return Err("Start the command with the program to run.".into());
    }
    Ok(args)
}

fn parse_hhmm(s: &str) -> Option<i64> {
    let (h, m) = s.split_once(':')?;
    let ok = |t: &str| (1..=2).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_digit());
    if !ok(h) || m.len() != 2 || !ok(m) {
        return None;
    }
    let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some(h * 60 + m)
}

/// One snapshot of an app's volumes (or the attempt at one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub id: i64,
    pub app_id: i64,
    pub trigger: Trigger,
    pub mode: Consistency,
    pub state: JobState,
    pub reason: Option<String>,
    pub restic_id: Option<String>,
    /// Read so far (running) or in all (done).
    pub bytes: i64,
    /// What there is to read, once known.
    pub total_bytes: i64,
    pub files: i64,
    /// New data this snapshot stored (after deduplication and compression).
    pub added_bytes: Option<i64>,
    /// How long the app was paused or stopped, in ms.
    pub paused_ms: Option<i64>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    /// When it was copied to the offsite target.
    pub offsite_at: Option<i64>,
}

impl Snapshot {
    pub fn duration_ms(&self) -> Option<i64> {
        Some((self.finished_at? - self.started_at?) * 1000)
    }
}

/// One restore of a snapshot into its app's volumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restore {
    pub id: i64,
    pub app_id: i64,
    pub snapshot_id: i64,
    pub state: JobState,
    pub reason: Option<String>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    /// A restore into a new volume: which of the snapshot's volumes, the volume made for it and
    /// its name. None: into the app's own volumes.
    pub from_volume_id: Option<i64>,
    pub into_volume_id: Option<i64>,
    pub into_volume: Option<String>,
}

/// Where a restore writes a snapshot's files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum RestoreInto {
    /// Over the app's own volumes (or through its restore command).
    #[default]
    App,
    /// Into a new kept volume `name`, from the snapshot's copy of the app's volume `from` (may
    /// be left out when the app has one volume).
    NewVolume { from: Option<String>, name: String },
}

/// An app's backups at a glance: its policy and how the latest attempts went.
#[derive(Debug, Clone)]
pub struct BackupSummary {
    pub policy: BackupPolicy,
    pub last_done_at: Option<i64>,
    /// The latest snapshot, when it failed: its reason and time.
    pub last_failure: Option<(String, i64)>,
    pub overdue: bool,
    /// The latest restore, whatever its state.
    pub last_restore: Option<Restore>,
    /// What the app's snapshots take in the repository (after deduplication and compression).
    pub stored_bytes: i64,
}

/// One app's line on the admin page.
#[derive(Debug, Clone)]
pub struct BackupOverviewRow {
    pub owner: String,
    pub app: String,
    pub summary: BackupSummary,
}

/// How many snapshots a list shows (retention keeps far fewer).
const LISTED: i64 = 500;

impl Pier {
    pub async fn backup_policy(&self, app_id: i64) -> Result<BackupPolicy> {
        Ok(repo::backups::policy(self.db(), app_id)
            .await?
            .unwrap_or_default())
    }

    /// Changes the caller's app's backup policy; the scheduler follows at once.
    pub async fn set_backup_policy(
        &self,
        actor: &Actor,
        name: &str,
        patch: &PolicyPatch,
    ) -> Result<BackupPolicy> {
        let app = self.own_app(actor, name).await?;
        let old = self.backup_policy(app.id).await?;
        let mut p = patch.apply(&old)?;
        if p != old {
            p.updated_at = now();
            repo::backups::set_policy(self.db(), app.id, &p).await?;
            self.wake_backups();
        }
        Ok(p)
    }

    pub async fn backup_summary(&self, app_id: i64) -> Result<BackupSummary> {
        let policy = self.backup_policy(app_id).await?;
        let (last_done_at, last) = repo::backups::latest(self.db(), app_id).await?;
        let last_failure = last.filter(|s| s.state == JobState::Failed).map(|s| {
            (
                s.reason.unwrap_or_default(),
                s.finished_at.unwrap_or(s.created_at),
            )
        });
        Ok(BackupSummary {
            overdue: policy.overdue(now(), last_done_at),
            policy,
            last_done_at,
            last_failure,
            last_restore: repo::backups::latest_restore(self.db(), app_id).await?,
            stored_bytes: repo::backups::stored_for_app(self.db(), app_id).await?,
        })
    }

    /// The caller's app's snapshots, newest first.
    pub async fn backups(&self, actor: &Actor, name: &str) -> Result<Vec<Snapshot>> {
        let app = self.own_app(actor, name).await?;
        repo::backups::list(self.db(), app.id, LISTED).await
    }

    /// One of the caller's app's snapshots, or 404.
    pub async fn backup(&self, actor: &Actor, name: &str, id: i64) -> Result<Snapshot> {
        let app = self.own_app(actor, name).await?;
        repo::backups::snapshot(self.db(), app.id, id)
            .await?
            .ok_or(Error::NotFound)
    }

    /// Queues a snapshot of the caller's app now. One already queued or running is answered
    /// instead of a second.
    pub async fn back_up_now(&self, actor: &Actor, name: &str) -> Result<Snapshot> {
        let app = self.own_app(actor, name).await?;
        self.backups_on()?;
        if let Some(full) = self.backup_quota_full(actor.user_id).await? {
            return Err(Error::Quota(full));
        }
        let mode = self.backup_policy(app.id).await?.mode;
        if mode != Consistency::Command
            && repo::volumes::for_app(self.db(), app.id).await?.is_empty()
        {
            return Err(Error::Conflict(
                "This app has no volumes, so there is nothing to back up.".into(),
            ));
        }
        let id =
            repo::backups::queue_snapshot(self.db(), app.id, Trigger::Manual, mode, now()).await?;
        self.wake_backups();
        repo::backups::snapshot(self.db(), app.id, id)
            .await?
            .ok_or_else(|| Error::internal("snapshot vanished"))
    }

    /// Queues a restore of one of the caller's app's snapshots. Into the app: the app is
    /// stopped, its volumes' contents replaced by the snapshot's, and started again (a dump
    /// taken by a command is fed to the policy's restore command instead, while the app runs).
    /// Into a new volume: one of the snapshot's volumes is written to a new kept volume of the
    /// caller (within their storage quota), and the app is not touched.
    pub async fn restore_backup(
        &self,
        actor: &Actor,
        name: &str,
        id: i64,
        into: &RestoreInto,
    ) -> Result<Restore> {
        let snap = self.backup(actor, name, id).await?;
        self.backups_on()?;
        if snap.state != JobState::Done {
            return Err(Error::Conflict(
                "Only a finished snapshot can be restored.".into(),
            ));
        }
        let busy = || {
            Error::Conflict(
                "A backup or restore of this app is under way; try again when it ends.".into(),
            )
        };
        let rid = match into {
            RestoreInto::App => {
                if snap.mode == Consistency::Command
                    && self
                        .backup_policy(snap.app_id)
                        .await?
                        .restore_command
                        .is_empty()
                {
                    return Err(Error::field(
                        "restore_command",
                        "This snapshot is a command's output: set the app's restore command (for example pg_restore --clean --if-exists -U postgres -d app), which reads it from its standard input, then restore.",
                    ));
                }
                repo::backups::queue_restore(self.db(), snap.app_id, snap.id, None, now())
                    .await?
                    .ok_or_else(busy)?
            }
            RestoreInto::NewVolume { from, name: new } => {
                if snap.mode == Consistency::Command {
                    return Err(Error::field(
                        "into_volume",
                        "This snapshot is a command's output, not a volume: download it, or restore it into the app.",
                    ));
                }
                let new = validate::volume_name(new).map_err(|e| Error::field("into_volume", e))?;
                let vols = repo::volumes::for_app(self.db(), snap.app_id).await?;
                let source = match from.as_deref().map(str::trim).filter(|f| !f.is_empty()) {
                    Some(f) => vols.iter().find(|v| v.name == f).ok_or_else(|| {
                        Error::field("from_volume", format!("This app has no volume named {f}."))
                    })?,
                    None if vols.len() == 1 => &vols[0],
                    None => {
                        return Err(Error::field(
                            "from_volume",
                            "Say which of the app's volumes to restore.",
                        ))
                    }
                };
                let q = repo::users::by_id(self.db(), actor.user_id)
                    .await?
                    .ok_or(Error::Unauthenticated)?
                    .quotas;
                let mut tx = self.db().begin().await?;
                if repo::volumes::list_for_user(&mut *tx, actor.user_id)
                    .await?
                    .iter()
                    .any(|v| v.name == new)
                {
                    return Err(Error::field(
                        "into_volume",
                        format!("You have a volume named {new} already; choose another name."),
                    ));
                }
                let row = repo::volumes::NewVolume {
                    user_id: actor.user_id,
                    app_id: None,
                    name: &new,
                    path: &source.path,
                    size_mb: source.size_mb,
                };
                let Some(vid) =
                    repo::volumes::insert_within_quota(&mut *tx, &row, q.max_storage_mb, now())
                        .await?
                else {
                    let used = repo::volumes::usage(&mut *tx, actor.user_id).await?;
                    return Err(Error::Quota(format!(
                        "The new volume needs {} MiB, but only {} MiB of your {} MiB storage quota is free. Delete a volume you no longer need, or ask an admin to raise your quota.",
                        source.size_mb,
                        (q.max_storage_mb - used).max(0),
                        q.max_storage_mb
                    )));
                };
                let rid = repo::backups::queue_restore(
                    &mut *tx,
                    snap.app_id,
                    snap.id,
                    Some((source.id, vid)),
                    now(),
                )
                .await?
                .ok_or_else(busy)?;
                tx.commit().await?;
                rid
            }
        };
        self.wake_backups();
        tracing::info!(
            app = name,
            snapshot = id,
            tenant = actor.user_id,
            into = ?into,
            "restore queued"
        );
        repo::backups::restore(self.db(), snap.app_id, rid)
            .await?
            .ok_or_else(|| Error::internal("restore vanished"))
    }

    /// One of the caller's app's restores, or 404.
    pub async fn restore_job(&self, actor: &Actor, name: &str, id: i64) -> Result<Restore> {
        let app = self.own_app(actor, name).await?;
        repo::backups::restore(self.db(), app.id, id)
            .await?
            .ok_or(Error::NotFound)
    }

    /// Every app with a policy or a snapshot, for the admin page.
    pub async fn backup_overview(&self, actor: &Actor) -> Result<Vec<BackupOverviewRow>> {
        Self::require_admin(actor)?;
        let mut out = Vec::new();
        for (app_id, owner, app) in repo::backups::apps_with_backups(self.db()).await? {
            out.push(BackupOverviewRow {
                owner,
                app,
                summary: self.backup_summary(app_id).await?,
            });
        }
        Ok(out)
    }

    /// What the tenant's backups take, and the most they may (bytes).
    pub async fn backup_usage(&self, user_id: i64) -> Result<(i64, i64)> {
        let q = repo::users::by_id(self.db(), user_id)
            .await?
            .ok_or(Error::NotFound)?
            .quotas;
        let used = repo::backups::stored_for_user(self.db(), user_id).await?;
        Ok((used, q.max_backup_mb.saturating_mul(1 << 20)))
    }

    /// Why no new snapshot of the tenant's apps may be taken: their backups fill the quota.
    pub async fn backup_quota_full(&self, user_id: i64) -> Result<Option<String>> {
        let (used, max) = self.backup_usage(user_id).await?;
        Ok((used >= max).then(|| {
            format!(
                "Your backups take {} MiB of your {} MiB backup quota. Keep fewer snapshots (retention), or ask an admin to raise the quota.",
                used >> 20,
                max >> 20
            )
        }))
    }

    fn backups_on(&self) -> Result<()> {
        match self.settings().backups.dir {
            Some(_) => Ok(()),
            None => Err(Error::Unavailable(
                "Backups are not set up on this server; ask its operator.".into(),
            )),
        }
    }

    /// Whether the caller may take a backup of Pier itself now (admins, where it is set up).
    pub fn may_back_up_pier(&self, actor: &Actor) -> Result<()> {
        Self::require_admin(actor)?;
        let b = &self.settings().backups;
        if b.dir.is_none() || b.key_file.is_none() {
            return Err(Error::Unavailable(
                "Pier's own backups are not set up on this server.".into(),
            ));
        }
        Ok(())
    }

    /// Pier's own backups (admins only).
    pub async fn panel_backup_status(&self, actor: &Actor) -> Result<PanelBackupStatus> {
        Self::require_admin(actor)?;
        let list = repo::backups::panel_backups(self.db(), 50).await?;
        let last_done_at = list
            .iter()
            .find(|b| b.state == JobState::Done)
            .map(|b| b.finished_at);
        let last_failure = list
            .first()
            .filter(|b| b.state == JobState::Failed)
            .map(|b| (b.reason.clone().unwrap_or_default(), b.finished_at));
        // Only where the daily backup runs at all (a Pier that knows its key file).
        let scheduled =
            self.settings().backups.dir.is_some() && self.settings().backups.key_file.is_some();
        Ok(PanelBackupStatus {
            overdue: scheduled && PANEL_POLICY.overdue(now(), last_done_at),
            last_done_at,
            last_failure,
            passphrase_at: repo::backups::passphrase_at(self.db()).await?,
        })
    }

    /// Wakes the backup worker (a queued job, a changed policy).
    pub fn wake_backups(&self) {
        self.0.wake_backups.notify_one();
    }

    /// Waits until [`Pier::wake_backups`] is called (a call made before waiting counts).
    pub async fn backups_woken(&self) {
        self.0.wake_backups.notified().await;
    }

    /// Keeps the reconciler's hands off an app (its container is paused, stopped or its volumes
    /// are being replaced) until the guard drops. `None` while it is held already or a rollout
    /// of it runs.
    pub fn hold_app(&self, app_id: i64) -> Option<AppHold> {
        let mut h = self.0.holds.lock().expect("holds lock");
        if h.rolling.contains_key(&app_id) || !h.held.insert(app_id) {
            return None;
        }
        Some(AppHold(self.clone(), app_id))
    }

    /// The apps held now.
    pub fn held_apps(&self) -> std::collections::HashSet<i64> {
        self.0.holds.lock().expect("holds lock").held.clone()
    }

    /// Marks a rollout of the app as running until the guard drops; `None` while the app is
    /// held. Checked and marked under one lock with [`Pier::hold_app`], so a backup and a
    /// rollout never both have the app's container.
    pub fn begin_rollout(&self, app_id: i64) -> Option<RolloutMark> {
        let mut h = self.0.holds.lock().expect("holds lock");
        if h.held.contains(&app_id) {
            return None;
        }
        *h.rolling.entry(app_id).or_insert(0) += 1;
        Some(RolloutMark(self.clone(), app_id))
    }

    /// The secret restic repositories are encrypted with: derived from the operator's key, so
    /// the key (and nothing stored) opens them.
    pub fn backup_password(&self) -> String {
        repository_password(self.key())
    }

    /// Seals the operator's recovery passphrase (the bucket's repository gets it as a key too).
    pub async fn record_passphrase(&self, passphrase: &str) -> Result<()> {
        let sealed = self
            .key()
            .encrypt(passphrase.as_bytes(), PASSPHRASE_CONTEXT);
        repo::backups::set_passphrase(self.db(), &sealed, now()).await
    }

    /// The recovery passphrase, when the bucket's repository still needs it as a key.
    pub async fn passphrase_for_target(&self) -> Result<Option<String>> {
        let Some(sealed) = repo::backups::passphrase_for_target(self.db()).await? else {
            return Ok(None);
        };
        let p = self.key().decrypt(&sealed, PASSPHRASE_CONTEXT)?;
        Ok(Some(String::from_utf8_lossy(&p).into_owned()))
    }
}

/// Apps held by backups and apps being rolled out (how many rollouts each).
#[derive(Default)]
pub struct Holds {
    held: std::collections::HashSet<i64>,
    rolling: std::collections::HashMap<i64, u32>,
}

const PASSPHRASE_CONTEXT: &str = "backups: recovery passphrase";

/// The password of Pier's restic repositories, derived from the operator's key.
pub fn repository_password(key: &crate::secret::SecretKey) -> String {
    hex::encode(&key.derive("pier backups: restic repository password")[..32])
}

/// See [`Pier::hold_app`].
pub struct AppHold(Pier, i64);

impl Drop for AppHold {
    fn drop(&mut self) {
        (self.0)
            .0
            .holds
            .lock()
            .expect("holds lock")
            .held
            .remove(&self.1);
        self.0.wake_engine();
    }
}

/// See [`Pier::begin_rollout`].
pub struct RolloutMark(Pier, i64);

impl Drop for RolloutMark {
    fn drop(&mut self) {
        let mut h = (self.0).0.holds.lock().expect("holds lock");
        if let std::collections::hash_map::Entry::Occupied(mut e) = h.rolling.entry(self.1) {
            *e.get_mut() -= 1;
            if *e.get() == 0 {
                e.remove();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! at {
        ($($t:tt)*) => {
            time::macros::datetime!($($t)* UTC).unix_timestamp()
        };
    }

    fn policy(schedule: Schedule, hhmm: &str, weekday: i64) -> BackupPolicy {
        BackupPolicy {
            schedule,
            at_minute: parse_hhmm(hhmm).unwrap(),
            weekday,
            ..Default::default()
        }
    }

    #[test]
    fn slots_fall_on_the_chosen_minute_hour_and_day() {
        let now = at!(2026-12-03 10:20); // a Thursday
        assert_eq!(policy(Schedule::Off, "03:00", 0).last_slot(now), None);
        assert_eq!(
            policy(Schedule::Hourly, "03:15", 0).last_slot(now),
            Some(at!(2026-12-03 10:15))
        );
        assert_eq!(
            policy(Schedule::Hourly, "00:30", 0).last_slot(now),
            Some(at!(2026-12-03 09:30))
        );
        assert_eq!(
            policy(Schedule::Daily, "03:00", 0).last_slot(now),
            Some(at!(2026-12-03 03:00))
        );
        assert_eq!(
            policy(Schedule::Daily, "23:59", 0).last_slot(now),
            Some(at!(2026-12-02 23:59))
        );
        // Monday 03:00 → this week's Monday; Sunday 02:00 → last Sunday; Thursday 11:00 → a
        // week ago.
        assert_eq!(
            policy(Schedule::Weekly, "03:00", 0).last_slot(now),
            Some(at!(2026-11-30 03:00))
        );
        assert_eq!(
            policy(Schedule::Weekly, "02:00", 6).last_slot(now),
            Some(at!(2026-11-29 02:00))
        );
        assert_eq!(
            policy(Schedule::Weekly, "11:00", 3).last_slot(now),
            Some(at!(2026-11-26 11:00))
        );
        // Exactly on the slot: that slot.
        assert_eq!(
            policy(Schedule::Daily, "10:20", 0).last_slot(now),
            Some(now)
        );
    }

    #[test]
    fn due_once_per_slot_with_backoff_after_failures() {
        let now = at!(2026-12-03 10:20);
        let mut p = policy(Schedule::Daily, "03:00", 0);
        assert!(p.due(now, &[]));
        assert!(!p.due(now, &[(JobState::Queued, None)]));
        assert!(!p.due(now, &[(JobState::Done, Some(now - 10))]));
        // Failed 4 minutes ago: not yet; 5 minutes: again; two failures: 10 minutes.
        assert!(!p.due(now, &[(JobState::Failed, Some(now - 240))]));
        assert!(p.due(now, &[(JobState::Failed, Some(now - 300))]));
        let two = [
            (JobState::Failed, Some(now - 900)),
            (JobState::Failed, Some(now - 300)),
        ];
        assert!(!p.due(now, &two));
        assert!(p.due(now + 300, &two));
        // A policy set after today's slot owes nothing until tomorrow's.
        p.updated_at = at!(2026-12-03 09:00);
        assert!(!p.due(now, &[]));
        assert!(p.due(at!(2026-12-04 03:00), &[]));
        assert!(!policy(Schedule::Off, "03:00", 0).due(now, &[]));
    }

    #[test]
    fn overdue_when_a_slot_passed_without_a_success() {
        let now = at!(2026-12-03 10:20);
        let p = policy(Schedule::Daily, "03:00", 0);
        assert!(p.overdue(now, None));
        assert!(p.overdue(now, Some(at!(2026-12-02 03:01))));
        assert!(!p.overdue(now, Some(at!(2026-12-03 03:01))));
        // Within 15 minutes of the slot the run may still be going.
        assert!(!p.overdue(at!(2026-12-03 03:10), None));
        assert!(!policy(Schedule::Off, "03:00", 0).overdue(now, None));
    }

    #[test]
    fn commands_are_argument_lists_without_a_shell() {
        assert_eq!(
            command_args(" pg_dump -Fc -U postgres 'my db' ").unwrap(),
            ["pg_dump", "-Fc", "-U", "postgres", "my db"]
        );
        assert_eq!(
            command_args(r#"sh -c "pg_dumpall | gzip""#).unwrap(),
            ["sh", "-c", "pg_dumpall | gzip"]
        );
        // Shell syntax outside quotes is only text: no pipe, no expansion.
        assert_eq!(
            command_args("echo $HOME; rm x").unwrap(),
            ["echo", "$HOME;", "rm", "x"]
        );
        assert_eq!(command_args("  ").unwrap(), Vec::<String>::new());
        for bad in [
            "'open",
            "a\tb\u{7}",
            "'' x",
            &"x ".repeat(65),
            &"y".repeat(1001),
        ] {
            assert!(command_args(bad).is_err(), "{bad:?}");
        }
        // Command mode needs a command; switching back keeps it for later.
        let needs = PolicyPatch {
            mode: Some("command".into()),
            ..Default::default()
        }
        .apply(&BackupPolicy::default())
        .unwrap_err();
        assert_eq!(needs.fields()[0].field, "command");
        let p = PolicyPatch {
            mode: Some("command".into()),
            command: Some("pg_dump -Fc".into()),
            ..Default::default()
        }
        .apply(&BackupPolicy::default())
        .unwrap();
        assert_eq!(
            (p.mode, p.command.as_str()),
            (Consistency::Command, "pg_dump -Fc")
        );
        let back = PolicyPatch {
            mode: Some("pause".into()),
            ..Default::default()
        }
        .apply(&p)
        .unwrap();
        assert_eq!(back.command, "pg_dump -Fc");
    }

    #[test]
    fn patches_are_checked_field_by_field() {
        let old = BackupPolicy::default();
        let p = PolicyPatch {
            schedule: Some("weekly".into()),
            at: Some("4:05".into()),
            weekday: Some("Sunday".into()),
            mode: Some("stop".into()),
            keep_last: Some(3),
            ..Default::default()
        }
        .apply(&old)
        .unwrap();
        assert_eq!(p.schedule, Schedule::Weekly);
        assert_eq!(p.at_text(), "04:05");
        assert_eq!(p.weekday_text(), "sunday");
        assert_eq!(p.mode, Consistency::Stop);
        assert_eq!((p.keep_last, p.keep_daily, p.keep_weekly), (3, 7, 4));

        let bad = PolicyPatch {
            schedule: Some("sometimes".into()),
            at: Some("24:00".into()),
            weekday: Some("funday".into()),
            mode: Some("sometimes".into()),
            keep_last: Some(0),
            keep_daily: Some(-1),
            keep_weekly: Some(1001),
            command: Some("pg_dump 'unclosed".into()),
            restore_command: Some("a\nb".into()),
        }
        .apply(&old)
        .unwrap_err();
        let fields: Vec<String> = bad.fields().iter().map(|f| f.field.clone()).collect();
        assert_eq!(
            fields,
            [
                "schedule",
                "at",
                "weekday",
                "mode",
                "keep_last",
                "keep_daily",
                "keep_weekly",
                "command",
                "restore_command"
            ]
        );
        for t in ["12", "1:5", "12:345", "ab:cd", "-1:00", " 1:00", "12:60"] {
            assert_eq!(parse_hhmm(t), None, "{t}");
        }
        assert_eq!(parse_hhmm("00:00"), Some(0));
        assert_eq!(parse_hhmm("23:59"), Some(1439));
    }
}
