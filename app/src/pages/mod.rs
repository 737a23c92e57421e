//! The pages, and the layout that guards the signed-in ones.

pub mod account;
pub mod admin;
pub mod api_docs;
pub mod apps;
pub mod audit;
pub mod backups;
pub mod certificates;
pub mod domains;
pub mod invite;
pub mod login;
pub mod machines;
pub mod notifications;
pub mod tags;
pub mod two_factor;

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::{
    components::{Outlet, Redirect, A},
    hooks::use_location,
};

use crate::{
    components::{encode_component, hard_navigate, CsrfField, ErrorFlash, CARD},
    form::{FormAction, PostForm},
    rpc::account::{Logout, Me, SessionInfo},
    SessionCtx,
};

/// Sets the HTTP status of the page being rendered on the server.
pub fn set_status(code: u16) {
    #[cfg(feature = "ssr")]
    if let (Some(resp), Ok(status)) = (
        use_context::<leptos_axum::ResponseOptions>(),
        http::StatusCode::from_u16(code),
    ) {
        resp.set_status(status);
    }
    #[cfg(not(feature = "ssr"))]
    let _ = code;
}

/// Where people set up two-factor sign-in.
pub const TWO_FACTOR_PAGE: &str = "/account/two-factor";

/// The layout of every signed-in page: navigation, then the page. Anyone not signed in is sent
/// to the sign-in page, and comes back here afterwards.
#[component]
pub fn Authed() -> impl IntoView {
    let session = expect_context::<SessionCtx>().0;
    let location = use_location();
    view! {
        <Transition fallback=|| view! { <p class="p-8 text-sm text-slate-500">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match session.await {
                    // Two factors are required and this person has none: setting one up comes
                    // first (the server refuses everything else anyway).
                    Ok(SessionInfo { me: Some(me), .. })
                        if me.must_enrol && location.pathname.get_untracked() != TWO_FACTOR_PAGE =>
                    {
                        view! { <Redirect path=TWO_FACTOR_PAGE/> }.into_any()
                    }
                    Ok(SessionInfo { me: Some(me), .. }) => view! {
                        <Nav me=me/>
                        <main class="mx-auto max-w-6xl px-4 py-8">
                            <Outlet/>
                        </main>
                    }
                    .into_any(),
                    // Already on the way to the sign-in page: the location changes before the
                    // page's code has arrived (lazy routes), and the session is asked again.
                    Ok(_) if location.pathname.get_untracked() == "/login" => ().into_any(),
                    Ok(_) => {
                        let path = location.pathname.get_untracked();
                        let to = if path == "/" {
                            "/login".to_string()
                        } else {
                            format!("/login?next={}", encode_component(&path))
                        };
                        view! { <Redirect path=to/> }.into_any()
                    }
                    Err(e) => view! {
                        <main class="mx-auto max-w-xl px-4 py-16"><ErrorFlash error=e/></main>
                    }
                    .into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn Nav(me: Me) -> impl IntoView {
    let logout = FormAction::of::<Logout>();
    Effect::new(move |_| {
        if let Some(Ok(())) = logout.value().get() {
            hard_navigate("/login?notice=signed-out");
        }
    });
    let link = "rounded-md px-3 py-2 text-sm font-medium text-slate-600 hover:bg-slate-100 hover:text-slate-900 \
                aria-[current=page]:bg-slate-100 aria-[current=page]:text-slate-900 dark:text-slate-300 \
                dark:hover:bg-slate-800 dark:aria-[current=page]:bg-slate-800 dark:aria-[current=page]:text-white";
    view! {
        <header class="border-b border-slate-200 bg-white/80 backdrop-blur dark:border-slate-800 dark:bg-slate-900/80">
            <div class="mx-auto flex max-w-6xl flex-wrap items-center gap-2 px-4 py-3">
                <A href="/" attr:class="mr-4 flex items-center gap-2 text-lg font-bold tracking-tight">
                    <span aria-hidden="true" class="inline-block h-6 w-6 rounded-md bg-indigo-600"></span>
                    "Pier"
                </A>
                <nav aria-label="Main" class="flex flex-1 flex-wrap items-center gap-1">
                    <A href="/" exact=true attr:class=link>"Apps"</A>
                    <A href="/domains" attr:class=link>"Domains"</A>
                    <A href="/volumes" attr:class=link>"Volumes"</A>
                    <A href="/registries" attr:class=link>"Registries"</A>
                    <A href="/account" attr:class=link>"Account"</A>
                    <A href="/api-docs" attr:class=link>"API"</A>
                    {me.is_admin.then(|| view! { <A href="/admin/users" attr:class=link>"Users"</A> })}
                    {me.is_admin.then(|| view! { <A href="/admin/certificates" attr:class=link>"Certificates"</A> })}
                    {me.is_admin.then(|| view! { <A href="/admin/audit" attr:class=link>"Audit log"</A> })}
                </nav>
                <span class="hidden text-sm text-slate-500 sm:inline" data-testid="me">{me.email.clone()}</span>
                <PostForm action=logout>
                    <CsrfField/>
                    <button type="submit" class="rounded-md px-3 py-2 text-sm font-medium text-slate-600 hover:bg-slate-100 dark:text-slate-300 dark:hover:bg-slate-800">
                        "Sign out"
                    </button>
                </PostForm>
            </div>
        </header>
    }
}

#[component]
pub fn NotFound() -> impl IntoView {
    set_status(404);
    view! {
        <Title text="Not found"/>
        <main class="mx-auto max-w-xl px-4 py-24 text-center">
            <div class=CARD>
                <h1 class="text-2xl font-bold">"Page not found"</h1>
                <p class="mt-2 text-slate-500">"There is nothing at this address."</p>
                <a href="/" class="mt-6 inline-block text-indigo-600 hover:underline">"Back to your apps"</a>
            </div>
        </main>
    }
}

/// Its children for admins, a "not allowed" page for everyone else. The server checks the role
/// again on every call; this only hides what would be refused.
#[component]
pub fn AdminOnly(children: ChildrenFn) -> impl IntoView {
    let session = expect_context::<crate::SessionCtx>().0;
    let is_admin = move || {
        session
            .get()
            .and_then(Result::ok)
            .and_then(|s| s.me)
            .is_some_and(|m| m.is_admin)
    };
    view! {
        <Show when=is_admin fallback=|| view! { <Forbidden/> }>
            {children()}
        </Show>
    }
}

#[component]
pub fn Forbidden() -> impl IntoView {
    set_status(403);
    view! {
        <Title text="Not allowed"/>
        <div class=CARD>
            <h1 class="text-2xl font-bold">"Admins only"</h1>
            <p class="mt-2 text-slate-500">"You need to be an admin to open this page."</p>
        </div>
    }
}
