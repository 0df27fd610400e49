//! Reading a MailDomain's status in tests: its conditions, and waiting for one to hold.

use std::time::{Duration, Instant};

use kube::Api;
use mailsec_operator::api::MailDomain;

/// `(status, reason, message)` of the condition `type_`.
pub fn condition<'a>(md: &'a MailDomain, type_: &str) -> Option<(&'a str, &'a str, &'a str)> {
    md.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.as_str(), c.reason.as_str(), c.message.as_str()))
}

/// Ready=True for the current generation.
/// DNSPublished=True for the current generation (Ready also needs the live checks, which
/// cannot pass for made-up domains).
pub fn published(md: &MailDomain) -> bool {
    condition(md, "DNSPublished").is_some_and(|c| c.0 == "True")
        && md.status.as_ref().and_then(|s| s.observed_generation) == md.metadata.generation
}

pub fn ready(md: &MailDomain) -> bool {
    condition(md, "Ready").is_some_and(|c| c.0 == "True")
        && md.status.as_ref().and_then(|s| s.observed_generation) == md.metadata.generation
}

/// Polls the MailDomain until `check` holds; fails after 60 s with the last status.
pub async fn wait_for(
    api: &Api<MailDomain>,
    name: &str,
    what: &str,
    check: impl Fn(&MailDomain) -> bool,
) -> MailDomain {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match api.get_opt(name).await.expect("get the MailDomain") {
            Some(md) if check(&md) => return md,
            Some(md) => assert!(
                Instant::now() < deadline,
                "timed out waiting for {name}: {what}; status: {}",
                serde_json::to_string_pretty(&md.status).unwrap_or_default()
            ),
            None => assert!(
                Instant::now() < deadline,
                "timed out waiting for {name}: {what}; the MailDomain is gone"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
