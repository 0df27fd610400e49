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
use crate::intake::https::{self, Settings};
use crate::intake::kube::KubeSink;
use crate::metrics::ReportMetrics;

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
    /// Connections served at once; more wait.
    #[arg(long, env = "MAILSEC_MAX_CONNECTIONS", default_value_t = 1024)]
    max_connections: usize,
    /// Seconds a client has to send its request headers, and then its report.
    #[arg(long, env = "MAILSEC_REQUEST_TIMEOUT", default_value_t = 10)]
    request_timeout: u64,
    #[command(flatten)]
    logging: Logging,
}

pub fn run(args: ReceiveArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    args.logging.init();
    let timeout = Duration::from_secs(args.request_timeout.max(1));
    let settings = Settings {
        per_minute: args.per_minute,
        burst: args.burst,
        trusted_proxies: args.trusted_proxy,
        max_connections: args.max_connections,
        header_timeout: timeout,
        body_timeout: timeout.saturating_mul(3),
        ..Settings::default()
    };
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
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|e| format!("{}: {e}", args.listen))?;
        tracing::info!(listen = %args.listen, "report receiver on");
        let sink = KubeSink::new(client, store, metrics.clone());
        https::serve(listener, sink, settings, metrics).await?;
        Ok(ExitCode::SUCCESS)
    })
}
