use leptos::prelude::*;
use leptos_meta::Title;

use crate::{
    codec::Loaded,
    components::{
        field_error, form_outcome, reset_on_success, CsrfField, Field, Outcome, BUTTON,
        BUTTON_DANGER, BUTTON_SMALL, CARD, INPUT,
    },
    error::AppError,
    form::{ActionOf, FormAction, PostForm},
    pages::AdminOnly,
    rpc::{
        two_factor::SetTwoFactorPolicy,
        users::{
            list_users, panel_status, CreateUser, EngineRow, ProxyRow, ResetPassword, SetQuotas,
            UserAction, UserRow, UsersView,
        },
        Done,
    },
    SessionCtx,
};

#[derive(Clone, Copy)]
struct Actions {
    /// Role, disable/enable, reset two-factor and delete: the one-button changes.
    user: ActionOf<UserAction>,
    reset: ActionOf<ResetPassword>,
    quotas: ActionOf<SetQuotas>,
}

/// `/admin/users`: everyone who can sign in, and what an admin can change about them. The
/// server checks the role again on every call; this page only hides what would be refused.
#[component]
pub fn UsersPage() -> impl IntoView {
    view! {
        <Title text="Users"/>
        <AdminOnly>
            <UsersAdmin/>
        </AdminOnly>
    }
}

#[component]
fn UsersAdmin() -> impl IntoView {
    let me = expect_context::<SessionCtx>()
        .0
        .get_untracked()
        .and_then(Result::ok)
        .and_then(|s| s.me)
        .map(|m| m.id)
        .unwrap_or_default();
    let create = FormAction::of::<CreateUser>();
    let policy_set = FormAction::of::<SetTwoFactorPolicy>();
    let acts = Actions {
        user: FormAction::of::<UserAction>(),
        reset: FormAction::of::<ResetPassword>(),
        quotas: FormAction::of::<SetQuotas>(),
    };
    let users = crate::codec::resource(
        move || {
            (
                create.version().get(),
                policy_set.version().get(),
                acts.user.version().get(),
                acts.quotas.version().get(),
                acts.reset.version().get(),
            )
        },
        |_| list_users(),
    );

    // One flash for the last row action, whichever it was.
    let last: RwSignal<Option<Result<Done, AppError>>> = RwSignal::new(None);
    macro_rules! follow {
        ($a:expr) => {
            Effect::new(move |_| {
                if let Some(v) = $a.value().get() {
                    last.set(Some(v));
                }
            });
        };
    }
    follow!(acts.user);
    follow!(acts.reset);
    follow!(acts.quotas);

    let created = create.value();
    let create_form = NodeRef::new();
    reset_on_success(created, create_form);
    let create_outcome = form_outcome(created);

    view! {
        <div class="flex items-end justify-between">
            <div>
                <h1 class="text-2xl font-bold tracking-tight">"Users"</h1>
                <p class="mt-1 text-sm text-slate-500">"Everyone who can sign in to this Pier, and their limits."</p>
            </div>
        </div>
        <StatusBanners/>
        <crate::pages::machines::Machines/>
        <div class="mt-6 grid gap-6 xl:grid-cols-3">
            <section class=format!("{CARD} xl:col-span-1") aria-labelledby="new-user">
                <h2 id="new-user" class="mb-4 text-lg font-semibold">"Add a person"</h2>
                <div class="mb-4" data-testid="create-outcome"><Outcome value=create_outcome/></div>
                <PostForm action=create node_ref=create_form attr:class="space-y-4" attr:novalidate=true>
                    <CsrfField/>
                    <Field label="Email" name="email" kind="email" required=true error=field_error(created, "email")/>
                    <div class="space-y-1">
                        <label for="f-role" class="block text-sm font-medium">"Role"</label>
                        <select id="f-role" name="role" class=INPUT>
                            <option value="member" selected>"Member"</option>
                            <option value="admin">"Admin"</option>
                        </select>
                        <p class="text-sm text-red-600" role="alert">{move || field_error(created, "role").get()}</p>
                    </div>
                    <Field label="Initial password (optional)" name="password" kind="password" autocomplete="new-password"
                        hint="Leave empty to get an invite link, valid 48 hours, with which they choose their own."
                        error=field_error(created, "password")/>
                    <fieldset class="grid grid-cols-2 gap-3">
                        <legend class="mb-1 text-sm font-medium">"Quota"</legend>
                        <Field label="Apps" name="max_apps" placeholder="5" error=field_error(created, "max_apps")/>
                        <Field label="Memory MiB" name="max_memory_mb" placeholder="2048" error=field_error(created, "max_memory_mb")/>
                        <Field label="CPUs" name="max_cpus" placeholder="2" error=field_error(created, "max_cpus")/>
                        <Field label="Storage MiB" name="max_storage_mb" placeholder="5120" error=field_error(created, "max_storage_mb")/>
                        <Field label="Backups MiB" name="max_backup_mb" placeholder="10240" error=field_error(created, "max_backup_mb")/>
                    </fieldset>
                    <button type="submit" class=BUTTON disabled=move || create.pending().get()>"Add person"</button>
                </PostForm>
            </section>
            <section class=format!("{CARD} overflow-x-auto xl:col-span-2") aria-labelledby="all-users">
                <h2 id="all-users" class="mb-4 text-lg font-semibold">"People"</h2>
                <div class="mb-4" data-testid="row-outcome"><Outcome value=last.into()/></div>
                <Transition fallback=|| view! { <p class="text-sm text-slate-500">"Loading…"</p> }>
                    {move || users.get().map(|r| match r {
                        Ok(UsersView { users: rows, .. }) => view! {
                            <table class="w-full text-left text-sm" data-testid="users">
                                <thead class="text-xs uppercase tracking-wide text-slate-500">
                                    <tr>
                                        <th class="py-2 pr-3">"Person"</th>
                                        <th class="py-2 pr-3">"Role"</th>
                                        <th class="py-2 pr-3">"Activity"</th>
                                        <th class="py-2 pr-3">"Quota"</th>
                                        <th class="py-2">"Actions"</th>
                                    </tr>
                                </thead>
                                <tbody class="divide-y divide-slate-200 dark:divide-slate-800">
                                    {rows.into_iter().map(|u| view! { <UserLine u=u acts=acts me=me/> }).collect_view()}
                                </tbody>
                            </table>
                        }.into_any(),
                        Err(e) => view! { <crate::components::ErrorFlash error=e/> }.into_any(),
                    })}
                </Transition>
            </section>
        </div>
        <TwoFactorPolicy set=policy_set users=users/>
        <crate::pages::notifications::SmtpForm/>
        <crate::pages::backups::BackupOverview/>
        <crate::pages::backups::TargetForm/>
    }
}

/// Whether everyone must sign in with two factors (loaded with the users; an error shows there).
#[component]
fn TwoFactorPolicy(
    set: ActionOf<SetTwoFactorPolicy>,
    users: Loaded<Result<UsersView, AppError>>,
) -> impl IntoView {
    let outcome = form_outcome(set.value());
    view! {
        <section class=format!("{CARD} mt-6") aria-labelledby="tf-policy">
            <h2 id="tf-policy" class="text-lg font-semibold">"Two-factor sign-in"</h2>
            <p class="mt-1 text-sm text-slate-500">
                "When required, people without an authenticator set one up right after signing in, \
                 before anything else. API tokens are not affected. Turn it on for your own account first."
            </p>
            <div class="mt-3" data-testid="policy-outcome"><Outcome value=outcome/></div>
            <Transition fallback=|| ()>
                {move || users.get().and_then(Result::ok).map(|v| {
                    let required = v.two_factor_required;
                    view! {
                        <PostForm action=set attr:class="mt-3 flex flex-wrap items-center gap-3">
                            <CsrfField/>
                            <label class="flex items-center gap-2 text-sm">
                                <input type="checkbox" name="required" value="on" checked=required
                                    data-testid="require-two-factor"/>
                                "Require two-factor sign-in for everyone"
                            </label>
                            <button type="submit" class=BUTTON_SMALL>"Save"</button>
                        </PostForm>
                    }
                })}
            </Transition>
        </section>
    }
}

#[component]
fn UserLine(u: UserRow, acts: Actions, me: i64) -> impl IntoView {
    let uid = u.id;
    let badge = |text: &'static str, class: &'static str| {
        view! { <span class=format!("ml-1 rounded-full px-2 py-0.5 text-xs font-medium {class}")>{text}</span> }
    };
    let small_input = "w-16 rounded border border-slate-300 bg-white px-1.5 py-1 text-xs dark:border-slate-700 dark:bg-slate-900";
    view! {
        <tr data-email=u.email.clone() class="align-top">
            <td class="py-3 pr-3">
                <span class="font-medium">{u.email.clone()}</span>
                {(u.id == me).then(|| badge("you", "bg-indigo-100 text-indigo-800 dark:bg-indigo-900 dark:text-indigo-100"))}
                {u.disabled.then(|| badge("disabled", "bg-red-100 text-red-800 dark:bg-red-900 dark:text-red-100"))}
                {(!u.has_password).then(|| badge("invited", "bg-amber-100 text-amber-800 dark:bg-amber-900 dark:text-amber-100"))}
                {u.two_factor.then(|| badge("2FA", "bg-emerald-100 text-emerald-800 dark:bg-emerald-900 dark:text-emerald-100"))}
            </td>
            <td class="py-3 pr-3">{if u.is_admin { "Admin" } else { "Member" }}</td>
            <td class="py-3 pr-3 text-xs text-slate-500">
                <div>"Created " {u.created.clone()}</div>
                <div>{u.last_sign_in.clone().map(|t| format!("Last sign-in {t}")).unwrap_or_else(|| "Never signed in".into())}</div>
            </td>
            <td class="py-3 pr-3">
                <PostForm action=acts.quotas attr:class="flex flex-wrap items-center gap-1">
                    <CsrfField/>
                    <IdField id=uid/>
                    <input name="max_apps" aria-label="Apps" title="Apps" class=small_input value=u.max_apps.to_string()/>
                    <input name="max_memory_mb" aria-label="Memory MiB" title="Memory MiB" class=small_input value=u.max_memory_mb.to_string()/>
                    <input name="max_cpus" aria-label="CPUs" title="CPUs" class=small_input value=u.max_cpus.clone()/>
                    <input name="max_storage_mb" aria-label="Storage MiB" title="Storage MiB" class=small_input value=u.max_storage_mb.to_string()/>
                    <input name="max_backup_mb" aria-label="Backups MiB" title="Backups MiB" class=small_input value=u.max_backup_mb.to_string()/>
                    <button type="submit" class=BUTTON_SMALL>"Save"</button>
                </PostForm>
            </td>
            <td class="py-3">
                <div class="flex flex-wrap gap-1">
                    <PostForm action=acts.user>
                        <CsrfField/>
                        <IdField id=uid/>
                        <input type="hidden" name="action" value=if u.is_admin { "make-member" } else { "make-admin" }/>
                        <button type="submit" class=BUTTON_SMALL>{if u.is_admin { "Make member" } else { "Make admin" }}</button>
                    </PostForm>
                    <PostForm action=acts.user>
                        <CsrfField/>
                        <IdField id=uid/>
                        <input type="hidden" name="action" value=if u.disabled { "enable" } else { "disable" }/>
                        <button type="submit" class=BUTTON_SMALL data-action="toggle-disabled">{if u.disabled { "Enable" } else { "Disable" }}</button>
                    </PostForm>
                    <PostForm action=acts.reset attr:class="flex items-center gap-1">
                        <CsrfField/>
                        <IdField id=uid/>
                        <label class="flex items-center gap-1 text-xs" title="Lock out now: end their sessions, revoke their API tokens, and the old password stops working until the link is used">
                            <input type="checkbox" name="revoke_tokens" value="on"/>"lock out"
                        </label>
                        <button type="submit" class=BUTTON_SMALL>"Reset password"</button>
                    </PostForm>
                    {u.two_factor.then(|| view! {
                        <PostForm action=acts.user>
                            <CsrfField/>
                            <IdField id=uid/>
                            <input type="hidden" name="action" value="reset-two-factor"/>
                            <button type="submit" class=BUTTON_SMALL
                                title="They lost their authenticator: remove it and their recovery codes">
                                "Reset two-factor"
                            </button>
                        </PostForm>
                    })}
                    <DeleteButton id=u.id action=acts.user/>
                </div>
            </td>
        </tr>
    }
}

/// Delete asks once more before it sends anything.
#[component]
fn DeleteButton(id: i64, action: ActionOf<UserAction>) -> impl IntoView {
    let confirm = RwSignal::new(false);
    view! {
        <Show when=move || confirm.get() fallback=move || view! {
            <button type="button" class=BUTTON_SMALL on:click=move |_| confirm.set(true)>"Delete…"</button>
        }>
            <PostForm action=action attr:class="flex gap-1">
                <CsrfField/>
                <IdField id=id/>
                <input type="hidden" name="action" value="delete"/>
                <button type="submit" class=BUTTON_DANGER>"Really delete"</button>
                <button type="button" class=BUTTON_SMALL on:click=move |_| confirm.set(false)>"Cancel"</button>
            </PostForm>
        </Show>
    }
}

#[component]
fn IdField(id: i64) -> impl IntoView {
    view! { <input type="hidden" name="id" value=id.to_string()/> }
}

/// HAProxy's and the engine's state, from one call: a line each when all is well, the
/// problems (a refused configuration, no user namespaces, no egress rules…) when not.
#[component]
fn StatusBanners() -> impl IntoView {
    let status = crate::codec::resource(|| (), |_| panel_status());
    view! {
        <Transition fallback=|| ()>
            {move || status.get().map(|r| match r {
                Ok(s) => view! {
                    {s.proxy.map(proxy_banner)}
                    {engine_banner(s.engine)}
                }.into_any(),
                Err(e) => view! { <crate::components::ErrorFlash error=e/> }.into_any(),
            })}
        </Transition>
    }
}

/// The engine's isolation (user namespaces, egress rules, bounded layers, how published ports
/// are reached): a line each, the ones to act on in amber.
fn engine_banner(e: Option<EngineRow>) -> impl IntoView {
    let (userns, egress, layers, proxy) = match e {
        Some(e) => {
            let proxy = e.userland_proxy.map(|on| {
                if on {
                    (false, "Published ports go through docker-proxy (a userspace copy per connection and a process per port): start dockerd with --userland-proxy=false (the README says why) so HAProxy reaches apps through the kernel.".to_string())
                } else {
                    (true, "Published ports go through the kernel's NAT, not docker-proxy.".to_string())
                }
            });
            let layers = match e.writable_layer_mb {
                Some(mb) => (true, format!("Writable layers are bounded: a container may write {mb} MiB outside its volumes ({}).", e.storage)),
                None => (false, format!("Writable layers are not bounded: the storage driver ({}) cannot, so a container can fill Docker's disk outside its volumes. Put Docker's data root on xfs mounted with pquota to bound them.", e.storage)),
            };
            let userns = if e.user_namespaces {
                (true, format!("Docker {}: containers run in user namespaces; container root is host uid {}, not host root.", e.version, e.root_uid))
            } else {
                (false, format!("Docker {}: containers do not run in user namespaces, so container root is host root. Start dockerd with --userns-remap=default (see the README) so that an escape from a container lands as an unprivileged user.", e.version))
            };
            let egress = match (e.egress_enforced, e.egress_problem) {
                (Some(true), _) => (true, format!(
                    "Egress rules are in place: containers reach neither this host's services nor link-local addresses{}.",
                    if e.egress_block_private { " nor private networks" } else { "" })),
                (_, Some(p)) => (false, format!("Egress rules are not in place: {p}")),
                _ => (false, "Egress rules have not been checked yet.".to_string()),
            };
            (userns, Some(egress), Some(layers), proxy)
        }
        None => (
            (false, "The Docker engine does not answer.".to_string()),
            None,
            None,
            None,
        ),
    };
    // A line after the first: amber when it is something to act on.
    let more = |testid: &'static str, (ok, line): (bool, String)| {
        let class = if ok {
            "mt-1"
        } else {
            "mt-1 font-medium text-amber-800 dark:text-amber-300"
        };
        view! { <p class=class data-testid=testid>{line}</p> }
    };
    view! {
        <div class="mt-4 rounded-md border border-slate-200 bg-white px-4 py-3 text-sm dark:border-slate-800 dark:bg-slate-900" data-testid="engine-status">
            <p class=if userns.0 { "" } else { "font-medium text-amber-800 dark:text-amber-300" }>{userns.1}</p>
            {egress.map(|l| more("egress-status", l))}
            {layers.map(|l| more("layer-status", l))}
            {proxy.map(|l| more("proxy-path", l))}
        </div>
    }
}

/// HAProxy's state: a line when all is well, the error when a configuration was refused or it
/// would not start.
fn proxy_banner(p: ProxyRow) -> impl IntoView {
    let line = if p.running {
        format!(
            "HAProxy is running (workers {}), {} routes.",
            p.workers
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            p.routes
        )
    } else {
        "HAProxy is not running; Pier keeps trying to start it.".to_string()
    };
    view! {
        <div class="mt-4 rounded-md border border-slate-200 bg-white px-4 py-3 text-sm dark:border-slate-800 dark:bg-slate-900" data-testid="proxy-status">
            <p>{line}</p>
            {p.error.map(|e| view! { <p class="mt-1 font-medium text-red-700 dark:text-red-400">{e}</p> })}
        </div>
    }
}
