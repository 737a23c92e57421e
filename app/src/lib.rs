//! Pier's browser UI: Leptos components rendered on the server and hydrated in the browser.

// Browser and server must render the same view types, or hydration fails without a build error
// (.cargo/config.toml sets this for every build; a RUSTFLAGS from elsewhere would replace it).
#[cfg(not(erase_components))]
compile_error!(
    "build with `--cfg erase_components` (.cargo/config.toml sets it; RUSTFLAGS replaces it)"
);

pub mod components;
pub mod error;
pub mod pages;
pub mod rpc;
pub mod webauthn;

use leptos::prelude::*;
use leptos_meta::{provide_meta_context, HashedStylesheet, MetaTags, Title};
use leptos_router::{
    components::{ParentRoute, Route, Router, Routes},
    hooks::use_location,
    path, SsrMode,
};

use crate::{
    error::AppError,
    rpc::account::{session_state, SessionInfo},
};

/// The document around the app, rendered on the server only.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <meta name="color-scheme" content="light dark"/>
                <AutoReload options=options.clone()/>
                // `/pkg/pier.css`, or `pier.<hash>.css` when the build hashed the file names.
                <HashedStylesheet options=options.clone() id="leptos"/>
                <HydrationScripts options/>
                <link rel="icon" type="image/svg+xml" href="/favicon.svg"/>
                <MetaTags/>
            </head>
            <body class="min-h-screen bg-slate-50 text-slate-900 antialiased dark:bg-slate-950 dark:text-slate-100">
                <App/>
            </body>
        </html>
    }
}

/// Who is signed in, and the CSRF token for forms; refetched on every navigation so that a
/// session ended elsewhere is noticed at the next click.
#[derive(Clone, Copy)]
pub struct SessionCtx(pub Resource<Result<SessionInfo, AppError>>);

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    // Effects run only in the browser, once the wasm has hydrated the page: mark it, so tests
    // (and anyone curious) can tell a hydrated page from server-rendered HTML.
    Effect::new(|_| {
        #[cfg(feature = "hydrate")]
        if let Some(body) = document().body() {
            let _ = body.set_attribute("data-hydrated", "true");
        }
    });
    view! {
        <Title formatter=|t: String| if t.is_empty() { "Pier".to_string() } else { format!("{t} · Pier") }/>
        <Router>
            <SessionProvider>
                <Routes fallback=pages::NotFound>
                    <Route path=path!("/login") view=pages::login::LoginPage ssr=SsrMode::Async/>
                    <Route path=path!("/invite/:token") view=pages::invite::InvitePage ssr=SsrMode::Async/>
                    <ParentRoute path=path!("") view=pages::Authed ssr=SsrMode::Async>
                        <Route path=path!("") view=pages::apps::AppsPage ssr=SsrMode::Async/>
                        <Route path=path!("apps/new") view=pages::apps::NewAppPage ssr=SsrMode::Async/>
                        <Route path=path!("apps/:name") view=pages::apps::AppPage ssr=SsrMode::Async/>
                        <Route path=path!("registries") view=pages::apps::RegistriesPage ssr=SsrMode::Async/>
                        <Route path=path!("volumes") view=pages::apps::VolumesPage ssr=SsrMode::Async/>
                        <Route path=path!("domains") view=pages::domains::DomainsPage ssr=SsrMode::Async/>
                        <Route path=path!("account") view=pages::account::AccountPage ssr=SsrMode::Async/>
                        <Route path=path!("account/two-factor") view=pages::two_factor::TwoFactorPage ssr=SsrMode::Async/>
                        <Route path=path!("admin/users") view=pages::admin::UsersPage ssr=SsrMode::Async/>
                        <Route path=path!("admin/certificates") view=pages::certificates::CertificatesPage ssr=SsrMode::Async/>
                        <Route path=path!("admin/audit") view=pages::audit::AuditPage ssr=SsrMode::Async/>
                        <Route path=path!("api-docs") view=pages::api_docs::ApiDocsPage ssr=SsrMode::Async/>
                    </ParentRoute>
                </Routes>
            </SessionProvider>
        </Router>
    }
}

#[component]
fn SessionProvider(children: Children) -> impl IntoView {
    let location = use_location();
    let session = Resource::new(move || location.pathname.get(), |_| session_state());
    provide_context(SessionCtx(session));
    children()
}

#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(App);
}
