//! Managed DKIM keys through a whole rotation against the real API server and BIND, with the
//! durations shortened (they are spec settings): an Ed25519 entry that rotates every 20 s and
//! an RSA-2048 entry that never rotates. The controller is the `mailsec` binary, killed with
//! SIGKILL at every step of the rotation (and restarted at once); at every observation:
//! - every key in the signing Secret signs a message (mail-auth's signer) that verifies
//!   against what BIND serves (mail-auth's verifier, asking BIND),
//! - once an entry has an active key the signing Secret always has one for it (no gap),
//! - an entry never has two pending keys, the RSA entry never gets a second key, the Ed25519
//!   entry exactly one successor (no second key, no lost key),
//! - mail signed with the previous key during the overlap still verifies, and after the
//!   retirement the record is gone from BIND and the private key deleted.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use mail_auth::common::crypto::{Ed25519Key, RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::DkimSigner;
use mail_auth::{AuthenticatedMessage, DkimResult, MessageAuthenticator};
use mailsec_operator::api::{DkimAlgorithm, DkimKeyState, MailDomain};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use support::controller_process::{Controller, bind_provider};
use support::random_suffix;

const MAIL: &str = "From: a@{d}\r\nTo: b@example.net\r\nSubject: rotation\r\nDate: Wed, 2 Dec 2026 06:00:00 +0000\r\nMessage-ID: <{n}@{d}>\r\n\r\nsigned with the key of the moment\r\n";

/// A message from `domain` signed with `pem` under `selector`.
fn sign(domain: &str, selector: &str, pem: &str, algorithm: DkimAlgorithm, n: usize) -> Vec<u8> {
    let mail = MAIL.replace("{d}", domain).replace("{n}", &n.to_string());
    let header = match algorithm {
        DkimAlgorithm::Ed25519 => {
            let der = PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes()).expect("pkcs8 pem");
            let key = Ed25519Key::from_pkcs8_der(der.secret_pkcs8_der()).expect("ed25519 key");
            DkimSigner::from_key(key)
                .domain(domain)
                .selector(selector)
                .headers(["From", "To", "Subject", "Date", "Message-ID"])
                .sign(mail.as_bytes())
                .expect("sign")
                .to_header()
        }
        _ => {
            let der = PrivateKeyDer::from_pem_slice(pem.as_bytes()).expect("pem");
            let key = RsaKey::<Sha256>::from_key_der(der).expect("rsa key");
            DkimSigner::from_key(key)
                .domain(domain)
                .selector(selector)
                .headers(["From", "To", "Subject", "Date", "Message-ID"])
                .sign(mail.as_bytes())
                .expect("sign")
                .to_header()
        }
    };
    let mut signed = header.into_bytes();
    signed.extend_from_slice(mail.as_bytes());
    signed
}

/// mail-auth's verdict on `message`, its keys fetched from `server` (BIND), nothing cached.
async fn verifies(server: SocketAddr, message: &[u8]) -> Result<(), String> {
    let connections = [ConnectionConfig::udp(), ConnectionConfig::tcp()]
        .into_iter()
        .map(|mut c| {
            c.port = server.port();
            c
        })
        .collect();
    let config = ResolverConfig::from_name_servers(vec![NameServerConfig::new(
        server.ip(),
        true,
        connections,
    )]);
    let mut options = ResolverOpts::default();
    options.cache_size = 0;
    let verifier = MessageAuthenticator::new(config, options).map_err(|e| e.to_string())?;
    let parsed = AuthenticatedMessage::parse(message).ok_or("unparsable")?;
    let outputs = verifier.verify_dkim(&parsed).await;
    match outputs.first().map(|o| o.result().clone()) {
        Some(DkimResult::Pass) => Ok(()),
        other => Err(format!("{other:?}")),
    }
}

fn text(secret: &Secret, key: &str) -> Option<String> {
    secret
        .data
        .as_ref()?
        .get(key)
        .and_then(|v| String::from_utf8(v.0.clone()).ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rotation_survives_a_sigkill_at_every_step_and_mail_verifies_throughout() {
    const OVERLAP_SECS: i64 = 8;
    let Some(env) = support::env() else { return };
    let client = env.client().await;
    let ns = env.namespace(&client, "dkim").await;
    let n = ns.name().to_owned();
    let domain = format!("k{}.{}", random_suffix(), env.dns.zone);
    bind_provider(env, &client, &n).await;
    let log = std::env::temp_dir().join(format!("mailsec-dkim-rotation-{n}.log"));
    let mut controller = Some(Controller::start(env, &n, &log, &[]));
    let api: Api<MailDomain> = Api::namespaced(client.clone(), &n);
    let md = serde_json::json!({
        "apiVersion": "mailsec.io/v1alpha1", "kind": "MailDomain", "metadata": {"name": "md"},
        "spec": {"domain": domain, "ttl": 60, "dnsProviderRef": {"name": "bind"},
                 "dkim": [
                    {"selector": "e", "managed": {"algorithm": "ed25519", "rotateEvery": "20s", "overlap": format!("{OVERLAP_SECS}s"), "activateAfter": "2s"}},
                    {"selector": "r", "managed": {"algorithm": "rsa-2048", "rotateEvery": "0s", "activateAfter": "2s"}}
                 ]}
    });
    api.patch(
        "md",
        &PatchParams::apply("dkim-test").force(),
        &Patch::Apply(md),
    )
    .await
    .expect("apply");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &n);

    let mut selectors: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    let mut first_e: Option<(String, String)> = None;
    let mut signed_before_switch: Option<Vec<u8>> = None;
    let mut phases: BTreeSet<String> = BTreeSet::new();
    let mut had_active: BTreeSet<&str> = BTreeSet::new();
    let mut verified_signing = 0usize;
    let mut verified_overlap = 0usize;
    let mut last_signing_version = String::new();
    let mut kills = 0;
    let mut n_msg = 0;
    let deadline = Instant::now() + Duration::from_secs(240);
    let done = loop {
        assert!(
            Instant::now() < deadline,
            "the rotation did not finish in time; controller log: {}",
            log.display()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        let Some(got) = api.get_opt("md").await.expect("get") else {
            continue;
        };
        let keys = got
            .status
            .as_ref()
            .map(|s| s.dkim.clone())
            .unwrap_or_default();
        for entry in ["e", "r"] {
            let mine: Vec<_> = keys.iter().filter(|k| k.entry == entry).collect();
            let pending = mine
                .iter()
                .filter(|k| k.state == DkimKeyState::Pending)
                .count();
            assert!(pending <= 1, "two pending keys for {entry}: {mine:?}");
            selectors
                .entry(entry)
                .or_default()
                .extend(mine.iter().map(|k| k.selector.clone()));
        }
        assert!(
            selectors.get("r").is_none_or(|s| s.len() <= 1),
            "a second RSA key: {selectors:?}"
        );
        assert!(
            selectors.get("e").is_none_or(|s| s.len() <= 2),
            "a third Ed25519 key: {selectors:?}"
        );
        // Key Secrets: never more than two per entry, each named by the status.
        let owned = secrets
            .list(&ListParams::default().labels("mailsec.io/purpose=dkim-key"))
            .await
            .expect("list")
            .items;
        for entry in ["e", "r"] {
            let count = owned
                .iter()
                .filter(|s| {
                    s.labels().get("mailsec.io/dkim-entry").map(String::as_str) == Some(entry)
                })
                .count();
            assert!(count <= 2, "{count} key Secrets for {entry}");
        }

        // The signing Secret: once an entry had an active key, it always has one.
        let signing = secrets.get_opt("md-dkim-signing").await.expect("get");
        let listed: Vec<String> = signing
            .as_ref()
            .and_then(|s| text(s, "selectors"))
            .map(|t| t.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default();
        for entry in ["e", "r"] {
            let has = listed.iter().any(|s| s.starts_with(entry));
            if had_active.contains(entry) {
                assert!(has, "the signing Secret lost its {entry} key: {listed:?}");
            }
            if has {
                had_active.insert(entry);
            }
        }
        // Each new version of it: every key signs mail that verifies against BIND.
        if let Some(signing) = &signing {
            let version = signing.resource_version().unwrap_or_default();
            if version != last_signing_version {
                last_signing_version = version;
                for selector in &listed {
                    let pem = text(signing, &format!("{selector}.private"))
                        .expect("private key in the signing Secret");
                    let algorithm = if selector.starts_with('e') {
                        DkimAlgorithm::Ed25519
                    } else {
                        DkimAlgorithm::Rsa2048
                    };
                    n_msg += 1;
                    let mail = sign(&domain, selector, &pem, algorithm, n_msg);
                    verifies(env.dns.server, &mail)
                        .await
                        .unwrap_or_else(|e| panic!("mail signed with {selector} from the signing Secret does not verify: {e}"));
                    verified_signing += 1;
                    if selector.starts_with('e') && first_e.is_none() {
                        first_e = Some((selector.clone(), pem.clone()));
                        signed_before_switch = Some(mail);
                    }
                }
            }
        }

        // The Ed25519 entry's phase: kill the controller once at each new one.
        let e_states: Vec<String> = keys
            .iter()
            .filter(|k| k.entry == "e")
            .map(|k| format!("{}:{:?}", k.selector, k.state))
            .collect();
        let phase = e_states.join(",");
        if !phase.is_empty() && phases.insert(phase.clone()) {
            if let Some(c) = controller.take() {
                c.kill();
                kills += 1;
            }
            controller = Some(Controller::start(env, &n, &log, &[]));
        }

        // During the overlap the previous key's mail still verifies. The overlap is counted
        // from `since` (whole seconds, so never later than the controller's clock said); once
        // it has passed, a pass may withdraw the record before its status write says Retired.
        if let (Some((old, _)), Some(mail)) = (&first_e, &signed_before_switch)
            && let Some(retiring) = keys
                .iter()
                .find(|k| &k.selector == old && k.state == DkimKeyState::Retiring)
        {
            let overlap_ends = retiring.since.0 + jiff::SignedDuration::from_secs(OVERLAP_SECS);
            let result = verifies(env.dns.server, mail).await;
            let checked_at = jiff::Timestamp::now();
            if checked_at < overlap_ends {
                result.unwrap_or_else(|e| {
                    panic!(
                        "mail signed with the retiring key {old} fails during the overlap \
                         (retiring since {}, checked at {checked_at}): {e}",
                        retiring.since.0
                    )
                });
                verified_overlap += 1;
            }
        }
        // Finished: the first Ed25519 key is gone from status, its Secret deleted.
        if let Some((old, _)) = &first_e
            && selectors.get("e").is_some_and(|s| s.len() == 2)
            && !keys.iter().any(|k| &k.selector == old)
        {
            break (old.clone(), got);
        }
    };
    let (old, got) = done;
    assert!(kills >= 5, "killed at only {kills} steps: {phases:?}");
    assert!(verified_signing >= 3, "{verified_signing}");
    assert!(
        verified_overlap >= 1,
        "the retiring key's mail was never checked during its overlap"
    );
    let status = got.status.expect("status");
    let e_keys: Vec<_> = status.dkim.iter().filter(|k| k.entry == "e").collect();
    assert_eq!(e_keys.len(), 1, "{e_keys:?}");
    assert_eq!(e_keys[0].state, DkimKeyState::Active);
    let r_keys: Vec<_> = status.dkim.iter().filter(|k| k.entry == "r").collect();
    assert_eq!((r_keys.len(), r_keys[0].state), (1, DkimKeyState::Active));
    // The retired key: its record gone from BIND, its private key deleted, its mail failing.
    assert!(
        env.dns
            .txt(&format!("{old}._domainkey.{domain}"))
            .is_empty(),
        "the retired record is still served"
    );
    assert!(
        secrets
            .get_opt(&format!("md-dkim-{old}"))
            .await
            .expect("get")
            .is_none(),
        "the retired private key is kept"
    );
    let mail = signed_before_switch.expect("mail");
    assert!(
        verifies(env.dns.server, &mail).await.is_err(),
        "mail of a retired key still verifies"
    );
    // Private keys appear nowhere in the status.
    let status_text = serde_json::to_string(&status).expect("json");
    assert!(!status_text.contains("PRIVATE"), "a private key in status");
    // Every step was an event.
    for reason in [
        "DKIMKeyPending",
        "DKIMKeyActive",
        "DKIMKeyRetiring",
        "DKIMKeyRetired",
    ] {
        let events = env.kubectl_ok([
            "get",
            "events",
            "-n",
            &n,
            "--field-selector",
            &format!("reason={reason}"),
            "-o",
            "name",
        ]);
        assert!(!events.trim().is_empty(), "no {reason} event");
    }
    // A controller removes the records and the finalizer; then it is stopped.
    support::delete_skipping_withdrawal(&api, "md", false).await;
    if let Some(c) = controller.take() {
        c.kill();
    }
    let _ = std::fs::remove_file(&log);
    ns.delete(&client).await;
}

/// A Secret of the signing Secret's name that the operator did not make is a SecretConflict and
/// stays as it is; once it is gone the operator writes its own, and writes it again when it is
/// deleted (from the key Secrets: the same key, not a new one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_signing_secret_is_never_taken_from_someone_else_and_comes_back_when_deleted() {
    let Some(env) = support::env() else { return };
    let client = env.client().await;
    let ns = env.namespace(&client, "dkim-own").await;
    let n = ns.name().to_owned();
    let domain = format!("o{}.{}", random_suffix(), env.dns.zone);
    bind_provider(env, &client, &n).await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &n);
    let theirs: Secret = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "md-dkim-signing"},
        "stringData": {"mine": "not the operator's"}
    }))
    .expect("secret");
    secrets
        .create(&Default::default(), &theirs)
        .await
        .expect("create");
    let log = std::env::temp_dir().join(format!("mailsec-dkim-own-{n}.log"));
    let controller = Controller::start(env, &n, &log, &[]);
    let api: Api<MailDomain> = Api::namespaced(client.clone(), &n);
    let md = serde_json::json!({
        "apiVersion": "mailsec.io/v1alpha1", "kind": "MailDomain", "metadata": {"name": "md"},
        "spec": {"domain": domain, "ttl": 60, "dnsProviderRef": {"name": "bind"},
                 "dkim": [{"selector": "e", "managed": {"algorithm": "ed25519", "activateAfter": "1s"}}]}
    });
    api.patch(
        "md",
        &PatchParams::apply("dkim-test").force(),
        &Patch::Apply(md),
    )
    .await
    .expect("apply");
    let condition = |md: &MailDomain, t: &str| {
        md.status.as_ref().and_then(|s| {
            s.conditions
                .iter()
                .find(|c| c.type_ == t)
                .map(|c| (c.status.clone(), c.reason.clone()))
        })
    };
    let conflict = support::maildomain::wait_for(&api, "md", "SecretConflict", |m| {
        condition(m, "DNSPublished").is_some_and(|c| c.1 == "SecretConflict")
    })
    .await;
    assert!(
        conflict
            .status
            .as_ref()
            .is_some_and(|s| s.dkim.iter().all(|k| k.state == DkimKeyState::Pending))
    );
    let kept = secrets.get("md-dkim-signing").await.expect("get");
    assert_eq!(text(&kept, "mine").as_deref(), Some("not the operator's"));
    assert!(
        text(&kept, "selectors").is_none(),
        "someone else's Secret was written"
    );

    // Theirs gone: ours appears, with the active key.
    secrets
        .delete("md-dkim-signing", &Default::default())
        .await
        .expect("delete");
    let ready = support::maildomain::wait_for(&api, "md", "an active key", |m| {
        m.status
            .as_ref()
            .is_some_and(|s| s.dkim.iter().any(|k| k.state == DkimKeyState::Active))
    })
    .await;
    let active = ready.status.expect("status").dkim[0].selector.clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    let wait_signing = |secrets: Api<Secret>| async move {
        loop {
            if let Some(s) = secrets.get_opt("md-dkim-signing").await.expect("get")
                && text(&s, "selectors").is_some()
            {
                return s;
            }
            assert!(Instant::now() < deadline, "no signing Secret");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let first = wait_signing(secrets.clone()).await;
    assert_eq!(
        text(&first, "selectors").as_deref(),
        Some(format!("{active}\n").as_str())
    );
    // Deleted: written again, the same key.
    secrets
        .delete("md-dkim-signing", &Default::default())
        .await
        .expect("delete");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let again = wait_signing(secrets.clone()).await;
    assert_eq!(
        text(&again, &format!("{active}.private")),
        text(&first, &format!("{active}.private")),
        "the signing Secret came back with another key"
    );
    // Both copies of the private key deleted: the key cannot sign any more, so it retires and
    // a new one is made, with a warning.
    let key_secret = format!("md-dkim-{active}");
    secrets
        .delete(&key_secret, &Default::default())
        .await
        .expect("delete");
    secrets
        .delete("md-dkim-signing", &Default::default())
        .await
        .expect("delete");
    let replaced = support::maildomain::wait_for(&api, "md", "a new active key", |m| {
        m.status.as_ref().is_some_and(|s| {
            s.dkim
                .iter()
                .any(|k| k.state == DkimKeyState::Active && k.selector != active)
                && s.dkim
                    .iter()
                    .any(|k| k.selector == active && k.state == DkimKeyState::Retiring)
        })
    })
    .await;
    let lost = env.kubectl_ok([
        "get",
        "events",
        "-n",
        &n,
        "--field-selector",
        "reason=DKIMKeyLost",
        "-o",
        "name",
    ]);
    assert!(!lost.trim().is_empty(), "no DKIMKeyLost event");
    assert_eq!(replaced.status.expect("status").dkim.len(), 2);
    support::delete_skipping_withdrawal(&api, "md", false).await;
    controller.kill();
    let _ = std::fs::remove_file(&log);
    ns.delete(&client).await;
}
