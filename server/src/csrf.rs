//! CSRF protection for every state-changing browser request: the session's token must come back
//! in the `csrf_token` form field (or the `X-CSRF-Token` header), and a browser that says the
//! request is cross-site is refused outright. The REST API (`/api/`) takes no cookies, so it has
//! no CSRF surface and is not checked here.

use axum::{
    body::{to_bytes, Body},
    extract::{Request, State},
    http::{header, HeaderMap, Method, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};
use tower_sessions::Session;

use crate::http::AppState;

/// Form bodies larger than this are not buffered for the token (the whole request is refused).
const MAX_FORM: usize = 1024 * 1024;

pub async fn protect(
    State(state): State<AppState>,
    session: Session,
    req: Request,
    next: Next,
) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS)
        || req.uri().path().starts_with("/api/")
    {
        return next.run(req).await;
    }
    if cross_site(req.headers()) {
        tracing::warn!(path = %req.uri().path(), "refused a cross-site request");
        return reject(req.headers());
    }

    let Some(cookies) = req.extensions().get::<tower_cookies::Cookies>().cloned() else {
        tracing::error!("the cookie layer is missing: refusing a state change");
        return reject(req.headers());
    };
    let (parts, body) = req.into_parts();
    let mut token = parts
        .headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let is_form = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    let body = if is_form && token.is_none() {
        let Ok(bytes) = to_bytes(body, MAX_FORM).await else {
            return (StatusCode::PAYLOAD_TOO_LARGE, "The form is too large.").into_response();
        };
        token = form_urlencoded::parse(&bytes)
            .find(|(k, _)| k == "csrf_token")
            .map(|(_, v)| v.into_owned());
        Body::from(bytes)
    } else {
        body
    };

    if let Err(e) = state
        .pier
        .check_csrf(&session, &cookies, token.as_deref())
        .await
    {
        tracing::warn!(path = %parts.uri.path(), error = %e, "refused a request without a valid CSRF token");
        return reject(&parts.headers);
    }
    next.run(Request::from_parts(parts, body)).await
}

/// Fetch metadata (sent by every current browser) or an Origin that is not this host.
fn cross_site(headers: &HeaderMap) -> bool {
    if headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes() == b"cross-site")
    {
        return true;
    }
    match (headers.get(header::ORIGIN), headers.get(header::HOST)) {
        // "null" (an opaque origin) has no host and is refused too.
        (Some(origin), Some(host)) => {
            match origin.to_str().ok().and_then(|o| o.split_once("://")) {
                Some((_, origin_host)) => origin_host.as_bytes() != host.as_bytes(),
                None => true,
            }
        }
        _ => false,
    }
}

/// A 403 in the server-function error encoding (so the page shows the message next to the form),
/// or a short page for a plain form post.
fn reject(headers: &HeaderMap) -> Response {
    let err = pier_core::Error::Csrf;
    let wants_json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("json"));
    if wants_json {
        let body = serde_json::json!({
            "code": err.code(),
            "message": err.public_message(),
            "fields": [],
        });
        (StatusCode::FORBIDDEN, axum::Json(body)).into_response()
    } else {
        (
            StatusCode::FORBIDDEN,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            err.public_message(),
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn cross_site_detection() {
        assert!(!cross_site(&headers(&[])));
        assert!(!cross_site(&headers(&[("sec-fetch-site", "same-origin")])));
        assert!(cross_site(&headers(&[("sec-fetch-site", "cross-site")])));
        assert!(!cross_site(&headers(&[
            ("origin", "http://127.0.0.1:3000"),
            ("host", "127.0.0.1:3000")
        ])));
        assert!(cross_site(&headers(&[
            ("origin", "https://evil.example"),
            ("host", "127.0.0.1:3000")
        ])));
        assert!(cross_site(&headers(&[
            ("origin", "null"),
            ("host", "127.0.0.1:3000")
        ])));
    }
}
