//! The browser app's files, embedded from `web/dist` at build time (in
//! debug builds too), so a node needs neither npm nor the network to serve
//! them, and what it serves is exactly what it was built with.
//!
//! Every answer carries a strict Content-Security-Policy (nothing from
//! outside the node, no inline script), `nosniff` and no referrer. Hashed
//! files under `assets/` are cached for a year; `index.html` is revalidated
//! on every load so a new build reaches the browser at once. A GET for a
//! path that is not a file is the app's own route: it gets `index.html`.
//! A gRPC request to a path no service has gets `UNIMPLEMENTED`, never the
//! page.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use rust_embed::RustEmbed;

#[derive(RustEmbed)]
#[folder = "../web/dist"]
struct Dist;

pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; font-src 'self'; \
     manifest-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

const INDEX: &str = "index.html";
/// Built files whose names carry a hash of their content.
const HASHED: &str = "assets/";
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// What the web port answers a request no grpc-web service took.
pub async fn fallback(request: Request<Body>) -> Response<Body> {
    let path = request.uri().path().to_string();
    if let Some(content_type) = grpc_content_type(request.headers()) {
        tracing::info!(%path, "web: grpc request for an unknown method");
        return unimplemented(&path, content_type);
    }
    let head = request.method() == Method::HEAD;
    if request.method() != Method::GET && !head {
        tracing::info!(%path, method = %request.method(), "web: method not allowed");
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let response = serve_file(&path);
    if head {
        let (parts, _) = response.into_parts();
        return Response::from_parts(parts, Body::empty());
    }
    response
}

/// The file at `path`, `index.html` for a route of the app, or 404 for a
/// file that is not there.
fn serve_file(path: &str) -> Response<Body> {
    let name = path.trim_start_matches('/');
    let name = if name.is_empty() { INDEX } else { name };
    if let Some(file) = Dist::get(name) {
        return file_response(file, cache_control(name));
    }
    // The app routes on the client: a path without a file extension is one
    // of its pages. A missing file (an old asset, a typo) is 404, not HTML
    // served as a script.
    let last = name.rsplit('/').next().unwrap_or_default();
    if last.contains('.') {
        tracing::info!(path = %path, "web: no such file");
        return plain(StatusCode::NOT_FOUND, "not found\n");
    }
    match Dist::get(INDEX) {
        Some(index) => file_response(index, "no-cache"),
        None => {
            tracing::error!("web: the app has no index.html; it was built without web/dist");
            plain(StatusCode::NOT_FOUND, "not found\n")
        }
    }
}

/// Hashed assets never change under their name; everything else (the
/// page, an icon) is revalidated.
fn cache_control(name: &str) -> &'static str {
    if name.starts_with(HASHED) {
        IMMUTABLE
    } else {
        "no-cache"
    }
}

fn file_response(file: rust_embed::EmbeddedFile, cache: &'static str) -> Response<Body> {
    let content_type = with_charset(file.metadata.mimetype());
    let mut response = Response::new(Body::from(file.data.into_owned()));
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&content_type) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    secure(headers);
    response
}

/// Text types are UTF-8, as the build writes them.
fn with_charset(mime: &str) -> String {
    let text = mime.starts_with("text/")
        || matches!(
            mime,
            "application/javascript" | "application/json" | "application/manifest+json"
        );
    if text && !mime.contains("charset") {
        format!("{mime}; charset=utf-8")
    } else {
        mime.to_string()
    }
}

/// The headers of every static answer.
fn secure(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
}

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::from(text));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    secure(headers);
    response
}

/// The request's content type when it is gRPC's (native or grpc-web).
fn grpc_content_type(headers: &HeaderMap) -> Option<&HeaderValue> {
    headers
        .get(header::CONTENT_TYPE)
        .filter(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// `UNIMPLEMENTED` as a trailers-only answer, in the request's flavour of
/// gRPC so that either kind of client reads it.
fn unimplemented(path: &str, content_type: &HeaderValue) -> Response<Body> {
    let status =
        tonic::Status::unimplemented(format!("no method {}", works_bridge::error::clip(path)));
    let (mut parts, ()) = status.into_http::<()>().into_parts();
    let flavour = if content_type.as_bytes().starts_with(b"application/grpc-web") {
        "application/grpc-web+proto"
    } else {
        "application/grpc"
    };
    parts
        .headers
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(flavour));
    Response::from_parts(parts, Body::empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_placeholder_or_the_built_app_is_embedded() {
        let index = Dist::get(INDEX).expect("web/dist/index.html");
        assert!(
            String::from_utf8_lossy(&index.data).contains("<title>"),
            "index.html names the app"
        );
    }

    #[test]
    fn hashed_assets_are_cached_for_a_year_and_the_page_is_revalidated() {
        assert_eq!(
            cache_control("assets/index-4f2a9c.js"),
            "public, max-age=31536000, immutable"
        );
        assert_eq!(cache_control("index.html"), "no-cache");
        assert_eq!(cache_control("favicon.svg"), "no-cache");
    }

    #[test]
    fn text_types_say_utf_8() {
        assert_eq!(with_charset("text/html"), "text/html; charset=utf-8");
        assert_eq!(
            with_charset("application/javascript"),
            "application/javascript; charset=utf-8"
        );
        assert_eq!(with_charset("image/png"), "image/png");
    }
}
