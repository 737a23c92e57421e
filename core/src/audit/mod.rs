//! The audit log: every state change a person or a token asks for, with who (user, token),
//! when, from where (the address Pier's HAProxy saw), what (the object and a summary of the
//! change, never a secret value) and the outcome, whether it succeeded or was refused.
//!
//! The service methods that change state record their own entry (`audited`, or `record` where
//! the summary is only known part way), so every adapter (browser, REST API, command line) is
//! covered by the same line of code, once. Entries are only ever inserted; the retention sweep
//! is the only thing that removes them, and nothing in Pier edits them.

mod writer;

pub(crate) use writer::Writer;

use std::future::Future;

use serde::{Deserialize, Serialize};

use crate::{
    model::{Actor, Origin},
    now, repo, Error, Pier, Result,
};

/// The longest page a listing returns.
pub const MAX_PAGE: i64 = 200;
/// Retention bounds an admin may choose, in days.
pub const RETENTION_DAYS: std::ops::RangeInclusive<i64> = 7..=3650;

/// The operator's switch: on unless `pier serve --no-audit-log` (which exists to measure what
/// the log costs; the admin page says when it is off).
#[derive(Debug, Clone)]
pub struct AuditSettings {
    pub enabled: bool,
}

impl Default for AuditSettings {
    fn default() -> Self {
        AuditSettings { enabled: true }
    }
}

/// What kind of thing an action changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectKind {
    Account,
    Session,
    User,
    Token,
    App,
    Volume,
    Domain,
    Certificate,
    Registry,
    Backup,
    Settings,
    /// A machine of the Swarm.
    Node,
}

impl ObjectKind {
    pub const ALL: [ObjectKind; 12] = [
        ObjectKind::Account,
        ObjectKind::Session,
        ObjectKind::User,
        ObjectKind::Token,
        ObjectKind::App,
        ObjectKind::Volume,
        ObjectKind::Domain,
        ObjectKind::Certificate,
        ObjectKind::Registry,
        ObjectKind::Backup,
        ObjectKind::Settings,
        ObjectKind::Node,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Account => "account",
            ObjectKind::Session => "session",
            ObjectKind::User => "user",
            ObjectKind::Token => "token",
            ObjectKind::App => "app",
            ObjectKind::Volume => "volume",
            ObjectKind::Domain => "domain",
            ObjectKind::Certificate => "certificate",
            ObjectKind::Registry => "registry",
            ObjectKind::Backup => "backup",
            ObjectKind::Settings => "settings",
            ObjectKind::Node => "node",
        }
    }

    pub fn parse(s: &str) -> Option<ObjectKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

macro_rules! actions {
    ($($variant:ident => $name:literal, $kind:ident;)*) => {
        /// One kind of change, named `<object>.<verb>` in entries and filters.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Action {
            $($variant,)*
        }

        impl Action {
            pub const ALL: &'static [Action] = &[$(Action::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Action::$variant => $name,)*
                }
            }

            pub fn kind(self) -> ObjectKind {
                match self {
                    $(Action::$variant => ObjectKind::$kind,)*
                }
            }
        }
    };
}

actions! {
    SignIn => "account.sign_in", Account;
    SignInCode => "account.sign_in_code", Account;
    SignInPasskey => "account.sign_in_passkey", Account;
    SignOut => "account.sign_out", Account;
    TwoFactorOn => "account.two_factor_on", Account;
    TwoFactorOff => "account.two_factor_off", Account;
    RecoveryCodes => "account.recovery_codes", Account;
    PasskeyAdd => "account.passkey_add", Account;
    PasskeyRemove => "account.passkey_remove", Account;
    NotifySettings => "account.notifications", Account;
    PasswordChange => "account.password_change", Account;
    InviteAccept => "account.invite_accept", Account;
    SessionEnd => "session.end", Session;
    SessionEndOthers => "session.end_others", Session;
    UserCreate => "user.create", User;
    UserUpdate => "user.update", User;
    UserPasswordReset => "user.password_reset", User;
    UserTwoFactorReset => "user.two_factor_reset", User;
    UserDelete => "user.delete", User;
    TokenCreate => "token.create", Token;
    TokenRevoke => "token.revoke", Token;
    AppCreate => "app.create", App;
    AppUpdate => "app.update", App;
    AppStart => "app.start", App;
    AppStop => "app.stop", App;
    AppRestart => "app.restart", App;
    AppDeploy => "app.deploy", App;
    AppRollback => "app.rollback", App;
    AppDelete => "app.delete", App;
    AppFollowTag => "app.follow_tag", App;
    AppTagHook => "app.tag_hook", App;
    VolumeDelete => "volume.delete", Volume;
    DomainCreate => "domain.create", Domain;
    DomainVerify => "domain.verify", Domain;
    DomainAttach => "domain.attach", Domain;
    DomainDelete => "domain.delete", Domain;
    CertificateRetry => "certificate.retry", Certificate;
    CertificateRenew => "certificate.renew", Certificate;
    RegistryLogin => "registry.login", Registry;
    RegistryLogout => "registry.logout", Registry;
    BackupPolicy => "backup.policy", Backup;
    BackupCreate => "backup.create", Backup;
    BackupRestore => "backup.restore", Backup;
    PierBackup => "backup.pier", Backup;
    BackupPassphrase => "settings.backup_passphrase", Settings;
    BackupTargetSet => "settings.backup_target", Settings;
    BackupTargetDelete => "settings.backup_target_delete", Settings;
    AuditRetention => "settings.audit_retention", Settings;
    TwoFactorPolicy => "settings.two_factor", Settings;
    SmtpSet => "settings.smtp", Settings;
    SmtpDelete => "settings.smtp_delete", Settings;
    NodeAvailability => "node.availability", Node;
}

impl Action {
    pub fn parse(s: &str) -> Option<Action> {
        Self::ALL.iter().copied().find(|a| a.as_str() == s)
    }
}

/// What one entry says was changed.
#[derive(Debug, Clone)]
pub struct Change {
    pub action: Action,
    pub object: String,
    /// The person whose object it is: the tenant, or the user an admin changed.
    pub owner: Option<i64>,
    pub summary: String,
}

impl Change {
    pub fn new(action: Action, object: impl Into<String>) -> Self {
        Change {
            action,
            object: object.into(),
            owner: None,
            summary: String::new(),
        }
    }

    pub fn owner(mut self, id: i64) -> Self {
        self.owner = Some(id);
        self
    }

    pub fn summary(mut self, s: impl Into<String>) -> Self {
        self.summary = s.into();
        self
    }
}

/// Who acted, as an entry records it.
#[derive(Debug, Clone)]
pub struct Who {
    pub user_id: Option<i64>,
    pub email: String,
    pub origin: Origin,
}

impl Who {
    /// Someone not signed in (yet), known by the account they name and their address: a
    /// sign-in attempt, an invite being accepted.
    pub fn visitor(user_id: Option<i64>, email: &str, address: &str) -> Self {
        Who {
            user_id,
            email: email.to_owned(),
            origin: Origin {
                token_id: None,
                address: Some(address.to_owned()),
            },
        }
    }

    /// An operator at the machine (`pier admin …`, `pier token …`).
    pub fn command_line() -> Self {
        Who {
            user_id: None,
            email: "command line".into(),
            origin: Origin::default(),
        }
    }
}

impl From<&Actor> for Who {
    fn from(a: &Actor) -> Self {
        Who {
            user_id: Some(a.user_id),
            email: a.email.clone(),
            origin: a.origin.clone(),
        }
    }
}

/// One entry, as read back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub id: i64,
    pub at: i64,
    pub actor_id: Option<i64>,
    pub actor_email: String,
    pub token_id: Option<i64>,
    pub address: Option<String>,
    pub action: String,
    pub object_kind: String,
    pub object_name: String,
    pub owner_id: Option<i64>,
    pub summary: String,
    /// "ok", or the error code the request was answered with.
    pub outcome: String,
    pub message: Option<String>,
}

/// A filter over the log; absent fields match everything.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Entries this person made or that changed their things.
    pub person: Option<i64>,
    /// A whole action, or an object kind's prefix ("app.").
    pub action: Option<String>,
    pub object_kind: Option<String>,
    pub object_name: Option<String>,
    /// Unix seconds, inclusive.
    pub since: Option<i64>,
    /// Unix seconds, exclusive.
    pub until: Option<i64>,
    /// Entries with a smaller id (the previous page's `next_before`).
    pub before: Option<i64>,
    pub limit: i64,
}

/// One page of entries, newest first.
#[derive(Debug, Clone)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    /// Pass as `before` for the next (older) page; None on the last page.
    pub next_before: Option<i64>,
}

/// The start (00:00 UTC) of a day given as `YYYY-MM-DD`, in unix seconds.
pub fn day_start(s: &str) -> Option<i64> {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    let d = time::Date::parse(s.trim(), &fmt).ok()?;
    Some(d.midnight().assume_utc().unix_timestamp())
}

/// The outcome column and its message for a result. A refusal for bad input names the fields,
/// never their messages (which may quote what was typed).
fn outcome<T>(r: &Result<T>) -> (&'static str, Option<String>) {
    match r {
        Ok(_) => ("ok", None),
        Err(Error::Invalid(fields)) => {
            let names: Vec<&str> = fields.iter().map(|f| f.field.as_str()).collect();
            ("invalid", Some(format!("Invalid: {}.", names.join(", "))))
        }
        Err(e) => (e.code(), Some(e.public_message())),
    }
}

fn clip(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

impl Pier {
    /// Runs `change` and records it with its outcome.
    pub(crate) async fn audited<T>(
        &self,
        actor: &Actor,
        what: Change,
        change: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let r = change.await;
        self.record(actor, what, &r).await;
        r
    }

    /// Records a change `actor` asked for and how it ended (public for the work that lives in
    /// the server, Pier's own backup).
    pub async fn record<T>(&self, actor: &Actor, what: Change, r: &Result<T>) {
        self.record_as(&Who::from(actor), what, r).await
    }

    /// Records a change by someone who is not a signed-in actor (a failed sign-in, the command
    /// line). The entry is handed to the batching writer (see `writer`); the change has happened
    /// whatever becomes of its record, so a failure to write it is logged as an error rather
    /// than turned into the request's failure.
    pub async fn record_as<T>(&self, who: &Who, what: Change, r: &Result<T>) {
        if !self.settings().audit.enabled {
            return;
        }
        let (outcome, message) = outcome(r);
        let entry = writer::Pending {
            at: now(),
            actor_id: who.user_id,
            actor_email: clip(&who.email, 320).to_owned(),
            token_id: who.origin.token_id,
            address: who
                .origin
                .address
                .as_deref()
                .map(|a| clip(a, 64).to_owned()),
            action: what.action.as_str(),
            object_kind: what.action.kind().as_str(),
            object_name: clip(&what.object, 256).to_owned(),
            owner_id: what.owner,
            summary: clip(&what.summary, 1000).to_owned(),
            outcome,
            message: message.as_deref().map(|m| clip(m, 500).to_owned()),
        };
        self.audit_writer().send(entry).await;
    }

    fn audit_writer(&self) -> &writer::Writer {
        self.0
            .audit_writer
            .get_or_init(|| writer::Writer::start(self.db().clone()))
    }

    /// Waits until every entry recorded so far is in the database (readers of the log, a clean
    /// shutdown and tests call this).
    pub async fn flush_audit(&self) {
        if let Some(w) = self.0.audit_writer.get() {
            w.flush().await;
        }
    }

    /// A page of the log. A member sees only entries they made or that changed their things;
    /// an admin sees everyone's, filtered as asked.
    pub async fn audit_log(&self, actor: &Actor, mut q: AuditQuery) -> Result<AuditPage> {
        if !actor.is_admin() {
            q.person = Some(actor.user_id);
        }
        if let Some(a) = q.action.as_deref() {
            let whole = Action::parse(a).is_some();
            let prefix = a
                .strip_suffix('.')
                .is_some_and(|k| ObjectKind::parse(k).is_some());
            if !whole && !prefix {
                return Err(Error::field("action", format!("No action is called {a}.")));
            }
        }
        if let Some(k) = q.object_kind.as_deref() {
            if ObjectKind::parse(k).is_none() {
                return Err(Error::field(
                    "object",
                    format!("No object kind is called {k}."),
                ));
            }
        }
        if q.limit <= 0 || q.limit > MAX_PAGE {
            return Err(Error::field(
                "limit",
                format!("Ask for 1 to {MAX_PAGE} entries at a time."),
            ));
        }
        self.flush_audit().await;
        let entries = repo::audit::page(self.db(), &q).await?;
        let next_before = (entries.len() as i64 == q.limit)
            .then(|| entries.last().map(|e| e.id))
            .flatten();
        Ok(AuditPage {
            entries,
            next_before,
        })
    }

    /// How many days entries are kept (admins only).
    pub async fn audit_retention_days(&self, actor: &Actor) -> Result<i64> {
        if !actor.is_admin() {
            return Err(Error::Forbidden);
        }
        repo::audit::retention_days(self.db()).await
    }

    pub async fn set_audit_retention_days(&self, actor: &Actor, days: i64) -> Result<i64> {
        let what = Change::new(Action::AuditRetention, "audit log")
            .summary(format!("keep entries for {days} days"));
        self.audited(actor, what, async {
            if !actor.is_admin() {
                return Err(Error::Forbidden);
            }
            if !RETENTION_DAYS.contains(&days) {
                return Err(Error::field(
                    "days",
                    format!(
                        "Keep entries for {} to {} days.",
                        RETENTION_DAYS.start(),
                        RETENTION_DAYS.end()
                    ),
                ));
            }
            repo::audit::set_retention_days(self.db(), days).await?;
            Ok(days)
        })
        .await
    }

    /// Removes entries older than the retention; the number removed.
    pub async fn purge_old_audit_entries(&self) -> Result<u64> {
        let days = repo::audit::retention_days(self.db()).await?;
        repo::audit::delete_before(self.db(), now() - days * 86_400).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_names_its_object_kind() {
        for a in Action::ALL {
            let (kind, verb) = a.as_str().split_once('.').expect("dotted");
            assert_eq!(kind, a.kind().as_str(), "{a:?}");
            assert!(!verb.is_empty());
            assert_eq!(Action::parse(a.as_str()), Some(*a));
        }
    }

    #[test]
    fn invalid_input_is_recorded_by_field_name_only() {
        let r: Result<()> = Err(Error::field("password", "hunter2 is too short"));
        let (code, message) = outcome(&r);
        assert_eq!(code, "invalid");
        assert_eq!(message.as_deref(), Some("Invalid: password."));
    }

    #[test]
    fn days_start_at_midnight_utc() {
        assert_eq!(day_start("1970-01-02"), Some(86_400));
        assert_eq!(day_start("2026-13-01"), None);
        assert_eq!(day_start("yesterday"), None);
    }

    #[test]
    fn clip_keeps_whole_characters() {
        assert_eq!(clip("ééé", 2), "éé");
        assert_eq!(clip("ab", 5), "ab");
    }
}
