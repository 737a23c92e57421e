//! Passkeys (WebAuthn, through webauthn-rs): several per account. Each is a second factor on
//! its own (after the password, in place of a code) and signs in without the password. User
//! verification (a PIN or a fingerprint on the device) is required, so a passkey alone is two
//! factors. The ceremony's state waits in the server-side session between its two calls.

use serde::{Deserialize, Serialize};
use tower_sessions::Session;
use webauthn_rs::prelude::{
    PasskeyAuthentication, PasskeyRegistration, PublicKeyCredential, RegisterPublicKeyCredential,
    Url, Uuid, Webauthn, WebauthnBuilder,
};

use crate::{
    audit::{Action, Change},
    model::Actor,
    now, repo,
    service::{session_err, Client},
    Error, Pier, Result,
};

const REGISTERING_KEY: &str = "pier.passkey_registration";
const ASSERTING_KEY: &str = "pier.passkey_authentication";
/// How long the browser may take between the two calls of a ceremony.
const CEREMONY_SECS: i64 = 300;
const NAME_MAX_CHARS: usize = 64;

#[derive(Serialize, Deserialize)]
struct Registering {
    user_id: i64,
    name: String,
    at: i64,
    state: PasskeyRegistration,
}

#[derive(Serialize, Deserialize)]
struct Asserting {
    user_id: i64,
    at: i64,
    state: PasskeyAuthentication,
}

/// One of a person's passkeys, as their account page lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasskeyInfo {
    pub id: i64,
    pub name: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

/// The relying party for the panel at `origin`: its host name is the passkeys' scope. Browsers
/// allow WebAuthn only on HTTPS, or on plain HTTP at `localhost`, and never on an IP address.
fn relying_party(origin: &str) -> Result<Webauthn> {
    let unavailable = || {
        Error::Conflict(
            "Passkeys work only where the panel has a host name and HTTPS (set PIER_PANEL_HOST), \
             or at http://localhost."
                .into(),
        )
    };
    let url = Url::parse(origin).map_err(|_| unavailable())?;
    let host = url.domain().ok_or_else(unavailable)?.to_owned();
    match url.scheme() {
        "https" => {}
        "http" if host == "localhost" => {}
        _ => return Err(unavailable()),
    }
    WebauthnBuilder::new(&host, &url)
        .map_err(|_| unavailable())?
        .rp_name("Pier")
        .timeout(std::time::Duration::from_secs(CEREMONY_SECS as u64))
        .build()
        .map_err(|_| unavailable())
}

fn credential_key(id: &[u8]) -> String {
    hex::encode(id)
}

impl Pier {
    /// The stable, opaque id a passkey stores for its account (never the e-mail or row id).
    fn user_handle(&self, user_id: i64) -> Uuid {
        use hmac::Mac;
        let key = self.key().derive("passkey user handle");
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).expect("any key length");
        mac.update(&user_id.to_be_bytes());
        let bytes: [u8; 16] = mac.finalize().into_bytes()[..16]
            .try_into()
            .expect("16 bytes");
        Uuid::from_bytes(bytes)
    }

    pub async fn passkeys(&self, actor: &Actor) -> Result<Vec<PasskeyInfo>> {
        Ok(repo::passkeys::list_for_user(self.db(), actor.user_id)
            .await?
            .into_iter()
            .map(|p| PasskeyInfo {
                id: p.id,
                name: p.name,
                created_at: p.created_at,
                last_used_at: p.last_used_at,
            })
            .collect())
    }

    /// The first half of adding a passkey: the options the browser hands to
    /// `navigator.credentials.create()`, as JSON.
    pub async fn begin_passkey(
        &self,
        actor: &Actor,
        session: &Session,
        origin: &str,
        name: &str,
    ) -> Result<serde_json::Value> {
        let name = name.trim();
        if name.is_empty() {
            return Err(Error::field(
                "name",
                "Name the passkey (the device or app it lives in).",
            ));
        }
        if name.chars().count() > NAME_MAX_CHARS || name.chars().any(char::is_control) {
            return Err(Error::field(
                "name",
                format!("Use at most {NAME_MAX_CHARS} printable characters."),
            ));
        }
        let rp = relying_party(origin)?;
        let existing = repo::passkeys::list_for_user(self.db(), actor.user_id).await?;
        let exclude = existing
            .iter()
            .filter_map(|p| serde_json::from_str::<webauthn_rs::prelude::Passkey>(&p.passkey).ok())
            .map(|p| p.cred_id().clone())
            .collect();
        let (options, state) = rp
            .start_passkey_registration(
                self.user_handle(actor.user_id),
                &actor.email,
                &actor.email,
                Some(exclude),
            )
            .map_err(|e| Error::internal(format!("passkey registration: {e}")))?;
        let pending = Registering {
            user_id: actor.user_id,
            name: name.to_owned(),
            at: now(),
            state,
        };
        session
            .insert(REGISTERING_KEY, &pending)
            .await
            .map_err(session_err)?;
        serde_json::to_value(options).map_err(Error::internal)
    }

    /// The second half: checks what the browser's authenticator made and keeps the passkey.
    /// The first second factor of an account comes with its recovery codes (returned).
    pub async fn finish_passkey(
        &self,
        actor: &Actor,
        session: &Session,
        origin: &str,
        credential: &str,
    ) -> Result<Option<Vec<String>>> {
        let pending = session
            .remove::<Registering>(REGISTERING_KEY)
            .await
            .map_err(session_err)?
            .filter(|p| p.user_id == actor.user_id && now() - p.at < CEREMONY_SECS);
        let name = pending.as_ref().map(|p| p.name.clone()).unwrap_or_default();
        let what = Change::new(Action::PasskeyAdd, &name)
            .owner(actor.user_id)
            .summary("added a passkey");
        self.audited(actor, what, async {
            let Some(pending) = pending else {
                return Err(Error::Conflict(
                    "That took too long, or was started elsewhere. Add the passkey again.".into(),
                ));
            };
            let rp = relying_party(origin)?;
            let answer: RegisterPublicKeyCredential =
                serde_json::from_str(credential).map_err(|_| {
                    Error::field("credential", "The browser's answer could not be read.")
                })?;
            let passkey = rp
                .finish_passkey_registration(&answer, &pending.state)
                .map_err(|e| {
                    tracing::info!(user_id = actor.user_id, error = %e, "passkey refused");
                    Error::field("credential", "The passkey could not be verified.")
                })?;
            let stored = serde_json::to_string(&passkey).map_err(Error::internal)?;
            let codes_left =
                repo::two_factor::recovery_codes_left(self.db(), actor.user_id).await?;
            let first = !repo::two_factor::enrolled(self.db(), actor.user_id).await?;
            let added = repo::passkeys::insert(
                self.db(),
                actor.user_id,
                &pending.name,
                &credential_key(passkey.cred_id()),
                &stored,
                now(),
            )
            .await?;
            if !added {
                return Err(Error::Conflict(
                    "This passkey is already registered.".into(),
                ));
            }
            match first || codes_left == 0 {
                true => Ok(Some(self.replace_recovery_codes(actor.user_id).await?)),
                false => Ok(None),
            }
        })
        .await
    }

    /// Removes one of the caller's passkeys; refused for the last second factor while two
    /// factors are required.
    pub async fn remove_passkey(&self, actor: &Actor, id: i64) -> Result<()> {
        let name = repo::passkeys::list_for_user(self.db(), actor.user_id)
            .await?
            .into_iter()
            .find(|p| p.id == id)
            .map(|p| p.name);
        let what = Change::new(Action::PasskeyRemove, name.clone().unwrap_or_default())
            .owner(actor.user_id)
            .summary("removed a passkey");
        self.audited(actor, what, async {
            if name.is_none() {
                return Err(Error::NotFound);
            }
            let others = repo::passkeys::count_for_user(self.db(), actor.user_id).await? - 1;
            let totp = repo::two_factor::has_totp(self.db(), actor.user_id).await?;
            if others == 0 && !totp && self.two_factor_required().await? {
                return Err(Error::Conflict(
                    "This Pier requires two-factor sign-in: add another passkey or an authenticator app first."
                        .into(),
                ));
            }
            if !repo::passkeys::delete(self.db(), actor.user_id, id).await? {
                return Err(Error::NotFound);
            }
            if others == 0 && !totp {
                repo::two_factor::delete_recovery_codes(self.db(), actor.user_id).await?;
            }
            Ok(())
        })
        .await
    }

    /// The first half of signing in with a passkey: for the account whose password was just
    /// given (the second step), or for the e-mail typed (instead of the password). The options
    /// for `navigator.credentials.get()`, as JSON.
    pub async fn begin_passkey_sign_in(
        &self,
        session: &Session,
        origin: &str,
        email: &str,
        client: &Client,
    ) -> Result<serde_json::Value> {
        let user = match self.pending_user(session).await? {
            Some(id) => repo::users::by_id(self.db(), id).await?,
            None => {
                let email = crate::validate::email(email).map_err(|m| Error::field("email", m))?;
                repo::users::by_email(self.db(), &email).await?
            }
        };
        let no_passkey = || {
            Error::field(
                "email",
                "This account has no passkey: sign in with your password.",
            )
        };
        let user = user.filter(|u| !u.disabled).ok_or_else(no_passkey)?;
        self.0
            .throttle
            .admit(&user.email, &client.ip, "failed sign-in attempts")?;
        let rp = relying_party(origin)?;
        let passkeys: Vec<webauthn_rs::prelude::Passkey> =
            repo::passkeys::list_for_user(self.db(), user.id)
                .await?
                .iter()
                .filter_map(|p| serde_json::from_str(&p.passkey).ok())
                .collect();
        if passkeys.is_empty() {
            return Err(no_passkey());
        }
        let (options, state) = rp
            .start_passkey_authentication(&passkeys)
            .map_err(|e| Error::internal(format!("passkey authentication: {e}")))?;
        let pending = Asserting {
            user_id: user.id,
            at: now(),
            state,
        };
        session
            .insert(ASSERTING_KEY, &pending)
            .await
            .map_err(session_err)?;
        serde_json::to_value(options).map_err(Error::internal)
    }

    /// The second half: checks the signature the passkey made and signs the session in.
    pub async fn finish_passkey_sign_in(
        &self,
        session: &Session,
        origin: &str,
        credential: &str,
        client: &Client,
    ) -> Result<Actor> {
        let pending = session
            .remove::<Asserting>(ASSERTING_KEY)
            .await
            .map_err(session_err)?
            .filter(|p| now() - p.at < CEREMONY_SECS);
        let Some(pending) = pending else {
            return Err(Error::Gone {
                message: "That took too long. Try the passkey again.".into(),
            });
        };
        let user = repo::users::by_id(self.db(), pending.user_id)
            .await?
            .filter(|u| !u.disabled)
            .ok_or(Error::AccountDisabled)?;
        let who = crate::audit::Who::visitor(Some(user.id), &user.email, &client.ip);
        let mut what = Change::new(Action::SignInPasskey, &user.email).owner(user.id);
        let r = async {
            let rp = relying_party(origin)?;
            let refused = |detail: String| {
                self.0.throttle.record_failure(&user.email, &client.ip);
                tracing::info!(user_id = user.id, ip = %client.ip, detail, "passkey sign-in refused");
                Error::field("credential", "The passkey was not accepted.")
            };
            let answer: PublicKeyCredential =
                serde_json::from_str(credential).map_err(|e| refused(e.to_string()))?;
            let result = rp
                .finish_passkey_authentication(&answer, &pending.state)
                .map_err(|e| refused(e.to_string()))?;
            let key = credential_key(result.cred_id());
            let stored = repo::passkeys::list_for_user(self.db(), user.id)
                .await?
                .into_iter()
                .find(|p| p.credential_id == key)
                .ok_or_else(|| refused("the passkey was removed meanwhile".into()))?;
            let mut passkey: webauthn_rs::prelude::Passkey =
                serde_json::from_str(&stored.passkey).map_err(Error::internal)?;
            passkey.update_credential(&result);
            let json = serde_json::to_string(&passkey).map_err(Error::internal)?;
            repo::passkeys::used(self.db(), stored.id, &json, now()).await?;
            what.summary = format!("signed in with the passkey \"{}\"", stored.name);
            self.0.throttle.clear_account(&user.email);
            self.complete_sign_in(session, user.clone(), client).await
        }
        .await;
        self.record_as(&who, what, &r).await;
        r
    }
}
