//! The `mailsec` command line.

mod check;
mod controller;
mod crd;
mod limits;
mod receive;
mod render;
mod report;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Publishes and verifies a domain's mail security records (MTA-STS, TLS-RPT, SPF, DKIM, DMARC,
/// BIMI) from MailDomain resources.
#[derive(Debug, Parser)]
#[command(name = "mailsec", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the CustomResourceDefinitions as YAML.
    Crd,
    /// Print the DNS records and MTA-STS policy that MailDomain documents describe.
    Render(render::RenderArgs),
    /// Run the controller: publish MailDomains' records and keep their status.
    Controller(Box<controller::ControllerArgs>),
    /// Run the public MTA-STS policy server.
    Serve(controller::ServeArgs),
    /// Run the TLS report receiver: reports POSTed to the `rua=https://` URL become TLSReports.
    Receive(receive::ReceiveArgs),
    /// Summarize TLS report files (JSON, gzip or report e-mails) as the controller does in
    /// status: per report and per domain, sessions and failures. Exits 1 if a file is no report.
    Report(report::ReportArgs),
    /// Check what the internet sees of a domain: DNS records, the served policy, MX coverage.
    /// Exits 0 only when every check passes.
    Check(check::CheckArgs),
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    crate::dns::http::install_crypto_provider();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Crd => crd::run(),
        Command::Render(args) => render::run(&args),
        Command::Controller(args) => controller::controller(*args),
        Command::Serve(args) => controller::serve(args),
        Command::Check(args) => check::run(args),
        Command::Receive(args) => receive::run(args),
        Command::Report(args) => report::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
