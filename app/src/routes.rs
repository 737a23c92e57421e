//! The pages as lazy routes, in five chunks of wasm (`cargo leptos build --split`).
//!
//! The main wasm keeps what every page needs: the router, the session, the signed-in layout and
//! the shared components. A page's own code (its views, its resources and the deserialisers of
//! what they load, its server-function calls) is in the chunk of its group, which the browser
//! fetches the first time it shows a page of that group and then keeps for good (the files are
//! named by their content). Pages are grouped by who opens them together, and because every split
//! point multiplies the small chunks of code that several of them share: one chunk per page made
//! 145 files for an app's page.
//!
//! On a server-rendered page the chunk is preloaded from the `<head>` (`preload_links`), and
//! hydration waits for it (`hydrate` in lib.rs). When a chunk cannot be fetched while navigating
//! (a network error, or a tab opened before Pier was upgraded asks for a file of the old build),
//! the browser loads the page from the server instead.

use leptos::prelude::*;
use leptos_router::LazyRoute;

use crate::pages;

/// A chunk that did not load. The loader's own error is not `Send`; only the fact is kept.
#[derive(Debug, Clone, Copy)]
pub struct ChunkFailed;

impl From<leptos::wasm_split::SplitLoaderError> for ChunkFailed {
    fn from(_: leptos::wasm_split::SplitLoaderError) -> Self {
        ChunkFailed
    }
}

/// What a lazy route shows: the page, or — when its chunk could not be fetched — a full load of
/// the same address from the server, which serves the current build's files.
fn shown(page: Result<AnyView, ChunkFailed>) -> AnyView {
    page.unwrap_or_else(|ChunkFailed| {
        #[cfg(feature = "hydrate")]
        {
            leptos::logging::error!("a part of the page's code could not be fetched");
            // While hydrating, the server's HTML stays as it is (its forms work without the
            // wasm); a page rendered here for a click is fetched from the server instead.
            if crate::hydrated() {
                let location = leptos_router::hooks::use_location();
                let here = format!(
                    "{}{}",
                    location.pathname.get_untracked(),
                    location.search.get_untracked()
                );
                crate::components::hard_navigate(&here);
            }
        }
        view! {
            <p class="p-8 text-sm text-slate-500" role="alert">
                "This page could not be loaded. "
                <a href="" rel="external" class="text-indigo-600 hover:underline">"Reload it"</a>
            </p>
        }
        .into_any()
    })
}

/// Runs `load` (a fetch of a chunk) again, after 0.2 s then 1 s, while it fails: browsers abort
/// the requests in flight when the machine's network changes (`ERR_NETWORK_CHANGED`: a phone
/// moving between networks, or a container starting on a developer's machine), and a second try
/// gets through.
async fn retried<T, E, Fut>(load: impl Fn() -> Fut) -> Result<T, E>
where
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let result = load().await;
    #[cfg(feature = "hydrate")]
    let result = {
        let mut result = result;
        for ms in [200, 1000] {
            if result.is_ok() {
                break;
            }
            pause(ms).await;
            result = load().await;
        }
        result
    };
    result
}

/// Waits `ms` milliseconds (the browser's timer).
#[cfg(feature = "hydrate")]
async fn pause(ms: i32) {
    let timer = js_sys::Promise::new(&mut |resolve, _| {
        if let Some(window) = web_sys::window() {
            let _ = window.set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms);
        }
    });
    let _ = wasm_bindgen_futures::JsFuture::from(timer).await;
}

/// The chunks whose preload links this page's `<head>` has, on the server (`App` provides one
/// per request).
#[cfg(feature = "ssr")]
#[derive(Clone, Default)]
pub struct PreloadedChunks(
    std::sync::Arc<std::sync::Mutex<std::collections::HashSet<&'static str>>>,
);

/// Puts a `<link rel="preload">` in the page's `<head>` for each wasm file of `chunk`, and one
/// for the script that loads them, so the browser fetches them beside the main wasm instead of
/// after it. (Leptos's own `prefetch_lazy_fn_on_server` loses them when the page's view is
/// chosen before it starts listening, which it did for most signed-in pages.)
#[cfg(feature = "ssr")]
fn preload_links(chunk: &'static str) {
    use leptos::tachys::view::RenderHtml;
    use leptos_meta::Link;

    // A page's view may be rendered more than once on its way (as its data arrives).
    let first = use_context::<PreloadedChunks>()
        .is_some_and(|seen| seen.0.lock().is_ok_and(|mut seen| seen.insert(chunk)));
    if !first {
        return;
    }
    let Some(manifest) = use_context::<leptos::WasmSplitManifest>() else {
        return;
    };
    let Some(manifest) = manifest.0.try_read_value() else {
        return;
    };
    let (pkg, chunks, loader) = &*manifest;
    // `to_html` on a `<Link>` registers it with the page's `<head>`, it writes nothing here.
    for file in chunks.get(chunk).into_iter().flatten() {
        let _ = view! {
            <Link rel="preload" href=format!("{pkg}/{file}.wasm") as_="fetch"
                type_="application/wasm" crossorigin="anonymous"/>
        }
        .to_html();
    }
    let _ = view! { <Link rel="modulepreload" href=format!("{pkg}/{loader}")/> }.to_html();
}

/// One chunk: `$chunk` renders the pages listed, `$preload` fetches the chunk without rendering,
/// `$which` names its pages, and each `$route` is a lazy route for `<Route view=…>`.
macro_rules! chunk {
    (
        $(#[$doc:meta])*
        $chunk:ident, $preload:ident, $which:ident {
            $( $(#[$route_doc:meta])* $route:ident => $page:path ),+ $(,)?
        }
    ) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        #[repr(u8)]
        pub enum $which {
            $( $route ),+
        }

        #[::leptos::wasm_split::wasm_split(
            $chunk,
            wasm_split_path = ::leptos::wasm_split,
            fallible,
            preload($preload)
        )]
        fn $chunk(page: $which) -> Result<AnyView, ChunkFailed> {
            #[cfg(feature = "ssr")]
            preload_links(stringify!($chunk));
            Ok(match page {
                $( $which::$route => {
                    use $page as Page;
                    view! { <Page/> }.into_any()
                } )+
            })
        }

        $(
            $(#[$route_doc])*
            pub struct $route;

            impl LazyRoute for $route {
                fn data() -> Self {
                    Self
                }

                async fn view(_this: Self) -> AnyView {
                    shown(retried(|| $chunk($which::$route)).await)
                }

                // The router loads the chunk here before it renders the page, and hydration
                // needs it loaded by then. A failure shows when the page is rendered (`shown`).
                async fn preload() {
                    let _ = retried(|| $preload()).await;
                }
            }
        )+
    };
}

chunk!(
    /// Signed out: signing in, and accepting an invitation.
    pier_entry, preload_entry, EntryPage {
        /// `/login`
        Login => pages::login::LoginPage,
        /// `/invite/:token`
        Invite => pages::invite::InvitePage,
    }
);

chunk!(
    /// A tenant's lists: apps, a new app, registry logins, volumes, domains.
    pier_lists, preload_lists, ListPage {
        /// `/`
        Apps => pages::apps::AppsPage,
        /// `/apps/new`
        NewApp => pages::apps::NewAppPage,
        /// `/registries`
        Registries => pages::apps::RegistriesPage,
        /// `/volumes`
        Volumes => pages::apps::VolumesPage,
        /// `/domains`
        Domains => pages::domains::DomainsPage,
    }
);

chunk!(
    /// One app: its deployments, logs, charts, backups, image updates and settings.
    pier_app, preload_app, AppPage {
        /// `/apps/:name`
        App => pages::apps::AppPage,
    }
);

chunk!(
    /// The account: tokens, two factors, the API's documentation.
    pier_account, preload_account, AccountPage {
        /// `/account`
        Account => pages::account::AccountPage,
        /// `/account/two-factor`
        TwoFactor => pages::two_factor::TwoFactorPage,
        /// `/api-docs`
        ApiDocs => pages::api_docs::ApiDocsPage,
    }
);

chunk!(
    /// An admin's pages: people, machines, backups, notifications, certificates, the audit log.
    pier_admin, preload_admin, AdminPage {
        /// `/admin/users`
        Users => pages::admin::UsersPage,
        /// `/admin/certificates`
        Certificates => pages::certificates::CertificatesPage,
        /// `/admin/audit`
        Audit => pages::audit::AuditPage,
    }
);

/// Room for wasm-split to lay out the chunks' read-only data.
///
/// wasm-split (cargo-leptos's `--split`) moves each piece of the `.rodata` segment to the wasm
/// that uses it, re-packing every module's share with its own alignment padding. When the
/// re-packed segment comes out longer than the input's, even by a few bytes, it gives up and
/// leaves *all* of `.rodata` in the main wasm ("Overlong segment … putting it in main module",
/// visible with `RUST_LOG=trace wasm-split-cli --verbose`): 104 KB more raw, 31 KB more
/// compressed, for every first visit. It missed by 220 bytes when it was found; a sixth split
/// point had grown the main wasm by 34 KB the same way, and with this room does not.
/// These bytes are used by nothing, so no module takes them, and the input segment is longer
/// than what the modules need by their size: padding fits. They never reach a browser.
/// `bench/page.py` fails when no chunk holds data (the fallback happened anyway).
#[cfg(feature = "hydrate")]
#[used]
static SPLIT_DATA_SLACK: [u8; 8192] = [0xA5; 8192];
