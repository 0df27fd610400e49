//! Stage: managed DKIM keys (`dkim[].managed`). Runs [`rotation::plan`] on what the previous
//! pass left and what DNS shows, makes the keys it asks for (each in a Secret of its own,
//! owned by the MailDomain), writes the signing Secret the mail server mounts with the active
//! keys, and deletes the private keys of retired keys once their records are out of DNS.
//! Its output adds the published keys' records to the desired records.
//!
//! Restart-safe: a key's Secret is made before the status names it, under a name derived from
//! its selector, and labelled with its entry; a pass that finds a key Secret the status does
//! not name (the status write was lost) adopts it instead of making a second key.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};

use super::context::Context;
use super::names::FIELD_MANAGER;
use crate::api::{
    DkimAlgorithm, DkimKeyState, DkimKeyStatus, DkimSigningSpec, MailDomain, MailDomainStatus,
};
use crate::domain::dkim::{KeyType, PublicKey};
use crate::domain::keygen::{self, KeyKind};
use crate::domain::name::DomainName;
use crate::model::desired::Desired;
use crate::model::rotation::{self, Observed, Transition};

/// The annotation that asks for new keys now; a new value asks again.
pub const ROTATE_DKIM: &str = "mailsec.io/rotate-dkim";
/// Labels of the Secrets the operator makes for keys.
pub const KEY_MAILDOMAIN_LABEL: &str = "mailsec.io/maildomain";
pub const KEY_ENTRY_LABEL: &str = "mailsec.io/dkim-entry";
pub const KEY_SELECTOR_LABEL: &str = "mailsec.io/dkim-selector";
const PURPOSE_LABEL: &str = "mailsec.io/purpose";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("DKIM key Secrets: Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error(
        "the Secret {0} exists and was not made by the operator for this MailDomain; it is not overwritten (delete it, or name another in dkimSigning.secretName)"
    )]
    Conflict(String),
    #[error("making a DKIM key failed: {0}")]
    Generate(String),
}

impl Error {
    pub fn category(&self) -> &'static str {
        match self {
            Error::Kube(_) => "KubernetesError",
            Error::Conflict(_) => "SecretConflict",
            Error::Generate(_) => "KeyGenerationFailed",
        }
    }
}

/// The stage's output.
#[derive(Debug, Clone, Default)]
pub struct Keys {
    /// `status.dkim`.
    pub status: Vec<DkimKeyStatus>,
    /// The records to publish: `(selector, key)`.
    pub records: Vec<(String, PublicKey)>,
    pub transitions: Vec<Transition>,
    /// Keys made or adopted this pass (selector), for events.
    pub made: Vec<String>,
    /// The rotate annotation's value acted on.
    pub rotated: Option<String>,
    /// Active keys whose private key was gone (both Secrets deleted): retired, replaced.
    pub lost: Vec<String>,
    /// The soonest timed step.
    pub next: Option<Duration>,
}

/// What DNS shows, from the live checks' resolver (or without checks, from the provider) and
/// from the records the last pass published.
struct Dns {
    served: Vec<String>,
    published: Vec<String>,
}

impl Observed for Dns {
    fn served(&self, selector: &str) -> bool {
        self.served.iter().any(|s| s == selector)
    }
    fn published(&self, selector: &str) -> bool {
        self.published.iter().any(|s| s == selector)
    }
}

fn owner_name(domain: &DomainName, selector: &str) -> String {
    format!("{selector}._domainkey.{}", domain.as_str())
}

/// Whether `selector`'s record, with `key`, is what a resolver returns.
async fn served(ctx: &Context, domain: &DomainName, key: &DkimKeyStatus, published: bool) -> bool {
    let Some(settings) = &ctx.config.checks else {
        // Without checks: the provider's read-back is all there is.
        return published;
    };
    let Ok(dns) =
        crate::checks::dns::Dns::new(&settings.options.resolvers, settings.options.timeout)
    else {
        return false;
    };
    match dns.txt(&owner_name(domain, &key.selector)).await {
        Ok(values) => values
            .iter()
            .any(|v| v.contains(&format!("p={}", key.public_key))),
        Err(_) => false,
    }
}

fn signing_name(md: &MailDomain) -> String {
    md.spec
        .dkim_signing
        .as_ref()
        .and_then(|s| s.secret_name.clone())
        .unwrap_or_else(|| format!("{}-dkim-signing", md.name_any()))
}

fn key_secret_name(md: &MailDomain, selector: &str) -> String {
    format!("{}-dkim-{}", md.name_any(), selector.replace('.', "-"))
}

fn ours(secret: &Secret, md: &MailDomain) -> bool {
    let uid = md.uid().unwrap_or_default();
    secret.owner_references().iter().any(|o| o.uid == uid)
}

fn meta(md: &MailDomain, name: &str, labels: BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: md.namespace(),
        labels: Some(labels),
        owner_references: md.controller_owner_ref(&()).map(|o| vec![o]),
        ..ObjectMeta::default()
    }
}

fn kind_of(algorithm: DkimAlgorithm) -> KeyKind {
    match algorithm {
        DkimAlgorithm::Rsa2048 => KeyKind::Rsa { bits: 2048 },
        DkimAlgorithm::Rsa3072 => KeyKind::Rsa { bits: 3072 },
        DkimAlgorithm::Rsa4096 => KeyKind::Rsa { bits: 4096 },
        DkimAlgorithm::Ed25519 => KeyKind::Ed25519,
    }
}

fn key_type(algorithm: DkimAlgorithm) -> KeyType {
    match algorithm {
        DkimAlgorithm::Ed25519 => KeyType::Ed25519,
        _ => KeyType::Rsa,
    }
}

fn data(secret: &Secret, key: &str) -> Option<String> {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .and_then(|v| String::from_utf8(v.0.clone()).ok())
}

/// The key of `secret` as a status entry in state Pending since `since`.
fn adopted(
    secret: &Secret,
    entry: &str,
    algorithm: DkimAlgorithm,
    since: Time,
) -> Option<DkimKeyStatus> {
    let selector = secret.labels().get(KEY_SELECTOR_LABEL)?.clone();
    let public = PublicKey::from_pem(&data(secret, "public.pem")?).ok()?;
    Some(DkimKeyStatus {
        entry: entry.to_owned(),
        selector,
        algorithm,
        state: DkimKeyState::Pending,
        since,
        secret_name: secret.name_any(),
        public_key: public.to_base64(),
    })
}

/// Runs the stage for the `managed` entries of `desired`, from what the previous pass left.
pub async fn run(
    ctx: &Context,
    md: &MailDomain,
    desired: &Desired,
    before: &MailDomainStatus,
    now: Timestamp,
) -> Result<Keys, Error> {
    let (domain, entries, old) = (&desired.domain, &desired.managed_dkim, &before.dkim);
    let old_rotated = before.dkim_rotated.as_deref();
    if entries.is_empty() && old.is_empty() {
        return Ok(Keys::default());
    }
    let ttl = Duration::from_secs(u64::from(desired.ttl));
    // The selectors whose records the previous pass had in the zone.
    let suffix = format!("._domainkey.{}", domain.as_str());
    let published: Vec<String> = before
        .records
        .iter()
        .filter_map(|r| r.name.strip_suffix(&suffix).map(str::to_owned))
        .collect();
    let ns = md.namespace().unwrap_or_default();
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let request = md
        .annotations()
        .get(ROTATE_DKIM)
        .cloned()
        .filter(|v| !v.is_empty());
    let rotate = request.is_some() && request.as_deref() != old_rotated;
    let mut served_now = Vec::new();
    for key in old.iter().filter(|k| k.state == DkimKeyState::Pending) {
        let in_zone = published.contains(&key.selector);
        if served(ctx, domain, key, in_zone).await {
            served_now.push(key.selector.clone());
        }
    }
    let dns = Dns {
        served: served_now,
        published,
    };
    // Key Secrets of this MailDomain: the ones the status names, and any it lost track of.
    let selector = format!(
        "{KEY_MAILDOMAIN_LABEL}={},{PURPOSE_LABEL}=dkim-key",
        md.name_any()
    );
    let existing: Vec<Secret> = api
        .list(&ListParams::default().labels(&selector))
        .await?
        .items
        .into_iter()
        .filter(|s| ours(s, md))
        .collect();
    // An active key whose private half is gone from its Secret and from the signing Secret
    // cannot sign: it retires (its record stays for the overlap) and a new key is made.
    let live_signing = api.get_opt(&signing_name(md)).await?;
    let signing = live_signing.as_ref().filter(|s| ours(s, md));
    let mut lost = Vec::new();
    let old: Vec<DkimKeyStatus> = old
        .iter()
        .cloned()
        .map(|mut k| {
            let in_key = existing
                .iter()
                .any(|s| s.name_any() == k.secret_name && data(s, "private.pem").is_some());
            let in_signing = signing.is_some_and(|s| data(s, &format!("{}.private", k.selector)).is_some());
            if k.state == DkimKeyState::Active && !in_key && !in_signing {
                tracing::warn!(selector = %k.selector, "the private key of an active DKIM key is gone; a new key is made");
                lost.push(k.selector.clone());
                k.state = DkimKeyState::Retiring;
                k.since = Time(now);
            }
            k
        })
        .collect();
    let old = &old[..];
    let plan = rotation::plan(entries, old, &dns, ttl, rotate, now);
    let mut keys = plan.keys;
    let mut made = Vec::new();
    for new in plan.make {
        let orphan = existing.iter().find(|s| {
            s.labels().get(KEY_ENTRY_LABEL) == Some(&new.entry)
                && !keys.iter().any(|k| k.secret_name == s.name_any())
                && !old.iter().any(|k| k.secret_name == s.name_any())
        });
        if let Some(secret) = orphan {
            let since = secret.creation_timestamp().unwrap_or(Time(now));
            if let Some(key) = adopted(secret, &new.entry, new.algorithm, since) {
                tracing::info!(selector = %key.selector, "adopting a DKIM key made before a restart");
                made.push(key.selector.clone());
                keys.push(key);
                continue;
            }
        }
        let kind = kind_of(new.algorithm);
        let pair = tokio::task::spawn_blocking(move || keygen::generate(kind))
            .await
            .map_err(|e| Error::Generate(e.to_string()))?
            .map_err(|e| Error::Generate(e.to_string()))?;
        let name = key_secret_name(md, &new.selector);
        let labels: BTreeMap<String, String> = [
            (KEY_MAILDOMAIN_LABEL, md.name_any()),
            (KEY_ENTRY_LABEL, new.entry.clone()),
            (KEY_SELECTOR_LABEL, new.selector.clone()),
            (PURPOSE_LABEL, "dkim-key".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let secret = Secret {
            metadata: meta(md, &name, labels),
            data: Some(
                [
                    (
                        "private.pem".to_owned(),
                        ByteString(pair.private_pem.into_bytes()),
                    ),
                    (
                        "public.pem".to_owned(),
                        ByteString(pair.public_pem.into_bytes()),
                    ),
                ]
                .into(),
            ),
            type_: Some("Opaque".into()),
            ..Secret::default()
        };
        let stored = match api.create(&PostParams::default(), &secret).await {
            Ok(s) => s,
            // Made on an earlier pass whose status write was lost: adopt it if it is ours.
            Err(kube::Error::Api(e)) if e.code == 409 => {
                let found = api.get(&name).await?;
                if !ours(&found, md) {
                    return Err(Error::Conflict(name));
                }
                found
            }
            Err(e) => return Err(e.into()),
        };
        let key = adopted(&stored, &new.entry, new.algorithm, Time(now)).ok_or_else(|| {
            Error::Generate(format!("the Secret {name} has no usable public.pem"))
        })?;
        made.push(key.selector.clone());
        keys.push(key);
    }
    keys.sort_by(|a, b| (&a.entry, &a.selector).cmp(&(&b.entry, &b.selector)));

    write_signing_secret(&api, md, domain, &keys, &existing, live_signing.as_ref()).await?;
    for name in &plan.delete {
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => {
                tracing::info!(secret = %name, "deleted the private key of a retired DKIM key")
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    let records = rotation::published(&keys)
        .filter_map(|k| {
            PublicKey::from_record_data(key_type(k.algorithm), &k.public_key)
                .ok()
                .map(|p| (k.selector.clone(), p))
        })
        .collect();
    Ok(Keys {
        status: keys,
        records,
        transitions: plan.transitions,
        made,
        lost,
        rotated: if rotate {
            request
        } else {
            old_rotated.map(str::to_owned)
        },
        next: plan.next,
    })
}

/// The signing Secret: every active key in the formats the common signers read. Written only
/// when it changes; a Secret of that name the operator did not make is left alone.
async fn write_signing_secret(
    api: &Api<Secret>,
    md: &MailDomain,
    domain: &DomainName,
    keys: &[DkimKeyStatus],
    key_secrets: &[Secret],
    live: Option<&Secret>,
) -> Result<(), Error> {
    let active: Vec<&DkimKeyStatus> = keys
        .iter()
        .filter(|k| k.state == DkimKeyState::Active)
        .collect();
    if active.is_empty() {
        return Ok(());
    }
    let name = signing_name(md);
    if let Some(live) = live
        && !ours(live, md)
    {
        return Err(Error::Conflict(name));
    }
    let mut private = Vec::new();
    for key in &active {
        let from_key = key_secrets
            .iter()
            .find(|s| s.name_any() == key.secret_name)
            .and_then(|s| data(s, "private.pem"));
        // The key Secret gone: the signing Secret still has the key.
        let from_signing = || {
            live.as_ref()
                .and_then(|l| data(l, &format!("{}.private", key.selector)))
        };
        match from_key.or_else(from_signing) {
            Some(pem) => private.push((key.selector.as_str(), pem)),
            None => {
                tracing::warn!(selector = %key.selector, "the private key of an active DKIM key is gone")
            }
        }
    }
    let defaults = DkimSigningSpec::default();
    let spec = md.spec.dkim_signing.as_ref().unwrap_or(&defaults);
    let dir = if spec.key_directory.is_empty() {
        "/etc/mailsec/dkim"
    } else {
        spec.key_directory.trim_end_matches('/')
    };
    let data = signing_data(domain.as_str(), dir, &private);
    if live.as_ref().and_then(|l| l.data.as_ref()) == Some(&data) {
        return Ok(());
    }
    let labels: BTreeMap<String, String> = [
        (KEY_MAILDOMAIN_LABEL.to_owned(), md.name_any()),
        (PURPOSE_LABEL.to_owned(), "dkim-signing".to_owned()),
    ]
    .into();
    let secret = Secret {
        metadata: meta(md, &name, labels),
        data: Some(data),
        type_: Some("Opaque".into()),
        ..Secret::default()
    };
    // One object, so the mail server sees the switch at once (kubelet updates the mount
    // atomically through its symlink swap).
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&secret),
    )
    .await?;
    tracing::info!(secret = %name, selectors = ?private.iter().map(|p| p.0).collect::<Vec<_>>(), "signing Secret written");
    Ok(())
}

/// The signing Secret's data for `keys` (selector, private PEM) of `domain`, mounted at `dir`.
pub fn signing_data(
    domain: &str,
    dir: &str,
    keys: &[(&str, String)],
) -> BTreeMap<String, ByteString> {
    let mut out = BTreeMap::new();
    let mut key_table = String::new();
    let mut signing_table = String::new();
    let mut rspamd = format!("domain {{\n  {domain} {{\n    selectors [\n");
    for (selector, pem) in keys {
        let file = format!("{selector}.private");
        out.insert(file.clone(), ByteString(pem.clone().into_bytes()));
        key_table.push_str(&format!(
            "{selector}._domainkey.{domain} {domain}:{selector}:{dir}/{file}\n"
        ));
        signing_table.push_str(&format!("*@{domain} {selector}._domainkey.{domain}\n"));
        rspamd.push_str(&format!(
            "      {{ path: \"{dir}/{file}\"; selector: \"{selector}\"; }}\n"
        ));
    }
    rspamd.push_str("    ]\n  }\n}\n");
    let selectors: Vec<&str> = keys.iter().map(|k| k.0).collect();
    out.insert("KeyTable".into(), ByteString(key_table.into_bytes()));
    out.insert(
        "SigningTable".into(),
        ByteString(signing_table.into_bytes()),
    );
    out.insert("dkim_signing.conf".into(), ByteString(rspamd.into_bytes()));
    out.insert(
        "selectors".into(),
        ByteString(format!("{}\n", selectors.join(" ")).into_bytes()),
    );
    out.insert(
        "domain".into(),
        ByteString(format!("{domain}\n").into_bytes()),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signing_secret_speaks_opendkim_and_rspamd() {
        let data = signing_data(
            "example.com",
            "/etc/dkim",
            &[("s20261201", "PEM-A".into()), ("e20261201", "PEM-B".into())],
        );
        let text = |k: &str| String::from_utf8(data[k].0.clone()).unwrap();
        assert_eq!(text("s20261201.private"), "PEM-A");
        assert_eq!(
            text("KeyTable"),
            "s20261201._domainkey.example.com example.com:s20261201:/etc/dkim/s20261201.private\ne20261201._domainkey.example.com example.com:e20261201:/etc/dkim/e20261201.private\n"
        );
        assert_eq!(
            text("SigningTable"),
            "*@example.com s20261201._domainkey.example.com\n*@example.com e20261201._domainkey.example.com\n"
        );
        assert!(
            text("dkim_signing.conf")
                .contains("{ path: \"/etc/dkim/s20261201.private\"; selector: \"s20261201\"; }")
        );
        assert_eq!(text("selectors"), "s20261201 e20261201\n");
    }
}
