//! The `TLSReport` custom resource: one received TLS report (RFC 8460) about one MailDomain,
//! as a small immutable summary. The report receiver creates it, owned by its MailDomain;
//! the controller reads them into the MailDomain's status and prunes old ones.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// Label on a TLSReport: the name of the MailDomain it belongs to.
pub const REPORT_MAILDOMAIN_LABEL: &str = "mailsec.io/maildomain";

/// At most this many failure groups are kept per policy (the rest are counted in
/// `failuresOmitted`).
pub const MAX_FAILURE_GROUPS: usize = 32;
/// At most this many example failure reasons are kept per failure group.
pub const MAX_EXAMPLES: usize = 3;
/// The raw report is kept (gzip, base64) up to this many gzip bytes; above, only its digest.
pub const MAX_RAW_GZIP: usize = 64 * 1024;

/// One TLS report a sending organisation sent about one domain's policies over one date range
/// (usually a UTC day): who sent it, the sessions that succeeded and failed, the failures
/// grouped by result type, MX and receiving IP. Immutable; a report that arrives again
/// (same reporter and report-id) is stored once.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "mailsec.io",
    version = "v1alpha1",
    kind = "TLSReport",
    plural = "tlsreports",
    shortname = "tlsrpt",
    category = "mailsec",
    namespaced,
    derive = "PartialEq",
    doc = "A TLS report (RFC 8460) received for a MailDomain: reporter, day, sessions and failures.",
    printcolumn(name = "Domain", type_ = "string", json_path = ".spec.policyDomain"),
    printcolumn(name = "Reporter", type_ = "string", json_path = ".spec.organization"),
    printcolumn(name = "Day", type_ = "string", json_path = ".spec.day"),
    printcolumn(name = "Succeeded", type_ = "integer", json_path = ".spec.successful"),
    printcolumn(name = "Failed", type_ = "integer", json_path = ".spec.failed"),
    printcolumn(name = "Top-Failure", type_ = "string", json_path = ".spec.topFailure"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("self == oldSelf").message("a TLSReport is immutable: delete it and let the report arrive again"))]
#[serde(rename_all = "camelCase")]
pub struct TLSReportSpec {
    /// The MailDomain's domain the report is about (A-labels, lower case).
    #[schemars(length(min = 1, max = 253))]
    pub policy_domain: String,
    /// `organization-name`: who sent the report.
    #[schemars(length(max = 256))]
    pub organization: String,
    /// `contact-info`, when the sender gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub contact_info: Option<String>,
    /// `report-id`: with the organization, what makes a report unique.
    #[schemars(length(max = 512))]
    pub report_id: String,
    /// Start of the reporting period.
    pub start: Time,
    /// End of the reporting period.
    pub end: Time,
    /// The UTC day the report is about (the day it starts), `YYYY-MM-DD`.
    #[schemars(length(min = 10, max = 10))]
    pub day: String,
    /// Sessions that negotiated TLS under a policy of this domain.
    #[schemars(with = "i64", range(min = 0))]
    pub successful: u64,
    /// Sessions that failed.
    #[schemars(with = "i64", range(min = 0))]
    pub failed: u64,
    /// The largest failure group, e.g. `certificate-expired at mx1.example.com` (for `kubectl
    /// get`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    pub top_failure: Option<String>,
    /// The policies the sender applied, with their sessions and failures.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub policies: Vec<ReportPolicy>,
    /// How the report arrived.
    pub received: ReportReceipt,
    /// The report as sent, gzipped, or its digest when too big.
    pub raw: RawReport,
    /// What the parser found off in the report (warning codes), none of it fatal.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(max = 64)))]
    pub warnings: Vec<String>,
}

/// One policy of a report.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReportPolicy {
    /// `sts`, `tlsa`, `no-policy-found` or what the sender wrote.
    #[schemars(length(max = 64))]
    pub policy_type: String,
    /// The MTA-STS policy id (`id` of `_mta-sts`) is not in reports; this is the policy's
    /// `mode` line as the sender saw it, when the policy is `sts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    pub mode: Option<String>,
    /// `policy-string`: the policy lines as the sender applied them (at most 64).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 512)))]
    pub policy_string: Vec<String>,
    /// `mx-host`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 256)))]
    pub mx_hosts: Vec<String>,
    #[schemars(with = "i64", range(min = 0))]
    pub successful: u64,
    #[schemars(with = "i64", range(min = 0))]
    pub failed: u64,
    /// Failures grouped by result type, receiving MX and receiving IP, largest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub failures: Vec<FailureGroup>,
    /// Failure groups left out (beyond 32).
    #[serde(default, skip_serializing_if = "is_zero")]
    #[schemars(with = "i32", range(min = 0))]
    pub failures_omitted: u32,
}

/// Failed sessions of one result type at one MX and IP.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailureGroup {
    /// `result-type`, e.g. `certificate-expired`.
    #[schemars(length(max = 64))]
    pub result_type: String,
    /// `receiving-mx-hostname`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub receiving_mx: Option<String>,
    /// `receiving-ip`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub receiving_ip: Option<String>,
    #[schemars(with = "i64", range(min = 0))]
    pub sessions: u64,
    /// A few `additional-information` / `failure-reason-code` values, clipped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 3), inner(length(max = 256)))]
    pub examples: Vec<String>,
}

/// How a report arrived.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReportReceipt {
    /// `https` or `mail`.
    #[schemars(length(max = 8))]
    pub via: String,
    /// For mail: the `Message-ID`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    pub message_id: Option<String>,
    /// For mail: the `From` address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    pub from: Option<String>,
    /// For mail: the DKIM verdict, `pass` (with `dkimDomain`), `fail` or `none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 8))]
    pub dkim: Option<String>,
    /// For mail with `dkim: pass`: the signing domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub dkim_domain: Option<String>,
}

/// The report as sent.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RawReport {
    /// SHA-256 of the report JSON (inflated), hex.
    #[schemars(length(min = 64, max = 64))]
    pub sha256: String,
    /// Size of the report JSON in bytes.
    #[schemars(with = "i64", range(min = 0))]
    pub size: u64,
    /// The report JSON gzipped, base64; absent when the gzip is over 64 KiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 90000))]
    pub gzip: Option<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}
