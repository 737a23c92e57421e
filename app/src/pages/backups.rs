//! An app's backups, on its page: how they are scheduled and kept, "Back up now" with live
//! progress, the snapshots with Download and Restore (after a confirmation naming what is
//! replaced), and the latest restore.

use leptos::prelude::*;

use crate::{
    components::{
        field_error, form_outcome, successes, CsrfField, ErrorFlash, Outcome, BUTTON,
        BUTTON_DANGER, BUTTON_SMALL, CARD, INPUT,
    },
    form::{ActionOf, FormAction, PostForm},
    pages::apps::poll,
    rpc::backups::*,
};

/// Bytes for people: 1.5 MB, 820 kB.
pub fn size(b: i64) -> String {
    let b = b.max(0) as f64;
    if b >= 1e9 {
        format!("{:.2} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.1} MB", b / 1e6)
    } else if b >= 1e3 {
        format!("{:.0} kB", b / 1e3)
    } else {
        format!("{b:.0} B")
    }
}

fn state_class(state: &str) -> &'static str {
    match state {
        "done" => "bg-emerald-100 text-emerald-800 dark:bg-emerald-950 dark:text-emerald-300",
        "failed" => "bg-red-100 text-red-800 dark:bg-red-950 dark:text-red-300",
        _ => "bg-amber-100 text-amber-800 dark:bg-amber-950 dark:text-amber-300",
    }
}

#[component]
fn SnapshotLine(
    app: String,
    s: SnapshotRow,
    restore: ActionOf<RestoreBackup>,
    volumes: Vec<String>,
    restore_command: String,
) -> impl IntoView {
    let dump = s.mode == "command";
    let detail = match s.state.as_str() {
        "done" if dump => format!(
            "a dump of {} from the app's backup command · {} new · took {:.0} s",
            size(s.bytes),
            size(s.added_bytes.unwrap_or(0)),
            s.duration_ms.unwrap_or(0) as f64 / 1000.0,
        ),
        "done" => format!(
            "{} in {} files · {} new · took {:.0} s{}",
            size(s.bytes),
            s.files,
            size(s.added_bytes.unwrap_or(0)),
            s.duration_ms.unwrap_or(0) as f64 / 1000.0,
            s.paused_ms
                .map(|p| format!(
                    " · app {} for {:.1} s",
                    if s.mode == "stop" {
                        "stopped"
                    } else {
                        "paused"
                    },
                    p as f64 / 1000.0
                ))
                .unwrap_or_default()
        ),
        "running" => format!(
            "{} of {} read · {} files · {}/s",
            size(s.bytes),
            size(s.total_bytes),
            s.files,
            size(s.rate.unwrap_or(0))
        ),
        "queued" => "Waiting for its turn…".into(),
        _ => String::new(),
    };
    let pct = (s.bytes * 100)
        .checked_div(s.total_bytes)
        .unwrap_or(0)
        .clamp(0, 100);
    let done = s.state == "done";
    let href = format!("/downloads/apps/{app}/backups/{}", s.id);
    let beside = app.clone();
    view! {
        <li class="flex flex-wrap items-start justify-between gap-3 py-3 text-sm" data-snapshot=s.id.to_string() data-state=s.state.clone()>
            <div class="min-w-0 flex-1">
                <p class="font-medium">{format!("#{} · {} · {}", s.id, s.created, s.trigger)}
                    <span class=format!("ml-2 rounded-full px-2 py-0.5 text-xs {}", state_class(&s.state))>{s.state.clone()}</span>
                </p>
                <p class="text-xs text-slate-500" data-testid="snapshot-detail">{detail}</p>
                {(s.state == "running").then(|| view! {
                    <div class="mt-1 h-2 w-full overflow-hidden rounded bg-slate-200 dark:bg-slate-800" role="progressbar"
                        aria-valuemin="0" aria-valuemax="100" aria-valuenow=pct.to_string()>
                        <div class="h-2 rounded bg-indigo-500 transition-all" style=format!("width: {pct}%")></div>
                    </div>
                })}
                {s.reason.clone().map(|r| view! { <p class="mt-1 whitespace-pre-wrap text-xs text-red-600" data-testid="snapshot-reason">{r}</p> })}
            </div>
            {done.then(|| view! {
                <div class="flex flex-wrap items-start gap-2">
                    <a href=href class=BUTTON_SMALL download data-testid="snapshot-download">"Download"</a>
                    <details class="text-xs" data-testid="snapshot-restore">
                        <summary class=format!("{BUTTON_SMALL} cursor-pointer list-none")>"Restore…"</summary>
                        <div class="mt-2 max-w-xs rounded border border-red-200 bg-red-50 p-3 text-red-900 dark:border-red-900 dark:bg-red-950 dark:text-red-200">
                            <p>{if dump {
                                if restore_command.is_empty() {
                                    "This backup is a dump: set a restore command in the backup settings below (for example pg_restore --clean --if-exists -U postgres -d app) to restore it.".to_string()
                                } else {
                                    format!("{app} keeps running; its restore command ({restore_command}) reads backup #{} of {} on its standard input. What it replaces is up to that command.", s.id, s.created)
                                }
                            } else {
                                format!("{app} stops, the contents of its volumes are replaced by backup #{} of {}, and it starts again. What changed since is lost.", s.id, s.created)
                            }}</p>
                            <PostForm action=restore attr:class="mt-2">
                                <CsrfField/>
                                <input type="hidden" name="app" value=app.clone()/>
                                <input type="hidden" name="id" value=s.id.to_string()/>
                                <button type="submit" class=BUTTON_DANGER data-testid="confirm-restore">{format!("Replace {app}'s data")}</button>
                            </PostForm>
                        </div>
                    </details>
                    {(!dump && !volumes.is_empty()).then(|| view! {
                        <details class="text-xs" data-testid="snapshot-restore-beside">
                            <summary class=format!("{BUTTON_SMALL} cursor-pointer list-none")>"Into a new volume…"</summary>
                            <div class="mt-2 max-w-xs rounded border border-slate-200 p-3 dark:border-slate-800">
                                <p>{format!("A volume of backup #{} goes into a new volume beside {beside}'s own; {beside} is not touched. Attach the new volume to an app to look at it.", s.id, beside = beside)}</p>
                                <PostForm action=restore attr:class="mt-2 space-y-2">
                                    <CsrfField/>
                                    <input type="hidden" name="app" value=beside.clone()/>
                                    <input type="hidden" name="id" value=s.id.to_string()/>
                                    <label class="block">"Volume"
                                        <select name="from_volume" class=format!("{INPUT} mt-1")>
                                            {volumes.iter().map(|v| view! { <option value=v.clone()>{v.clone()}</option> }).collect_view()}
                                        </select>
                                    </label>
                                    <label class="block">"New volume's name"
                                        <input name="into_volume" required class=format!("{INPUT} mt-1")
                                            value=format!("{}-{}", volumes[0].chars().take(30).collect::<String>(), s.id) data-testid="restore-into-volume"/>
                                    </label>
                                    <button type="submit" class=BUTTON_SMALL data-testid="confirm-restore-beside">"Restore into it"</button>
                                </PostForm>
                            </div>
                        </details>
                    })}
                </div>
            })}
        </li>
    }
}

#[component]
fn PolicyForm(app: String, b: BackupsInfo, save: ActionOf<SaveBackupPolicy>) -> impl IntoView {
    let v = save.value();
    let opt = |value: &'static str, label: &'static str, current: &str| {
        let selected = value == current;
        view! { <option value=value selected=selected>{label}</option> }
    };
    let err = move |f: &'static str| field_error(v, f);
    let select = format!("{INPUT} mt-1");
    view! {
        <PostForm action=save attr:class="mt-4 grid gap-3 sm:grid-cols-4" attr:novalidate=true>
            <CsrfField/>
            <input type="hidden" name="app" value=app/>
            <label class="text-sm">"Schedule"
                <select name="schedule" class=select.clone() data-testid="backup-schedule">
                    {opt("off", "Off", &b.schedule)}{opt("hourly", "Hourly", &b.schedule)}
                    {opt("daily", "Daily", &b.schedule)}{opt("weekly", "Weekly", &b.schedule)}
                </select>
            </label>
            <label class="text-sm">"At (UTC)"
                <input name="at" value=b.at.clone() class=select.clone() placeholder="03:00" data-testid="backup-at"
                    aria-invalid=move || err("at").get().is_some().to_string()/>
                <span class="text-xs text-red-600">{move || err("at").get()}</span>
            </label>
            <label class="text-sm">"Day (weekly)"
                <select name="weekday" class=select.clone()>
                    {["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"].into_iter().map(|d| {
                        let selected = d == b.weekday;
                        view! { <option value=d selected=selected>{d}</option> }
                    }).collect_view()}
                </select>
            </label>
            <label class="text-sm">"While reading"
                <select name="mode" class=select.clone() data-testid="backup-mode">
                    {opt("pause", "Pause the app", &b.mode)}{opt("stop", "Stop the app", &b.mode)}
                    {opt("command", "Run a dump command", &b.mode)}
                </select>
            </label>
            {[("keep_last", "Keep the last", b.keep_last), ("keep_daily", "and one a day for (days)", b.keep_daily), ("keep_weekly", "and one a week for (weeks)", b.keep_weekly)].into_iter().map(|(name, label, value)| view! {
                <label class="text-sm">{label}
                    <input name=name type="number" min="0" max="1000" value=value.to_string() class=select.clone()
                        aria-invalid=move || err(name).get().is_some().to_string()/>
                    <span class="text-xs text-red-600">{move || err(name).get()}</span>
                </label>
            }).collect_view()}
            <label class="text-sm sm:col-span-2">"Dump command (command mode)"
                <input name="command" value=b.command.clone() class=select.clone() placeholder="pg_dump -Fc -U postgres app"
                    data-testid="backup-command" aria-invalid=move || err("command").get().is_some().to_string()/>
                <span class="text-xs text-slate-500">"Runs inside the app, without a shell; what it prints is the backup."</span>
                <span class="text-xs text-red-600">{move || err("command").get()}</span>
            </label>
            <label class="text-sm sm:col-span-2">"Restore command"
                <input name="restore_command" value=b.restore_command.clone() class=select.clone()
                    placeholder="pg_restore --clean --if-exists -U postgres -d app" data-testid="backup-restore-command"
                    aria-invalid=move || err("restore_command").get().is_some().to_string()/>
                <span class="text-xs text-slate-500">"Gets the dump on its standard input."</span>
                <span class="text-xs text-red-600">{move || err("restore_command").get()}</span>
            </label>
            <div class="flex items-end"><button type="submit" class=BUTTON data-testid="save-backup-policy">"Save"</button></div>
        </PostForm>
    }
}

/// The backups section of an app's page (apps with volumes).
#[component]
pub fn AppBackups(name: String) -> impl IntoView {
    let save = FormAction::of::<SaveBackupPolicy>();
    let now = FormAction::of::<BackupNow>();
    let restore = FormAction::of::<RestoreBackup>();
    let n = name.clone();
    let info = crate::codec::resource(
        move || {
            (
                n.clone(),
                save.version().get(),
                now.version().get(),
                restore.version().get(),
            )
        },
        |(n, ..)| app_backups(n),
    );
    poll(info, 2);
    // The form's values: read once and after a successful save, so neither polling nor a
    // refused save resets what is typed.
    let saved = successes(save.value());
    let n = name.clone();
    let form = crate::codec::resource(move || (n.clone(), saved.get()), |(n, _)| app_backups(n));
    let save_value = save.value();
    let save_outcome = form_outcome(save_value);
    let form_app = name.clone();
    view! {
        <Transition fallback=|| ()>
            {move || info.get().map(|r| match r {
                Err(e) => view! { <ErrorFlash error=e/> }.into_any(),
                Ok(b) if !b.has_volumes && b.mode != "command" => ().into_any(),
                Ok(b) => {
                    let app = name.clone();
                    let now_app = app.clone();
                    view! {
                        <section class=format!("{CARD} mt-6") aria-labelledby="backups-title" data-testid="backups">
                            <div class="flex flex-wrap items-center justify-between gap-3">
                                <h2 id="backups-title" class="text-lg font-semibold">"Backups"</h2>
                                {b.enabled.then(|| view! {
                                    <PostForm action=now>
                                        <CsrfField/>
                                        <input type="hidden" name="app" value=now_app.clone()/>
                                        <button type="submit" class=BUTTON_SMALL data-testid="backup-now">"Back up now"</button>
                                    </PostForm>
                                })}
                            </div>
                            {(!b.enabled).then(|| view! { <p class="text-sm text-slate-500">"Backups are not set up on this server."</p> })}
                            <div class="mt-2 space-y-1"><Outcome value=now.value().into()/><Outcome value=restore.value().into()/></div>
                            <p class="text-sm" data-testid="backup-summary">
                                {b.last_success.clone().map(|t| format!("Last good backup: {t}.")).unwrap_or_else(|| "No good backup yet.".into())}
                            </p>
                            <p class="text-xs text-slate-500" data-testid="backup-storage">
                                {format!("This app's backups take {}; all of yours take {} of {}.", size(b.stored_bytes), size(b.tenant_stored_bytes), size(b.backup_quota_bytes))}
                            </p>
                            {b.overdue.then(|| view! {
                                <p class="mt-1 text-sm font-medium text-red-700" data-testid="backup-overdue">"A scheduled backup was missed: the last good one is older than the schedule allows."</p>
                            })}
                            {b.last_failure.clone().map(|f| view! {
                                <p class="mt-1 whitespace-pre-wrap text-sm text-red-700" data-testid="backup-failure">{format!("The last backup failed: {f}")}</p>
                            })}
                            {b.last_restore.clone().map(|r| {
                                let text = match r.state.as_str() {
                                    "queued" | "running" => format!("Restoring backup #{}…", r.snapshot),
                                    "done" => match &r.into_volume {
                                        Some(v) => format!("Backup #{} was restored into the volume {v} ({}).", r.snapshot, r.created),
                                        None => format!("Backup #{} was restored ({}).", r.snapshot, r.created),
                                    },
                                    _ => format!("Restoring backup #{} failed: {}", r.snapshot, r.reason.clone().unwrap_or_default()),
                                };
                                view! { <p class="mt-1 text-sm" data-testid="restore-state" data-state=r.state.clone()>{text}</p> }
                            })}
                            <ul class="mt-3 divide-y divide-slate-200 dark:divide-slate-800" data-testid="snapshots">
                                {b.snapshots.iter().cloned().map(|s| view! {
                                    <SnapshotLine app=app.clone() s restore volumes=b.volumes.clone() restore_command=b.restore_command.clone()/>
                                }).collect_view()}
                            </ul>
                        </section>
                    }.into_any()
                }
            })}
        </Transition>
        <Transition fallback=|| ()>
            {move || form.get().and_then(Result::ok).filter(|b| (b.has_volumes || b.mode == "command") && b.enabled).map(|b| view! {
                <section class=format!("{CARD} mt-6") aria-labelledby="backup-policy-title">
                    <h2 id="backup-policy-title" class="text-lg font-semibold">"Backup schedule and retention"</h2>
                    <p class="text-sm text-slate-500">"Pausing freezes the app's processes while its files are read: its data is as after a power cut, which databases recover from. Stopping is safest for anything else. A dump command (pg_dump, mysqldump, redis-cli --rdb -) backs up what the database itself writes out, while it keeps serving."</p>
                    <div class="mt-2"><Outcome value=save_outcome/></div>
                    <PolicyForm app=form_app.clone() b save/>
                </section>
            })}
        </Transition>
    }
}

/// The admin page's view of every app's backups: the last success, a failure, a missed slot.
#[component]
pub fn BackupOverview() -> impl IntoView {
    let overview = crate::codec::resource(|| (), |_| backup_overview());
    view! {
        <Transition fallback=|| ()>
            {move || overview.get().map(|r| match r {
                Err(e) => view! { <ErrorFlash error=e/> }.into_any(),
                Ok(o) => view! { {panel_backup(o.panel)} {app_backups_table(o.apps)} }.into_any(),
            })}
        </Transition>
    }
}

/// Pier's own backup: when it last succeeded, and what needs doing.
fn panel_backup(p: PanelBackupRow) -> impl IntoView {
    let bad = p.overdue || p.last_failure.is_some() || !p.passphrase_set;
    view! {
        <div class=format!("mt-4 rounded-md border px-4 py-3 text-sm {}", if bad { "border-red-200 bg-red-50 text-red-900 dark:border-red-900 dark:bg-red-950 dark:text-red-200" } else { "border-slate-200 bg-white dark:border-slate-800 dark:bg-slate-900" }) data-testid="panel-backup">
            <p>{p.last_success.map(|t| format!("Pier's own backup (database and key): last good {t}.")).unwrap_or_else(|| "Pier itself has not been backed up yet (daily at 02:30 UTC, or `pier backup`).".into())}</p>
            {p.overdue.then(|| view! { <p class="mt-1 font-medium">"Its daily backup was missed."</p> })}
            {p.last_failure.map(|f| view! { <p class="mt-1 font-medium">{format!("The last one failed: {f}")}</p> })}
            {(!p.passphrase_set).then(|| view! { <p class="mt-1 font-medium">"No recovery passphrase: without this machine's secret key the backups cannot be opened. Set one with `pier backup passphrase --passphrase-stdin`."</p> })}
        </div>
    }
}

/// Every app's backups: the last success, a failure, a missed slot.
fn app_backups_table(rows: Vec<BackupOverviewRow>) -> impl IntoView {
    let problems = rows
        .iter()
        .filter(|r| r.overdue || r.last_failure.is_some())
        .count();
    let summary_class = if problems > 0 {
        "text-sm font-medium text-red-700"
    } else {
        "text-sm text-slate-500"
    };
    view! {
        <section class=format!("{CARD} mt-6 overflow-x-auto") aria-labelledby="backups-overview" data-testid="backup-overview">
            <h2 id="backups-overview" class="text-lg font-semibold">"Backups"</h2>
            <p class=summary_class>
                {if rows.is_empty() {
                    "No app is backed up yet.".to_string()
                } else if problems > 0 {
                    format!("{problems} of {} apps need attention.", rows.len())
                } else {
                    format!("All {} apps' backups are current.", rows.len())
                }}
            </p>
            {(!rows.is_empty()).then(|| view! {
                <table class="mt-3 w-full text-left text-sm">
                    <thead class="text-xs uppercase text-slate-500">
                        <tr><th class="py-1 pr-3">"Owner"</th><th class="pr-3">"App"</th><th class="pr-3">"Schedule"</th><th class="pr-3">"Last good backup"</th><th>"Problem"</th></tr>
                    </thead>
                    <tbody>
                        {rows.into_iter().map(|r| {
                            let problem = match (r.overdue, r.last_failure) {
                                (_, Some(f)) => f,
                                (true, None) => "A scheduled backup was missed.".into(),
                                (false, None) => String::new(),
                            };
                            let app_attr = r.app.clone();
                            view! {
                                <tr class="border-t border-slate-200 dark:border-slate-800" data-app=app_attr>
                                    <td class="py-1 pr-3">{r.owner}</td>
                                    <td class="pr-3 font-mono">{r.app}</td>
                                    <td class="pr-3">{r.schedule}</td>
                                    <td class="pr-3">{r.last_success.unwrap_or_else(|| "never".into())}</td>
                                    <td class="text-red-700">{problem}</td>
                                </tr>
                            }
                        }).collect_view()}
                    </tbody>
                </table>
            })}
        </section>
    }
}

/// The admin's offsite target: an S3-compatible bucket every snapshot is copied to.
#[component]
pub fn TargetForm() -> impl IntoView {
    let save = FormAction::of::<SaveBackupTarget>();
    let remove = FormAction::of::<DeleteBackupTarget>();
    let saved = successes(save.value());
    let info = crate::codec::resource(
        move || (saved.get(), remove.version().get()),
        |_| backup_target_info(),
    );
    let v = save.value();
    let err = move |f: &'static str| field_error(v, f);
    let outcome = form_outcome(v);
    view! {
        <section class=format!("{CARD} mt-6") aria-labelledby="offsite-title" data-testid="backup-target">
            <h2 id="offsite-title" class="text-lg font-semibold">"Offsite copies"</h2>
            <p class="text-sm text-slate-500">"An S3-compatible bucket every snapshot (and Pier's own backup) is copied to, so a lost machine loses nothing. Restic encrypts everything before it leaves."</p>
            <div class="mt-2 space-y-1"><Outcome value=outcome/><Outcome value=remove.value().into()/></div>
            <Transition fallback=|| ()>
                {move || info.get().and_then(Result::ok).map(|t| {
                    let (endpoint, region, bucket, key) = t.as_ref().map(|t| (t.endpoint.clone(), t.region.clone(), t.bucket.clone(), t.access_key.clone())).unwrap_or_default();
                    let select = format!("{INPUT} mt-1");
                    let has = t.is_some();
                    view! {
                        {t.clone().map(|t| {
                            let bad = t.last_error.is_some();
                            view! {
                                <p class=if bad { "mt-2 text-sm font-medium text-red-700" } else { "mt-2 text-sm" } data-testid="target-status">
                                    {match (&t.last_error, &t.last_ok) {
                                        (Some(e), _) => format!("Copies are failing ({} in a row, {} snapshots waiting; retrying): {e}", t.failures, t.pending),
                                        (None, Some(ok)) => format!("Up to date as of {ok}; {} snapshots waiting.", t.pending),
                                        (None, None) => "No copy yet.".to_string(),
                                    }}
                                </p>
                            }
                        })}
                        <PostForm action=save attr:class="mt-3 grid gap-3 sm:grid-cols-3" attr:novalidate=true>
                            <CsrfField/>
                            {[("endpoint", "Endpoint", endpoint, "https://s3.example.com"), ("region", "Region", region, "us-east-1"), ("bucket", "Bucket", bucket, "pier-backups"), ("access_key", "Access key", key, "")].into_iter().map(|(name, label, value, ph)| view! {
                                <label class="text-sm">{label}
                                    <input name=name value=value placeholder=ph class=select.clone() aria-invalid=move || err(name).get().is_some().to_string()/>
                                    <span class="text-xs text-red-600">{move || err(name).get()}</span>
                                </label>
                            }).collect_view()}
                            <label class="text-sm">"Secret key"
                                <input name="secret_key" type="password" autocomplete="off" class=select.clone()
                                    placeholder=if has { "unchanged" } else { "" }
                                    aria-invalid=move || err("secret").get().is_some().to_string()/>
                                <span class="text-xs text-red-600">{move || err("secret").get()}</span>
                            </label>
                            <div class="flex items-end"><button type="submit" class=BUTTON data-testid="save-target">"Save"</button></div>
                        </PostForm>
                        {has.then(|| view! {
                            <PostForm action=remove attr:class="mt-3">
                                <CsrfField/>
                                <button type="submit" class=BUTTON_DANGER>"Stop copying offsite"</button>
                            </PostForm>
                        })}
                    }
                })}
            </Transition>
        </section>
    }
}
