use leptos::prelude::*;
use leptos_meta::Title;

use crate::{
    api::{my_sessions, ChangePassword, EndOtherSessions, EndSession},
    components::{
        field_error, reset_on_success, CsrfField, ErrorFlash, Field, Flash, Outcome, Tone, BUTTON,
        BUTTON_SMALL, CARD,
    },
};

#[component]
pub fn AccountPage() -> impl IntoView {
    let change = ServerAction::<ChangePassword>::new();
    let end_one = ServerAction::<EndSession>::new();
    let end_others = ServerAction::<EndOtherSessions>::new();
    let sessions = Resource::new(
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
                        Some(Ok(())) => Some(view! {
                            <Flash tone=Tone::Success>"Password changed. Your other sessions were signed out."</Flash>
                        }.into_any()),
                        Some(Err(e)) if e.fields.is_empty() => Some(view! { <ErrorFlash error=e/> }.into_any()),
                        _ => None,
                    }}
                </div>
                <ActionForm action=change node_ref=change_form attr:class="space-y-4" attr:novalidate=true>
                    <CsrfField/>
                    <Field label="Current password" name="current" kind="password"
                        autocomplete="current-password" required=true error=field_error(value, "current")/>
                    <Field label="New password" name="new" kind="password" autocomplete="new-password"
                        hint="At least 12 characters." required=true error=field_error(value, "new")/>
                    <Field label="Repeat new password" name="confirm" kind="password"
                        autocomplete="new-password" required=true error=field_error(value, "confirm")/>
                    <button type="submit" class=BUTTON>"Change password"</button>
                </ActionForm>
            </section>
            <section class=CARD aria-labelledby="sessions-title">
                <div class="mb-4 flex items-center justify-between gap-2">
                    <h2 id="sessions-title" class="text-lg font-semibold">"Where you are signed in"</h2>
                    <ActionForm action=end_others>
                        <CsrfField/>
                        <button type="submit" class=BUTTON_SMALL>"Sign out everywhere else"</button>
                    </ActionForm>
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
                                            <ActionForm action=end_one>
                                                <CsrfField/>
                                                <input type="hidden" name="handle" value=s.handle.clone()/>
                                                <button type="submit" class=BUTTON_SMALL>"Sign out"</button>
                                            </ActionForm>
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
    }
}
