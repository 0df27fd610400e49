//! MTA-STS (RFC 8461): the policy file, its id, the `_mta-sts` TXT record, and MX matching.

use std::fmt;

use sha2::{Digest, Sha256};

use super::name::{DomainName, NameError, normalize_dns_name};
use super::tags;

/// The largest `max_age` a policy may carry (RFC 8461 §3.2: about one year).
pub const MAX_AGE_LIMIT: u32 = 31_557_600;
/// Senders stop reading a policy body after 64 KiB (RFC 8461 §3.3).
pub const MAX_POLICY_BYTES: usize = 64 * 1024;
/// Where senders fetch the policy, below `https://mta-sts.<domain>`.
pub const WELL_KNOWN_PATH: &str = "/.well-known/mta-sts.txt";

/// How senders treat failures to deliver over validated TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mode {
    Enforce,
    Testing,
    None,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Testing => "testing",
            Mode::None => "none",
        }
    }

    fn parse(value: &str) -> Option<Mode> {
        match value {
            "enforce" => Some(Mode::Enforce),
            "testing" => Some(Mode::Testing),
            "none" => Some(Mode::None),
            _ => None,
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A policy `mx` value: a host name, or `*.` and a name matching exactly one more label.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MxPattern {
    wildcard: bool,
    base: DomainName,
}

impl MxPattern {
    pub fn parse(input: &str) -> Result<Self, NameError> {
        let (wild, rest) = input
            .strip_prefix("*.")
            .map_or((false, input), |r| (true, r));
        if rest.contains('*') || (!wild && input.starts_with('*')) {
            return Err(NameError::Wildcard);
        }
        match input.strip_prefix("*.") {
            Some(rest) => Ok(MxPattern {
                wildcard: true,
                base: DomainName::parse(rest)?,
            }),
            None => Ok(MxPattern {
                wildcard: false,
                base: DomainName::parse(input)?,
            }),
        }
    }

    /// RFC 8461 §4.1: a wildcard covers exactly one leftmost label, so `*.example.com`
    /// matches `mx.example.com` but neither `example.com` nor `a.mx.example.com`.
    /// `host` may come straight from DNS (any case, trailing dot).
    pub fn matches(&self, host: &str) -> bool {
        let host = normalize_dns_name(host);
        let base = self.base.as_str();
        if !self.wildcard {
            return host == base;
        }
        match host.split_once('.') {
            Some((first, rest)) => !first.is_empty() && rest == base,
            None => false,
        }
    }
}

impl fmt::Display for MxPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.wildcard {
            f.write_str("*.")?;
        }
        f.write_str(self.base.as_str())
    }
}

/// The host that serves a domain's policy (RFC 8461 §3.2): `mta-sts.<domain>`.
pub fn policy_host(domain: &DomainName) -> String {
    domain.child("mta-sts")
}

/// An MTA-STS policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub mode: Mode,
    pub mx: Vec<MxPattern>,
    pub max_age: u32,
}

impl Policy {
    /// The policy file: `version` first, one field per line, every line ending in CRLF.
    pub fn render(&self) -> String {
        let mut out = String::from("version: STSv1\r\n");
        out.push_str(&format!("mode: {}\r\n", self.mode));
        for mx in &self.mx {
            out.push_str(&format!("mx: {mx}\r\n"));
        }
        out.push_str(&format!("max_age: {}\r\n", self.max_age));
        out
    }

    /// The id for this policy: derived from the rendered file, so it changes exactly when the
    /// file changes. 128 bits of SHA-256 as 32 hex digits fits RFC 8461's `1*32(ALPHA / DIGIT)`.
    pub fn id(&self) -> PolicyId {
        let digest = Sha256::digest(self.render().as_bytes());
        let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
        PolicyId(hex)
    }

    /// True when some `mx` pattern covers `host`.
    pub fn covers(&self, host: &str) -> bool {
        self.mx.iter().any(|p| p.matches(host))
    }

    /// Parses a policy body strictly, but accepts LF-only line ends (with a warning) because
    /// senders do.
    pub fn parse(body: &str) -> Result<Parsed<Policy>, PolicyError> {
        if body.len() > MAX_POLICY_BYTES {
            return Err(PolicyError::TooLarge(body.len()));
        }
        let mut warnings = Vec::new();
        let lf_only = body
            .bytes()
            .enumerate()
            .any(|(i, b)| b == b'\n' && (i == 0 || body.as_bytes()[i - 1] != b'\r'));
        if lf_only {
            warnings.push("lines end in LF only; RFC 8461 requires CRLF".to_owned());
        }
        let mut version_seen = false;
        let (mut mode, mut max_age, mut mx) = (None, None, Vec::new());
        let lines: Vec<&str> = body.split('\n').collect();
        let last = lines.len() - 1;
        for (index, raw) in lines.iter().enumerate() {
            let number = index + 1;
            let line = raw.strip_suffix('\r').unwrap_or(raw);
            if line.trim().is_empty() {
                if index != last {
                    warnings.push(format!("line {number} is blank"));
                }
                continue;
            }
            let (key, value) = line.split_once(':').ok_or(PolicyError::NotAField(number))?;
            let value = value.trim_matches([' ', '\t']);
            match key {
                "version" => {
                    if version_seen {
                        return Err(PolicyError::Duplicate("version"));
                    }
                    if index != 0 {
                        return Err(PolicyError::VersionNotFirst);
                    }
                    if value != "STSv1" {
                        return Err(PolicyError::Version(value.to_owned()));
                    }
                    version_seen = true;
                }
                "mode" => {
                    if mode.is_some() {
                        return Err(PolicyError::Duplicate("mode"));
                    }
                    mode = Some(
                        Mode::parse(value).ok_or_else(|| PolicyError::Mode(value.to_owned()))?,
                    );
                }
                "max_age" => {
                    if max_age.is_some() {
                        return Err(PolicyError::Duplicate("max_age"));
                    }
                    max_age = Some(parse_max_age(value)?);
                }
                "mx" => mx.push(MxPattern::parse(value).map_err(|e| PolicyError::Mx {
                    value: value.to_owned(),
                    reason: e,
                })?),
                other if is_extension_name(other) => {}
                other => {
                    return Err(PolicyError::BadKey {
                        line: number,
                        key: other.to_owned(),
                    });
                }
            }
        }
        if !version_seen {
            return Err(PolicyError::VersionNotFirst);
        }
        let mode = mode.ok_or(PolicyError::Missing("mode"))?;
        let max_age = max_age.ok_or(PolicyError::Missing("max_age"))?;
        if mx.is_empty() && mode != Mode::None {
            return Err(PolicyError::Missing("mx"));
        }
        Ok(Parsed {
            value: Policy { mode, mx, max_age },
            warnings,
        })
    }
}

fn parse_max_age(value: &str) -> Result<u32, PolicyError> {
    let digits_ok =
        !value.is_empty() && value.len() <= 10 && value.bytes().all(|b| b.is_ascii_digit());
    let n: u64 = if digits_ok {
        value
            .parse()
            .map_err(|_| PolicyError::MaxAge(value.to_owned()))?
    } else {
        return Err(PolicyError::MaxAge(value.to_owned()));
    };
    u32::try_from(n)
        .ok()
        .filter(|n| *n <= MAX_AGE_LIMIT)
        .ok_or_else(|| PolicyError::MaxAge(value.to_owned()))
}

/// RFC 8461 §3.2 `sts-policy-ext-name`.
fn is_extension_name(key: &str) -> bool {
    let mut chars = key.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && key.len() <= 32
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// A parsed value with the problems that did not stop parsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed<T> {
    pub value: T,
    pub warnings: Vec<String>,
}

/// Why a policy body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("policy is {0} bytes, more than the 64 KiB senders read")]
    TooLarge(usize),
    #[error("the first line must be `version: STSv1`")]
    VersionNotFirst,
    #[error("version `{0}` is not STSv1")]
    Version(String),
    #[error("mode `{0}` is not one of enforce, testing, none")]
    Mode(String),
    #[error("max_age `{0}` is not a whole number of seconds up to 31557600")]
    MaxAge(String),
    #[error("mx `{value}` {reason}")]
    Mx { value: String, reason: NameError },
    #[error("field `{0}` appears more than once")]
    Duplicate(&'static str),
    #[error("field `{0}` is missing")]
    Missing(&'static str),
    #[error("line {0} is not a `key: value` field")]
    NotAField(usize),
    #[error("line {line}: `{key}` is not a valid field name")]
    BadKey { line: usize, key: String },
}

/// A policy id: 1 to 32 letters and digits.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PolicyId(String);

impl PolicyId {
    pub fn parse(value: &str) -> Result<Self, StsRecordError> {
        let ok =
            (1..=32).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_alphanumeric());
        if ok {
            Ok(PolicyId(value.to_owned()))
        } else {
            Err(StsRecordError::Id(value.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PolicyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The `_mta-sts.<domain>` TXT record: `v=STSv1; id=<id>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StsRecord {
    pub id: PolicyId,
}

/// Why an `_mta-sts` TXT value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StsRecordError {
    #[error("{0}")]
    Syntax(String),
    #[error("id `{0}` must be 1 to 32 letters and digits")]
    Id(String),
    #[error("the id tag is missing")]
    NoId,
}

impl StsRecord {
    pub fn render(&self) -> String {
        format!("v=STSv1; id={}", self.id)
    }

    pub fn parse(value: &str) -> Result<Self, StsRecordError> {
        let tags = tags::parse(value).map_err(|e| StsRecordError::Syntax(e.to_string()))?;
        tags::expect_version(&tags, "STSv1").map_err(StsRecordError::Syntax)?;
        let id = tags::get(&tags, "id").ok_or(StsRecordError::NoId)?;
        Ok(StsRecord {
            id: PolicyId::parse(id)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn policy(mode: Mode, mx: &[&str], max_age: u32) -> Policy {
        Policy {
            mode,
            mx: mx.iter().map(|m| MxPattern::parse(m).unwrap()).collect(),
            max_age,
        }
    }

    #[test]
    fn renders_version_first_with_crlf() {
        let p = policy(
            Mode::Enforce,
            &["mx1.example.com", "*.mail.example.net"],
            604800,
        );
        assert_eq!(
            p.render(),
            "version: STSv1\r\nmode: enforce\r\nmx: mx1.example.com\r\nmx: *.mail.example.net\r\nmax_age: 604800\r\n"
        );
    }

    #[test]
    fn wildcard_matches_exactly_one_leftmost_label() {
        let p = MxPattern::parse("*.example.com").unwrap();
        assert!(p.matches("mx.example.com"));
        assert!(p.matches("MX.Example.COM."));
        assert!(!p.matches("example.com"));
        assert!(!p.matches("a.mx.example.com"));
        assert!(!p.matches("mxexample.com"));
        assert!(!p.matches(".example.com"));
        let exact = MxPattern::parse("mx.example.com").unwrap();
        assert!(exact.matches("mx.example.com."));
        assert!(!exact.matches("a.mx.example.com"));
    }

    #[test]
    fn mx_patterns_refuse_other_wildcards() {
        assert_eq!(
            MxPattern::parse("*.*.example.com"),
            Err(NameError::Wildcard)
        );
        assert!(MxPattern::parse("mx*.example.com").is_err());
        assert!(MxPattern::parse("*example.com").is_err());
        assert!(MxPattern::parse("*").is_err());
        assert!(MxPattern::parse("mx.example.com.").is_err());
    }

    #[test]
    fn id_is_short_alphanumeric_and_tracks_content() {
        let a = policy(Mode::Testing, &["mx.example.com"], 86400);
        let b = policy(Mode::Enforce, &["mx.example.com"], 86400);
        let id = a.id();
        assert_eq!(id.as_str().len(), 32);
        assert!(id.as_str().bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_eq!(id, a.clone().id());
        assert_ne!(id, b.id());
        assert!(PolicyId::parse(id.as_str()).is_ok());
    }

    #[test]
    fn policy_ids_outside_the_grammar_are_refused() {
        for bad in ["", "2026-01-01", "a:b", &"a".repeat(33), &"f".repeat(64)] {
            assert!(PolicyId::parse(bad).is_err(), "{bad}");
        }
        assert!(PolicyId::parse(&"a".repeat(32)).is_ok());
    }

    #[test]
    fn sts_record_round_trips_and_refuses_bad_ids() {
        let rec = StsRecord::parse("v=STSv1; id=20160831085700Z;").unwrap();
        assert_eq!(rec.id.as_str(), "20160831085700Z");
        assert_eq!(StsRecord::parse(&rec.render()).unwrap(), rec);
        assert!(matches!(
            StsRecord::parse("v=STSv1; id=abc-def"),
            Err(StsRecordError::Id(_))
        ));
        assert!(matches!(
            StsRecord::parse("v=STSv1"),
            Err(StsRecordError::NoId)
        ));
        assert!(matches!(
            StsRecord::parse("id=1; v=STSv1"),
            Err(StsRecordError::Syntax(_))
        ));
        assert!(matches!(
            StsRecord::parse("v=STSv2; id=1"),
            Err(StsRecordError::Syntax(_))
        ));
    }

    #[test]
    fn parses_lf_only_with_a_warning() {
        let parsed =
            Policy::parse("version: STSv1\nmode: testing\nmx: mx.example.com\nmax_age: 86400\n")
                .unwrap();
        assert_eq!(
            parsed.value,
            policy(Mode::Testing, &["mx.example.com"], 86400)
        );
        assert_eq!(parsed.warnings.len(), 1);
        assert!(parsed.warnings[0].contains("CRLF"));
    }

    #[test]
    fn parse_errors_are_precise() {
        let cases: &[(&str, PolicyError)] = &[
            (
                "mode: testing\r\nversion: STSv1\r\n",
                PolicyError::VersionNotFirst,
            ),
            ("version: STSv2\r\n", PolicyError::Version("STSv2".into())),
            (
                "version: STSv1\r\nmode: strict\r\n",
                PolicyError::Mode("strict".into()),
            ),
            (
                "version: STSv1\r\nmode: testing\r\nmx: a.example\r\nmax_age: 31557601\r\n",
                PolicyError::MaxAge("31557601".into()),
            ),
            (
                "version: STSv1\r\nmode: testing\r\nmx: a.example\r\nmax_age: -1\r\n",
                PolicyError::MaxAge("-1".into()),
            ),
            (
                "version: STSv1\r\nmode: testing\r\nmode: enforce\r\n",
                PolicyError::Duplicate("mode"),
            ),
            (
                "version: STSv1\r\nmode: testing\r\nmax_age: 60\r\n",
                PolicyError::Missing("mx"),
            ),
            (
                "version: STSv1\r\nmode: testing\r\nmx: a.example\r\n",
                PolicyError::Missing("max_age"),
            ),
            (
                "version: STSv1\r\nmode testing\r\n",
                PolicyError::NotAField(2),
            ),
        ];
        for (body, want) in cases {
            assert_eq!(Policy::parse(body).unwrap_err(), *want, "{body:?}");
        }
        let too_big = format!("version: STSv1\r\n{}", "x: y\r\n".repeat(12_000));
        assert!(matches!(
            Policy::parse(&too_big),
            Err(PolicyError::TooLarge(_))
        ));
    }

    #[test]
    fn mode_none_needs_no_mx_and_extensions_are_ignored() {
        let parsed =
            Policy::parse("version: STSv1\r\nmode: none\r\nmax_age: 86400\r\nx-note: hi\r\n")
                .unwrap();
        assert_eq!(parsed.value, policy(Mode::None, &[], 86400));
        assert!(parsed.warnings.is_empty());
    }

    fn arb_policy() -> impl Strategy<Value = Policy> {
        let mx = proptest::collection::vec(
            (
                "(\\*\\.)?",
                "[a-z][a-z0-9]{0,10}(\\.[a-z][a-z0-9]{0,10}){1,3}",
            ),
            1..5,
        )
        .prop_map(|v| {
            v.into_iter()
                .map(|(w, d)| MxPattern::parse(&format!("{w}{d}")).unwrap())
                .collect()
        });
        let mode = prop_oneof![Just(Mode::Enforce), Just(Mode::Testing), Just(Mode::None)];
        (mode, mx, 0..=MAX_AGE_LIMIT).prop_map(|(mode, mx, max_age)| Policy { mode, mx, max_age })
    }

    proptest! {
        #[test]
        fn render_then_parse_is_identity(p in arb_policy()) {
            let text = p.render();
            prop_assert!(text.starts_with("version: STSv1\r\n"));
            prop_assert!(!text.replace("\r\n", "").contains('\n'));
            let parsed = Policy::parse(&text).unwrap();
            prop_assert!(parsed.warnings.is_empty());
            prop_assert_eq!(parsed.value, p);
        }

        #[test]
        fn ids_differ_when_policies_differ(a in arb_policy(), b in arb_policy()) {
            prop_assert_eq!(a.id() == b.id(), a.render() == b.render());
        }
    }
}
