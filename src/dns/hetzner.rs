//! The `hetzner` provider: Hetzner's Cloud DNS API (`https://api.hetzner.cloud/v1`, the zones
//! of a Hetzner Console project, a project API token as Bearer). The legacy `dns.hetzner.com`
//! API is shut down and not used.
//!
//! Hetzner keeps RRsets (`/zones/{id}/rrsets/{name}/{type}`), but changes them value by value:
//! the actions `remove_records` and `add_records` take the values to remove or add and leave
//! every other value of the RRset as it is, so a foreign value at the same name (a site
//! verification at the apex) is never rewritten, and one added by someone else between our
//! read and our write is kept. The values to remove are taken, as stored, from a fresh read;
//! a value already there is not added again; `add_records` creates a missing RRset (with our
//! TTL) and `remove_records` deletes one left empty. An existing RRset keeps its TTL.
//!
//! A change is several requests, and not atomic: per name, one `remove_records` and one
//! `add_records`, each an asynchronous Action polled at `/actions/{id}` until it succeeds
//! (bounded; an Action that ends in `error` is a clear error naming it). If one fails, what
//! was applied before it is said in the error, and the next pass reads again.
//!
//! TXT values are the zone-file presentation form: ours are written as quoted ≤255-byte
//! strings and read back joined, whatever the chunking (`"a" "b"`, one quoted string, or
//! unquoted). Rate limits (429) are waited out when short (`Retry-After`, else
//! `RateLimit-Reset`) and retried a bounded number of times; each request is metered.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use reqwest::Method;
use serde::{Deserialize, Serialize};

use super::DnsError;
use super::address::AddressSet;
use super::backend::{ApiMeter, ConnectError, DnsBackend, NoMeter, SecretSource, secret_text};
use super::content::value_of;
use super::http;
use super::plan::{self, Current, Operation, RRset};
use crate::api::HetznerSpec;
use crate::domain::txt;

/// Where the API lives unless the settings say otherwise.
pub const API_URL: &str = "https://api.hetzner.cloud/v1";
/// How long one API request may take.
const TIMEOUT: Duration = Duration::from_secs(15);
/// RRsets per page when listing (the most this endpoint allows).
const PER_PAGE: u32 = 100;
/// How long one Action is waited for before the pass gives up (the next one reads again).
const ACTION_WAIT: Duration = Duration::from_secs(60);
/// The first wait before polling an Action, doubled after each poll up to [`MAX_POLL`].
const FIRST_POLL: Duration = Duration::from_millis(500);
const MAX_POLL: Duration = Duration::from_secs(4);
/// The most pages one listing follows (a name has one RRset per type; this is a guard).
const MAX_PAGES: u32 = 100;

pub struct Hetzner {
    http: reqwest::Client,
    base: String,
    token: String,
    /// Zone name → its id and default TTL, looked up once.
    zones: Mutex<BTreeMap<String, ZoneInfo>>,
    meter: Arc<dyn ApiMeter>,
    first_poll: Duration,
    /// Zones (by id) where a change of ours may still be running: an Action whose end we did
    /// not see (its answer or a poll lost). Hetzner shows an Action's change only once it has
    /// finished, so a read there first waits for the zone's running Actions; otherwise it would
    /// see the old state, and the pass would plan on it while the old change lands after.
    unsettled: Mutex<BTreeSet<u64>>,
}

#[derive(Debug, Clone, Copy)]
struct ZoneInfo {
    id: u64,
    ttl: u32,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: ApiError,
}

#[derive(Debug, Deserialize)]
struct ApiError {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

#[derive(Debug, Default, Deserialize)]
struct Meta {
    #[serde(default)]
    pagination: Option<Pagination>,
}

#[derive(Debug, Default, Deserialize)]
struct Pagination {
    #[serde(default)]
    next_page: Option<u32>,
}

#[derive(Debug, Deserialize)]
struct ZoneList {
    #[serde(default)]
    zones: Vec<ApiZone>,
}

#[derive(Debug, Deserialize)]
struct ApiZone {
    id: u64,
    name: String,
    #[serde(default)]
    ttl: u32,
    #[serde(default)]
    mode: String,
}

#[derive(Debug, Deserialize)]
struct RRsetList {
    #[serde(default)]
    rrsets: Vec<ApiRRset>,
    #[serde(default)]
    meta: Meta,
}

#[derive(Debug, Clone, Deserialize)]
struct ApiRRset {
    name: String,
    #[serde(rename = "type")]
    rtype: String,
    /// `null`: the zone's default.
    #[serde(default)]
    ttl: Option<u32>,
    #[serde(default)]
    records: Vec<ApiRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ApiRecord {
    value: String,
}

#[derive(Debug, Serialize)]
struct RecordsRequest {
    records: Vec<ApiRecord>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ttl: Option<u32>,
}

#[derive(Debug, Deserialize)]
struct ActionList {
    #[serde(default)]
    actions: Vec<Action>,
}

#[derive(Debug, Deserialize)]
struct ActionBody {
    action: Action,
}

#[derive(Debug, Deserialize)]
struct Action {
    id: u64,
    #[serde(default)]
    status: String,
    #[serde(default)]
    command: String,
    #[serde(default)]
    error: Option<ApiError>,
}

/// What a 404 means where it came from.
#[derive(Clone, Copy)]
enum On {
    Zone,
    RRset,
    Action,
}

impl Hetzner {
    pub async fn from_spec(
        spec: &HetznerSpec,
        secrets: &dyn SecretSource,
    ) -> Result<Self, ConnectError> {
        let token = secret_text(secrets, &spec.token_secret_ref, "a Hetzner API token").await?;
        Ok(Hetzner::new(
            spec.api_url.as_deref().unwrap_or(API_URL),
            token,
        )?)
    }

    pub fn new(base: &str, token: String) -> Result<Self, DnsError> {
        Ok(Hetzner {
            base: http::base_url("hetzner apiUrl", base)?,
            http: http::client(TIMEOUT)?,
            token,
            zones: Mutex::new(BTreeMap::new()),
            meter: Arc::new(NoMeter),
            first_poll: FIRST_POLL,
            unsettled: Mutex::new(BTreeSet::new()),
        })
    }

    /// Reports every API request to `meter`.
    pub fn with_meter(self, meter: Arc<dyn ApiMeter>) -> Self {
        Hetzner { meter, ..self }
    }

    /// Polls Actions first after `first` (then twice as long each time); for tests, whose
    /// fake finishes Actions at once.
    pub fn with_first_poll(self, first: Duration) -> Self {
        Hetzner {
            first_poll: first,
            ..self
        }
    }

    /// One request (repeated after a short rate limit); the body of a 2xx answer.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
        on: On,
    ) -> Result<String, DnsError> {
        http::with_rate_limit_retries(self.meter.as_ref(), "hetzner", || {
            self.call_once(method.clone(), path, body.clone(), on)
        })
        .await
    }

    async fn call_once(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
        on: On,
    ) -> Result<String, DnsError> {
        let request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        let answer = http::send(request, body, &format!("hetzner {method} {path}")).await?;
        let (status, text) = (answer.status, answer.text);
        let wait = http::rate_limit_wait(&answer.headers);
        if status.is_success() {
            return Ok(text);
        }
        let (code, message) = serde_json::from_str::<ErrorBody>(&text)
            .map(|b| (b.error.code, b.error.message))
            .unwrap_or_else(|_| (String::new(), text.chars().take(200).collect()));
        let detail = format!("hetzner {method} {path}: HTTP {status}: {code}: {message}");
        Err(match (status.as_u16(), code.as_str()) {
            (429, _) | (_, "rate_limit_exceeded") => DnsError::RateLimited {
                retry_after: wait,
                detail,
            },
            (401, _) | (_, "unauthorized") => DnsError::Auth(format!(
                "{detail}: check the API token (a Hetzner Console project token; tokens of the old DNS console no longer work)"
            )),
            (_, "token_readonly") => DnsError::Refused(format!(
                "{detail}: the token is read-only; it needs Read & Write permission"
            )),
            (403, _) => DnsError::Refused(detail),
            (_, "incorrect_zone_mode") => DnsError::Config(format!(
                "{detail}: the zone is in secondary mode; its records are written on its primary"
            )),
            (409 | 423, _) | (_, "locked" | "conflict") => DnsError::ConcurrentChange(format!(
                "{detail}: another change of the RRset is running; the next pass reads again"
            )),
            (404, _) => match on {
                On::Zone => DnsError::ZoneNotFound(detail),
                On::RRset => DnsError::ConcurrentChange(format!(
                    "{detail}: the RRset is gone since it was read; the next pass reads again"
                )),
                On::Action => DnsError::Server(detail),
            },
            _ => DnsError::Server(detail),
        })
    }

    async fn zone(&self, zone: &str) -> Result<ZoneInfo, DnsError> {
        if let Some(info) = self.zones.lock().ok().and_then(|z| z.get(zone).copied()) {
            return Ok(info);
        }
        let body = self
            .call(
                Method::GET,
                &format!("/zones?name={}", encode(zone)),
                None,
                On::Zone,
            )
            .await?;
        let listed: ZoneList = parse(&body, "zones")?;
        let found = listed
            .zones
            .into_iter()
            .find(|z| z.name.trim_end_matches('.').eq_ignore_ascii_case(zone))
            .ok_or_else(|| {
                DnsError::ZoneNotFound(format!(
                    "hetzner: the API token's project has no zone {zone}: check the zone and that the token is from the project that holds it"
                ))
            })?;
        if !found.mode.is_empty() && found.mode != "primary" {
            return Err(DnsError::Config(format!(
                "hetzner: zone {zone} is in {} mode; only primary zones take record changes",
                found.mode
            )));
        }
        let info = ZoneInfo {
            id: found.id,
            ttl: found.ttl,
        };
        if let Ok(mut zones) = self.zones.lock() {
            zones.insert(zone.to_owned(), info);
        }
        Ok(info)
    }

    /// The RRsets at `name` (of `types`, or of any type), through all pages.
    async fn rrsets(
        &self,
        zone: ZoneInfo,
        rel: &str,
        types: &[&str],
    ) -> Result<Vec<ApiRRset>, DnsError> {
        let mut out = Vec::new();
        let mut page = 1;
        let filter: String = types.iter().map(|t| format!("&type={t}")).collect();
        for _ in 0..MAX_PAGES {
            let path = format!(
                "/zones/{}/rrsets?name={}{filter}&per_page={PER_PAGE}&page={page}",
                zone.id,
                encode(rel)
            );
            let body = self.call(Method::GET, &path, None, On::Zone).await?;
            let listed: RRsetList = parse(&body, "rrsets")?;
            out.extend(
                listed
                    .rrsets
                    .into_iter()
                    .filter(|r| r.name.eq_ignore_ascii_case(rel))
                    .filter(|r| types.is_empty() || types.contains(&r.rtype.as_str())),
            );
            match listed.meta.pagination.and_then(|p| p.next_page) {
                Some(next) if next > page => page = next,
                _ => return Ok(out),
            }
        }
        Err(DnsError::Server(format!(
            "hetzner: more than {MAX_PAGES} pages of RRsets at {rel}"
        )))
    }

    /// The TXT RRset at `rel`, if there is one.
    async fn txt(&self, zone: ZoneInfo, rel: &str) -> Result<Option<ApiRRset>, DnsError> {
        Ok(self.rrsets(zone, rel, &["TXT"]).await?.into_iter().next())
    }

    /// The zone, once no change of ours may still be running in it (see `unsettled`).
    async fn settled_zone(&self, zone: &str) -> Result<ZoneInfo, DnsError> {
        let info = self.zone(zone).await?;
        let unsettled = self.unsettled.lock().is_ok_and(|u| u.contains(&info.id));
        if !unsettled {
            return Ok(info);
        }
        let body = self
            .call(
                Method::GET,
                &format!("/zones/{}/actions?status=running&per_page=100", info.id),
                None,
                On::Zone,
            )
            .await?;
        // Any error keeps the zone unsettled: the next pass lists what is still running (an
        // Action that ended in `error` changed nothing and is no longer listed).
        for action in parse::<ActionList>(&body, "actions")?.actions {
            self.wait(action, "an earlier change").await?;
        }
        if let Ok(mut u) = self.unsettled.lock() {
            u.remove(&info.id);
        }
        Ok(info)
    }

    /// Runs one RRset action and waits for it.
    async fn act(
        &self,
        zone: ZoneInfo,
        rel: &str,
        rtype: &str,
        action: &str,
        body: &impl Serialize,
    ) -> Result<(), DnsError> {
        let body = serde_json::to_string(body)
            .map_err(|e| DnsError::Server(format!("hetzner: {action} body: {e}")))?;
        let path = format!(
            "/zones/{}/rrsets/{}/{rtype}/actions/{action}",
            zone.id,
            encode(rel)
        );
        let outcome = async {
            let answer = self
                .call(Method::POST, &path, Some(body), On::RRset)
                .await?;
            let started: ActionBody = parse(&answer, "action")?;
            self.wait(started.action, &format!("{action} at {rel} {rtype}"))
                .await
        }
        .await;
        // No answer, or a server error: the Action may exist and still be running.
        if let Err(DnsError::Unreachable(_) | DnsError::Server(_)) = &outcome
            && let Ok(mut u) = self.unsettled.lock()
        {
            u.insert(zone.id);
        }
        outcome
    }

    /// Polls an Action until it succeeds (bounded), or says why it did not.
    async fn wait(&self, mut action: Action, what: &str) -> Result<(), DnsError> {
        let deadline = tokio::time::Instant::now() + ACTION_WAIT;
        let mut interval = self.first_poll;
        loop {
            match action.status.as_str() {
                "success" => return Ok(()),
                "error" => {
                    let (code, message) = action
                        .error
                        .map(|e| (e.code, e.message))
                        .unwrap_or_default();
                    return Err(DnsError::Server(format!(
                        "hetzner: action {} ({}, {what}) failed: {code}: {message}",
                        action.id, action.command
                    )));
                }
                _ => {}
            }
            if tokio::time::Instant::now() + interval > deadline {
                return Err(DnsError::Server(format!(
                    "hetzner: action {} ({what}) still {} after {} s; the next pass reads again",
                    action.id,
                    action.status,
                    ACTION_WAIT.as_secs()
                )));
            }
            tokio::time::sleep(interval).await;
            interval = (interval * 2).min(MAX_POLL);
            let body = self
                .call(
                    Method::GET,
                    &format!("/actions/{}", action.id),
                    None,
                    On::Action,
                )
                .await?;
            action = parse::<ActionBody>(&body, "action")?.action;
        }
    }

    /// Applies the operations at one name: removes (the values as stored), then adds.
    async fn apply_name(
        &self,
        zone: ZoneInfo,
        zone_name: &str,
        name: &str,
        ops: &[&Operation],
        done: &mut Vec<String>,
    ) -> Result<(), DnsError> {
        let rel = relative(zone_name, name)?;
        let now = self.txt(zone, &rel).await?;
        let stored: Vec<String> = now
            .as_ref()
            .map(|r| r.records.iter().map(|x| x.value.clone()).collect())
            .unwrap_or_default();
        let mut remove: Vec<String> = Vec::new();
        let mut add: Vec<String> = Vec::new();
        let mut ttl = None;
        for op in ops {
            match op {
                Operation::Remove { value, .. } => {
                    for raw in stored.iter().filter(|raw| value_of(raw) == *value) {
                        if !remove.contains(raw) {
                            remove.push(raw.clone());
                        }
                    }
                }
                Operation::Add { ttl: t, value, .. } => {
                    let there = stored
                        .iter()
                        .any(|raw| value_of(raw) == *value && !remove.contains(raw));
                    let content = txt::to_presentation(value);
                    if !there && !add.contains(&content) {
                        add.push(content);
                        ttl.get_or_insert(*t);
                    }
                }
            }
        }
        if !remove.is_empty() {
            let request = RecordsRequest {
                records: remove
                    .iter()
                    .map(|v| ApiRecord { value: v.clone() })
                    .collect(),
                ttl: None,
            };
            self.act(zone, &rel, "TXT", "remove_records", &request)
                .await?;
            done.push(format!("removed {} value(s) at {name}", remove.len()));
        }
        if !add.is_empty() {
            // A new RRset takes our TTL; an existing one keeps its own.
            let remains = stored.len() > remove.len();
            let request = RecordsRequest {
                records: add.iter().map(|v| ApiRecord { value: v.clone() }).collect(),
                ttl: if remains { None } else { ttl },
            };
            self.act(zone, &rel, "TXT", "add_records", &request).await?;
            done.push(format!("added {} value(s) at {name}", add.len()));
        }
        Ok(())
    }

    async fn apply_all(&self, zone: &str, operations: &[Operation]) -> Result<(), DnsError> {
        if operations.is_empty() {
            return Ok(());
        }
        let info = self.settled_zone(zone).await?;
        let mut by_name: BTreeMap<&str, Vec<&Operation>> = BTreeMap::new();
        for op in operations {
            let name = match op {
                Operation::Add { name, .. } | Operation::Remove { name, .. } => name.as_str(),
            };
            by_name.entry(name).or_default().push(op);
        }
        let mut by_name: Vec<(&str, Vec<&Operation>)> = by_name.into_iter().collect();
        by_name.sort_by_key(|(name, _)| (plan::write_rank(name, operations), *name));
        let mut done = Vec::new();
        for (name, ops) in by_name {
            if let Err(e) = self.apply_name(info, zone, name, &ops, &mut done).await {
                return Err(if done.is_empty() {
                    e.with_detail("nothing was changed")
                } else {
                    e.with_detail(&format!(
                        "applied before this failure (Hetzner has no atomic multi-RRset change): {}",
                        done.join(", ")
                    ))
                });
            }
        }
        Ok(())
    }

    async fn read_all(&self, zone: &str, names: &[String]) -> Result<Current, DnsError> {
        let info = self.settled_zone(zone).await?;
        let mut current = Current::new();
        for name in names {
            let rel = relative(zone, name)?;
            if let Some(rrset) = self.txt(info, &rel).await?
                && !rrset.records.is_empty()
            {
                current.insert(
                    name.clone(),
                    RRset {
                        ttl: rrset.ttl.unwrap_or(info.ttl),
                        values: rrset.records.iter().map(|r| value_of(&r.value)).collect(),
                    },
                );
            }
        }
        Ok(current)
    }

    /// The address RRsets at `name`, and what they hold.
    async fn addresses(
        &self,
        info: ZoneInfo,
        rel: &str,
        name: &str,
    ) -> Result<(AddressSet, Vec<ApiRRset>), DnsError> {
        let rrsets = self.rrsets(info, rel, &["CNAME", "A", "AAAA"]).await?;
        let mut set = AddressSet::default();
        for r in &rrsets {
            for record in &r.records {
                set.add(&r.rtype, &record.value, r.ttl.unwrap_or(info.ttl))
                    .map_err(|e| DnsError::Server(format!("hetzner: {e} at {name}")))?;
            }
        }
        Ok((set, rrsets))
    }

    async fn read_address_of(&self, zone: &str, name: &str) -> Result<AddressSet, DnsError> {
        let info = self.settled_zone(zone).await?;
        let rel = relative(zone, name)?;
        Ok(self.addresses(info, &rel, name).await?.0)
    }

    /// After a fresh read that must still be `before`: per type, the records not wanted are
    /// removed (all types first, so a CNAME makes way before an A is added, and back), then
    /// the wanted ones added, and a kept RRset's TTL changed when it differs.
    async fn write_address_of(
        &self,
        zone: &str,
        name: &str,
        before: &AddressSet,
        after: &AddressSet,
    ) -> Result<(), DnsError> {
        let info = self.settled_zone(zone).await?;
        let rel = relative(zone, name)?;
        let (now, rrsets) = self.addresses(info, &rel, name).await?;
        if !now.same_records(before) {
            return Err(DnsError::ConcurrentChange(format!(
                "hetzner: the address records at {name} changed since they were read; nothing written"
            )));
        }
        let wanted: Vec<(&str, String)> = after
            .records()
            .into_iter()
            .map(|(t, v)| {
                let v = if t == "CNAME" { format!("{v}.") } else { v };
                (t, v)
            })
            .collect();
        let mut plans = Vec::new();
        for rtype in ["CNAME", "A", "AAAA"] {
            let existing = rrsets.iter().find(|r| r.rtype == rtype);
            let stored: Vec<&str> = existing
                .map(|r| r.records.iter().map(|x| x.value.as_str()).collect())
                .unwrap_or_default();
            let want: Vec<&str> = wanted
                .iter()
                .filter(|(t, _)| *t == rtype)
                .map(|(_, v)| v.as_str())
                .collect();
            let remove: Vec<String> = stored
                .iter()
                .filter(|s| !want.iter().any(|w| same_address(rtype, s, w)))
                .map(|s| (*s).to_owned())
                .collect();
            let add: Vec<String> = want
                .iter()
                .filter(|w| !stored.iter().any(|s| same_address(rtype, s, w)))
                .map(|w| (*w).to_owned())
                .collect();
            let kept = stored.len() > remove.len();
            let ttl_now = existing.map(|r| r.ttl.unwrap_or(info.ttl));
            plans.push((rtype, remove, add, kept, ttl_now));
        }
        for (rtype, remove, _, _, _) in &plans {
            if !remove.is_empty() {
                let request = RecordsRequest {
                    records: remove
                        .iter()
                        .map(|v| ApiRecord { value: v.clone() })
                        .collect(),
                    ttl: None,
                };
                self.act(info, &rel, rtype, "remove_records", &request)
                    .await?;
            }
        }
        for (rtype, _, add, kept, ttl_now) in &plans {
            if *kept && *ttl_now != Some(after.ttl) {
                #[derive(Serialize)]
                struct Ttl {
                    ttl: u32,
                }
                self.act(info, &rel, rtype, "change_ttl", &Ttl { ttl: after.ttl })
                    .await?;
            }
            if !add.is_empty() {
                let request = RecordsRequest {
                    records: add.iter().map(|v| ApiRecord { value: v.clone() }).collect(),
                    ttl: if *kept { None } else { Some(after.ttl) },
                };
                self.act(info, &rel, rtype, "add_records", &request).await?;
            }
        }
        Ok(())
    }
}

impl DnsBackend for Hetzner {
    fn kind(&self) -> &'static str {
        "hetzner"
    }

    fn read<'a>(
        &'a self,
        zone: &'a str,
        names: &'a [String],
    ) -> BoxFuture<'a, Result<Current, DnsError>> {
        Box::pin(self.read_all(zone, names))
    }

    /// Value-level: `current` is not needed; the stored values come from a fresh read.
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

/// The RRset name the API wants: relative to the zone, lower case, `@` for the apex.
fn relative(zone: &str, name: &str) -> Result<String, DnsError> {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let zone = zone.trim_end_matches('.').to_ascii_lowercase();
    if name == zone {
        return Ok("@".to_owned());
    }
    name.strip_suffix(&format!(".{zone}"))
        .map(str::to_owned)
        .ok_or_else(|| DnsError::Config(format!("hetzner: {name} is not in zone {zone}")))
}

/// Whether two address values are the same record (addresses parsed, names without case or
/// the root dot).
fn same_address(rtype: &str, a: &str, b: &str) -> bool {
    match rtype {
        "A" | "AAAA" => match (a.parse::<std::net::IpAddr>(), b.parse::<std::net::IpAddr>()) {
            (Ok(x), Ok(y)) => x == y,
            _ => a == b,
        },
        _ => a
            .trim_end_matches('.')
            .eq_ignore_ascii_case(b.trim_end_matches('.')),
    }
}

fn parse<T: for<'de> Deserialize<'de>>(body: &str, what: &str) -> Result<T, DnsError> {
    serde_json::from_str(body).map_err(|e| {
        DnsError::Server(format!(
            "hetzner: the answer is not the documented `{what}` object: {e}"
        ))
    })
}

fn encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_relative_lower_case_and_the_apex_is_at() {
        assert_eq!(relative("example.com", "example.com").unwrap(), "@");
        assert_eq!(
            relative("example.com", "_DMARC.Example.com.").unwrap(),
            "_dmarc"
        );
        assert_eq!(
            relative("example.com", "s1._domainkey.mail.example.com").unwrap(),
            "s1._domainkey.mail"
        );
        assert_eq!(
            relative("example.com", "badexample.com")
                .unwrap_err()
                .category(),
            "DNSProviderInvalid"
        );
    }

    #[test]
    fn addresses_compare_as_addresses_and_names() {
        assert!(same_address("AAAA", "2001:db8::1", "2001:0db8:0::1"));
        assert!(same_address("CNAME", "LB.example.net.", "lb.example.net"));
        assert!(!same_address("A", "192.0.2.1", "192.0.2.2"));
    }
}
