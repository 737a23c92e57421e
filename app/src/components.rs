//! Small building blocks shared by the pages: form fields with inline errors, the CSRF field,
//! flash messages and buttons.

use leptos::prelude::*;

use crate::{error::AppError, rpc::Done, SessionCtx};

pub const INPUT: &str =
    "block w-full rounded-md border border-slate-300 bg-white px-3 py-2 text-sm shadow-sm \
     focus:border-indigo-500 focus:outline-none focus:ring-2 focus:ring-indigo-500/40 \
     aria-[invalid=true]:border-red-500 dark:border-slate-700 dark:bg-slate-900";
pub const BUTTON: &str = "inline-flex items-center justify-center gap-2 rounded-md bg-indigo-600 px-4 py-2 \
     text-sm font-semibold text-white shadow-sm hover:bg-indigo-500 focus:outline-none focus:ring-2 \
     focus:ring-indigo-500/50 disabled:opacity-60";
pub const BUTTON_SMALL: &str =
    "rounded-md border border-slate-300 px-2.5 py-1 text-xs font-medium \
     hover:bg-slate-100 dark:border-slate-700 dark:hover:bg-slate-800";
pub const BUTTON_DANGER: &str =
    "rounded-md bg-red-600 px-2.5 py-1 text-xs font-semibold text-white hover:bg-red-500";
pub const CARD: &str = "rounded-xl border border-slate-200 bg-white p-6 shadow-sm dark:border-slate-800 dark:bg-slate-900";

/// The hidden field every state-changing form carries.
#[component]
pub fn CsrfField() -> impl IntoView {
    let session = expect_context::<SessionCtx>().0;
    let token = move || {
        session
            .get()
            .and_then(Result::ok)
            .map(|s| s.csrf)
            .unwrap_or_default()
    };
    view! { <input type="hidden" name="csrf_token" value=token/> }
}

/// An action's last result for the flash above its form; a refusal with field errors shows at
/// the fields instead.
pub fn form_outcome<S>(value: S) -> Signal<Option<Result<Done, AppError>>>
where
    S: With<Value = Option<Result<Done, AppError>>> + Send + Sync + 'static,
{
    Signal::derive(move || {
        value.with(|v| match v {
            Some(Err(e)) if !e.fields.is_empty() => None,
            other => other.clone(),
        })
    })
}

/// Counts an action's successful results: what reads a form's stored values again after a
/// save that went through, and not after a refusal (which would reset what was typed).
pub fn successes<T, S>(value: S) -> RwSignal<u32>
where
    T: Send + Sync + 'static,
    S: With<Value = Option<Result<T, AppError>>> + Send + Sync + 'static,
{
    let n = RwSignal::new(0u32);
    Effect::new(move |_| {
        if value.with(|v| matches!(v, Some(Ok(_)))) {
            n.update(|n| *n += 1);
        }
    });
    n
}

/// The message a form field gets from the last result of its action.
pub fn field_error<T, S>(value: S, field: &'static str) -> Signal<Option<String>>
where
    T: Send + Sync + 'static,
    S: With<Value = Option<Result<T, AppError>>> + Send + Sync + 'static,
{
    Signal::derive(move || {
        value.with(|v| match v {
            Some(Err(e)) => e.field(field),
            _ => None,
        })
    })
}

/// A labelled input with its error shown beneath and announced to screen readers.
#[component]
pub fn Field(
    label: &'static str,
    name: &'static str,
    #[prop(default = "text")] kind: &'static str,
    #[prop(optional, into)] value: String,
    #[prop(optional)] placeholder: &'static str,
    #[prop(optional)] autocomplete: &'static str,
    #[prop(optional)] hint: &'static str,
    #[prop(optional)] required: bool,
    #[prop(into)] error: Signal<Option<String>>,
) -> impl IntoView {
    let id = format!("f-{name}");
    let err_id = format!("{id}-error");
    let described = err_id.clone();
    view! {
        <div class="space-y-1">
            <label for=id.clone() class="block text-sm font-medium">{label}</label>
            <input
                id=id
                name=name
                type=kind
                value=value
                placeholder=placeholder
                autocomplete=autocomplete
                required=required
                class=INPUT
                aria-invalid=move || error.get().is_some().to_string()
                aria-describedby=described
            />
            {(!hint.is_empty()).then(|| view! { <p class="text-xs text-slate-500">{hint}</p> })}
            <p id=err_id class="text-sm text-red-600 dark:text-red-400" role="alert">
                {move || error.get()}
            </p>
        </div>
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    Success,
    Error,
    Info,
}

#[component]
pub fn Flash(tone: Tone, children: Children) -> impl IntoView {
    let class = match tone {
        Tone::Success => "border-emerald-300 bg-emerald-50 text-emerald-900 dark:border-emerald-800 dark:bg-emerald-950 dark:text-emerald-100",
        Tone::Error => "border-red-300 bg-red-50 text-red-900 dark:border-red-800 dark:bg-red-950 dark:text-red-100",
        Tone::Info => "border-sky-300 bg-sky-50 text-sky-900 dark:border-sky-800 dark:bg-sky-950 dark:text-sky-100",
    };
    let role = if tone == Tone::Error {
        "alert"
    } else {
        "status"
    };
    view! {
        <div role=role data-flash=match tone { Tone::Success => "success", Tone::Error => "error", Tone::Info => "info" }
            class=format!("rounded-lg border px-4 py-3 text-sm {class}")>
            {children()}
        </div>
    }
}

/// Shows the outcome of an admin or account action: its message, and a link to copy.
#[component]
pub fn Outcome(value: Signal<Option<Result<Done, AppError>>>) -> impl IntoView {
    move || {
        value.get().map(|r| match r {
            Ok(done) => view! {
                <Flash tone=Tone::Success>
                    <p>{done.message}</p>
                    {done.copy.map(|l| view! {
                        <input readonly value=l data-testid="link"
                            class=format!("{INPUT} mt-2 font-mono text-xs")/>
                    })}
                </Flash>
            }
            .into_any(),
            Err(e) => view! { <ErrorFlash error=e/> }.into_any(),
        })
    }
}

#[component]
pub fn ErrorFlash(error: AppError) -> impl IntoView {
    let details = error
        .fields
        .iter()
        .map(|(_, m)| view! { <li>{m.clone()}</li> })
        .collect_view();
    view! {
        <Flash tone=Tone::Error>
            <p>{error.message.clone()}</p>
            <ul class="mt-1 list-disc pl-5">{details}</ul>
        </Flash>
    }
}

/// Clears a form once its action succeeded, ready for the next entry.
pub fn reset_on_success<T, S>(value: S, form: NodeRef<leptos::html::Form>)
where
    T: Send + Sync + 'static,
    S: With<Value = Option<Result<T, AppError>>> + Send + Sync + 'static,
{
    Effect::new(move |_| {
        if value.with(|v| matches!(v, Some(Ok(_)))) {
            if let Some(f) = form.get() {
                f.reset();
            }
        }
    });
}

/// A full-page navigation, so the next page is rendered afresh by the server with the new
/// session (and its new CSRF token).
pub fn hard_navigate(to: &str) {
    #[cfg(feature = "hydrate")]
    {
        let _ = window().location().set_href(to);
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = to;
}

/// Percent-encodes a local path for use in a query string.
pub fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Where to go after signing in: `next` when it is a path on this site, `/` otherwise.
///
/// Browsers drop tabs and newlines from URLs and read `\\` as `/`, so `/\t/evil.example` or
/// `/\\evil.example` would leave the site; the value is therefore parsed, not pattern-matched:
/// percent-decoded once more (what a later hop might do), then it must start with exactly one
/// `/` and hold no control character or backslash anywhere. The original text is returned.
pub fn safe_next(next: Option<String>) -> String {
    next.filter(|n| local_path(n)).unwrap_or_else(|| "/".into())
}

fn local_path(raw: &str) -> bool {
    let Some(decoded) = percent_decode(raw) else {
        return false;
    };
    // Both must pass: the raw text is what the browser gets, the decoded one what a later hop
    // may make of it.
    raw.len() <= 2048
        && [raw, decoded.as_str()].iter().all(|s| {
            let mut chars = s.chars();
            chars.next() == Some('/')
                && !matches!(chars.next(), Some('/' | '\\'))
                && !s.chars().any(|c| c.is_control() || c == '\\')
        })
}

/// `%XX` sequences decoded; `None` for a malformed escape or bytes that are not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The message of a server function's error, with its field messages when it has them.
pub fn said(e: AppError) -> String {
    match e.fields.is_empty() {
        true => e.message,
        false => e
            .fields
            .into_iter()
            .map(|(_, m)| m)
            .collect::<Vec<_>>()
            .join(" "),
    }
}

/// The CSRF token of this session, for calls made outside a form.
pub fn csrf_now() -> String {
    expect_context::<SessionCtx>()
        .0
        .get_untracked()
        .and_then(Result::ok)
        .map(|s| s.csrf)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_is_always_local() {
        for good in [
            "/",
            "/account",
            "/admin/users?page=2#top",
            "/apps/web%20site",
            "/a//b",
            "/login?next=/account",
        ] {
            assert_eq!(safe_next(Some(good.into())), good, "{good:?}");
        }
        for bad in [
            "",
            "account",
            "//evil.example",
            "///evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "/\t/evil.example",
            "/\n/evil.example",
            "/\r\n/evil.example",
            "/%09/evil.example",
            "/%0a/evil.example",
            "/%0D%0A/evil.example",
            "/%2F/evil.example",
            "/%2fevil.example",
            "/%5Cevil.example",
            "/%5c%5cevil.example",
            "/\u{0}/evil.example",
            "/\u{7f}/evil.example",
            "/\u{85}/evil.example",
            "/ok/%00",
            "/ok\\..\\x",
            "/%zz",
            "/%",
            "/%e2%28",
            "https://evil.example",
            "http:/evil.example",
            "javascript:alert(1)",
            " /account",
            "\t/account",
        ] {
            assert_eq!(safe_next(Some(bad.into())), "/", "{bad:?}");
        }
        assert_eq!(safe_next(Some(format!("/{}", "a".repeat(3000)))), "/");
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn encodes_query_components() {
        assert_eq!(
            encode_component("/admin/users?x=1&y"),
            "/admin/users%3Fx%3D1%26y"
        );
    }
}
