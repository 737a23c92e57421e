//! Forms that post to a server function: [`PostForm`] and the [`FormAction`] it reports to.
//!
//! Leptos's `ActionForm` turns the form into the server function's argument struct (serde_qs,
//! one deserialiser per form type), and its `ServerAction` turns the struct back into a query
//! string to send it (one serialiser and one client per form type): about 2.5 KB of brotli'd
//! wasm for every form a page has. The server reads the same URL-encoded body either way (it is
//! what the browser posts before the page hydrates), so [`PostForm`] sends the browser's own
//! `FormData` as it is and decodes only the answer. Nothing here depends on the form's type but
//! its server function's path and its answer's type, so every form with the same answer (most
//! answer [`Done`](crate::rpc::Done)) shares one copy of the code.
//!
//! The server function still checks every field: the browser no longer refuses a form it could
//! not parse (the server's field errors say what is wrong instead).

use leptos::{either::Either, ev::SubmitEvent, html, prelude::*};
use serde::de::DeserializeOwned;
use server_fn::ServerFn;

use crate::error::AppError;

/// What a form's server function last answered, how many answers came, whether one is awaited.
/// The same three signals `ServerAction` offers, which pages refetch and flash on.
pub struct FormAction<O: Send + Sync + 'static> {
    path: &'static str,
    value: RwSignal<Option<Result<O, AppError>>>,
    version: RwSignal<usize>,
    /// Submissions awaiting their answer (counted in the browser only).
    #[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
    in_flight: RwSignal<usize>,
    pending: Signal<bool>,
}

/// The [`FormAction`] of server function `S`, named by the function (`ActionOf<SetQuotas>`).
pub type ActionOf<S> = FormAction<<S as ServerFn>::Output>;

impl<O: Send + Sync + 'static> Clone for FormAction<O> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<O: Send + Sync + 'static> Copy for FormAction<O> {}

impl<O: DeserializeOwned + Send + Sync + 'static> FormAction<O> {
    /// The action of server function `S` (its path; its answer's type is `O`).
    pub fn of<S: ServerFn<Output = O, Error = AppError>>() -> Self {
        let in_flight = RwSignal::new(0);
        FormAction {
            path: S::PATH,
            value: RwSignal::new(None),
            version: RwSignal::new(0),
            in_flight,
            pending: Signal::derive(move || in_flight.get() > 0),
        }
    }

    /// The last answer (None before the first).
    pub fn value(&self) -> RwSignal<Option<Result<O, AppError>>> {
        self.value
    }

    /// Counts answers: a resource that reads it loads again after each.
    pub fn version(&self) -> RwSignal<usize> {
        self.version
    }

    /// A submission is awaiting its answer.
    pub fn pending(&self) -> Signal<bool> {
        self.pending
    }

    /// Sends the form of `ev` (the browser's own submission is prevented) and records the answer.
    fn submit(self, ev: SubmitEvent) {
        if ev.default_prevented() {
            return;
        }
        ev.prevent_default();
        #[cfg(feature = "hydrate")]
        {
            let body = browser::form_body(&ev);
            self.in_flight.update(|n| *n += 1);
            leptos::task::spawn_local(async move {
                use server_fn::error::{IntoAppError, ServerFnErrorErr};
                // Errors as Leptos's own client names them (`AppError`'s mapping of them).
                let answer = match body {
                    Some(body) => browser::post(self.path, body).await.and_then(|bytes| {
                        serde_json::from_slice::<O>(&bytes).map_err(|e| {
                            ServerFnErrorErr::Deserialization(e.to_string()).into_app_error()
                        })
                    }),
                    None => Err(ServerFnErrorErr::Serialization(
                        "the form's fields could not be read".into(),
                    )
                    .into_app_error()),
                };
                // The page may be gone by now (its signals with it): then nobody is told.
                _ = self.value.try_set(Some(answer));
                _ = self.version.try_update(|n| *n += 1);
                _ = self.in_flight.try_update(|n| *n = n.saturating_sub(1));
            });
        }
    }
}

/// A `<form>` that posts to `action`'s server function: natively before the page hydrates (the
/// server then sends the browser back), with `fetch` after, reporting to `action`.
#[component]
pub fn PostForm<O>(
    action: FormAction<O>,
    /// The `<form>` element, for a page that resets it.
    #[prop(optional)]
    node_ref: Option<NodeRef<html::Form>>,
    children: Children,
) -> impl IntoView
where
    O: DeserializeOwned + Send + Sync + 'static,
{
    let form = html::form()
        .action(action.path)
        .method("post")
        .on(leptos::ev::submit, move |ev| action.submit(ev))
        .child(children());
    match node_ref {
        Some(r) => Either::Left(form.node_ref(r)),
        None => Either::Right(form),
    }
}

#[cfg(feature = "hydrate")]
mod browser {
    use leptos::ev::SubmitEvent;
    use server_fn::{
        client::{browser::BrowserClient, Client},
        error::FromServerFnError,
        request::{browser::BrowserRequest, ClientReq},
        response::ClientRes,
        Bytes,
    };
    use wasm_bindgen::JsCast;
    use web_sys::{
        FormData, HtmlButtonElement, HtmlFormElement, HtmlInputElement, UrlSearchParams,
    };

    use crate::error::AppError;

    /// The form's fields URL-encoded as the browser would post them, with the button that
    /// submitted it when that has a name.
    pub fn form_body(ev: &SubmitEvent) -> Option<String> {
        let form: HtmlFormElement = ev.target()?.dyn_into().ok()?;
        let data = FormData::new_with_form(&form).ok()?;
        let submitter = ev.submitter();
        let named = submitter
            .as_ref()
            .and_then(|s| {
                if let Some(b) = s.dyn_ref::<HtmlButtonElement>() {
                    Some((b.name(), b.value()))
                } else {
                    s.dyn_ref::<HtmlInputElement>()
                        .map(|i| (i.name(), i.value()))
                }
            })
            .filter(|(name, _)| !name.is_empty());
        if let Some((name, value)) = named {
            data.append_with_str(&name, &value).ok()?;
        }
        let params = UrlSearchParams::new_with_str_sequence_sequence(&data).ok()?;
        params.to_string().as_string()
    }

    /// POSTs `body` to the server function at `path` and returns its answer's bytes, or the
    /// error it answered with; follows the redirect a server function asks for (as Leptos's
    /// client does for a `ServerAction`).
    pub async fn post(path: &str, body: String) -> Result<Bytes, AppError> {
        let req = <BrowserRequest as ClientReq<AppError>>::try_new_post(
            path,
            "application/x-www-form-urlencoded",
            "application/json",
            body,
        )?;
        let res = <BrowserClient as Client<AppError>>::send(req).await?;
        let status = ClientRes::<AppError>::status(&res);
        let location = ClientRes::<AppError>::location(&res);
        let redirect = ClientRes::<AppError>::has_redirect(&res);
        let bytes = ClientRes::<AppError>::try_into_bytes(res).await?;
        if (400..=599).contains(&status) {
            return Err(AppError::de(bytes));
        }
        if (300..=399).contains(&status) || redirect {
            server_fn::redirect::call_redirect_hook(&location);
        }
        Ok(bytes)
    }
}
