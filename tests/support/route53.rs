//! The Route 53 of the test environment: moto's server behind scripts/route53-strict.py, with
//! the hosted zone example.test. moto accepts any credentials; requests are signed all the
//! same (moto routes unsigned ones to its S3), with the operator's SigV4, which is checked
//! against botocore's in its unit test.

use mailsec_operator::dns::route53::{Credentials, sign};
use reqwest::Method;

/// The keys the tests use (moto does not check them).
pub fn credentials() -> Credentials {
    Credentials {
        access_key_id: "AKIAMAILSECTEST".into(),
        secret_access_key: "mailsec-test-secret".into(),
        session_token: None,
    }
}

/// A Route 53 endpoint (moto, strict or plain).
#[derive(Clone, Debug)]
pub struct Route53 {
    pub url: String,
}

/// One record set as the API shows it: TTL and the values exactly as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordSet {
    pub ttl: u32,
    pub values: Vec<String>,
}

impl Route53 {
    /// A signed request; the status and the body.
    pub async fn call(&self, method: Method, path: &str, body: &str) -> (u16, String) {
        let url = url::Url::parse(&format!("{}{path}", self.url)).expect("url");
        let headers = sign(
            &method,
            &url,
            body.as_bytes(),
            &credentials(),
            "us-east-1",
            "route53",
            k8s_openapi::jiff::Timestamp::now(),
        );
        let mut request = super::http_client().request(method, url);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let response = request
            .body(body.to_owned())
            .send()
            .await
            .expect("route53 request");
        let status = response.status().as_u16();
        (status, response.text().await.expect("body"))
    }

    /// The id of the hosted zone `zone`.
    pub async fn zone_id(&self, zone: &str) -> String {
        let (status, body) = self
            .call(
                Method::GET,
                &format!("/2013-04-01/hostedzonesbyname?dnsname={zone}."),
                "",
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let start = body.find("<Id>").expect("a hosted zone") + 4;
        let end = body[start..].find("</Id>").expect("id end") + start;
        body[start..end]
            .trim_start_matches("/hostedzone/")
            .to_owned()
    }

    /// The TXT record set at `name`, if any.
    pub async fn txt(&self, zone: &str, name: &str) -> Option<RecordSet> {
        let id = self.zone_id(zone).await;
        let (status, body) = self
            .call(
                Method::GET,
                &format!("/2013-04-01/hostedzone/{id}/rrset?name={name}.&type=TXT&maxitems=1"),
                "",
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let set_start = body.find("<ResourceRecordSet>")?;
        let set = &body[set_start..];
        let field = |tag: &str| -> Option<String> {
            let s = set.find(&format!("<{tag}>"))? + tag.len() + 2;
            let e = set[s..].find(&format!("</{tag}>"))? + s;
            Some(set[s..e].to_owned())
        };
        if field("Name")?.trim_end_matches('.') != name || field("Type")? != "TXT" {
            return None;
        }
        let mut values = Vec::new();
        let mut rest = set;
        while let Some(s) = rest.find("<Value>") {
            let e = rest[s..].find("</Value>")? + s;
            values.push(unescape(&rest[s + 7..e]));
            rest = &rest[e..];
            if rest
                .find("</ResourceRecordSet>")
                .is_some_and(|end| rest.find("<Value>").is_none_or(|v| v > end))
            {
                break;
            }
        }
        values.sort();
        Some(RecordSet {
            ttl: field("TTL")?.parse().ok()?,
            values,
        })
    }

    /// Sends one change batch (`<Change>` elements); the status and the body.
    pub async fn change(&self, zone: &str, changes: &str) -> (u16, String) {
        let id = self.zone_id(zone).await;
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><ChangeResourceRecordSetsRequest xmlns=\"https://route53.amazonaws.com/doc/2013-04-01/\"><ChangeBatch><Changes>{changes}</Changes></ChangeBatch></ChangeResourceRecordSetsRequest>"
        );
        self.call(
            Method::POST,
            &format!("/2013-04-01/hostedzone/{id}/rrset/"),
            &body,
        )
        .await
    }

    /// The values of the `rtype` set at `name`, as Route 53 (moto) lists them.
    pub async fn values_of(&self, zone: &str, name: &str, rtype: &str) -> Vec<String> {
        let id = self.zone_id(zone).await;
        let (status, body) = self
            .call(
                Method::GET,
                &format!("/2013-04-01/hostedzone/{id}/rrset?name={name}.&type={rtype}&maxitems=1"),
                "",
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let Some(start) = body.find("<ResourceRecordSet>") else {
            return Vec::new();
        };
        let set = &body[start..];
        let same = set.contains(&format!("<Name>{name}.</Name>"))
            && set.contains(&format!("<Type>{rtype}</Type>"));
        if !same {
            return Vec::new();
        }
        let mut values = Vec::new();
        let mut rest = set;
        while let Some(s) = rest.find("<Value>") {
            let Some(e) = rest[s..].find("</Value>") else {
                break;
            };
            values.push(rest[s + 7..s + e].to_owned());
            rest = &rest[s + e..];
        }
        values
    }

    /// Creates an address record set as someone else would.
    pub async fn add_foreign_address(&self, zone: &str, name: &str, rtype: &str, value: &str) {
        let changes = change_of("CREATE", name, rtype, 300, &[value.to_owned()]);
        let (status, body) = self.change(zone, &changes).await;
        assert_eq!(status, 200, "side-door change: {body}");
    }

    /// Adds one TXT record (presentation form) at `name` beside the others, as someone else
    /// would: DELETE the set as it is and CREATE it with the new value.
    pub async fn add_foreign(&self, zone: &str, name: &str, ttl: u32, presentation: &str) {
        let now = self.txt(zone, name).await;
        let mut changes = String::new();
        let mut values = Vec::new();
        let mut set_ttl = ttl;
        if let Some(now) = &now {
            changes.push_str(&change("DELETE", name, now.ttl, &now.values));
            values = now.values.clone();
            set_ttl = now.ttl;
        }
        values.push(presentation.to_owned());
        changes.push_str(&change("CREATE", name, set_ttl, &values));
        let (status, body) = self.change(zone, &changes).await;
        assert_eq!(status, 200, "side-door change: {body}");
    }
}

/// One `<Change>` element of a TXT set.
pub fn change(action: &str, name: &str, ttl: u32, values: &[String]) -> String {
    change_of(action, name, "TXT", ttl, values)
}

/// One `<Change>` element.
pub fn change_of(action: &str, name: &str, rtype: &str, ttl: u32, values: &[String]) -> String {
    let records: String = values
        .iter()
        .map(|v| {
            format!(
                "<ResourceRecord><Value>{}</Value></ResourceRecord>",
                escape(v)
            )
        })
        .collect();
    format!(
        "<Change><Action>{action}</Action><ResourceRecordSet><Name>{name}.</Name><Type>{rtype}</Type><TTL>{ttl}</TTL><ResourceRecords>{records}</ResourceRecords></ResourceRecordSet></Change>"
    )
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&#34;", "\"")
        .replace("&amp;", "&")
}
