//! The `cloudflare` provider: the Cloudflare v4 API (`/client/v4`, an API token as Bearer).
//!
//! Cloudflare keeps one record object per TXT value, each with its id: other people's values
//! at a name are other records, which the operator never touches. A change is one call to the
//! batch endpoint (`POST /zones/{id}/dns_records/batch`: deletes, then posts, in one database
//! transaction); a value to remove is found by id in a fresh read, so a value someone added
//! meanwhile is never lost, and a value already there is not posted twice.
//!
//! TXT content: ours is written as quoted ≤255-byte strings; what is read back is normalised
//! before comparing, whether it comes chunked (`"a" "b"`), as one quoted string, or unquoted
//! (records made in the dashboard or by older API versions), so a long value does not look
//! different on every read (the update loops of external-dns #5934, #3484).

use std::collections::HashMap;
use std::time::Duration;

use futures_util::future::BoxFuture;
use reqwest::Method;
use serde::{Deserialize, Serialize};

use super::DnsError;
use super::address::AddressSet;
use std::sync::Arc;

use super::backend::{
    ApiMeter, ConnectError, DnsBackend, NoMeter, SecretSource, ZoneIds, result_of, secret_text,
};
use super::content::value_of;
use super::http;
use super::plan::{Current, Operation, RRset};
use crate::api::CloudflareSpec;
use crate::domain::txt;

/// Where the API lives unless the settings say otherwise.
pub const API_URL: &str = "https://api.cloudflare.com/client/v4";
/// How long one API request may take.
const TIMEOUT: Duration = Duration::from_secs(15);
/// Records per page when listing (the API allows up to 5,000 for DNS records).
const PER_PAGE: u32 = 100;
/// Operations per batch call: the Free plan's limit, the smallest.
const BATCH_LIMIT: usize = 200;

pub struct Cloudflare {
    http: reqwest::Client,
    base: String,
    token: String,
    /// Zone name → zone id, looked up once.
    zone_ids: ZoneIds,
    meter: Arc<dyn ApiMeter>,
}

/// The v4 envelope.
#[derive(Debug, Deserialize)]
struct Envelope<T> {
    #[serde(default)]
    success: bool,
    #[serde(default)]
    errors: Vec<ApiError>,
    result: Option<T>,
    #[serde(default)]
    result_info: Option<ResultInfo>,
}

#[derive(Debug, Deserialize)]
struct ApiError {
    #[serde(default)]
    code: u32,
    #[serde(default)]
    message: String,
}

#[derive(Debug, Deserialize)]
struct ResultInfo {
    #[serde(default)]
    total_pages: Option<u32>,
}

#[derive(Debug, Deserialize)]
struct ZoneResult {
    id: String,
    name: String,
}

#[derive(Debug, Clone, Deserialize)]
struct Record {
    id: String,
    #[serde(rename = "type", default)]
    rtype: String,
    name: String,
    content: String,
    #[serde(default)]
    ttl: u32,
}

#[derive(Debug, Serialize)]
struct NewRecord {
    #[serde(rename = "type")]
    rtype: &'static str,
    name: String,
    content: String,
    ttl: u32,
    /// Address records only: senders must reach the policy host itself, not Cloudflare's proxy
    /// (whose certificate and answers are Cloudflare's).
    #[serde(skip_serializing_if = "Option::is_none")]
    proxied: Option<bool>,
}

#[derive(Debug, Serialize)]
struct RecordId {
    id: String,
}

#[derive(Debug, Default, Serialize)]
struct Batch {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    deletes: Vec<RecordId>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    posts: Vec<NewRecord>,
}

impl Cloudflare {
    pub async fn from_spec(
        spec: &CloudflareSpec,
        secrets: &dyn SecretSource,
    ) -> Result<Self, ConnectError> {
        let token = secret_text(
            secrets,
            &spec.api_token_secret_ref,
            "a Cloudflare API token",
        )
        .await?;
        Ok(Cloudflare::new(
            spec.api_url.as_deref().unwrap_or(API_URL),
            token,
        )?)
    }

    pub fn new(base: &str, token: String) -> Result<Self, DnsError> {
        Ok(Cloudflare {
            base: http::base_url("cloudflare apiUrl", base)?,
            http: http::client(TIMEOUT)?,
            token,
            zone_ids: ZoneIds::default(),
            meter: Arc::new(NoMeter),
        })
    }

    /// Reports every API request to `meter`.
    pub fn with_meter(self, meter: Arc<dyn ApiMeter>) -> Self {
        Cloudflare { meter, ..self }
    }

    /// One call; the envelope's errors become provider-neutral errors.
    async fn call<T: for<'de> Deserialize<'de>>(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
    ) -> Result<Envelope<T>, DnsError> {
        let result = self.call_once(method, path, body).await;
        self.meter.request("cloudflare", result_of(&result));
        result
    }

    async fn call_once<T: for<'de> Deserialize<'de>>(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
    ) -> Result<Envelope<T>, DnsError> {
        let request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        let answer = http::send(request, body, &format!("cloudflare {method} {path}")).await?;
        let (status, text) = (answer.status, answer.text);
        let retry_after = http::retry_after(&answer.headers);
        let envelope: Option<Envelope<T>> = serde_json::from_str(&text).ok();
        if status.is_success() && envelope.as_ref().is_some_and(|e| e.success) {
            return envelope.ok_or_else(|| DnsError::Server("cloudflare: no envelope".into()));
        }
        let errors: Vec<(u32, String)> = envelope
            .as_ref()
            .map(|e| {
                e.errors
                    .iter()
                    .map(|x| (x.code, x.message.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let listed = if errors.is_empty() {
            text.chars().take(200).collect()
        } else {
            errors
                .iter()
                .map(|(c, m)| format!("{c}: {m}"))
                .collect::<Vec<_>>()
                .join("; ")
        };
        let detail = format!("cloudflare {method} {path}: HTTP {status}: {listed}");
        let auth = errors
            .iter()
            .any(|(c, _)| matches!(c, 6003 | 6111 | 9109 | 10000 | 10001));
        Err(match status.as_u16() {
            429 => DnsError::RateLimited {
                retry_after,
                detail,
            },
            401 => DnsError::Auth(format!("{detail}: check the API token")),
            400 | 403 if auth => DnsError::Auth(format!(
                "{detail}: check the API token and that it has Zone:Read and DNS:Edit on the zone"
            )),
            403 => DnsError::Refused(detail),
            404 => DnsError::ZoneNotFound(detail),
            _ => DnsError::Server(detail),
        })
    }

    async fn zone_id(&self, zone: &str) -> Result<String, DnsError> {
        self.zone_ids.get_or_find(zone, self.find_zone(zone)).await
    }

    async fn find_zone(&self, zone: &str) -> Result<String, DnsError> {
        let found: Envelope<Vec<ZoneResult>> = self
            .call(Method::GET, &format!("/zones?name={}", query(zone)), None)
            .await?;
        found
            .result
            .unwrap_or_default()
            .into_iter()
            .find(|z| z.name.eq_ignore_ascii_case(zone))
            .map(|z| z.id)
            .ok_or_else(|| {
                DnsError::ZoneNotFound(format!(
                    "cloudflare: the API token sees no zone {zone}: check the zone and the token's zone resources"
                ))
            })
    }

    /// Every TXT record at `name`, through all pages.
    async fn records(&self, zone_id: &str, name: &str) -> Result<Vec<Record>, DnsError> {
        self.records_of(zone_id, name, Some("TXT")).await
    }

    /// Every record at `name` (of `rtype`, or of any type), through all pages.
    async fn records_of(
        &self,
        zone_id: &str,
        name: &str,
        rtype: Option<&str>,
    ) -> Result<Vec<Record>, DnsError> {
        let mut out = Vec::new();
        let mut page = 1;
        let type_filter = rtype.map(|t| format!("type={t}&")).unwrap_or_default();
        loop {
            let path = format!(
                "/zones/{zone_id}/dns_records?{type_filter}name={}&per_page={PER_PAGE}&page={page}",
                query(name)
            );
            let listed: Envelope<Vec<Record>> = self.call(Method::GET, &path, None).await?;
            let total = listed.result_info.and_then(|i| i.total_pages).unwrap_or(1);
            out.extend(
                listed
                    .result
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|r| r.name.eq_ignore_ascii_case(name)),
            );
            if page >= total {
                return Ok(out);
            }
            page += 1;
        }
    }
}

impl DnsBackend for Cloudflare {
    fn kind(&self) -> &'static str {
        "cloudflare"
    }

    fn read<'a>(
        &'a self,
        zone: &'a str,
        names: &'a [String],
    ) -> BoxFuture<'a, Result<Current, DnsError>> {
        Box::pin(async move {
            let zone_id = self.zone_id(zone).await?;
            let mut current = Current::new();
            for name in names {
                let records = self.records(&zone_id, name).await?;
                if let Some(first) = records.first() {
                    current.insert(
                        name.clone(),
                        RRset {
                            ttl: first.ttl,
                            values: records.iter().map(|r| value_of(&r.content)).collect(),
                        },
                    );
                }
            }
            Ok(current)
        })
    }

    /// Value-level: `current` is not needed; the ids come from a fresh read.
    fn apply<'a>(
        &'a self,
        zone: &'a str,
        _current: &'a Current,
        operations: &'a [Operation],
    ) -> BoxFuture<'a, Result<(), DnsError>> {
        Box::pin(async move {
            if operations.is_empty() {
                return Ok(());
            }
            let zone_id = self.zone_id(zone).await?;
            let mut names: Vec<&str> = operations
                .iter()
                .map(|op| match op {
                    Operation::Add { name, .. } | Operation::Remove { name, .. } => name.as_str(),
                })
                .collect();
            names.sort_unstable();
            names.dedup();
            let mut now: HashMap<&str, Vec<Record>> = HashMap::new();
            for name in names {
                now.insert(name, self.records(&zone_id, name).await?);
            }
            let mut batch = Batch::default();
            for op in operations {
                match op {
                    Operation::Remove { name, value } => batch.deletes.extend(
                        now.get(name.as_str())
                            .into_iter()
                            .flatten()
                            .filter(|r| value_of(&r.content) == *value)
                            .map(|r| RecordId { id: r.id.clone() }),
                    ),
                    Operation::Add { name, ttl, value } => {
                        let there = now
                            .get(name.as_str())
                            .into_iter()
                            .flatten()
                            .any(|r| value_of(&r.content) == *value);
                        if !there {
                            batch.posts.push(NewRecord {
                                rtype: "TXT",
                                name: name.clone(),
                                content: txt::to_presentation(value),
                                ttl: *ttl,
                                proxied: None,
                            });
                        }
                    }
                }
            }
            if batch.deletes.len() + batch.posts.len() > BATCH_LIMIT {
                return Err(DnsError::Config(format!(
                    "cloudflare: {} record changes in one pass, more than a batch takes ({BATCH_LIMIT})",
                    batch.deletes.len() + batch.posts.len()
                )));
            }
            if batch.deletes.is_empty() && batch.posts.is_empty() {
                return Ok(());
            }
            let body = serde_json::to_string(&batch)
                .map_err(|e| DnsError::Server(format!("cloudflare: batch body: {e}")))?;
            let _: Envelope<serde_json::Value> = self
                .call(
                    Method::POST,
                    &format!("/zones/{zone_id}/dns_records/batch"),
                    Some(body),
                )
                .await?;
            Ok(())
        })
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

impl Cloudflare {
    /// The address records at `name`, with their ids.
    async fn address_records(
        &self,
        zone_id: &str,
        name: &str,
    ) -> Result<(AddressSet, Vec<Record>), DnsError> {
        let records: Vec<Record> = self
            .records_of(zone_id, name, None)
            .await?
            .into_iter()
            .filter(|r| matches!(r.rtype.as_str(), "CNAME" | "A" | "AAAA"))
            .collect();
        let mut set = AddressSet::default();
        for r in &records {
            set.add(&r.rtype, &r.content, r.ttl)
                .map_err(|e| DnsError::Server(format!("cloudflare: {e} at {name}")))?;
        }
        Ok((set, records))
    }

    async fn read_address_of(&self, zone: &str, name: &str) -> Result<AddressSet, DnsError> {
        let zone_id = self.zone_id(zone).await?;
        Ok(self.address_records(&zone_id, name).await?.0)
    }

    /// One batch: delete every address record there (by id, after checking they are still
    /// `before`), post `after`'s.
    async fn write_address_of(
        &self,
        zone: &str,
        name: &str,
        before: &AddressSet,
        after: &AddressSet,
    ) -> Result<(), DnsError> {
        let zone_id = self.zone_id(zone).await?;
        let (now, records) = self.address_records(&zone_id, name).await?;
        if !now.same_records(before) {
            return Err(DnsError::ConcurrentChange(format!(
                "cloudflare: the address records at {name} changed since they were read; nothing written"
            )));
        }
        let mut batch = Batch {
            deletes: records.into_iter().map(|r| RecordId { id: r.id }).collect(),
            posts: Vec::new(),
        };
        for (rtype, content) in after.records() {
            batch.posts.push(NewRecord {
                rtype,
                name: name.to_owned(),
                content,
                ttl: after.ttl,
                proxied: Some(false),
            });
        }
        if batch.deletes.is_empty() && batch.posts.is_empty() {
            return Ok(());
        }
        let body = serde_json::to_string(&batch)
            .map_err(|e| DnsError::Server(format!("cloudflare: batch body: {e}")))?;
        let _: Envelope<serde_json::Value> = self
            .call(
                Method::POST,
                &format!("/zones/{zone_id}/dns_records/batch"),
                Some(body),
            )
            .await?;
        Ok(())
    }
}

fn query(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}
