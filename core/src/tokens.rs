//! Personal access tokens for the REST API: `pier_` and 64 hex characters (256 random bits).
//! Stored as a SHA-256 (a fast hash is right for a random secret; argon2 would make every API
//! call slow), shown once, scoped read < write < admin, optionally expiring, revocable.

use crate::{
    audit::{Action, Change, Who},
    model::{Actor, ApiToken, Role, Scope},
    now, repo,
    service::{random_token, sha256_hex},
    validate::Checks,
    Error, Pier, Result,
};

pub const TOKEN_PREFIX: &str = "pier_";
/// How many characters after `pier_` are kept in clear to tell tokens apart.
const VISIBLE: usize = 8;
const MAX_TOKENS_PER_USER: usize = 50;
/// `last_used_at` is written at most this often per token.
const TOUCH_EVERY_SECS: i64 = 60;

/// Is this a well-formed token (`pier_` + 64 lower-case hex)?
pub fn well_formed(token: &str) -> bool {
    token.strip_prefix(TOKEN_PREFIX).is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

fn token_name(input: &str) -> Result<String, String> {
    let n = input.trim();
    if n.is_empty() {
        Err("Give the token a name, like \"deploy script\".".into())
    } else if n.chars().count() > 64 {
        Err("A token name has at most 64 characters.".into())
    } else if n.chars().any(char::is_control) {
        Err("A token name cannot contain control characters.".into())
    } else {
        Ok(n.to_owned())
    }
}

fn expiry_days(input: Option<i64>) -> Result<Option<i64>, String> {
    match input {
        None => Ok(None),
        Some(d) if (1..=3650).contains(&d) => Ok(Some(d)),
        Some(_) => Err("Expiry is between 1 and 3650 days (or none).".into()),
    }
}

/// Who asks for a new token. A signed-in person may choose any lifetime; a token may not make one
/// that outlives itself, or a stolen short-lived token could be turned into a permanent one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Minter {
    /// A browser session or an operator on the host.
    Person,
    /// A personal access token, with its own expiry (None: it never expires).
    Token { expires_at: Option<i64> },
}

/// The caller behind a valid bearer token.
#[derive(Debug, Clone)]
pub struct Bearer {
    pub actor: Actor,
    /// The token's scope, capped by what its owner may do now.
    pub scope: Scope,
    /// When the token expires (None: never).
    pub expires_at: Option<i64>,
    /// The token's id (streams check it is still valid while they run).
    pub token_id: i64,
}

/// Refuses an expiry later than the minting token's own, naming the latest allowed.
fn within_minter(minter: Minter, expires_at: Option<i64>, now: i64) -> Result<(), String> {
    let Minter::Token {
        expires_at: Some(limit),
    } = minter
    else {
        return Ok(());
    };
    if expires_at.is_some_and(|e| e <= limit) {
        return Ok(());
    }
    // Whole days left, rounded down and a second short, so that the advice still holds when it
    // is followed a moment later.
    let days = (limit - now - 1).div_euclid(86_400);
    let until = crate::format_time(limit);
    Err(if days >= 1 {
        format!(
            "The token making this request expires at {until}; a token it creates cannot outlive it. Choose at most {days} days."
        )
    } else {
        format!(
            "The token making this request expires at {until}, within a day; a token it creates cannot outlive it. Create this one from the web panel."
        )
    })
}

impl Pier {
    /// Creates a token for the actor. Returns it and its secret, which is never shown again.
    pub async fn create_token(
        &self,
        actor: &Actor,
        minter: Minter,
        name: &str,
        scope: &str,
        expires_in_days: Option<i64>,
    ) -> Result<(ApiToken, String)> {
        let what = token_change(actor.user_id, name, scope, expires_in_days);
        let r = self
            .mint_token(actor, minter, name, scope, expires_in_days)
            .await;
        self.record(actor, what, &r).await;
        r
    }

    async fn mint_token(
        &self,
        actor: &Actor,
        minter: Minter,
        name: &str,
        scope: &str,
        expires_in_days: Option<i64>,
    ) -> Result<(ApiToken, String)> {
        let t = now();
        let mut c = Checks::default();
        let name = c.check("name", token_name(name));
        let scope = c.check(
            "scope",
            Scope::parse(scope.trim()).ok_or_else(|| "Choose read, write or admin.".to_string()),
        );
        let days = c
            .check("expires_in_days", expiry_days(expires_in_days))
            .and_then(|days| {
                let expires_at = days.map(|d| t + d * 86_400);
                c.check("expires_in_days", within_minter(minter, expires_at, t))
                    .map(|()| days)
            });
        c.finish()?;
        let (name, scope, days) = (
            name.unwrap_or_default(),
            scope.unwrap_or(Scope::Read),
            days.flatten(),
        );
        if scope == Scope::Admin && !actor.is_admin() {
            return Err(Error::Forbidden);
        }
        if repo::tokens::list_for_user(self.db(), actor.user_id)
            .await?
            .len()
            >= MAX_TOKENS_PER_USER
        {
            return Err(Error::Conflict(format!(
                "You have {MAX_TOKENS_PER_USER} tokens already. Revoke one you no longer use first."
            )));
        }
        let secret = format!("{TOKEN_PREFIX}{}", random_token());
        let prefix = secret[..TOKEN_PREFIX.len() + VISIBLE].to_owned();
        let expires_at = days.map(|d| t + d * 86_400);
        let id = repo::tokens::insert(
            self.db(),
            &repo::tokens::NewToken {
                user_id: actor.user_id,
                name: &name,
                prefix: &prefix,
                secret_hash: &sha256_hex(&secret),
                scope,
                expires_at,
            },
            t,
        )
        .await?;
        tracing::info!(
            user_id = actor.user_id,
            token_id = id,
            scope = scope.as_str(),
            "API token created"
        );
        // Everything about the new row is known here; no need to read it back.
        let token = ApiToken {
            id,
            user_id: actor.user_id,
            name,
            prefix,
            scope,
            created_at: t,
            expires_at,
            last_used_at: None,
        };
        Ok((token, secret))
    }

    /// For operators on the host: a token for any user, by email.
    pub async fn create_token_from_cli(
        &self,
        email: &str,
        name: &str,
        scope: &str,
    ) -> Result<(ApiToken, String)> {
        let email = crate::validate::email(email).map_err(|m| Error::field("email", m))?;
        let user = repo::users::by_email(self.db(), &email)
            .await?
            .ok_or_else(|| Error::field("email", "No user has this email."))?;
        if user.disabled {
            return Err(Error::AccountDisabled);
        }
        let what = token_change(user.id, name, scope, None);
        let r = self
            .mint_token(&Actor::from(user), Minter::Person, name, scope, None)
            .await;
        self.record_as(&Who::command_line(), what, &r).await;
        r
    }

    pub async fn list_tokens(&self, actor: &Actor) -> Result<Vec<ApiToken>> {
        repo::tokens::list_for_user(self.db(), actor.user_id).await
    }

    /// Revokes one of the actor's own tokens; someone else's is "not found".
    pub async fn revoke_token(&self, actor: &Actor, id: i64) -> Result<()> {
        let name = repo::tokens::list_for_user(self.db(), actor.user_id)
            .await?
            .into_iter()
            .find(|t| t.id == id)
            .map_or_else(|| format!("#{id}"), |t| t.name);
        let what = Change::new(Action::TokenRevoke, name)
            .owner(actor.user_id)
            .summary(format!("token #{id} revoked"));
        let r = self.delete_token(actor, id).await;
        self.record(actor, what, &r).await;
        r
    }

    async fn delete_token(&self, actor: &Actor, id: i64) -> Result<()> {
        if repo::tokens::delete_for_user(self.db(), actor.user_id, id).await? {
            tracing::info!(user_id = actor.user_id, token_id = id, "API token revoked");
            Ok(())
        } else {
            Err(Error::NotFound)
        }
    }

    /// Who an `Authorization` header speaks for, and with which scope. A token never has more
    /// power than its owner has now: an admin token of a demoted admin acts as a write token.
    pub async fn authenticate_bearer(&self, authorization: Option<&str>) -> Result<Bearer> {
        let header = authorization.ok_or(Error::BadToken(
            "Send a personal access token: Authorization: Bearer pier_…",
        ))?;
        let token = match header.split_once(' ') {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
            _ => {
                return Err(Error::BadToken(
                    "The Authorization header must be: Bearer <token>.",
                ))
            }
        };
        if !well_formed(token) {
            return Err(Error::BadToken(
                "That is not a Pier token (pier_ and 64 hex characters).",
            ));
        }
        let invalid = Error::BadToken("This token is not valid: it was revoked or never existed.");
        let (found, user) = repo::tokens::by_hash_with_user(self.db(), &sha256_hex(token))
            .await?
            .ok_or(invalid)?;
        let t = now();
        if found.expires_at.is_some_and(|e| e <= t) {
            return Err(Error::BadToken("This token has expired. Create a new one."));
        }
        if user.disabled {
            return Err(Error::BadToken(
                "The account this token belongs to is disabled.",
            ));
        }
        if found.last_used_at.is_none_or(|u| t - u >= TOUCH_EVERY_SECS) {
            repo::tokens::touch(self.db(), found.id, t).await?;
        }
        let scope = if user.role == Role::Admin {
            found.scope
        } else {
            found.scope.min(Scope::Write)
        };
        let mut actor = Actor::from(user);
        actor.origin.token_id = Some(found.id);
        Ok(Bearer {
            actor,
            scope,
            expires_at: found.expires_at,
            token_id: found.id,
        })
    }
}

/// A token's creation as the audit log tells it (never its secret, which does not exist yet).
fn token_change(owner: i64, name: &str, scope: &str, days: Option<i64>) -> Change {
    let expiry = match days {
        Some(d) => format!("expires in {d} days"),
        None => "never expires".into(),
    };
    let scope: String = scope.trim().chars().take(20).collect();
    Change::new(Action::TokenCreate, name.trim())
        .owner(owner)
        .summary(format!("scope {scope}, {expiry}"))
}

/// Refuses an action that needs more than the token's scope.
pub fn require_scope(have: Scope, need: Scope) -> Result<()> {
    if have >= need {
        Ok(())
    } else {
        Err(Error::Forbidden)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_grammar() {
        let good = format!("pier_{}", "0123456789abcdef".repeat(4));
        assert!(well_formed(&good));
        assert!(!well_formed(&good.to_uppercase()));
        assert!(!well_formed(&good[..good.len() - 1]));
        assert!(!well_formed(&format!("{good}0")));
        assert!(!well_formed(&format!("pier-{}", "a".repeat(64))));
        assert!(!well_formed(&format!("pier_{}\n", "a".repeat(63))));
    }

    #[test]
    fn scopes_are_ordered() {
        assert!(require_scope(Scope::Admin, Scope::Write).is_ok());
        assert!(require_scope(Scope::Write, Scope::Read).is_ok());
        assert!(require_scope(Scope::Read, Scope::Write).is_err());
        assert!(require_scope(Scope::Write, Scope::Admin).is_err());
    }

    #[test]
    fn names_and_expiry() {
        assert_eq!(token_name("  deploy  ").unwrap(), "deploy");
        assert!(token_name("").is_err());
        assert!(token_name("a\nb").is_err());
        assert!(token_name(&"x".repeat(65)).is_err());
        assert_eq!(expiry_days(None), Ok(None));
        assert_eq!(expiry_days(Some(30)), Ok(Some(30)));
        assert!(expiry_days(Some(0)).is_err());
        assert!(expiry_days(Some(3651)).is_err());
    }

    #[test]
    fn a_token_cannot_outlive_the_token_that_makes_it() {
        let now = 1_000_000;
        let limit = now + 10 * 86_400 + 3_600;
        let by_token = Minter::Token {
            expires_at: Some(limit),
        };
        assert!(within_minter(by_token, Some(limit), now).is_ok());
        assert!(within_minter(by_token, Some(now + 86_400), now).is_ok());
        let later = within_minter(by_token, Some(limit + 1), now).unwrap_err();
        assert!(later.contains("at most 10 days"), "{later}");
        assert!(within_minter(by_token, None, now).is_err());
        let soon = Minter::Token {
            expires_at: Some(now + 60),
        };
        assert!(within_minter(soon, Some(now + 86_400), now)
            .unwrap_err()
            .contains("web panel"));
        // People, and tokens that never expire, choose freely.
        assert!(within_minter(Minter::Person, None, now).is_ok());
        let forever = Minter::Token { expires_at: None };
        assert!(within_minter(forever, None, now).is_ok());
    }
}
