use leptos::prelude::*;
use leptos_meta::Title;

use crate::{api::SessionInfo, components::CARD, SessionCtx};

/// The signed-in home: the tenant's apps and what their quota allows.
#[component]
pub fn Dashboard() -> impl IntoView {
    let session = expect_context::<SessionCtx>().0;
    let me = move || {
        session
            .get()
            .and_then(Result::ok)
            .and_then(|s: SessionInfo| s.me)
    };
    let stat = |label: &'static str, value: String| {
        view! {
            <div class="rounded-lg border border-slate-200 px-4 py-3 dark:border-slate-800">
                <dt class="text-xs uppercase tracking-wide text-slate-500">{label}</dt>
                <dd class="mt-1 text-lg font-semibold">{value}</dd>
            </div>
        }
    };
    view! {
        <Title text="Apps"/>
        <div class="flex items-end justify-between gap-4">
            <div>
                <h1 class="text-2xl font-bold tracking-tight">"Your apps"</h1>
                <p class="mt-1 text-sm text-slate-500">"Containers Pier runs for you, served over HTTPS at your domains."</p>
            </div>
        </div>
        {move || me().map(|me| view! {
            <dl class="mt-6 grid grid-cols-1 gap-3 sm:grid-cols-3" aria-label="Your quota">
                {stat("Apps allowed", me.max_apps.to_string())}
                {stat("Memory", format!("{} MiB", me.max_memory_mb))}
                {stat("CPUs", me.max_cpus.clone())}
            </dl>
        })}
        <section class=format!("{CARD} mt-6 text-center") data-testid="apps-empty">
            <div aria-hidden="true" class="mx-auto mb-4 h-12 w-12 rounded-xl border-2 border-dashed border-slate-300 dark:border-slate-700"></div>
            <h2 class="text-lg font-semibold">"No apps yet"</h2>
            <p class="mx-auto mt-2 max-w-md text-sm text-slate-500">
                "Once app deployment is enabled on this Pier, you will paste a container image here, add its \
                 environment variables, and get it running at your domain."
            </p>
        </section>
    }
}
