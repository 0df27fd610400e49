//! A fault-injecting HTTP proxy, on loopback, put in front of a provider's API (a fake of ours,
//! moto, PowerDNS) by the fault tests. On a share of the requests, drawn from a seeded
//! generator so that a failing run can be repeated, it does what flaky APIs and the networks
//! before them do:
//!
//! - answers 500, 502 or 503 with a body that is not the API's JSON (what a load balancer in
//!   front of the API sends), without passing the request on;
//! - answers 429 with `Retry-After: 1`, without passing it on;
//! - drops the connection before passing the request on, or after a pause (a stall that ends
//!   in a reset: the client's own 10–15 s timeout is not waited for);
//! - passes the request on and drops the connection instead of answering: the API made the
//!   change and the client never hears of it (the case that duplicates records if a client
//!   retries blindly);
//! - passes it on slowly (a pause before and after).
//!
//! Every other request is passed on unchanged (HTTP/1.1, the client's headers but `Host`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

/// What the proxy did to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Fault {
    ServerError,
    Throttled,
    ResetBefore,
    Stall,
    ResetAfterApplied,
    Slow,
}

impl Fault {
    pub const ALL: [Fault; 6] = [
        Fault::ServerError,
        Fault::Throttled,
        Fault::ResetBefore,
        Fault::Stall,
        Fault::ResetAfterApplied,
        Fault::Slow,
    ];
}

#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by the fault proxy")
    }
}

impl std::error::Error for Dropped {}

struct Inner {
    upstream: String,
    /// Per mille of the requests that get a fault.
    rate: u64,
    on: AtomicBool,
    state: AtomicU64,
    passed: AtomicU64,
    faults: Mutex<Vec<Fault>>,
    http: reqwest::Client,
}

impl Inner {
    /// xorshift64*: small, seeded, good enough to pick faults.
    fn next(&self) -> u64 {
        let mut x = self.state.load(Ordering::Relaxed);
        loop {
            let mut y = x;
            y ^= y >> 12;
            y ^= y << 25;
            y ^= y >> 27;
            match self
                .state
                .compare_exchange(x, y, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return y.wrapping_mul(0x2545_f491_4f6c_dd1d),
                Err(now) => x = now,
            }
        }
    }

    fn pick(&self) -> Option<Fault> {
        if !self.on.load(Ordering::Relaxed) || self.next() % 1000 >= self.rate {
            return None;
        }
        let fault = Fault::ALL[(self.next() % Fault::ALL.len() as u64) as usize];
        if let Ok(mut faults) = self.faults.lock() {
            faults.push(fault);
        }
        Some(fault)
    }
}

/// A running proxy; it stops with the test's runtime.
#[derive(Clone)]
pub struct FaultProxy {
    pub url: String,
    inner: Arc<Inner>,
}

impl FaultProxy {
    /// Starts a proxy to `upstream` (`http://host:port`) that faults `percent` % of requests.
    pub async fn start(upstream: &str, percent: u64, seed: u64) -> FaultProxy {
        mailsec_operator::dns::http::install_crypto_provider();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fault proxy");
        let addr: SocketAddr = listener.local_addr().expect("proxy address");
        let inner = Arc::new(Inner {
            upstream: upstream.trim_end_matches('/').to_owned(),
            rate: percent * 10,
            on: AtomicBool::new(true),
            state: AtomicU64::new(seed | 1),
            passed: AtomicU64::new(0),
            faults: Mutex::new(Vec::new()),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(30))
                .build()
                .expect("proxy client"),
        });
        let serving = inner.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let inner = serving.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let inner = inner.clone();
                        async move { handle(inner, req).await }
                    });
                    // An Err from the service closes the connection without an answer.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        FaultProxy {
            url: format!("http://{addr}"),
            inner,
        }
    }

    /// Faults on (the default) or off: off, every request is passed on.
    pub fn set_faulty(&self, on: bool) {
        self.inner.on.store(on, Ordering::Relaxed);
    }

    /// The faults injected so far, in order.
    pub fn faults(&self) -> Vec<Fault> {
        self.inner
            .faults
            .lock()
            .map(|f| f.clone())
            .unwrap_or_default()
    }

    /// Requests passed on to the upstream (faulted or not).
    pub fn passed(&self) -> u64 {
        self.inner.passed.load(Ordering::Relaxed)
    }
}

type Answer = Result<Response<Full<Bytes>>, Dropped>;

fn canned(status: StatusCode, extra: Option<(&str, &str)>) -> Answer {
    let mut answer = Response::builder()
        .status(status)
        .header("content-type", "text/html");
    if let Some((k, v)) = extra {
        answer = answer.header(k, v);
    }
    answer
        .body(Full::new(Bytes::from_static(
            b"<html><body>upstream unavailable</body></html>",
        )))
        .map_err(|_| Dropped)
}

async fn handle(inner: Arc<Inner>, req: Request<Incoming>) -> Answer {
    let fault = inner.pick();
    match fault {
        Some(Fault::ServerError) => {
            let status = [
                StatusCode::INTERNAL_SERVER_ERROR,
                StatusCode::BAD_GATEWAY,
                StatusCode::SERVICE_UNAVAILABLE,
            ][(inner.next() % 3) as usize];
            return canned(status, None);
        }
        Some(Fault::Throttled) => {
            return canned(StatusCode::TOO_MANY_REQUESTS, Some(("retry-after", "1")));
        }
        Some(Fault::ResetBefore) => return Err(Dropped),
        Some(Fault::Stall) => {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            return Err(Dropped);
        }
        Some(Fault::Slow) => tokio::time::sleep(Duration::from_millis(300)).await,
        _ => {}
    }
    let answer = forward(&inner, req).await;
    match fault {
        Some(Fault::ResetAfterApplied) => Err(Dropped),
        Some(Fault::Slow) => {
            tokio::time::sleep(Duration::from_millis(300)).await;
            answer
        }
        _ => answer,
    }
}

async fn forward(inner: &Inner, req: Request<Incoming>) -> Answer {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map_err(|_| Dropped)?.to_bytes();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let mut request = inner
        .http
        .request(parts.method.clone(), format!("{}{path}", inner.upstream))
        .body(body);
    for (name, value) in &parts.headers {
        if name != hyper::header::HOST && name != hyper::header::CONTENT_LENGTH {
            request = request.header(name, value);
        }
    }
    inner.passed.fetch_add(1, Ordering::Relaxed);
    let upstream = request.send().await.map_err(|_| Dropped)?;
    let mut answer = Response::builder().status(upstream.status());
    for (name, value) in upstream.headers() {
        if name != hyper::header::CONTENT_LENGTH && name != hyper::header::TRANSFER_ENCODING {
            answer = answer.header(name, value);
        }
    }
    let bytes = upstream.bytes().await.map_err(|_| Dropped)?;
    answer.body(Full::new(bytes)).map_err(|_| Dropped)
}
