//! Account → Two-factor sign-in: set up an authenticator app (QR code or the secret typed by
//! hand, then a code from it), see and renew the recovery codes, turn it off. Where an admin
//! requires two factors, people without one are sent here and may do nothing else first.

use leptos::prelude::*;
use leptos_meta::Title;

use crate::{
    api_two_factor::{
        two_factor, BeginTwoFactor, ConfirmTwoFactor, DisableTwoFactor, NewRecoveryCodes,
        TwoFactorView,
    },
    components::{
        field_error, form_outcome, hard_navigate, CsrfField, ErrorFlash, Flash, Outcome, Tone,
        BUTTON, BUTTON_DANGER, BUTTON_SMALL, CARD, INPUT,
    },
    error::AppError,
};

/// A one-time code input: digits on phones, the browser's one-time-code autofill.
#[component]
fn CodeField(
    id: &'static str,
    #[prop(default = "Code from your authenticator app")] label: &'static str,
    #[prop(optional)] hint: &'static str,
    #[prop(into)] error: Signal<Option<String>>,
) -> impl IntoView {
    let err_id = format!("{id}-error");
    let described = err_id.clone();
    view! {
        <div class="space-y-1">
            <label for=id class="block text-sm font-medium">{label}</label>
            <input id=id name="code" type="text" inputmode="numeric" autocomplete="one-time-code"
                required spellcheck="false" class=format!("{INPUT} max-w-xs font-mono tracking-widest")
                aria-invalid=move || error.get().is_some().to_string()
                aria-describedby=described/>
            {(!hint.is_empty()).then(|| view! { <p class="text-xs text-slate-500">{hint}</p> })}
            <p id=err_id class="text-sm text-red-600 dark:text-red-400" role="alert">
                {move || error.get()}
            </p>
        </div>
    }
}

/// The general error of an action whose field errors show beside their fields.
fn general_error<T, S>(value: S) -> impl Fn() -> Option<AnyView>
where
    T: Send + Sync + 'static,
    S: With<Value = Option<Result<T, AppError>>> + Send + Sync + 'static,
{
    move || {
        let e = value.with(|v| match v {
            Some(Err(e)) if e.fields.is_empty() => Some(e.clone()),
            _ => None,
        });
        e.map(|e| view! { <ErrorFlash error=e/> }.into_any())
    }
}

#[component]
pub fn TwoFactorPage() -> impl IntoView {
    let confirm = ServerAction::<ConfirmTwoFactor>::new();
    let renew = ServerAction::<NewRecoveryCodes>::new();
    let disable = ServerAction::<DisableTwoFactor>::new();
    let state = Resource::new(
        move || {
            (
                confirm.version().get(),
                renew.version().get(),
                disable.version().get(),
            )
        },
        |_| two_factor(),
    );
    // Recovery codes from turning it on or renewing them, shown until the page is left.
    let codes = Signal::derive(move || {
        renew
            .value()
            .get()
            .and_then(Result::ok)
            .or_else(|| confirm.value().get().and_then(Result::ok))
    });
    view! {
        <Title text="Two-factor sign-in"/>
        <h1 class="text-2xl font-bold tracking-tight">"Two-factor sign-in"</h1>
        <p class="mt-1 max-w-2xl text-sm text-slate-500">
            "After your password, Pier asks for a code from an authenticator app on your phone \
             (any app that reads a QR code: Aegis, Google Authenticator, 1Password, …). \
             API tokens are not affected."
        </p>
        <div class="mt-6 max-w-2xl space-y-6">
            {move || codes.get().map(|c| view! { <RecoveryCodes codes=c/> })}
            <Transition fallback=|| view! { <p class="text-sm text-slate-500">"Loading…"</p> }>
                {move || state.get().map(|r| match r {
                    Ok(s) if s.enabled => view! { <Enabled state=s renew=renew disable=disable/> }.into_any(),
                    Ok(s) => view! { <SetUp state=s confirm=confirm/> }.into_any(),
                    Err(e) => view! { <ErrorFlash error=e/> }.into_any(),
                })}
            </Transition>
        </div>
    }
}

/// The codes, shown once, with what to do with them.
#[component]
fn RecoveryCodes(codes: Vec<String>) -> impl IntoView {
    let all = codes.join("\n");
    view! {
        <section class=CARD aria-labelledby="codes-title">
            <h2 id="codes-title" class="text-lg font-semibold">"Your recovery codes"</h2>
            <p class="mt-1 text-sm text-slate-600 dark:text-slate-300">
                "Keep these somewhere safe, away from your phone: each signs you in once in place of a code \
                 if you lose your authenticator. They are shown only now."
            </p>
            <ol class="mt-4 grid grid-cols-2 gap-x-6 gap-y-1 font-mono text-sm" data-testid="recovery-codes">
                {codes.into_iter().map(|c| view! { <li>{c}</li> }).collect_view()}
            </ol>
            <textarea readonly rows="2" aria-label="All recovery codes, to copy"
                class=format!("{INPUT} mt-4 font-mono text-xs")>{all}</textarea>
            <div class="mt-4">
                <button type="button" class=BUTTON data-testid="codes-saved"
                    on:click=move |_| hard_navigate("/account")>
                    "I have saved them"
                </button>
            </div>
        </section>
    }
}

#[component]
fn SetUp(state: TwoFactorView, confirm: ServerAction<ConfirmTwoFactor>) -> impl IntoView {
    let begin = ServerAction::<BeginTwoFactor>::new();
    let setup = begin.value();
    let value = confirm.value();
    view! {
        {state.required.then(|| view! {
            <Flash tone=Tone::Info>
                "This Pier requires two-factor sign-in for everyone. Set it up to continue."
            </Flash>
        })}
        <section class=CARD aria-labelledby="setup-title">
            <h2 id="setup-title" class="text-lg font-semibold">"Set up an authenticator app"</h2>
            <p class="mt-1 text-sm text-slate-500" data-testid="two-factor-state">"Two-factor sign-in is off."</p>
            <div class="mt-4">{general_error(setup)}</div>
            {move || match setup.get() {
                Some(Ok(s)) => view! {
                    <ol class="mt-2 list-decimal space-y-4 pl-5 text-sm">
                        <li>
                            "Scan this code with your authenticator app."
                            // Drawn by Pier from its own otpauth URI: nothing a person typed.
                            <div class="mt-2 w-52 rounded-lg bg-white p-1" inner_html=s.qr_svg.clone()
                                role="img" aria-label="QR code for your authenticator app"></div>
                            <p class="mt-2 text-slate-500">"Or type this key into the app (time-based, 6 digits, 30 seconds):"</p>
                            <p class="mt-1 select-all font-mono text-base" data-testid="totp-secret">{s.secret.clone()}</p>
                        </li>
                        <li>
                            "Enter the code the app shows."
                            <ActionForm action=confirm attr:class="mt-2 space-y-3" attr:novalidate=true>
                                <CsrfField/>
                                <CodeField id="f-confirm-code" error=field_error(value, "code")/>
                                <div>{general_error(value)}</div>
                                <button type="submit" class=BUTTON disabled=move || confirm.pending().get()>
                                    "Turn on two-factor sign-in"
                                </button>
                            </ActionForm>
                        </li>
                    </ol>
                }.into_any(),
                _ => view! {
                    <ActionForm action=begin attr:class="mt-2">
                        <CsrfField/>
                        <button type="submit" class=BUTTON data-testid="begin-two-factor">
                            "Set up an authenticator app"
                        </button>
                    </ActionForm>
                }.into_any(),
            }}
        </section>
    }
}

#[component]
fn Enabled(
    state: TwoFactorView,
    renew: ServerAction<NewRecoveryCodes>,
    disable: ServerAction<DisableTwoFactor>,
) -> impl IntoView {
    let renewed = renew.value();
    let disabled = form_outcome(disable.value());
    let left = state.recovery_codes_left;
    let left_text = match left {
        0 => "You have no recovery codes left: make new ones.".to_string(),
        1 => "1 recovery code left.".to_string(),
        n => format!("{n} recovery codes left."),
    };
    view! {
        <section class=CARD aria-labelledby="on-title">
            <h2 id="on-title" class="text-lg font-semibold">"Two-factor sign-in is on"</h2>
            <p class="mt-1 text-sm text-slate-500" data-testid="two-factor-state">
                {format!("On since {}. ", state.since.clone().unwrap_or_default())}{left_text}
            </p>
        </section>
        <section class=CARD aria-labelledby="renew-title">
            <h2 id="renew-title" class="text-lg font-semibold">"New recovery codes"</h2>
            <p class="mt-1 text-sm text-slate-500">"Ten new codes; the old ones stop working."</p>
            <ActionForm action=renew attr:class="mt-4 space-y-3" attr:novalidate=true>
                <CsrfField/>
                <CodeField id="f-renew-code" error=field_error(renewed, "code")/>
                <div>{general_error(renewed)}</div>
                <button type="submit" class=BUTTON_SMALL>"Make new recovery codes"</button>
            </ActionForm>
        </section>
        <section class=CARD aria-labelledby="off-title">
            <h2 id="off-title" class="text-lg font-semibold">"Turn off"</h2>
            {if state.required {
                view! {
                    <p class="mt-1 text-sm text-slate-500">
                        "This Pier requires two-factor sign-in, so it stays on. If you lose your \
                         authenticator, sign in with a recovery code and ask an admin to reset it."
                    </p>
                }.into_any()
            } else {
                view! {
                    <p class="mt-1 text-sm text-slate-500">"Your password alone will sign you in."</p>
                    <div class="mt-3"><Outcome value=disabled/></div>
                    <ActionForm action=disable attr:class="mt-4 space-y-3" attr:novalidate=true>
                        <CsrfField/>
                        <CodeField id="f-off-code" label="Code from your authenticator app, or a recovery code"
                            error=field_error(disable.value(), "code")/>
                        <button type="submit" class=BUTTON_DANGER>"Turn off two-factor sign-in"</button>
                    </ActionForm>
                }.into_any()
            }}
        </section>
    }
}

/// The account page's line about two-factor sign-in, with the way to the page above.
#[component]
pub fn TwoFactorSummary() -> impl IntoView {
    let state = Resource::new(|| (), |_| two_factor());
    view! {
        <section class=format!("{CARD} mt-6") aria-labelledby="tf-title">
            <div class="flex flex-wrap items-center justify-between gap-3">
                <div>
                    <h2 id="tf-title" class="text-lg font-semibold">"Two-factor sign-in"</h2>
                    <Transition fallback=|| view! { <p class="text-sm text-slate-500">"Loading…"</p> }>
                        <p class="text-sm text-slate-500" data-testid="two-factor-summary">
                            {move || state.get().map(|r| match r {
                                Ok(s) if s.enabled => format!(
                                    "On: an authenticator app, {} recovery code{} left.",
                                    s.recovery_codes_left,
                                    if s.recovery_codes_left == 1 { "" } else { "s" }
                                ),
                                Ok(_) => "Off: your password alone signs you in.".to_string(),
                                Err(e) => e.message,
                            })}
                        </p>
                    </Transition>
                </div>
                <a href=crate::pages::TWO_FACTOR_PAGE class=BUTTON_SMALL>"Manage"</a>
            </div>
        </section>
    }
}
