//! TLS-RPT reports (RFC 8460 §4): the typed [`Report`], its parser and its renderer, and the
//! intake of what carries a report: `application/tlsrpt+json`, `application/tlsrpt+gzip`
//! (multi-member gzip too) and whole report e-mails.
//!
//! Strict about size: every input is bounded by [`Limits`] before and while it is read (a
//! gzip bomb is cut off at [`Limits::max_uncompressed`] while it inflates; the JSON's nesting
//! is checked as the parser enters each array and object, policies and failure details are
//! counted as they are read, so nothing past a limit is allocated), and whatever is over a limit or malformed is a [`ReportError`] with a stable
//! [`ReportError::reason`]. Lenient where real senders deviate from the RFC (see
//! [`Warning`]): a date-time without a time zone is UTC, `contact-info` may be null,
//! `policy-domain` missing, `mx-host` a string, TLSA records packed into one JSON string,
//! unknown result and policy types are kept, and failure counts that do not add up are kept
//! and flagged. Nothing here knows Kubernetes.

mod intake;
mod json;
mod limits;
mod model;
mod raw;

pub use intake::{MailReport, inflate, parse_body, parse_gzip, parse_mail, sniff};
pub use json::{parse_json, render};
pub use limits::Limits;
pub use model::{
    DateRange, FailureDetail, Policy, PolicyResult, PolicyType, Report, ResultType, Summary,
    Warning, check,
};

/// Why an input was not taken as a report. [`ReportError::reason`] is stable: it names
/// metrics and log fields.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    /// The input (the `what`) is larger than its limit before anything was decoded.
    #[error("the {what} is {size} bytes, more than the limit of {limit}")]
    TooLarge {
        what: &'static str,
        size: usize,
        limit: usize,
    },
    /// The gzip data inflates to more than [`Limits::max_uncompressed`]; inflating stopped there.
    #[error("the gzip data inflates to more than the limit of {limit} bytes")]
    InflatedTooLarge { limit: usize },
    #[error("the JSON nests deeper than {limit} levels")]
    TooDeep { limit: usize },
    #[error("the report has more than {limit} policies")]
    TooManyPolicies { limit: usize },
    #[error("the report has more than {limit} failure details")]
    TooManyFailureDetails { limit: usize },
    /// Declared gzip, but the data does not start with the gzip magic bytes.
    #[error("not gzip data (no gzip magic bytes)")]
    NotGzip,
    #[error("the gzip data ends early")]
    TruncatedGzip,
    #[error("corrupt gzip data: {0}")]
    CorruptGzip(String),
    #[error("the JSON ends early: {0}")]
    TruncatedJson(String),
    #[error("invalid JSON: {0}")]
    InvalidJson(String),
    /// A field RFC 8460 requires (and real senders send) is missing, null or empty.
    #[error("missing field `{field}`")]
    MissingField { field: &'static str },
    #[error("`{field}` is not an RFC 3339 date-time: `{value}`")]
    InvalidDateTime { field: &'static str, value: String },
    /// The pre-RFC draft schema: one `policy` object and no `policies` list.
    #[error("the pre-RFC draft report schema (a `policy` object, no `policies` list)")]
    DraftSchema,
    #[error("not a TLS report: {0}")]
    NotAReport(String),
    #[error("unsupported content type `{0}`")]
    UnsupportedContentType(String),
    #[error("the mail has no TLS report part")]
    NoReportPart,
}

impl ReportError {
    /// Stable reason, for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            ReportError::TooLarge { .. } => "TooLarge",
            ReportError::InflatedTooLarge { .. } => "InflatedTooLarge",
            ReportError::TooDeep { .. } => "TooDeep",
            ReportError::TooManyPolicies { .. } => "TooManyPolicies",
            ReportError::TooManyFailureDetails { .. } => "TooManyFailureDetails",
            ReportError::NotGzip => "NotGzip",
            ReportError::TruncatedGzip => "TruncatedGzip",
            ReportError::CorruptGzip(_) => "CorruptGzip",
            ReportError::TruncatedJson(_) => "TruncatedJson",
            ReportError::InvalidJson(_) => "InvalidJson",
            ReportError::MissingField { .. } => "MissingField",
            ReportError::InvalidDateTime { .. } => "InvalidDateTime",
            ReportError::DraftSchema => "DraftSchema",
            ReportError::NotAReport(_) => "NotAReport",
            ReportError::UnsupportedContentType(_) => "UnsupportedContentType",
            ReportError::NoReportPart => "NoReportPart",
        }
    }
}

/// Untrusted text for an error message or a warning: at most `max` characters.
fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}
