//! The `digitalocean` provider: the DigitalOcean v2 API's domain records
//! (`/v2/domains/{domain}/records`, a personal access token as Bearer).
//!
//! DigitalOcean keeps one record per value, each with its id: other people's values at a name
//! are other records, which the operator never touches. A value to remove is found by id in a
//! fresh read (so a value someone added meanwhile is never lost), and a value already there is
//! not created twice. The API has no batch and no transaction: a change is several requests
//! (the deletes, then the creates), and if one fails, the error says what was applied before
//! it; the next pass reads again.
//!
//! TXT `data` is the value itself, unquoted and joined; DigitalOcean splits it into
//! character-strings when it serves it. It limits the *encoded* length (quoted 255-byte
//! strings, spaces between them) to about 512 bytes and checks it sloppily (DNSControl's
//! `MaxLengthDO`, issue #370): a value whose encoding is longer than [`MAX_ENCODED_TXT`] is
//! refused here, before anything is written, with the name and the numbers. A 2048-bit DKIM
//! key (~410 bytes) fits; a 4096-bit one (~750) does not.
//!
//! Rate limits (429) are waited out when short (`Retry-After`, else `ratelimit-reset`) and
//! retried a bounded number of times; each request is metered.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use reqwest::Method;
use serde::{Deserialize, Serialize};

use super::DnsError;
use super::address::AddressSet;
use super::backend::{ApiMeter, ConnectError, DnsBackend, NoMeter, SecretSource, secret_text};
use super::http;
use super::plan::{self, Current, Operation, RRset};
use crate::api::DigitalOceanSpec;
use crate::domain::txt;

/// Where the API lives unless the settings say otherwise.
pub const API_URL: &str = "https://api.digitalocean.com";
/// How long one API request may take.
const TIMEOUT: Duration = Duration::from_secs(15);
/// Records per page when listing (the API's maximum).
const PER_PAGE: u32 = 200;
/// The longest TXT value, as quoted ≤255-byte strings, that is sent: DigitalOcean's limit is
/// 512 encoded bytes, checked loosely; 509 is what DNSControl found to pass.
pub const MAX_ENCODED_TXT: usize = 509;
/// The most pages one listing follows (a guard).
const MAX_PAGES: u32 = 100;

pub struct DigitalOcean {
    http: reqwest::Client,
    base: String,
    token: String,
    meter: Arc<dyn ApiMeter>,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    id: String,
    #[serde(default)]
    message: String,
}

#[derive(Debug, Deserialize)]
struct RecordList {
    #[serde(default)]
    domain_records: Vec<Record>,
    #[serde(default)]
    links: Links,
}

#[derive(Debug, Default, Deserialize)]
struct Links {
    #[serde(default)]
    pages: Option<Pages>,
}

#[derive(Debug, Default, Deserialize)]
struct Pages {
    #[serde(default)]
    next: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct Record {
    id: u64,
    #[serde(rename = "type", default)]
    rtype: String,
    #[serde(default)]
    data: String,
    #[serde(default)]
    ttl: u32,
}

#[derive(Debug, Serialize)]
struct NewRecord<'a> {
    #[serde(rename = "type")]
    rtype: &'a str,
    name: String,
    data: String,
    ttl: u32,
}

impl DigitalOcean {
    pub async fn from_spec(
        spec: &DigitalOceanSpec,
        secrets: &dyn SecretSource,
    ) -> Result<Self, ConnectError> {
        let token =
            secret_text(secrets, &spec.token_secret_ref, "a DigitalOcean API token").await?;
        Ok(DigitalOcean::new(
            spec.api_url.as_deref().unwrap_or(API_URL),
            token,
        )?)
    }

    pub fn new(base: &str, token: String) -> Result<Self, DnsError> {
        Ok(DigitalOcean {
            base: http::base_url("digitalocean apiUrl", base)?,
            http: http::client(TIMEOUT)?,
            token,
            meter: Arc::new(NoMeter),
        })
    }

    /// Reports every API request to `meter`.
    pub fn with_meter(self, meter: Arc<dyn ApiMeter>) -> Self {
        DigitalOcean { meter, ..self }
    }

    /// One request (repeated after a short rate limit); the body of a 2xx answer. A 404 of
    /// a record id (`gone_ok`) is no error: it is gone already.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
        gone_ok: bool,
    ) -> Result<String, DnsError> {
        http::with_rate_limit_retries(self.meter.as_ref(), "digitalocean", || {
            self.call_once(method.clone(), path, body.clone(), gone_ok)
        })
        .await
    }

    async fn call_once(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
        gone_ok: bool,
    ) -> Result<String, DnsError> {
        let request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        let answer = http::send(request, body, &format!("digitalocean {method} {path}")).await?;
        let (status, text) = (answer.status, answer.text);
        let wait = http::rate_limit_wait(&answer.headers);
        if status.is_success() || (gone_ok && status.as_u16() == 404) {
            return Ok(text);
        }
        let (id, message) = serde_json::from_str::<ErrorBody>(&text)
            .map(|b| (b.id, b.message))
            .unwrap_or_else(|_| (String::new(), text.chars().take(200).collect()));
        let detail = format!("digitalocean {method} {path}: HTTP {status}: {id}: {message}");
        Err(match status.as_u16() {
            429 => DnsError::RateLimited {
                retry_after: wait,
                detail,
            },
            401 => DnsError::Auth(format!("{detail}: check the API token")),
            403 => DnsError::Refused(format!(
                "{detail}: the token needs the domain scopes (read, create, update, delete)"
            )),
            404 => DnsError::ZoneNotFound(format!(
                "{detail}: the domain must be added to the DigitalOcean account of the token"
            )),
            _ => DnsError::Server(detail),
        })
    }

    /// Every record at `name` (of `rtype`, or of any type), through all pages.
    async fn records(
        &self,
        zone: &str,
        name: &str,
        rtype: Option<&str>,
    ) -> Result<Vec<Record>, DnsError> {
        let mut out = Vec::new();
        let mut page = 1u32;
        let type_filter = rtype.map(|t| format!("&type={t}")).unwrap_or_default();
        for _ in 0..MAX_PAGES {
            let path = format!(
                "/v2/domains/{}/records?name={}{type_filter}&per_page={PER_PAGE}&page={page}",
                encode(zone),
                encode(name)
            );
            let body = self.call(Method::GET, &path, None, false).await?;
            let listed: RecordList = serde_json::from_str(&body).map_err(|e| {
                DnsError::Server(format!(
                    "digitalocean: the answer is not the documented `domain_records` list: {e}"
                ))
            })?;
            out.extend(
                listed
                    .domain_records
                    .into_iter()
                    .filter(|r| rtype.is_none_or(|t| r.rtype == t)),
            );
            // The next page's number, from its link (the link itself is not followed: the
            // token goes only to the configured API).
            let next = listed
                .links
                .pages
                .and_then(|p| p.next)
                .and_then(|n| page_of(&n));
            match next {
                Some(n) if n > page => page = n,
                _ => return Ok(out),
            }
        }
        Err(DnsError::Server(format!(
            "digitalocean: more than {MAX_PAGES} pages of records at {name}"
        )))
    }

    async fn delete(&self, zone: &str, id: u64) -> Result<(), DnsError> {
        self.call(
            Method::DELETE,
            &format!("/v2/domains/{}/records/{id}", encode(zone)),
            None,
            true,
        )
        .await
        .map(|_| ())
    }

    async fn create(&self, zone: &str, record: &NewRecord<'_>) -> Result<(), DnsError> {
        let body = serde_json::to_string(record)
            .map_err(|e| DnsError::Server(format!("digitalocean: record body: {e}")))?;
        self.call(
            Method::POST,
            &format!("/v2/domains/{}/records", encode(zone)),
            Some(body),
            false,
        )
        .await
        .map(|_| ())
    }

    async fn read_all(&self, zone: &str, names: &[String]) -> Result<Current, DnsError> {
        let mut current = Current::new();
        for name in names {
            let records = self.records(zone, name, Some("TXT")).await?;
            if let Some(first) = records.first() {
                current.insert(
                    name.clone(),
                    RRset {
                        ttl: first.ttl,
                        values: records.iter().map(|r| r.data.clone()).collect(),
                    },
                );
            }
        }
        Ok(current)
    }

    async fn apply_all(&self, zone: &str, operations: &[Operation]) -> Result<(), DnsError> {
        if operations.is_empty() {
            return Ok(());
        }
        // Refused before anything is written: DigitalOcean would refuse it after the others.
        for op in operations {
            if let Operation::Add { name, value, .. } = op {
                check_length(name, value)?;
            }
        }
        let mut names: Vec<&str> = operations
            .iter()
            .map(|op| match op {
                Operation::Add { name, .. } | Operation::Remove { name, .. } => name.as_str(),
            })
            .collect();
        names.sort_unstable();
        names.dedup();
        let mut now: BTreeMap<&str, Vec<Record>> = BTreeMap::new();
        for name in names {
            now.insert(name, self.records(zone, name, Some("TXT")).await?);
        }
        let mut deletes: Vec<(&str, u64)> = Vec::new();
        let mut creates: Vec<(&str, NewRecord)> = Vec::new();
        for op in operations {
            let at = |name: &str| now.get(name).into_iter().flatten();
            match op {
                Operation::Remove { name, value } => {
                    for r in at(name).filter(|r| r.data == *value) {
                        if !deletes.iter().any(|(_, id)| *id == r.id) {
                            deletes.push((name, r.id));
                        }
                    }
                }
                Operation::Add { name, ttl, value } => {
                    let there = at(name)
                        .any(|r| r.data == *value && !deletes.iter().any(|(_, id)| *id == r.id));
                    let twice = creates.iter().any(|(n, c)| n == name && c.data == *value);
                    if !there && !twice {
                        creates.push((
                            name,
                            NewRecord {
                                rtype: "TXT",
                                name: relative(zone, name)?,
                                data: value.clone(),
                                ttl: *ttl,
                            },
                        ));
                    }
                }
            }
        }
        let mut done: Vec<String> = Vec::new();
        let partial = |e: DnsError, done: &[String]| {
            if done.is_empty() {
                e.with_detail("nothing was changed")
            } else {
                e.with_detail(&format!(
                    "applied before this failure (DigitalOcean has no atomic change): {}",
                    done.join(", ")
                ))
            }
        };
        // Markers created first and deleted last (plan::write_rank); values deleted before
        // they are created anew, so a value is never there twice.
        let rank = |name: &str| plan::write_rank(name, operations);
        let (early, creates): (Vec<_>, Vec<_>) =
            creates.into_iter().partition(|(name, _)| rank(name) == 0);
        let (late, deletes): (Vec<_>, Vec<_>) =
            deletes.into_iter().partition(|(name, _)| rank(name) == 2);
        for (name, record) in early {
            self.create(zone, &record)
                .await
                .map_err(|e| partial(e, &done))?;
            done.push(format!("created a record at {name}"));
        }
        for (name, id) in deletes {
            self.delete(zone, id).await.map_err(|e| partial(e, &done))?;
            done.push(format!("deleted record {id} at {name}"));
        }
        for (name, record) in creates {
            self.create(zone, &record)
                .await
                .map_err(|e| partial(e, &done))?;
            done.push(format!("created a record at {name}"));
        }
        for (name, id) in late {
            self.delete(zone, id).await.map_err(|e| partial(e, &done))?;
            done.push(format!("deleted record {id} at {name}"));
        }
        Ok(())
    }

    /// The address records at `name`, with their ids.
    async fn addresses(
        &self,
        zone: &str,
        name: &str,
    ) -> Result<(AddressSet, Vec<Record>), DnsError> {
        let records: Vec<Record> = self
            .records(zone, name, None)
            .await?
            .into_iter()
            .filter(|r| matches!(r.rtype.as_str(), "CNAME" | "A" | "AAAA"))
            .collect();
        let mut set = AddressSet::default();
        for r in &records {
            let data = if r.rtype == "CNAME" && r.data == "@" {
                zone
            } else {
                r.data.as_str()
            };
            set.add(&r.rtype, data, r.ttl)
                .map_err(|e| DnsError::Server(format!("digitalocean: {e} at {name}")))?;
        }
        Ok((set, records))
    }

    async fn read_address_of(&self, zone: &str, name: &str) -> Result<AddressSet, DnsError> {
        Ok(self.addresses(zone, name).await?.0)
    }

    /// After a fresh read that must still be `before`: every address record there is deleted
    /// by id, then `after`'s are created (several requests, like every change here).
    async fn write_address_of(
        &self,
        zone: &str,
        name: &str,
        before: &AddressSet,
        after: &AddressSet,
    ) -> Result<(), DnsError> {
        let (now, records) = self.addresses(zone, name).await?;
        if !now.same_records(before) {
            return Err(DnsError::ConcurrentChange(format!(
                "digitalocean: the address records at {name} changed since they were read; nothing written"
            )));
        }
        if now.same_records(after) && now.ttl == after.ttl {
            return Ok(());
        }
        let rel = relative(zone, name)?;
        let mut done: Vec<String> = Vec::new();
        let partial = |e: DnsError, done: &[String]| {
            if done.is_empty() {
                e
            } else {
                e.with_detail(&format!("applied before this failure: {}", done.join(", ")))
            }
        };
        for r in &records {
            self.delete(zone, r.id)
                .await
                .map_err(|e| partial(e, &done))?;
            done.push(format!("deleted {} record {}", r.rtype, r.id));
        }
        for (rtype, content) in after.records() {
            let data = if rtype == "CNAME" {
                format!("{content}.")
            } else {
                content
            };
            let record = NewRecord {
                rtype,
                name: rel.clone(),
                data,
                ttl: after.ttl,
            };
            self.create(zone, &record)
                .await
                .map_err(|e| partial(e, &done))?;
            done.push(format!("created a {rtype} record"));
        }
        Ok(())
    }
}

impl DnsBackend for DigitalOcean {
    fn kind(&self) -> &'static str {
        "digitalocean"
    }

    fn read<'a>(
        &'a self,
        zone: &'a str,
        names: &'a [String],
    ) -> BoxFuture<'a, Result<Current, DnsError>> {
        Box::pin(self.read_all(zone, names))
    }

    /// Value-level: `current` is not needed; the ids come from a fresh read.
    fn apply<'a>(
        &'a self,
        zone: &'a str,
        _current: &'a Current,
        operations: &'a [Operation],
    ) -> BoxFuture<'a, Result<(), DnsError>> {
        Box::pin(self.apply_all(zone, operations))
    }

    fn read_address<'a>(
        &'a self,
        zone: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<AddressSet, DnsError>> {
        Box::pin(self.read_address_of(zone, name))
    }

    fn write_address<'a>(
        &'a self,
        zone: &'a str,
        name: &'a str,
        before: &'a AddressSet,
        after: &'a AddressSet,
    ) -> BoxFuture<'a, Result<(), DnsError>> {
        Box::pin(self.write_address_of(zone, name, before, after))
    }
}

/// The value's encoded length is within DigitalOcean's limit, or the error says which record,
/// how long and why.
pub fn check_length(name: &str, value: &str) -> Result<(), DnsError> {
    let encoded = txt::to_presentation(value).len();
    if encoded > MAX_ENCODED_TXT {
        return Err(DnsError::Config(format!(
            "digitalocean: the TXT value at {name} is {} bytes, {encoded} as DigitalOcean encodes it (quoted 255-byte strings), over its limit of {MAX_ENCODED_TXT}: DigitalOcean cannot publish it (a 2048-bit DKIM key fits, a 4096-bit one does not); use a shorter value or another provider for this zone; nothing was written",
            value.len()
        )));
    }
    Ok(())
}

/// The record name the API wants: relative to the domain, `@` for the apex.
fn relative(zone: &str, name: &str) -> Result<String, DnsError> {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let zone = zone.trim_end_matches('.').to_ascii_lowercase();
    if name == zone {
        return Ok("@".to_owned());
    }
    name.strip_suffix(&format!(".{zone}"))
        .map(str::to_owned)
        .ok_or_else(|| DnsError::Config(format!("digitalocean: {name} is not in domain {zone}")))
}

/// The `page` of a pagination link.
fn page_of(link: &str) -> Option<u32> {
    url::Url::parse(link)
        .ok()?
        .query_pairs()
        .find(|(k, _)| k == "page")
        .and_then(|(_, v)| v.parse().ok())
}

fn encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_encoded_length_limit_lets_a_2048_bit_key_through_and_not_a_4096_bit_one() {
        let key = |n: usize| format!("v=DKIM1; k=rsa; p={}", "A".repeat(n));
        assert!(
            check_length("s._domainkey.example.com", &key(392)).is_ok(),
            "~410 bytes"
        );
        let err = check_length("s._domainkey.example.com", &key(736)).unwrap_err();
        assert_eq!(err.category(), "DNSProviderInvalid");
        let text = err.to_string();
        assert!(
            text.contains("s._domainkey.example.com") && text.contains("754 bytes"),
            "{text}"
        );
        // The encoding counts quotes, spaces and escapes: 500 bytes is 506 encoded.
        assert!(check_length("x", &"a".repeat(500)).is_ok());
        assert!(
            check_length("x", &"\"".repeat(300)).is_err(),
            "escapes count"
        );
    }

    #[test]
    fn pages_and_names() {
        assert_eq!(
            page_of(
                "https://api.digitalocean.com/v2/domains/example.com/records?page=3&per_page=2"
            ),
            Some(3)
        );
        assert_eq!(page_of("not a link"), None);
        assert_eq!(relative("example.com", "example.com").unwrap(), "@");
        assert_eq!(
            relative("example.com", "_dmarc.example.com").unwrap(),
            "_dmarc"
        );
    }
}
