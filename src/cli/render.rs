//! `mailsec render`: MailDomain documents in, zone-file lines and policy files (or JSON) out.
//! Secrets in the same input resolve DKIM `keySecretRef`s, so keys never need a cluster.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{Read, Write};
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use k8s_openapi::api::core::v1::Secret;

use serde::Serialize;

use crate::api::MailDomain;
use crate::domain::mtasts::WELL_KNOWN_PATH;
use crate::domain::tlsrpt::ReportUri;
use crate::model::desired::{self as build, Desired};
use crate::model::validate::{self, FieldError, SecretData};

const API_VERSION: &str = "mailsec.io/v1alpha1";

/// The JSON shape of `mailsec render --output json`.
#[derive(Debug, Serialize)]
struct RenderedDomain<'a> {
    domain: &'a str,
    records: Vec<RenderedRecord<'a>>,
    policy: Option<&'a str>,
    /// `managed` DKIM entries: the operator makes their keys, so no record is known yet.
    #[serde(rename = "managedDkim", skip_serializing_if = "Vec::is_empty")]
    managed_dkim: Vec<ManagedKey<'a>>,
}

#[derive(Debug, Serialize)]
struct ManagedKey<'a> {
    /// The selectors' prefix.
    selector: &'a str,
    algorithm: &'static str,
    state: &'static str,
}

#[derive(Debug, Serialize)]
struct RenderedRecord<'a> {
    name: &'a str,
    #[serde(rename = "type")]
    record_type: &'static str,
    ttl: u32,
    value: &'a str,
}

fn rendered(desired: &Desired) -> RenderedDomain<'_> {
    RenderedDomain {
        domain: desired.domain.as_str(),
        records: desired
            .records
            .iter()
            .map(|r| RenderedRecord {
                name: &r.name,
                record_type: "TXT",
                ttl: r.ttl,
                value: &r.value,
            })
            .collect(),
        policy: desired.policy.as_ref().map(|p| p.text.as_str()),
        managed_dkim: desired
            .managed_dkim
            .iter()
            .map(|e| ManagedKey {
                selector: &e.prefix,
                algorithm: e.algorithm.as_str(),
                state: "pending generation",
            })
            .collect(),
    }
}

#[derive(Debug, Args)]
pub struct RenderArgs {
    /// File with one or more YAML documents (MailDomains, and Secrets holding DKIM keys);
    /// `-` reads standard input. Repeat for several files.
    #[arg(short = 'f', long = "filename", required = true)]
    files: Vec<String>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Text)]
    output: Output,
    /// The report receiver's URL, for MailDomains with `tlsRpt.receive: true` (what the
    /// controller's --report-url says).
    #[arg(long, value_parser = parse_report_url)]
    report_url: Option<ReportUri>,
}

pub(crate) fn parse_report_url(text: &str) -> Result<ReportUri, String> {
    if !text.starts_with("https://") {
        return Err("the report receiver's URL must be https://".into());
    }
    ReportUri::parse(text).map_err(|e| e.to_string())
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Output {
    /// Zone-file lines and the policy file.
    Text,
    /// A JSON array, one object per domain: domain, records, policy.
    Json,
}

/// Where a document came from, for messages.
struct Origin {
    file: String,
    index: usize,
    what: String,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: document {}{}", self.file, self.index, self.what)
    }
}

struct Document {
    origin: Origin,
    value: serde_json::Value,
}

pub fn run(args: &RenderArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let mut documents = Vec::new();
    for file in &args.files {
        documents.extend(read_documents(file)?);
    }
    let (domains, errors) = render_documents(documents, args.report_url.as_ref());
    if !errors.is_empty() {
        for e in &errors {
            eprintln!("error: {e}");
        }
        eprintln!("{} error(s); nothing rendered", errors.len());
        return Ok(ExitCode::FAILURE);
    }
    let mut out = std::io::stdout().lock();
    match args.output {
        Output::Json => {
            let rendered: Vec<_> = domains.iter().map(|(_, d)| rendered(d)).collect();
            writeln!(out, "{}", serde_json::to_string_pretty(&rendered)?)?;
        }
        Output::Text => {
            for (i, (origin, desired)) in domains.iter().enumerate() {
                if i > 0 {
                    writeln!(out)?;
                }
                write_text(&mut out, origin, desired)?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The desired state of every MailDomain in `files`, or every error found.
pub(crate) fn desired_from_files(files: &[String]) -> Result<Vec<(String, Desired)>, String> {
    let mut documents = Vec::new();
    for file in files {
        documents.extend(read_documents(file).map_err(|e| e.to_string())?);
    }
    let (domains, errors) = render_documents(documents, None);
    if errors.is_empty() {
        Ok(domains)
    } else {
        Err(errors.join("\n"))
    }
}

fn write_text(out: &mut impl Write, origin: &str, desired: &Desired) -> std::io::Result<()> {
    writeln!(out, "; {} ({origin})", desired.domain)?;
    for record in &desired.records {
        writeln!(out, "{}", record.zone_line())?;
    }
    for entry in &desired.managed_dkim {
        writeln!(
            out,
            "; {}<YYYYMMDD>._domainkey.{}. TXT: a managed {} key, pending generation (the operator makes it)",
            entry.prefix,
            desired.domain,
            entry.algorithm.as_str()
        )?;
    }
    if let Some(policy) = &desired.policy {
        writeln!(
            out,
            "\n; https://mta-sts.{}{WELL_KNOWN_PATH} (id {})",
            desired.domain, policy.id
        )?;
        out.write_all(policy.text.as_bytes())?;
    }
    Ok(())
}

fn read_documents(file: &str) -> Result<Vec<Document>, Box<dyn std::error::Error>> {
    let text = if file == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        s
    } else {
        std::fs::read_to_string(file).map_err(|e| format!("{file}: {e}"))?
    };
    let values: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(&text).map_err(|e| format!("{file}: not valid YAML: {e}"))?;
    Ok(values
        .into_iter()
        .enumerate()
        .filter(|(_, v)| !v.is_null())
        .map(|(i, value)| {
            let what = describe(&value);
            Document {
                origin: Origin {
                    file: file.to_owned(),
                    index: i + 1,
                    what,
                },
                value,
            }
        })
        .collect())
}

/// ` (MailDomain mail/example-com)`, from whatever the document holds.
fn describe(value: &serde_json::Value) -> String {
    let kind = value
        .get("kind")
        .and_then(|k| k.as_str())
        .unwrap_or("unknown kind");
    let meta = value.get("metadata");
    let name = meta
        .and_then(|m| m.get("name"))
        .and_then(|n| n.as_str())
        .unwrap_or("unnamed");
    let ns = meta
        .and_then(|m| m.get("namespace"))
        .and_then(|n| n.as_str())
        .unwrap_or("default");
    format!(" ({kind} {ns}/{name})")
}

/// Validates and builds every MailDomain; all errors are collected so one run shows them all.
fn render_documents(
    documents: Vec<Document>,
    report_url: Option<&ReportUri>,
) -> (Vec<(String, Desired)>, Vec<String>) {
    let mut errors = Vec::new();
    let mut secrets: BTreeMap<String, SecretData> = BTreeMap::new();
    let mut mail_domains = Vec::new();
    for doc in documents {
        match doc.value.get("kind").and_then(|k| k.as_str()) {
            Some("MailDomain")
                if doc.value.get("apiVersion").and_then(|v| v.as_str()) != Some(API_VERSION) =>
            {
                errors.push(format!("{}: apiVersion: must be {API_VERSION}", doc.origin));
            }
            Some("MailDomain") => match typed::<MailDomain>(doc.value) {
                Ok(md) => mail_domains.push((doc.origin, md)),
                Err(errs) => errors.extend(errs.iter().map(|e| format!("{}: {e}", doc.origin))),
            },
            Some("Secret") => match typed::<Secret>(doc.value) {
                Ok(secret) => {
                    let ns = secret
                        .metadata
                        .namespace
                        .clone()
                        .unwrap_or_else(|| "default".into());
                    let name = secret.metadata.name.clone().unwrap_or_default();
                    let mut data: BTreeMap<String, Vec<u8>> = secret
                        .data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.0))
                        .collect();
                    for (k, v) in secret.string_data.unwrap_or_default() {
                        data.insert(k, v.into_bytes());
                    }
                    secrets.entry(ns).or_default().insert(name, data);
                }
                Err(errs) => errors.extend(errs.iter().map(|e| format!("{}: {e}", doc.origin))),
            },
            Some(_) => {}
            None => errors.push(format!("{}: not a Kubernetes object (no kind)", doc.origin)),
        }
    }
    let mut domains = Vec::new();
    let empty = SecretData::new();
    for (origin, md) in mail_domains {
        if md.spec.domain.is_empty() {
            errors.push(format!("{origin}: spec.domain: is required"));
            continue;
        }
        let ns = md
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let name = md.metadata.name.clone().unwrap_or_default();
        match validate::validate(&md.spec, secrets.get(&ns).unwrap_or(&empty), report_url) {
            Ok(valid) => {
                for w in &valid.warnings {
                    eprintln!("warning: {origin}: {w}");
                }
                domains.push((
                    format!("MailDomain {ns}/{name}"),
                    build::build(&valid.config),
                ));
            }
            Err(invalid) => errors.extend(invalid.0.iter().map(|e| format!("{origin}: {e}"))),
        }
    }
    (domains, errors)
}

/// Deserializes a document, naming the field of a type error and every unknown field (which the
/// API server would refuse under kubectl's strict field validation).
fn typed<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T, Vec<FieldError>> {
    let mut unknown = Vec::new();
    let mut track =
        |path: serde_ignored::Path<'_>| unknown.push(path.to_string().replace(".?", ""));
    let ignored = serde_ignored::Deserializer::new(value, &mut track);
    let result: Result<T, _> = serde_path_to_error::deserialize(ignored);
    let mut errors: Vec<FieldError> = unknown
        .into_iter()
        .filter(|p| {
            !matches!(p.as_str(), "apiVersion" | "kind" | "status") && !p.starts_with("status.")
        })
        .map(|path| FieldError {
            path,
            message: "unknown field".into(),
        })
        .collect();
    match result {
        Ok(v) if errors.is_empty() => Ok(v),
        Ok(_) => Err(errors),
        Err(e) => {
            let path = e.path().to_string();
            errors.push(FieldError {
                path,
                message: e.into_inner().to_string(),
            });
            Err(errors)
        }
    }
}
