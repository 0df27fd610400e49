//! `mailsec receive`: the TLS report receiver. Takes reports POSTed to the `rua=https://` URL
//! (see `tlsRpt.receive`) and stores each as TLSReports owned by the MailDomain of its policy
//! domain. Needs to read MailDomains and create TLSReports, nothing else.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use clap::Args;

use super::controller::{Logging, runtime};
use super::limits::LimitArgs;
use crate::conn::Limits;
use crate::intake::Counted;
use crate::intake::https::{self, Settings};
use crate::intake::imap;
use crate::intake::kube::KubeSink;
use crate::metrics::ReportMetrics;
use crate::model::rotation::parse_duration;

#[derive(Debug, Args)]
pub struct ReceiveArgs {
    /// Address of the report endpoint (plain HTTP; the Ingress terminates TLS).
    #[arg(long, env = "MAILSEC_LISTEN", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// Address of /livez, /readyz and /metrics.
    #[arg(long, env = "MAILSEC_ADMIN_ADDR", default_value = "0.0.0.0:8081")]
    admin_addr: SocketAddr,
    /// Reports accepted per minute from one client address.
    #[arg(long, env = "MAILSEC_REPORTS_PER_MINUTE", default_value = "60")]
    per_minute: NonZeroU32,
    /// Reports from one client address accepted at once above that rate.
    #[arg(long, env = "MAILSEC_REPORTS_BURST", default_value = "20")]
    burst: NonZeroU32,
    /// A proxy (CIDR) whose X-Forwarded-For names the client, e.g. the Ingress controller's
    /// pod network. Repeat or separate with commas.
    #[arg(long, env = "MAILSEC_TRUSTED_PROXY", value_delimiter = ',')]
    trusted_proxy: Vec<ipnet::IpNet>,
    #[command(flatten)]
    limits: LimitArgs,
    /// Time a client has to send its report once its headers are in (408 after it).
    #[arg(long, env = "MAILSEC_BODY_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    body_timeout: Duration,
    #[command(flatten)]
    imap: ImapArgs,
    #[command(flatten)]
    logging: Logging,
}

/// The mailbox the reports of `rua=mailto:` arrive in.
#[derive(Debug, Args)]
struct ImapArgs {
    /// Also read reports from this IMAP server, `host:port` (993 for implicit TLS).
    #[arg(long, env = "MAILSEC_IMAP_SERVER")]
    imap_server: Option<String>,
    /// `tls` (implicit, IMAPS), `starttls`, or `plain` (loopback only).
    #[arg(long, env = "MAILSEC_IMAP_TLS", default_value = "tls", value_parser = ["tls", "starttls", "plain"])]
    imap_tls: String,
    /// The mailbox user.
    #[arg(long, env = "MAILSEC_IMAP_USER", requires = "imap_server")]
    imap_user: Option<String>,
    /// File holding the password (a mounted Secret key).
    #[arg(long, env = "MAILSEC_IMAP_PASSWORD_FILE", requires = "imap_server")]
    imap_password_file: Option<std::path::PathBuf>,
    /// The folder reports arrive in.
    #[arg(long, env = "MAILSEC_IMAP_MAILBOX", default_value = "INBOX")]
    imap_mailbox: String,
    /// Extra CA certificates (PEM) for the IMAP server's certificate.
    #[arg(long, env = "MAILSEC_IMAP_CA_FILE")]
    imap_ca_file: Option<std::path::PathBuf>,
    /// Seconds between polls when the server offers no IDLE.
    #[arg(long, env = "MAILSEC_IMAP_POLL_INTERVAL", default_value_t = 300)]
    imap_poll_interval: u64,
    /// Nameserver for the DKIM keys of report mails (`ip:port`); default the system's.
    #[arg(long, env = "MAILSEC_DKIM_RESOLVER", value_delimiter = ',')]
    dkim_resolver: Vec<SocketAddr>,
}

impl ImapArgs {
    fn config(&self) -> Result<Option<imap::Config>, Box<dyn std::error::Error>> {
        let Some(server) = &self.imap_server else {
            return Ok(None);
        };
        let (host, port) = server
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h.trim_matches(['[', ']']), p.parse::<u16>().ok()?)))
            .ok_or("--imap-server must be host:port")?;
        let user = self
            .imap_user
            .clone()
            .ok_or("--imap-user is required with --imap-server")?;
        let file = self
            .imap_password_file
            .as_ref()
            .ok_or("--imap-password-file is required with --imap-server")?;
        let password = std::fs::read_to_string(file)
            .map_err(|e| format!("--imap-password-file {}: {e}", file.display()))?;
        let mut config =
            imap::Config::new(host, port, user, password.trim_end_matches(['\r', '\n']));
        config.tls = match self.imap_tls.as_str() {
            "starttls" => imap::TlsMode::StartTls,
            "plain" => imap::TlsMode::Plain,
            _ => imap::TlsMode::Tls,
        };
        config.mailbox = self.imap_mailbox.clone();
        config.ca_file = self.imap_ca_file.clone();
        config.poll_interval = Duration::from_secs(self.imap_poll_interval.max(1));
        if !self.dkim_resolver.is_empty() {
            config.dkim_resolver = imap::DkimResolver::Servers(self.dkim_resolver.clone());
        }
        config.validate()?;
        Ok(Some(config))
    }
}

pub fn run(args: ReceiveArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    args.logging.init();
    let connections = args.limits.limits(Limits {
        body_timeout: args.body_timeout,
        ..Limits::receive()
    })?;
    let settings = Settings {
        per_minute: args.per_minute,
        burst: args.burst,
        trusted_proxies: args.trusted_proxy,
        connections,
        ..Settings::default()
    };
    let imap = args.imap.config()?;
    runtime()?.block_on(async {
        let client = kube::Client::try_default().await?;
        let ready = Arc::new(AtomicBool::new(false));
        let metrics = Arc::new(ReportMetrics::default());
        let admin = tokio::net::TcpListener::bind(args.admin_addr)
            .await
            .map_err(|e| format!("{}: {e}", args.admin_addr))?;
        tokio::spawn(crate::admin::serve(
            admin,
            ready.clone(),
            Some(metrics.clone()),
        ));
        let store = crate::serve::maildomain_store(client.clone(), ready);
        let listener =
            crate::conn::bind(args.listen).map_err(|e| format!("{}: {e}", args.listen))?;
        tracing::info!(listen = %args.listen, "report receiver on");
        let sink = Arc::new(KubeSink::new(client, store, metrics.clone()));
        if let Some(config) = imap {
            tracing::info!(server = %config.host, mailbox = %config.mailbox, "reading reports from the mailbox");
            let mail = Counted {
                inner: sink.clone(),
                metrics: metrics.clone(),
                source: "mail",
            };
            tokio::spawn(async move {
                if let Err(e) = imap::run(config, &mail, std::future::pending()).await {
                    tracing::error!(reason = e.reason(), "the mailbox poller stopped: {e}");
                }
            });
        }
        https::serve(listener, sink, settings, metrics).await?;
        Ok(ExitCode::SUCCESS)
    })
}
