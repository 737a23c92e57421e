//! Account → Two-factor sign-in: set up an authenticator app (QR code or the secret typed by
//! hand, then a code from it), see and renew the recovery codes, turn it off. Where an admin
//! requires two factors, people without one are sent here and may do nothing else first.

use leptos::prelude::*;
use leptos_meta::Title;

use crate::{
    components::{
        csrf_now, field_error, form_outcome, hard_navigate, said, CsrfField, ErrorFlash, Flash,
        Outcome, Tone, BUTTON, BUTTON_DANGER, BUTTON_SMALL, CARD, INPUT,
    },
    error::AppError,
    form::{ActionOf, FormAction, PostForm},
    rpc::two_factor::{
        begin_passkey, finish_passkey, two_factor, BeginTwoFactor, ConfirmTwoFactor,
        DisableTwoFactor, NewRecoveryCodes, RemovePasskey, TwoFactorView,
    },
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

/// Adds a passkey in the browser: the server's options, the authenticator, the answer back.
/// Ok(Some(codes)) when it was the account's first second factor.
type AddPasskey = Action<String, Result<Option<Vec<String>>, String>>;

#[component]
pub fn TwoFactorPage() -> impl IntoView {
    let confirm = FormAction::of::<ConfirmTwoFactor>();
    let renew = FormAction::of::<NewRecoveryCodes>();
    let disable = FormAction::of::<DisableTwoFactor>();
    let remove = FormAction::of::<RemovePasskey>();
    let add: AddPasskey = Action::new_local(|name: &String| {
        let name = name.clone();
        async move {
            let csrf = csrf_now();
            let options = begin_passkey(name, csrf.clone()).await.map_err(said)?;
            let answer = crate::webauthn::create(options).await.map_err(|e| e.0)?;
            finish_passkey(answer, csrf).await.map_err(said)
        }
    });
    let state = crate::codec::resource(
        move || {
            (
                confirm.version().get(),
                renew.version().get(),
                disable.version().get(),
                remove.version().get(),
                add.version().get(),
            )
        },
        |_| two_factor(),
    );
    // Recovery codes from the latest action that made them, shown until the page is left.
    let codes: RwSignal<Option<Vec<String>>> = RwSignal::new(None);
    Effect::new(move |_| {
        if let Some(Ok(c)) = confirm.value().get() {
            codes.set(Some(c));
        }
    });
    Effect::new(move |_| {
        if let Some(Ok(c)) = renew.value().get() {
            codes.set(Some(c));
        }
    });
    Effect::new(move |_| {
        if let Some(Ok(Some(c))) = add.value().get() {
            codes.set(Some(c));
        }
    });
    view! {
        <Title text="Two-factor sign-in"/>
        <h1 class="text-2xl font-bold tracking-tight">"Two-factor sign-in"</h1>
        <p class="mt-1 max-w-2xl text-sm text-slate-500">
            "After your password, Pier asks for a second factor: a code from an authenticator app on \
             your phone (any app that reads a QR code: Aegis, Google Authenticator, 1Password, …), or a \
             passkey, which also signs you in without the password. API tokens are not affected."
        </p>
        <div class="mt-6 max-w-2xl space-y-6">
            {move || codes.get().map(|c| view! { <RecoveryCodes codes=c/> })}
            <Transition fallback=|| view! { <p class="text-sm text-slate-500">"Loading…"</p> }>
                {move || state.get().map(|r| match r {
                    Ok(s) => view! {
                        <StateLine state=s.clone()/>
                        {if s.authenticator {
                            view! { <AuthenticatorOn state=s.clone() disable=disable/> }.into_any()
                        } else {
                            view! { <SetUp confirm=confirm/> }.into_any()
                        }}
                        <Passkeys state=s.clone() add=add remove=remove/>
                        {s.enabled.then(|| view! { <NewCodes state=s.clone() renew=renew/> })}
                    }.into_any(),
                    Err(e) => view! { <ErrorFlash error=e/> }.into_any(),
                })}
            </Transition>
        </div>
    }
}

/// Whether two-factor sign-in is on, with what, and the recovery codes left.
#[component]
fn StateLine(state: TwoFactorView) -> impl IntoView {
    let line = if state.enabled {
        let with = match (state.authenticator, state.passkeys.len()) {
            (true, 0) => "an authenticator app".to_string(),
            (true, 1) => "an authenticator app and a passkey".to_string(),
            (true, n) => format!("an authenticator app and {n} passkeys"),
            (false, 1) => "a passkey".to_string(),
            (false, n) => format!("{n} passkeys"),
        };
        let left = match state.recovery_codes_left {
            0 => "no recovery codes left: make new ones".to_string(),
            1 => "1 recovery code left".to_string(),
            n => format!("{n} recovery codes left"),
        };
        format!("Two-factor sign-in is on, with {with}; {left}.")
    } else {
        "Two-factor sign-in is off: your password alone signs you in.".to_string()
    };
    view! {
        {(state.required && !state.enabled).then(|| view! {
            <Flash tone=Tone::Info>
                "This Pier requires two-factor sign-in for everyone. Add an authenticator app or a passkey to continue."
            </Flash>
        })}
        <p class="text-sm font-medium" data-testid="two-factor-state">{line}</p>
    }
}

/// Every passkey, removable, and a way to add one.
#[component]
fn Passkeys(
    state: TwoFactorView,
    add: AddPasskey,
    remove: ActionOf<RemovePasskey>,
) -> impl IntoView {
    let name = RwSignal::new(String::new());
    let removed = form_outcome(remove.value());
    let supported = RwSignal::new(true);
    Effect::new(move |_| supported.set(crate::webauthn::supported()));
    view! {
        <section class=CARD aria-labelledby="passkeys-title">
            <h2 id="passkeys-title" class="text-lg font-semibold">"Passkeys"</h2>
            <p class="mt-1 text-sm text-slate-500">
                "A passkey lives in your phone, computer or security key and is unlocked with its PIN, \
                 fingerprint or face. Add one per device."
            </p>
            <div class="mt-3"><Outcome value=removed/></div>
            <ul class="mt-2 divide-y divide-slate-200 dark:divide-slate-800" data-testid="passkeys">
                {state.passkeys.into_iter().map(|p| view! {
                    <li class="flex items-center justify-between gap-3 py-3 text-sm" data-passkey=p.name.clone()>
                        <div class="min-w-0">
                            <p class="truncate font-medium">{p.name.clone()}</p>
                            <p class="text-xs text-slate-500">
                                {format!("Added {} · {}", p.created,
                                    p.last_used.map(|t| format!("last used {t}")).unwrap_or_else(|| "not used yet".into()))}
                            </p>
                        </div>
                        <PostForm action=remove>
                            <CsrfField/>
                            <input type="hidden" name="id" value=p.id.to_string()/>
                            <button type="submit" class=BUTTON_SMALL>"Remove"</button>
                        </PostForm>
                    </li>
                }).collect_view()}
            </ul>
            <form class="mt-4 flex flex-wrap items-end gap-2"
                on:submit=move |ev| {
                    ev.prevent_default();
                    add.dispatch(name.get_untracked());
                }>
                <div class="space-y-1">
                    <label for="f-passkey-name" class="block text-sm font-medium">"Name"</label>
                    <input id="f-passkey-name" name="name" placeholder="Laptop" maxlength="64"
                        class=format!("{INPUT} max-w-xs")
                        prop:value=move || name.get()
                        on:input=move |ev| name.set(event_target_value(&ev))/>
                </div>
                <button type="submit" class=BUTTON_SMALL data-testid="add-passkey"
                    disabled=move || add.pending().get() || !supported.get()>
                    {move || if add.pending().get() { "Waiting for your device…" } else { "Add a passkey" }}
                </button>
            </form>
            {move || (!supported.get()).then(|| view! {
                <p class="mt-2 text-sm text-slate-500">"This browser cannot use passkeys."</p>
            })}
            <div class="mt-3" data-testid="passkey-outcome">
                {move || add.value().get().map(|r| match r {
                    Ok(_) => view! { <Flash tone=Tone::Success>"The passkey is added."</Flash> }.into_any(),
                    Err(m) => view! { <Flash tone=Tone::Error>{m}</Flash> }.into_any(),
                })}
            </div>
        </section>
    }
}

/// Ten new recovery codes in place of the old ones.
#[component]
fn NewCodes(state: TwoFactorView, renew: ActionOf<NewRecoveryCodes>) -> impl IntoView {
    let renewed = renew.value();
    view! {
        <section class=CARD aria-labelledby="renew-title">
            <h2 id="renew-title" class="text-lg font-semibold">"New recovery codes"</h2>
            <p class="mt-1 text-sm text-slate-500">"Ten new codes; the old ones stop working."</p>
            <PostForm action=renew attr:class="mt-4 space-y-3" attr:novalidate=true>
                <CsrfField/>
                {if state.authenticator {
                    view! { <CodeField id="f-renew-code" error=field_error(renewed, "code")/> }.into_any()
                } else {
                    view! { <input type="hidden" name="code" value=""/> }.into_any()
                }}
                <div>{general_error(renewed)}</div>
                <button type="submit" class=BUTTON_SMALL>"Make new recovery codes"</button>
            </PostForm>
        </section>
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
fn SetUp(confirm: ActionOf<ConfirmTwoFactor>) -> impl IntoView {
    let begin = FormAction::of::<BeginTwoFactor>();
    let setup = begin.value();
    let value = confirm.value();
    view! {
        <section class=CARD aria-labelledby="setup-title">
            <h2 id="setup-title" class="text-lg font-semibold">"Authenticator app"</h2>
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
                            <PostForm action=confirm attr:class="mt-2 space-y-3" attr:novalidate=true>
                                <CsrfField/>
                                <CodeField id="f-confirm-code" error=field_error(value, "code")/>
                                <div>{general_error(value)}</div>
                                <button type="submit" class=BUTTON disabled=move || confirm.pending().get()>
                                    "Turn on two-factor sign-in"
                                </button>
                            </PostForm>
                        </li>
                    </ol>
                }.into_any(),
                _ => view! {
                    <PostForm action=begin attr:class="mt-2">
                        <CsrfField/>
                        <button type="submit" class=BUTTON data-testid="begin-two-factor">
                            "Set up an authenticator app"
                        </button>
                    </PostForm>
                }.into_any(),
            }}
        </section>
    }
}

#[component]
fn AuthenticatorOn(state: TwoFactorView, disable: ActionOf<DisableTwoFactor>) -> impl IntoView {
    let disabled = form_outcome(disable.value());
    let last_factor = state.passkeys.is_empty();
    view! {
        <section class=CARD aria-labelledby="on-title">
            <h2 id="on-title" class="text-lg font-semibold">"Authenticator app"</h2>
            <p class="mt-1 text-sm text-slate-500">
                {format!("Set up {}.", state.since.clone().unwrap_or_default())}
            </p>
            {if state.required && last_factor {
                view! {
                    <p class="mt-3 text-sm text-slate-500">
                        "This Pier requires two-factor sign-in and this is your only second factor, so it \
                         stays. If you lose it, sign in with a recovery code and ask an admin to reset it."
                    </p>
                }.into_any()
            } else {
                view! {
                    <div class="mt-3"><Outcome value=disabled/></div>
                    <PostForm action=disable attr:class="mt-3 space-y-3" attr:novalidate=true>
                        <CsrfField/>
                        <CodeField id="f-off-code" label="Code from your authenticator app, or a recovery code"
                            error=field_error(disable.value(), "code")/>
                        <button type="submit" class=BUTTON_DANGER>"Remove the authenticator app"</button>
                    </PostForm>
                }.into_any()
            }}
        </section>
    }
}

/// The account page's line about two-factor sign-in, with the way to the page above.
#[component]
pub fn TwoFactorSummary() -> impl IntoView {
    let state = crate::codec::resource(|| (), |_| two_factor());
    view! {
        <section class=format!("{CARD} mt-6") aria-labelledby="tf-title">
            <div class="flex flex-wrap items-center justify-between gap-3">
                <div>
                    <h2 id="tf-title" class="text-lg font-semibold">"Two-factor sign-in"</h2>
                    <Transition fallback=|| view! { <p class="text-sm text-slate-500">"Loading…"</p> }>
                        <p class="text-sm text-slate-500" data-testid="two-factor-summary">
                            {move || state.get().map(|r| match r {
                                Ok(s) if s.enabled => format!(
                                    "On: {}{}{}, {} recovery code{} left.",
                                    if s.authenticator { "an authenticator app" } else { "" },
                                    if s.authenticator && !s.passkeys.is_empty() { " and " } else { "" },
                                    match s.passkeys.len() {
                                        0 => String::new(),
                                        1 => "a passkey".into(),
                                        n => format!("{n} passkeys"),
                                    },
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
