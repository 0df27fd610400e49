//! The TXT records the operator manages, and how to recognise ours in a shared RRset.

use std::fmt;

use super::name::DomainName;
use super::txt;

/// The kinds of mail records. Each is identified inside an RRset by its version tag, so values
/// of other kinds (site verifications at the apex, say) are never mistaken for ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RecordKind {
    MtaSts,
    TlsRpt,
    Spf,
    Dmarc,
    Dkim,
    Bimi,
}

impl RecordKind {
    pub const ALL: [RecordKind; 6] = [
        RecordKind::MtaSts,
        RecordKind::TlsRpt,
        RecordKind::Spf,
        RecordKind::Dmarc,
        RecordKind::Dkim,
        RecordKind::Bimi,
    ];

    /// The version tag a value of this kind starts with.
    pub fn tag(self) -> &'static str {
        match self {
            RecordKind::MtaSts => "v=STSv1",
            RecordKind::TlsRpt => "v=TLSRPTv1",
            RecordKind::Spf => "v=spf1",
            RecordKind::Dmarc => "v=DMARC1",
            RecordKind::Dkim => "v=DKIM1",
            RecordKind::Bimi => "v=BIMI1",
        }
    }

    /// Whether a TXT value (joined) is of this kind. SPF's version is matched without regard to
    /// case and must be followed by a space or the end (RFC 7208 §4.5), so `v=spf10` is not SPF;
    /// the others end at `;` or white space.
    pub fn matches(self, value: &str) -> bool {
        let tag = self.tag();
        let Some(head) = value.get(..tag.len()) else {
            return false;
        };
        let rest = &value[tag.len()..];
        match self {
            RecordKind::Spf => {
                head.eq_ignore_ascii_case(tag) && (rest.is_empty() || rest.starts_with(' '))
            }
            _ => head == tag && (rest.is_empty() || rest.starts_with([';', ' ', '\t'])),
        }
    }

    /// The owner name of this kind's record for `domain`; DKIM and BIMI records sit below a
    /// selector (`<selector>._domainkey`, `<selector>._bimi`), the others ignore it.
    pub fn owner(self, domain: &DomainName, selector: &str) -> String {
        match self {
            RecordKind::MtaSts => domain.child("_mta-sts"),
            RecordKind::TlsRpt => domain.child("_smtp._tls"),
            RecordKind::Spf => domain.to_string(),
            RecordKind::Dmarc => domain.child("_dmarc"),
            RecordKind::Dkim => domain.child(&format!("{selector}._domainkey")),
            RecordKind::Bimi => domain.child(&format!("{selector}._bimi")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::MtaSts => "MTA-STS",
            RecordKind::TlsRpt => "TLS-RPT",
            RecordKind::Spf => "SPF",
            RecordKind::Dmarc => "DMARC",
            RecordKind::Dkim => "DKIM",
            RecordKind::Bimi => "BIMI",
        }
    }
}

impl fmt::Display for RecordKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One desired TXT value at one name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TxtRecord {
    /// Owner name in A-labels, without the trailing dot.
    pub name: String,
    pub kind: RecordKind,
    pub ttl: u32,
    /// The logical value; split into character-strings only on the wire.
    pub value: String,
}

impl TxtRecord {
    /// One zone-file line: `name. ttl IN TXT "..." "..."`.
    pub fn zone_line(&self) -> String {
        format!(
            "{}. {} IN TXT {}",
            self.name,
            self.ttl,
            txt::to_presentation(&self.value)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_our_values_only() {
        assert!(RecordKind::Spf.matches("v=spf1 mx -all"));
        assert!(RecordKind::Spf.matches("V=SPF1 -all"));
        assert!(RecordKind::Spf.matches("v=spf1"));
        assert!(!RecordKind::Spf.matches("v=spf10 mx"));
        assert!(!RecordKind::Spf.matches("google-site-verification=abc"));
        assert!(RecordKind::Dmarc.matches("v=DMARC1; p=none"));
        assert!(RecordKind::Dmarc.matches("v=DMARC1;p=none"));
        assert!(!RecordKind::Dmarc.matches("v=DMARC10; p=none"));
        assert!(RecordKind::MtaSts.matches("v=STSv1; id=1"));
        assert!(!RecordKind::MtaSts.matches("v=STSv1x"));
        assert!(
            !RecordKind::Dkim.matches("k=rsa; p=AAAA"),
            "DKIM records without v= are not ours"
        );
    }

    #[test]
    fn zone_line_splits_long_values() {
        let rec = TxtRecord {
            name: "s1._domainkey.example.com".into(),
            kind: RecordKind::Dkim,
            ttl: 3600,
            value: "x".repeat(300),
        };
        let line = rec.zone_line();
        assert!(line.starts_with("s1._domainkey.example.com. 3600 IN TXT \""));
        assert_eq!(line.matches('"').count(), 4);
    }
}
