//! Which TXT values the operator created. Each managed name gets a marker TXT record at
//! `_mailsec.<name>` naming the installation and the MailDomain (the external-dns TXT registry
//! idea, kept beside the value rather than inside a shared RRset).

/// The marker's name for a managed name.
pub fn marker_name(name: &str) -> String {
    format!("_mailsec.{name}")
}

/// Who manages a name: an installation (`owner`) and a MailDomain (`namespace/name`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub owner: String,
    pub resource: String,
}

const HERITAGE: &str = "heritage=mailsec-operator";

impl Owner {
    pub fn new(owner: impl Into<String>, resource: impl Into<String>) -> Self {
        Owner {
            owner: owner.into(),
            resource: resource.into(),
        }
    }

    /// `heritage=mailsec-operator,owner=<id>,resource=<namespace>/<name>`.
    pub fn render(&self) -> String {
        format!("{HERITAGE},owner={},resource={}", self.owner, self.resource)
    }

    /// Reads a marker value; anything else (other TXT data at the name) is None.
    pub fn parse(value: &str) -> Option<Owner> {
        let mut parts = value.split(',');
        if parts.next() != Some(HERITAGE) {
            return None;
        }
        let (mut owner, mut resource) = (None, None);
        for part in parts {
            match part.split_once('=') {
                Some(("owner", v)) => owner = Some(v.to_owned()),
                Some(("resource", v)) => resource = Some(v.to_owned()),
                _ => {}
            }
        }
        Some(Owner {
            owner: owner?,
            resource: resource?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_round_trip_and_ignore_other_data() {
        let o = Owner::new("prod", "mail/example-com");
        assert_eq!(
            o.render(),
            "heritage=mailsec-operator,owner=prod,resource=mail/example-com"
        );
        assert_eq!(Owner::parse(&o.render()), Some(o));
        assert_eq!(
            Owner::parse("heritage=external-dns,external-dns/owner=default"),
            None
        );
        assert_eq!(Owner::parse("heritage=mailsec-operator,owner=prod"), None);
        assert_eq!(
            marker_name("_dmarc.example.com"),
            "_mailsec._dmarc.example.com"
        );
    }
}
