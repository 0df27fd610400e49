//! TLS-RPT (RFC 8460): the `_smtp._tls.<domain>` TXT record.

use super::name::{DomainName, is_https_url_with_host_name};
use super::tags;

/// Why a report URI or a TLSRPTv1 record was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsRptError {
    #[error("`{0}` must start with mailto: or https://")]
    Scheme(String),
    #[error("`{0}` holds white space")]
    Space(String),
    #[error("`{0}` is not a mailto: URI with an address like user@example.com")]
    Mailto(String),
    #[error("`{0}` is not an https:// URL with a host name")]
    Https(String),
    #[error("{0}")]
    Syntax(String),
    #[error("the rua tag is missing or empty")]
    NoRua,
}

/// A report destination, kept in its published (percent-encoded) form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportUri(String);

impl ReportUri {
    /// Checks a `mailto:` or `https://` URI and percent-encodes the `,` `!` `;` it holds,
    /// which RFC 8460 §3 requires because they delimit the record.
    pub fn parse(input: &str) -> Result<Self, TlsRptError> {
        if input.chars().any(char::is_whitespace) {
            return Err(TlsRptError::Space(input.to_owned()));
        }
        let encoded = encode_delimiters(input);
        if let Some(address) = encoded.strip_prefix("mailto:") {
            let address = address.split('?').next().unwrap_or_default();
            let valid = address.rsplit_once('@').is_some_and(|(local, domain)| {
                !local.is_empty() && DomainName::parse(domain).is_ok()
            });
            if !valid {
                return Err(TlsRptError::Mailto(input.to_owned()));
            }
        } else if encoded.starts_with("https://") {
            if !is_https_url_with_host_name(&encoded) {
                return Err(TlsRptError::Https(input.to_owned()));
            }
        } else {
            return Err(TlsRptError::Scheme(input.to_owned()));
        }
        Ok(ReportUri(encoded))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn encode_delimiters(uri: &str) -> String {
    uri.replace(',', "%2C")
        .replace('!', "%21")
        .replace(';', "%3B")
}

/// `v=TLSRPTv1; rua=<uri>[,<uri>...]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsRptRecord {
    pub rua: Vec<ReportUri>,
}

impl TlsRptRecord {
    pub fn render(&self) -> String {
        let rua: Vec<&str> = self.rua.iter().map(ReportUri::as_str).collect();
        format!("v=TLSRPTv1; rua={}", rua.join(","))
    }

    pub fn parse(value: &str) -> Result<Self, TlsRptError> {
        let tags = tags::parse(value).map_err(|e| TlsRptError::Syntax(e.to_string()))?;
        tags::expect_version(&tags, "TLSRPTv1").map_err(TlsRptError::Syntax)?;
        let rua = tags::get(&tags, "rua")
            .filter(|v| !v.is_empty())
            .ok_or(TlsRptError::NoRua)?;
        let uris = rua
            .split(',')
            .map(|u| {
                // A published URI must already be encoded: a raw `!` means a sender would
                // misread it, so refuse instead of silently fixing it.
                if u.contains('!') {
                    return Err(TlsRptError::Syntax(format!("`{u}` holds an unencoded `!`")));
                }
                ReportUri::parse(u.trim_matches([' ', '\t']))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TlsRptRecord { rua: uris })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_several_destinations() {
        let rec = TlsRptRecord {
            rua: vec![
                ReportUri::parse("mailto:tlsrpt@example.com").unwrap(),
                ReportUri::parse("https://reports.example.com/v1/tlsrpt").unwrap(),
            ],
        };
        assert_eq!(
            rec.render(),
            "v=TLSRPTv1; rua=mailto:tlsrpt@example.com,https://reports.example.com/v1/tlsrpt"
        );
        assert_eq!(TlsRptRecord::parse(&rec.render()).unwrap(), rec);
    }

    #[test]
    fn delimiters_inside_uris_are_percent_encoded() {
        let uri = ReportUri::parse("https://r.example.com/in?a=1,2;b!").unwrap();
        assert_eq!(uri.as_str(), "https://r.example.com/in?a=1%2C2%3Bb%21");
        let rec = TlsRptRecord { rua: vec![uri] };
        assert_eq!(TlsRptRecord::parse(&rec.render()).unwrap().rua.len(), 1);
    }

    #[test]
    fn bad_uris_are_refused() {
        assert!(matches!(
            ReportUri::parse("http://r.example.com/"),
            Err(TlsRptError::Scheme(_))
        ));
        assert!(matches!(
            ReportUri::parse("ftp://r.example.com/"),
            Err(TlsRptError::Scheme(_))
        ));
        assert!(matches!(
            ReportUri::parse("mailto:nobody"),
            Err(TlsRptError::Mailto(_))
        ));
        assert!(matches!(
            ReportUri::parse("mailto:@example.com"),
            Err(TlsRptError::Mailto(_))
        ));
        assert!(matches!(
            ReportUri::parse("https:///path"),
            Err(TlsRptError::Https(_))
        ));
        assert!(matches!(
            ReportUri::parse("https://203.0.113.1/x"),
            Err(TlsRptError::Https(_))
        ));
        assert!(matches!(
            ReportUri::parse("mailto:a b@example.com"),
            Err(TlsRptError::Space(_))
        ));
    }

    #[test]
    fn records_need_version_and_rua() {
        assert!(matches!(
            TlsRptRecord::parse("v=TLSRPTv1;"),
            Err(TlsRptError::NoRua)
        ));
        assert!(matches!(
            TlsRptRecord::parse("v=TLSRPTv1; rua="),
            Err(TlsRptError::NoRua)
        ));
        assert!(matches!(
            TlsRptRecord::parse("rua=mailto:a@b.example"),
            Err(TlsRptError::Syntax(_))
        ));
        assert!(matches!(
            TlsRptRecord::parse("v=TLSRPTv1; rua=mailto:a@b.example!10m"),
            Err(TlsRptError::Syntax(_))
        ));
    }
}
