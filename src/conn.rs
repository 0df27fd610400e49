//! The connections of the public endpoints (`mailsec serve`, plain and TLS, and `mailsec
//! receive`): one accept loop that bounds what a client can hold.
//!
//! - at most `max_connections` at once; one more is accepted and closed at once (so the
//!   backlog never fills with clients that wait), counted as `over_limit`;
//! - the request head within `header_timeout` (from the accept for the first request, TLS
//!   handshake included; from its first byte for the next ones); a client that sent part of
//!   one gets `408 Request Timeout`, one that sent nothing is just closed;
//! - a head larger than `max_header_bytes` gets `431` (hyper's);
//! - between requests, `idle_timeout`;
//! - after `max_requests_per_connection` requests the last response says `Connection: close`;
//!   after `max_connection_age` the connection is shut down gracefully (the request in flight
//!   is answered), so that no client keeps one forever.
//!
//! HTTP/1.1 only (ALPN `http/1.1` over TLS): policy fetchers and report senders speak it, and
//! one protocol keeps the bounds above simple to hold. Closed connections are counted in
//! `mailsec_connections_closed_total{reason}`, open ones in `mailsec_connections_open`.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderValue, Request, Response, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tower::ServiceExt;

use crate::metrics::ConnectionMetrics;

/// The listen backlog: room for a burst of connections while the loop accepts (the kernel
/// caps it at `net.core.somaxconn`).
pub const BACKLOG: u32 = 4096;

/// The smallest `max_header_bytes`: a request line, a Host header and a few more fit.
pub const MIN_HEADER_BYTES: usize = 1024;

/// hyper's smallest read buffer; heads up to `max_header_bytes` are still refused exactly.
const MIN_BUFFER: usize = 8192;

/// The response to a request whose head did not arrive in time.
const TIMEOUT_RESPONSE: &[u8] = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n\r\n";

/// What one endpoint allows a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_header_bytes: usize,
    pub max_requests_per_connection: u64,
    pub max_connection_age: Duration,
    /// A request body's time (the receiver's reports; the policy server reads none).
    pub body_timeout: Duration,
}

impl Limits {
    /// `mailsec serve`'s defaults: many small GETs.
    pub fn serve() -> Limits {
        Limits {
            max_connections: 4096,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(15),
            max_header_bytes: 16 * 1024,
            max_requests_per_connection: 1000,
            max_connection_age: Duration::from_secs(300),
            body_timeout: Duration::from_secs(30),
        }
    }

    /// `mailsec receive`'s defaults: fewer clients, larger requests.
    pub fn receive() -> Limits {
        Limits {
            max_connections: 1024,
            max_header_bytes: 64 * 1024,
            ..Limits::serve()
        }
    }

    pub fn validate(&self) -> Result<(), LimitsError> {
        if self.max_header_bytes < MIN_HEADER_BYTES {
            return Err(LimitsError::HeaderBytes(self.max_header_bytes));
        }
        let zero = [
            ("max-connections", self.max_connections == 0),
            ("header-timeout", self.header_timeout.is_zero()),
            ("idle-timeout", self.idle_timeout.is_zero()),
            (
                "max-requests-per-connection",
                self.max_requests_per_connection == 0,
            ),
            ("max-connection-age", self.max_connection_age.is_zero()),
            ("body-timeout", self.body_timeout.is_zero()),
        ];
        match zero.into_iter().find(|(_, z)| *z) {
            Some((name, _)) => Err(LimitsError::Zero(name)),
            None => Ok(()),
        }
    }
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum LimitsError {
    #[error(
        "--max-header-bytes must be at least {MIN_HEADER_BYTES} (a request line and its headers need room), not {0}"
    )]
    HeaderBytes(usize),
    #[error("--{0} must be more than zero")]
    Zero(&'static str),
}

/// The peer address of a connection, in each request's extensions.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// How connections are spoken.
#[derive(Clone)]
pub enum Transport {
    Plain,
    Tls(tokio_rustls::TlsAcceptor),
}

/// Why a connection ended (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Close {
    Client,
    HeaderTimeout,
    HeaderTooLarge,
    Idle,
    MaxRequests,
    MaxAge,
    OverLimit,
    Error,
}

impl Close {
    pub fn as_str(self) -> &'static str {
        match self {
            Close::Client => "client",
            Close::HeaderTimeout => "header_timeout",
            Close::HeaderTooLarge => "header_too_large",
            Close::Idle => "idle",
            Close::MaxRequests => "max_requests",
            Close::MaxAge => "max_age",
            Close::OverLimit => "over_limit",
            Close::Error => "error",
        }
    }
}

/// A listener with the [`BACKLOG`] (tokio's `bind` uses 1024).
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // A restarted server binds again while old connections linger in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// Serves `router` on `listener` within `limits` until the process ends.
pub async fn serve(
    listener: TcpListener,
    transport: Transport,
    router: Router,
    limits: Limits,
    metrics: Arc<ConnectionMetrics>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let limits = Arc::new(limits);
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                // Out of file descriptors, mostly: the next accept may work once some close.
                tracing::warn!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let accepted = Instant::now();
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            drop(tcp);
            metrics.closed(Close::OverLimit.as_str());
            continue;
        };
        // Small responses: do not wait for the client's delayed ACK.
        let _ = tcp.set_nodelay(true);
        let open = Open::new(metrics.clone(), permit);
        let (transport, router, limits) = (transport.clone(), router.clone(), limits.clone());
        tokio::spawn(async move {
            let mut open = open;
            let deadline = accepted + limits.header_timeout;
            open.reason = match transport {
                Transport::Plain => connection(tcp, peer, accepted, router, &limits).await,
                Transport::Tls(acceptor) => {
                    match tokio::time::timeout_at(deadline, acceptor.accept(tcp)).await {
                        Err(_) => Close::HeaderTimeout,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, "TLS handshake: {e}");
                            Close::Error
                        }
                        Ok(Ok(tls)) => connection(tls, peer, accepted, router, &limits).await,
                    }
                }
            };
        });
    }
}

/// An open connection: counted while it lives, and its reason once it ends (also when its
/// task panics).
struct Open {
    metrics: Arc<ConnectionMetrics>,
    reason: Close,
    _permit: OwnedSemaphorePermit,
}

impl Open {
    fn new(metrics: Arc<ConnectionMetrics>, permit: OwnedSemaphorePermit) -> Open {
        metrics.open.inc();
        Open {
            metrics,
            reason: Close::Error,
            _permit: permit,
        }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.metrics.open.dec();
        self.metrics.closed(self.reason.as_str());
    }
}

/// Where a connection is between requests.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Waiting for a request head since `since`; `partial` once a byte of it arrived.
    Head { since: Instant, partial: bool },
    /// A request in the handler.
    Busy,
    /// A response given, nothing of the next request yet.
    Idle { since: Instant },
}

/// What the connection task and the IO and service below share.
struct State {
    phase: Mutex<Phase>,
    /// Wakes the connection task when a deadline may have moved.
    changed: Notify,
    requests: AtomicU64,
    last_request: AtomicBool,
}

impl State {
    fn phase(&self) -> MutexGuard<'_, Phase> {
        // Plain data: a panic elsewhere leaves it usable.
        self.phase.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn read_some(&self) {
        let mut phase = self.phase();
        match *phase {
            Phase::Idle { .. } => {
                *phase = Phase::Head {
                    since: Instant::now(),
                    partial: true,
                };
                drop(phase);
                self.changed.notify_one();
            }
            Phase::Head { since, .. } => {
                *phase = Phase::Head {
                    since,
                    partial: true,
                }
            }
            Phase::Busy => {}
        }
    }

    /// A request reached the handler; returns how many this connection had.
    fn begin(&self) -> u64 {
        *self.phase() = Phase::Busy;
        self.changed.notify_one();
        self.requests.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn end(&self, last: bool) {
        if last {
            self.last_request.store(true, Ordering::Relaxed);
        }
        *self.phase() = Phase::Idle {
            since: Instant::now(),
        };
        self.changed.notify_one();
    }

    fn was_last_request(&self) -> bool {
        self.last_request.load(Ordering::Relaxed)
    }
}

/// What a deadline ends.
enum Expiry {
    /// Of a request head (408 if part of it came).
    Head,
    Idle,
    Age,
    /// The end of the grace after a graceful shutdown.
    Hard,
}

/// One connection until it closes; why it closed.
async fn connection<IO>(
    io: IO,
    peer: SocketAddr,
    accepted: Instant,
    router: Router,
    limits: &Limits,
) -> Close
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let state = Arc::new(State {
        phase: Mutex::new(Phase::Head {
            since: accepted,
            partial: false,
        }),
        changed: Notify::new(),
        requests: AtomicU64::new(0),
        last_request: AtomicBool::new(false),
    });
    let service = PerConnection {
        router,
        peer,
        state: state.clone(),
        max_requests: limits.max_requests_per_connection,
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        // The head's deadline is ours (below): hyper's closes without the 408.
        .header_read_timeout(None)
        .max_header_size(limits.max_header_bytes)
        .max_buf_size(limits.max_header_bytes.max(MIN_BUFFER));
    let watched = Watched {
        io,
        state: state.clone(),
    };
    let mut conn = builder.serve_connection(TokioIo::new(watched), service);
    let age = accepted + limits.max_connection_age;
    // Set once the connection is shut down gracefully: why, and until when it may finish.
    let mut ending: Option<(Close, Instant)> = None;
    loop {
        let (at, expiry) = match ending {
            Some((_, until)) => (until, Expiry::Hard),
            None => {
                let phase = *state.phase();
                let next = match phase {
                    Phase::Head { since, .. } => {
                        Some((since + limits.header_timeout, Expiry::Head))
                    }
                    Phase::Idle { since } => Some((since + limits.idle_timeout, Expiry::Idle)),
                    Phase::Busy => None,
                };
                match next {
                    Some((at, expiry)) if at < age => (at, expiry),
                    _ => (age, Expiry::Age),
                }
            }
        };
        tokio::select! {
            biased;
            done = &mut conn => {
                return match ending {
                    Some((why, _)) => why,
                    None if state.was_last_request() => Close::MaxRequests,
                    None => outcome(peer, done),
                };
            }
            () = state.changed.notified() => {}
            () = tokio::time::sleep_until(at) => match expiry {
                Expiry::Head => {
                    // Bytes since the deadline was computed change `partial`, not the deadline.
                    let Phase::Head { partial, .. } = *state.phase() else { continue };
                    // hyper holds no response for this connection: take the socket back.
                    let mut io = conn.into_parts().io.into_inner().io;
                    if partial {
                        let write = async {
                            io.write_all(TIMEOUT_RESPONSE).await?;
                            io.shutdown().await
                        };
                        let _ = tokio::time::timeout(Duration::from_secs(1), write).await;
                    }
                    return Close::HeaderTimeout;
                }
                Expiry::Idle | Expiry::Age => {
                    let why = if matches!(expiry, Expiry::Idle) { Close::Idle } else { Close::MaxAge };
                    Pin::new(&mut conn).graceful_shutdown();
                    // The request in flight gets as long as a head would.
                    ending = Some((why, Instant::now() + limits.header_timeout));
                }
                Expiry::Hard => return ending.map_or(Close::MaxAge, |(why, _)| why),
            },
        }
    }
}

fn outcome(peer: SocketAddr, done: hyper::Result<()>) -> Close {
    match done {
        Ok(()) => Close::Client,
        Err(e) if e.is_parse_too_large() => Close::HeaderTooLarge,
        Err(e) if e.is_incomplete_message() || e.is_canceled() || e.is_closed() => Close::Client,
        Err(e) => {
            let reset = std::error::Error::source(&e)
                .and_then(|s| s.downcast_ref::<io::Error>())
                .is_some_and(|io| {
                    matches!(
                        io.kind(),
                        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
                    )
                });
            if reset {
                Close::Client
            } else {
                tracing::debug!(%peer, "connection: {e}");
                Close::Error
            }
        }
    }
}

/// The connection's IO, noting when bytes of a new request head arrive.
struct Watched<IO> {
    io: IO,
    state: Arc<State>,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Watched<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.state.read_some();
        }
        polled
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Watched<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// The router for one connection: the peer in each request, the requests counted.
struct PerConnection {
    router: Router,
    peer: SocketAddr,
    state: Arc<State>,
    max_requests: u64,
}

type Responding =
    Pin<Box<dyn Future<Output = Result<Response<axum::body::Body>, Infallible>> + Send>>;

impl hyper::service::Service<Request<Incoming>> for PerConnection {
    type Response = Response<axum::body::Body>;
    type Error = Infallible;
    type Future = Responding;

    fn call(&self, mut request: Request<Incoming>) -> Self::Future {
        let last = self.state.begin() >= self.max_requests;
        request.extensions_mut().insert(Peer(self.peer));
        let (router, state) = (self.router.clone(), self.state.clone());
        Box::pin(async move {
            let mut response = match router.oneshot(request).await {
                Ok(r) => r,
                Err(never) => match never {},
            };
            if last {
                // hyper closes the connection after a response that says so.
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            state.end(last);
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_refuse_small_header_buffers_and_zeros() {
        assert_eq!(Limits::serve().validate(), Ok(()));
        assert_eq!(Limits::receive().validate(), Ok(()));
        let small = Limits {
            max_header_bytes: 1023,
            ..Limits::serve()
        };
        let e = small.validate().unwrap_err();
        assert_eq!(e, LimitsError::HeaderBytes(1023));
        assert!(e.to_string().contains("at least 1024"), "{e}");
        let zero = Limits {
            max_requests_per_connection: 0,
            ..Limits::receive()
        };
        assert_eq!(
            zero.validate(),
            Err(LimitsError::Zero("max-requests-per-connection"))
        );
    }
}
