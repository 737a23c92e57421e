//! A person's own account: the CSRF token, signing in and out (the password step; the second
//! factor is `two_factor`), who a session belongs to, the password, sessions and invites.

use subtle::ConstantTimeEq;
use tower_cookies::Cookies;
use tower_sessions::{Expiry, Session};

use crate::{
    model::{Actor, SessionSummary, User},
    now, password, repo,
    service::{random_token, session_err, session_handle, sha256_hex, truncate, Client, SignIn},
    session_store::{AuthData, AUTH_KEY, CSRF_KEY},
    validate::{self, Checks},
    Error, Pier, Result,
};

/// How often an active session pushes back its idle expiry (each push is one write).
const REFRESH_EVERY_SECS: i64 = 300;

/// How long a visitor's CSRF cookie lasts (a sign-in form left open longer is sent again).
const ANONYMOUS_IDLE_SECS: i64 = 12 * 3600;

/// The cookie holding a visitor's CSRF token before they sign in.
pub const CSRF_COOKIE: &str = "pier_csrf";

/// The link that lets an invited person set their password, on the panel at `origin`.
pub fn invite_url(origin: &str, token: &str) -> String {
    format!("{}/invite/{token}", origin.trim_end_matches('/'))
}

impl Pier {
    // ----- CSRF -----------------------------------------------------------------------------

    /// The CSRF token forms carry. Signed in: the session's (made anew at every sign-in).
    /// A visitor who has not signed in has no session row at all: their token lives in a
    /// cookie signed with this Pier's key (`pier_csrf`, `__Host-` over HTTPS), so passers-by
    /// and crawlers write nothing to the database.
    pub async fn csrf_token(&self, session: &Session, cookies: &Cookies) -> Result<String> {
        if let Some(t) = session.get::<String>(CSRF_KEY).await.map_err(session_err)? {
            return Ok(t);
        }
        if session
            .get_value(AUTH_KEY)
            .await
            .map_err(session_err)?
            .is_some()
        {
            let t = random_token();
            session.insert(CSRF_KEY, &t).await.map_err(session_err)?;
            return Ok(t);
        }
        let key = self.csrf_cookie_key();
        let jar = cookies.signed(&key);
        if let Some(t) = jar.get(CSRF_COOKIE).map(|c| c.value().to_owned()) {
            return Ok(t);
        }
        let t = random_token();
        let mut c = tower_cookies::Cookie::new(CSRF_COOKIE, t.clone());
        c.set_http_only(true);
        c.set_same_site(tower_cookies::cookie::SameSite::Strict);
        c.set_path("/");
        c.set_max_age(time::Duration::seconds(ANONYMOUS_IDLE_SECS));
        jar.add(c);
        Ok(t)
    }

    /// Whether `presented` is the session's token (signed in) or the visitor's signed cookie
    /// token (not signed in).
    pub async fn check_csrf(
        &self,
        session: &Session,
        cookies: &Cookies,
        presented: Option<&str>,
    ) -> Result<()> {
        let expected = match session.get::<String>(CSRF_KEY).await.map_err(session_err)? {
            Some(t) => Some(t),
            None => {
                let key = self.csrf_cookie_key();
                let found = cookies
                    .signed(&key)
                    .get(CSRF_COOKIE)
                    .map(|c| c.value().to_owned());
                found
            }
        };
        match (expected, presented) {
            (Some(e), Some(p)) if bool::from(e.as_bytes().ct_eq(p.as_bytes())) => Ok(()),
            _ => Err(Error::Csrf),
        }
    }

    fn csrf_cookie_key(&self) -> tower_cookies::Key {
        tower_cookies::Key::from(&self.key().derive("csrf cookie"))
    }

    // ----- signing in and out ---------------------------------------------------------------

    pub async fn sign_in(
        &self,
        session: &Session,
        email: &str,
        password: &str,
        client: &Client,
    ) -> Result<SignIn> {
        let mut c = Checks::default();
        let email = c.check("email", validate::email(email));
        if password.is_empty() {
            c.check::<()>("password", Err("Enter your password.".into()));
        } else if password.len() > 4 * validate::PASSWORD_MAX_CHARS {
            c.check::<()>("password", Err("That password is too long.".into()));
        }
        c.finish()?;
        let email = email.unwrap_or_default();
        // Every attempt with a well-formed address is recorded, under the account it names
        // when there is one (its owner sees the failures on their account page).
        let user = repo::users::by_email(self.db(), &email).await?;
        let who = crate::audit::Who::visitor(user.as_ref().map(|u| u.id), &email, &client.ip);
        let mut what = crate::audit::Change::new(crate::audit::Action::SignIn, &email);
        what.owner = who.user_id;
        let r = self
            .check_sign_in(session, &email, password, client, user)
            .await;
        if let Ok(SignIn::NeedsSecondFactor(_)) = r {
            what.summary = "password accepted; asked for the second factor".into();
        }
        self.record_as(&who, what, &r).await;
        r
    }

    async fn check_sign_in(
        &self,
        session: &Session,
        email: &str,
        password: &str,
        client: &Client,
        user: Option<User>,
    ) -> Result<SignIn> {
        let throttle = &self.0.throttle;
        throttle.admit(email, &client.ip, "failed sign-in attempts")?;

        let hash = user.as_ref().and_then(|u| u.password_hash.clone());
        if !password::verify(password.to_owned(), hash).await? {
            throttle.record_failure(email, &client.ip);
            tracing::info!(ip = %client.ip, "failed sign-in");
            return Err(Error::BadCredentials);
        }
        let user = user.expect("a verified password belongs to a user");
        if user.disabled {
            return Err(Error::AccountDisabled);
        }
        if repo::two_factor::enrolled(self.db(), user.id).await? {
            // The password is right, but the account's streak of failures is kept until the
            // second factor is too: knowing the password must not reset the code throttle.
            session.cycle_id().await.map_err(session_err)?;
            session.set_expiry(Some(Expiry::OnInactivity(time::Duration::seconds(
                crate::two_factor::PENDING_SECS,
            ))));
            let pending = crate::two_factor::Pending {
                user_id: user.id,
                at: now(),
            };
            session
                .insert(crate::two_factor::PENDING_KEY, &pending)
                .await
                .map_err(session_err)?;
            return Ok(SignIn::NeedsSecondFactor(self.factors(user.id).await?));
        }
        throttle.clear_account(email);
        Ok(SignIn::Done(
            self.complete_sign_in(session, user, client).await?,
        ))
    }

    /// Makes this session a signed-in one: a fresh id and CSRF token (no session fixation), the
    /// full idle lifetime.
    pub(crate) async fn complete_sign_in(
        &self,
        session: &Session,
        user: User,
        client: &Client,
    ) -> Result<Actor> {
        session.cycle_id().await.map_err(session_err)?;
        session
            .remove_value(crate::two_factor::PENDING_KEY)
            .await
            .map_err(session_err)?;
        session.set_expiry(Some(Expiry::OnInactivity(time::Duration::seconds(
            self.settings().session_idle_secs,
        ))));
        let t = now();
        let auth = AuthData {
            user_id: user.id,
            signed_in_at: t,
            refreshed_at: t,
            user_agent: client.user_agent.as_deref().map(|u| truncate(u, 256)),
            ip: Some(truncate(&client.ip, 64)),
        };
        session.insert(AUTH_KEY, &auth).await.map_err(session_err)?;
        session
            .insert(CSRF_KEY, random_token())
            .await
            .map_err(session_err)?;
        repo::users::touch_sign_in(self.db(), user.id, t).await?;
        tracing::info!(user_id = user.id, "signed in");
        Ok(Actor::from(user))
    }

    /// Ends this session; recorded in the audit log when someone was signed in.
    pub async fn sign_out(&self, session: &Session, client: &Client) -> Result<()> {
        let Some(mut actor) = self.current_actor(session).await? else {
            return self.end_this_session(session).await;
        };
        actor.origin.address = Some(client.ip.clone());
        let what = crate::audit::Change::new(crate::audit::Action::SignOut, &actor.email)
            .owner(actor.user_id)
            .summary("signed out");
        self.audited(&actor, what, self.end_this_session(session))
            .await
    }

    async fn end_this_session(&self, session: &Session) -> Result<()> {
        session.flush().await.map_err(session_err)
    }

    /// The signed-in user for this session, if any. Ends the session when it is past its
    /// absolute lifetime or its user was disabled or deleted.
    pub async fn current_actor(&self, session: &Session) -> Result<Option<Actor>> {
        let Some(mut auth) = session
            .get::<AuthData>(AUTH_KEY)
            .await
            .map_err(session_err)?
        else {
            return Ok(None);
        };
        let t = now();
        if t - auth.signed_in_at >= self.settings().session_absolute_secs {
            session.flush().await.map_err(session_err)?;
            return Ok(None);
        }
        let user = match repo::users::by_id(self.db(), auth.user_id).await? {
            Some(u) if !u.disabled => u,
            _ => {
                session.flush().await.map_err(session_err)?;
                return Ok(None);
            }
        };
        if t - auth.refreshed_at >= REFRESH_EVERY_SECS {
            auth.refreshed_at = t;
            session.insert(AUTH_KEY, &auth).await.map_err(session_err)?;
        }
        Ok(Some(Actor::from(user)))
    }

    /// The signed-in user, for everything but setting up two-factor sign-in: when this Pier
    /// requires a second factor and the user has none yet, they may do nothing else.
    pub async fn require_actor(&self, session: &Session) -> Result<Actor> {
        let actor = self.require_actor_enrolling(session).await?;
        if self.must_enrol(&actor).await? {
            return Err(Error::TwoFactorSetup);
        }
        Ok(actor)
    }

    /// The signed-in user, even one who still has to set up a second factor (for the pages and
    /// calls that set it up).
    pub async fn require_actor_enrolling(&self, session: &Session) -> Result<Actor> {
        self.current_actor(session)
            .await?
            .ok_or(Error::Unauthenticated)
    }

    pub(crate) fn require_admin(actor: &Actor) -> Result<()> {
        if actor.is_admin() {
            Ok(())
        } else {
            Err(Error::Forbidden)
        }
    }

    // ----- own account ----------------------------------------------------------------------

    /// Changes the caller's password; every other session ends, and with `revoke_tokens` every
    /// API token of theirs too (how many is returned).
    pub async fn change_password(
        &self,
        actor: &Actor,
        session: &Session,
        current: &str,
        new: &str,
        confirm: &str,
        revoke_tokens: bool,
    ) -> Result<u64> {
        let what = crate::audit::Change::new(crate::audit::Action::PasswordChange, &actor.email)
            .owner(actor.user_id)
            .summary(if revoke_tokens {
                "changed the password; other sessions and every API token ended"
            } else {
                "changed the password; other sessions ended"
            });
        self.audited(actor, what, async {
            let mut c = Checks::default();
            if current.is_empty() {
                c.check::<()>("current", Err("Enter your current password.".into()));
            }
            c.check("new", validate::password(new));
            if new != confirm {
                c.check::<()>("confirm", Err("The two new passwords differ.".into()));
            }
            c.finish()?;
            let user = repo::users::by_id(self.db(), actor.user_id)
                .await?
                .ok_or(Error::Unauthenticated)?;
            if !password::verify(current.to_owned(), user.password_hash).await? {
                return Err(Error::field(
                    "current",
                    "That is not your current password.",
                ));
            }
            let hash = password::hash(new.to_owned()).await?;
            let keep = session.id().map(|id| id.to_string()).unwrap_or_default();
            let mut tx = self.db().begin().await?;
            repo::users::set_password(&mut *tx, user.id, &hash).await?;
            repo::sessions::delete_for_user_except(&mut *tx, user.id, &keep).await?;
            let revoked = match revoke_tokens {
                true => repo::tokens::delete_all_for_user(&mut *tx, user.id).await?,
                false => 0,
            };
            tx.commit().await?;
            tracing::info!(
                user_id = user.id,
                tokens_revoked = revoked,
                "password changed; other sessions ended"
            );
            Ok(revoked)
        })
        .await
    }

    pub async fn list_sessions(
        &self,
        actor: &Actor,
        session: &Session,
    ) -> Result<Vec<SessionSummary>> {
        let current = session.id().map(|id| id.to_string());
        let rows = repo::sessions::list_for_user(self.db(), actor.user_id, now()).await?;
        Ok(rows
            .into_iter()
            .map(|r| SessionSummary {
                handle: session_handle(&r.id),
                current: current.as_deref() == Some(r.id.as_str()),
                created_at: r.created_at,
                last_seen_at: r.last_seen_at,
                expires_at: r.expires_at,
                user_agent: r.user_agent,
                ip: r.ip,
            })
            .collect())
    }

    /// Ends one of the actor's own sessions, named by its handle.
    pub async fn end_session(&self, actor: &Actor, session: &Session, handle: &str) -> Result<()> {
        let what = crate::audit::Change::new(crate::audit::Action::SessionEnd, handle)
            .owner(actor.user_id)
            .summary("ended a session");
        self.audited(actor, what, async {
            let rows = repo::sessions::list_for_user(self.db(), actor.user_id, now()).await?;
            let row = rows
                .into_iter()
                .find(|r| session_handle(&r.id) == handle)
                .ok_or(Error::NotFound)?;
            if session.id().map(|id| id.to_string()).as_deref() == Some(row.id.as_str()) {
                return self.end_this_session(session).await;
            }
            repo::sessions::delete(self.db(), &row.id).await
        })
        .await
    }

    pub async fn end_other_sessions(&self, actor: &Actor, session: &Session) -> Result<u64> {
        let what = crate::audit::Change::new(crate::audit::Action::SessionEndOthers, &actor.email)
            .owner(actor.user_id)
            .summary("ended every other session");
        self.audited(actor, what, async {
            let keep = session.id().map(|id| id.to_string()).unwrap_or_default();
            repo::sessions::delete_for_user_except(self.db(), actor.user_id, &keep).await
        })
        .await
    }

    // ----- invites --------------------------------------------------------------------------

    pub(crate) async fn new_invite(
        &self,
        db: &mut sqlx::SqliteConnection,
        user_id: i64,
    ) -> Result<String> {
        let token = random_token();
        let t = now();
        repo::invites::delete_unused(&mut *db, user_id).await?;
        repo::invites::insert(
            &mut *db,
            user_id,
            &sha256_hex(&token),
            t,
            t + self.settings().invite_ttl_secs,
        )
        .await?;
        Ok(token)
    }

    /// Checks an invite link and returns the email it is for.
    pub async fn invite_email(&self, token: &str) -> Result<String> {
        let (_, user) = self.valid_invite(token).await?;
        Ok(user.email)
    }

    async fn valid_invite(&self, token: &str) -> Result<(repo::invites::Invite, User)> {
        let gone = |m: &str| Error::Gone {
            message: m.to_owned(),
        };
        let invalid = "This invite link is not valid. Ask your admin for a new one.";
        if token.len() != 64 || !token.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(gone(invalid));
        }
        let invite = repo::invites::by_token_hash(self.db(), &sha256_hex(token))
            .await?
            .ok_or_else(|| gone(invalid))?;
        if invite.used_at.is_some() {
            return Err(gone(
                "This invite link was already used. Sign in, or ask your admin for a new link.",
            ));
        }
        if invite.expires_at <= now() {
            return Err(gone(
                "This invite link has expired. Ask your admin for a new one.",
            ));
        }
        let user = repo::users::by_id(self.db(), invite.user_id)
            .await?
            .ok_or_else(|| gone(invalid))?;
        if user.disabled {
            return Err(Error::AccountDisabled);
        }
        Ok((invite, user))
    }

    /// Sets a password through an invite link. The link works once; every existing session of
    /// the user ends.
    pub async fn accept_invite(
        &self,
        token: &str,
        new: &str,
        confirm: &str,
        client: &Client,
    ) -> Result<String> {
        let (invite, user) = self.valid_invite(token).await?;
        let who = crate::audit::Who::visitor(Some(user.id), &user.email, &client.ip);
        let what = crate::audit::Change::new(crate::audit::Action::InviteAccept, &user.email)
            .owner(user.id)
            .summary("password set through an invite link");
        let r = self.use_invite(invite, user, new, confirm).await;
        self.record_as(&who, what, &r).await;
        r
    }

    async fn use_invite(
        &self,
        invite: repo::invites::Invite,
        user: User,
        new: &str,
        confirm: &str,
    ) -> Result<String> {
        let mut c = Checks::default();
        c.check("password", validate::password(new));
        if new != confirm {
            c.check::<()>("confirm", Err("The two passwords differ.".into()));
        }
        c.finish()?;
        let hash = password::hash(new.to_owned()).await?;
        let mut tx = self.db().begin().await?;
        if !repo::invites::mark_used(&mut *tx, invite.id, now()).await? {
            return Err(Error::Gone {
                message: "This invite link was already used.".into(),
            });
        }
        repo::users::set_password(&mut *tx, user.id, &hash).await?;
        repo::sessions::delete_for_user(&mut *tx, user.id).await?;
        tx.commit().await?;
        tracing::info!(user_id = user.id, "password set through invite");
        Ok(user.email)
    }

    /// Removes expired sessions; run periodically.
    pub async fn purge_expired_sessions(&self) -> Result<u64> {
        repo::sessions::delete_expired(self.db(), now()).await
    }
}
