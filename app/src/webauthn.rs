//! The browser's half of passkeys: `navigator.credentials.create()` and `.get()` with the
//! options the server made, the answer back as JSON. Browsers with WebAuthn's JSON helpers
//! (`parseCreationOptionsFromJSON`, `toJSON`) use them; others get the same conversion by hand.
//! The script ships as a module file under `/pkg` (allowed by the panel's CSP), never `eval`.

/// A passkey ceremony that did not finish in the browser, as a person should read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrowserRefused(pub String);

#[cfg(feature = "hydrate")]
mod js {
    use wasm_bindgen::prelude::*;

    #[wasm_bindgen(inline_js = r#"
const toBytes = (s) => {
  const b = s.replace(/-/g, "+").replace(/_/g, "/");
  const padded = b + "=".repeat((4 - (b.length % 4)) % 4);
  return Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
};
const toB64u = (buf) =>
  btoa(String.fromCharCode(...new Uint8Array(buf)))
    .replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
const ids = (list) => (list || []).map((c) => ({ ...c, id: toBytes(c.id) }));
function creationOptions(o) {
  if (PublicKeyCredential.parseCreationOptionsFromJSON) {
    return PublicKeyCredential.parseCreationOptionsFromJSON(o);
  }
  return { ...o, challenge: toBytes(o.challenge), user: { ...o.user, id: toBytes(o.user.id) },
           excludeCredentials: ids(o.excludeCredentials) };
}
function requestOptions(o) {
  if (PublicKeyCredential.parseRequestOptionsFromJSON) {
    return PublicKeyCredential.parseRequestOptionsFromJSON(o);
  }
  return { ...o, challenge: toBytes(o.challenge), allowCredentials: ids(o.allowCredentials) };
}
function answer(c) {
  if (typeof c.toJSON === "function") return c.toJSON();
  const r = c.response;
  const out = { id: c.id, rawId: toB64u(c.rawId), type: c.type,
                clientExtensionResults: c.getClientExtensionResults(),
                response: { clientDataJSON: toB64u(r.clientDataJSON) } };
  if (r.attestationObject) {
    out.response.attestationObject = toB64u(r.attestationObject);
    out.response.transports = r.getTransports ? r.getTransports() : [];
  } else {
    out.response.authenticatorData = toB64u(r.authenticatorData);
    out.response.signature = toB64u(r.signature);
    out.response.userHandle = r.userHandle ? toB64u(r.userHandle) : null;
  }
  return out;
}
export function pierPasskeysSupported() {
  return typeof window.PublicKeyCredential === "function" && !!navigator.credentials;
}
export async function pierCreatePasskey(json) {
  const o = JSON.parse(json);
  const c = await navigator.credentials.create({ publicKey: creationOptions(o.publicKey) });
  return JSON.stringify(answer(c));
}
export async function pierGetPasskey(json) {
  const o = JSON.parse(json);
  const c = await navigator.credentials.get({ publicKey: requestOptions(o.publicKey) });
  return JSON.stringify(answer(c));
}
"#)]
    extern "C" {
        #[wasm_bindgen(js_name = pierPasskeysSupported)]
        pub fn supported() -> bool;
        #[wasm_bindgen(catch, js_name = pierCreatePasskey)]
        pub async fn create(options: String) -> Result<JsValue, JsValue>;
        #[wasm_bindgen(catch, js_name = pierGetPasskey)]
        pub async fn get(options: String) -> Result<JsValue, JsValue>;
    }
}

/// The browser's answer as JSON text, or why it gave none.
#[cfg(feature = "hydrate")]
fn answered(
    r: Result<wasm_bindgen::JsValue, wasm_bindgen::JsValue>,
) -> Result<String, BrowserRefused> {
    r.map(|v| v.as_string().unwrap_or_default())
        .map_err(refused)
}

#[cfg(feature = "hydrate")]
fn refused(e: wasm_bindgen::JsValue) -> BrowserRefused {
    use wasm_bindgen::JsCast;
    let name = e
        .dyn_ref::<web_sys::DomException>()
        .map(|d| d.name())
        .unwrap_or_default();
    BrowserRefused(match name.as_str() {
        "NotAllowedError" => "The passkey prompt was closed or timed out.".into(),
        "InvalidStateError" => "This device already holds a passkey for your account.".into(),
        "SecurityError" => {
            "The browser refused passkeys at this address (HTTPS or localhost is needed).".into()
        }
        _ => "The browser could not use a passkey here.".into(),
    })
}

/// Whether this browser can use passkeys at all (false on the server).
pub fn supported() -> bool {
    #[cfg(feature = "hydrate")]
    return js::supported();
    #[cfg(not(feature = "hydrate"))]
    false
}

/// Makes a passkey with the server's creation options; the answer as JSON.
pub async fn create(options: String) -> Result<String, BrowserRefused> {
    #[cfg(feature = "hydrate")]
    return answered(js::create(options).await);
    #[cfg(not(feature = "hydrate"))]
    {
        let _ = options;
        Err(BrowserRefused("Passkeys work in the browser.".into()))
    }
}

/// Signs the server's challenge with a passkey; the answer as JSON.
pub async fn get(options: String) -> Result<String, BrowserRefused> {
    #[cfg(feature = "hydrate")]
    return answered(js::get(options).await);
    #[cfg(not(feature = "hydrate"))]
    {
        let _ = options;
        Err(BrowserRefused("Passkeys work in the browser.".into()))
    }
}
