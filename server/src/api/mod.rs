//! The REST API, `/api/v1`: JSON in and out, personal access tokens only (no cookies, so no CSRF
//! surface). Handlers call the same `pier_core::Pier` methods as the browser's server functions.

mod apps;
mod audit;
mod backups;
mod doc;
mod domains;
mod nodes;
mod notify;
mod registries;
mod tags;
mod tokens;
mod users;

use axum::{
    extract::{rejection::JsonRejection, FromRequest, FromRequestParts, Query, Request},
    http::{header, request::Parts, StatusCode},
    response::{IntoResponse, Response},
    Json, Router,
};
use pier_core::{
    model::{Actor, Scope},
    tokens::require_scope,
};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::http::AppState;

/// The OpenAPI document of this API.
pub fn openapi() -> utoipa::openapi::OpenApi {
    use utoipa::OpenApi;
    doc::ApiDoc::openapi()
}

pub fn router() -> Router<AppState> {
    Router::new()
        .merge(tokens::router())
        .merge(users::router())
        .merge(apps::router())
        .merge(backups::router())
        .merge(audit::router())
        .merge(notify::router())
        .merge(registries::router())
        .merge(tags::router())
        .merge(domains::router())
        .merge(nodes::router())
        .merge(doc::router())
        .fallback(|| async { ApiError::from(pier_core::Error::NotFound) })
}

/// Every API error has one shape: `{"error": {"code", "message", "fields"?}}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    fields: Vec<(String, String)>,
}

impl From<pier_core::Error> for ApiError {
    fn from(e: pier_core::Error) -> Self {
        e.log();
        ApiError {
            status: StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            code: e.code(),
            message: e.public_message(),
            fields: e.field_messages(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.into(),
                message: self.message,
                fields: (!self.fields.is_empty()).then(|| {
                    self.fields
                        .into_iter()
                        .map(|(field, message)| FieldMessage { field, message })
                        .collect()
                }),
            },
        };
        let mut res = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"pier\""),
            );
        }
        res
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable: invalid, invalid_token, forbidden, not_found, conflict, …
    pub code: String,
    /// Safe to show to a person.
    pub message: String,
    /// Per-field messages, for invalid input.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fields: Option<Vec<FieldMessage>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FieldMessage {
    pub field: String,
    pub message: String,
}

fn bad_request(code: &'static str, message: String) -> ApiError {
    ApiError {
        status: StatusCode::BAD_REQUEST,
        code,
        message,
        fields: Vec::new(),
    }
}

/// The caller, from `Authorization: Bearer <token>`.
pub struct Caller {
    pub actor: Actor,
    pub scope: Scope,
    /// When the calling token expires (None: never); tokens it creates may not outlive it.
    pub expires_at: Option<i64>,
    /// The calling token's id.
    pub token_id: i64,
}

impl Caller {
    pub fn require(&self, need: Scope) -> ApiResult<()> {
        Ok(require_scope(self.scope, need)?)
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .map(|v| v.to_str().unwrap_or("\u{0}"));
        let mut b = state.pier.authenticate_bearer(header).await?;
        b.actor.origin.address = Some(app::rpc::ssr::client_ip(&parts.extensions, &parts.headers));
        Ok(Caller {
            actor: b.actor,
            scope: b.scope,
            expires_at: b.expires_at,
            token_id: b.token_id,
        })
    }
}

/// A JSON body whose problems are answered in the API's error shape.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> ApiResult<Self> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Body(v)),
            Err(JsonRejection::JsonDataError(e)) => Err(ApiError {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                code: "invalid",
                message: format!("The JSON does not fit: {}", e.body_text()),
                fields: Vec::new(),
            }),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(bad_request(
                "bad_request",
                "Send JSON with Content-Type: application/json.".into(),
            )),
            Err(e) => Err(bad_request(
                "bad_request",
                format!("The body is not valid JSON: {}", e.body_text()),
            )),
        }
    }
}

/// An optional JSON body: an empty one (length 0, or neither a length, a transfer encoding nor a
/// content type) is `None`; anything else must be the JSON `T`.
impl<T: DeserializeOwned> axum::extract::OptionalFromRequest<AppState> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> ApiResult<Option<Self>> {
        let h = req.headers();
        let length = h.get(header::CONTENT_LENGTH);
        let empty = length.is_some_and(|v| v == "0")
            || (length.is_none()
                && !h.contains_key(header::TRANSFER_ENCODING)
                && !h.contains_key(header::CONTENT_TYPE));
        if empty {
            return Ok(None);
        }
        <Body<T> as FromRequest<AppState>>::from_request(req, state)
            .await
            .map(Some)
    }
}

/// `?page=&per_page=` on list routes.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Page number, from 1 (default 1).
    #[param(minimum = 1)]
    page: Option<u32>,
    /// Items per page, 1–100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    per_page: Option<u32>,
}

/// One page of a list.
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub page: u32,
    pub per_page: u32,
    pub total: usize,
}

impl PageQuery {
    /// The checked page number, page size and the number of items before the page.
    pub fn bounds(&self) -> ApiResult<(u32, u32, usize)> {
        let page = self.page.unwrap_or(1);
        let per_page = self.per_page.unwrap_or(50);
        if page == 0 || !(1..=100).contains(&per_page) {
            return Err(pier_core::Error::Invalid(vec![pier_core::FieldError {
                field: "per_page".into(),
                message: "page starts at 1; per_page is between 1 and 100.".into(),
            }])
            .into());
        }
        // Widened and saturating: any page number is an empty page, never an overflow.
        let skip = (page as usize - 1).saturating_mul(per_page as usize);
        Ok((page, per_page, skip))
    }

    pub fn paginate<T>(&self, all: Vec<T>) -> ApiResult<Page<T>> {
        let (page, per_page, skip) = self.bounds()?;
        let total = all.len();
        let items = all.into_iter().skip(skip).take(per_page as usize).collect();
        Ok(Page {
            items,
            page,
            per_page,
            total,
        })
    }
}

/// Query strings whose problems are answered in the API's error shape.
pub struct Q<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<AppState> for Q<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| Q(v))
            .map_err(|e| bad_request("bad_request", e.body_text()))
    }
}

/// The panel's address for links in responses: its public host, else the request's.
pub fn panel_origin(s: &AppState, headers: &axum::http::HeaderMap) -> String {
    s.panel.public_origin.clone().unwrap_or_else(|| {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost");
        format!("http://{host}")
    })
}

pub fn format_time(ts: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(ts)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}
