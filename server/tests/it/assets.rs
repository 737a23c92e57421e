//! The browser's files under `/pkg`: content-hashed names in the pages, precompressed copies
//! chosen by `Accept-Encoding`, and cache lifetimes that let a second visit download nothing.

use std::path::Path;

use axum::{
    body::Body,
    extract::connect_info::MockConnectInfo,
    http::{header, Request, StatusCode},
    Router,
};
use http_body_util::BodyExt;
use pier::http::{router, AppState};
use tower::ServiceExt;

use crate::common::{serve_args, TestApp};

/// A site directory the way `cargo leptos build --release --precompress` leaves it, with each
/// copy's content saying which copy it is.
fn release_site(dir: &Path) {
    let pkg = dir.join("pkg");
    std::fs::create_dir_all(&pkg).unwrap();
    for ext in ["js", "wasm", "css"] {
        let name = format!("pier.{}.{ext}", hash(ext));
        std::fs::write(pkg.join(&name), format!("plain {ext}")).unwrap();
        std::fs::write(pkg.join(format!("{name}.br")), format!("brotli {ext}")).unwrap();
        std::fs::write(pkg.join(format!("{name}.gz")), format!("gzip {ext}")).unwrap();
    }
    std::fs::write(
        dir.join("hash.txt"),
        "js: jsHashHashHashHashHash\nwasm: wasmHashHashHashHashHa\ncss: cssHashHashHashHashHas\n",
    )
    .unwrap();
}

/// A content hash as cargo-leptos writes it (22 base64url characters), one per kind of file.
fn hash(ext: &str) -> String {
    format!("{ext}HashHashHashHashHashHash")[..22].to_string()
}

fn router_for_site(app: &TestApp, site: &Path) -> Router {
    let mut args = serve_args();
    args.site_root = site.to_path_buf();
    router(AppState::new(app.pier.clone(), &args)).layer(MockConnectInfo(
        std::net::SocketAddr::from(([127, 0, 0, 1], 40000)),
    ))
}

async fn get(
    router: &Router,
    path: &str,
    encodings: Option<&str>,
) -> (StatusCode, Vec<(String, String)>, String) {
    let mut req = Request::get(path);
    if let Some(e) = encodings {
        req = req.header(header::ACCEPT_ENCODING, e);
    }
    let res = router
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let headers = res
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[sqlx::test(migrations = "../migrations")]
async fn hashed_files_are_named_in_pages_served_precompressed_and_cached_for_good(
    db: sqlx::SqlitePool,
) {
    let app = TestApp::new(db).await;
    let site = tempdir("hashed");
    release_site(&site);
    let router = router_for_site(&app, &site);

    // The page asks for the hashed names (script, wasm, style), never the plain ones.
    let (status, _, page) = get(&router, "/login", None).await;
    assert_eq!(status, StatusCode::OK);
    for name in [
        "/pkg/pier.jsHashHashHashHashHash.js",
        "/pkg/pier.wasmHashHashHashHashHa.wasm",
        "/pkg/pier.cssHashHashHashHashHas.css",
    ] {
        assert!(page.contains(name), "page names {name}:\n{page}");
    }
    for plain in [
        "/pkg/pier.js\"",
        "/pkg/pier.js'",
        "/pkg/pier.css\"",
        "/pkg/pier.wasm\"",
        "/pkg/pier.wasm'",
    ] {
        assert!(!page.contains(plain), "page names {plain}");
    }

    // The copy the browser prefers, as it is on disk, cached for a year.
    for (accept, body, encoding) in [
        (Some("gzip, deflate, br, zstd"), "brotli wasm", Some("br")),
        (Some("gzip"), "gzip wasm", Some("gzip")),
        (None, "plain wasm", None),
    ] {
        let (status, headers, got) =
            get(&router, "/pkg/pier.wasmHashHashHashHashHa.wasm", accept).await;
        assert_eq!(status, StatusCode::OK, "{accept:?}");
        assert_eq!(got, body, "{accept:?}");
        assert_eq!(header(&headers, "content-encoding"), encoding, "{accept:?}");
        assert_eq!(header(&headers, "content-type"), Some("application/wasm"));
        assert_eq!(
            header(&headers, "cache-control"),
            Some("public, max-age=31536000, immutable")
        );
        assert_eq!(header(&headers, "vary"), Some("accept-encoding"));
    }
    let (_, headers, _) = get(&router, "/pkg/pier.cssHashHashHashHashHas.css", Some("br")).await;
    assert_eq!(header(&headers, "content-type"), Some("text/css"));

    // A name without a content hash is revalidated even here: the next build rewrites it.
    std::fs::write(site.join("pkg/extra.js"), "plain").unwrap();
    let (status, headers, _) = get(&router, "/pkg/extra.js", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(header(&headers, "cache-control"), Some("no-cache"));

    // No session work and never a Set-Cookie on a file cached for a year, whatever the
    // browser sends (a session that ended elsewhere would otherwise be cleared right here).
    let res = router
        .clone()
        .oneshot(
            Request::get("/pkg/pier.wasmHashHashHashHashHa.wasm")
                .header(header::COOKIE, "pier_session=ended-elsewhere")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers().get(header::SET_COOKIE).is_none());

    // A file that is not there is a 404 nobody caches.
    let (status, headers, _) = get(&router, "/pkg/pier.0ld.wasm", Some("br")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(header(&headers, "cache-control"), None);
    let _ = std::fs::remove_dir_all(&site);
}

#[sqlx::test(migrations = "../migrations")]
async fn unhashed_files_are_revalidated(db: sqlx::SqlitePool) {
    let app = TestApp::new(db).await;
    let site = tempdir("plain");
    std::fs::create_dir_all(site.join("pkg")).unwrap();
    std::fs::write(site.join("pkg/pier.wasm"), "plain wasm").unwrap();
    let router = router_for_site(&app, &site);

    let (_, _, page) = get(&router, "/login", None).await;
    assert!(page.contains("/pkg/pier.css"), "{page}");
    let (status, headers, body) = get(&router, "/pkg/pier.wasm", Some("br, gzip")).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "plain wasm"));
    assert_eq!(
        header(&headers, "content-encoding"),
        None,
        "no copy, no encoding"
    );
    assert_eq!(header(&headers, "cache-control"), Some("no-cache"));
    let _ = std::fs::remove_dir_all(&site);
}

fn tempdir(what: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("pier-site-{what}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}
