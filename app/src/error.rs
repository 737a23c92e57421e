//! The error every server function returns: a stable code, a message safe to show, and the
//! per-field messages a form shows next to its inputs.

use serde::{Deserialize, Serialize};
use server_fn::{
    codec::JsonEncoding,
    error::{FromServerFnError, ServerFnErrorErr},
};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct AppError {
    pub code: String,
    pub message: String,
    #[serde(default)]
    pub fields: Vec<(String, String)>,
}

impl AppError {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        AppError {
            code: code.into(),
            message: message.into(),
            fields: Vec::new(),
        }
    }

    /// The message for one form field, if that field was rejected.
    pub fn field(&self, name: &str) -> Option<String> {
        self.fields
            .iter()
            .find(|(f, _)| f == name)
            .map(|(_, m)| m.clone())
    }

    pub fn is_unauthenticated(&self) -> bool {
        self.code == "unauthenticated"
    }
}

impl FromServerFnError for AppError {
    type Encoder = JsonEncoding;

    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        let message = match &value {
            ServerFnErrorErr::Request(_) | ServerFnErrorErr::Response(_) => {
                "Pier could not be reached. Check your connection and try again.".to_string()
            }
            ServerFnErrorErr::Args(_) | ServerFnErrorErr::Deserialization(_) => {
                "The form was incomplete or malformed. Reload the page and try again.".to_string()
            }
            _ => "Something went wrong. Reload the page and try again.".to_string(),
        };
        AppError::new("request", message)
    }
}

#[cfg(feature = "ssr")]
impl From<pier_core::Error> for AppError {
    /// Maps a domain error once: logs internal detail, sets the HTTP status of the response
    /// being built, and keeps only what is safe to show.
    fn from(e: pier_core::Error) -> Self {
        e.log();
        if let Some(resp) = leptos::prelude::use_context::<leptos_axum::ResponseOptions>() {
            if let Ok(status) = http::StatusCode::from_u16(e.status()) {
                resp.set_status(status);
            }
        }
        AppError {
            code: e.code().into(),
            message: e.public_message(),
            fields: e.field_messages(),
        }
    }
}
