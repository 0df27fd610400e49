//! The policy index both serve targets query: three MailDomains, one with a U-label domain.
use kube::runtime::{reflector, watcher};
use mailsec_operator::api::Guarded;
use mailsec_operator::serve::PolicyIndex;

/// (domain as normalized, its policy body).
pub const DOMAINS: [(&str, &str); 3] = [
    (
        "example.com",
        "version: STSv1\r\nmode: enforce\r\nmx: mx.example.com\r\nmax_age: 86400\r\n",
    ),
    (
        "example.org",
        "version: STSv1\r\nmode: none\r\nmax_age: 86400\r\n",
    ),
    (
        "xn--bcher-kva.example",
        "version: STSv1\r\nmode: testing\r\nmx: *.example.net\r\nmax_age: 600\r\n",
    ),
];

pub fn index() -> PolicyIndex {
    let (store, mut writer) = reflector::store::<Guarded>();
    for (i, (domain, policy)) in DOMAINS.iter().enumerate() {
        let g: Guarded = serde_json::from_value(serde_json::json!({
            "apiVersion": "mailsec.io/v1alpha1", "kind": "MailDomain",
            "metadata": {"name": format!("d{i}"), "namespace": "a", "uid": format!("{i}"),
                         "creationTimestamp": "2026-01-02T00:00:00Z"},
            "spec": {"domain": domain, "dmarc": {"policy": "none"}},
            "status": {"servedPolicy": policy}
        }))
        .expect("a MailDomain");
        writer.apply_watcher_event(&watcher::Event::Apply(g));
    }
    PolicyIndex::of(&store)
}
