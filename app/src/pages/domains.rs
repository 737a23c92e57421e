//! Domains: register a name, attach it to an app, move or detach it, delete it.

use leptos::prelude::*;
use leptos_meta::Title;

use crate::{
    components::{
        field_error, reset_on_success, CsrfField, ErrorFlash, Field, Outcome, BUTTON,
        BUTTON_DANGER, BUTTON_SMALL, CARD, INPUT,
    },
    form::{FormAction, PostForm},
    rpc::domains::*,
};

/// `<select name="app">` with "not attached" and the caller's apps; `current` selected.
fn app_select(apps: &[String], current: Option<&str>, label: &'static str) -> impl IntoView {
    let options = apps
        .iter()
        .map(|a| {
            let selected = current == Some(a.as_str());
            view! { <option value=a.clone() selected=selected>{a.clone()}</option> }
        })
        .collect_view();
    view! {
        <select name="app" aria-label=label class=INPUT data-testid="domain-app">
            <option value="" selected=current.is_none()>"— not attached —"</option>
            {options}
        </select>
    }
}

#[component]
pub fn DomainsPage() -> impl IntoView {
    let add = FormAction::of::<AddDomain>();
    let attach = FormAction::of::<AttachDomain>();
    let remove = FormAction::of::<RemoveDomain>();
    let dns = FormAction::of::<CheckDns>();
    let retry = FormAction::of::<RetryCertificate>();
    let verify = FormAction::of::<VerifyDomain>();
    let data = crate::codec::resource(
        move || {
            (
                verify.version().get(),
                add.version().get(),
                attach.version().get(),
                remove.version().get(),
                retry.version().get(),
            )
        },
        |_| my_domains(),
    );
    let value = add.value();
    let form = NodeRef::new();
    reset_on_success(value, form);
    let outcome = Signal::derive(move || match value.get() {
        Some(Err(e)) if !e.fields.is_empty() => None,
        other => other,
    });
    view! {
        <Title text="Domains"/>
        <h1 class="text-2xl font-bold tracking-tight">"Domains"</h1>
        <p class="mt-1 text-sm text-slate-500">
            "Point a domain's DNS (an A or AAAA record) at this server, add it here and attach it to an app: HTTPS requests for it reach the app. A domain belongs to one person on this Pier."
        </p>
        <section class=format!("{CARD} mt-6")>
            <div class="mb-4"><Outcome value=outcome/></div>
            <Transition fallback=|| ()>
                {move || data.get().map(|d| match d {
                    Ok(d) => view! {
                        {d.proof_token.clone().map(|t| view! {
                            <p class="mb-4 text-sm text-slate-600 dark:text-slate-400" data-testid="proof-token">
                                "Before a domain serves an app, prove it is yours: add a TXT record "
                                <code class="font-mono">"_pier-challenge.<your domain>"</code>
                                " with the value "
                                <code class="select-all font-mono">{t}</code>
                                " at your DNS provider (for *.example.com, at _pier-challenge.example.com)."
                            </p>
                        })}
                        <PostForm action=add node_ref=form attr:class="grid gap-3 sm:grid-cols-3 sm:items-end" attr:novalidate=true>
                            <CsrfField/>
                            <Field label="Domain" name="domain" placeholder="blog.example.com" required=true autocomplete="off" error=field_error(value, "domain")/>
                            <label class="block text-sm">
                                <span class="font-medium">"Serves app"</span>
                                <div class="mt-1">{app_select(&d.apps, None, "Serves app")}</div>
                                {move || field_error(value, "app").get().map(|e| view! { <p class="mt-1 text-sm text-red-600">{e}</p> })}
                            </label>
                            <div><button type="submit" class=BUTTON data-testid="add-domain">"Add domain"</button></div>
                        </PostForm>
                    }.into_any(),
                    Err(e) => view! { <ErrorFlash error=e/> }.into_any(),
                })}
            </Transition>
        </section>
        <section class=format!("{CARD} mt-6")>
            <h2 class="text-lg font-semibold">"Your domains"</h2>
            <div class="mt-2"><Outcome value=attach.value().into()/></div>
            <div class="mt-2"><Outcome value=remove.value().into()/></div>
            <div class="mt-2" data-testid="dns-outcome"><Outcome value=dns.value().into()/></div>
            <div class="mt-2"><Outcome value=retry.value().into()/></div>
            <div class="mt-2" data-testid="verify-outcome"><Outcome value=verify.value().into()/></div>
            <Transition fallback=|| ()>
                <ul class="mt-2 divide-y divide-slate-200 dark:divide-slate-800" data-testid="domains">
                    {move || data.get().map(|d| match d {
                        Ok(d) if d.domains.is_empty() => view! { <li class="py-3 text-sm text-slate-500">"No domains yet."</li> }.into_any(),
                        Ok(d) => d.domains.into_iter().map(|row| {
                            let apps = d.apps.clone();
                            let name = row.name.clone();
                            let (n1, n2, n3, n4, n5) = (name.clone(), name.clone(), name.clone(), name.clone(), name.clone());
                            let link = (!name.starts_with("*.")).then(|| format!("https://{name}/"));
                            let state = if row.serving { "serving" } else if row.app.is_some() { "waiting for the app to run" } else { "not attached" };
                            let cert = row.certificate_note.clone();
                            let can_retry = matches!(row.certificate.as_str(), "failed" | "renewing" | "pending");
                            let n6 = name.clone();
                            let n7 = name.clone();
                            let proof = row.proof.clone();
                            view! {
                                <li class="flex flex-wrap items-center justify-between gap-3 py-3 text-sm" data-testid="domain-row" data-domain=n1>
                                    <div class="min-w-0">
                                        {match link {
                                            Some(href) => view! { <a href=href class="font-mono text-indigo-700 hover:underline dark:text-indigo-400" target="_blank" rel="noopener">{n2}</a> }.into_any(),
                                            None => view! { <span class="font-mono">{n2}</span> }.into_any(),
                                        }}
                                        <p class="text-xs text-slate-500" data-testid="domain-state">{format!("{state} · {cert} · added {}", row.added)}</p>
                                        {proof.clone().map(|(record, value)| view! {
                                            <p class="text-xs text-amber-700 dark:text-amber-400" data-testid="domain-proof">
                                                "Not proven yet: add the TXT record "
                                                <code class="font-mono">{record}</code>" = "
                                                <code class="select-all font-mono">{value}</code>
                                                ", then press Verify."
                                            </p>
                                        })}
                                    </div>
                                    <div class="flex items-center gap-2">
                                        {proof.is_some().then(|| view! {
                                            <PostForm action=verify>
                                                <CsrfField/>
                                                <input type="hidden" name="domain" value=n7.clone()/>
                                                <button type="submit" class=BUTTON_SMALL data-testid="verify-domain">"Verify"</button>
                                            </PostForm>
                                        })}
                                        {can_retry.then(|| view! {
                                            <PostForm action=retry>
                                                <CsrfField/>
                                                <input type="hidden" name="domain" value=n6.clone()/>
                                                <button type="submit" class=BUTTON_SMALL data-testid="retry-certificate">"Retry certificate"</button>
                                            </PostForm>
                                        })}
                                        <PostForm action=dns>
                                            <CsrfField/>
                                            <input type="hidden" name="domain" value=n5/>
                                            <button type="submit" class=BUTTON_SMALL data-testid="check-dns">"Check DNS"</button>
                                        </PostForm>
                                        <PostForm action=attach attr:class="flex items-center gap-2">
                                            <CsrfField/>
                                            <input type="hidden" name="domain" value=n3/>
                                            {app_select(&apps, row.app.as_deref(), "Attached to")}
                                            <button type="submit" class=BUTTON_SMALL data-testid="attach-domain">"Save"</button>
                                        </PostForm>
                                        <details class="relative">
                                            <summary class=format!("{BUTTON_SMALL} cursor-pointer list-none")>"Delete"</summary>
                                            <div class="absolute right-0 z-10 mt-2 w-64 rounded-md border border-slate-200 bg-white p-3 shadow dark:border-slate-700 dark:bg-slate-900">
                                                <p class="text-xs">"Its traffic stops at once and someone else may register it."</p>
                                                <PostForm action=remove attr:class="mt-2">
                                                    <CsrfField/>
                                                    <input type="hidden" name="domain" value=n4/>
                                                    <button type="submit" class=BUTTON_DANGER data-testid="delete-domain">"Delete domain"</button>
                                                </PostForm>
                                            </div>
                                        </details>
                                    </div>
                                </li>
                            }
                        }).collect_view().into_any(),
                        Err(e) => view! { <ErrorFlash error=e/> }.into_any(),
                    })}
                </ul>
            </Transition>
        </section>
        <Transition fallback=|| ()>
            {move || data.get().and_then(|d| d.ok()).filter(|d| !d.platform.is_empty()).map(|d| view! {
                <section class=format!("{CARD} mt-6")>
                    <h2 class="text-lg font-semibold">"Platform addresses"</h2>
                    <p class="mt-1 text-sm text-slate-500">"Every app also answers here, with no DNS setup on your side."</p>
                    <ul class="mt-2 space-y-1 text-sm" data-testid="platform-hosts">
                        {d.platform.into_iter().map(|(app, host)| view! {
                            <li><span class="font-medium">{app}</span>" → "<a class="font-mono text-indigo-700 hover:underline dark:text-indigo-400" href=format!("https://{host}/") target="_blank" rel="noopener">{host.clone()}</a></li>
                        }).collect_view()}
                    </ul>
                </section>
            })}
        </Transition>
    }
}
