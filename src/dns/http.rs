//! What the HTTP API backends share: one client per backend (connections kept alive, TLS with
//! the Web PKI roots through rustls and ring, no redirects followed), the reading of a
//! rate limit's `Retry-After` (or `RateLimit-Reset`), and a bounded retry of rate-limited
//! requests.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::{HeaderMap, RETRY_AFTER};

use super::DnsError;
use super::backend::{ApiMeter, result_of};

/// How many times [`with_rate_limit_retries`] repeats a rate-limited request.
pub const RATE_LIMIT_RETRIES: u32 = 2;
/// The longest wait [`with_rate_limit_retries`] sits out itself; a longer one is the
/// caller's (the reconcile's backoff), as [`DnsError::RateLimited`] with its `retry_after`.
pub const MAX_INLINE_WAIT: Duration = Duration::from_secs(5);

/// Makes ring the process's rustls provider, which reqwest needs before it builds any client
/// (it is built without a provider of its own, to avoid a second crypto library). Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A client whose every request ends within `timeout`.
pub fn client(timeout: Duration) -> Result<reqwest::Client, DnsError> {
    install_crypto_provider();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls_config()?)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .pool_idle_timeout(Duration::from_secs(90))
        .build()
        .map_err(|e| DnsError::Config(format!("HTTP client: {e}")))
}

/// The TLS settings, made once per process (the root store is the costly part): backends,
/// and so their clients, are made anew for each reconcile. (The clients themselves are not
/// shared: their connections belong to the runtime that made them.)
fn tls_config() -> Result<rustls::ClientConfig, DnsError> {
    static TLS: OnceLock<Result<rustls::ClientConfig, String>> = OnceLock::new();
    TLS.get_or_init(|| {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
        .map_err(|e| e.to_string())
    })
    .clone()
    .map_err(|e| DnsError::Config(format!("TLS settings: {e}")))
}

/// `Retry-After` in seconds (the form APIs send; an HTTP date is not read).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// How long a rate-limited answer asks us to wait: `Retry-After` in seconds, else the
/// `RateLimit-Reset` header's Unix time from now (at least a second), as Hetzner and
/// DigitalOcean send it.
pub fn rate_limit_wait(headers: &HeaderMap) -> Option<Duration> {
    retry_after(headers).or_else(|| {
        let reset: u64 = headers
            .get("ratelimit-reset")?
            .to_str()
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
        Some(Duration::from_secs(reset.saturating_sub(now).max(1)))
    })
}

/// Runs `attempt` (one request) and reports it to `meter`; a [`DnsError::RateLimited`]
/// that asks for at most [`MAX_INLINE_WAIT`] (a second when it does not say) is waited out
/// and the request repeated, up to [`RATE_LIMIT_RETRIES`] times. Every attempt is reported.
pub async fn with_rate_limit_retries<T, F, Fut>(
    meter: &dyn ApiMeter,
    provider: &'static str,
    mut attempt: F,
) -> Result<T, DnsError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, DnsError>>,
{
    let mut left = RATE_LIMIT_RETRIES;
    loop {
        let result = attempt().await;
        meter.request(provider, result_of(&result));
        if let Err(DnsError::RateLimited { retry_after, .. }) = &result {
            let wait = retry_after.unwrap_or(Duration::from_secs(1));
            if left > 0 && wait <= MAX_INLINE_WAIT {
                left -= 1;
                tokio::time::sleep(wait).await;
                continue;
            }
        }
        return result;
    }
}

/// `text` as an API's base URL: http(s) with a host, without a trailing `/`. Otherwise a
/// [`DnsError::Config`] naming `setting` (e.g. `cloudflare apiUrl`).
pub fn base_url(setting: &str, text: &str) -> Result<String, DnsError> {
    url::Url::parse(text)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        .ok_or_else(|| DnsError::Config(format!("{setting} `{text}` is not an http(s) URL")))?;
    Ok(text.trim_end_matches('/').to_owned())
}

/// An API's answer as received.
pub struct Answer {
    pub status: reqwest::StatusCode,
    pub headers: HeaderMap,
    /// The body (empty when it could not be read).
    pub text: String,
}

/// Sends `request` (its authentication set by the caller) with `body` as JSON, if any; a
/// transport failure is [`DnsError::Unreachable`] naming `what` (`hetzner GET /zones`).
pub async fn send(
    request: reqwest::RequestBuilder,
    body: Option<String>,
    what: &str,
) -> Result<Answer, DnsError> {
    let request = match body {
        Some(body) => request
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body),
        None => request,
    };
    let response = request
        .send()
        .await
        .map_err(|e| DnsError::Unreachable(format!("{what}: {}", describe(&e))))?;
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap_or_default();
    Ok(Answer {
        status,
        headers,
        text,
    })
}

/// A transport error in few words: timeouts and refused connections say so.
pub fn describe(error: &reqwest::Error) -> String {
    let mut text = if error.is_timeout() {
        "timed out".to_owned()
    } else if error.is_connect() {
        "cannot connect".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = std::error::Error::source(error);
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_read_in_seconds() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(RETRY_AFTER, "17".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(17)));
        h.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2026 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn a_rate_limit_reset_time_is_a_wait_from_now() {
        let mut h = HeaderMap::new();
        assert_eq!(rate_limit_wait(&h), None);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        h.insert("ratelimit-reset", (now + 30).to_string().parse().unwrap());
        let wait = rate_limit_wait(&h).unwrap();
        assert!((29..=30).contains(&wait.as_secs()), "{wait:?}");
        h.insert("ratelimit-reset", (now - 5).to_string().parse().unwrap());
        assert_eq!(rate_limit_wait(&h), Some(Duration::from_secs(1)), "past");
        h.insert(RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(rate_limit_wait(&h), Some(Duration::from_secs(3)), "first");
    }

    #[tokio::test]
    async fn short_rate_limits_are_waited_out_and_long_ones_returned() {
        struct Count(std::sync::Mutex<Vec<&'static str>>);
        impl ApiMeter for Count {
            fn request(&self, _: &'static str, result: &'static str) {
                self.0.lock().unwrap().push(result);
            }
        }
        let limited = |s: u64| DnsError::RateLimited {
            retry_after: Some(Duration::from_millis(s)),
            detail: "x".into(),
        };
        let meter = Count(Default::default());
        let mut n = 0;
        let out = with_rate_limit_retries(&meter, "t", || {
            n += 1;
            let r = if n == 1 { Err(limited(10)) } else { Ok(n) };
            async move { r }
        })
        .await;
        assert_eq!(out, Ok(2));
        assert_eq!(*meter.0.lock().unwrap(), ["DNSRateLimited", "ok"]);
        let long = limited(60_000);
        let out: Result<(), _> =
            with_rate_limit_retries(&meter, "t", || std::future::ready(Err(long.clone()))).await;
        assert_eq!(out, Err(long), "not waited for");
        let mut tries = 0;
        let out: Result<(), _> = with_rate_limit_retries(&meter, "t", || {
            tries += 1;
            std::future::ready(Err(limited(1)))
        })
        .await;
        assert!(out.is_err());
        assert_eq!(tries, 1 + RATE_LIMIT_RETRIES, "bounded");
    }
}
