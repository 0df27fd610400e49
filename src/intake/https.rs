//! The HTTPS report receiver (RFC 8460 §5.2): `POST` of `application/tlsrpt+json` or
//! `application/tlsrpt+gzip` to the URL a domain publishes in `rua`. Answers 2xx only once the
//! [`Sink`] stored the report (201 new, 200 already stored); everything else is refused with
//! a stable reason in the body and in the metrics, after a bounded amount of work:
//!
//! - connections: bounded by `crate::conn` (how many, stalled or oversize heads, idle and
//!   long-lived connections), bodies within `body_timeout` (408);
//! - per client address: a token bucket of `per_minute` requests with `burst` (429 and
//!   `Retry-After`); behind a proxy in `trusted_proxies` the client is the last untrusted
//!   address of `X-Forwarded-For`;
//! - bodies: at most the [`Limits`] of their type, counted while read (413); parsing runs on
//!   the blocking pool, at most `parsers` at once.
//!
//! TLS is the Ingress's or the Gateway's (the receiver speaks plain HTTP behind it).

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{Quota, RateLimiter};
use http_body_util::BodyExt;
use ipnet::IpNet;
use tokio::sync::Semaphore;

use super::{Incoming, Raw, Sink, StoreError, Stored, Via};
use crate::conn::{self, Peer, Transport};
use crate::metrics::ReportMetrics;
use crate::report::{self, Limits, ReportError};

/// The receiver's bounds.
#[derive(Debug, Clone)]
pub struct Settings {
    pub limits: Limits,
    /// Requests per minute per client address, and the burst above it.
    pub per_minute: NonZeroU32,
    pub burst: NonZeroU32,
    /// Proxies (the Ingress controller) whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Connections, and the time a report's body has.
    pub connections: conn::Limits,
    /// Reports parsed at once.
    pub parsers: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            limits: Limits::default(),
            per_minute: NonZeroU32::new(60).unwrap_or(NonZeroU32::MIN),
            burst: NonZeroU32::new(20).unwrap_or(NonZeroU32::MIN),
            trusted_proxies: Vec::new(),
            connections: conn::Limits::receive(),
            parsers: 4,
        }
    }
}

type Limiter =
    RateLimiter<IpAddr, governor::state::keyed::DefaultKeyedStateStore<IpAddr>, DefaultClock>;

struct App<S> {
    sink: S,
    settings: Settings,
    limiter: Limiter,
    parsers: Semaphore,
    metrics: Arc<ReportMetrics>,
}

/// Serves the receiver on `listener` until the process ends.
pub async fn serve<S: Sink + 'static>(
    listener: tokio::net::TcpListener,
    sink: S,
    settings: Settings,
    metrics: Arc<ReportMetrics>,
) -> std::io::Result<()> {
    let quota = Quota::per_minute(settings.per_minute).allow_burst(settings.burst);
    let limits = settings.connections.clone();
    let connections = metrics.connections.clone();
    let app = Arc::new(App {
        sink,
        parsers: Semaphore::new(settings.parsers.max(1)),
        limiter: RateLimiter::keyed(quota),
        settings,
        metrics,
    });
    // Forget idle clients now and then, so the limiter's memory follows the active ones.
    let pruned = Arc::downgrade(&app);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            match pruned.upgrade() {
                Some(app) => app.limiter.retain_recent(),
                None => break,
            }
        }
    });
    let router = Router::new().fallback(receive::<S>).with_state(app);
    conn::serve(listener, Transport::Plain, router, limits, connections).await;
    Ok(())
}

/// The client of a request: the peer, or behind a trusted proxy the last untrusted address
/// of `X-Forwarded-For`.
fn client(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let forwarded: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|a| a.trim().parse().ok())
        .collect();
    forwarded
        .into_iter()
        .rev()
        .find(|ip| !is_trusted(ip))
        .unwrap_or(peer)
}

fn refuse(status: StatusCode, reason: &str, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("refused: {reason}: {message}\n"),
    )
        .into_response()
}

async fn receive<S: Sink + 'static>(
    State(app): State<Arc<App<S>>>,
    Extension(Peer(peer)): Extension<Peer>,
    method: Method,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let refused = |status, reason: &str, message: &str| {
        app.metrics.outcome("https", "refused", reason);
        tracing::info!(%peer, reason, message, "report refused");
        refuse(status, reason, message)
    };
    if method != Method::POST {
        let mut r = refused(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "POST a TLS report (RFC 8460 §5.2)",
        );
        r.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("POST"));
        return r;
    }
    let client = client(peer.ip(), &headers, &app.settings.trusted_proxies);
    if let Err(not_until) = app.limiter.check_key(&client) {
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        let mut r = refused(
            StatusCode::TOO_MANY_REQUESTS,
            "RateLimited",
            "too many reports from this address; try again later",
        );
        let seconds = wait.as_secs().max(1).to_string();
        if let Ok(v) = header::HeaderValue::from_str(&seconds) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return r;
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let limits = &app.settings.limits;
    let media = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let limit = match media.as_str() {
        "application/tlsrpt+gzip" | "application/gzip" | "application/x-gzip" => {
            limits.max_compressed
        }
        "message/rfc822" => limits.max_mail,
        _ => limits.max_uncompressed,
    };
    let read = http_body_util::Limited::new(body, limit).collect();
    let bytes = match tokio::time::timeout(app.settings.connections.body_timeout, read).await {
        Err(_) => {
            return refused(
                StatusCode::REQUEST_TIMEOUT,
                "BodyTimeout",
                "the report did not arrive in time",
            );
        }
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            let e = ReportError::TooLarge {
                what: "request body",
                size: limit + 1,
                limit,
            };
            return refused(
                StatusCode::PAYLOAD_TOO_LARGE,
                e.reason(),
                &format!("more than {limit} bytes"),
            );
        }
        Ok(Err(e)) => return refused(StatusCode::BAD_REQUEST, "BodyError", &e.to_string()),
        Ok(Ok(collected)) => collected.to_bytes(),
    };
    let Ok(_parsing) = app.parsers.acquire().await else {
        return refused(
            StatusCode::SERVICE_UNAVAILABLE,
            "ShuttingDown",
            "the receiver is stopping",
        );
    };
    let parse_limits = limits.clone();
    let parse_type = content_type.clone();
    let body = bytes.clone();
    let parsed =
        tokio::task::spawn_blocking(move || report::parse_body(&parse_type, &body, &parse_limits))
            .await;
    let report = match parsed {
        Ok(Ok(report)) => report,
        Ok(Err(e)) => {
            let status = match e {
                ReportError::TooLarge { .. } | ReportError::InflatedTooLarge { .. } => {
                    StatusCode::PAYLOAD_TOO_LARGE
                }
                ReportError::UnsupportedContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
                _ => StatusCode::BAD_REQUEST,
            };
            return refused(status, e.reason(), &e.to_string());
        }
        Err(e) => {
            return refused(
                StatusCode::INTERNAL_SERVER_ERROR,
                "ParserPanicked",
                &e.to_string(),
            );
        }
    };
    drop(_parsing);
    let gzip = bytes.starts_with(&[0x1f, 0x8b]);
    let raw = if media == "message/rfc822" {
        // Keep the report, not the whole mail.
        Raw {
            bytes: report::render(&report).into_bytes(),
            gzip: false,
        }
    } else {
        Raw {
            bytes: bytes.to_vec(),
            gzip,
        }
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let incoming = Incoming {
        report,
        raw,
        via: Via::Https { peer: client, host },
    };
    match app.sink.store(incoming).await {
        Ok(Stored::New(names)) => {
            app.metrics.outcome("https", "stored", "");
            tracing::info!(%client, names = ?names, "report stored");
            (
                StatusCode::CREATED,
                format!("stored: {}\n", names.join(", ")),
            )
                .into_response()
        }
        Ok(Stored::Duplicate(names)) => {
            app.metrics.outcome("https", "duplicate", "");
            (
                StatusCode::OK,
                format!("already stored: {}\n", names.join(", ")),
            )
                .into_response()
        }
        Err(e) => {
            let status = match e {
                StoreError::NotOurDomain { .. } => StatusCode::FORBIDDEN,
                StoreError::Rejected(_) => StatusCode::UNPROCESSABLE_ENTITY,
                StoreError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            };
            let mut r = refused(status, e.reason(), &e.to_string());
            if e.is_transient() {
                r.headers_mut()
                    .insert(header::RETRY_AFTER, header::HeaderValue::from_static("60"));
            }
            r
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_behind_a_trusted_proxy_is_the_last_untrusted_forwarded_address() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            "198.51.100.7, 203.0.113.9, 10.1.2.3".parse().unwrap(),
        );
        let proxy: IpAddr = "10.9.9.9".parse().unwrap();
        assert_eq!(
            client(proxy, &headers, &trusted),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        // An untrusted peer's header is not believed.
        let direct: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(client(direct, &headers, &trusted), direct);
        // A trusted peer without the header is the client.
        assert_eq!(client(proxy, &HeaderMap::new(), &trusted), proxy);
    }
}
