//! Domain names as the DNS and the RFCs want them: A-labels, lower case, no trailing dot.

use std::fmt;

/// Why a name is not an acceptable host name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("is empty")]
    Empty,
    #[error("must not end with a dot (write `{0}`)")]
    TrailingDot(String),
    #[error("is not a valid internationalized domain name")]
    Idna,
    #[error("has an empty label")]
    EmptyLabel,
    #[error("label `{0}` is longer than 63 bytes")]
    LabelTooLong(String),
    #[error("is longer than 253 bytes")]
    TooLong,
    #[error("label `{0}` may only hold letters, digits and inner hyphens")]
    BadLabel(String),
    #[error("needs at least two labels (a name like `example.com`)")]
    SingleLabel,
    #[error("has an all-numeric top-level label `{0}`")]
    NumericTld(String),
    #[error("may use `*` only as the whole leftmost label, as in `*.example.com` (RFC 8461 §3.2)")]
    Wildcard,
}

/// A host name in A-label form: lower case, no trailing dot, 2+ LDH labels.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DomainName(String);

impl DomainName {
    /// Parses a host name given in U-labels or A-labels and normalizes it to A-labels.
    pub fn parse(input: &str) -> Result<Self, NameError> {
        if input.is_empty() {
            return Err(NameError::Empty);
        }
        if let Some(stripped) = input.strip_suffix('.') {
            return Err(NameError::TrailingDot(stripped.to_owned()));
        }
        let ascii = if input.is_ascii() {
            input.to_ascii_lowercase()
        } else {
            idna::domain_to_ascii_strict(input).map_err(|_| NameError::Idna)?
        };
        check_ldh_name(&ascii)?;
        // An A-label must decode to a valid U-label: `xn--zz` is LDH but not IDNA.
        if ascii.split('.').any(|l| l.starts_with("xn--"))
            && idna::domain_to_ascii_strict(&ascii).is_err()
        {
            return Err(NameError::Idna);
        }
        Ok(DomainName(ascii))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `label.<self>`, for service names such as `_mta-sts` that are not IDNA.
    pub fn child(&self, label: &str) -> String {
        format!("{label}.{}", self.0)
    }

    /// True when `self` is `other` or lies below it.
    pub fn is_within(&self, other: &DomainName) -> bool {
        self.0 == other.0 || self.0.ends_with(&format!(".{}", other.0))
    }
}

impl fmt::Display for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks the host name rules of RFC 1123 on an ASCII name.
fn check_ldh_name(name: &str) -> Result<(), NameError> {
    if name.len() > 253 {
        return Err(NameError::TooLong);
    }
    let labels: Vec<&str> = name.split('.').collect();
    for label in &labels {
        check_ldh_label(label)?;
    }
    if labels.len() < 2 {
        return Err(NameError::SingleLabel);
    }
    let tld = labels[labels.len() - 1];
    if tld.bytes().all(|b| b.is_ascii_digit()) {
        return Err(NameError::NumericTld(tld.to_owned()));
    }
    Ok(())
}

/// One LDH label: 1-63 of `[a-z0-9-]`, no hyphen at either end.
pub fn check_ldh_label(label: &str) -> Result<(), NameError> {
    if label.is_empty() {
        return Err(NameError::EmptyLabel);
    }
    if label.len() > 63 {
        return Err(NameError::LabelTooLong(label.to_owned()));
    }
    let ldh = label
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !ldh || label.starts_with('-') || label.ends_with('-') {
        return Err(NameError::BadLabel(label.to_owned()));
    }
    Ok(())
}

/// Whether `value` is an `https://` URL whose host is a DNS host name (not an IP address, not a
/// single label).
pub fn is_https_url_with_host_name(value: &str) -> bool {
    value.starts_with("https://")
        && url::Url::parse(value).is_ok_and(
            |u| matches!(u.host(), Some(url::Host::Domain(d)) if DomainName::parse(d).is_ok()),
        )
}

/// Lower-cases a name read from DNS and drops the root dot, for comparisons.
pub fn normalize_dns_name(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_names_are_lowercased() {
        assert_eq!(
            DomainName::parse("Mail.Example.COM").unwrap().as_str(),
            "mail.example.com"
        );
    }

    #[test]
    fn unicode_names_become_a_labels() {
        assert_eq!(
            DomainName::parse("bücher.example").unwrap().as_str(),
            "xn--bcher-kva.example"
        );
        assert_eq!(
            DomainName::parse("ÉXAMPLE.fr").unwrap().as_str(),
            "xn--xample-9ua.fr"
        );
        assert_eq!(
            DomainName::parse("XN--BCHER-KVA.example").unwrap().as_str(),
            "xn--bcher-kva.example"
        );
        assert_eq!(DomainName::parse("xn--zz.example"), Err(NameError::Idna));
    }

    #[test]
    fn bad_names_are_refused_with_a_reason() {
        assert_eq!(DomainName::parse(""), Err(NameError::Empty));
        assert_eq!(
            DomainName::parse("example.com."),
            Err(NameError::TrailingDot("example.com".into()))
        );
        assert_eq!(DomainName::parse("localhost"), Err(NameError::SingleLabel));
        assert_eq!(DomainName::parse("a..b"), Err(NameError::EmptyLabel));
        assert_eq!(
            DomainName::parse("-a.example"),
            Err(NameError::BadLabel("-a".into()))
        );
        assert_eq!(
            DomainName::parse("_dmarc.example"),
            Err(NameError::BadLabel("_dmarc".into()))
        );
        assert_eq!(
            DomainName::parse("a b.example"),
            Err(NameError::BadLabel("a b".into()))
        );
        assert_eq!(
            DomainName::parse("10.0.0.1"),
            Err(NameError::NumericTld("1".into()))
        );
        let long_label = "a".repeat(64);
        assert_eq!(
            DomainName::parse(&format!("{long_label}.com")),
            Err(NameError::LabelTooLong(long_label))
        );
        let long_name = vec!["abcdefghi"; 26].join(".");
        assert_eq!(DomainName::parse(&long_name), Err(NameError::TooLong));
    }

    #[test]
    fn service_labels_are_prefixed_verbatim() {
        let d = DomainName::parse("bücher.example").unwrap();
        assert_eq!(d.child("_mta-sts"), "_mta-sts.xn--bcher-kva.example");
    }

    #[test]
    fn within_compares_whole_labels() {
        let zone = DomainName::parse("example.com").unwrap();
        assert!(DomainName::parse("a.example.com").unwrap().is_within(&zone));
        assert!(zone.is_within(&zone));
        assert!(
            !DomainName::parse("badexample.com")
                .unwrap()
                .is_within(&zone)
        );
    }
}
