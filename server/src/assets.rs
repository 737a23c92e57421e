//! The browser's files under `/pkg` (wasm, JavaScript, CSS), as `cargo leptos build` leaves them
//! in the site directory.
//!
//! A release build names them by content (`pier.<hash>.wasm`, with `hash-files`) and writes
//! `.br` and `.gz` copies beside them (`--precompress`). They are served as they are on disk:
//! the copy the browser's `Accept-Encoding` prefers (brotli, then gzip, else the plain file),
//! never compressed per request, and — when the names carry their content's hash — with
//! `Cache-Control: immutable`, so a second visit downloads nothing. Without hashed names (a
//! plain debug build) every answer is revalidated (`no-cache`), since a rebuilt file keeps its
//! name.

use std::path::{Path, PathBuf};

use axum::{
    extract::Request,
    http::{header, HeaderValue},
    middleware::{self, Next},
    response::Response,
    Router,
};
use tower_http::services::ServeDir;

/// A year: the longest lifetime caches honour, for files whose names change with their content.
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// For files whose name stays when their content changes.
pub const REVALIDATE: &str = "no-cache";

/// The file cargo-leptos writes with the content hashes of the site's files (`js: …`,
/// `wasm: …`, `css: …`): in the site directory (where `scripts/` and the Dockerfile put it
/// beside the files it names), else next to the binary, where cargo-leptos writes it.
pub fn hash_file(site_root: &Path) -> Option<PathBuf> {
    let beside_site = site_root.join("hash.txt");
    let beside_exe = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("hash.txt")));
    std::iter::once(beside_site)
        .chain(beside_exe)
        .find(|p| p.is_file())
        .and_then(|p| std::path::absolute(p).ok())
}

/// The names of the files a page loads, as `hash.txt` gives them (`pier.<hash>.js`, …), with
/// the loader of the pages' wasm chunks and its manifest (`__wasm_split.<hash>.js`,
/// `__wasm_split_manifest.<hash>.json`: `cargo leptos build --split`). `None` when it names no
/// script of the app, which means the site was built without hashes.
pub fn hashed_names(hash_file_text: &str, output_name: &str) -> Option<Vec<String>> {
    let names: Vec<String> = hash_file_text
        .lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(kind, hash)| (kind.trim(), hash.trim()))
        .filter(|(_, hash)| !hash.is_empty())
        .filter_map(|(kind, hash)| match kind {
            "js" | "wasm" | "css" => Some(format!("{output_name}.{hash}.{kind}")),
            "split" => Some(format!("{SPLIT_LOADER}.{hash}.js")),
            "manifest" => Some(format!("{SPLIT_MANIFEST}.{hash}.json")),
            _ => None,
        })
        .collect();
    let script = format!("{output_name}.");
    names
        .iter()
        .any(|n| n.starts_with(&script) && n.ends_with(".js"))
        .then_some(names)
}

/// The script that loads the pages' wasm chunks (`cargo leptos build --split`), without its
/// hash and extension.
pub const SPLIT_LOADER: &str = "__wasm_split";
/// Which chunks each lazy part of the app needs, read by the server for the preload links.
pub const SPLIT_MANIFEST: &str = "__wasm_split_manifest";

/// The files a site built without hashed names has (`cargo leptos build --split` without
/// `hash-files`).
pub fn plain_names(output_name: &str) -> Vec<String> {
    vec![
        format!("{output_name}.js"),
        format!("{output_name}.wasm"),
        format!("{output_name}.css"),
        format!("{SPLIT_LOADER}.______________________.js"),
        format!("{SPLIT_MANIFEST}.json"),
    ]
}

/// Whether a file's name carries its content's hash as cargo-leptos writes it:
/// `<name>.<22 base64url characters>.<ext>` (an MD5, unpadded). Only such a file may be cached
/// for good: a plain `pier.js` is rewritten in place by the next build.
pub fn content_hashed(file_name: &str) -> bool {
    let mut parts = file_name.rsplitn(3, '.');
    let (Some(ext), Some(hash), Some(stem)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    !ext.is_empty()
        && !stem.is_empty()
        && hash.len() == 22
        && hash
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `/pkg/*` from `<site_root>/pkg`, precompressed copies preferred.
pub fn pkg_router<S: Clone + Send + Sync + 'static>(site_root: &Path) -> Router<S> {
    let files = ServeDir::new(site_root.join("pkg"))
        .precompressed_br()
        .precompressed_gzip();
    Router::new()
        .nest_service("/pkg", files)
        .layer(middleware::from_fn(cache_headers))
}

/// The cache lifetime on files found — a year for content-hashed names, revalidation for the
/// rest; a missing file's 404 gets none — and `Vary: Accept-Encoding` on all of them: which copy
/// was sent depends on it.
async fn cache_headers(req: Request, next: Next) -> Response {
    let hashed = req
        .uri()
        .path()
        .rsplit('/')
        .next()
        .is_some_and(content_hashed);
    let mut res = next.run(req).await;
    let status = res.status();
    let headers = res.headers_mut();
    if status.is_success() || status == axum::http::StatusCode::NOT_MODIFIED {
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static(if hashed { IMMUTABLE } else { REVALIDATE }),
        );
    }
    headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_content_hashed_names_are_cached_for_good() {
        assert!(content_hashed("pier.C4BzIY0LiV_rVs1KDrTjTg.wasm"));
        assert!(content_hashed("pier.mDNmw8OPTvDWDtj7fsaFTQ.js"));
        for name in [
            "pier.js",
            "pier.wasm",
            "pier.short.css",
            "pier.C4BzIY0LiV_rVs1KDrTjT!.wasm",
            ".C4BzIY0LiV_rVs1KDrTjTg.wasm",
            "pier.C4BzIY0LiV_rVs1KDrTjTg.",
            "C4BzIY0LiV_rVs1KDrTjTg.wasm",
        ] {
            assert!(!content_hashed(name), "{name}");
        }
    }

    #[test]
    fn hashed_names_come_from_the_hash_file() {
        let text = "js: AbC-1_x\nwasm: ZZ9\ncss: q_Q\nmanifest: m-M\nsplit: s_S\n";
        assert_eq!(
            hashed_names(text, "pier").unwrap(),
            [
                "pier.AbC-1_x.js",
                "pier.ZZ9.wasm",
                "pier.q_Q.css",
                "__wasm_split_manifest.m-M.json",
                "__wasm_split.s_S.js"
            ]
        );
        assert_eq!(
            hashed_names("split: s_S\nwasm: w\n", "pier"),
            None,
            "the chunk loader is not the app's script"
        );
        assert_eq!(hashed_names("", "pier"), None);
        assert_eq!(
            hashed_names("css: x\n", "pier"),
            None,
            "no script, no hashes"
        );
        assert_eq!(
            hashed_names("js:\nwasm: w\n", "pier"),
            None,
            "an empty hash is no hash"
        );
    }
}
