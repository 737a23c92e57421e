//! Apps: the list (home page), the create form, an app's page, and registry logins.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::{use_navigate, use_params_map};

use crate::{
    components::{
        field_error, form_outcome, reset_on_success, CsrfField, ErrorFlash, Field, Outcome, BUTTON,
        BUTTON_DANGER, BUTTON_SMALL, CARD, INPUT,
    },
    error::AppError,
    form::{ActionOf, FormAction, PostForm},
    rpc::apps::*,
    rpc::Done,
};

/// Refetches `r` every `secs` seconds while the page is open (in the browser only).
pub(crate) fn poll<T>(r: crate::codec::Loaded<T>, secs: u64)
where
    T: Send + Sync + serde::Serialize + serde::de::DeserializeOwned + 'static,
{
    Effect::new(move |_| {
        #[cfg(feature = "hydrate")]
        {
            if let Ok(h) =
                set_interval_with_handle(move || r.refetch(), std::time::Duration::from_secs(secs))
            {
                on_cleanup(move || h.clear());
            }
        }
        #[cfg(not(feature = "hydrate"))]
        let _ = (r, secs);
    });
}

const GOOD: &str = "bg-emerald-100 text-emerald-800 dark:bg-emerald-900 dark:text-emerald-100";
const BUSY: &str = "bg-sky-100 text-sky-800 dark:bg-sky-900 dark:text-sky-100";
const BAD: &str = "bg-red-100 text-red-800 dark:bg-red-900 dark:text-red-100";
const QUIET: &str = "bg-slate-100 text-slate-700 dark:bg-slate-800 dark:text-slate-200";

/// The colours of an app's state.
fn state_colours(state: AppState) -> &'static str {
    match state {
        AppState::Running => GOOD,
        AppState::Deploying | AppState::Starting | AppState::Stopping => BUSY,
        AppState::Crashed | AppState::Failed => BAD,
        AppState::Stopped | AppState::Unknown => QUIET,
    }
}

/// The colours of a deployment's status.
fn status_colours(status: DeployStatus) -> &'static str {
    match status {
        DeployStatus::Running => GOOD,
        DeployStatus::Queued | DeployStatus::Pulling | DeployStatus::Starting => BUSY,
        DeployStatus::Failed => BAD,
        DeployStatus::Superseded | DeployStatus::Cancelled => QUIET,
    }
}

#[component]
fn StateBadge(state: AppState) -> impl IntoView {
    view! {
        <span class=format!("rounded-full px-2 py-0.5 text-xs font-medium {}", state_colours(state)) data-testid="app-state">
            {state.as_str()}
        </span>
    }
}

#[component]
fn PullBar(r: RolloutRow) -> impl IntoView {
    let pct = (r.done_bytes * 100)
        .checked_div(r.total_bytes)
        .unwrap_or(0)
        .min(100);
    let label = match r.status {
        DeployStatus::Queued => "Queued".to_string(),
        DeployStatus::Pulling if r.total_bytes > 0 => format!(
            "Pulling the image: {:.1} of {:.1} MB, {} of {} layers",
            r.done_bytes as f64 / 1e6,
            r.total_bytes as f64 / 1e6,
            r.layers_done,
            r.layers
        ),
        DeployStatus::Pulling => format!("Pulling the image… {}", r.pull_status),
        _ => "Starting the container and waiting until it answers…".to_string(),
    };
    let width = if r.status == DeployStatus::Starting {
        100
    } else {
        pct
    };
    view! {
        <div class="mt-2" data-testid="rollout">
            <p class="text-xs text-slate-500">{format!("Deployment #{}: {label}", r.number)}</p>
            <div class="mt-1 h-2 w-full overflow-hidden rounded bg-slate-200 dark:bg-slate-800" role="progressbar"
                aria-valuemin="0" aria-valuemax="100" aria-valuenow=width.to_string()>
                <div class="h-2 rounded bg-indigo-500 transition-all" style=format!("width: {width}%")></div>
            </div>
        </div>
    }
}

/// The signed-in home: the tenant's apps with live status.
#[component]
pub fn AppsPage() -> impl IntoView {
    let apps = crate::codec::resource(|| (), |_| list_apps());
    poll(apps, 3);
    view! {
        <Title text="Apps"/>
        <div class="flex flex-wrap items-end justify-between gap-4">
            <div>
                <h1 class="text-2xl font-bold tracking-tight">"Your apps"</h1>
                <p class="mt-1 text-sm text-slate-500">"Containers Pier runs for you, kept the way you asked."</p>
            </div>
            <div class="flex items-center gap-2">
                <a href="/registries" class=BUTTON_SMALL>"Registry logins"</a>
                <a href="/apps/new" class=BUTTON data-testid="new-app">"New app"</a>
            </div>
        </div>
        <Transition fallback=|| view! { <p class="mt-6 text-sm text-slate-500">"Loading…"</p> }>
            {move || apps.get().map(|r| match r {
                Ok(rows) if rows.is_empty() => view! {
                    <section class=format!("{CARD} mt-6 text-center") data-testid="apps-empty">
                        <h2 class="text-lg font-semibold">"No apps yet"</h2>
                        <p class="mx-auto mt-2 max-w-md text-sm text-slate-500">
                            "Paste a container image and its environment variables, and Pier keeps it running."
                        </p>
                        <a href="/apps/new" class=format!("{BUTTON} mt-4")>"Create your first app"</a>
                    </section>
                }.into_any(),
                Ok(rows) => view! {
                    <ul class=format!("{CARD} mt-6 divide-y divide-slate-200 p-0 dark:divide-slate-800") data-testid="apps">
                        {rows.into_iter().map(|a| view! {
                            <li class="px-6 py-4">
                                <div class="flex flex-wrap items-center justify-between gap-3">
                                    <div class="min-w-0">
                                        <a href=format!("/apps/{}", a.name) class="font-semibold text-indigo-700 hover:underline dark:text-indigo-300">{a.name.clone()}</a>
                                        <p class="truncate font-mono text-xs text-slate-500">{a.image.clone()}</p>
                                    </div>
                                    <div class="flex items-center gap-3 text-xs text-slate-500">
                                        <span>{replicas_line(a.replicas, a.replicas_running, a.memory_mb, &a.cpus)}</span>
                                        <StateBadge state=a.state/>
                                    </div>
                                </div>
                                {a.rollout.clone().map(|r| view! { <PullBar r/> })}
                                {a.problem.clone().map(|p| view! { <p class="mt-2 whitespace-pre-wrap text-xs text-red-600">{p}</p> })}
                            </li>
                        }).collect_view()}
                    </ul>
                }.into_any(),
                Err(e) => view! { <div class="mt-6"><ErrorFlash error=e/></div> }.into_any(),
            })}
        </Transition>
    }
}

/// An app's size: "256 MiB · 0.5 CPU", or with replicas "3 replicas (2 running) × 256 MiB ·
/// 0.5 CPU".
fn replicas_line(replicas: i64, running: Option<usize>, memory_mb: i64, cpus: &str) -> String {
    let each = format!("{memory_mb} MiB · {cpus} CPU");
    if replicas <= 1 {
        return each;
    }
    match running {
        Some(r) if i64::try_from(r).unwrap_or(0) != replicas => {
            format!("{replicas} replicas ({r} running) × {each}")
        }
        _ => format!("{replicas} replicas × {each}"),
    }
}

/// The fields of an app's settings, shared by the create and edit forms.
#[component]
fn SpecFields(
    value: Signal<Option<Result<Done, AppError>>>,
    #[prop(optional)] initial: Option<AppInfo>,
) -> impl IntoView {
    let init_env: Vec<EnvView> = initial.as_ref().map(|d| d.env.clone()).unwrap_or_default();
    let first = init_env.len().max(1) + 1;
    let rows = RwSignal::new((0..first).collect::<Vec<usize>>());
    let next = StoredValue::new(first);
    let init_env = StoredValue::new(init_env);
    let image = initial
        .as_ref()
        .map(|d| d.row.image.clone())
        .unwrap_or_default();
    let port = initial
        .as_ref()
        .map(|d| d.port.to_string())
        .unwrap_or_default();
    let memory = initial
        .as_ref()
        .map(|d| d.row.memory_mb.to_string())
        .unwrap_or_default();
    let cpus = initial
        .as_ref()
        .map(|d| d.row.cpus.clone())
        .unwrap_or_default();
    let replicas = initial
        .as_ref()
        .map(|d| d.row.replicas.to_string())
        .unwrap_or_default();
    let health = initial
        .as_ref()
        .map(|d| d.health_path.clone())
        .unwrap_or_default();
    let read_only = initial.as_ref().is_some_and(|d| d.read_only);
    let internal = initial
        .as_ref()
        .is_some_and(|d| d.kind == AppKind::Internal);
    let strict = initial
        .as_ref()
        .is_some_and(|d| d.capabilities == CapProfile::Strict);
    let init_vols: Vec<VolumeView> = initial
        .as_ref()
        .map(|d| d.volumes.clone())
        .unwrap_or_default();
    let vol_rows = RwSignal::new((0..init_vols.len()).collect::<Vec<usize>>());
    let vol_next = StoredValue::new(init_vols.len());
    let init_vols = StoredValue::new(init_vols);
    view! {
        <Field label="Image" name="image" value=image placeholder="ghcr.io/you/app:1.0" required=true
            hint="Any image reference Docker understands; private registries need a login (Registry logins)."
            error=field_error(value, "image")/>
        <div class="grid gap-4 sm:grid-cols-4">
            <Field label="Container port" name="port" value=port placeholder="8080" required=true
                hint="The port your app listens on inside the container." error=field_error(value, "port")/>
            <Field label="Memory (MiB)" name="memory_mb" value=memory placeholder="256" hint="Per replica." error=field_error(value, "memory_mb")/>
            <Field label="CPUs" name="cpus" value=cpus placeholder="0.5" hint="Per replica." error=field_error(value, "cpus")/>
            <Field label="Replicas" name="replicas" value=replicas placeholder="1"
                hint="Copies side by side, balanced (web apps without volumes)." error=field_error(value, "replicas")/>
        </div>
        <Field label="Health-check path" name="health_path" value=health placeholder="/healthz"
            hint="Optional. A new deployment gets traffic once this path answers 2xx/3xx; without it, once the app answers HTTP at all."
            error=field_error(value, "health_path")/>
        <label class="flex items-center gap-2 text-sm">
            <input type="checkbox" name="read_only" checked=read_only class="h-4 w-4"/>
            "Read-only root filesystem (with a writable /tmp)"
        </label>
        <div class="grid gap-4 sm:grid-cols-2">
            <div class="space-y-1">
                <label for="f-kind" class="block text-sm font-medium">"Kind"</label>
                <select id="f-kind" name="kind" class=INPUT>
                    <option value="web" selected=!internal>"Web: HTTP, with domains and HTTPS"</option>
                    <option value="internal" selected=internal>"Internal: a database or cache for my other apps"</option>
                </select>
                <p class="text-xs text-slate-500">"Your other apps reach every app by its name (postgres://db:5432); an internal app is never reachable from outside."</p>
                <p class="text-sm text-red-600" role="alert">{move || field_error(value, "kind").get()}</p>
            </div>
            <div class="space-y-1">
                <label for="f-caps" class="block text-sm font-medium">"Capabilities"</label>
                <select id="f-caps" name="capabilities" class=INPUT>
                    <option value="default" selected=!strict>"Default: may start as root and drop to a user"</option>
                    <option value="strict" selected=strict>"Strict: none (for images built to run unprivileged)"</option>
                </select>
                <p class="text-xs text-slate-500">"Official images (postgres, nginx, redis) need the default profile to chown their data and switch users."</p>
                <p class="text-sm text-red-600" role="alert">{move || field_error(value, "capabilities").get()}</p>
            </div>
        </div>
        <fieldset class="space-y-2">
            <legend class="text-sm font-medium">"Volumes"</legend>
            <p class="text-xs text-slate-500">"Persistent storage of a fixed size that survives redeploys. An app with volumes is stopped before its new version starts (two copies of a database on one directory corrupt it), so redeploys have a short gap. The name of a volume you kept gives it to this app."</p>
            <For each=move || vol_rows.get() key=|i| *i let:i>
                {
                    let init = init_vols.with_value(|v| v.get(i).cloned());
                    let (n, p, sz) = init.map(|v| (v.name, v.path, v.size_mb.to_string())).unwrap_or_default();
                    view! {
                        <div class="grid grid-cols-[minmax(6rem,10rem)_1fr_6rem_auto] items-center gap-2" data-testid="volume-row">
                            <input name=format!("volumes[{i}][name]") value=n placeholder="db-data" aria-label="Volume name"
                                class=format!("{INPUT} font-mono")/>
                            <input name=format!("volumes[{i}][path]") value=p placeholder="/var/lib/postgresql/data" aria-label="Mount path"
                                class=format!("{INPUT} min-w-0 font-mono")/>
                            <input name=format!("volumes[{i}][size_mb]") value=sz placeholder="MiB" aria-label="Size in MiB"
                                class=INPUT/>
                            <button type="button" class=BUTTON_SMALL aria-label="Remove volume"
                                on:click=move |_| vol_rows.update(|r| r.retain(|x| *x != i))>"×"</button>
                        </div>
                    }
                }
            </For>
            <button type="button" class=BUTTON_SMALL data-testid="add-volume" on:click=move |_| {
                let n = vol_next.get_value();
                vol_next.set_value(n + 1);
                vol_rows.update(|r| r.push(n));
            }>"Add volume"</button>
            <p class="text-sm text-red-600 dark:text-red-400" role="alert" data-testid="volumes-error">{move || field_error(value, "volumes").get()}</p>
        </fieldset>
        <fieldset class="space-y-2">
            <legend class="text-sm font-medium">"Environment variables"</legend>
            <p class="text-xs text-slate-500">"Secret values are encrypted at rest and never shown again; leave a secret empty to keep its saved value."</p>
            <For each=move || rows.get() key=|i| *i let:i>
                {
                    let init = init_env.with_value(|e| e.get(i).cloned());
                    let (n, v, s) = init.map(|e| (e.name, e.value, e.secret)).unwrap_or_default();
                    view! {
                        <div class="grid grid-cols-[minmax(7rem,14rem)_1fr_auto_auto] items-center gap-2" data-testid="env-row">
                            <input name=format!("env[{i}][name]") value=n placeholder="NAME" aria-label="Variable name"
                                class=format!("{INPUT} font-mono")/>
                            <input name=format!("env[{i}][value]") value=v aria-label="Value"
                                placeholder=if s { "unchanged (secret)" } else { "value" }
                                type=if s { "password" } else { "text" }
                                class=format!("{INPUT} min-w-0 font-mono")/>
                            <label class="flex items-center gap-1 text-xs">
                                <input type="checkbox" name=format!("env[{i}][secret]") checked=s/>"secret"
                            </label>
                            <button type="button" class=BUTTON_SMALL aria-label="Remove variable"
                                on:click=move |_| rows.update(|r| r.retain(|x| *x != i))>"×"</button>
                        </div>
                    }
                }
            </For>
            <button type="button" class=BUTTON_SMALL on:click=move |_| {
                let n = next.get_value();
                next.set_value(n + 1);
                rows.update(|r| r.push(n));
            }>"Add variable"</button>
            <div class="space-y-1 pt-2">
                <label for="f-dotenv" class="block text-sm font-medium">"Or paste a .env file"</label>
                <textarea id="f-dotenv" name="dotenv" rows="4" placeholder="DATABASE_URL=postgres://…\nLOG_LEVEL=info"
                    class=format!("{INPUT} font-mono")></textarea>
                <label class="flex items-center gap-2 text-xs">
                    <input type="checkbox" name="dotenv_secret"/>"Treat the pasted values as secrets"
                </label>
            </div>
            <p class="text-sm text-red-600 dark:text-red-400" role="alert" data-testid="env-error">{move || field_error(value, "env").get()}</p>
        </fieldset>
    }
}

#[component]
pub fn NewAppPage() -> impl IntoView {
    let create = FormAction::of::<CreateApp>();
    let quota = crate::codec::resource(|| (), |_| quota_left());
    let value = create.value();
    let navigate = use_navigate();
    Effect::new(move |_| {
        if let Some(Ok(done)) = value.get() {
            if let Some(name) = done.copy {
                navigate(&format!("/apps/{name}"), Default::default());
            }
        }
    });
    let outcome = form_outcome(value);
    view! {
        <Title text="New app"/>
        <h1 class="text-2xl font-bold tracking-tight">"New app"</h1>
        <Suspense fallback=|| ()>
            {move || quota.get().and_then(Result::ok).map(|q| view! {
                <p class="mt-1 text-sm text-slate-500" data-testid="quota-left">
                    {format!("Your quota has room for {} more app(s), {} MiB of {} MiB memory, {} of {} CPUs and {} MiB of {} MiB storage.",
                        q.apps, q.memory_mb, q.max_memory_mb, q.cpus, q.max_cpus, q.storage_mb, q.max_storage_mb)}
                </p>
            })}
        </Suspense>
        <section class=format!("{CARD} mt-6")>
            <div class="mb-4"><Outcome value=outcome/></div>
            <PostForm action=create attr:class="space-y-4" attr:novalidate=true>
                <CsrfField/>
                <Field label="Name" name="name" placeholder="my-app" required=true
                    hint="Lower-case letters, digits and hyphens; it names the app in its addresses."
                    error=field_error(value, "name")/>
                <SpecFields value=value.into()/>
                <button type="submit" class=BUTTON data-testid="create-app">"Create and deploy"</button>
            </PostForm>
        </section>
    }
}

/// A small line chart of the last hour.
#[component]
fn Chart(
    title: &'static str,
    unit: &'static str,
    points: Vec<(i64, f64)>,
    max: f64,
) -> impl IntoView {
    let (w, h) = (600.0, 100.0);
    let latest = points.last().map(|p| p.1);
    let path = if points.len() >= 2 {
        let t0 = points.first().map(|p| p.0).unwrap_or(0) as f64;
        let t1 = points.last().map(|p| p.0).unwrap_or(1) as f64;
        let span = (t1 - t0).max(1.0);
        let top = max
            .max(points.iter().map(|p| p.1).fold(0.0, f64::max))
            .max(1e-9);
        points
            .iter()
            .map(|(t, v)| format!("{:.1},{:.1}", (*t as f64 - t0) / span * w, h - v / top * h))
            .collect::<Vec<_>>()
            .join(" ")
    } else {
        String::new()
    };
    view! {
        <figure class="space-y-1">
            <figcaption class="flex justify-between text-xs text-slate-500">
                <span>{title}</span>
                <span class="font-mono" data-testid="metric-now">{latest.map(|v| format!("{v:.1} {unit}")).unwrap_or_else(|| "—".into())}</span>
            </figcaption>
            <svg viewBox=format!("0 0 {w} {h}") preserveAspectRatio="none" class="h-20 w-full rounded bg-slate-50 dark:bg-slate-800" role="img" aria-label=title>
                <polyline points=path fill="none" stroke="currentColor" stroke-width="2" class="text-indigo-500" vector-effect="non-scaling-stroke"/>
            </svg>
        </figure>
    }
}

/// The app's log, streamed from the server (server-sent events) once the page has hydrated.
#[component]
fn Logs(name: String) -> impl IntoView {
    let lines = RwSignal::new(Vec::<(bool, String)>::new());
    let status = RwSignal::new("Connecting…".to_string());
    // The server's default tail (pier_core::apps::DEFAULT_LOG_TAIL).
    let url = format!(
        "/events/apps/{}/logs",
        crate::components::encode_component(&name)
    );
    // Bumped to connect again when the server refused the stream (no container yet: the
    // browser's EventSource gives up on a non-200 answer, so we retry ourselves).
    let attempt = RwSignal::new(0u32);
    Effect::new(move |_| {
        attempt.track();
        #[cfg(feature = "hydrate")]
        {
            use wasm_bindgen::{closure::Closure, JsCast};
            let Ok(es) = web_sys::EventSource::new(&url) else {
                status.set("Live logs are not available in this browser.".into());
                return;
            };
            // The tail is sent again on every connection: replace the old lines when the first
            // new one arrives (not on connect), so a reconnect does not blank the panel.
            let fresh = StoredValue::new(false);
            let on_open = Closure::<dyn FnMut()>::new(move || {
                fresh.set_value(true);
                status.set("Live".into());
            });
            let handler = |err: bool| {
                Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |e: web_sys::MessageEvent| {
                    let text = e.data().as_string().unwrap_or_default();
                    if fresh.get_value() {
                        fresh.set_value(false);
                        lines.set(Vec::new());
                    }
                    lines.update(|l| {
                        l.push((err, text));
                        if l.len() > 2000 {
                            l.drain(..l.len() - 2000);
                        }
                    });
                })
            };
            let on_out = handler(false);
            let on_err = handler(true);
            let es_end = send_wrapper::SendWrapper::new(es.clone());
            let on_end = Closure::<dyn FnMut()>::new(move || {
                // The container's log ended (stopped or replaced): look again in a while.
                es_end.close();
                status.set("Not running: these are its last lines.".into());
                set_timeout(
                    move || attempt.update(|a| *a += 1),
                    std::time::Duration::from_secs(4),
                );
            });
            let es2 = send_wrapper::SendWrapper::new(es.clone());
            let on_error = Closure::<dyn FnMut()>::new(move || {
                if es2.ready_state() == web_sys::EventSource::CLOSED {
                    status.set("Waiting for the app's container…".into());
                    set_timeout(
                        move || attempt.update(|a| *a += 1),
                        std::time::Duration::from_secs(2),
                    );
                } else {
                    status.set("Reconnecting…".into());
                }
            });
            es.set_onopen(Some(on_open.as_ref().unchecked_ref()));
            let _ = es.add_event_listener_with_callback("stdout", on_out.as_ref().unchecked_ref());
            let _ = es.add_event_listener_with_callback("stderr", on_err.as_ref().unchecked_ref());
            let _ = es.add_event_listener_with_callback("end", on_end.as_ref().unchecked_ref());
            es.set_onerror(Some(on_error.as_ref().unchecked_ref()));
            let keep =
                send_wrapper::SendWrapper::new((es, on_open, on_out, on_err, on_error, on_end));
            on_cleanup(move || keep.0.close());
        }
        #[cfg(not(feature = "hydrate"))]
        let _ = (&url, lines, status);
    });
    view! {
        <div class="flex items-baseline justify-between">
            <h2 class="text-lg font-semibold">"Logs"</h2>
            <span class="text-xs text-slate-500" data-testid="logs-status">{move || status.get()}</span>
        </div>
        <pre class="mt-2 h-72 overflow-auto rounded bg-slate-950 p-3 font-mono text-xs text-slate-100" data-testid="logs">
            {move || lines.get().into_iter().map(|(err, l)| view! {
                <div class=if err { "text-red-300" } else { "" }>{l}</div>
            }).collect_view()}
        </pre>
    }
}

#[component]
fn ActionButton(
    app: String,
    action: AppVerb,
    label: &'static str,
    act: ActionOf<AppAction>,
    #[prop(optional)] danger: bool,
) -> impl IntoView {
    view! {
        <PostForm action=act>
            <CsrfField/>
            <input type="hidden" name="app" value=app/>
            <input type="hidden" name="action" value=action.as_str()/>
            <button type="submit" class=if danger { BUTTON_DANGER } else { BUTTON_SMALL } data-testid=format!("action-{}", action.as_str())>{label}</button>
        </PostForm>
    }
}

#[component]
pub fn AppPage() -> impl IntoView {
    let params = use_params_map();
    let name = move || params.read().get("name").unwrap_or_default();
    let act = FormAction::of::<AppAction>();
    let rollback = FormAction::of::<RollbackApp>();
    let update = FormAction::of::<UpdateApp>();
    let detail = crate::codec::resource(
        move || {
            (
                name(),
                act.version().get(),
                rollback.version().get(),
                update.version().get(),
            )
        },
        |(n, ..)| app_detail(n),
    );
    poll(detail, 2);
    // The settings form's values: read once, and again after a save or rollback.
    let settings = crate::codec::resource(
        move || (name(), rollback.version().get(), update.version().get()),
        |(n, ..)| app_detail(n),
    );
    view! {
        <Title text=move || name()/>
        <div class="space-y-1"><Outcome value=act.value().into()/><Outcome value=rollback.value().into()/></div>
        <Transition fallback=|| view! { <p class="text-sm text-slate-500">"Loading…"</p> }>
            {move || detail.get().map(|r| match r {
                Err(e) => view! { <ErrorFlash error=e/> }.into_any(),
                Ok(d) => {
                    let n = d.row.name.clone();
                    let cpu: Vec<(i64, f64)> = d.metrics.iter().map(|p| (p.at, p.cpu_percent)).collect();
                    let mem: Vec<(i64, f64)> = d.metrics.iter().map(|p| (p.at, p.memory_mb)).collect();
                    let limit = (d.row.memory_mb * d.row.replicas.max(1)) as f64;
                    view! {
                        <AppHeader d=d.clone() act/>
                        {d.row.rollout.clone().map(|r| view! { <PullBar r/> })}
                        {d.row.problem.clone().map(|p| view! {
                            <p class="mt-3 whitespace-pre-wrap rounded border border-red-200 bg-red-50 p-3 text-sm text-red-800 dark:border-red-900 dark:bg-red-950 dark:text-red-200" data-testid="app-problem">{p}</p>
                        })}
                        {(!d.volumes.is_empty()).then(|| view! {
                            <section class=format!("{CARD} mt-6") aria-labelledby="volumes-title">
                                <h2 id="volumes-title" class="text-lg font-semibold">"Volumes"</h2>
                                <p class="text-xs text-slate-500">
                                    "Redeploys stop the running version before the new one starts."
                                    {d.last_gap_ms.map(|g| format!(" The last one left the app without a container for {:.1} s.", g as f64 / 1000.0))}
                                </p>
                                <ul class="mt-2 space-y-2" data-testid="app-volumes">
                                    {d.volumes.iter().map(|v| view! { <li><VolumeLine v=v.clone()/></li> }).collect_view()}
                                </ul>
                            </section>
                        })}
                        <section class=format!("{CARD} mt-6 grid gap-4 sm:grid-cols-2") aria-label="Resource use">
                            <Chart title="CPU (% of one CPU), last hour" unit="%" points=cpu max=100.0/>
                            <Chart title="Memory (MiB), last hour" unit="MiB" points=mem max=limit/>
                        </section>
                        <DeploymentList name=n.clone() deployments=d.deployments.clone() rollback/>
                    }.into_any()
                }
            })}
        </Transition>
        // Not inside the polled view above: the log stream stays connected and what is typed
        // into the settings form stays put while the status refreshes.
        {move || {
            let n = name();
            view! { <section class=format!("{CARD} mt-6")><Logs name=n/></section> }
        }}
        {move || view! { <crate::pages::backups::AppBackups name=name()/> }}
        {move || view! { <crate::pages::tags::ImageUpdates name=name()/> }}
        <Transition fallback=|| ()>
            {move || settings.get().and_then(Result::ok).map(|d| {
                view! { <AppSettings d update act/> }
            })}
        </Transition>
    }
}

/// The app's name and state, where it answers, and its buttons.
#[component]
fn AppHeader(d: AppInfo, act: ActionOf<AppAction>) -> impl IntoView {
    let n = d.row.name.clone();
    view! {
        <div class="flex flex-wrap items-center justify-between gap-4">
            <div>
                <h1 class="flex items-center gap-3 text-2xl font-bold tracking-tight">
                    {n.clone()} <StateBadge state=d.row.state/>
                </h1>
                <p class="font-mono text-xs text-slate-500">{d.row.image.clone()}</p>
                <p class="text-xs text-slate-500">
                    {d.row.current.map(|c| format!("Serving deployment #{c}")).unwrap_or_else(|| "Not deployed yet".into())}
                    {d.row.host_port.map(|p| format!(" · answering on 127.0.0.1:{p}"))}
                </p>
                {(d.row.replicas > 1).then(|| view! {
                    <p class="text-xs text-slate-500" data-testid="app-replicas">
                        {replicas_line(d.row.replicas, d.row.replicas_running, d.row.memory_mb, &d.row.cpus)}
                    </p>
                })}
                {(d.copies.len() > 1 || d.copies.iter().any(|c| c.2.as_deref().is_some_and(|a| !a.starts_with("127.")))).then(|| view! {
                    <ul class="text-xs text-slate-500" data-testid="app-copies">
                        {d.copies.iter().map(|(n, state, at)| view! {
                            <li>{format!("Copy {n}: {state}{}", at.as_ref().map(|a| format!(" at {a}")).unwrap_or_default())}</li>
                        }).collect_view()}
                    </ul>
                })}
                {(d.kind == AppKind::Internal).then(|| view! {
                    <p class="text-xs text-slate-500" data-testid="app-internal">
                        {format!("Internal app: your other apps reach it at {}:{}; it is never reachable from outside.", n, d.port)}
                    </p>
                })}
                <p class="text-xs text-slate-500" data-testid="app-hosts" class:hidden=d.kind == AppKind::Internal>
                    {if d.hosts.is_empty() {
                        view! { "No domain yet: "<a href="/domains" class="text-indigo-700 hover:underline dark:text-indigo-400">"attach one"</a> }.into_any()
                    } else {
                        d.hosts.iter().map(|h| {
                            let href = (!h.starts_with("*.")).then(|| format!("https://{h}/"));
                            view! { <a href=href class="mr-2 font-mono text-indigo-700 hover:underline dark:text-indigo-400" target="_blank" rel="noopener">{h.clone()}</a> }
                        }).collect_view().into_any()
                    }}
                </p>
            </div>
            <div class="flex flex-wrap gap-2">
                {if d.stopped {
                    view! { <ActionButton app=n.clone() action=AppVerb::Start label="Start" act/> }.into_any()
                } else {
                    view! {
                        <ActionButton app=n.clone() action=AppVerb::Stop label="Stop" act/>
                        <ActionButton app=n.clone() action=AppVerb::Restart label="Restart" act/>
                    }.into_any()
                }}
                <ActionButton app=n.clone() action=AppVerb::Redeploy label="Redeploy" act/>
            </div>
        </div>
    }
}

/// Every deployment of the app, newest first, with a button to roll back to those that ran.
#[component]
fn DeploymentList(
    name: String,
    deployments: Vec<DeployRow>,
    rollback: ActionOf<RollbackApp>,
) -> impl IntoView {
    view! {
        <section class=format!("{CARD} mt-6") aria-labelledby="deploys-title">
            <h2 id="deploys-title" class="text-lg font-semibold">"Deployments"</h2>
            <ul class="mt-2 divide-y divide-slate-200 dark:divide-slate-800" data-testid="deployments">
                {deployments.into_iter().map(move |dep| {
                    let n = name.clone();
                    view! {
                        <li class="flex flex-wrap items-start justify-between gap-3 py-3 text-sm">
                            <div class="min-w-0">
                                <p class="font-medium">{format!("#{} · {}", dep.number, dep.cause)}
                                    <span class=format!("ml-2 rounded-full px-2 py-0.5 text-xs {}", status_colours(dep.status))>{dep.status.as_str()}</span>
                                    {dep.current.then(|| view! { <span class="ml-1 text-xs text-emerald-700">"serving"</span> })}
                                </p>
                                <p class="truncate font-mono text-xs text-slate-500">{dep.image.clone()}{dep.digest.clone().map(|d| format!(" @ {}", &d[..d.len().min(19)]))}</p>
                                <p class="text-xs text-slate-500">{format!("{}{}", dep.created, dep.finished.clone().map(|f| format!(" → {f}")).unwrap_or_default())}</p>
                                {dep.error.clone().map(|e| view! { <p class="mt-1 whitespace-pre-wrap text-xs text-red-600">{e}</p> })}
                            </div>
                            {dep.can_rollback.then(|| view! {
                                <PostForm action=rollback>
                                    <CsrfField/>
                                    <input type="hidden" name="app" value=n.clone()/>
                                    <input type="hidden" name="number" value=dep.number.to_string()/>
                                    <button type="submit" class=BUTTON_SMALL>{format!("Roll back to #{}", dep.number)}</button>
                                </PostForm>
                            })}
                        </li>
                    }
                }).collect_view()}
            </ul>
        </section>
    }
}

/// The settings form (saving deploys them) and the delete buttons.
#[component]
fn AppSettings(d: AppInfo, update: ActionOf<UpdateApp>, act: ActionOf<AppAction>) -> impl IntoView {
    let update_value = update.value();
    let update_outcome = form_outcome(update_value);
    let n = d.row.name.clone();
    let n_delete = n.clone();
    let volume_names = d.volumes.iter().map(|v| v.name.clone()).collect::<Vec<_>>();
    view! {
        <section class=format!("{CARD} mt-6") aria-labelledby="settings-title">
            <h2 id="settings-title" class="text-lg font-semibold">"Settings"</h2>
            <p class="mb-4 text-sm text-slate-500">{if volume_names.is_empty() {
                "Saving deploys the new settings; the running version keeps serving until the new one answers."
            } else {
                "Saving deploys the new settings. This app has volumes, so the running version stops before the new one starts: expect a short gap."
            }}</p>
            <div class="mb-4"><Outcome value=update_outcome/></div>
            <PostForm action=update attr:class="space-y-4" attr:novalidate=true>
                <CsrfField/>
                <input type="hidden" name="app" value=n.clone()/>
                <SpecFields value=update_value.into() initial=d.clone()/>
                <button type="submit" class=BUTTON data-testid="save-settings">"Save and deploy"</button>
            </PostForm>
        </section>
        <details class=format!("{CARD} mt-6")>
            <summary class="cursor-pointer font-semibold text-red-700">"Delete this app"</summary>
            <p class="my-3 text-sm text-slate-500">"Its container is removed and its history is lost. This cannot be undone."</p>
            {if volume_names.is_empty() {
                view! { <ActionButton app=n_delete action=AppVerb::Delete label="Yes, delete this app" act danger=true/> }.into_any()
            } else {
                let names = volume_names.join(", ");
                view! {
                    <p class="mb-3 text-sm">{format!("Its volumes ({names}) can be kept — listed under Volumes, ready for another app — or deleted with their data.")}</p>
                    <div class="flex flex-wrap gap-2">
                        <ActionButton app=n_delete.clone() action=AppVerb::Delete label="Delete the app, keep its volumes" act danger=true/>
                        <ActionButton app=n_delete action=AppVerb::DeleteWithVolumes label="Delete the app and its data" act danger=true/>
                    </div>
                }.into_any()
            }}
        </details>
    }
}

/// One volume with a bar of how full it is (inside the caller's `<li>`: a list item in a list
/// item is not HTML, and the browser's parser would move it out, which breaks hydration).
#[component]
fn VolumeLine(v: VolumeView) -> impl IntoView {
    let mib = |b: u64| b as f64 / 1048576.0;
    let (text, pct) = match (v.used_bytes, v.total_bytes) {
        (Some(u), Some(t)) if t > 0 => (
            format!("{:.1} of {:.0} MiB used", mib(u), mib(t)),
            (u as f64 / t as f64 * 100.0).min(100.0),
        ),
        _ => (format!("{} MiB, not created yet", v.size_mb), 0.0),
    };
    view! {
        <div class="text-sm" data-volume=v.name.clone()>
            <div class="flex flex-wrap justify-between gap-2">
                <span><span class="font-mono font-medium">{v.name.clone()}</span>" at "<span class="font-mono">{v.path.clone()}</span></span>
                <span class="text-xs text-slate-500" data-testid="volume-usage">{text}</span>
            </div>
            <div class="mt-1 h-2 w-full rounded bg-slate-200 dark:bg-slate-800" role="progressbar"
                aria-valuemin="0" aria-valuemax="100" aria-valuenow=format!("{pct:.0}")>
                <div class="h-2 rounded bg-indigo-600" style=format!("width: {pct:.1}%")></div>
            </div>
        </div>
    }
}

/// The tenant's volumes, kept ones included.
#[component]
pub fn VolumesPage() -> impl IntoView {
    let remove = FormAction::of::<DeleteVolume>();
    let list = crate::codec::resource(move || remove.version().get(), |_| my_volumes());
    view! {
        <Title text="Volumes"/>
        <h1 class="text-2xl font-bold tracking-tight">"Volumes"</h1>
        <p class="mt-1 text-sm text-slate-500">"Persistent storage of your apps. A volume kept after its app was deleted keeps its data: give it to a new app by naming it in that app's volumes, or delete it here."</p>
        <section class=format!("{CARD} mt-6")>
            <div class="mb-4"><Outcome value=remove.value().into()/></div>
            <Transition fallback=|| ()>
                <ul class="divide-y divide-slate-200 dark:divide-slate-800" data-testid="volumes">
                    {move || list.get().map(|r| match r {
                        Ok(rows) if rows.is_empty() => view! { <li class="py-3 text-sm text-slate-500">"No volumes yet. Add one in an app's settings."</li> }.into_any(),
                        Ok(rows) => rows.into_iter().map(|v| {
                            let name = v.name.clone();
                            let owner = v.app.clone();
                            view! {
                                <li class="space-y-2 py-3">
                                    <VolumeLine v=v/>
                                    <div class="flex items-center justify-between text-xs text-slate-500">
                                        {match owner {
                                            Some(app) => view! { <span>"Used by "<a href=format!("/apps/{app}") class="text-indigo-700 hover:underline dark:text-indigo-400">{app.clone()}</a></span> }.into_any(),
                                            None => view! {
                                                <span>"Kept, not used by any app"</span>
                                                <details>
                                                    <summary class="cursor-pointer text-red-700">"Delete…"</summary>
                                                    <p class="my-2">"Its data is gone for good."</p>
                                                    <PostForm action=remove>
                                                        <CsrfField/>
                                                        <input type="hidden" name="name" value=name/>
                                                        <button type="submit" class=BUTTON_SMALL>"Yes, delete the volume and its data"</button>
                                                    </PostForm>
                                                </details>
                                            }.into_any(),
                                        }}
                                    </div>
                                </li>
                            }
                        }).collect_view().into_any(),
                        Err(e) => view! { <ErrorFlash error=e/> }.into_any(),
                    })}
                </ul>
            </Transition>
        </section>
    }
}

/// Registry logins for pulling private images.
#[component]
pub fn RegistriesPage() -> impl IntoView {
    let save = FormAction::of::<SaveRegistry>();
    let remove = FormAction::of::<DeleteRegistry>();
    let list = crate::codec::resource(
        move || (save.version().get(), remove.version().get()),
        |_| my_registries(),
    );
    let value = save.value();
    let form = NodeRef::new();
    reset_on_success(value, form);
    let outcome = form_outcome(value);
    view! {
        <Title text="Registry logins"/>
        <h1 class="text-2xl font-bold tracking-tight">"Registry logins"</h1>
        <p class="mt-1 text-sm text-slate-500">"Pier uses these to pull your images from registries that need a login. Passwords are stored encrypted and never shown again."</p>
        <section class=format!("{CARD} mt-6")>
            <div class="mb-4"><Outcome value=outcome/></div>
            <PostForm action=save node_ref=form attr:class="grid gap-3 sm:grid-cols-3 sm:items-start" attr:novalidate=true>
                <CsrfField/>
                <Field label="Registry" name="registry" placeholder="ghcr.io" required=true error=field_error(value, "registry")/>
                <Field label="User name" name="username" required=true autocomplete="off" error=field_error(value, "username")/>
                <Field label="Password or token" name="password" kind="password" required=true autocomplete="new-password" error=field_error(value, "password")/>
                <div class="sm:col-span-3"><button type="submit" class=BUTTON data-testid="save-registry">"Save login"</button></div>
            </PostForm>
            <div class="mt-4"><Outcome value=remove.value().into()/></div>
            <Transition fallback=|| ()>
                <ul class="mt-2 divide-y divide-slate-200 dark:divide-slate-800" data-testid="registries">
                    {move || list.get().map(|r| match r {
                        Ok(rows) if rows.is_empty() => view! { <li class="py-3 text-sm text-slate-500">"No logins yet."</li> }.into_any(),
                        Ok(rows) => rows.into_iter().map(|r| view! {
                            <li class="flex items-center justify-between py-3 text-sm">
                                <span><span class="font-mono">{r.registry.clone()}</span>{format!(" as {} · saved {}", r.username, r.saved)}</span>
                                <PostForm action=remove>
                                    <CsrfField/>
                                    <input type="hidden" name="registry" value=r.registry.clone()/>
                                    <button type="submit" class=BUTTON_SMALL>"Remove"</button>
                                </PostForm>
                            </li>
                        }).collect_view().into_any(),
                        Err(e) => view! { <ErrorFlash error=e/> }.into_any(),
                    })}
                </ul>
            </Transition>
        </section>
    }
}
