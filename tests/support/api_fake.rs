//! What the stateful fakes of provider HTTP APIs share: the `RateLimit-*` headers Hetzner and
//! DigitalOcean send on every answer, the 429 they send when throttling, and the bearer token.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

/// `r` with `RateLimit-Limit: limit`, `RateLimit-Remaining` and `RateLimit-Reset` (a Unix
/// time `reset_in` seconds from now).
pub fn rate_limit_headers(
    mut r: Response,
    limit: &'static str,
    remaining: u64,
    reset_in: u64,
) -> Response {
    let reset = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
        + reset_in;
    let h = r.headers_mut();
    h.insert("ratelimit-limit", HeaderValue::from_static(limit));
    if let Ok(v) = HeaderValue::from_str(&remaining.to_string()) {
        h.insert("ratelimit-remaining", v);
    }
    if let Ok(v) = HeaderValue::from_str(&reset.to_string()) {
        h.insert("ratelimit-reset", v);
    }
    r
}

/// A 429 with `body`, no requests left until `seconds` from now, and `Retry-After` too when
/// `retry_after`.
pub fn too_many_requests(
    body: Value,
    limit: &'static str,
    seconds: u64,
    retry_after: bool,
) -> Response {
    let mut r = rate_limit_headers(
        (StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response(),
        limit,
        0,
        seconds,
    );
    if retry_after && let Ok(v) = HeaderValue::from_str(&seconds.to_string()) {
        r.headers_mut().insert("retry-after", v);
    }
    r
}

/// The token of `Authorization: Bearer <token>`.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
}
