//! Backups of apps' volumes: each app's policy (schedule, consistency, retention), its
//! snapshots, and restores. The service queues the work; the server's backup worker takes
//! snapshots with restic and records what happened on the same rows.
//!
//! Every lookup goes through the caller's own app (`own_app`), so another tenant's app, snapshot
//! or restore is simply not found.

use serde::{Deserialize, Serialize};

mod holds;
mod service;

pub use holds::{AppHold, Holds, RolloutMark};
pub use service::repository_password;

use crate::{Error, Result};

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
    /// What the patch sets, for the audit log. The commands are named, not quoted: one may
    /// carry a password on its command line.
    pub fn describe(&self) -> String {
        let short = |s: &str| -> String { s.trim().chars().take(40).collect() };
        let mut parts = Vec::new();
        for (label, v) in [
            ("schedule", &self.schedule),
            ("at", &self.at),
            ("on", &self.weekday),
            ("mode", &self.mode),
        ] {
            if let Some(v) = v {
                parts.push(format!("{label} {}", short(v)));
            }
        }
        for (label, v) in [
            ("keep last", self.keep_last),
            ("keep daily", self.keep_daily),
            ("keep weekly", self.keep_weekly),
        ] {
            if let Some(v) = v {
                parts.push(format!("{label} {v}"));
            }
        }
        if self.command.is_some() {
            parts.push("dump command set".into());
        }
        if self.restore_command.is_some() {
            parts.push("restore command set".into());
        }
        if parts.is_empty() {
            "nothing".into()
        } else {
            parts.join("; ")
        }
    }

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

impl RestoreInto {
    /// Where snapshot `id` goes, for the audit log.
    pub fn describe(&self, id: i64) -> String {
        match self {
            RestoreInto::App => format!("snapshot #{id} into the app"),
            RestoreInto::NewVolume { from, name } => format!(
                "snapshot #{id}{} into a new volume {}",
                from.as_deref()
                    .map(|f| format!(", volume {}", f.trim()))
                    .unwrap_or_default(),
                name.trim()
            ),
        }
    }
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
