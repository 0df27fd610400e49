//! `mailsec report FILE...`: the summary the controller keeps in a MailDomain's status, for
//! report files (JSON, gzip, or whole report e-mails), without a cluster.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use serde::Serialize;

use crate::api::{ReportWindow, TLSReportSpec};
use crate::controller::reports;
use crate::intake::record::{policy_domains, spec};
use crate::intake::{Dkim, Incoming, Raw, Via};
use crate::report::{self, Limits, ReportError};

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Report files: `application/tlsrpt+json`, its gzip, or a report e-mail (`.eml`).
    #[arg(required = true)]
    files: Vec<std::path::PathBuf>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Table)]
    output: Output,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Output {
    /// One line per report and per domain.
    Table,
    /// `{reports, domains, refused}`.
    Json,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FileReport {
    file: String,
    #[serde(flatten)]
    report: TLSReportSpec,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DomainSummary {
    domain: String,
    first_day: String,
    last_day: String,
    #[serde(flatten)]
    summary: ReportWindow,
}

#[derive(Serialize)]
struct Refused {
    file: String,
    reason: &'static str,
    message: String,
}

#[derive(Serialize)]
struct Summary {
    reports: Vec<FileReport>,
    domains: Vec<DomainSummary>,
    refused: Vec<Refused>,
}

/// Reads one file as a report: JSON or gzip by its first bytes, else a report e-mail.
fn read(bytes: &[u8], limits: &Limits) -> Result<(report::Report, Raw), ReportError> {
    let json = bytes
        .strip_prefix("\u{feff}".as_bytes())
        .unwrap_or(bytes)
        .trim_ascii_start()
        .starts_with(b"{");
    let gzip = bytes.starts_with(&[0x1f, 0x8b]);
    if !json && !gzip {
        let mail = report::parse_mail(bytes, limits)?;
        let raw = Raw {
            bytes: mail.part,
            gzip: mail.part_gzip,
        };
        return Ok((mail.report, raw));
    }
    let parsed = report::sniff(bytes, limits)?;
    Ok((
        parsed,
        Raw {
            bytes: bytes.to_vec(),
            gzip,
        },
    ))
}

fn summarize(args: &ReportArgs) -> Summary {
    let limits = Limits::default();
    let mut out = Summary {
        reports: Vec::new(),
        domains: Vec::new(),
        refused: Vec::new(),
    };
    for path in &args.files {
        let file = path.display().to_string();
        let bytes = match std::fs::metadata(path).and_then(|m| {
            if m.len() > limits.max_mail as u64 {
                Err(std::io::Error::other(format!(
                    "{} bytes, more than the limit of {}",
                    m.len(),
                    limits.max_mail
                )))
            } else {
                std::fs::read(path)
            }
        }) {
            Ok(b) => b,
            Err(e) => {
                out.refused.push(Refused {
                    file,
                    reason: "Unreadable",
                    message: e.to_string(),
                });
                continue;
            }
        };
        match read(&bytes, &limits) {
            Ok((report, raw)) => {
                let incoming = Incoming {
                    raw,
                    via: Via::Mail {
                        mailbox: String::new(),
                        message_id: None,
                        from: None,
                        dkim: Dkim::None,
                    },
                    report,
                };
                for domain in policy_domains(&incoming.report, None) {
                    let mut report = spec(&incoming, &domain, None);
                    report.raw.gzip = None;
                    report.received.via = "file".into();
                    report.received.dkim = None;
                    out.reports.push(FileReport {
                        file: file.clone(),
                        report,
                    });
                }
            }
            Err(e) => out.refused.push(Refused {
                file,
                reason: e.reason(),
                message: e.to_string(),
            }),
        }
    }
    let mut by_domain: BTreeMap<&str, Vec<&TLSReportSpec>> = BTreeMap::new();
    for r in &out.reports {
        by_domain
            .entry(r.report.policy_domain.as_str())
            .or_default()
            .push(&r.report);
    }
    out.domains = by_domain
        .into_iter()
        .map(|(domain, list)| {
            let days: std::collections::BTreeSet<&str> =
                list.iter().map(|r| r.day.as_str()).collect();
            DomainSummary {
                domain: domain.to_owned(),
                first_day: list.iter().map(|r| r.day.clone()).min().unwrap_or_default(),
                last_day: list.iter().map(|r| r.day.clone()).max().unwrap_or_default(),
                summary: ReportWindow {
                    days: u32::try_from(days.len()).unwrap_or(u32::MAX),
                    ..reports::sum(list.iter().copied())
                },
            }
        })
        .collect();
    out
}

fn failures_text(w: &ReportWindow) -> String {
    if w.failures.is_empty() {
        return "-".into();
    }
    w.failures
        .iter()
        .take(3)
        .map(|f| match &f.mx {
            Some(mx) => format!("{} at {mx} ({})", f.result_type, f.sessions),
            None => format!("{} ({})", f.result_type, f.sessions),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn table(summary: &Summary, out: &mut impl Write) -> std::io::Result<()> {
    let rows: Vec<[String; 6]> = summary
        .reports
        .iter()
        .map(|r| {
            [
                r.file.clone(),
                r.report.organization.clone(),
                r.report.policy_domain.clone(),
                r.report.day.clone(),
                r.report.successful.to_string(),
                format!(
                    "{}{}",
                    r.report.failed,
                    r.report
                        .top_failure
                        .as_ref()
                        .map(|t| format!(" ({t})"))
                        .unwrap_or_default()
                ),
            ]
        })
        .collect();
    write_rows(
        out,
        ["FILE", "REPORTER", "DOMAIN", "DAY", "SUCCEEDED", "FAILED"],
        &rows,
    )?;
    writeln!(out)?;
    let rows: Vec<[String; 6]> = summary
        .domains
        .iter()
        .map(|d| {
            [
                d.domain.clone(),
                format!(
                    "{} from {}",
                    d.summary.reports,
                    d.summary.reporters.join(", ")
                ),
                if d.first_day == d.last_day {
                    d.first_day.clone()
                } else {
                    format!("{}..{}", d.first_day, d.last_day)
                },
                d.summary.successful.to_string(),
                d.summary.failed.to_string(),
                failures_text(&d.summary),
            ]
        })
        .collect();
    write_rows(
        out,
        [
            "DOMAIN",
            "REPORTS",
            "DAYS",
            "SUCCEEDED",
            "FAILED",
            "FAILURES",
        ],
        &rows,
    )?;
    for r in &summary.refused {
        writeln!(out, "\nrefused: {}: {}: {}", r.file, r.reason, r.message)?;
    }
    Ok(())
}

fn write_rows<const N: usize>(
    out: &mut impl Write,
    header: [&str; N],
    rows: &[[String; N]],
) -> std::io::Result<()> {
    let mut widths: [usize; N] = header.map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    writeln!(out, "{}", line(header.to_vec()))?;
    for row in rows {
        writeln!(out, "{}", line(row.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}

pub fn run(args: &ReportArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let summary = summarize(args);
    let mut out = std::io::stdout().lock();
    match args.output {
        Output::Json => writeln!(out, "{}", serde_json::to_string_pretty(&summary)?)?,
        Output::Table => table(&summary, &mut out)?,
    }
    Ok(if summary.refused.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
