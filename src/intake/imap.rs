//! The mailbox poller: reads TLS reports (RFC 8460 §5.3) that arrive by mail at the `mailto:`
//! address a domain publishes, from an IMAP mailbox, and hands each one to a [`Sink`].
//!
//! A message is moved out of the mailbox only after the sink answered: to the processed folder
//! when the report is stored (new or a duplicate), to the rejected folder when it is not a
//! report or not for a domain managed here (never deleted, a person may look at it). When the
//! store is unavailable the message stays where it is, not even marked `\Seen` (bodies are read
//! with `BODY.PEEK`), and the next pass reads it again: a crash anywhere loses nothing, and a
//! report read twice is a duplicate for the sink.
//!
//! The poller waits with IDLE when the server offers it (re-issued at least every
//! [`Config::idle_interval`]), else it polls every [`Config::poll_interval`]; it reconnects
//! with bounded exponential backoff.

use std::fmt;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_imap::types::{Fetch, UnsolicitedResponse};
use async_imap::{Client, Session};
use futures_util::{FutureExt, TryStreamExt};
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use mail_auth::{AuthenticatedMessage, DkimResult, MessageAuthenticator};
use rustls::RootCertStore;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::{Dkim, Incoming, Raw, Sink, StoreError, Stored, Via};
use crate::report::{Limits, ReportError, parse_mail};

/// How the connection to the IMAP server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Implicit TLS (IMAPS, usually port 993).
    Tls,
    /// Plain connect, then `STARTTLS` before logging in (usually port 143).
    StartTls,
    /// No TLS at all: only to a loopback address (a mail server beside the operator).
    Plain,
}

/// Where the DKIM verifier looks up signing keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DkimResolver {
    /// The resolvers of this machine (`/etc/resolv.conf`; in a pod, the cluster DNS).
    System,
    /// These nameservers (UDP, TCP for long answers).
    Servers(Vec<SocketAddr>),
}

/// The poller's settings.
#[derive(Clone)]
pub struct Config {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    /// Extra CA certificates (PEM) trusted besides the web PKI roots.
    pub ca_file: Option<PathBuf>,
    pub username: String,
    /// Read by the caller from a mounted Secret file; never logged.
    pub password: String,
    /// The mailbox reports arrive in (default `INBOX`).
    pub mailbox: String,
    /// Where stored reports are moved (default `TLSRPT/Processed`), created if missing. `/`
    /// separates levels here; it becomes the server's hierarchy delimiter.
    pub processed: String,
    /// Where mails that are not reports, or not ours, are moved (default `TLSRPT/Rejected`).
    pub rejected: String,
    /// Time between passes when the server has no IDLE (default 5 minutes).
    pub poll_interval: Duration,
    /// Longest IDLE before it is re-issued (default 25 minutes: under RFC 2177 a server may
    /// log out a client idle for 30).
    pub idle_interval: Duration,
    /// Bound of one network step: connect, handshake, one IMAP command (default 60 s).
    pub io_timeout: Duration,
    /// First wait after a failure (connection or store), doubled per failure up to
    /// `max_backoff` (defaults 5 s and 5 min).
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    pub dkim_resolver: DkimResolver,
    /// Bounds of a report mail; mails over [`Limits::max_mail`] are rejected unread.
    pub limits: Limits,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("ca_file", &self.ca_file)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("mailbox", &self.mailbox)
            .field("processed", &self.processed)
            .field("rejected", &self.rejected)
            .field("poll_interval", &self.poll_interval)
            .field("idle_interval", &self.idle_interval)
            .field("io_timeout", &self.io_timeout)
            .field("min_backoff", &self.min_backoff)
            .field("max_backoff", &self.max_backoff)
            .field("dkim_resolver", &self.dkim_resolver)
            .field("limits", &self.limits)
            .finish()
    }
}

impl Config {
    /// Settings with the defaults above: implicit TLS, the system resolvers.
    pub fn new(
        host: impl Into<String>,
        port: u16,
        username: impl Into<String>,
        password: impl Into<String>,
    ) -> Config {
        Config {
            host: host.into(),
            port,
            tls: TlsMode::Tls,
            ca_file: None,
            username: username.into(),
            password: password.into(),
            mailbox: "INBOX".into(),
            processed: "TLSRPT/Processed".into(),
            rejected: "TLSRPT/Rejected".into(),
            poll_interval: Duration::from_secs(300),
            idle_interval: Duration::from_secs(25 * 60),
            io_timeout: Duration::from_secs(60),
            min_backoff: Duration::from_secs(5),
            max_backoff: Duration::from_secs(300),
            dkim_resolver: DkimResolver::System,
            limits: Limits::default(),
        }
    }

    /// Refuses settings that cannot work or are unsafe: plain IMAP to anything but a loopback
    /// address (the password would cross the network in clear), folder names the poller
    /// cannot quote, zero intervals.
    pub fn validate(&self) -> Result<(), ImapError> {
        if self.host.trim().is_empty() {
            return Err(ImapError::Config("the IMAP host is empty".into()));
        }
        if self.tls == TlsMode::Plain && !is_loopback(&self.host) {
            return Err(ImapError::PlainNotLoopback {
                host: self.host.clone(),
            });
        }
        for (what, name) in [
            ("mailbox", &self.mailbox),
            ("processed folder", &self.processed),
            ("rejected folder", &self.rejected),
        ] {
            if !valid_folder(name) {
                return Err(ImapError::Config(format!(
                    "the {what} `{name}` is not a plain ASCII folder name (no quotes, \
                     backslashes, wildcards or control characters)"
                )));
            }
        }
        if self.processed == self.mailbox || self.rejected == self.mailbox {
            return Err(ImapError::Config(
                "the processed and rejected folders must differ from the mailbox read".into(),
            ));
        }
        for (what, value) in [
            ("poll interval", self.poll_interval),
            ("IDLE interval", self.idle_interval),
            ("I/O timeout", self.io_timeout),
            ("minimum backoff", self.min_backoff),
        ] {
            if value.is_zero() {
                return Err(ImapError::Config(format!("the {what} is zero")));
            }
        }
        if self.max_backoff < self.min_backoff {
            return Err(ImapError::Config(
                "the maximum backoff is below the minimum".into(),
            ));
        }
        if matches!(&self.dkim_resolver, DkimResolver::Servers(s) if s.is_empty()) {
            return Err(ImapError::Config("no DKIM nameserver given".into()));
        }
        Ok(())
    }
}

/// Only an IP literal counts: a name could resolve anywhere.
fn is_loopback(host: &str) -> bool {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// Printable ASCII without what would need escaping in a quoted IMAP string or is a LIST
/// wildcard: such names are sent quoted as they are (no modified UTF-7 needed).
fn valid_folder(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| (0x20..0x7f).contains(&b) && !matches!(b, b'"' | b'\\' | b'%' | b'*'))
        && !name.starts_with('/')
        && !name.ends_with('/')
}

/// Why a pass or a connection failed. [`ImapError::reason`] is stable, for logs and metrics.
#[derive(Debug, thiserror::Error)]
pub enum ImapError {
    #[error("invalid IMAP settings: {0}")]
    Config(String),
    #[error(
        "plain IMAP (no TLS) is allowed only to a loopback address such as 127.0.0.1, and \
         `{host}` is not one: use TLS or STARTTLS"
    )]
    PlainNotLoopback { host: String },
    #[error("cannot use the CA file: {0}")]
    CaFile(String),
    #[error("cannot set up the DKIM resolver: {0}")]
    Resolver(String),
    #[error("cannot connect to {addr}: {why}")]
    Connect { addr: String, why: String },
    #[error("TLS with {host} failed: {why}")]
    Tls { host: String, why: String },
    #[error("the server refused STARTTLS: {0}")]
    StartTls(String),
    #[error("the server refused the connection: {0}")]
    Greeting(String),
    #[error("login as `{user}` refused: {why}")]
    Login { user: String, why: String },
    #[error("IMAP {command} failed: {why}")]
    Command { command: &'static str, why: String },
    #[error("{what} took longer than {after:?}")]
    Timeout { what: &'static str, after: Duration },
}

impl ImapError {
    /// Stable reason, for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            ImapError::Config(_) => "InvalidConfig",
            ImapError::PlainNotLoopback { .. } => "PlainNotLoopback",
            ImapError::CaFile(_) => "InvalidCaFile",
            ImapError::Resolver(_) => "DkimResolverFailed",
            ImapError::Connect { .. } => "ConnectFailed",
            ImapError::Tls { .. } => "TlsFailed",
            ImapError::StartTls(_) => "StartTlsRefused",
            ImapError::Greeting(_) => "GreetingRefused",
            ImapError::Login { .. } => "LoginFailed",
            ImapError::Command { .. } => "CommandFailed",
            ImapError::Timeout { .. } => "Timeout",
        }
    }

    /// Whether the settings are wrong (retrying cannot help) rather than the server or the
    /// network failing.
    pub fn is_config(&self) -> bool {
        matches!(
            self,
            ImapError::Config(_)
                | ImapError::PlainNotLoopback { .. }
                | ImapError::CaFile(_)
                | ImapError::Resolver(_)
        )
    }
}

/// What one pass over the mailbox did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassSummary {
    /// Reports stored for the first time (moved to the processed folder).
    pub stored: usize,
    /// Reports stored before (moved to the processed folder too).
    pub duplicate: usize,
    /// Mails that are not reports, too large, or for no managed domain (moved to the
    /// rejected folder).
    pub rejected: usize,
    /// Mails left in the mailbox for a later pass because the store was unavailable.
    pub deferred: usize,
}

impl PassSummary {
    /// Whether the store was unavailable during the pass (so the poller backs off).
    pub fn store_unavailable(&self) -> bool {
        self.deferred > 0
    }
}

/// Processes what is in the mailbox now, over one connection, and logs out.
pub async fn poll_once<S: Sink>(config: &Config, sink: &S) -> Result<PassSummary, ImapError> {
    Poller::new(config.clone())?.poll_once(sink).await
}

/// Reads the mailbox until `shutdown` completes: a pass, then IDLE (or a poll interval), again;
/// on a failure it reconnects after a backoff. Returns an error only for settings that cannot
/// work ([`ImapError::is_config`]).
pub async fn run<S: Sink>(
    config: Config,
    sink: &S,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ImapError> {
    Poller::new(config)?.run(sink, shutdown).await
}

/// A poller with its TLS client and DKIM verifier built once.
pub struct Poller {
    config: Config,
    tls: TlsConnector,
    dkim: MessageAuthenticator,
}

/// Any stream the session runs over: TCP, or TLS over TCP.
trait Io: AsyncRead + AsyncWrite + Unpin + Send + fmt::Debug {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + fmt::Debug> Io for T {}
type Stream = Box<dyn Io>;
type ImapSession = Session<Stream>;

/// What the server offers and the folder names in its hierarchy.
struct Layout {
    has_move: bool,
    has_uidplus: bool,
    has_idle: bool,
    processed: String,
    rejected: String,
}

/// What happened to one message.
enum Outcome {
    Stored,
    Duplicate,
    Rejected,
    Deferred,
    /// Gone before it was read (another client expunged it).
    Vanished,
}

/// UIDs fetched per `UID FETCH (RFC822.SIZE)`, to keep a command line short.
const SIZE_BATCH: usize = 200;

impl Poller {
    /// Checks the settings and builds the TLS client and the DKIM resolver.
    pub fn new(config: Config) -> Result<Poller, ImapError> {
        config.validate()?;
        let roots = roots(config.ca_file.as_deref())?;
        let tls_config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| ImapError::Config(format!("TLS client: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let dkim = dkim_resolver(&config.dkim_resolver, config.io_timeout)?;
        Ok(Poller {
            config,
            tls: TlsConnector::from(Arc::new(tls_config)),
            dkim,
        })
    }

    /// See [`poll_once`].
    pub async fn poll_once<S: Sink>(&self, sink: &S) -> Result<PassSummary, ImapError> {
        let mut session = self.connect().await?;
        let layout = self.prepare(&mut session).await?;
        let summary = self.pass(&mut session, &layout, sink).await;
        // The pass's outcome counts, not a failed goodbye.
        let _ = self.timed("LOGOUT", session.logout()).await;
        summary
    }

    /// See [`run`].
    pub async fn run<S: Sink>(
        &self,
        sink: &S,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), ImapError> {
        // Fused: polled again after it completed, it stays pending instead of panicking.
        let shutdown = shutdown.fuse();
        let mut shutdown = std::pin::pin!(shutdown);
        let mut backoff = Backoff::new(self.config.min_backoff, self.config.max_backoff);
        loop {
            match self.serve(sink, &mut backoff, shutdown.as_mut()).await {
                Ok(()) => return Ok(()),
                Err(e) if e.is_config() => return Err(e),
                Err(e) => {
                    let wait = backoff.next();
                    tracing::warn!(
                        reason = e.reason(),
                        error = %e,
                        retry_in = ?wait,
                        "TLS report mailbox: connection failed"
                    );
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = shutdown.as_mut() => return Ok(()),
                    }
                }
            }
        }
    }

    /// One connection: passes and waits until shutdown (`Ok`) or a failure.
    async fn serve<S: Sink>(
        &self,
        sink: &S,
        backoff: &mut Backoff,
        mut shutdown: std::pin::Pin<&mut impl Future<Output = ()>>,
    ) -> Result<(), ImapError> {
        let mut session = self.connect().await?;
        let layout = self.prepare(&mut session).await?;
        let mut store_backoff = Backoff::new(self.config.min_backoff, self.config.max_backoff);
        loop {
            let summary = self.pass(&mut session, &layout, sink).await?;
            // A pass went through: the connection is good again.
            backoff.reset();
            if summary.store_unavailable() {
                let wait = store_backoff.next();
                tracing::info!(retry_in = ?wait, "TLS report store unavailable: waiting");
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = shutdown.as_mut() => break,
                }
                continue;
            }
            store_backoff.reset();
            if layout.has_idle {
                let (back, stop) = self.idle(session, shutdown.as_mut()).await?;
                session = back;
                if stop {
                    break;
                }
            } else {
                tokio::select! {
                    () = tokio::time::sleep(self.config.poll_interval) => {}
                    () = shutdown.as_mut() => break,
                }
            }
        }
        let _ = self.timed("LOGOUT", session.logout()).await;
        Ok(())
    }

    /// Waits in IDLE until the server reports a change, [`Config::idle_interval`] passes, or
    /// shutdown (`true`). Returns the session out of IDLE.
    async fn idle(
        &self,
        session: ImapSession,
        mut shutdown: std::pin::Pin<&mut impl Future<Output = ()>>,
    ) -> Result<(ImapSession, bool), ImapError> {
        // A mail that arrived during the pass was announced then: no need to wait for it.
        if new_mail_announced(&session) {
            return Ok((session, false));
        }
        let mut handle = session.idle();
        // A mail arriving after the check above is announced during IDLE (RFC 2177) and
        // wakes the wait below.
        self.timed("IDLE", handle.init()).await?;
        let mut stop = false;
        {
            let (wait, _interrupt) = handle.wait_with_timeout(self.config.idle_interval);
            // The crate's timeout restarts with each keepalive the server sends; this bound
            // does not.
            tokio::select! {
                res = wait => {
                    res.map_err(|e| command_error("IDLE", &e))?;
                }
                () = tokio::time::sleep(self.config.idle_interval) => {}
                () = shutdown.as_mut() => stop = true,
            }
        }
        let session = self.timed("DONE", handle.done()).await?;
        Ok((session, stop))
    }

    /// Connects, protects and logs in.
    async fn connect(&self) -> Result<ImapSession, ImapError> {
        let config = &self.config;
        let addr = format!("{}:{}", config.host, config.port);
        let tcp = tokio::time::timeout(
            config.io_timeout,
            TcpStream::connect((config.host.as_str(), config.port)),
        )
        .await
        .map_err(|_| ImapError::Timeout {
            what: "connect",
            after: config.io_timeout,
        })?
        .map_err(|e| ImapError::Connect {
            addr: addr.clone(),
            why: e.to_string(),
        })?;
        let stream: Stream = match config.tls {
            TlsMode::Plain => Box::new(tcp),
            TlsMode::Tls => Box::new(self.handshake(tcp).await?),
            TlsMode::StartTls => {
                let mut client = Client::new(tcp);
                self.greeting(&mut client).await?;
                self.timed(
                    "STARTTLS",
                    client.run_command_and_check_ok("STARTTLS", None),
                )
                .await
                .map_err(|e| ImapError::StartTls(e.to_string()))?;
                // Nothing follows the tagged OK before the handshake, so no read-ahead is lost.
                Box::new(self.handshake(client.into_inner()).await?)
            }
        };
        let mut client = Client::new(stream);
        if config.tls != TlsMode::StartTls {
            self.greeting(&mut client).await?;
        }
        let login = tokio::time::timeout(
            config.io_timeout,
            client.login(&config.username, &config.password),
        )
        .await
        .map_err(|_| ImapError::Timeout {
            what: "LOGIN",
            after: config.io_timeout,
        })?;
        login.map_err(|(e, _)| ImapError::Login {
            user: config.username.clone(),
            why: e.to_string(),
        })
    }

    async fn handshake(
        &self,
        tcp: TcpStream,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, ImapError> {
        let host = &self.config.host;
        let name = ServerName::try_from(host.trim_start_matches('[').trim_end_matches(']'))
            .map_err(|e| ImapError::Tls {
                host: host.clone(),
                why: format!("not a server name: {e}"),
            })?
            .to_owned();
        tokio::time::timeout(self.config.io_timeout, self.tls.connect(name, tcp))
            .await
            .map_err(|_| ImapError::Timeout {
                what: "TLS handshake",
                after: self.config.io_timeout,
            })?
            .map_err(|e| ImapError::Tls {
                host: host.clone(),
                why: e.to_string(),
            })
    }

    /// Reads the server's greeting: `OK` (or `PREAUTH`) goes on, `BYE` is a refusal.
    async fn greeting<T: AsyncRead + AsyncWrite + Unpin + Send + fmt::Debug>(
        &self,
        client: &mut Client<T>,
    ) -> Result<(), ImapError> {
        use async_imap::imap_proto::{Response, Status};
        let greeting = tokio::time::timeout(self.config.io_timeout, client.read_response())
            .await
            .map_err(|_| ImapError::Timeout {
                what: "greeting",
                after: self.config.io_timeout,
            })?
            .map_err(|e| ImapError::Greeting(e.to_string()))?
            .ok_or_else(|| ImapError::Greeting("closed before the greeting".into()))?;
        match greeting.parsed() {
            Response::Data {
                status: Status::Ok | Status::PreAuth,
                ..
            } => Ok(()),
            Response::Data { status, outcome } => Err(ImapError::Greeting(format!(
                "{status:?} {}",
                clip(outcome.information.as_deref().unwrap_or_default())
            ))),
            other => Err(ImapError::Greeting(format!(
                "unexpected greeting {}",
                clip(&format!("{other:?}"))
            ))),
        }
    }

    /// Reads the capabilities, creates the two folders when missing and selects the mailbox.
    async fn prepare(&self, session: &mut ImapSession) -> Result<Layout, ImapError> {
        let caps = self.timed("CAPABILITY", session.capabilities()).await?;
        let delimiter = self.delimiter(session).await?;
        let in_server = |name: &str| match &delimiter {
            Some(d) if d != "/" => name.replace('/', d),
            _ => name.to_owned(),
        };
        let layout = Layout {
            has_move: caps.has_str("MOVE"),
            has_uidplus: caps.has_str("UIDPLUS"),
            has_idle: caps.has_str("IDLE"),
            processed: in_server(&self.config.processed),
            rejected: in_server(&self.config.rejected),
        };
        for folder in [&layout.processed, &layout.rejected] {
            self.ensure_folder(session, folder).await?;
        }
        self.timed("SELECT", session.select(in_server(&self.config.mailbox)))
            .await?;
        Ok(layout)
    }

    /// The server's hierarchy delimiter (`LIST "" ""`), `None` for a flat server.
    async fn delimiter(&self, session: &mut ImapSession) -> Result<Option<String>, ImapError> {
        let names = self
            .timed("LIST", async {
                session
                    .list(Some(""), Some("\"\""))
                    .await?
                    .try_collect::<Vec<_>>()
                    .await
            })
            .await?;
        Ok(names.first().and_then(|n| n.delimiter()).map(str::to_owned))
    }

    async fn ensure_folder(
        &self,
        session: &mut ImapSession,
        folder: &str,
    ) -> Result<(), ImapError> {
        if self.timed("LIST", folder_exists(session, folder)).await? {
            return Ok(());
        }
        match self.timed("CREATE", session.create(folder)).await {
            Ok(()) => {
                tracing::info!(folder, "TLS report mailbox: created folder");
                Ok(())
            }
            // Another poller may have created it meanwhile.
            Err(e) if self.timed("LIST", folder_exists(session, folder)).await? => {
                tracing::debug!(folder, error = %e, "folder appeared meanwhile");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// One pass over the selected mailbox.
    async fn pass<S: Sink>(
        &self,
        session: &mut ImapSession,
        layout: &Layout,
        sink: &S,
    ) -> Result<PassSummary, ImapError> {
        // Drained first: announcements after this point are new mail for the IDLE check.
        while session.unsolicited_responses.try_recv().is_ok() {}
        // Messages flagged \Deleted were copied already (COPY fallback) or are being deleted
        // by a person: not ours to read.
        let mut uids: Vec<u32> = self
            .timed("UID SEARCH", session.uid_search("UNDELETED"))
            .await?
            .into_iter()
            .collect();
        uids.sort_unstable();
        let mut summary = PassSummary::default();
        let mut sizes: Vec<(u32, Option<u32>)> = Vec::with_capacity(uids.len());
        for batch in uids.chunks(SIZE_BATCH) {
            let set = uid_set(batch);
            let fetches: Vec<Fetch> = self
                .timed("UID FETCH", async {
                    session
                        .uid_fetch(&set, "(UID RFC822.SIZE)")
                        .await?
                        .try_collect()
                        .await
                })
                .await?;
            sizes.extend(
                fetches
                    .iter()
                    .filter_map(|f| f.uid.map(|uid| (uid, f.size))),
            );
        }
        sizes.sort_unstable_by_key(|(uid, _)| *uid);
        for (i, &(uid, size)) in sizes.iter().enumerate() {
            match self.message(session, layout, sink, uid, size).await? {
                Outcome::Stored => summary.stored += 1,
                Outcome::Duplicate => summary.duplicate += 1,
                Outcome::Rejected => summary.rejected += 1,
                Outcome::Vanished => {}
                Outcome::Deferred => {
                    // The store is down: the rest would fail the same way; all stay.
                    summary.deferred += sizes.len() - i;
                    break;
                }
            }
        }
        if summary != PassSummary::default() {
            tracing::info!(
                mailbox = %self.config.mailbox,
                stored = summary.stored,
                duplicate = summary.duplicate,
                rejected = summary.rejected,
                deferred = summary.deferred,
                "TLS report mailbox pass"
            );
        }
        Ok(summary)
    }

    /// Reads, stores and files one message.
    async fn message<S: Sink>(
        &self,
        session: &mut ImapSession,
        layout: &Layout,
        sink: &S,
        uid: u32,
        size: Option<u32>,
    ) -> Result<Outcome, ImapError> {
        let limit = self.config.limits.max_mail;
        // Refused unread: the size the server states bounds what we download.
        let size = size.map_or(0, |s| usize::try_from(s).unwrap_or(usize::MAX));
        if size > limit {
            let error = ReportError::TooLarge {
                what: "mail",
                size,
                limit,
            };
            return self
                .reject(session, layout, uid, error.reason(), &error)
                .await;
        }
        let query = uid.to_string();
        let fetches: Vec<Fetch> = self
            .timed("UID FETCH", async {
                session
                    .uid_fetch(&query, "(UID BODY.PEEK[])")
                    .await?
                    .try_collect()
                    .await
            })
            .await?;
        let Some(raw) = fetches
            .iter()
            .find(|f| f.uid == Some(uid))
            .and_then(Fetch::body)
        else {
            tracing::debug!(uid, "message vanished before it was read");
            return Ok(Outcome::Vanished);
        };
        let mail = match parse_mail(raw, &self.config.limits) {
            Ok(mail) => mail,
            Err(e) => return self.reject(session, layout, uid, e.reason(), &e).await,
        };
        let dkim = self.verify_dkim(raw).await;
        let incoming = Incoming {
            raw: Raw {
                bytes: mail.part,
                gzip: mail.part_gzip,
            },
            via: Via::Mail {
                mailbox: self.config.mailbox.clone(),
                message_id: mail.message_id,
                from: mail.from,
                dkim,
            },
            report: mail.report,
        };
        let report_id = incoming.report.report_id.clone();
        match sink.store(incoming).await {
            Ok(stored) => {
                let (outcome, names) = match stored {
                    Stored::New(names) => (Outcome::Stored, names),
                    Stored::Duplicate(names) => (Outcome::Duplicate, names),
                };
                tracing::debug!(uid, report_id = %clip(&report_id), ?names, "report stored");
                self.file(session, layout, uid, &layout.processed).await?;
                Ok(outcome)
            }
            Err(e @ (StoreError::NotOurDomain { .. } | StoreError::Rejected(_))) => {
                self.reject(session, layout, uid, e.reason(), &e).await
            }
            Err(e @ StoreError::Unavailable(_)) => {
                tracing::warn!(uid, reason = e.reason(), error = %e, "report left in the mailbox");
                Ok(Outcome::Deferred)
            }
        }
    }

    async fn reject(
        &self,
        session: &mut ImapSession,
        layout: &Layout,
        uid: u32,
        reason: &'static str,
        error: &(dyn std::error::Error + Send + Sync),
    ) -> Result<Outcome, ImapError> {
        tracing::warn!(uid, reason, error = %error, folder = %layout.rejected, "mail rejected");
        self.file(session, layout, uid, &layout.rejected).await?;
        Ok(Outcome::Rejected)
    }

    /// Moves one message: `UID MOVE`, or without MOVE: COPY, flag `\Deleted`, and expunge that
    /// UID only (`UID EXPUNGE`, UIDPLUS). Without UIDPLUS the copy stays flagged `\Deleted`
    /// (a plain EXPUNGE would remove other messages a person flagged) and later passes skip
    /// it.
    async fn file(
        &self,
        session: &mut ImapSession,
        layout: &Layout,
        uid: u32,
        folder: &str,
    ) -> Result<(), ImapError> {
        let set = uid.to_string();
        if layout.has_move {
            return self.timed("UID MOVE", session.uid_mv(&set, folder)).await;
        }
        self.timed("UID COPY", session.uid_copy(&set, folder))
            .await?;
        self.timed("UID STORE", async {
            session
                .uid_store(&set, "+FLAGS.SILENT (\\Deleted)")
                .await?
                .try_collect::<Vec<_>>()
                .await
        })
        .await?;
        if layout.has_uidplus {
            self.timed("UID EXPUNGE", async {
                session
                    .uid_expunge(&set)
                    .await?
                    .try_collect::<Vec<_>>()
                    .await
            })
            .await?;
        }
        Ok(())
    }

    /// The DKIM verdict (RFC 6376) on a whole mail: a passing signature wins; else the first
    /// failure says why.
    async fn verify_dkim(&self, raw: &[u8]) -> Dkim {
        let Some(message) = AuthenticatedMessage::parse(raw) else {
            return Dkim::Fail {
                why: "the mail's headers cannot be read".into(),
            };
        };
        let outputs =
            match tokio::time::timeout(self.config.io_timeout, self.dkim.verify_dkim(&message))
                .await
            {
                Ok(outputs) => outputs,
                Err(_) => {
                    return Dkim::Fail {
                        why: format!(
                            "the signing key lookup took longer than {:?}",
                            self.config.io_timeout
                        ),
                    };
                }
            };
        if outputs.is_empty() {
            return Dkim::None;
        }
        if let Some(pass) = outputs
            .iter()
            .find(|o| *o.result() == DkimResult::Pass)
            .and_then(|o| o.signature())
        {
            return Dkim::Pass {
                domain: pass.d.to_ascii_lowercase(),
            };
        }
        let why = outputs
            .iter()
            .map(|o| match o.result() {
                DkimResult::Fail(e) => format!("fail: {e}"),
                DkimResult::Neutral(e) => format!("neutral: {e}"),
                DkimResult::PermError(e) => format!("permerror: {e}"),
                DkimResult::TempError(e) => format!("temperror: {e}"),
                DkimResult::Pass => "pass".into(),
                DkimResult::None => "none".into(),
            })
            .next()
            .unwrap_or_default();
        Dkim::Fail { why: clip(&why) }
    }

    /// An IMAP step bounded by [`Config::io_timeout`].
    async fn timed<T>(
        &self,
        command: &'static str,
        step: impl Future<Output = async_imap::error::Result<T>>,
    ) -> Result<T, ImapError> {
        match tokio::time::timeout(self.config.io_timeout, step).await {
            Ok(result) => result.map_err(|e| command_error(command, &e)),
            Err(_) => Err(ImapError::Timeout {
                what: command,
                after: self.config.io_timeout,
            }),
        }
    }
}

fn command_error(command: &'static str, error: &async_imap::error::Error) -> ImapError {
    ImapError::Command {
        command,
        why: clip(&error.to_string()),
    }
}

async fn folder_exists(session: &mut ImapSession, folder: &str) -> async_imap::error::Result<bool> {
    // The crate sends the pattern as it is: quoted here (the name is checked to need no
    // escaping).
    let names: Vec<_> = session
        .list(Some(""), Some(&format!("\"{folder}\"")))
        .await?
        .try_collect()
        .await?;
    Ok(names.iter().any(|n| n.name() == folder))
}

/// Whether the server announced a new message (EXISTS, RECENT) since the pass began.
fn new_mail_announced(session: &ImapSession) -> bool {
    let mut announced = false;
    while let Ok(response) = session.unsolicited_responses.try_recv() {
        announced |= matches!(
            response,
            UnsolicitedResponse::Exists(_) | UnsolicitedResponse::Recent(_)
        );
    }
    announced
}

/// `1,2,5:9` for sorted UIDs.
fn uid_set(uids: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < uids.len() {
        let start = uids[i];
        let mut end = start;
        while i + 1 < uids.len() && uids[i + 1] == end.wrapping_add(1) {
            i += 1;
            end = uids[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

/// Server text in a log line or an error: at most 200 characters.
fn clip(text: &str) -> String {
    match text.char_indices().nth(200) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// Web PKI roots plus the CA certificates of `ca_file`.
fn roots(ca_file: Option<&std::path::Path>) -> Result<Arc<RootCertStore>, ImapError> {
    use rustls_pki_types::pem::PemObject;
    let mut store = RootCertStore::empty();
    store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| ImapError::CaFile(format!("{}: {e}", path.display())))?;
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
            .filter_map(Result::ok)
            .collect();
        if certs.is_empty() {
            return Err(ImapError::CaFile(format!(
                "{}: no certificate in it",
                path.display()
            )));
        }
        for cert in certs {
            store
                .add(cert)
                .map_err(|e| ImapError::CaFile(format!("{}: {e}", path.display())))?;
        }
    }
    Ok(Arc::new(store))
}

fn dkim_resolver(
    setting: &DkimResolver,
    timeout: Duration,
) -> Result<MessageAuthenticator, ImapError> {
    let servers = match setting {
        DkimResolver::System => {
            return MessageAuthenticator::new_system_conf()
                .map_err(|e| ImapError::Resolver(e.to_string()));
        }
        DkimResolver::Servers(servers) => servers,
    };
    let name_servers = servers
        .iter()
        .map(|server| {
            let connections = [ConnectionConfig::udp(), ConnectionConfig::tcp()]
                .into_iter()
                .map(|mut c| {
                    c.port = server.port();
                    c
                })
                .collect();
            NameServerConfig::new(server.ip(), true, connections)
        })
        .collect();
    let mut options = ResolverOpts::default();
    // Two tries within the bound: one lost datagram is not a failure.
    options.attempts = 2;
    options.timeout = (timeout / 4).max(Duration::from_millis(500));
    MessageAuthenticator::new(ResolverConfig::from_name_servers(name_servers), options)
        .map_err(|e| ImapError::Resolver(e.to_string()))
}

/// Exponential backoff between `min` and `max`.
struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    fn new(min: Duration, max: Duration) -> Self {
        Backoff {
            min,
            max,
            next: min,
        }
    }

    fn next(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(self.max);
        wait
    }

    fn reset(&mut self) {
        self.next = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(host: &str, tls: TlsMode) -> Config {
        let mut c = Config::new(host, 143, "u", "p");
        c.tls = tls;
        c
    }

    #[test]
    fn plain_only_to_loopback() {
        for host in ["127.0.0.1", "127.1.2.3", "::1", "[::1]"] {
            assert!(config(host, TlsMode::Plain).validate().is_ok(), "{host}");
        }
        for host in [
            "mail.example.com",
            "localhost",
            "10.0.0.1",
            "::ffff:10.0.0.1",
        ] {
            let err = config(host, TlsMode::Plain).validate().expect_err(host);
            assert_eq!(err.reason(), "PlainNotLoopback", "{host}");
            assert!(config(host, TlsMode::Tls).validate().is_ok(), "{host}");
            assert!(config(host, TlsMode::StartTls).validate().is_ok(), "{host}");
        }
    }

    #[test]
    fn folder_names_are_checked() {
        let mut c = config("mail.example.com", TlsMode::Tls);
        c.rejected = "Bad\"Name".into();
        assert_eq!(c.validate().map_err(|e| e.reason()), Err("InvalidConfig"));
        c.rejected = "INBOX".into();
        assert_eq!(c.validate().map_err(|e| e.reason()), Err("InvalidConfig"));
        c.rejected = "Reports/Räte".into();
        assert_eq!(c.validate().map_err(|e| e.reason()), Err("InvalidConfig"));
    }

    #[test]
    fn password_is_not_in_debug() {
        let c = Config::new("h", 993, "user", "hunter2");
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn uid_sets() {
        assert_eq!(uid_set(&[1]), "1");
        assert_eq!(uid_set(&[1, 2, 3, 5, 7, 8]), "1:3,5,7:8");
        assert_eq!(
            uid_set(&[u32::MAX - 1, u32::MAX]),
            format!("{}:{}", u32::MAX - 1, u32::MAX)
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_max() {
        let mut b = Backoff::new(Duration::from_secs(5), Duration::from_secs(12));
        assert_eq!(b.next(), Duration::from_secs(5));
        assert_eq!(b.next(), Duration::from_secs(10));
        assert_eq!(b.next(), Duration::from_secs(12));
        b.reset();
        assert_eq!(b.next(), Duration::from_secs(5));
    }
}
