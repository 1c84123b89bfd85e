//! Every error answer in the JSON error shape of INTERFACE.md:
//! `{"error":{"code":"…","message":"…"}}`.
//!
//! Handlers already answer their errors that way; what does not are the
//! answers that the HTTP stack makes itself: axum's routing (`404` of an
//! unknown path, `405` with `Allow`), its extractors' rejections (`413` from
//! a body limit, `400`/`415`/`422` from a JSON body, all plain text), and
//! hyper's parse errors (`400`, `414`, `431`; see `crate::http_io`, which
//! rewrites those because they never reach a service). [`json_errors`] is the
//! axum middleware for the first two: an error status (4xx/5xx) whose body is
//! not JSON gets a JSON body with a code derived from the status; a short
//! plain-text message of the original (an extractor's explanation) is kept
//! as the message. Headers such as `Allow`, `Retry-After` and
//! `WWW-Authenticate` are kept.

use axum::body::Body;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::HeaderValue;

/// Longest original plain-text message carried over into the JSON body.
const MAX_KEPT_MESSAGE: usize = 512;

/// Reason phrase, error code and default message of an error status.
pub fn describe(status: u16) -> (&'static str, &'static str, &'static str) {
    let reason = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    let (code, message) = match status {
        400 => ("bad_request", "the request is malformed"),
        401 => ("unauthorized", "authentication is required"),
        403 => ("forbidden", "not allowed"),
        404 => ("not_found", "not found"),
        405 => ("method_not_allowed", "this method is not allowed here"),
        406 => ("not_acceptable", "no acceptable representation"),
        408 => ("request_timeout", "the request did not arrive in time"),
        409 => ("conflict", "a conflicting object exists"),
        410 => ("gone", "no longer available"),
        411 => ("length_required", "a content length is required"),
        412 => ("precondition_failed", "a precondition failed"),
        413 => ("payload_too_large", "the request body is too large"),
        414 => ("uri_too_long", "the request URI is too long"),
        415 => ("unsupported_media_type", "unsupported content type"),
        416 => ("range_not_satisfiable", "the range is not satisfiable"),
        422 => ("invalid_input", "the request could not be processed"),
        429 => ("too_many_requests", "too many requests; retry later"),
        431 => (
            "header_fields_too_large",
            "the request header fields are too large",
        ),
        500 => ("internal", "internal error"),
        501 => ("not_implemented", "not implemented"),
        502 => ("bad_gateway", "bad gateway"),
        503 => ("unavailable", "the server is busy; retry later"),
        504 => ("gateway_timeout", "an upstream did not answer in time"),
        402..=499 => ("client_error", "the request was refused"),
        _ => ("server_error", "the server could not answer"),
    };
    (reason, code, message)
}

/// The JSON error body.
pub fn body(code: &str, message: &str) -> String {
    serde_json::json!({"error": {"code": code, "message": message}}).to_string()
}

fn is_json(v: Option<&HeaderValue>) -> bool {
    v.and_then(|v| v.to_str().ok())
        .map(|s| {
            let s = s.to_ascii_lowercase();
            s.starts_with("application/json") || s.contains("+json")
        })
        .unwrap_or(false)
}

fn is_plain_text(v: Option<&HeaderValue>) -> bool {
    v.and_then(|v| v.to_str().ok())
        .is_some_and(|s| s.to_ascii_lowercase().starts_with("text/plain"))
}

/// axum middleware: see the module docs. Apply it to the assembled router
/// (`router.layer(axum::middleware::from_fn(json_errors))`).
pub async fn json_errors(req: Request, next: Next) -> Response {
    let res = next.run(req).await;
    let status = res.status();
    if !(status.is_client_error() || status.is_server_error())
        || is_json(res.headers().get(CONTENT_TYPE))
    {
        return res;
    }
    let (mut parts, original) = res.into_parts();
    let (_, code, default_message) = describe(status.as_u16());
    let kept = if is_plain_text(parts.headers.get(CONTENT_TYPE)) {
        axum::body::to_bytes(original, MAX_KEPT_MESSAGE)
            .await
            .ok()
            .and_then(|b| String::from_utf8(b.to_vec()).ok())
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    } else {
        None
    };
    crate::metrics::HTTP_LAYER_ERRORS
        .with_label_values(&[status.as_str()])
        .inc();
    let text = body(code, kept.as_deref().unwrap_or(default_message));
    parts
        .headers
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    parts.headers.remove(CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::{get, post};
    use axum::Router;
    use tower::ServiceExt;

    async fn call(app: &Router, req: http::Request<Body>) -> (u16, Option<String>, String) {
        let res = app.clone().oneshot(req).await.unwrap();
        let status = res.status().as_u16();
        let allow = res
            .headers()
            .get("allow")
            .map(|v| v.to_str().unwrap().to_string());
        let b = axum::body::to_bytes(res.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, allow, String::from_utf8(b.to_vec()).unwrap())
    }

    fn app() -> Router {
        Router::new()
            .route("/ok", get(|| async { "fine" }))
            .route(
                "/upload",
                post(|b: axum::body::Bytes| async move { b.len().to_string() }),
            )
            .route(
                "/json",
                get(|| async {
                    (
                        http::StatusCode::CONFLICT,
                        [(CONTENT_TYPE, "application/json")],
                        r#"{"error":{"code":"mine","message":"kept"}}"#,
                    )
                }),
            )
            .layer(axum::extract::DefaultBodyLimit::max(16))
            .layer(axum::middleware::from_fn(json_errors))
    }

    fn code_of(body: &str) -> String {
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        v["error"]["code"].as_str().unwrap().to_string()
    }

    #[tokio::test]
    async fn framework_errors_become_json() {
        let app = app();
        let req = |m: &str, p: &str, b: &'static str| {
            http::Request::builder()
                .method(m)
                .uri(p)
                .body(Body::from(b))
                .unwrap()
        };
        let (s, _, b) = call(&app, req("GET", "/nowhere", "")).await;
        assert_eq!((s, code_of(&b).as_str()), (404, "not_found"));
        let (s, allow, b) = call(&app, req("DELETE", "/ok", "")).await;
        assert_eq!((s, code_of(&b).as_str()), (405, "method_not_allowed"));
        assert!(allow.unwrap().contains("GET"));
        let (s, _, b) = call(&app, req("POST", "/upload", "0123456789abcdefXYZ")).await;
        assert_eq!((s, code_of(&b).as_str()), (413, "payload_too_large"));
        // Handlers' own JSON and successes are untouched.
        let (s, _, b) = call(&app, req("GET", "/json", "")).await;
        assert_eq!((s, code_of(&b).as_str()), (409, "mine"));
        let (s, _, b) = call(&app, req("GET", "/ok", "")).await;
        assert_eq!((s, b.as_str()), (200, "fine"));
    }
}
