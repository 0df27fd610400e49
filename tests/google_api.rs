//! Holds `support::google::Fake`, our stateful fake of Cloud DNS v1, to Google's own in-memory
//! server, LocalDnsHelper (google-cloud-dns 0.7.0, run by `google-dns-local` on 127.0.0.1):
//! one scenario through the side door `support::google::Api` and raw requests, run against
//! both, so that what the google provider's tests learn from the fake is what Google's server
//! does. Then what only the fake reproduces (LocalDnsHelper has no authentication, no TXT
//! checks, no quotas): each refusal, and the tokens from a service-account JWT and from the
//! metadata server.
//!
//! Needs `google-dns-local` (`make tools`); without it the LocalDnsHelper tests fail.

mod support;

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use support::google::{self, Api, Fake, FakeRrset, LocalDns, Quota, rrset_body};

const ZONE: &str = "mailsec.test";

fn reason(body: &Value) -> &str {
    body["error"]["errors"][0]["reason"]
        .as_str()
        .unwrap_or_default()
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// A `"<255 a>" "<155 b>"` rdata: two character-strings, the first as long as one can be.
fn two_strings() -> String {
    format!("\"{}\" \"{}\"", "a".repeat(255), "b".repeat(155))
}

/// The scenario both servers must answer alike.
async fn contract(api: &Api, zone: &str) {
    let id = support::random_suffix();
    let name = format!("_c{id}.{zone}");
    let other = format!("_o{id}.{zone}");

    // Nothing at the name yet: an empty list, not an error.
    let (status, body) = api.list(&format!("name={name}.")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rrsets"].as_array().map(Vec::len), Some(0), "{body}");
    assert_eq!(api.rrset(&name, "TXT").await, None);

    // What the list refuses.
    let (status, body) = api.list("type=TXT").await;
    assert_eq!((status, reason(&body)), (400, "invalid"), "{body}");
    let (status, body) = api.list(&format!("name={name}")).await;
    assert_eq!((status, reason(&body)), (400, "invalid"), "{body}");
    let (status, body) = api.with_zone("no-such-zone").list("").await;
    assert_eq!((status, reason(&body)), (404, "notFound"), "{body}");

    // Two rrdatas, one of them two strings; read back byte for byte.
    let rrdatas = vec!["\"v=spf1 -all\"".to_owned(), two_strings()];
    let (status, body) = api
        .change(&[rrset_body(&name, "TXT", 300, &rrdatas)], &[])
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "done", "{body}");
    assert_eq!(body["additions"][0]["rrdatas"], json!(rrdatas), "{body}");
    let stored = FakeRrset {
        ttl: 300,
        rrdatas: rrdatas.clone(),
    };
    assert_eq!(api.rrset(&name, "TXT").await, Some(stored.clone()));
    assert_eq!(
        api.values(&name).await,
        vec![
            "v=spf1 -all".to_owned(),
            format!("{}{}", "a".repeat(255), "b".repeat(155))
        ]
    );
    // The change can be read back.
    let change_id = body["id"].as_str().expect("a change id").to_owned();
    let (status, change) = api.get_change(&change_id).await;
    assert_eq!(status, 200, "{change}");
    assert_eq!(change["status"], "done", "{change}");
    assert_eq!(change["additions"][0]["name"], json!(format!("{name}.")));

    // A stale deletion (the rrset has two rrdatas, not one) beside an addition elsewhere:
    // 412, and neither part is applied.
    let (status, body) = api
        .change(
            &[rrset_body(&other, "TXT", 300, &strings(&["\"x\""]))],
            &[rrset_body(&name, "TXT", 300, &rrdatas[..1])],
        )
        .await;
    assert_eq!((status, reason(&body)), (412, "conditionNotMet"), "{body}");
    assert_eq!(api.rrset(&name, "TXT").await, Some(stored.clone()));
    assert_eq!(api.rrset(&other, "TXT").await, None);
    // Right rrdatas, wrong TTL: stale too.
    let (status, body) = api
        .change(&[], &[rrset_body(&name, "TXT", 600, &rrdatas)])
        .await;
    assert_eq!((status, reason(&body)), (412, "conditionNotMet"), "{body}");
    // A deletion of nothing.
    let (status, body) = api
        .change(&[], &[rrset_body(&other, "TXT", 300, &strings(&["\"x\""]))])
        .await;
    assert_eq!((status, reason(&body)), (404, "notFound"), "{body}");

    // An addition where the rrset exists (and is not deleted in the change): 409, nothing
    // applied.
    let (status, body) = api
        .change(
            &[
                rrset_body(&other, "TXT", 300, &strings(&["\"x\""])),
                rrset_body(&name, "TXT", 300, &strings(&["\"y\""])),
            ],
            &[],
        )
        .await;
    assert_eq!((status, reason(&body)), (409, "alreadyExists"), "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("additions[1]")),
        "{body}"
    );
    assert_eq!(api.rrset(&name, "TXT").await, Some(stored.clone()));
    assert_eq!(api.rrset(&other, "TXT").await, None);

    // A name outside the zone.
    let (status, body) = api
        .change(
            &[rrset_body("x.elsewhere.invalid", "TXT", 300, &rrdatas)],
            &[],
        )
        .await;
    assert_eq!((status, reason(&body)), (400, "invalid"), "{body}");

    // Delete as read and add anew in one change: applied.
    let new = strings(&["\"new\""]);
    let (status, body) = api
        .change(
            &[rrset_body(&name, "TXT", 600, &new)],
            &[rrset_body(&name, "TXT", 300, &rrdatas)],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        api.rrset(&name, "TXT").await,
        Some(FakeRrset {
            ttl: 600,
            rrdatas: new.clone()
        })
    );

    // The side door's add_raw: appended to an rrset, and a new one.
    api.add_raw(&name, "TXT", "\"second\"", 60).await;
    assert_eq!(
        api.txt(&name).await,
        strings(&["\"new\"", "\"second\""]),
        "appended, TTL kept"
    );
    assert_eq!(api.rrset(&name, "TXT").await.map(|s| s.ttl), Some(600));
    api.add_raw(&other, "A", "192.0.2.7", 60).await;
    assert_eq!(
        api.rrset(&other, "A").await,
        Some(FakeRrset {
            ttl: 60,
            rrdatas: strings(&["192.0.2.7"])
        })
    );

    // Paging: every rrset exactly once, one per page and two per page.
    let more: Vec<Value> = (1..=3)
        .map(|n| {
            rrset_body(
                &format!("p{n}-{id}.{zone}"),
                "A",
                300,
                &[format!("192.0.2.{n}")],
            )
        })
        .collect();
    let (status, body) = api.change(&more, &[]).await;
    assert_eq!(status, 200, "{body}");
    let mut want: Vec<(String, String)> = vec![
        (format!("{zone}."), "SOA".into()),
        (format!("{zone}."), "NS".into()),
        (format!("{name}."), "TXT".into()),
        (format!("{other}."), "A".into()),
    ];
    want.extend((1..=3).map(|n| (format!("p{n}-{id}.{zone}."), "A".to_owned())));
    want.sort();
    for per_page in [1, 2] {
        let mut got = api.list_all(per_page).await;
        got.sort();
        assert_eq!(got, want, "all rrsets, {per_page} per page");
    }
}

#[tokio::test]
async fn local_dns_helper_answers_the_scenario() {
    let local = LocalDns::start();
    let api = local.api(&format!("z{}", support::random_suffix()));
    api.create_zone(ZONE).await;
    contract(&api, ZONE).await;
}

#[tokio::test]
async fn fake_answers_the_scenario_alike() {
    let fake = Fake::start(ZONE).await;
    contract(&fake.api(), &fake.zone).await;
    // The side door went through the API: each of its requests is counted.
    assert!(
        fake.calls()
            .iter()
            .any(|c| c.ends_with(&format!("/managedZones/{}/changes", fake.managed_zone))),
        "{:?}",
        fake.calls()
    );
}

/// What LocalDnsHelper lets through and the fake does not: the reason the fake checks more.
#[tokio::test]
async fn local_dns_helper_does_not_check_txt_data() {
    let local = LocalDns::start();
    let api = local.api(&format!("z{}", support::random_suffix()));
    api.create_zone(ZONE).await;
    let loose = vec!["bare words".to_owned(), format!("\"{}\"", "c".repeat(300))];
    let (status, body) = api
        .change(&[rrset_body(&format!("t.{ZONE}"), "TXT", 300, &loose)], &[])
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(api.txt(&format!("t.{ZONE}")).await, loose);

    let fake = Fake::start(ZONE).await;
    let (status, body) = fake
        .api()
        .change(&[rrset_body(&format!("t.{ZONE}"), "TXT", 300, &loose)], &[])
        .await;
    assert_eq!((status, reason(&body)), (400, "invalid"), "{body}");
}

#[tokio::test]
async fn local_dns_helper_changes_pend_with_a_delay() {
    let local = LocalDns::start_with_delay(700);
    let api = local.api(&format!("z{}", support::random_suffix()));
    api.create_zone(ZONE).await;
    let name = format!("d.{ZONE}");
    let (status, body) = api
        .change(&[rrset_body(&name, "TXT", 300, &strings(&["\"x\""]))], &[])
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "pending", "{body}");
    let id = body["id"].as_str().expect("id").to_owned();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, change) = api.get_change(&id).await;
        assert_eq!(status, 200, "{change}");
        if change["status"] == "done" {
            break;
        }
        assert_eq!(change["status"], "pending", "{change}");
        assert!(std::time::Instant::now() < deadline, "never done");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(api.txt(&name).await, strings(&["\"x\""]));
}

#[tokio::test]
async fn fake_refuses_txt_that_is_not_presentation_form() {
    let fake = Fake::start(ZONE).await;
    let api = fake.api();
    let name = format!("txt.{ZONE}");
    let cases = [
        format!("\"{}\"", "a".repeat(256)),
        format!("\"ok\" \"{}\"", "a".repeat(256)),
        "v=spf1 -all".to_owned(),
        "\"unterminated".to_owned(),
        "\"a\"\"b\"".to_owned(),
        "\"bad \\escape\\\"".to_owned(),
    ];
    for rdata in &cases {
        let (status, body) = api
            .change(
                &[rrset_body(
                    &name,
                    "TXT",
                    300,
                    &["\"fine\"".to_owned(), rdata.clone()],
                )],
                &[],
            )
            .await;
        assert_eq!((status, reason(&body)), (400, "invalid"), "{rdata}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.starts_with("Invalid value for 'entity.change.additions[0].rrdata[1]': '"),
            "{message}"
        );
        assert_eq!(fake.rrset(&name, "TXT"), None, "{rdata} was stored");
    }
    // Escapes are read: `\"`, `\\` and `\DDD`; 255 bytes is the limit, not one more.
    let good = format!("\"a\\\"b\\\\c\\065\" \"{}\"", "z".repeat(255));
    let (status, body) = api
        .change(
            &[rrset_body(&name, "TXT", 300, std::slice::from_ref(&good))],
            &[],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(fake.txt(&name), vec![good]);
    assert_eq!(
        fake.values(&name),
        vec![format!("a\"b\\cA{}", "z".repeat(255))]
    );
}

#[tokio::test]
async fn fake_refuses_a_cname_beside_other_data() {
    let fake = Fake::start(ZONE).await;
    let api = fake.api();
    let name = format!("alias.{ZONE}");
    fake.add_raw(&name, "TXT", "\"here first\"", 300);
    let (status, body) = api
        .change(
            &[rrset_body(
                &name,
                "CNAME",
                300,
                &strings(&["target.example."]),
            )],
            &[],
        )
        .await;
    assert_eq!(
        (status, reason(&body)),
        (400, "cnameResourceRecordSetConflict"),
        "{body}"
    );
    assert_eq!(fake.rrset(&name, "CNAME"), None);
    // Alone at its name it is fine.
    let (status, body) = api
        .change(
            &[rrset_body(
                &format!("alone.{ZONE}"),
                "CNAME",
                300,
                &strings(&["target.example."]),
            )],
            &[],
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn fake_enforces_quotas() {
    let fake = Fake::start(ZONE).await;
    let api = fake.api();
    // 101 records in one rrset, over the default 100.
    let many: Vec<String> = (0..101).map(|n| format!("\"r{n}\"")).collect();
    let name = format!("q.{ZONE}");
    let (status, body) = api
        .change(&[rrset_body(&name, "TXT", 300, &many)], &[])
        .await;
    assert_eq!((status, reason(&body)), (403, "quotaExceeded"), "{body}");
    let (status, body) = api
        .change(&[rrset_body(&name, "TXT", 300, &many[..100])], &[])
        .await;
    assert_eq!(status, 200, "100 records are allowed: {body}");

    fake.quota(Quota {
        rrset_additions_per_change: 2,
        total_rrdata_size_per_change: 40,
        ..Quota::default()
    });
    let three: Vec<Value> = (0..3)
        .map(|n| rrset_body(&format!("n{n}.{ZONE}"), "TXT", 300, &strings(&["\"v\""])))
        .collect();
    let (status, body) = api.change(&three, &[]).await;
    assert_eq!((status, reason(&body)), (403, "quotaExceeded"), "{body}");
    assert_eq!(fake.rrset(&format!("n0.{ZONE}"), "TXT"), None);
    let (status, body) = api.change(&three[..2], &[]).await;
    assert_eq!(status, 200, "{body}");
    let big = format!("\"{}\"", "s".repeat(39));
    let (status, body) = api
        .change(
            &[rrset_body(&format!("big.{ZONE}"), "TXT", 300, &[big])],
            &[],
        )
        .await;
    assert_eq!((status, reason(&body)), (403, "quotaExceeded"), "{body}");
}

#[tokio::test]
async fn fake_throttles_when_asked() {
    let fake = Fake::start(ZONE).await;
    let api = fake.api();
    fake.throttle(2);
    for _ in 0..2 {
        let (status, body) = api.list("").await;
        assert_eq!(
            (status, reason(&body)),
            (429, "rateLimitExceeded"),
            "{body}"
        );
        assert_eq!(body["error"]["status"], "RESOURCE_EXHAUSTED", "{body}");
        assert_eq!(body["error"]["code"], 429, "{body}");
    }
    let (status, body) = api.list("").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(fake.calls().len(), 3, "{:?}", fake.calls());
}

#[tokio::test]
async fn fake_requires_a_bearer_token_it_issued() {
    let fake = Fake::start(ZONE).await;
    let mut api = fake.api();
    api.token = None;
    let (status, body) = api.list("").await;
    assert_eq!((status, reason(&body)), (401, "required"), "{body}");
    assert_eq!(body["error"]["status"], "UNAUTHENTICATED", "{body}");
    api.token = Some("ya29.made-up".into());
    let (status, body) = api.list("").await;
    assert_eq!((status, reason(&body)), (401, "authError"), "{body}");

    fake.token_lifetime(1);
    api.token = Some(fake.issue_token());
    let (status, body) = api.list("").await;
    assert_eq!(status, 200, "{body}");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, body) = api.list("").await;
    assert_eq!(
        (status, reason(&body)),
        (401, "authError"),
        "expired: {body}"
    );

    // Another project is not found, with a good token.
    let elsewhere = Api::new(
        &fake.url,
        "other-project",
        &fake.managed_zone,
        fake.api().token,
    );
    let (status, body) = elsewhere.list("").await;
    assert_eq!((status, reason(&body)), (404, "notFound"), "{body}");
}

#[tokio::test]
async fn fake_metadata_server_needs_its_header() {
    let fake = Fake::start(ZONE).await;
    let http = support::http_client();
    let url = format!("{}{}", fake.metadata_url, google::METADATA_TOKEN_PATH);
    let r = http.get(&url).send().await.expect("metadata request");
    assert_eq!(r.status().as_u16(), 403);
    let r = http
        .get(&url)
        .header("Metadata-Flavor", "Google")
        .send()
        .await
        .expect("metadata request");
    assert_eq!(r.status().as_u16(), 200);
    let body: Value =
        serde_json::from_str(&r.text().await.expect("token body")).expect("token JSON");
    assert_eq!(body["token_type"], "Bearer", "{body}");
    assert_eq!(body["expires_in"], 3599, "{body}");
    let token = body["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned();
    let api = Api::new(&fake.url, &fake.project, &fake.managed_zone, Some(token));
    let (status, body) = api.list("").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        fake.token_requests(),
        vec!["metadata forbidden".to_owned(), "metadata ok".to_owned()]
    );
    let project = http
        .get(format!(
            "{}/computeMetadata/v1/project/project-id",
            fake.metadata_url
        ))
        .header("Metadata-Flavor", "Google")
        .send()
        .await
        .expect("project-id request")
        .text()
        .await
        .expect("project-id");
    assert_eq!(project, fake.project);
}

async fn exchange(fake: &Fake, grant_type: &str, assertion: &str) -> (u16, Value) {
    let form: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", grant_type)
        .append_pair("assertion", assertion)
        .finish();
    let r = support::http_client()
        .post(&fake.token_uri)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .expect("token request");
    let status = r.status().as_u16();
    let text = r.text().await.expect("token body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test]
async fn fake_token_endpoint_checks_the_assertion() {
    let fake = Fake::start(ZONE).await;
    let key_file: Value = serde_json::from_str(&fake.service_account_key).expect("key JSON");
    assert_eq!(key_file["type"], "service_account");
    assert_eq!(key_file["project_id"], json!(fake.project));
    assert_eq!(key_file["client_email"], json!(fake.client_email));
    assert_eq!(key_file["token_uri"], json!(fake.token_uri));
    assert!(
        key_file["private_key"]
            .as_str()
            .is_some_and(|k| k.starts_with("-----BEGIN PRIVATE KEY-----\n")),
        "PKCS#8 PEM"
    );
    let key = google::key_of(&key_file);
    let kid = key_file["private_key_id"].as_str();

    // A good assertion, both scopes.
    for scope in [google::SCOPE_DNS, google::SCOPE_CLOUD_PLATFORM] {
        let jwt = google::sign_jwt(&key, kid, &google::claims(&key_file, scope, 3600));
        let (status, body) = exchange(&fake, google::JWT_BEARER, &jwt).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["token_type"], "Bearer");
        let token = body["access_token"].as_str().expect("a token").to_owned();
        let api = Api::new(&fake.url, &fake.project, &fake.managed_zone, Some(token));
        let (status, body) = api.list("").await;
        assert_eq!(status, 200, "{body}");
    }

    // Signed by another key.
    let other = google::new_rsa_key();
    let good_claims = google::claims(&key_file, google::SCOPE_DNS, 3600);
    let jwt = google::sign_jwt(&other, kid, &good_claims);
    let (status, body) = exchange(&fake, google::JWT_BEARER, &jwt).await;
    assert_eq!(
        (status, &body["error"]),
        (400, &json!("invalid_grant")),
        "{body}"
    );

    // A tampered claim under the good signature.
    let jwt = google::sign_jwt(&key, kid, &good_claims);
    let parts: Vec<&str> = jwt.split('.').collect();
    let mut forged = good_claims.clone();
    forged["scope"] = json!(google::SCOPE_CLOUD_PLATFORM);
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            forged.to_string()
        ),
        parts[2]
    );
    let (status, body) = exchange(&fake, google::JWT_BEARER, &forged).await;
    assert_eq!(
        (status, &body["error"]),
        (400, &json!("invalid_grant")),
        "{body}"
    );

    let mutate = |f: &dyn Fn(&mut Value)| {
        let mut c = good_claims.clone();
        f(&mut c);
        google::sign_jwt(&key, kid, &c)
    };
    let refused = [
        (
            mutate(&|c: &mut Value| c["aud"] = json!("https://elsewhere.invalid/token")),
            "invalid_grant",
        ),
        (
            mutate(&|c: &mut Value| c["iss"] = json!("someone@else.iam.gserviceaccount.com")),
            "invalid_grant",
        ),
        (
            mutate(&|c: &mut Value| {
                let iat = c["iat"].as_u64().unwrap_or_default();
                c["exp"] = json!(iat + 7200);
            }),
            "invalid_grant",
        ),
        (
            mutate(&|c: &mut Value| {
                let now = c["iat"].as_u64().unwrap_or_default();
                c["iat"] = json!(now - 4000);
                c["exp"] = json!(now - 400);
            }),
            "invalid_grant",
        ),
        (
            mutate(&|c: &mut Value| {
                if let Some(o) = c.as_object_mut() {
                    o.remove("exp");
                }
            }),
            "invalid_grant",
        ),
        (
            mutate(&|c: &mut Value| {
                c["scope"] = json!("https://www.googleapis.com/auth/devstorage.read_only")
            }),
            "invalid_scope",
        ),
        (
            google::sign_jwt(&key, Some("not-the-key-id"), &good_claims),
            "invalid_grant",
        ),
    ];
    for (jwt, error) in &refused {
        let (status, body) = exchange(&fake, google::JWT_BEARER, jwt).await;
        assert_eq!((status, &body["error"]), (400, &json!(error)), "{body}");
        assert!(body["error_description"].is_string(), "{body}");
    }
    let jwt = google::sign_jwt(&key, kid, &good_claims);
    let (status, body) = exchange(&fake, "client_credentials", &jwt).await;
    assert_eq!(
        (status, &body["error"]),
        (400, &json!("unsupported_grant_type")),
        "{body}"
    );
    let requests = fake.token_requests();
    assert_eq!(
        requests.iter().filter(|r| *r == "jwt ok").count(),
        2,
        "{requests:?}"
    );
    assert_eq!(requests.len(), 2 + 2 + refused.len() + 1, "{requests:?}");
}

#[tokio::test]
async fn fake_changes_pend_for_polls_and_time() {
    let fake = Fake::start(ZONE).await;
    let api = fake.api();
    fake.pending(2, Duration::ZERO);
    let name = format!("p.{ZONE}");
    let (status, body) = api
        .change(&[rrset_body(&name, "TXT", 300, &strings(&["\"x\""]))], &[])
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "pending", "{body}");
    assert_eq!(body["kind"], "dns#change", "{body}");
    let id = body["id"].as_str().expect("id").to_owned();
    let mut seen = Vec::new();
    for _ in 0..4 {
        let (status, change) = api.get_change(&id).await;
        assert_eq!(status, 200, "{change}");
        seen.push(change["status"].as_str().unwrap_or_default().to_owned());
    }
    assert_eq!(seen, strings(&["pending", "pending", "done", "done"]));
    let (status, body) = api.get_change("999").await;
    assert_eq!((status, reason(&body)), (404, "notFound"), "{body}");

    fake.pending(0, Duration::from_millis(400));
    let (_, body) = api
        .change(
            &[rrset_body(
                &format!("t.{ZONE}"),
                "TXT",
                300,
                &strings(&["\"y\""]),
            )],
            &[],
        )
        .await;
    let id = body["id"].as_str().expect("id").to_owned();
    let (_, change) = api.get_change(&id).await;
    assert_eq!(change["status"], "pending", "{change}");
    tokio::time::sleep(Duration::from_millis(450)).await;
    let (_, change) = api.get_change(&id).await;
    assert_eq!(change["status"], "done", "{change}");
}

#[tokio::test]
async fn fake_race_makes_a_stale_deletion_fail() {
    let fake = Fake::start(ZONE).await;
    let api = fake.api();
    let name = format!("r.{ZONE}");
    fake.add_raw(&name, "TXT", "\"ours\"", 300);
    let read = api.rrset(&name, "TXT").await.expect("the rrset");
    assert_eq!(read.rrdatas, strings(&["\"ours\""]));
    fake.race_next_write(&name, "TXT", "\"theirs\"");
    let (status, body) = api
        .change(
            &[rrset_body(
                &name,
                "TXT",
                300,
                &strings(&["\"ours\"", "\"more\""]),
            )],
            &[rrset_body(&name, "TXT", read.ttl, &read.rrdatas)],
        )
        .await;
    assert_eq!((status, reason(&body)), (412, "conditionNotMet"), "{body}");
    assert_eq!(fake.txt(&name), strings(&["\"ours\"", "\"theirs\""]));
    // The race was once: read again, and the change goes through.
    let read = api.rrset(&name, "TXT").await.expect("the rrset");
    let (status, body) = api
        .change(
            &[rrset_body(&name, "TXT", 300, &strings(&["\"more\""]))],
            &[rrset_body(&name, "TXT", read.ttl, &read.rrdatas)],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(fake.values(&name), strings(&["more"]));
}

#[tokio::test]
async fn fake_pages_by_its_page_size_and_lists_its_zone() {
    let fake = Fake::start(ZONE).await;
    let api = fake.api();
    for n in 0..5 {
        fake.add_raw(&format!("n{n}.{ZONE}"), "TXT", "\"v\"", 300);
    }
    fake.page_size(2);
    let (status, body) = api.list("").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rrsets"].as_array().map(Vec::len), Some(2), "{body}");
    assert!(body["nextPageToken"].is_string(), "{body}");
    assert_eq!(body["kind"], "dns#resourceRecordSetsListResponse");
    let mut all = api.list_all(50).await;
    assert_eq!(all.len(), 7, "SOA, NS and five TXT: {all:?}");
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 7, "no rrset twice");

    let (status, body) = api
        .call(Method::GET, &format!("/managedZones?dnsName={ZONE}."), None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["managedZones"][0]["name"], json!(fake.managed_zone));
    assert_eq!(
        body["managedZones"][0]["dnsName"],
        json!(format!("{ZONE}."))
    );
    let (status, body) = api
        .call(Method::GET, "/managedZones?dnsName=other.test.", None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["managedZones"].as_array().map(Vec::len), Some(0));
}
