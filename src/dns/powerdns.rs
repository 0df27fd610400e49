//! The `powerdns` provider: the PowerDNS Authoritative HTTP API (`/api/v1/servers/{id}`).
//!
//! PowerDNS stores whole RRsets: a `PATCH` of a zone with `changetype: REPLACE` sets every
//! value at a name, atomically for the whole request, but with no compare-and-swap (4.7, the
//! Debian version, has no value-level `EXTEND`/`PRUNE`). So a write here is: re-read each
//! RRset we change and stop if it is no longer what the plan saw (someone else changed it);
//! replace it with [`rrsets_after`] (foreign values kept as the exact strings read, so their
//! bytes and string boundaries do not change; the RRset's TTL kept); re-read and verify.
//! What is left is the few milliseconds between that re-read and the PATCH.
//!
//! TXT content is the zone-file presentation form and must be quoted; ours is written as
//! ≤255-byte quoted strings, and read back joined, whatever the chunking.

use std::time::Duration;

use futures_util::future::BoxFuture;
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};

use super::DnsError;
use super::address::AddressSet;
use std::sync::Arc;

use super::backend::{
    ApiMeter, ConnectError, DnsBackend, NoMeter, SecretSource, result_of, secret_text,
};
use super::content::contents_for;
use super::http;
use super::plan::{Current, Operation, RRset, fqdn, rrsets_after};
use crate::api::PowerDnsSpec;
use crate::domain::txt;

/// How long one API request may take.
const TIMEOUT: Duration = Duration::from_secs(10);

pub struct PowerDns {
    http: reqwest::Client,
    /// `<url>/api/v1/servers/<server id>`
    server: String,
    api_key: String,
    meter: Arc<dyn ApiMeter>,
}

/// An RRset as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ApiRRset {
    name: String,
    #[serde(rename = "type")]
    rtype: String,
    #[serde(default)]
    ttl: Option<u32>,
    #[serde(default)]
    records: Vec<ApiRecord>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    changetype: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ApiRecord {
    content: String,
    #[serde(default)]
    disabled: bool,
}

#[derive(Debug, Deserialize)]
struct Zone {
    #[serde(default)]
    rrsets: Vec<ApiRRset>,
}

impl PowerDns {
    pub async fn from_spec(
        spec: &PowerDnsSpec,
        secrets: &dyn SecretSource,
    ) -> Result<Self, ConnectError> {
        let key = secret_text(secrets, &spec.api_key_secret_ref, "a PowerDNS API key").await?;
        Ok(PowerDns::new(&spec.url, &spec.server_id, key)?)
    }

    pub fn new(url: &str, server_id: &str, api_key: String) -> Result<Self, DnsError> {
        let base = http::base_url("powerdns url", url)?;
        Ok(PowerDns {
            http: http::client(TIMEOUT)?,
            server: format!("{}/api/v1/servers/{}", base, encode_id(server_id)),
            api_key,
            meter: Arc::new(NoMeter),
        })
    }

    /// Reports every API request to `meter`.
    pub fn with_meter(self, meter: Arc<dyn ApiMeter>) -> Self {
        PowerDns { meter, ..self }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<(StatusCode, String), DnsError> {
        let result = self.send_once(method, path, body).await;
        self.meter.request("powerdns", result_of(&result));
        result
    }

    async fn send_once(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<(StatusCode, String), DnsError> {
        let url = format!("{}{path}", self.server);
        let request = self
            .http
            .request(method.clone(), &url)
            .header("X-API-Key", &self.api_key);
        let body = body.map(|b| b.to_string());
        let answer = http::send(request, body, &format!("powerdns {method} {url}")).await?;
        let (status, text) = (answer.status, answer.text);
        let retry_after = http::retry_after(&answer.headers);
        if status.is_success() {
            return Ok((status, text));
        }
        let detail = format!(
            "powerdns {method} {url}: HTTP {status}: {}",
            api_error(&text)
        );
        Err(match status.as_u16() {
            401 => DnsError::Auth(format!("{detail}: check the API key")),
            403 => DnsError::Refused(format!("{detail}: check webserver-allow-from and the key")),
            404 => DnsError::ZoneNotFound(format!("{detail}: check the zone and the server id")),
            429 => DnsError::RateLimited {
                retry_after,
                detail,
            },
            _ => DnsError::Server(detail),
        })
    }

    /// The TXT RRset at `name` in `zone`, raw, or None.
    async fn rrset(&self, zone: &str, name: &str) -> Result<Option<ApiRRset>, DnsError> {
        let path = format!(
            "/zones/{}?rrset_name={}&rrset_type=TXT",
            encode_id(&fqdn(zone)),
            encode_query(&fqdn(name))
        );
        let (_, body) = self.send(Method::GET, &path, None).await?;
        let zone: Zone = serde_json::from_str(&body)
            .map_err(|e| DnsError::Server(format!("powerdns: unreadable zone answer: {e}")))?;
        let want = fqdn(name);
        Ok(zone
            .rrsets
            .into_iter()
            .find(|r| r.rtype == "TXT" && r.name.eq_ignore_ascii_case(&want)))
    }
}

impl PowerDns {
    /// Every RRset at `name` (all types), raw.
    async fn rrsets_at(&self, zone: &str, name: &str) -> Result<Vec<ApiRRset>, DnsError> {
        let path = format!(
            "/zones/{}?rrset_name={}",
            encode_id(&fqdn(zone)),
            encode_query(&fqdn(name))
        );
        let (_, body) = self.send(Method::GET, &path, None).await?;
        let zone: Zone = serde_json::from_str(&body)
            .map_err(|e| DnsError::Server(format!("powerdns: unreadable zone answer: {e}")))?;
        let want = fqdn(name);
        Ok(zone
            .rrsets
            .into_iter()
            .filter(|r| r.name.eq_ignore_ascii_case(&want))
            .collect())
    }

    async fn address(&self, zone: &str, name: &str) -> Result<AddressSet, DnsError> {
        let mut set = AddressSet::default();
        for rrset in self.rrsets_at(zone, name).await? {
            for record in rrset.records.iter().filter(|r| !r.disabled) {
                set.add(&rrset.rtype, &record.content, rrset.ttl.unwrap_or_default())
                    .map_err(|e| DnsError::Server(format!("powerdns: {e} at {name}")))?;
            }
        }
        Ok(set)
    }
}

/// The logical values of a raw RRset (disabled records are not served, so not there).
fn logical(rrset: Option<&ApiRRset>) -> Result<Option<RRset>, DnsError> {
    let Some(rrset) = rrset else { return Ok(None) };
    let mut values = Vec::new();
    for record in rrset.records.iter().filter(|r| !r.disabled) {
        let strings = txt::parse_presentation_lenient(&record.content).map_err(|e| {
            DnsError::Server(format!(
                "powerdns: TXT content `{}` at {} cannot be read: {e}",
                record.content, rrset.name
            ))
        })?;
        values.push(txt::join(&strings));
    }
    Ok((!values.is_empty()).then(|| RRset {
        ttl: rrset.ttl.unwrap_or_default(),
        values,
    }))
}

impl DnsBackend for PowerDns {
    fn kind(&self) -> &'static str {
        "powerdns"
    }

    fn read<'a>(
        &'a self,
        zone: &'a str,
        names: &'a [String],
    ) -> BoxFuture<'a, Result<Current, DnsError>> {
        Box::pin(async move {
            let mut current = Current::new();
            for name in names {
                if let Some(rrset) = logical(self.rrset(zone, name).await?.as_ref())? {
                    current.insert(name.clone(), rrset);
                }
            }
            Ok(current)
        })
    }

    fn apply<'a>(
        &'a self,
        zone: &'a str,
        current: &'a Current,
        operations: &'a [Operation],
    ) -> BoxFuture<'a, Result<(), DnsError>> {
        Box::pin(async move {
            if operations.is_empty() {
                return Ok(());
            }
            let after = rrsets_after(current, operations);
            let mut rrsets = Vec::new();
            for (name, wanted) in &after {
                // Compare-and-swap by hand: stop when the RRset is not what the plan saw.
                let raw = self.rrset(zone, name).await?;
                if !RRset::same(logical(raw.as_ref())?.as_ref(), current.get(name)) {
                    return Err(DnsError::ConcurrentChange(format!(
                        "powerdns: {name} changed since it was read; nothing written"
                    )));
                }
                rrsets.push(if wanted.values.is_empty() {
                    ApiRRset {
                        name: fqdn(name),
                        rtype: "TXT".into(),
                        ttl: None,
                        records: Vec::new(),
                        changetype: Some("DELETE".into()),
                    }
                } else {
                    ApiRRset {
                        name: fqdn(name),
                        rtype: "TXT".into(),
                        ttl: Some(wanted.ttl),
                        records: records_for(raw.as_ref(), &wanted.values),
                        changetype: Some("REPLACE".into()),
                    }
                });
            }
            let body = serde_json::json!({ "rrsets": rrsets });
            let path = format!("/zones/{}", encode_id(&fqdn(zone)));
            self.send(Method::PATCH, &path, Some(&body)).await?;
            // Verify: what is there now is what we wrote.
            for (name, wanted) in &after {
                let now = logical(self.rrset(zone, name).await?.as_ref())?;
                let wanted = (!wanted.values.is_empty()).then_some(wanted);
                if !RRset::same(now.as_ref(), wanted) {
                    return Err(DnsError::ConcurrentChange(format!(
                        "powerdns: {name} changed while it was written; the next pass reads it again"
                    )));
                }
            }
            Ok(())
        })
    }

    fn read_address<'a>(
        &'a self,
        zone: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<AddressSet, DnsError>> {
        Box::pin(self.address(zone, name))
    }

    /// As for TXT: re-read, stop if changed, one PATCH, verify.
    fn write_address<'a>(
        &'a self,
        zone: &'a str,
        name: &'a str,
        before: &'a AddressSet,
        after: &'a AddressSet,
    ) -> BoxFuture<'a, Result<(), DnsError>> {
        Box::pin(async move {
            if !self.address(zone, name).await?.same_records(before) {
                return Err(DnsError::ConcurrentChange(format!(
                    "powerdns: the address records at {name} changed since they were read; nothing written"
                )));
            }
            let rrsets = address_rrsets(name, before, after);
            if rrsets.is_empty() {
                return Ok(());
            }
            let body = serde_json::json!({ "rrsets": rrsets });
            let path = format!("/zones/{}", encode_id(&fqdn(zone)));
            self.send(Method::PATCH, &path, Some(&body)).await?;
            if !self.address(zone, name).await?.same_records(after) {
                return Err(DnsError::ConcurrentChange(format!(
                    "powerdns: the address records at {name} changed while they were written"
                )));
            }
            Ok(())
        })
    }
}

/// The PATCH entries that turn `before` into `after` at `name`: REPLACE for each type wanted,
/// DELETE for each type there and no longer wanted.
fn address_rrsets(name: &str, before: &AddressSet, after: &AddressSet) -> Vec<ApiRRset> {
    let contents = |set: &AddressSet, rtype: &str| -> Vec<String> {
        match rtype {
            "CNAME" => set.cname.iter().map(|c| fqdn(c)).collect(),
            "A" => set.a.iter().map(ToString::to_string).collect(),
            _ => set.aaaa.iter().map(ToString::to_string).collect(),
        }
    };
    let mut rrsets = Vec::new();
    for rtype in ["CNAME", "A", "AAAA"] {
        let (was, will) = (contents(before, rtype), contents(after, rtype));
        if !will.is_empty() {
            rrsets.push(ApiRRset {
                name: fqdn(name),
                rtype: rtype.into(),
                ttl: Some(after.ttl),
                records: will
                    .into_iter()
                    .map(|content| ApiRecord {
                        content,
                        disabled: false,
                    })
                    .collect(),
                changetype: Some("REPLACE".into()),
            });
        } else if !was.is_empty() {
            rrsets.push(ApiRRset {
                name: fqdn(name),
                rtype: rtype.into(),
                ttl: None,
                records: Vec::new(),
                changetype: Some("DELETE".into()),
            });
        }
    }
    rrsets
}

/// The records for `values` in the RRset `raw` holds now: theirs exactly as read, ours new.
fn records_for(raw: Option<&ApiRRset>, values: &[String]) -> Vec<ApiRecord> {
    let now = raw
        .iter()
        .flat_map(|r| r.records.iter())
        .filter(|r| !r.disabled)
        .map(|r| r.content.as_str());
    contents_for(now, values)
        .into_iter()
        .map(|content| ApiRecord {
            content,
            disabled: false,
        })
        .collect()
}

/// A zone or server id in a path: PowerDNS escapes `/` (and anything outside LDH, `.`, `_`)
/// as `=XX`.
fn encode_id(id: &str) -> String {
    id.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'-' | b'_' => (b as char).to_string(),
            other => format!("={other:02X}"),
        })
        .collect()
}

fn encode_query(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// The `error` field of a PowerDNS error answer, or the body.
fn api_error(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
        .unwrap_or_else(|| body.trim().chars().take(200).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(contents: &[&str]) -> ApiRRset {
        ApiRRset {
            name: "example.com.".into(),
            rtype: "TXT".into(),
            ttl: Some(900),
            records: contents
                .iter()
                .map(|c| ApiRecord {
                    content: (*c).into(),
                    disabled: false,
                })
                .collect(),
            changetype: None,
        }
    }

    #[test]
    fn foreign_values_keep_their_exact_content_and_ours_are_split() {
        let foreign = r#""verify" "=abc" "a\"b""#;
        let rr = raw(&[foreign, "\"v=spf1 -all\""]);
        let read = logical(Some(&rr)).unwrap().unwrap();
        assert_eq!(read.values, ["verify=abca\"b", "v=spf1 -all"]);
        assert_eq!(read.ttl, 900);
        let long = format!("v=DKIM1; k=rsa; p={}", "A".repeat(400));
        let out = records_for(Some(&rr), &["verify=abca\"b".into(), long.clone()]);
        assert_eq!(out[0].content, foreign, "byte for byte, strings and all");
        let strings = txt::parse_presentation(&out[1].content).unwrap();
        assert!(strings.len() == 2 && strings.iter().all(|s| s.len() <= 255));
        assert_eq!(txt::join(&strings), long);
    }

    #[test]
    fn ids_and_errors_are_encoded_the_way_powerdns_reads_them() {
        assert_eq!(encode_id("example.test."), "example.test.");
        assert_eq!(encode_id("0/24.example."), "0=2F24.example.");
        assert_eq!(api_error(r#"{"error": "RRset x: bad"}"#), "RRset x: bad");
        assert_eq!(api_error("Not Found"), "Not Found");
        assert!(PowerDns::new("ftp://x", "localhost", "k".into()).is_err());
        assert!(RRset::same(
            Some(&RRset {
                ttl: 1,
                values: vec!["a".into(), "b".into()]
            }),
            Some(&RRset {
                ttl: 1,
                values: vec!["b".into(), "a".into()]
            })
        ));
        assert!(!RRset::same(
            Some(&RRset {
                ttl: 1,
                values: vec!["a".into()]
            }),
            None
        ));
    }
}
