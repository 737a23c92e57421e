//! The HTTP router, built apart from serving so tests drive it directly.

use app::{api::ssr::PanelInfo, shell, App};
use axum::{
    extract::{FromRef, Request, State},
    http::{header, HeaderValue, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use leptos::prelude::*;
use leptos_axum::{generate_route_list, handle_server_fns_with_context, LeptosRoutes};
use pier_core::{session_store::DbSessionStore, Pier};
use tower_http::{
    limit::RequestBodyLimitLayer, set_header::SetResponseHeaderLayer, trace::TraceLayer,
};
use tower_sessions::{
    cookie::{Key, SameSite},
    Expiry, SessionManagerLayer,
};

use crate::config::ServeArgs;

pub const SESSION_COOKIE: &str = "pier_session";

#[derive(Clone)]
pub struct AppState {
    pub pier: Pier,
    pub leptos: LeptosOptions,
    pub panel: PanelInfo,
    /// HTTP-01 answers while ACME orders wait for validation.
    pub challenges: crate::certs::Challenges,
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(s: &AppState) -> Self {
        s.leptos.clone()
    }
}

impl AppState {
    pub fn new(pier: Pier, args: &ServeArgs) -> Self {
        let leptos = LeptosOptions::builder()
            .output_name("pier")
            .site_root(args.site_root.display().to_string())
            .site_pkg_dir("pkg")
            .site_addr(args.listen)
            .build();
        AppState {
            pier,
            leptos,
            panel: PanelInfo {
                public_origin: args.public_origin(),
                api_doc: std::sync::Arc::new(
                    serde_json::to_value(crate::api::openapi()).unwrap_or_default(),
                ),
            },
            challenges: crate::certs::Challenges::default(),
        }
    }
}

pub fn router(state: AppState) -> Router {
    let context = {
        let pier = state.pier.clone();
        let panel = state.panel.clone();
        move || {
            provide_context(pier.clone());
            provide_context(panel.clone());
        }
    };
    let routes = generate_route_list(App);

    let settings = state.pier.settings();
    let sessions = SessionManagerLayer::new(DbSessionStore::new(state.pier.db().clone()))
        .with_name(SESSION_COOKIE)
        .with_http_only(true)
        .with_same_site(SameSite::Lax)
        .with_secure(false)
        .with_expiry(Expiry::OnInactivity(time::Duration::seconds(
            settings.session_idle_secs,
        )))
        .with_signed(Key::from(&state.pier.key().derive("session cookie")));

    let server_fns = {
        let context = context.clone();
        move |req: Request| {
            let context = context.clone();
            async move { handle_server_fns_with_context(context, req).await }
        }
    };

    Router::new()
        .route("/healthz", get(healthz))
        .route("/.well-known/acme-challenge/{token}", get(acme_challenge))
        .route("/events/apps/{name}/logs", get(crate::events::app_logs))
        .nest("/api/v1", crate::api::router())
        .route("/rpc/{*fn_name}", get(server_fns.clone()).post(server_fns))
        .leptos_routes_with_context(&state, routes, context.clone(), {
            let options = state.leptos.clone();
            move || shell(options.clone())
        })
        .fallback(leptos_axum::file_and_error_handler_with_context::<
            AppState,
            _,
        >(context, shell))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::csrf::protect,
        ))
        .layer(sessions)
        .layer(middleware::from_fn(secure_cookies_over_https))
        .layer(RequestBodyLimitLayer::new(2 * 1024 * 1024))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        // Invite links carry a token in the path: never send it on as a Referer.
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        ))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// The key authorization for an ACME HTTP-01 token Pier is waiting on; 404 for anything else.
async fn acme_challenge(
    State(state): State<AppState>,
    axum::extract::Path(token): axum::extract::Path<String>,
) -> Response {
    match state.challenges.answer(&token) {
        Some(answer) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/octet-stream")],
            answer,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such challenge\n").into_response(),
    }
}

/// 200 when the database answers, 503 otherwise.
async fn healthz(State(state): State<AppState>) -> Response {
    match pier_core::db::ping(state.pier.db()).await {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(e) => {
            tracing::error!(error = %e, "health check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n").into_response()
        }
    }
}

/// Marks the session cookie `Secure` when the browser reached the panel over HTTPS, as told by
/// the proxy on this machine (HAProxy) in `X-Forwarded-Proto`.
async fn secure_cookies_over_https(req: Request, next: Next) -> Response {
    let from_local_proxy =
        app::api::ssr::peer_ip(req.extensions()).is_some_and(|ip| ip.is_loopback());
    let https = from_local_proxy
        && req
            .headers()
            .get("x-forwarded-proto")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
    let mut res = next.run(req).await;
    if https {
        let cookies: Vec<HeaderValue> = res
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .cloned()
            .collect();
        res.headers_mut().remove(header::SET_COOKIE);
        for c in cookies {
            let c = match c.to_str() {
                Ok(s) if s.starts_with(SESSION_COOKIE) && !s.contains("; Secure") => {
                    HeaderValue::from_str(&format!("{s}; Secure")).unwrap_or(c)
                }
                _ => c,
            };
            res.headers_mut().append(header::SET_COOKIE, c);
        }
    }
    res
}
