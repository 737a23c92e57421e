//! One error type for the domain, mapped once to an HTTP status, a stable code and a message that
//! is safe to show. Internal detail (SQL errors, I/O) is logged, never shown.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid input")]
    Invalid(Vec<FieldError>),
    #[error("sign-in required")]
    Unauthenticated,
    #[error("wrong email or password")]
    BadCredentials,
    /// A bearer token that is missing, malformed, unknown, revoked or expired (the message says
    /// which, never anything about other tokens).
    #[error("{0}")]
    BadToken(&'static str),
    #[error("this account is disabled")]
    AccountDisabled,
    #[error("not allowed")]
    Forbidden,
    /// This Pier requires two-factor sign-in and the person has not set it up yet.
    #[error("two-factor sign-in must be set up first")]
    TwoFactorSetup,
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
    /// A quota would be exceeded; the message names the limit.
    #[error("{0}")]
    Quota(String),
    /// Something Pier depends on (the container engine) does not answer.
    #[error("{0}")]
    Unavailable(String),
    #[error("{message}")]
    Gone { message: String },
    /// Too many of something in too short a time; `what` names it for the message ("failed
    /// sign-in attempts", "redeploys").
    #[error("too many {what}")]
    RateLimited {
        what: &'static str,
        retry_after_secs: u64,
    },
    #[error("the form expired or was sent from another site")]
    Csrf,
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("internal: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// One invalid field.
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        Error::Invalid(vec![FieldError {
            field: field.to_owned(),
            message: message.into(),
        }])
    }

    pub fn internal(detail: impl std::fmt::Display) -> Self {
        Error::Internal(detail.to_string())
    }

    pub fn status(&self) -> u16 {
        match self {
            Error::Invalid(_) => 422,
            Error::Unauthenticated | Error::BadCredentials | Error::BadToken(_) => 401,
            Error::AccountDisabled
            | Error::Forbidden
            | Error::TwoFactorSetup
            | Error::Csrf
            | Error::Quota(_) => 403,
            Error::NotFound => 404,
            Error::Conflict(_) => 409,
            Error::Gone { .. } => 410,
            Error::RateLimited { .. } => 429,
            Error::Unavailable(_) => 503,
            Error::Database(_) | Error::Migrate(_) | Error::Internal(_) => 500,
        }
    }

    /// A stable, machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Invalid(_) => "invalid",
            Error::Unauthenticated => "unauthenticated",
            Error::BadCredentials => "bad_credentials",
            Error::BadToken(_) => "invalid_token",
            Error::AccountDisabled => "account_disabled",
            Error::Forbidden => "forbidden",
            Error::TwoFactorSetup => "two_factor_setup_required",
            Error::NotFound => "not_found",
            Error::Conflict(_) => "conflict",
            Error::Quota(_) => "quota_exceeded",
            Error::Unavailable(_) => "unavailable",
            Error::Gone { .. } => "gone",
            Error::RateLimited { .. } => "rate_limited",
            Error::Csrf => "csrf",
            Error::Database(_) | Error::Migrate(_) | Error::Internal(_) => "internal",
        }
    }

    /// The message a person sees. Never contains internal detail.
    pub fn public_message(&self) -> String {
        match self {
            Error::Invalid(_) => "Please correct the highlighted fields.".into(),
            Error::Unauthenticated => "Please sign in to continue.".into(),
            Error::BadCredentials => "Wrong email or password.".into(),
            Error::BadToken(m) => (*m).into(),
            Error::AccountDisabled => {
                "This account is disabled. Ask an administrator to enable it.".into()
            }
            Error::Forbidden => "You are not allowed to do that.".into(),
            Error::TwoFactorSetup => {
                "Set up two-factor sign-in first: this Pier requires it for everyone.".into()
            }
            Error::NotFound => "Not found.".into(),
            Error::Conflict(m) | Error::Quota(m) | Error::Unavailable(m) => m.clone(),
            Error::Gone { message } => message.clone(),
            Error::RateLimited {
                what,
                retry_after_secs,
            } => {
                let minutes = retry_after_secs.div_ceil(60).max(1);
                let unit = if minutes == 1 { "minute" } else { "minutes" };
                format!("Too many {what}. Try again in {minutes} {unit}.")
            }
            Error::Csrf => {
                "This form has expired or was sent from another site. Reload the page and try again."
                    .into()
            }
            Error::Database(_) | Error::Migrate(_) | Error::Internal(_) => {
                "Something went wrong on our side. It has been logged.".into()
            }
        }
    }

    pub fn fields(&self) -> &[FieldError] {
        match self {
            Error::Invalid(f) => f,
            _ => &[],
        }
    }

    /// The per-field messages as (field, message) pairs, for an error response.
    pub fn field_messages(&self) -> Vec<(String, String)> {
        self.fields()
            .iter()
            .map(|f| (f.field.clone(), f.message.clone()))
            .collect()
    }

    /// Logs internal detail for server errors; call where an error leaves the domain.
    pub fn log(&self) {
        if self.status() >= 500 {
            tracing::error!(error = %self, "request failed");
        }
    }
}

impl Error {
    /// A write a UNIQUE constraint refused becomes the caller's own words for it (a name
    /// taken); any other error stays as it is.
    pub fn on_unique(self, taken: impl FnOnce() -> Error) -> Error {
        match self {
            Error::Database(e) if is_unique_violation(&e) => taken(),
            other => other,
        }
    }
}

/// True when a database error is a UNIQUE constraint violation.
pub fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_detail_is_never_public() {
        let e = Error::internal("disk /var/lib/pier full at inode 42");
        assert_eq!(e.status(), 500);
        assert!(!e.public_message().contains("inode"));
    }

    #[test]
    fn rate_limit_message_rounds_up_to_minutes() {
        let e = Error::RateLimited {
            what: "failed sign-in attempts",
            retry_after_secs: 61,
        };
        assert_eq!(
            e.public_message(),
            "Too many failed sign-in attempts. Try again in 2 minutes."
        );
        assert_eq!(e.status(), 429);
    }
}
