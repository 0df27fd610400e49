//! BIMI (draft-brand-indicators-for-message-identification): `<selector>._bimi.<domain>`.

use super::tags;

/// Why a BIMI value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BimiError {
    #[error("{0}")]
    Syntax(String),
    #[error("`{0}` must be an https:// URL with a host name")]
    Url(String),
    #[error("the l tag is missing")]
    NoLogo,
}

/// `v=BIMI1; l=<logo url>[; a=<authority evidence url>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BimiRecord {
    /// HTTPS URL of an SVG Tiny PS logo; empty declines to publish one.
    pub logo: String,
    /// HTTPS URL of the mark certificate (VMC/CMC), if any.
    pub authority: Option<String>,
}

/// Checks that `value` is an https URL with a DNS host name.
pub fn check_https_url(value: &str) -> Result<(), BimiError> {
    let ok = !value.contains([';', ' ', ',']) && super::name::is_https_url_with_host_name(value);
    if ok {
        Ok(())
    } else {
        Err(BimiError::Url(value.to_owned()))
    }
}

impl BimiRecord {
    pub fn new(logo: &str, authority: Option<&str>) -> Result<Self, BimiError> {
        check_https_url(logo)?;
        if let Some(a) = authority {
            check_https_url(a)?;
        }
        Ok(BimiRecord {
            logo: logo.to_owned(),
            authority: authority.map(str::to_owned),
        })
    }

    pub fn render(&self) -> String {
        match &self.authority {
            Some(a) => format!("v=BIMI1; l={}; a={a}", self.logo),
            None => format!("v=BIMI1; l={}", self.logo),
        }
    }

    pub fn parse(value: &str) -> Result<Self, BimiError> {
        let tags = tags::parse(value).map_err(|e| BimiError::Syntax(e.to_string()))?;
        tags::expect_version(&tags, "BIMI1").map_err(BimiError::Syntax)?;
        let logo = tags::get(&tags, "l").ok_or(BimiError::NoLogo)?;
        if !logo.is_empty() {
            check_https_url(logo)?;
        }
        let authority = tags::get(&tags, "a").filter(|a| !a.is_empty());
        if let Some(a) = authority {
            check_https_url(a)?;
        }
        Ok(BimiRecord {
            logo: logo.to_owned(),
            authority: authority.map(str::to_owned),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_and_parses() {
        let rec = BimiRecord::new(
            "https://example.com/logo.svg",
            Some("https://example.com/vmc.pem"),
        )
        .unwrap();
        assert_eq!(
            rec.render(),
            "v=BIMI1; l=https://example.com/logo.svg; a=https://example.com/vmc.pem"
        );
        assert_eq!(BimiRecord::parse(&rec.render()).unwrap(), rec);
        let plain = BimiRecord::new("https://example.com/logo.svg", None).unwrap();
        assert_eq!(
            BimiRecord::parse("v=BIMI1; l=https://example.com/logo.svg; a=;").unwrap(),
            plain
        );
    }

    #[test]
    fn refuses_non_https_and_missing_logo() {
        assert!(BimiRecord::new("http://example.com/logo.svg", None).is_err());
        assert!(BimiRecord::new("https://203.0.113.9/logo.svg", None).is_err());
        assert_eq!(
            BimiRecord::parse("v=BIMI1; a=https://example.com/vmc.pem"),
            Err(BimiError::NoLogo)
        );
        assert!(matches!(
            BimiRecord::parse("v=BIMI2; l="),
            Err(BimiError::Syntax(_))
        ));
    }
}
