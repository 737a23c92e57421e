//! Admins: every certificate, the ACME account, and how much of the CA's weekly limit is used.

use leptos::prelude::*;
use leptos_meta::Title;

use crate::{
    components::{CsrfField, ErrorFlash, Outcome, BUTTON_SMALL, CARD},
    form::{FormAction, PostForm},
    pages::AdminOnly,
    rpc::domains::*,
};

#[component]
pub fn CertificatesPage() -> impl IntoView {
    view! {
        <Title text="Certificates"/>
        <AdminOnly>
            <CertificatesAdmin/>
        </AdminOnly>
    }
}

#[component]
fn CertificatesAdmin() -> impl IntoView {
    let renew = FormAction::of::<RenewCertificate>();
    let data = crate::codec::resource(move || renew.version().get(), |_| certificates_overview());
    view! {
        <h1 class="text-2xl font-bold tracking-tight">"Certificates"</h1>
        <p class="mt-1 text-sm text-slate-500">"Every domain attached to an app gets a certificate over ACME (HTTP-01) and keeps it: renewed when the CA suggests, else when a third of its lifetime is left."</p>
        <div class="mt-4"><Outcome value=renew.value().into()/></div>
        <Transition fallback=|| ()>
            {move || data.get().map(|d| match d {
                Err(e) => view! { <ErrorFlash error=e/> }.into_any(),
                Ok(d) => view! {
                    <section class=format!("{CARD} mt-6") data-testid="acme-account">
                        <h2 class="text-lg font-semibold">"ACME"</h2>
                        <p class="mt-1 text-sm">{if d.enabled { "On" } else { "Off (HTTPS uses the self-signed certificate)" }}</p>
                        <p class="mt-1 font-mono text-xs text-slate-500">{d.directory.clone()}</p>
                        <p class="mt-1 text-xs text-slate-500">{d.account.clone().map(|a| format!("Account {a}")).unwrap_or_else(|| "No account yet (made with the first order).".into())}</p>
                    </section>
                    <section class=format!("{CARD} mt-6") data-testid="acme-budget">
                        <h2 class="text-lg font-semibold">{format!("Orders in the last {} hours", d.window_hours)}</h2>
                        <p class="mt-1 text-sm">{format!(
                            "{} of {} (the last {} only for renewals and the panel's own certificate; {} new certificates per person)",
                            d.window_orders, d.orders_per_window, d.renewal_reserve, d.tenant_orders_per_window
                        )}</p>
                        <div class="mt-2 h-2 w-full rounded bg-slate-200 dark:bg-slate-800">
                            <div class="h-2 rounded bg-indigo-600" style=format!("width: {}%", (d.window_orders * 100 / d.orders_per_window.max(1)).min(100))></div>
                        </div>
                        <ul class="mt-2 text-sm">
                            {d.window_by_tenant.iter().map(|(who, n)| view! {
                                <li>{format!("{who}: {n}")}</li>
                            }).collect_view()}
                        </ul>
                    </section>
                    <section class=format!("{CARD} mt-6")>
                        <h2 class="text-lg font-semibold">"This week"</h2>
                        <ul class="mt-2 text-sm" data-testid="acme-usage">
                            {if d.week.is_empty() {
                                view! { <li class="text-slate-500">"No orders in the last 7 days."</li> }.into_any()
                            } else {
                                d.week.iter().map(|(reg, issued, invalid)| view! {
                                    <li><span class="font-mono">{reg.clone()}</span>{format!(": {issued} of {} certificates, {invalid} failed validations", d.weekly_budget)}</li>
                                }).collect_view().into_any()
                            }}
                        </ul>
                    </section>
                    <section class=format!("{CARD} mt-6")>
                        <h2 class="text-lg font-semibold">"Certificates"</h2>
                        <ul class="mt-2 divide-y divide-slate-200 text-sm dark:divide-slate-800" data-testid="certificates">
                            {if d.certificates.is_empty() {
                                view! { <li class="py-3 text-slate-500">"None yet."</li> }.into_any()
                            } else {
                                d.certificates.into_iter().map(|c| {
                                    let valid = c.status == "valid";
                                    let domain = c.domain.clone();
                                    view! {
                                        <li class="flex flex-wrap items-center justify-between gap-3 py-3">
                                            <div><span class="font-mono">{c.domain.clone()}</span><p class="text-xs text-slate-500">{c.note.clone()}</p></div>
                                            {valid.then(|| view! {
                                                <PostForm action=renew>
                                                    <CsrfField/>
                                                    <input type="hidden" name="domain" value=domain.clone()/>
                                                    <button type="submit" class=BUTTON_SMALL>"Renew now"</button>
                                                </PostForm>
                                            })}
                                        </li>
                                    }
                                }).collect_view().into_any()
                            }}
                        </ul>
                    </section>
                }.into_any(),
            })}
        </Transition>
    }
}
