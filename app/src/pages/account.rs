use leptos::prelude::*;
use leptos_meta::Title;

use crate::{
    components::{
        field_error, form_outcome, reset_on_success, CsrfField, ErrorFlash, Field, Flash, Outcome,
        Tone, BUTTON, BUTTON_SMALL, CARD, INPUT,
    },
    form::{ActionOf, FormAction, PostForm},
    rpc::{
        account::{my_sessions, ChangePassword, EndOtherSessions, EndSession},
        tokens::{my_tokens, CreateToken, RevokeToken},
    },
};

#[component]
pub fn AccountPage() -> impl IntoView {
    let change = FormAction::of::<ChangePassword>();
    let end_one = FormAction::of::<EndSession>();
    let end_others = FormAction::of::<EndOtherSessions>();
    let sessions = crate::codec::resource(
        move || {
            (
                change.version().get(),
                end_one.version().get(),
                end_others.version().get(),
            )
        },
        |_| my_sessions(),
    );
    let value = change.value();
    let change_form = NodeRef::new();
    reset_on_success(value, change_form);
    let outcome = Signal::derive(move || {
        // The most recent of the two session actions.
        end_others.value().get().or_else(|| end_one.value().get())
    });
    view! {
        <Title text="Account"/>
        <h1 class="text-2xl font-bold tracking-tight">"Account"</h1>
        <div class="mt-6 grid gap-6 lg:grid-cols-2">
            <section class=CARD aria-labelledby="pw-title">
                <h2 id="pw-title" class="mb-4 text-lg font-semibold">"Change password"</h2>
                <div class="mb-4">
                    {move || match value.get() {
                        Some(Ok(message)) => Some(view! {
                            <Flash tone=Tone::Success>{message}</Flash>
                        }.into_any()),
                        Some(Err(e)) if e.fields.is_empty() => Some(view! { <ErrorFlash error=e/> }.into_any()),
                        _ => None,
                    }}
                </div>
                <PostForm action=change node_ref=change_form attr:class="space-y-4" attr:novalidate=true>
                    <CsrfField/>
                    <Field label="Current password" name="current" kind="password"
                        autocomplete="current-password" required=true error=field_error(value, "current")/>
                    <Field label="New password" name="new" kind="password" autocomplete="new-password"
                        hint="At least 12 characters." required=true error=field_error(value, "new")/>
                    <Field label="Repeat new password" name="confirm" kind="password"
                        autocomplete="new-password" required=true error=field_error(value, "confirm")/>
                    <label class="flex items-center gap-2 text-sm">
                        <input type="checkbox" name="revoke_tokens" value="on" data-testid="revoke-tokens"/>
                        "Also revoke all my API tokens (if the old password may be known to someone)"
                    </label>
                    <button type="submit" class=BUTTON>"Change password"</button>
                </PostForm>
            </section>
            <section class=CARD aria-labelledby="sessions-title">
                <div class="mb-4 flex items-center justify-between gap-2">
                    <h2 id="sessions-title" class="text-lg font-semibold">"Where you are signed in"</h2>
                    <PostForm action=end_others>
                        <CsrfField/>
                        <button type="submit" class=BUTTON_SMALL>"Sign out everywhere else"</button>
                    </PostForm>
                </div>
                <div class="mb-3"><Outcome value=outcome/></div>
                <Transition fallback=|| view! { <p class="text-sm text-slate-500">"Loading…"</p> }>
                    <ul class="divide-y divide-slate-200 dark:divide-slate-800" data-testid="sessions">
                        {move || sessions.get().map(|r| match r {
                            Ok(rows) => rows.into_iter().map(|s| view! {
                                <li class="flex items-center justify-between gap-3 py-3 text-sm">
                                    <div class="min-w-0">
                                        <p class="truncate font-medium" title=s.user_agent.clone()>{s.user_agent.clone()}</p>
                                        <p class="text-xs text-slate-500">
                                            {format!("{} · signed in {} · last seen {}", s.ip, s.created, s.last_seen)}
                                        </p>
                                    </div>
                                    {if s.current {
                                        view! { <span class="shrink-0 whitespace-nowrap rounded-full bg-emerald-100 px-2 py-0.5 text-xs font-medium text-emerald-800 dark:bg-emerald-900 dark:text-emerald-100">"This browser"</span> }.into_any()
                                    } else {
                                        view! {
                                            <PostForm action=end_one>
                                                <CsrfField/>
                                                <input type="hidden" name="handle" value=s.handle.clone()/>
                                                <button type="submit" class=BUTTON_SMALL>"Sign out"</button>
                                            </PostForm>
                                        }.into_any()
                                    }}
                                </li>
                            }).collect_view().into_any(),
                            Err(e) => view! { <ErrorFlash error=e/> }.into_any(),
                        })}
                    </ul>
                </Transition>
            </section>
        </div>
        <crate::pages::two_factor::TwoFactorSummary/>
        <crate::pages::notifications::Notifications/>
        <ApiTokens/>
        <crate::pages::audit::MyActivity/>
    }
}

/// Personal access tokens for the REST API: create (shown once), list, revoke.
#[component]
fn ApiTokens() -> impl IntoView {
    let create = FormAction::of::<CreateToken>();
    let revoke = FormAction::of::<RevokeToken>();
    let tokens = crate::codec::resource(
        move || (create.version().get(), revoke.version().get()),
        |_| my_tokens(),
    );
    let created = create.value();
    let form = NodeRef::new();
    reset_on_success(created, form);
    let create_outcome = form_outcome(created);
    let is_admin = expect_context::<crate::SessionCtx>()
        .0
        .get_untracked()
        .and_then(Result::ok)
        .and_then(|s| s.me)
        .is_some_and(|m| m.is_admin);
    view! {
        <section class=format!("{CARD} mt-6") aria-labelledby="tokens-title">
            <div class="mb-4 flex flex-wrap items-baseline justify-between gap-2">
                <h2 id="tokens-title" class="text-lg font-semibold">"API tokens"</h2>
                <a href="/api-docs" class="text-sm text-indigo-600 hover:underline">"API reference"</a>
            </div>
            <p class="mb-4 text-sm text-slate-500">
                "Scripts use these with " <code class="font-mono text-xs">"Authorization: Bearer pier_…"</code>
                ". A token is shown once, when you create it."
            </p>
            <div class="mb-4" data-testid="token-outcome"><Outcome value=create_outcome/></div>
            <PostForm action=create node_ref=form attr:class="grid gap-3 sm:grid-cols-4 sm:items-start" attr:novalidate=true>
                <CsrfField/>
                <div class="sm:col-span-2">
                    <Field label="Name" name="name" placeholder="deploy script" required=true error=field_error(created, "name")/>
                </div>
                <div class="space-y-1">
                    <label for="f-scope" class="block text-sm font-medium">"Scope"</label>
                    <select id="f-scope" name="scope" class=INPUT>
                        <option value="read">"read"</option>
                        <option value="write" selected>"write"</option>
                        {is_admin.then(|| view! { <option value="admin">"admin"</option> })}
                    </select>
                    <p class="text-sm text-red-600" role="alert">{move || field_error(created, "scope").get()}</p>
                </div>
                <Field label="Expires in days" name="expires_in_days" placeholder="never" error=field_error(created, "expires_in_days")/>
                <div class="sm:col-span-4">
                    <button type="submit" class=BUTTON>"Create token"</button>
                </div>
            </PostForm>
            <div class="mt-4"><Outcome value=revoke.value().into()/></div>
            <Transition fallback=|| view! { <p class="text-sm text-slate-500">"Loading…"</p> }>
                <ul class="mt-2 divide-y divide-slate-200 dark:divide-slate-800" data-testid="tokens">
                    {move || tokens.get().map(|r| match r {
                        Ok(rows) if rows.is_empty() => view! {
                            <li class="py-3 text-sm text-slate-500">"No tokens yet."</li>
                        }.into_any(),
                        Ok(rows) => rows.into_iter().map(|t| view! {
                            <li class="flex items-center justify-between gap-3 py-3 text-sm">
                                <div class="min-w-0">
                                    <p class="font-medium">{t.name.clone()}
                                        <span class="ml-2 rounded bg-slate-100 px-1.5 py-0.5 font-mono text-xs dark:bg-slate-800">{format!("{}…", t.prefix)}</span>
                                        <span class="ml-1 rounded-full bg-indigo-100 px-2 py-0.5 text-xs text-indigo-800 dark:bg-indigo-900 dark:text-indigo-100">{t.scope.clone()}</span>
                                    </p>
                                    <p class="text-xs text-slate-500">
                                        {format!("created {} · {} · {}", t.created,
                                            t.expires.clone().map(|e| format!("expires {e}")).unwrap_or_else(|| "never expires".into()),
                                            t.last_used.clone().map(|u| format!("last used {u}")).unwrap_or_else(|| "never used".into()))}
                                    </p>
                                </div>
                                <RevokeButton id=t.id action=revoke/>
                            </li>
                        }).collect_view().into_any(),
                        Err(e) => view! { <ErrorFlash error=e/> }.into_any(),
                    })}
                </ul>
            </Transition>
        </section>
    }
}

#[component]
fn RevokeButton(id: i64, action: ActionOf<RevokeToken>) -> impl IntoView {
    view! {
        <PostForm action=action>
            <CsrfField/>
            <input type="hidden" name="id" value=id.to_string()/>
            <button type="submit" class=BUTTON_SMALL>"Revoke"</button>
        </PostForm>
    }
}
