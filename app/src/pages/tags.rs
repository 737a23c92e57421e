//! The app page's "Image updates" section: follow the image tag, check for an update, and the
//! webhook URL a registry calls when the tag is pushed.

use leptos::prelude::*;

use crate::{
    components::{CsrfField, ErrorFlash, Outcome, BUTTON_SMALL, CARD, INPUT},
    form::{FormAction, PostForm},
    rpc::tags::{image_updates, CheckForUpdate, FollowTag, NewTagWebhook},
};

#[component]
pub fn ImageUpdates(name: String) -> impl IntoView {
    let follow = FormAction::of::<FollowTag>();
    let check = FormAction::of::<CheckForUpdate>();
    let hook = FormAction::of::<NewTagWebhook>();
    let n = name.clone();
    let info = crate::codec::resource(
        move || {
            (
                n.clone(),
                follow.version().get(),
                check.version().get(),
                hook.version().get(),
            )
        },
        |(n, ..)| image_updates(n),
    );
    let outcome = Signal::derive(move || {
        hook.value()
            .get()
            .or_else(|| check.value().get())
            .or_else(|| follow.value().get())
    });
    view! {
        <Transition fallback=|| ()>
            {move || info.get().map(|r| match r {
                Err(e) => view! { <ErrorFlash error=e/> }.into_any(),
                Ok(u) => {
                    let app = name.clone();
                    let (a1, a2, a3) = (app.clone(), app.clone(), app);
                    view! {
                        <section class=format!("{CARD} mt-6") aria-labelledby="updates-title" data-testid="image-updates">
                            <h2 id="updates-title" class="text-lg font-semibold">"Image updates"</h2>
                            <div class="mt-2"><Outcome value=outcome/></div>
                            {match u.tag.clone() {
                                None => view! { <p class="text-sm text-slate-500">"The image is pinned by digest: there is no tag to follow."</p> }.into_any(),
                                Some(tag) => view! {
                                    <p class="text-sm">"Tag "<span class="font-mono">{tag}</span></p>
                                    <dl class="mt-2 grid grid-cols-[auto,1fr] gap-x-3 gap-y-1 text-xs">
                                        <dt class="text-slate-500">"Running"</dt>
                                        <dd class="font-mono break-all" data-testid="serving-digest">{u.serving_digest.clone().unwrap_or_else(|| "—".into())}</dd>
                                        <dt class="text-slate-500">"In the registry"</dt>
                                        <dd class="font-mono break-all" data-testid="remote-digest">{u.remote_digest.clone().unwrap_or_else(|| "not checked yet".into())}</dd>
                                        <dt class="text-slate-500">"Checked"</dt>
                                        <dd>{u.checked.clone().unwrap_or_else(|| "never".into())}</dd>
                                    </dl>
                                    {u.error.clone().map(|e| view! { <p class="mt-1 text-sm text-red-700" data-testid="tag-error">{format!("The last check failed: {e}")}</p> })}
                                    <div class="mt-3 flex flex-wrap items-center gap-3">
                                        <PostForm action=follow attr:class="flex items-center gap-2">
                                            <CsrfField/>
                                            <input type="hidden" name="app" value=a1/>
                                            {(!u.follow).then(|| view! { <input type="hidden" name="follow" value="on"/> })}
                                            <button type="submit" class=BUTTON_SMALL data-testid="follow-tag">
                                                {if u.follow { "Stop following the tag" } else { "Redeploy when the tag moves" }}
                                            </button>
                                        </PostForm>
                                        <PostForm action=check>
                                            <CsrfField/>
                                            <input type="hidden" name="app" value=a2/>
                                            <button type="submit" class=BUTTON_SMALL data-testid="check-update">"Check for update"</button>
                                        </PostForm>
                                    </div>
                                    <p class="mt-3 text-xs text-slate-500">{if u.follow {
                                        "Following: the registry is asked every few hours, and at once when it calls the webhook below; a new digest is deployed like any other (healthy first, the old one kept if it fails)."
                                    } else {
                                        "Not following: checks only show what the registry has."
                                    }}</p>
                                    <label class="mt-3 block text-xs text-slate-500">"Webhook (POST, no token: the URL is the secret)"
                                        <input readonly class=format!("{INPUT} mt-1 font-mono text-xs") value=u.webhook_url.clone() data-testid="tag-webhook"/>
                                    </label>
                                    <PostForm action=hook attr:class="mt-2">
                                        <CsrfField/>
                                        <input type="hidden" name="app" value=a3/>
                                        <button type="submit" class=BUTTON_SMALL>"New webhook URL"</button>
                                    </PostForm>
                                }.into_any(),
                            }}
                        </section>
                    }.into_any()
                }
            })}
        </Transition>
    }
}
