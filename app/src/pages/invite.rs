use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;

use crate::{
    components::{field_error, hard_navigate, CsrfField, ErrorFlash, Field, BUTTON, CARD},
    form::{FormAction, PostForm},
    rpc::account::{invite_info, AcceptInvite},
};

/// Where an invited (or reset) user chooses their password.
#[component]
pub fn InvitePage() -> impl IntoView {
    let params = use_params_map();
    let token = move || params.read().get("token").unwrap_or_default();
    let info = crate::codec::resource(token, invite_info);
    let accept = FormAction::of::<AcceptInvite>();
    let value = accept.value();
    Effect::new(move |_| {
        if let Some(Ok(())) = value.get() {
            hard_navigate("/login?notice=password-set");
        }
    });
    view! {
        <Title text="Choose a password"/>
        <main class="mx-auto flex min-h-screen max-w-md flex-col justify-center px-4 py-12">
            <div class=CARD>
                <h1 class="mb-2 text-xl font-semibold">"Choose your password"</h1>
                <Suspense fallback=|| view! { <p class="text-sm text-slate-500">"Checking your link…"</p> }>
                    {move || Suspend::new(async move {
                        match info.await {
                            Ok(email) => view! {
                                <p class="mb-6 text-sm text-slate-500">"For " <strong data-testid="invite-email">{email}</strong></p>
                                <div class="mb-4">
                                    {move || match value.get() {
                                        Some(Err(e)) if e.fields.is_empty() => Some(view! { <ErrorFlash error=e/> }),
                                        _ => None,
                                    }}
                                </div>
                                <PostForm action=accept attr:class="space-y-4" attr:novalidate=true>
                                    <CsrfField/>
                                    <input type="hidden" name="token" value=token()/>
                                    <Field label="Password" name="password" kind="password" autocomplete="new-password"
                                        hint="At least 12 characters." required=true error=field_error(value, "password")/>
                                    <Field label="Repeat password" name="confirm" kind="password" autocomplete="new-password"
                                        required=true error=field_error(value, "confirm")/>
                                    <button type="submit" class=format!("{BUTTON} w-full")>"Set password"</button>
                                </PostForm>
                            }.into_any(),
                            // The server already set the status (410 for a used or expired link).
                            Err(e) => view! {
                                <div class="mt-4"><ErrorFlash error=e/></div>
                                <a href="/login" class="mt-6 inline-block text-sm text-indigo-600 hover:underline">"Go to sign in"</a>
                            }.into_any(),
                        }
                    })}
                </Suspense>
            </div>
        </main>
    }
}
