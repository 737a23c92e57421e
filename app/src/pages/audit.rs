//! The audit log: everyone's entries with filters for admins (`/admin/audit`), and the table
//! the account page shows a person their own with.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::{
    components::{Form, A},
    hooks::use_query_map,
};

use crate::{
    components::{encode_component, field_error, ErrorFlash, Outcome, BUTTON_SMALL, CARD, INPUT},
    form::{FormAction, PostForm},
    pages::AdminOnly,
    rpc::audit::{audit_choices, audit_log, AuditView, SetAuditRetention},
};

/// The filters the admin page reads from its address, in the order the server function takes.
const FILTERS: [&str; 6] = ["person", "action", "object", "name", "since", "until"];

#[component]
pub fn AuditPage() -> impl IntoView {
    view! {
        <Title text="Audit log"/>
        <AdminOnly>
            <AuditAdmin/>
        </AdminOnly>
    }
}

#[component]
fn AuditAdmin() -> impl IntoView {
    let query = use_query_map();
    let get = move |k: &str| query.with(|m| m.get(k).unwrap_or_default());
    let retention = FormAction::of::<SetAuditRetention>();
    let choices = crate::codec::resource(move || retention.version().get(), |_| audit_choices());
    let entries = crate::codec::resource(
        move || (FILTERS.map(get), get("before")),
        |([person, action, object, name, since, until], before)| {
            audit_log(
                false,
                person,
                action,
                object,
                name,
                since,
                until,
                before.parse().ok(),
            )
        },
    );
    // The address of the next, older page: the same filters, from `before`.
    let older = move |before: i64| {
        let mut parts: Vec<String> = FILTERS
            .iter()
            .map(|k| (k, get(k)))
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| format!("{k}={}", encode_component(&v)))
            .collect();
        parts.push(format!("before={before}"));
        format!("/admin/audit?{}", parts.join("&"))
    };
    let value = retention.value();
    view! {
        <h1 class="text-2xl font-bold tracking-tight">"Audit log"</h1>
        <p class="mt-1 text-sm text-slate-500">"Every change asked of Pier (in the browser, through the API or on the command line): who, from where, what, and how it ended. Nothing in Pier edits or deletes an entry; they go when they are older than the retention below."</p>
        <Transition fallback=|| ()>
            {move || choices.get().map(|c| match c {
                Err(e) => view! { <ErrorFlash error=e/> }.into_any(),
                Ok(c) => view! {
                    {(!c.enabled).then(|| view! {
                        <p class="mt-4 rounded-lg border border-amber-300 bg-amber-50 px-4 py-3 text-sm text-amber-900 dark:border-amber-800 dark:bg-amber-950 dark:text-amber-100" data-testid="audit-off">
                            "The operator started Pier with --no-audit-log: changes are not being recorded."
                        </p>
                    })}
                    <section class=format!("{CARD} mt-6")>
                        <Form method="GET" action="/admin/audit" attr:class="grid gap-3 sm:grid-cols-3 lg:grid-cols-6" attr:data-testid="audit-filters">
                            <label class="text-sm">"Person"
                                <select name="person" class=INPUT>
                                    <option value="">"Everyone"</option>
                                    {c.people.iter().map(|(id, email)| {
                                        let id = id.to_string();
                                        let selected = get("person") == id;
                                        view! { <option value=id selected=selected>{email.clone()}</option> }
                                    }).collect_view()}
                                </select>
                            </label>
                            <label class="text-sm">"Action"
                                <select name="action" class=INPUT>
                                    <option value="">"Any"</option>
                                    {c.objects.iter().map(|k| {
                                        let v = format!("{k}.");
                                        let selected = get("action") == v;
                                        view! { <option value=v.clone() selected=selected>{format!("any {k} action")}</option> }
                                    }).collect_view()}
                                    {c.actions.iter().map(|a| {
                                        let selected = get("action") == *a;
                                        view! { <option value=a.clone() selected=selected>{a.clone()}</option> }
                                    }).collect_view()}
                                </select>
                            </label>
                            <label class="text-sm">"Object"
                                <select name="object" class=INPUT>
                                    <option value="">"Any"</option>
                                    {c.objects.iter().map(|k| {
                                        let selected = get("object") == *k;
                                        view! { <option value=k.clone() selected=selected>{k.clone()}</option> }
                                    }).collect_view()}
                                </select>
                            </label>
                            <label class="text-sm">"Name"
                                <input name="name" class=INPUT value=get("name") placeholder="app, domain, e-mail…"/>
                            </label>
                            <label class="text-sm">"From"
                                <input name="since" type="date" class=INPUT value=get("since")/>
                            </label>
                            <label class="text-sm">"To"
                                <input name="until" type="date" class=INPUT value=get("until")/>
                            </label>
                            <div class="flex gap-2 sm:col-span-3 lg:col-span-6">
                                <button type="submit" class=BUTTON_SMALL>"Filter"</button>
                                <A href="/admin/audit" attr:class="text-sm text-indigo-600 underline self-center">"Clear"</A>
                            </div>
                        </Form>
                    </section>
                    <section class=format!("{CARD} mt-6")>
                        <h2 class="text-lg font-semibold">"Retention"</h2>
                        <div class="mt-2"><Outcome value=value.into()/></div>
                        <PostForm action=retention attr:class="mt-2 flex flex-wrap items-end gap-3">
                            <crate::components::CsrfField/>
                            <label class="text-sm">"Keep entries for (days)"
                                <input name="days" type="number" min="7" max="3650" class=INPUT
                                    value=c.retention_days.to_string() data-testid="retention-days"/>
                            </label>
                            <button type="submit" class=BUTTON_SMALL>"Save"</button>
                        </PostForm>
                        {move || field_error(value, "days").get().map(|e| view! { <p class="mt-1 text-sm text-red-600">{e}</p> })}
                    </section>
                }.into_any(),
            })}
        </Transition>
        <section class=format!("{CARD} mt-6")>
            <Transition fallback=|| view! { <p class="text-sm text-slate-500">"Loading…"</p> }>
                {move || entries.get().map(|r| match r {
                    Err(e) => view! { <ErrorFlash error=e/> }.into_any(),
                    Ok(v) => {
                        let next = v.next_before.map(older);
                        view! {
                            <AuditTable view=v/>
                            {next.map(|href| view! {
                                <A href=href attr:class="mt-4 inline-block text-sm text-indigo-600 underline">"Older entries"</A>
                            })}
                        }.into_any()
                    }
                })}
            </Transition>
        </section>
    }
}

/// The caller's own entries, newest first, for the account page.
#[component]
pub fn MyActivity() -> impl IntoView {
    // The pages seen so far: `before` of each (None for the first).
    let before = RwSignal::new(None::<i64>);
    let entries = crate::codec::resource(
        move || before.get(),
        |b| {
            audit_log(
                true,
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                b,
            )
        },
    );
    view! {
        <section class=format!("{CARD} mt-6") aria-labelledby="activity-title">
            <div class="flex items-center justify-between gap-2">
                <h2 id="activity-title" class="text-lg font-semibold">"Activity"</h2>
                <button type="button" class=BUTTON_SMALL data-testid="activity-refresh"
                    on:click=move |_| entries.refetch()>"Refresh"</button>
            </div>
            <p class="mt-1 mb-4 text-sm text-slate-500">"What you changed, what others changed of yours, and every sign-in to your account, whether it worked or not."</p>
            <Transition fallback=|| view! { <p class="text-sm text-slate-500">"Loading…"</p> }>
                {move || entries.get().map(|r| match r {
                    Err(e) => view! { <ErrorFlash error=e/> }.into_any(),
                    Ok(v) => {
                        let next = v.next_before;
                        view! {
                            <AuditTable view=v/>
                            <div class="mt-4 flex gap-3 text-sm">
                                {move || before.get().is_some().then(|| view! {
                                    <button type="button" class=BUTTON_SMALL on:click=move |_| before.set(None)>"Newest"</button>
                                })}
                                {next.map(|n| view! {
                                    <button type="button" class=BUTTON_SMALL on:click=move |_| before.set(Some(n))>"Older"</button>
                                })}
                            </div>
                        }.into_any()
                    }
                })}
            </Transition>
        </section>
    }
}

#[component]
fn AuditTable(view: AuditView) -> impl IntoView {
    if view.rows.is_empty() {
        return view! { <p class="text-sm text-slate-500" data-testid="audit-empty">"No entries."</p> }
            .into_any();
    }
    view! {
        <div class="overflow-x-auto">
            <table class="w-full text-left text-sm" data-testid="audit-entries">
                <thead class="text-xs uppercase text-slate-500">
                    <tr>
                        <th class="py-2 pr-3">"When"</th>
                        <th class="py-2 pr-3">"Who"</th>
                        <th class="py-2 pr-3">"What"</th>
                        <th class="py-2 pr-3">"Outcome"</th>
                    </tr>
                </thead>
                <tbody class="divide-y divide-slate-200 dark:divide-slate-800">
                    {view.rows.into_iter().map(|r| {
                        let badge = if r.ok {
                            "rounded-full bg-emerald-100 px-2 py-0.5 text-xs font-medium text-emerald-800 dark:bg-emerald-900 dark:text-emerald-100"
                        } else {
                            "rounded-full bg-red-100 px-2 py-0.5 text-xs font-medium text-red-800 dark:bg-red-900 dark:text-red-100"
                        };
                        let action = r.action.clone();
                        view! {
                            <tr data-testid="audit-entry" data-action=action>
                                <td class="whitespace-nowrap py-2 pr-3 align-top text-slate-500">{r.at}</td>
                                <td class="py-2 pr-3 align-top">
                                    <p>{r.actor}</p>
                                    <p class="text-xs text-slate-500">{format!("{} · {}", r.via, if r.address.is_empty() { "—".to_owned() } else { r.address })}</p>
                                </td>
                                <td class="py-2 pr-3 align-top">
                                    <p><span class="font-mono text-xs">{r.action}</span>" "<span class="font-medium">{r.object}</span></p>
                                    <p class="text-xs text-slate-500 break-words">{r.summary}</p>
                                </td>
                                <td class="py-2 pr-3 align-top"><span class=badge title=r.outcome.clone()>{if r.ok { "ok".to_owned() } else { r.outcome.clone() }}</span></td>
                            </tr>
                        }
                    }).collect_view()}
                </tbody>
            </table>
        </div>
    }
    .into_any()
}
