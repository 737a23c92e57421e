//! Two-factor sign-in: an authenticator app (TOTP) and ten one-time recovery codes per person,
//! the second step of signing in, and an admin's policy (required for everyone) and reset.
//!
//! Every check of a code goes through [`Pier::check_code`]: the same throttle as passwords (per
//! account with growing delays, per address in a window), and a code is good once.

pub mod codes;
pub mod passkeys;

use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};
use tower_sessions::Session;

use crate::{
    audit::{Action, Change, Who},
    model::Actor,
    now, repo,
    service::{session_err, Client},
    Error, Pier, Result,
};

use codes::Typed;

/// The session key of a sign-in whose password was right and whose code is awaited.
pub const PENDING_KEY: &str = "pier.pending";
/// How long the code may take after the password.
pub const PENDING_SECS: i64 = 600;

/// A sign-in half done.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pending {
    pub user_id: i64,
    pub at: i64,
}

/// Which second factors an account has, for the second step of signing in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Factors {
    pub authenticator: bool,
    pub passkey: bool,
}

/// A person's two-factor state, as their account page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// Any second factor: an authenticator app or a passkey.
    pub enabled: bool,
    /// An authenticator app, and since when.
    pub authenticator: bool,
    pub since: Option<i64>,
    pub passkeys: i64,
    pub recovery_codes_left: i64,
    /// An admin requires two factors for everyone.
    pub required: bool,
}

/// What the person needs to add Pier to their authenticator app.
#[derive(Debug, Clone)]
pub struct Setup {
    /// The `otpauth://` URI, also drawn as `qr_svg`.
    pub uri: String,
    pub qr_svg: String,
    /// The secret in base32, for typing in by hand.
    pub secret: String,
}

/// Which factor a good code was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Used {
    Authenticator,
    RecoveryCode,
}

const WRONG_CODE: &str =
    "That code is not right, or was already used. Check that your device's clock is correct.";

fn totp_context(user_id: i64) -> String {
    format!("user:{user_id}:totp")
}

impl Pier {
    fn recovery_key(&self) -> [u8; 64] {
        self.key().derive("recovery codes")
    }

    /// Whether an admin requires two factors for everyone (read once, then kept in memory;
    /// only [`Pier::set_two_factor_required`] changes it).
    pub async fn two_factor_required(&self) -> Result<bool> {
        let cached = &self.0.two_factor_required;
        match cached.load(Ordering::Acquire) {
            1 => Ok(false),
            2 => Ok(true),
            _ => {
                let yes = repo::two_factor::required(self.db()).await?;
                cached.store(if yes { 2 } else { 1 }, Ordering::Release);
                Ok(yes)
            }
        }
    }

    /// Whether `actor` must set up a second factor before doing anything else.
    pub async fn must_enrol(&self, actor: &Actor) -> Result<bool> {
        Ok(self.two_factor_required().await?
            && !repo::two_factor::enrolled(self.db(), actor.user_id).await?)
    }

    pub async fn two_factor_status(&self, actor: &Actor) -> Result<Status> {
        let totp = repo::two_factor::totp(self.db(), actor.user_id).await?;
        let since = totp.and_then(|t| t.confirmed_at);
        let passkeys = repo::passkeys::count_for_user(self.db(), actor.user_id).await?;
        Ok(Status {
            enabled: since.is_some() || passkeys > 0,
            authenticator: since.is_some(),
            since,
            passkeys,
            recovery_codes_left: repo::two_factor::recovery_codes_left(self.db(), actor.user_id)
                .await?,
            required: self.two_factor_required().await?,
        })
    }

    /// Starts setting up an authenticator: a new secret, which counts once a code from it has
    /// been typed ([`Pier::confirm_totp`]). Starting again replaces a secret not yet confirmed.
    pub async fn begin_totp(&self, actor: &Actor) -> Result<Setup> {
        let secret = codes::new_secret();
        let sealed = self.key().encrypt(&secret, &totp_context(actor.user_id));
        if !repo::two_factor::begin_totp(self.db(), actor.user_id, &sealed, now()).await? {
            return Err(Error::Conflict(
                "Two-factor sign-in is already on. Turn it off first to move to another authenticator."
                    .into(),
            ));
        }
        let uri = codes::otpauth_uri(&secret, &actor.email);
        Ok(Setup {
            qr_svg: codes::qr_svg(&uri),
            uri,
            secret: codes::secret_for_humans(&secret),
        })
    }

    /// Turns two-factor sign-in on with the first code from the new authenticator; returns the
    /// ten recovery codes, shown this once.
    pub async fn confirm_totp(
        &self,
        actor: &Actor,
        code: &str,
        client: &Client,
    ) -> Result<Vec<String>> {
        let what = Change::new(Action::TwoFactorOn, &actor.email)
            .owner(actor.user_id)
            .summary("turned on two-factor sign-in with an authenticator app");
        self.audited(actor, what, async {
            let totp = repo::two_factor::totp(self.db(), actor.user_id).await?;
            match totp {
                None => {
                    return Err(Error::Conflict(
                        "Start the setup again: no authenticator is being set up.".into(),
                    ))
                }
                Some(t) if t.confirmed_at.is_some() => {
                    return Err(Error::Conflict("Two-factor sign-in is already on.".into()))
                }
                Some(_) => {}
            }
            if codes::parse(code).is_some_and(|t| matches!(t, Typed::Recovery(_))) {
                return Err(Error::field(
                    "code",
                    "Enter the six-digit code your authenticator app shows.",
                ));
            }
            self.check_code(actor.user_id, &actor.email, code, client, true)
                .await?;
            self.replace_recovery_codes(actor.user_id).await
        })
        .await
    }

    /// Ten new recovery codes in place of the old ones (all of which stop working); needs a
    /// current code where there is an authenticator app (a passkey-only account signed in with
    /// its passkey a moment ago).
    pub async fn new_recovery_codes(
        &self,
        actor: &Actor,
        code: &str,
        client: &Client,
    ) -> Result<Vec<String>> {
        let what = Change::new(Action::RecoveryCodes, &actor.email)
            .owner(actor.user_id)
            .summary("made new recovery codes; the old ones no longer work");
        self.audited(actor, what, async {
            self.require_enabled(actor.user_id).await?;
            if repo::two_factor::has_totp(self.db(), actor.user_id).await? {
                self.check_code(actor.user_id, &actor.email, code, client, false)
                    .await?;
            }
            self.replace_recovery_codes(actor.user_id).await
        })
        .await
    }

    /// Removes the authenticator app; needs a current code (or a recovery code). Refused while
    /// an admin requires two factors and it is the account's only one. The recovery codes go
    /// with the last second factor.
    pub async fn disable_two_factor(
        &self,
        actor: &Actor,
        code: &str,
        client: &Client,
    ) -> Result<()> {
        let what = Change::new(Action::TwoFactorOff, &actor.email)
            .owner(actor.user_id)
            .summary("removed the authenticator app");
        self.audited(actor, what, async {
            if !repo::two_factor::has_totp(self.db(), actor.user_id).await? {
                return Err(Error::Conflict("There is no authenticator app to remove.".into()));
            }
            let passkeys = repo::passkeys::count_for_user(self.db(), actor.user_id).await?;
            if passkeys == 0 && self.two_factor_required().await? {
                return Err(Error::Conflict(
                    "This Pier requires two-factor sign-in and this is your only second factor: \
                     add a passkey first. If you lost your authenticator, sign in with a recovery code \
                     and ask an admin to reset it."
                        .into(),
                ));
            }
            self.check_code(actor.user_id, &actor.email, code, client, false)
                .await?;
            let mut tx = self.db().begin().await?;
            repo::two_factor::delete_totp(&mut *tx, actor.user_id).await?;
            if passkeys == 0 {
                repo::two_factor::delete_recovery_codes(&mut *tx, actor.user_id).await?;
            }
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    async fn require_enabled(&self, user_id: i64) -> Result<()> {
        if !repo::two_factor::enrolled(self.db(), user_id).await? {
            return Err(Error::Conflict("Two-factor sign-in is not on.".into()));
        }
        Ok(())
    }

    async fn replace_recovery_codes(&self, user_id: i64) -> Result<Vec<String>> {
        let fresh = codes::new_recovery_codes();
        let key = self.recovery_key();
        let hashes: Vec<String> = fresh
            .iter()
            .map(|c| codes::recovery_hash(&key, user_id, &c.replace('-', "")))
            .collect();
        let mut tx = self.db().begin().await?;
        repo::two_factor::replace_recovery_codes(&mut tx, user_id, &hashes).await?;
        tx.commit().await?;
        Ok(fresh)
    }

    /// Checks a code the person typed: throttled like a password (per account and per address),
    /// an authenticator code good once, a recovery code used up. `enrolling` checks against the
    /// secret being set up (and takes no recovery code).
    async fn check_code(
        &self,
        user_id: i64,
        email: &str,
        code: &str,
        client: &Client,
        enrolling: bool,
    ) -> Result<Used> {
        let throttle = &self.0.throttle;
        throttle.admit(email, &client.ip, "wrong codes")?;
        let Some(typed) = codes::parse(code) else {
            return Err(Error::field(
                "code",
                "Enter the six-digit code from your authenticator app, or a recovery code.",
            ));
        };
        let t = now();
        let used = match typed {
            Typed::Totp(digits) => {
                let totp = repo::two_factor::totp(self.db(), user_id).await?;
                let totp = totp.filter(|t| enrolling == t.confirmed_at.is_none());
                let step = match totp {
                    Some(row) => {
                        let secret = self.key().decrypt(&row.secret, &totp_context(user_id))?;
                        codes::matching_step(&secret, &digits, t)
                    }
                    None => None,
                };
                match step {
                    Some(step)
                        if repo::two_factor::accept_step(self.db(), user_id, step, t).await? =>
                    {
                        Some(Used::Authenticator)
                    }
                    _ => None,
                }
            }
            Typed::Recovery(plain) if !enrolling => {
                let hash = codes::recovery_hash(&self.recovery_key(), user_id, &plain);
                repo::two_factor::use_recovery_code(self.db(), user_id, &hash, t)
                    .await?
                    .then_some(Used::RecoveryCode)
            }
            Typed::Recovery(_) => None,
        };
        match used {
            Some(u) => Ok(u),
            None => {
                throttle.record_failure(email, &client.ip);
                tracing::info!(user_id, ip = %client.ip, "wrong second-factor code");
                Err(Error::field("code", WRONG_CODE))
            }
        }
    }

    /// The second factors awaited, when this session's password step is done.
    pub async fn pending_factors(&self, session: &Session) -> Result<Option<Factors>> {
        match self.pending(session).await? {
            Some(p) => Ok(Some(self.factors(p.user_id).await?)),
            None => Ok(None),
        }
    }

    pub(crate) async fn factors(&self, user_id: i64) -> Result<Factors> {
        Ok(Factors {
            authenticator: repo::two_factor::has_totp(self.db(), user_id).await?,
            passkey: repo::passkeys::count_for_user(self.db(), user_id).await? > 0,
        })
    }

    /// The account whose password this session gave a moment ago, if any.
    pub(crate) async fn pending_user(&self, session: &Session) -> Result<Option<i64>> {
        Ok(self.pending(session).await?.map(|p| p.user_id))
    }

    async fn pending(&self, session: &Session) -> Result<Option<Pending>> {
        let p = session
            .get::<Pending>(PENDING_KEY)
            .await
            .map_err(session_err)?;
        Ok(p.filter(|p| now() - p.at < PENDING_SECS))
    }

    /// The second step of signing in: the code from the authenticator, or a recovery code.
    pub async fn sign_in_code(
        &self,
        session: &Session,
        code: &str,
        client: &Client,
    ) -> Result<Actor> {
        let Some(pending) = self.pending(session).await? else {
            return Err(Error::Gone {
                message: "The sign-in took too long. Enter your email and password again.".into(),
            });
        };
        let user = repo::users::by_id(self.db(), pending.user_id).await?;
        let Some(user) = user.filter(|u| !u.disabled) else {
            session.flush().await.map_err(session_err)?;
            return Err(Error::AccountDisabled);
        };
        let who = Who::visitor(Some(user.id), &user.email, &client.ip);
        let mut what = Change::new(Action::SignInCode, &user.email).owner(user.id);
        let r = async {
            let used = self
                .check_code(user.id, &user.email, code, client, false)
                .await?;
            what.summary = match used {
                Used::Authenticator => "signed in with an authenticator code".into(),
                Used::RecoveryCode => {
                    let left = repo::two_factor::recovery_codes_left(self.db(), user.id).await?;
                    format!("signed in with a recovery code ({left} left)")
                }
            };
            self.0.throttle.clear_account(&user.email);
            self.complete_sign_in(session, user.clone(), client).await
        }
        .await;
        self.record_as(&who, what, &r).await;
        r
    }

    /// Removes a person's authenticator, passkeys and recovery codes (they lost their phone). They sign
    /// in with their password alone, and set it up again (at once, when it is required).
    pub async fn reset_two_factor(&self, actor: &Actor, id: i64) -> Result<()> {
        let what = Change::new(Action::UserTwoFactorReset, self.user_label(actor, id).await)
            .owner(id)
            .summary("removed their authenticator, passkeys and recovery codes");
        self.audited(actor, what, async {
            Self::require_admin(actor)?;
            let user = self.user(actor, id).await?;
            let mut db = self.db().acquire().await?;
            if !repo::two_factor::delete_all(&mut db, user.id).await? {
                return Err(Error::Conflict(format!(
                    "{} has no two-factor sign-in to reset.",
                    user.email
                )));
            }
            tracing::info!(user_id = user.id, "two-factor sign-in reset by an admin");
            Ok(())
        })
        .await
    }

    /// The operator's way back in when the only admin lost their authenticator and recovery
    /// codes: `pier admin reset-two-factor --email …`.
    pub async fn reset_two_factor_from_cli(&self, email: &str) -> Result<()> {
        let email = crate::validate::email(email).map_err(|m| Error::field("email", m))?;
        let user = repo::users::by_email(self.db(), &email)
            .await?
            .ok_or_else(|| Error::field("email", "No user has this email."))?;
        let what = Change::new(Action::UserTwoFactorReset, &user.email)
            .owner(user.id)
            .summary("removed their authenticator, passkeys and recovery codes");
        let r = async {
            let mut db = self.db().acquire().await?;
            match repo::two_factor::delete_all(&mut db, user.id).await? {
                true => Ok(()),
                false => Err(Error::Conflict(format!(
                    "{} has no two-factor sign-in to reset.",
                    user.email
                ))),
            }
        }
        .await;
        self.record_as(&Who::command_line(), what, &r).await;
        r
    }

    /// The people who sign in with two factors (for the users list).
    pub async fn two_factor_users(&self, actor: &Actor) -> Result<Vec<i64>> {
        Self::require_admin(actor)?;
        repo::two_factor::enrolled_users(self.db()).await
    }

    /// Whether two factors are required, as the admin page shows it.
    pub async fn two_factor_policy(&self, actor: &Actor) -> Result<bool> {
        Self::require_admin(actor)?;
        self.two_factor_required().await
    }

    /// Requires (or stops requiring) two factors for everyone. An admin turns it on only with
    /// their own second factor in place, so they cannot shut themselves out of the admin pages.
    pub async fn set_two_factor_required(&self, actor: &Actor, yes: bool) -> Result<bool> {
        let what = Change::new(Action::TwoFactorPolicy, "two-factor sign-in").summary(if yes {
            "required two-factor sign-in for everyone"
        } else {
            "made two-factor sign-in optional"
        });
        self.audited(actor, what, async {
            Self::require_admin(actor)?;
            if yes && !repo::two_factor::enrolled(self.db(), actor.user_id).await? {
                return Err(Error::Conflict(
                    "Turn on two-factor sign-in for your own account first.".into(),
                ));
            }
            repo::two_factor::set_required(self.db(), yes).await?;
            self.0
                .two_factor_required
                .store(if yes { 2 } else { 1 }, Ordering::Release);
            Ok(yes)
        })
        .await
    }
}
