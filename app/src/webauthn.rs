//! The browser's half of passkeys: `navigator.credentials.create()` and `.get()` with the
//! options the server made, the answer back as JSON. Browsers with WebAuthn's JSON helpers
//! (`PublicKeyCredential.parseCreationOptionsFromJSON`, `.parseRequestOptionsFromJSON` and the
//! credential's `toJSON`) use them; others get the same conversion here: the base64url fields
//! the server sends become bytes, the bytes the authenticator answers become base64url.
//! Written in Rust rather than as a script of its own, so the page loads no extra file (and none
//! whose name does not change with its content).

/// A passkey ceremony that did not finish in the browser, as a person should read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrowserRefused(pub String);

#[cfg(feature = "hydrate")]
mod js {
    use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
    use js_sys::{Array, ArrayBuffer, Function, Object, Reflect, Uint8Array, JSON};
    use wasm_bindgen::{JsCast, JsValue};
    use wasm_bindgen_futures::JsFuture;

    fn get(o: &JsValue, key: &str) -> JsValue {
        Reflect::get(o, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
    }

    fn set(o: &JsValue, key: &str, value: &JsValue) -> Result<(), JsValue> {
        Reflect::set(o, &JsValue::from_str(key), value).map(|_| ())
    }

    /// `o.method(args…)` when `o` has such a method; `None` when it has not.
    fn call(o: &JsValue, method: &str, args: &Array) -> Option<Result<JsValue, JsValue>> {
        let f = get(o, method).dyn_into::<Function>().ok()?;
        Some(f.apply(o, args))
    }

    fn static_helper(name: &str) -> Option<Function> {
        get(&get(&js_sys::global(), "PublicKeyCredential"), name)
            .dyn_into::<Function>()
            .ok()
    }

    /// base64url text (as the server writes it) to bytes.
    fn bytes(v: &JsValue) -> Result<JsValue, JsValue> {
        let text = v.as_string().ok_or("not base64url text")?;
        let raw = URL_SAFE_NO_PAD
            .decode(text.trim_end_matches('='))
            .map_err(|_| "not base64url text")?;
        Ok(Uint8Array::from(raw.as_slice()).into())
    }

    /// An ArrayBuffer to base64url text.
    fn text(v: &JsValue) -> JsValue {
        match v.dyn_ref::<ArrayBuffer>() {
            Some(buf) => URL_SAFE_NO_PAD.encode(Uint8Array::new(buf).to_vec()).into(),
            None => JsValue::NULL,
        }
    }

    /// Each `{id}` of a credential list with its id as bytes.
    fn credential_ids(o: &JsValue, key: &str) -> Result<(), JsValue> {
        if let Some(list) = get(o, key).dyn_ref::<Array>() {
            for c in list.iter() {
                set(&c, "id", &bytes(&get(&c, "id"))?)?;
            }
        }
        Ok(())
    }

    /// The server's `{"publicKey": …}` as the browser's credential options: by the browser's
    /// own `helper` when it has it, else by `by_hand`.
    fn options(
        json: &str,
        helper: &str,
        by_hand: fn(&JsValue) -> Result<(), JsValue>,
    ) -> Result<JsValue, JsValue> {
        let public_key = get(&JSON::parse(json)?, "publicKey");
        let public_key = match static_helper(helper) {
            Some(parse) => parse.call1(&JsValue::NULL, &public_key)?,
            None => {
                set(
                    &public_key,
                    "challenge",
                    &bytes(&get(&public_key, "challenge"))?,
                )?;
                by_hand(&public_key)?;
                public_key
            }
        };
        let options = Object::new();
        set(&options, "publicKey", &public_key)?;
        Ok(options.into())
    }

    /// What `parseCreationOptionsFromJSON` turns into bytes, besides the challenge.
    fn creation_by_hand(public_key: &JsValue) -> Result<(), JsValue> {
        let user = get(public_key, "user");
        set(&user, "id", &bytes(&get(&user, "id"))?)?;
        credential_ids(public_key, "excludeCredentials")
    }

    /// What `parseRequestOptionsFromJSON` turns into bytes, besides the challenge.
    fn request_by_hand(public_key: &JsValue) -> Result<(), JsValue> {
        credential_ids(public_key, "allowCredentials")
    }

    /// The credential as the JSON text the server reads.
    fn answer(c: &JsValue) -> Result<String, JsValue> {
        let json = match call(c, "toJSON", &Array::new()) {
            Some(json) => json?,
            None => {
                let r = get(c, "response");
                let response = Object::new();
                set(
                    &response,
                    "clientDataJSON",
                    &text(&get(&r, "clientDataJSON")),
                )?;
                let attestation = get(&r, "attestationObject");
                if attestation.is_undefined() {
                    for key in ["authenticatorData", "signature", "userHandle"] {
                        set(&response, key, &text(&get(&r, key)))?;
                    }
                } else {
                    set(&response, "attestationObject", &text(&attestation))?;
                    let transports = call(&r, "getTransports", &Array::new())
                        .transpose()?
                        .unwrap_or_else(|| Array::new().into());
                    set(&response, "transports", &transports)?;
                }
                let out = Object::new();
                set(&out, "id", &get(c, "id"))?;
                set(&out, "rawId", &text(&get(c, "rawId")))?;
                set(&out, "type", &get(c, "type"))?;
                let extensions = call(c, "getClientExtensionResults", &Array::new())
                    .transpose()?
                    .unwrap_or_else(|| Object::new().into());
                set(&out, "clientExtensionResults", &extensions)?;
                set(&out, "response", &response)?;
                out.into()
            }
        };
        JSON::stringify(&json)?
            .as_string()
            .ok_or_else(|| "the credential has no JSON form".into())
    }

    fn credentials() -> Result<web_sys::CredentialsContainer, JsValue> {
        Ok(web_sys::window()
            .ok_or("no window")?
            .navigator()
            .credentials())
    }

    pub fn supported() -> bool {
        let global = js_sys::global();
        get(&global, "PublicKeyCredential").is_function()
            && !get(&get(&global, "navigator"), "credentials").is_undefined()
    }

    pub async fn create(json: String) -> Result<String, JsValue> {
        let options = options(&json, "parseCreationOptionsFromJSON", creation_by_hand)?;
        let promise = credentials()?.create_with_options(options.unchecked_ref())?;
        answer(&JsFuture::from(promise).await?)
    }

    pub async fn get_assertion(json: String) -> Result<String, JsValue> {
        let options = options(&json, "parseRequestOptionsFromJSON", request_by_hand)?;
        let promise = credentials()?.get_with_options(options.unchecked_ref())?;
        answer(&JsFuture::from(promise).await?)
    }
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
    return js::create(options).await.map_err(refused);
    #[cfg(not(feature = "hydrate"))]
    {
        let _ = options;
        Err(BrowserRefused("Passkeys work in the browser.".into()))
    }
}

/// Signs the server's challenge with a passkey; the answer as JSON.
pub async fn get(options: String) -> Result<String, BrowserRefused> {
    #[cfg(feature = "hydrate")]
    return js::get_assertion(options).await.map_err(refused);
    #[cfg(not(feature = "hydrate"))]
    {
        let _ = options;
        Err(BrowserRefused("Passkeys work in the browser.".into()))
    }
}
