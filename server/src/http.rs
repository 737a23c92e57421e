//! The HTTP router, built apart from serving so tests drive it directly.

use app::{rpc::ssr::PanelInfo, shell, App};
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

/// The session cookie's name over plain HTTP, and the session layer's own name for it; over
/// HTTPS browsers see `__Host-pier_session` (see [`host_cookie_over_https`]).
pub const SESSION_COOKIE: &str = "pier_session";

#[derive(Clone)]
pub struct AppState {
    pub pier: Pier,
    pub leptos: LeptosOptions,
    pub panel: PanelInfo,
    /// HTTP-01 answers while ACME orders wait for validation.
    pub challenges: crate::certs::Challenges,
    /// Count and time requests by route (only where metrics are served).
    pub count_requests: bool,
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(s: &AppState) -> Self {
        s.leptos.clone()
    }
}

impl AppState {
    pub fn new(pier: Pier, args: &ServeArgs) -> Self {
        let hash_file = crate::assets::hash_file(&args.site_root);
        // Hashed names only when the file names a script: otherwise pages ask for `pier.js`.
        let hashed_names = hash_file
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|text| crate::assets::hashed_names(&text, "pier"));
        let hashed = hashed_names.is_some();
        let leptos = LeptosOptions::builder()
            .output_name("pier")
            .site_root(args.site_root.display().to_string())
            .site_pkg_dir("pkg")
            .site_addr(args.listen)
            // Leptos joins this to the binary's directory; an absolute path stands alone.
            .hash_files(hashed)
            .hash_file(
                hash_file
                    .as_ref()
                    .map_or("hash.txt".into(), |p| p.display().to_string().into()),
            )
            .build();
        let page_files = hashed_names.unwrap_or_else(|| crate::assets::plain_names("pier"));
        check_site_files(&args.site_root, &page_files, hash_file.as_deref());
        AppState {
            pier,
            leptos,
            panel: PanelInfo {
                public_origin: args.public_origin(),
                api_doc: serde_json::to_string(&crate::api::openapi())
                    .unwrap_or_default()
                    .into(),
            },
            challenges: crate::certs::Challenges::default(),
            count_requests: args.metrics_listen.is_some(),
        }
    }
}

/// Says in the log, once at start, when the files pages will ask for are not in the site
/// directory (a site built apart from the binary, or not built): pages would render without
/// style or interactivity, which is otherwise hard to trace.
fn check_site_files(
    site_root: &std::path::Path,
    names: &[String],
    hash_file: Option<&std::path::Path>,
) {
    let pkg = site_root.join("pkg");
    let missing: Vec<&String> = names.iter().filter(|n| !pkg.join(n).is_file()).collect();
    let split = names
        .iter()
        .any(|n| n.starts_with(&format!("{}.", crate::assets::SPLIT_LOADER)));
    if !split {
        tracing::warn!(
            site = %pkg.display(),
            hash_file = ?hash_file,
            "the site was built without `--split`: pages will not load their code \
             (build with `cargo leptos build --split`, as scripts/release.sh does)"
        );
    } else if !missing.is_empty() {
        tracing::warn!(
            site = %pkg.display(),
            ?missing,
            hash_file = ?hash_file,
            "the site's browser files are missing: build them with `cargo leptos build` \
             (and keep its hash.txt in the site directory or beside the binary)"
        );
    }
}

/// The pages' routes, found once per process by rendering the app without data.
///
/// Leptos marks that rendering with a process-wide flag, and a resource whose loading starts
/// while the flag is up (in a request another router is serving) waits forever: a second
/// generation while a first router serves pages would hang one of them. Tests build a router
/// each; this makes the generation happen before any router exists, never beside one.
fn route_list() -> Vec<leptos_axum::AxumRouteListing> {
    static ROUTES: std::sync::OnceLock<Vec<leptos_axum::AxumRouteListing>> =
        std::sync::OnceLock::new();
    ROUTES.get_or_init(|| generate_route_list(App)).clone()
}

pub fn router(state: AppState) -> Router {
    let context = {
        let pier = state.pier.clone();
        let panel = state.panel.clone();
        move || {
            provide_context(pier.clone());
            provide_context(panel.clone());
            // Leptos puts its own nonce on the inline scripts it writes; make it the one the
            // Content-Security-Policy header of this response names.
            if let Some(n) = use_context::<axum::http::request::Parts>()
                .and_then(|p| p.extensions.get::<CspNonce>().cloned())
            {
                provide_context(leptos::nonce::Nonce::from_value(n.0));
            }
        }
    };
    let routes = route_list();

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

    // The browser's files stay outside the session and CSRF layers: a response cached for a
    // year must never carry a session's Set-Cookie, and a file needs no session lookup.
    let pkg = crate::assets::pkg_router(std::path::Path::new(&*state.leptos.site_root));

    let panel = Router::new()
        .route("/healthz", get(healthz))
        .route("/.well-known/acme-challenge/{token}", get(acme_challenge))
        .route("/events/apps/{name}/logs", get(crate::events::app_logs))
        .route(
            "/downloads/apps/{name}/backups/{id}",
            get(crate::downloads::backup),
        )
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
        .layer(middleware::from_fn(host_cookie_over_https))
        .layer(RequestBodyLimitLayer::new(2 * 1024 * 1024));

    let all = Router::new().merge(pkg).merge(panel);
    // Per route (a layer on the router runs after routing): the route's pattern is known.
    let all = match state.count_requests {
        true => all.layer(middleware::from_fn_with_state(
            state.pier.clone(),
            crate::metrics::track,
        )),
        false => all,
    };
    all.layer(middleware::from_fn(content_security_policy))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            strict_transport,
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        // Never framed (clickjacking); `frame-ancestors 'none'` says the same to CSP browsers.
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

/// This response's CSP nonce, for the inline scripts Leptos writes into server-rendered pages.
#[derive(Clone)]
struct CspNonce(String);

/// A Content-Security-Policy on every response, with a fresh nonce per request.
///
/// * Scripts: only `/pkg/` files ('self') and the inline ones Leptos writes for hydration and
///   streamed data, which carry the nonce; `'wasm-unsafe-eval'` lets the browser compile
///   `/pkg/pier.wasm`. No `'unsafe-inline'` for scripts.
/// * Styles: `/pkg/pier.css` only, except `style` *attributes*: two progress bars set their
///   width that way, so `style-src-attr 'unsafe-inline'` is the one unavoidable allowance (it
///   permits no `<style>` element and no script).
/// * Nothing may frame the panel, and forms and fetches stay on this origin.
async fn content_security_policy(mut req: Request, next: Next) -> Response {
    let nonce: String = rand::random::<[u8; 16]>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    req.extensions_mut().insert(CspNonce(nonce.clone()));
    let mut res = next.run(req).await;
    let policy = format!(
        "default-src 'self'; script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'; \
         style-src 'self'; style-src-attr 'unsafe-inline'; img-src 'self' data:; \
         connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
         frame-ancestors 'none'"
    );
    if let Ok(v) = HeaderValue::from_str(&policy) {
        res.headers_mut()
            .entry(header::CONTENT_SECURITY_POLICY)
            .or_insert(v);
    }
    res
}

/// `Strict-Transport-Security` on the panel's HTTPS responses once its host is served with a
/// valid CA certificate: from then on browsers never fall back to plain HTTP or let a person
/// click through a certificate warning for it. Never while the self-signed default serves (that
/// would lock people out), never over plain HTTP (browsers ignore it there), never for other
/// hosts (an app's domain decides for itself).
async fn strict_transport(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let panel = state.pier.panel_certificate_name();
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(|h| {
            h.rsplit_once(':')
                .map_or(h, |(name, _)| name)
                .to_ascii_lowercase()
        });
    let send = panel.is_some()
        && host.as_deref() == panel
        && app::rpc::ssr::via_https(req.extensions(), req.headers())
        && state.pier.panel_certified();
    let mut res = next.run(req).await;
    if send {
        res.headers_mut().insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    res
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

/// Over HTTPS through Pier's own HAProxy, the session cookie is `__Host-pier_session` (and a
/// visitor's CSRF cookie `__Host-pier_csrf`): browsers
/// only keep a `__Host-` cookie that is `Secure`, has `Path=/` and no `Domain`, so an app on a
/// sibling host of the same registrable domain can neither set nor shadow it ("cookie
/// tossing"). The session layer knows one name, so it is renamed on the way in and out here; a
/// plain `pier_session` cookie arriving over HTTPS is dropped, as anyone on a sibling host could
/// have set it. Plain HTTP (loopback development) keeps `pier_session`.
async fn host_cookie_over_https(mut req: Request, next: Next) -> Response {
    let https = app::rpc::ssr::via_https(req.extensions(), req.headers());
    if https {
        let pairs: Vec<String> = req
            .headers()
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .map(str::trim)
            .filter(|p| !p.is_empty() && !HOST_COOKIES.contains(&cookie_name(p)))
            .map(|p| match p.strip_prefix("__Host-") {
                Some(rest) if HOST_COOKIES.contains(&cookie_name(rest)) => rest.to_owned(),
                _ => p.to_owned(),
            })
            .collect();
        req.headers_mut().remove(header::COOKIE);
        if let Ok(v) = HeaderValue::from_str(&pairs.join("; ")) {
            if !pairs.is_empty() {
                req.headers_mut().insert(header::COOKIE, v);
            }
        }
    }
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
                Ok(s) if HOST_COOKIES.contains(&cookie_name(s)) => {
                    HeaderValue::from_str(&host_cookie(s)).unwrap_or(c)
                }
                _ => c,
            };
            res.headers_mut().append(header::SET_COOKIE, c);
        }
    }
    res
}

/// The cookies that are `__Host-` cookies over HTTPS: the session, and a visitor's CSRF token.
const HOST_COOKIES: [&str; 2] = [SESSION_COOKIE, pier_core::accounts::CSRF_COOKIE];

/// The name of `name=value[; attributes]`.
fn cookie_name(pair: &str) -> &str {
    pair.split_once('=').map_or(pair, |(n, _)| n).trim()
}

/// The session layer's `Set-Cookie` as a `__Host-` cookie: `Secure`, `Path=/`, no `Domain`.
fn host_cookie(set_cookie: &str) -> String {
    let mut parts = set_cookie.split(';').map(str::trim);
    let mut out = format!("__Host-{}", parts.next().unwrap_or_default());
    for attr in parts {
        let name = cookie_name(attr).to_ascii_lowercase();
        if !matches!(name.as_str(), "secure" | "path" | "domain") {
            out.push_str("; ");
            out.push_str(attr);
        }
    }
    out.push_str("; Path=/; Secure");
    out
}
