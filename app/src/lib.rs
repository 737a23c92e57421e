//! Pier's browser UI: Leptos components rendered on the server and hydrated in the browser.

// Browser and server must render the same view types, or hydration fails without a build error
// (.cargo/config.toml sets this for every build; a RUSTFLAGS from elsewhere would replace it).
#[cfg(not(erase_components))]
compile_error!(
    "build with `--cfg erase_components` (.cargo/config.toml sets it; RUSTFLAGS replaces it)"
);

pub mod codec;
pub mod components;
pub mod error;
pub mod form;
pub mod pages;
pub mod routes;
pub mod rpc;
pub mod webauthn;

use leptos::prelude::*;
use leptos_meta::{provide_meta_context, HashedStylesheet, MetaTags, Title};
use leptos_router::{
    components::{ParentRoute, Route, Router, Routes},
    hooks::use_location,
    path, Lazy, SsrMode,
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
pub struct SessionCtx(pub crate::codec::Loaded<Result<SessionInfo, AppError>>);

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    #[cfg(feature = "ssr")]
    provide_context(routes::PreloadedChunks::default());
    view! {
        <Title formatter=|t: String| if t.is_empty() { "Pier".to_string() } else { format!("{t} · Pier") }/>
        <Router>
            <SessionProvider>
                <Routes fallback=pages::NotFound>
                    <Route path=path!("/login") view={Lazy::<routes::Login>::new()} ssr=SsrMode::Async/>
                    <Route path=path!("/invite/:token") view={Lazy::<routes::Invite>::new()} ssr=SsrMode::Async/>
                    <ParentRoute path=path!("") view=pages::Authed ssr=SsrMode::Async>
                        <Route path=path!("") view={Lazy::<routes::Apps>::new()} ssr=SsrMode::Async/>
                        <Route path=path!("apps/new") view={Lazy::<routes::NewApp>::new()} ssr=SsrMode::Async/>
                        <Route path=path!("apps/:name") view={Lazy::<routes::App>::new()} ssr=SsrMode::Async/>
                        <Route path=path!("registries") view={Lazy::<routes::Registries>::new()} ssr=SsrMode::Async/>
                        <Route path=path!("volumes") view={Lazy::<routes::Volumes>::new()} ssr=SsrMode::Async/>
                        <Route path=path!("domains") view={Lazy::<routes::Domains>::new()} ssr=SsrMode::Async/>
                        <Route path=path!("account") view={Lazy::<routes::Account>::new()} ssr=SsrMode::Async/>
                        <Route path=path!("account/two-factor") view={Lazy::<routes::TwoFactor>::new()} ssr=SsrMode::Async/>
                        <Route path=path!("admin/users") view={Lazy::<routes::Users>::new()} ssr=SsrMode::Async/>
                        <Route path=path!("admin/certificates") view={Lazy::<routes::Certificates>::new()} ssr=SsrMode::Async/>
                        <Route path=path!("admin/audit") view={Lazy::<routes::Audit>::new()} ssr=SsrMode::Async/>
                        <Route path=path!("api-docs") view={Lazy::<routes::ApiDocs>::new()} ssr=SsrMode::Async/>
                    </ParentRoute>
                </Routes>
            </SessionProvider>
        </Router>
    }
}

#[component]
fn SessionProvider(children: Children) -> impl IntoView {
    let location = use_location();
    let session = crate::codec::resource(move || location.pathname.get(), |_| session_state());
    provide_context(SessionCtx(session));
    children()
}

/// Whether this page's hydration (the chunk of the page the server rendered included) is done:
/// from then on the browser renders pages itself.
#[cfg(feature = "hydrate")]
static HYDRATED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

#[cfg(feature = "hydrate")]
pub(crate) fn hydrated() -> bool {
    HYDRATED.load(std::sync::atomic::Ordering::Relaxed)
}

#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    // As `leptos::mount::hydrate_lazy`: hydration waits for the chunk of the page the server
    // rendered (lazy routes, `routes.rs`). Then the body is marked, so tests (and anyone curious)
    // can tell a page that works from server-rendered HTML.
    wasm_bindgen_futures::spawn_local(async {
        let body = document().body().expect("a page has a body");
        let owner = leptos::mount::hydrate_from_async(body.clone(), App).await;
        owner.forget();
        HYDRATED.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = body.set_attribute("data-hydrated", "true");
    });
}
