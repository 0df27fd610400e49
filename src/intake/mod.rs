//! Where TLS reports arrive and where they go: the HTTPS receiver and the mailbox poller take
//! reports in and hand each parsed report to a [`Sink`], which stores it. A source confirms a
//! report (answers 2xx, marks the mail seen) only after the sink said [`Stored`], so a crash
//! between the two loses nothing: the sender re-sends, the mail is read again, and the sink
//! stores a repeated report once.

pub mod https;
pub mod imap;
pub mod kube;
pub mod memory;
pub mod record;

use std::future::Future;
use std::net::IpAddr;

use crate::metrics::ReportMetrics;
use crate::report::Report;

/// A parsed report and what came with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    pub report: Report,
    /// The report as it arrived (JSON, or its gzip when it came gzipped), for the raw copy
    /// the sink keeps.
    pub raw: Raw,
    pub via: Via,
}

/// The report's bytes as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Raw {
    pub bytes: Vec<u8>,
    pub gzip: bool,
}

/// How a report arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// POSTed to the HTTPS receiver by `peer`, with this Host header.
    Https { peer: IpAddr, host: Option<String> },
    /// Read from a mailbox.
    Mail {
        /// The mailbox (folder) it was read from.
        mailbox: String,
        /// `Message-ID`, when the mail has one.
        message_id: Option<String>,
        /// The `From` address.
        from: Option<String>,
        /// The DKIM verdict on the report mail (RFC 8460 §5.3 asks reporters to sign).
        dkim: Dkim,
    },
}

/// The DKIM verdict on a report mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dkim {
    /// A signature verified; the signing domain (`d=`).
    Pass { domain: String },
    /// A signature was there but did not verify, or its key could not be fetched; why.
    Fail { why: String },
    /// No DKIM-Signature header.
    None,
}

/// What the sink did with a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// Stored now; the names it is stored under (one per managed policy domain).
    New(Vec<String>),
    /// The same report (reporter and report-id) was stored before; nothing changed.
    Duplicate(Vec<String>),
}

/// Why a sink did not store a report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// None of the report's policy domains is managed here: refused for good.
    #[error("no policy domain of the report is managed here: {}", .domains.join(", "))]
    NotOurDomain { domains: Vec<String> },
    /// The store refused the report for good (it breaks a rule of the store): refused, and
    /// trying again does not help.
    #[error("the report store refused the report: {0}")]
    Rejected(String),
    /// The store could not be reached or refused the write: try again later (the source must
    /// not confirm the report).
    #[error("the report store is unavailable: {0}")]
    Unavailable(String),
}

impl StoreError {
    /// Stable reason, for metrics, logs and HTTP answers.
    pub fn reason(&self) -> &'static str {
        match self {
            StoreError::NotOurDomain { .. } => "NotOurDomain",
            StoreError::Rejected(_) => "StoreRejected",
            StoreError::Unavailable(_) => "StoreUnavailable",
        }
    }

    /// Whether trying again later can succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// Stores reports. Implementations store a report (reporter, report-id) once, however often
/// it arrives.
pub trait Sink: Send + Sync {
    fn store(&self, incoming: Incoming) -> impl Future<Output = Result<Stored, StoreError>> + Send;
}

impl<S: Sink> Sink for std::sync::Arc<S> {
    fn store(&self, incoming: Incoming) -> impl Future<Output = Result<Stored, StoreError>> + Send {
        (**self).store(incoming)
    }
}

/// A sink that counts, per source, what `inner` did with each report (`reports` metric).
pub struct Counted<S> {
    pub inner: S,
    pub metrics: std::sync::Arc<ReportMetrics>,
    /// `https` or `mail`.
    pub source: &'static str,
}

impl<S: Sink> Sink for Counted<S> {
    async fn store(&self, incoming: Incoming) -> Result<Stored, StoreError> {
        let result = self.inner.store(incoming).await;
        let (outcome, reason) = match &result {
            Ok(Stored::New(_)) => ("stored", ""),
            Ok(Stored::Duplicate(_)) => ("duplicate", ""),
            Err(e) => ("refused", e.reason()),
        };
        self.metrics.outcome(self.source, outcome, reason);
        result
    }
}
