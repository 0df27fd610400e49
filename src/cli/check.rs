//! `mailsec check`: the live checks for any domain, outside a cluster.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::checks::run::{self, Finding, Options, Outcome};
use crate::checks::tls::roots_from_file;
use crate::domain::name::DomainName;

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The mail domain to check.
    domain: String,
    /// A file with the MailDomain (and DKIM Secrets) the domain should match; records and policy
    /// must then equal it.
    #[arg(long)]
    expect_file: Option<String>,
    /// The DNS resolver to ask, `ip:port` (repeat for more); the system's resolvers from
    /// /etc/resolv.conf when absent.
    #[arg(long)]
    resolver: Vec<SocketAddr>,
    /// PEM file with CA certificates to trust besides the Web PKI roots.
    #[arg(long)]
    ca_file: Option<std::path::PathBuf>,
    /// Port of the HTTPS policy host (tests use another).
    #[arg(long, default_value_t = 443)]
    https_port: u16,
    /// Port of the MX hosts' SMTP service (tests use another).
    #[arg(long, default_value_t = 25)]
    smtp_port: u16,
    /// Seconds each network step (each DNS lookup, connection, TLS handshake, HTTP exchange)
    /// may take.
    #[arg(long, default_value_t = 10)]
    timeout: u64,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    output: Format,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    /// A readable table.
    Table,
    /// A JSON array of findings.
    Json,
}

pub fn run(args: CheckArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let domain = DomainName::parse(&args.domain).map_err(|e| format!("`{}` {e}", args.domain))?;
    let expect = match &args.expect_file {
        None => None,
        Some(file) => {
            let all = super::render::desired_from_files(std::slice::from_ref(file))?;
            let found = all.into_iter().map(|(_, d)| d).find(|d| d.domain == domain);
            Some(found.ok_or_else(|| format!("{file} has no MailDomain for {domain}"))?)
        }
    };
    let resolvers = if args.resolver.is_empty() {
        crate::checks::dns::system_resolvers()?
    } else {
        args.resolver
    };
    let options = Options {
        resolvers,
        https_port: args.https_port,
        smtp_port: args.smtp_port,
        roots: roots_from_file(args.ca_file.as_deref()).map_err(|e| format!("--ca-file {e}"))?,
        timeout: Duration::from_secs(args.timeout.max(1)),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let findings = runtime.block_on(run::check(&domain, expect.as_ref(), &options));
    let mut out = std::io::stdout().lock();
    match args.output {
        Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&findings)?)?,
        Format::Table => write_table(&mut out, &findings)?,
    }
    let failed = findings.iter().any(|f| f.outcome == Outcome::Fail);
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn write_table(out: &mut impl Write, findings: &[Finding]) -> std::io::Result<()> {
    let width = |f: fn(&Finding) -> usize| findings.iter().map(f).max().unwrap_or(0);
    let (c, s, r) = (
        width(|f| f.check.len()).max(5),
        width(|f| f.subject.len()).max(7),
        width(|f| f.reason.len()).max(6),
    );
    writeln!(
        out,
        "{:<4}  {:<c$}  {:<s$}  {:<r$}  DETAIL",
        "", "CHECK", "SUBJECT", "REASON"
    )?;
    for f in findings {
        let mark = match f.outcome {
            Outcome::Pass => "ok",
            Outcome::Warn => "warn",
            Outcome::Fail => "FAIL",
        };
        writeln!(
            out,
            "{mark:<4}  {:<c$}  {:<s$}  {:<r$}  {}",
            f.check, f.subject, f.reason, f.message
        )?;
    }
    let failed = findings
        .iter()
        .filter(|f| f.outcome == Outcome::Fail)
        .count();
    writeln!(out, "\n{} check(s), {failed} failed", findings.len())
}
