//! How a page's loaded data travels from the server's render to the browser's hydration.
//!
//! Leptos's default resource codec decodes with `serde_json::from_str`, while server functions
//! decode their answers with `serde_json::from_slice`. serde_json compiles one deserialiser per
//! type *per reader*, so every type both loaded by a resource and returned by a server function
//! was in the wasm twice (61 readers for about 34 types). [`Json`] decodes from bytes as server
//! functions do: one copy each. Every resource is made by [`resource`].

use codee::{Decoder, Encoder};
use leptos::prelude::Resource;
use serde::{de::DeserializeOwned, Serialize};

/// JSON, decoded from bytes (see the module's documentation).
pub struct Json;

impl<T: Serialize> Encoder<T> for Json {
    type Error = serde_json::Error;
    type Encoded = String;

    fn encode(value: &T) -> Result<String, Self::Error> {
        serde_json::to_string(value)
    }
}

impl<T: DeserializeOwned> Decoder<T> for Json {
    type Error = serde_json::Error;
    type Encoded = str;

    fn decode(text: &str) -> Result<T, Self::Error> {
        serde_json::from_slice(text.as_bytes())
    }
}

/// A resource whose value crosses from server to browser as [`Json`].
pub type Loaded<T> = Resource<T, Json>;

/// `Resource::new`, with [`Json`].
#[track_caller]
pub fn resource<T, S, Fut>(
    source: impl Fn() -> S + Send + Sync + 'static,
    fetcher: impl Fn(S) -> Fut + Send + Sync + 'static,
) -> Loaded<T>
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
    S: PartialEq + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = T> + Send + 'static,
{
    Resource::new_with_options(source, fetcher, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Row {
        name: String,
        n: u32,
    }

    #[test]
    fn round_trips_and_refuses_garbage() {
        let rows = vec![Row {
            name: "ünïcode \"quoted\"".into(),
            n: 7,
        }];
        let text = <Json as Encoder<Vec<Row>>>::encode(&rows).unwrap();
        let back: Vec<Row> = <Json as Decoder<Vec<Row>>>::decode(&text).unwrap();
        assert_eq!(back, rows);
        assert!(<Json as Decoder<Vec<Row>>>::decode("[{\"name\":1}]").is_err());
    }
}
