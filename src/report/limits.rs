//! How much of an untrusted input the parser reads before it refuses it.

/// The bounds of one parse. Real reports are 0.4–2 KB of JSON and 0.25–1 KB gzipped; the
/// defaults leave room for a big domain's report with thousands of failure details and still
/// bound memory and time for anything an attacker sends (an HTTPS report endpoint takes
/// reports from anyone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Gzip data as received, in bytes (default 1 MiB).
    pub max_compressed: usize,
    /// JSON, as received or inflated, in bytes (default 10 MiB, the receiver limit RFC 8460
    /// §5.2 calls common). Inflating reads at most this much and one byte more.
    pub max_uncompressed: usize,
    /// A whole report e-mail, in bytes (default 16 MiB).
    pub max_mail: usize,
    /// Nesting of JSON arrays and objects (default 16; a report itself needs 5, the rest is
    /// for extensions). serde_json stops at 128 on its own, so larger values mean 128.
    pub max_depth: usize,
    /// Entries of `policies` (default 1,000).
    pub max_policies: usize,
    /// Entries of `failure-details`, of all policies together (default 50,000).
    pub max_failure_details: usize,
    /// Warnings kept on a report (default 100); the rest are counted in one
    /// [`super::Warning::MoreWarnings`].
    pub max_warnings: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_compressed: 1 << 20,
            max_uncompressed: 10 << 20,
            max_mail: 16 << 20,
            max_depth: 16,
            max_policies: 1_000,
            max_failure_details: 50_000,
            max_warnings: 100,
        }
    }
}
