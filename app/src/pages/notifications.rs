//! Notifications: on the account page, where a person's go (e-mail, a signed webhook), the last
//! deliveries and *Send a test*; on the admin page, the operator's mail server.

use leptos::prelude::*;

use crate::{
    components::{
        field_error, form_outcome, CsrfField, ErrorFlash, Field, Outcome, BUTTON, BUTTON_SMALL,
        CARD, INPUT,
    },
    form::{ActionOf, FormAction, PostForm},
    rpc::notify::{
        notifications, smtp_settings, DeleteSmtp, NotifyView, SendTestNotification,
        SetNotifications, SetSmtp,
    },
};

/// Account → Notifications.
#[component]
pub fn Notifications() -> impl IntoView {
    let save = FormAction::of::<SetNotifications>();
    let test = FormAction::of::<SendTestNotification>();
    let refresh = RwSignal::new(0u32);
    let state = crate::codec::resource(
        move || (save.version().get(), test.version().get(), refresh.get()),
        |_| notifications(),
    );
    let saved = form_outcome(save.value());
    let tested = form_outcome(test.value());
    view! {
        <section class=format!("{CARD} mt-6") aria-labelledby="notify-title">
            <div class="flex flex-wrap items-center justify-between gap-2">
                <h2 id="notify-title" class="text-lg font-semibold">"Notifications"</h2>
                <div class="flex gap-2">
                    <button type="button" class=BUTTON_SMALL data-testid="deliveries-refresh"
                        on:click=move |_| refresh.update(|n| *n += 1)>"Refresh"</button>
                    <PostForm action=test>
                        <CsrfField/>
                        <button type="submit" class=BUTTON_SMALL data-testid="send-test">"Send a test"</button>
                    </PostForm>
                </div>
            </div>
            <p class="mt-1 text-sm text-slate-500">
                "Pier tells you when a deployment fails, an app redeploys because its tag moved, a certificate \
                 cannot be obtained or runs out within 14 days, an app crashes, a backup fails or is overdue, or a quota is nearly used. Each is sent once, \
                 retried for about four hours if it does not get through."
            </p>
            <div class="mt-3 space-y-2"><Outcome value=saved/><Outcome value=tested/></div>
            <Transition fallback=|| view! { <p class="text-sm text-slate-500">"Loading…"</p> }>
                {move || state.get().map(|r| match r {
                    Ok(v) => view! { <ChannelsForm v=v.clone() save=save/><DeliveryList v=v/> }.into_any(),
                    Err(e) => view! { <ErrorFlash error=e/> }.into_any(),
                })}
            </Transition>
        </section>
    }
}

#[component]
fn ChannelsForm(v: NotifyView, save: ActionOf<SetNotifications>) -> impl IntoView {
    let value = save.value();
    view! {
        <PostForm action=save attr:class="mt-4 space-y-4" attr:novalidate=true>
            <CsrfField/>
            <label class="flex items-center gap-2 text-sm">
                <input type="checkbox" name="email" value="on" checked=v.email data-testid="notify-email"/>
                {format!("E-mail to {}", v.address)}
            </label>
            {(!v.email_available).then(|| view! {
                <p class="text-xs text-slate-500">"No e-mail goes out until the operator sets a mail server."</p>
            })}
            <Field label="Webhook URL" name="webhook_url" kind="url" value=v.webhook_url.clone().unwrap_or_default()
                placeholder="https://example.com/pier-hook"
                hint="Pier POSTs JSON here, signed: X-Pier-Signature is v1= and the HMAC-SHA-256 of \"<X-Pier-Timestamp>.<body>\" under the secret below. Empty: no webhook."
                error=field_error(value, "webhook_url")/>
            {v.webhook_secret.clone().map(|s| view! {
                <div class="space-y-1">
                    <label for="f-webhook-secret" class="block text-sm font-medium">"Signing secret"</label>
                    <input id="f-webhook-secret" readonly value=s data-testid="webhook-secret"
                        class=format!("{INPUT} font-mono text-xs")/>
                    <label class="flex items-center gap-2 text-xs">
                        <input type="checkbox" name="new_secret" value="on"/>"Make a new secret (the old one stops working)"
                    </label>
                </div>
            })}
            <button type="submit" class=BUTTON>"Save"</button>
        </PostForm>
    }
}

#[component]
fn DeliveryList(v: NotifyView) -> impl IntoView {
    view! {
        <h3 class="mt-6 text-sm font-semibold">"Last deliveries"</h3>
        {if v.deliveries.is_empty() {
            view! { <p class="mt-1 text-sm text-slate-500">"Nothing sent yet."</p> }.into_any()
        } else {
            view! {
                <table class="mt-2 w-full text-left text-sm" data-testid="deliveries">
                    <thead class="text-xs uppercase tracking-wide text-slate-500">
                        <tr><th class="py-1 pr-3">"When"</th><th class="py-1 pr-3">"What"</th>
                            <th class="py-1 pr-3">"To"</th><th class="py-1">"Outcome"</th></tr>
                    </thead>
                    <tbody class="divide-y divide-slate-200 dark:divide-slate-800">
                        {v.deliveries.into_iter().map(|d| {
                            let outcome = match d.status.as_str() {
                                "sent" => format!("sent {}", d.sent.clone().unwrap_or_default()),
                                "failed" => format!("gave up after {} attempts: {}", d.attempts, d.last_error.clone().unwrap_or_default()),
                                _ if d.attempts > 0 => format!("retrying (attempt {} failed: {})", d.attempts, d.last_error.clone().unwrap_or_default()),
                                _ => "queued".to_string(),
                            };
                            let troubled = d.status == "failed" || (d.attempts > 0 && d.status != "sent");
                            let class = if troubled { "py-2 text-red-700 dark:text-red-400" } else { "py-2" };
                            view! {
                                <tr data-status=d.status.clone() data-kind=d.kind.clone() data-channel=d.channel.clone()>
                                    <td class="py-2 pr-3 whitespace-nowrap text-xs text-slate-500">{d.created.clone()}</td>
                                    <td class="py-2 pr-3">{d.subject.clone()}</td>
                                    <td class="py-2 pr-3">{if d.channel == "email" { "e-mail" } else { "webhook" }}</td>
                                    <td class=class>{outcome}</td>
                                </tr>
                            }
                        }).collect_view()}
                    </tbody>
                </table>
            }.into_any()
        }}
    }
}

/// Admin → the mail server notifications go out through.
#[component]
pub fn SmtpForm() -> impl IntoView {
    let save = FormAction::of::<SetSmtp>();
    let remove = FormAction::of::<DeleteSmtp>();
    let current = crate::codec::resource(
        move || (save.version().get(), remove.version().get()),
        |_| smtp_settings(),
    );
    let value = save.value();
    let saved = form_outcome(value);
    let removed = form_outcome(remove.value());
    view! {
        <section class=format!("{CARD} mt-6") aria-labelledby="smtp-title">
            <h2 id="smtp-title" class="text-lg font-semibold">"Mail server"</h2>
            <p class="mt-1 text-sm text-slate-500">
                "Notifications by e-mail go out through this SMTP server. The password is stored encrypted \
                 with this Pier's key; leave it empty to keep the saved one."
            </p>
            <div class="mt-3 space-y-2" data-testid="smtp-outcome"><Outcome value=saved/><Outcome value=removed/></div>
            <Transition fallback=|| ()>
                {move || current.get().map(|r| match r {
                    Ok(s) => {
                        let s2 = s.clone();
                        view! {
                            <PostForm action=save attr:class="mt-3 grid gap-3 sm:grid-cols-2" attr:novalidate=true>
                                <CsrfField/>
                                <Field label="Host" name="host" value=s.as_ref().map(|s| s.host.clone()).unwrap_or_default()
                                    placeholder="smtp.example.com" error=field_error(value, "host")/>
                                <Field label="Port" name="port" value=s.as_ref().map(|s| s.port.to_string()).unwrap_or_else(|| "587".into())
                                    error=field_error(value, "port")/>
                                <div class="space-y-1">
                                    <label for="f-security" class="block text-sm font-medium">"Security"</label>
                                    <select id="f-security" name="security" class=INPUT>
                                        {[("starttls", "STARTTLS (port 587)"), ("tls", "TLS (port 465)"), ("none", "None (a server on this machine only)")]
                                            .into_iter().map(|(v, l)| {
                                                let sel = s.as_ref().map_or(v == "starttls", |s| s.security == v);
                                                view! { <option value=v selected=sel>{l}</option> }
                                            }).collect_view()}
                                    </select>
                                    <p class="text-sm text-red-600" role="alert">{move || field_error(value, "security").get()}</p>
                                </div>
                                <Field label="From" name="from_address" kind="email"
                                    value=s.as_ref().map(|s| s.from_address.clone()).unwrap_or_default()
                                    placeholder="pier@example.com" error=field_error(value, "from_address")/>
                                <Field label="User name (optional)" name="username"
                                    value=s.as_ref().and_then(|s| s.username.clone()).unwrap_or_default()
                                    error=field_error(value, "username")/>
                                <Field label="Password" name="password" kind="password" autocomplete="new-password"
                                    hint=if s.as_ref().is_some_and(|s| s.has_password) { "Saved; empty keeps it." } else { "" }
                                    error=field_error(value, "password")/>
                                <div class="sm:col-span-2"><button type="submit" class=BUTTON>"Save mail server"</button></div>
                            </PostForm>
                            {s2.map(|_| view! {
                                <PostForm action=remove attr:class="mt-3">
                                    <CsrfField/>
                                    <button type="submit" class=BUTTON_SMALL>"Remove the mail server"</button>
                                </PostForm>
                            })}
                        }.into_any()
                    }
                    Err(e) => view! { <ErrorFlash error=e/> }.into_any(),
                })}
            </Transition>
        </section>
    }
}
