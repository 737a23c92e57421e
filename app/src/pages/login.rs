use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::{components::Redirect, hooks::use_query_map};

use crate::{
    components::{
        csrf_now, field_error, hard_navigate, safe_next, said, CsrfField, ErrorFlash, Field, Flash,
        Tone, BUTTON, BUTTON_SMALL, CARD, INPUT,
    },
    form::{FormAction, PostForm},
    rpc::account::{Login, LoginCode, LoginStep, Logout, SecondFactors, SessionInfo},
    rpc::two_factor::{begin_passkey_login, finish_passkey_login},
    SessionCtx,
};

fn notice(code: &str) -> Option<&'static str> {
    match code {
        "signed-out" => Some("You are signed out."),
        "password-set" => Some("Your password is set. Sign in with it."),
        _ => None,
    }
}

#[component]
pub fn LoginPage() -> impl IntoView {
    let session = expect_context::<SessionCtx>().0;
    let query = use_query_map();
    let next = move || safe_next(query.read().get("next"));
    view! {
        <Title text="Sign in"/>
        <Suspense>
            {move || Suspend::new(async move {
                match session.await {
                    Ok(SessionInfo { me: Some(_), .. }) => view! { <Redirect path=next()/> }.into_any(),
                    // The password was right a moment ago (the page was reloaded): the code is next.
                    Ok(SessionInfo { pending: Some(f), .. }) => view! { <CodeForm next=next() factors=f/> }.into_any(),
                    _ => view! { <LoginForm next=next()/> }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn LoginForm(next: String) -> impl IntoView {
    let query = use_query_map();
    let login = FormAction::of::<Login>();
    let value = login.value();
    let (show, set_show) = signal(false);
    let target = next.clone();
    Effect::new(move |_| {
        if let Some(Ok(LoginStep::SignedIn)) = value.get() {
            hard_navigate(&target);
        }
    });
    let factors = move || match value.get() {
        Some(Ok(LoginStep::NeedsSecondFactor(f))) => Some(f),
        _ => None,
    };
    let email = RwSignal::new(String::new());
    let passkey = passkey_sign_in(next.clone());
    let general = move || match value.get() {
        Some(Err(e)) if e.fields.is_empty() => Some(view! { <ErrorFlash error=e/> }),
        _ => None,
    };
    let info = move || {
        query
            .read()
            .get("notice")
            .and_then(|n| notice(&n))
            .map(|m| view! { <Flash tone=Tone::Info>{m}</Flash> })
    };
    let code_next = next.clone();
    view! {
        <Show when=move || factors().is_some() fallback=move || view! {
        <main class="mx-auto flex min-h-screen max-w-md flex-col justify-center px-4 py-12">
            <Logo/>
            <div class=CARD>
                <h1 class="mb-6 text-xl font-semibold">"Sign in"</h1>
                <div class="mb-4 space-y-3">{info}{general}</div>
                <PostForm action=login attr:class="space-y-4" attr:novalidate=true>
                    <CsrfField/>
                    <div class="space-y-1">
                        <label for="f-email" class="block text-sm font-medium">"Email"</label>
                        <input id="f-email" name="email" type="email" autocomplete="username webauthn" required
                            class=INPUT
                            on:input=move |ev| email.set(event_target_value(&ev))
                            aria-invalid=move || field_error(value, "email").get().is_some().to_string()
                            aria-describedby="f-email-error"/>
                        <p id="f-email-error" class="text-sm text-red-600 dark:text-red-400" role="alert">
                            {move || field_error(value, "email").get()}
                        </p>
                    </div>
                    <div class="space-y-1">
                        <div class="flex items-center justify-between">
                            <label for="f-password" class="block text-sm font-medium">"Password"</label>
                            <button type="button" data-testid="toggle-password"
                                class="text-xs font-medium text-indigo-600 hover:underline"
                                aria-controls="f-password"
                                on:click=move |_| set_show.update(|s| *s = !*s)>
                                {move || if show.get() { "Hide" } else { "Show" }}
                            </button>
                        </div>
                        <input id="f-password" name="password" autocomplete="current-password" required
                            type=move || if show.get() { "text" } else { "password" }
                            class=INPUT
                            aria-invalid=move || field_error(value, "password").get().is_some().to_string()
                            aria-describedby="f-password-error"/>
                        <p id="f-password-error" class="text-sm text-red-600 dark:text-red-400" role="alert">
                            {move || field_error(value, "password").get()}
                        </p>
                    </div>
                    <button type="submit" class=format!("{BUTTON} w-full") disabled=move || login.pending().get()>
                        {move || if login.pending().get() { "Signing in…" } else { "Sign in" }}
                    </button>
                </PostForm>
                <div class="mt-4 border-t border-slate-200 pt-4 dark:border-slate-800">
                    <button type="button" class=format!("{BUTTON_SMALL} w-full") data-testid="passkey-sign-in"
                        disabled=move || passkey.pending().get()
                        on:click=move |_| { passkey.dispatch(email.get_untracked()); }>
                        {move || if passkey.pending().get() { "Waiting for your device…" } else { "Sign in with a passkey" }}
                    </button>
                    <p class="mt-2 text-center text-xs text-slate-500">"Enter your email, then use the passkey instead of the password."</p>
                    <div class="mt-2">{move || passkey.value().get().and_then(Result::err).map(|m| view! {
                        <Flash tone=Tone::Error>{m}</Flash>
                    })}</div>
                </div>
            </div>
            <p class="mt-6 text-center text-xs text-slate-500">
                "No account? Pier is invite-only: ask the person who runs it."
            </p>
        </main>
        }>
            <CodeForm next=code_next.clone() factors=factors().unwrap_or(SecondFactors {
                authenticator: true,
                passkey: false,
            })/>
        </Show>
    }
}

#[component]
fn Logo() -> impl IntoView {
    view! {
        <div class="mb-8 flex items-center justify-center gap-2 text-2xl font-bold tracking-tight">
            <span aria-hidden="true" class="inline-block h-8 w-8 rounded-lg bg-indigo-600"></span>
            "Pier"
        </div>
    }
}

/// Signs in with a passkey in the browser: for the account whose password was just given, or
/// for the e-mail typed. Goes on to `next` when it worked.
fn passkey_sign_in(next: String) -> Action<String, Result<(), String>> {
    let done: Action<String, Result<(), String>> = Action::new_local(|email: &String| {
        let email = email.clone();
        async move {
            let csrf = csrf_now();
            let options = begin_passkey_login(email, csrf.clone())
                .await
                .map_err(said)?;
            let answer = crate::webauthn::get(options).await.map_err(|e| e.0)?;
            finish_passkey_login(answer, csrf).await.map_err(said)
        }
    });
    Effect::new(move |_| {
        if let Some(Ok(())) = done.value().get() {
            hard_navigate(&next);
        }
    });
    done
}

/// The second step: the authenticator's six digits, one of the recovery codes, or a passkey.
#[component]
fn CodeForm(next: String, factors: SecondFactors) -> impl IntoView {
    let passkey = passkey_sign_in(next.clone());
    let send = FormAction::of::<LoginCode>();
    let value = send.value();
    let restart = FormAction::of::<Logout>();
    Effect::new(move |_| {
        if let Some(Ok(())) = value.get() {
            hard_navigate(&next);
        }
    });
    Effect::new(move |_| {
        if restart.value().get().is_some() {
            hard_navigate("/login");
        }
    });
    let general = move || match value.get() {
        Some(Err(e)) if e.fields.is_empty() => Some(view! { <ErrorFlash error=e/> }),
        _ => None,
    };
    view! {
        <main class="mx-auto flex min-h-screen max-w-md flex-col justify-center px-4 py-12">
            <Logo/>
            <div class=CARD>
                <h1 class="mb-2 text-xl font-semibold">"Two-factor sign-in"</h1>
                <p class="mb-6 text-sm text-slate-500">
                    {match (factors.authenticator, factors.passkey) {
                        (true, true) => "Use your passkey, or enter the six-digit code from your authenticator app. Lost both? A recovery code works here too.",
                        (true, false) => "Enter the six-digit code from your authenticator app. Lost it? A recovery code works here too.",
                        _ => "Use your passkey. Lost it? Enter a recovery code.",
                    }}
                </p>
                {factors.passkey.then(|| view! {
                    <button type="button" class=format!("{BUTTON} mb-2 w-full") data-testid="passkey-second-factor"
                        disabled=move || passkey.pending().get()
                        on:click=move |_| { passkey.dispatch(String::new()); }>
                        {move || if passkey.pending().get() { "Waiting for your device…" } else { "Use a passkey" }}
                    </button>
                    <div class="mb-4">{move || passkey.value().get().and_then(Result::err).map(|m| view! {
                        <Flash tone=Tone::Error>{m}</Flash>
                    })}</div>
                })}
                <div class="mb-4">{general}</div>
                <PostForm action=send attr:class="space-y-4" attr:novalidate=true>
                    <CsrfField/>
                    <Field label=if factors.authenticator { "Code" } else { "Recovery code" } name="code"
                        autocomplete="one-time-code" required=true
                        error=field_error(value, "code")/>
                    <button type="submit" class=format!("{BUTTON} w-full") disabled=move || send.pending().get()>
                        {move || if send.pending().get() { "Checking…" } else { "Continue" }}
                    </button>
                </PostForm>
                <PostForm action=restart attr:class="mt-4 text-center">
                    <CsrfField/>
                    <button type="submit" class="text-xs font-medium text-indigo-600 hover:underline">
                        "Start over with another account"
                    </button>
                </PostForm>
            </div>
        </main>
    }
}
