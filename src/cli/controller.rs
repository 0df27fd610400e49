//! `mailsec controller` and `mailsec serve`: the two long-running roles.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Args, ValueEnum};

use crate::controller::context::Config;
use crate::controller::hosting::HostingConfig;
use crate::controller::run::{self, Options};
use crate::controller::verify;
use crate::serve::tls::Source;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct Logging {
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "MAILSEC_LOG_FORMAT")]
    log_format: LogFormat,
}

impl Logging {
    pub(crate) fn init(&self) {
        let filter = tracing_subscriber::EnvFilter::try_from_env("MAILSEC_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn"));
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
        match self.log_format {
            LogFormat::Json => builder.json().init(),
            LogFormat::Text => builder.init(),
        }
    }
}

#[derive(Debug, Args)]
pub struct ControllerArgs {
    /// Identifies this installation in the DNS ownership markers (`_mailsec.<name>` TXT), so two
    /// installations never take each other's records.
    #[arg(long, env = "MAILSEC_OWNER_ID", default_value = "default")]
    owner_id: String,
    /// The operator's namespace: the Lease, and the Secrets of ClusterDNSProviders.
    #[arg(long, env = "POD_NAMESPACE", default_value = "mailsec-system")]
    namespace: String,
    /// Base URL of the policy server's Service, e.g. http://mailsec-serve.mailsec-system.svc.
    /// A changed policy's id is published only once this server returns the new policy.
    #[arg(long, env = "MAILSEC_POLICY_SERVER_URL")]
    policy_server_url: Option<url::Url>,
    /// The public URL of the report receiver (`mailsec receive`), e.g.
    /// https://tlsrpt.example.net/v1/reports: added to `rua` of MailDomains with
    /// `tlsRpt.receive: true`.
    #[arg(long, env = "MAILSEC_REPORT_URL", value_parser = super::render::parse_report_url)]
    report_url: Option<crate::domain::tlsrpt::ReportUri>,
    /// TLSReports older than this many days are deleted.
    #[arg(long, env = "MAILSEC_REPORT_RETENTION_DAYS", default_value_t = 90)]
    report_retention_days: u32,
    /// At most this many TLSReports are kept per MailDomain (the newest).
    #[arg(long, env = "MAILSEC_REPORT_RETENTION_COUNT", default_value_t = 400)]
    report_retention_count: usize,
    /// The policy server's Service, which the Ingresses of `policyHost.ingress` route to.
    #[arg(
        long,
        env = "MAILSEC_POLICY_SERVICE_NAME",
        default_value = "mailsec-serve"
    )]
    policy_service_name: String,
    /// Namespace of that Service (default: --namespace).
    #[arg(long, env = "MAILSEC_POLICY_SERVICE_NAMESPACE")]
    policy_service_namespace: Option<String>,
    /// The Service's plain-HTTP port.
    #[arg(long, env = "MAILSEC_POLICY_SERVICE_PORT", default_value_t = 80)]
    policy_service_port: u16,
    /// The cluster's DNS domain, for the ExternalName Services that reach the policy server
    /// from other namespaces.
    #[arg(long, env = "MAILSEC_CLUSTER_DOMAIN", default_value = "cluster.local")]
    cluster_domain: String,
    /// How often each MailDomain's live checks (the *Verified conditions) run, in seconds,
    /// with a tenth of jitter; they also run right after a change. 0 turns the checks off.
    #[arg(long, env = "MAILSEC_CHECK_INTERVAL", default_value_t = 600)]
    check_interval: u64,
    /// The DNS resolver the live checks ask, `ip:port` (repeat for more). Default: the
    /// resolvers of /etc/resolv.conf (in a pod, the cluster DNS).
    #[arg(long, env = "MAILSEC_CHECK_RESOLVER", value_delimiter = ',')]
    check_resolver: Vec<SocketAddr>,
    /// Seconds each step of a check (each DNS lookup, connection, handshake) may take.
    #[arg(long, env = "MAILSEC_CHECK_TIMEOUT", default_value_t = 10)]
    check_timeout: u64,
    /// How many checks may run at once.
    #[arg(long, env = "MAILSEC_CHECK_CONCURRENCY", default_value_t = 8)]
    check_concurrency: usize,
    /// PEM file of CA certificates the checks trust besides the Web PKI roots.
    #[arg(long, env = "MAILSEC_CHECK_CA_FILE")]
    check_ca_file: Option<std::path::PathBuf>,
    /// Port of the policy hosts the checks fetch from (tests use another).
    #[arg(long, default_value_t = 443)]
    check_https_port: u16,
    /// Port of the MX hosts the checks probe (tests use another).
    #[arg(long, default_value_t = 25)]
    check_smtp_port: u16,
    /// Address of /livez, /readyz and /metrics.
    #[arg(long, env = "MAILSEC_ADMIN_ADDR", default_value = "0.0.0.0:8081")]
    admin_addr: SocketAddr,
    /// Hold a Lease and reconcile only while leader.
    #[arg(long, env = "MAILSEC_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    leader_election: bool,
    /// Name of the Lease.
    #[arg(long, default_value = "mailsec-operator")]
    lease_name: String,
    /// This replica's identity in the Lease and in events.
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Reconcile the MailDomains of this namespace only (all namespaces when absent).
    #[arg(long, env = "MAILSEC_WATCH_NAMESPACE")]
    watch_namespace: Option<String>,
    /// How many MailDomains are reconciled at once. This bounds the requests in flight to the
    /// API server and the DNS providers; the rest wait their turn.
    #[arg(long, env = "MAILSEC_RECONCILE_CONCURRENCY", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
    reconcile_concurrency: u16,
    #[command(flatten)]
    logging: Logging,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address of the policy endpoint.
    #[arg(long, env = "MAILSEC_LISTEN", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// Address of /livez, /readyz and /metrics.
    #[arg(long, env = "MAILSEC_ADMIN_ADDR", default_value = "0.0.0.0:8081")]
    admin_addr: SocketAddr,
    /// Terminate TLS with this PEM certificate chain (needs --tls-key). Reloaded every minute.
    #[arg(
        long,
        env = "MAILSEC_TLS_CERT",
        requires = "tls_key",
        conflicts_with = "tls_secret"
    )]
    tls_cert: Option<std::path::PathBuf>,
    /// The PEM private key for --tls-cert.
    #[arg(long, env = "MAILSEC_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// Terminate TLS with a kubernetes.io/tls Secret, as `namespace/name`. Reloaded every minute.
    #[arg(long, env = "MAILSEC_TLS_SECRET")]
    tls_secret: Option<String>,
    #[command(flatten)]
    limits: super::limits::LimitArgs,
    #[command(flatten)]
    logging: Logging,
}

pub(crate) fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

pub fn controller(args: ControllerArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    args.logging.init();
    let identity = args
        .identity
        .clone()
        .unwrap_or_else(|| format!("mailsec-{}", std::process::id()));
    let checks = if args.check_interval > 0 {
        let resolvers = if args.check_resolver.is_empty() {
            crate::checks::dns::system_resolvers().map_err(|e| {
                format!("{e}; name the resolver with --check-resolver, or turn the checks off with --check-interval 0")
            })?
        } else {
            args.check_resolver
        };
        tracing::info!(
            resolvers = %crate::checks::dns::describe(&resolvers),
            interval_s = args.check_interval,
            "live checks on"
        );
        Some(verify::Settings {
            options: crate::checks::run::Options {
                resolvers,
                https_port: args.check_https_port,
                smtp_port: args.check_smtp_port,
                roots: crate::checks::tls::roots_from_file(args.check_ca_file.as_deref())
                    .map_err(|e| format!("--check-ca-file {e}"))?,
                timeout: std::time::Duration::from_secs(args.check_timeout.max(1)),
            },
            interval: std::time::Duration::from_secs(args.check_interval),
            limit: std::sync::Arc::new(tokio::sync::Semaphore::new(args.check_concurrency.max(1))),
        })
    } else {
        None
    };
    let options = Options {
        config: Config {
            owner_id: args.owner_id,
            hosting: HostingConfig {
                service_name: args.policy_service_name,
                service_namespace: args
                    .policy_service_namespace
                    .unwrap_or_else(|| args.namespace.clone()),
                service_port: args.policy_service_port,
                cluster_domain: args.cluster_domain,
            },
            operator_namespace: args.namespace,
            policy_server: args.policy_server_url,
            checks,
            report_url: args.report_url,
            report_retention: crate::controller::context::Retention {
                days: args.report_retention_days,
                count: args.report_retention_count,
            },
        },
        admin_addr: args.admin_addr,
        leader_election: args.leader_election,
        lease_name: args.lease_name,
        identity,
        watch_namespace: args.watch_namespace,
        reconcile_concurrency: args.reconcile_concurrency,
    };
    runtime()?.block_on(async {
        let config = kube::Config::infer().await?;
        run::run(config, options).await?;
        Ok(ExitCode::SUCCESS)
    })
}

pub fn serve(args: ServeArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    args.logging.init();
    let limits = args.limits.limits(crate::conn::Limits::serve())?;
    let tls = match (args.tls_cert, args.tls_key, args.tls_secret) {
        (Some(cert), Some(key), _) => Some(Source::Files { cert, key }),
        (_, _, Some(secret)) => {
            let (namespace, name) = secret
                .split_once('/')
                .ok_or("--tls-secret must be namespace/name")?;
            Some(Source::Secret {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            })
        }
        _ => None,
    };
    runtime()?.block_on(async {
        let client = kube::Client::try_default().await?;
        crate::serve::run_with(client, args.listen, args.admin_addr, tls, limits).await?;
        Ok(ExitCode::SUCCESS)
    })
}
