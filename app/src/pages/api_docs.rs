use leptos::prelude::*;
use leptos_meta::Title;

use crate::{
    components::{ErrorFlash, CARD},
    rpc::tokens::api_reference,
};

/// A readable reference of the REST API, generated from the same OpenAPI document that
/// `/api/v1/openapi.json` serves.
#[component]
pub fn ApiDocsPage() -> impl IntoView {
    let endpoints = crate::codec::resource(|| (), |_| api_reference());
    let method_class = |m: &str| match m {
        "GET" => "bg-sky-100 text-sky-800 dark:bg-sky-900 dark:text-sky-100",
        "POST" => "bg-emerald-100 text-emerald-800 dark:bg-emerald-900 dark:text-emerald-100",
        "PATCH" => "bg-amber-100 text-amber-800 dark:bg-amber-900 dark:text-amber-100",
        _ => "bg-red-100 text-red-800 dark:bg-red-900 dark:text-red-100",
    };
    view! {
        <Title text="API reference"/>
        <h1 class="text-2xl font-bold tracking-tight">"API reference"</h1>
        <div class=format!("{CARD} mt-6 space-y-2 text-sm")>
            <p>"Base URL " <code class="font-mono">"/api/v1"</code> ", JSON in and out. Send a personal access token from your "
               <a href="/account" class="text-indigo-600 hover:underline">"Account"</a> " page:"</p>
            <pre class="overflow-x-auto rounded-md bg-slate-900 p-3 font-mono text-xs text-slate-100">"curl -H \"Authorization: Bearer $PIER_TOKEN\" https://<this panel>/api/v1/tokens"</pre>
            <p>"Errors always look like " <code class="font-mono text-xs">"{\"error\": {\"code\", \"message\", \"fields\"?}}"</code>
               ". The machine-readable document: " <a href="/api/v1/openapi.json" class="text-indigo-600 hover:underline" rel="external">"openapi.json"</a> "."</p>
        </div>
        <Suspense fallback=|| view! { <p class="mt-6 text-sm text-slate-500">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match endpoints.await {
                    Ok(list) => view! {
                        <table class=format!("{CARD} mt-6 w-full text-left text-sm") data-testid="endpoints">
                            <thead class="text-xs uppercase tracking-wide text-slate-500">
                                <tr><th class="py-2 pr-3">"Method"</th><th class="py-2 pr-3">"Path"</th><th class="py-2 pr-3">"What it does"</th><th class="py-2">"Answers"</th></tr>
                            </thead>
                            <tbody class="divide-y divide-slate-200 dark:divide-slate-800">
                                {list.into_iter().map(|e| view! {
                                    <tr class="align-top">
                                        <td class="py-2 pr-3"><span class=format!("rounded px-2 py-0.5 font-mono text-xs font-semibold {}", method_class(&e.method))>{e.method.clone()}</span></td>
                                        <td class="py-2 pr-3 font-mono text-xs">{e.path.clone()}</td>
                                        <td class="py-2 pr-3">{e.summary.clone()}</td>
                                        <td class="py-2 font-mono text-xs text-slate-500">{e.statuses.join(" ")}</td>
                                    </tr>
                                }).collect_view()}
                            </tbody>
                        </table>
                    }.into_any(),
                    Err(e) => view! { <div class="mt-6"><ErrorFlash error=e/></div> }.into_any(),
                }
            })}
        </Suspense>
    }
}
