//! The providers behind one small interface: read the TXT RRsets at some names, apply a plan's
//! operations to a zone. The plan itself knows nothing of providers.

use super::DnsError;
use super::plan::{Current, Operation};
use super::rfc2136::Rfc2136;

/// A configured provider.
#[derive(Clone)]
pub enum Provider {
    Rfc2136(Rfc2136),
    /// Writes nothing: status lists the records for a human to publish.
    Manual,
}

impl Provider {
    /// The name used in metrics and messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Provider::Rfc2136(_) => "rfc2136",
            Provider::Manual => "manual",
        }
    }

    pub async fn read(&self, names: &[String]) -> Result<Current, DnsError> {
        match self {
            Provider::Rfc2136(p) => p.read(names).await,
            Provider::Manual => Ok(Current::new()),
        }
    }

    pub async fn apply(&self, zone: &str, operations: &[Operation]) -> Result<(), DnsError> {
        match self {
            Provider::Rfc2136(p) => p.apply(zone, operations).await,
            Provider::Manual => Ok(()),
        }
    }
}

/// The zone for `domain`: the longest of `zones` that `domain` equals or lies below
/// (compared label-wise, so `badexample.com` is not in `example.com`).
pub fn find_zone<'a>(domain: &str, zones: &'a [String]) -> Option<&'a str> {
    zones
        .iter()
        .map(String::as_str)
        .filter(|z| domain == *z || domain.ends_with(&format!(".{z}")))
        .max_by_key(|z| z.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_matching_suffix_wins() {
        let zones = vec![
            "example.com".to_owned(),
            "mail.example.com".to_owned(),
            "ample.com".to_owned(),
        ];
        assert_eq!(
            find_zone("mail.example.com", &zones),
            Some("mail.example.com")
        );
        assert_eq!(
            find_zone("a.mail.example.com", &zones),
            Some("mail.example.com")
        );
        assert_eq!(find_zone("example.com", &zones), Some("example.com"));
        assert_eq!(find_zone("badexample.com", &zones), None);
        assert_eq!(find_zone("example.org", &zones), None);
    }
}
