//! Which MailDomain holds a domain when several name it: the oldest (by creation time, then
//! namespace and name, so the order is total). The controller writes DNS only for the holder,
//! and the policy server serves only the holder's policy.

use kube::ResourceExt;

use crate::api::MailDomain;
use crate::domain::name::DomainName;

/// What the claim is for; the two differ for a MailDomain being deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Writing records: a MailDomain being deleted gives up its claim at once, so a younger
    /// one can take the domain over.
    Publish,
    /// Serving the policy: a MailDomain being deleted keeps its claim while it withdraws
    /// MTA-STS, because senders that cached its policy must be able to fetch the `mode: none`
    /// one for the old `max_age`.
    Serve,
}

/// The holder of `domain` among `candidates`, if any of them claims it.
pub fn holder<'a>(
    candidates: impl IntoIterator<Item = &'a MailDomain>,
    domain: &DomainName,
    purpose: Purpose,
) -> Option<&'a MailDomain> {
    candidates
        .into_iter()
        .filter(|md| match purpose {
            Purpose::Publish => md.metadata.deletion_timestamp.is_none(),
            Purpose::Serve => {
                md.metadata.deletion_timestamp.is_none()
                    || md
                        .status
                        .as_ref()
                        .is_some_and(|s| s.withdraw_until.is_some())
            }
        })
        .filter(|md| names(&md.spec.domain, domain))
        .min_by_key(|md| {
            (
                md.creation_timestamp().map(|t| t.0),
                md.namespace(),
                md.name_any(),
            )
        })
}

/// Whether `spec_domain` (as written in a spec) is `domain`. An ASCII spelling that differs
/// from `domain` in more than case cannot be it, which saves parsing (with
/// IDNA) every candidate: at 10,000 MailDomains each reconcile looks at all of them.
fn names(spec_domain: &str, domain: &DomainName) -> bool {
    if spec_domain.is_ascii() && !spec_domain.eq_ignore_ascii_case(domain.as_str()) {
        return false;
    }
    DomainName::parse(spec_domain).is_ok_and(|d| d == *domain)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md(
        name: &str,
        created: &str,
        domain: &str,
        deleting: bool,
        withdrawing: bool,
    ) -> MailDomain {
        let mut value = serde_json::json!({
            "apiVersion": "mailsec.io/v1alpha1", "kind": "MailDomain",
            "metadata": {"name": name, "namespace": "ns", "uid": name, "creationTimestamp": created},
            "spec": {"domain": domain},
        });
        if deleting {
            value["metadata"]["deletionTimestamp"] = "2026-06-01T00:00:00Z".into();
        }
        if withdrawing {
            value["status"] = serde_json::json!({"withdrawUntil": "2026-06-08T00:00:00Z"});
        }
        serde_json::from_value(value).unwrap()
    }

    fn name(m: Option<&MailDomain>) -> Option<String> {
        m.map(ResourceExt::name_any)
    }

    #[test]
    fn the_oldest_claim_wins_whatever_the_spelling() {
        let domain = DomainName::parse("example.com").unwrap();
        let all = [
            md("young", "2026-03-01T00:00:00Z", "example.com", false, false),
            md("old", "2026-01-01T00:00:00Z", "EXAMPLE.com", false, false),
            md("other", "2025-01-01T00:00:00Z", "example.org", false, false),
        ];
        for purpose in [Purpose::Publish, Purpose::Serve] {
            assert_eq!(name(holder(&all, &domain, purpose)).as_deref(), Some("old"));
        }
        // Same creation time: the name decides, so every role agrees.
        let tie = [
            md("b", "2026-01-01T00:00:00Z", "example.com", false, false),
            md("a", "2026-01-01T00:00:00Z", "example.com", false, false),
        ];
        assert_eq!(
            name(holder(&tie, &domain, Purpose::Publish)).as_deref(),
            Some("a")
        );
    }

    #[test]
    fn every_spelling_of_a_name_is_that_name() {
        let idn = DomainName::parse("bücher.example").unwrap();
        assert!(names("bücher.example", &idn));
        assert!(names("xn--bcher-kva.example", &idn));
        assert!(!names("bucher.example", &idn));
        let plain = DomainName::parse("example.com").unwrap();
        assert!(names("Example.COM", &plain));
        assert!(!names("example.com.", &plain), "not a valid spelling");
        assert!(!names("mail.example.com", &plain));
    }

    #[test]
    fn a_deleting_maildomain_keeps_serving_only_while_it_withdraws() {
        let domain = DomainName::parse("example.com").unwrap();
        let withdrawing = [
            md("old", "2026-01-01T00:00:00Z", "example.com", true, true),
            md("young", "2026-03-01T00:00:00Z", "example.com", false, false),
        ];
        assert_eq!(
            name(holder(&withdrawing, &domain, Purpose::Publish)).as_deref(),
            Some("young"),
            "the younger one may publish at once"
        );
        assert_eq!(
            name(holder(&withdrawing, &domain, Purpose::Serve)).as_deref(),
            Some("old"),
            "the mode none policy stays reachable"
        );
        let gone = [
            md("old", "2026-01-01T00:00:00Z", "example.com", true, false),
            md("young", "2026-03-01T00:00:00Z", "example.com", false, false),
        ];
        assert_eq!(
            name(holder(&gone, &domain, Purpose::Serve)).as_deref(),
            Some("young")
        );
    }
}
