//! Vela's own web pages: the embed player (`/embed/ENTRY`), the admin console
//! (`/admin/`) and their static assets (`/assets/…`), all embedded in the
//! binary. The player and chart libraries are vendored from npm unchanged
//! (`control-plane/web/vendor/README.md`): no CDN, no JavaScript build step.
//!
//! Pages carry a strict Content-Security-Policy (scripts from this origin
//! only, no inline script), so a name that holds markup can never run: the
//! scripts put every value into the page with `textContent`.

pub mod embed;

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::ControlPlane;

/// A static file: (name under /assets/, MIME type, bytes).
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "hls.min.js",
        "text/javascript",
        include_bytes!("../../web/vendor/hls.min.js"),
    ),
    (
        "shaka-player.compiled.js",
        "text/javascript",
        include_bytes!("../../web/vendor/shaka-player.compiled.js"),
    ),
    (
        "uPlot.iife.min.js",
        "text/javascript",
        include_bytes!("../../web/vendor/uPlot.iife.min.js"),
    ),
    (
        "uPlot.min.css",
        "text/css",
        include_bytes!("../../web/vendor/uPlot.min.css"),
    ),
    (
        "embed.js",
        "text/javascript",
        include_bytes!("../../web/embed.js"),
    ),
    (
        "embed.css",
        "text/css",
        include_bytes!("../../web/embed.css"),
    ),
    (
        "admin.js",
        "text/javascript",
        include_bytes!("../../web/admin.js"),
    ),
    (
        "admin.css",
        "text/css",
        include_bytes!("../../web/admin.css"),
    ),
];

/// The console's page (everything else comes from `/assets/admin.js`).
const ADMIN_HTML: &str = include_str!("../../web/admin.html");

/// Content-Security-Policy of the console: nothing but this origin, and no
/// framing (clickjacking).
const ADMIN_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self' data: blob:; media-src 'self' blob:; connect-src 'self'; worker-src 'self' blob:; \
    frame-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, mime, bytes)) => (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(mime)),
                (
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("public, max-age=3600"),
                ),
                (
                    header::X_CONTENT_TYPE_OPTIONS,
                    HeaderValue::from_static("nosniff"),
                ),
            ],
            *bytes,
        )
            .into_response(),
        None => crate::ApiError::NotFound("asset").into_response(),
    }
}

async fn admin_page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, ADMIN_CSP),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        ADMIN_HTML,
    )
        .into_response()
}

async fn admin_redirect() -> Response {
    (
        StatusCode::MOVED_PERMANENTLY,
        [(header::LOCATION, "/admin/")],
    )
        .into_response()
}

/// Escapes text for HTML element content and attribute values.
pub fn html_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// The pages' routes.
pub fn router(cp: ControlPlane) -> Router {
    Router::new()
        .route("/assets/{name}", get(asset))
        .route("/admin", get(admin_redirect))
        .route("/admin/", get(admin_page))
        .merge(embed::router(cp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            html_escape("<script>\"a\" & 'b'</script>"),
            "&lt;script&gt;&quot;a&quot; &amp; &#39;b&#39;&lt;/script&gt;"
        );
    }
}
