//! A stateful fake of Hetzner's Cloud DNS API (`https://api.hetzner.cloud/v1`, the zones and
//! RRsets of a Hetzner Console project), on loopback, for the tests of the hetzner provider:
//! no Hetzner server runs outside Hetzner. Shaped by Hetzner's published API reference
//! (docs.hetzner.cloud/reference/cloud, the `zones`, `zone-rrsets`, `zone-rrset-actions` and
//! `actions` sections) and the schema types of Hetzner's own Go client (hcloud-go
//! `hcloud/schema`). It reproduces:
//!
//! - Bearer project tokens: none or an unknown one → 401 `unauthorized` "unable to
//!   authenticate"; the error body `{"error": {"code", "message", "details"}}` on every error;
//! - `GET /zones?name=` (`{"zones": [...], "meta": {"pagination": {...}}}`; an unknown name is
//!   an empty list) and zones addressed by id or by name in paths; an unknown one → 404
//!   `not_found`; a zone in secondary mode → 422 `incorrect_zone_mode` for RRset calls;
//! - `GET /zones/{id_or_name}/rrsets?name=&type=&page=&per_page=`: exact relative names (`@`
//!   for the apex), `type` repeatable, pages with `meta.pagination` (`page`, `per_page`,
//!   `previous_page`, `next_page`, `last_page`, `total_entries`; `per_page` default 25, at most
//!   100 on this endpoint); each RRset `{id: "name/TYPE", name, type, ttl (null: the zone's),
//!   labels, protection, records: [{value, comment}], zone}`;
//! - the RRset actions `add_records` (creates a missing RRset, with `ttl` when given;
//!   appends to an existing one), `remove_records` (the values must be distinct; deletes an
//!   RRset left empty; an unknown RRset → 404) and `change_ttl`, each answering 201 with
//!   `{"action": {...}}`;
//! - Actions: they start `running` (progress 0) and turn `success` (progress 100, `finished`
//!   set) on their second poll of `GET /actions/{id}`, or one second after they started,
//!   whichever is first; **their change is visible only then**, so a client that reads back
//!   without waiting sees the old state. A test can make the next Action end in `error`
//!   (`{code, message}`), which changes nothing;
//! - `GET /zones/{id_or_name}/actions?status=&page=&per_page=` ("List Actions for a Zone"):
//!   the zone's Actions, `status` repeatable, one page (`meta.pagination`);
//! - TXT values in presentation form: one or more quoted strings of at most 255 bytes each
//!   (Hetzner's docs for RRsets of type TXT); anything else → 422 `invalid_input` naming the
//!   field; A/AAAA values must be addresses; a CNAME beside other records at its name, or a
//!   second value in a CNAME RRset, → 422 `invalid_input`;
//! - `RateLimit-Limit`/`-Remaining`/`-Reset` (a Unix time) on every answer; 429
//!   `rate_limit_exceeded` when a test asks, with `Retry-After` only when it asks for that too
//!   (Hetzner documents only the `RateLimit-*` headers).
//!
//! Assumed where the reference is silent (and stricter, so a sloppy client is caught): adding a
//! value already in the RRset and removing one that is not there are 422 `invalid_input`; an
//! `add_records` with a `ttl` sets the TTL of an existing RRset too.
//!
//! Not reproduced: labels and label selectors, sorting, protection, zone creation and zone
//! files, other record types, the deprecated `GET /actions` list, `locked` conflicts between
//! concurrent actions, the real rate-limit budget, nameserver propagation.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

/// One RRset as the fake holds it.
#[derive(Debug, Clone)]
pub struct FakeRRset {
    /// Relative to the zone, `@` for the apex.
    pub name: String,
    pub rtype: String,
    pub ttl: Option<u32>,
    pub values: Vec<String>,
}

struct Zone {
    id: u64,
    name: String,
    ttl: u32,
    mode: String,
    rrsets: Vec<FakeRRset>,
}

#[derive(Clone)]
enum Change {
    Add {
        name: String,
        rtype: String,
        values: Vec<String>,
        ttl: Option<u32>,
    },
    Remove {
        name: String,
        rtype: String,
        values: Vec<String>,
    },
    Ttl {
        name: String,
        rtype: String,
        ttl: u32,
    },
}

struct FakeAction {
    command: String,
    zone: u64,
    started: Instant,
    started_at: String,
    polls: u32,
    change: Change,
    fail: bool,
    /// `running`, `success` or `error`.
    status: String,
    finished_at: Option<String>,
    error: Option<(String, String)>,
}

#[derive(Default)]
struct Inner {
    zones: Vec<Zone>,
    token: String,
    actions: BTreeMap<u64, FakeAction>,
    next_id: u64,
    /// The next this many requests answer 429, with a reset this many seconds ahead, and
    /// with `Retry-After` when the flag is set.
    throttle: (u32, u64, bool),
    /// The next this many Actions end in `error`.
    failing: u32,
    calls: Vec<String>,
}

type Shared = Arc<Mutex<Inner>>;

/// A running fake.
#[derive(Clone)]
pub struct Fake {
    /// The API base, as `apiUrl` takes it (`http://127.0.0.1:<port>/v1`).
    pub url: String,
    pub token: String,
    pub zone: String,
    pub zone_id: u64,
    inner: Shared,
}

impl Fake {
    /// Starts the fake with one primary zone (default TTL 3600) and one token.
    pub async fn start(zone: &str) -> Fake {
        let zone_id = 4_711;
        let token = format!("hcloud-{}", super::random_suffix());
        let inner: Shared = Arc::new(Mutex::new(Inner {
            zones: vec![Zone {
                id: zone_id,
                name: zone.to_owned(),
                ttl: 3600,
                mode: "primary".into(),
                rrsets: Vec::new(),
            }],
            token: token.clone(),
            next_id: 100,
            ..Inner::default()
        }));
        let app = Router::new()
            .route("/v1/zones", get(list_zones))
            .route("/v1/zones/{zone}/rrsets", get(list_rrsets))
            .route(
                "/v1/zones/{zone}/rrsets/{name}/{rtype}/actions/{action}",
                post(rrset_action),
            )
            .route("/v1/actions/{id}", get(get_action))
            .route("/v1/zones/{zone}/actions", get(list_zone_actions))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr: SocketAddr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Fake {
            url: format!("http://{addr}/v1"),
            token,
            zone: zone.to_owned(),
            zone_id,
            inner,
        }
    }

    fn relative(&self, name: &str) -> String {
        if name == self.zone {
            "@".to_owned()
        } else {
            name.strip_suffix(&format!(".{}", self.zone))
                .expect("a name in the zone")
                .to_owned()
        }
    }

    /// Adds a value to the RRset at `name` (a full name) as someone else would (the Console,
    /// another tool), unchecked; a new RRset gets `ttl`.
    pub fn add_raw(&self, name: &str, rtype: &str, value: &str, ttl: u32) {
        let rel = self.relative(name);
        let mut i = self.inner.lock().expect("fake state");
        let zone = &mut i.zones[0];
        match zone
            .rrsets
            .iter_mut()
            .find(|r| r.name == rel && r.rtype == rtype)
        {
            Some(r) => r.values.push(value.to_owned()),
            None => zone.rrsets.push(FakeRRset {
                name: rel,
                rtype: rtype.to_owned(),
                ttl: Some(ttl),
                values: vec![value.to_owned()],
            }),
        }
    }

    /// The RRset of `rtype` at `name` (a full name), if any, with its TTL as served (the
    /// zone's when it has none).
    pub fn rrset(&self, name: &str, rtype: &str) -> Option<FakeRRset> {
        let rel = self.relative(name);
        let i = self.inner.lock().expect("fake state");
        let zone = &i.zones[0];
        zone.rrsets
            .iter()
            .find(|r| r.name == rel && r.rtype == rtype)
            .map(|r| FakeRRset {
                ttl: Some(r.ttl.unwrap_or(zone.ttl)),
                ..r.clone()
            })
    }

    /// The TXT values at `name`, as stored.
    pub fn txt(&self, name: &str) -> Vec<String> {
        self.rrset(name, "TXT")
            .map(|r| r.values)
            .unwrap_or_default()
    }

    /// The next `n` requests answer 429, the limit resetting in `seconds`; with
    /// `Retry-After: seconds` too when `retry_after`.
    pub fn throttle(&self, n: u32, seconds: u64, retry_after: bool) {
        self.inner.lock().expect("fake state").throttle = (n, seconds, retry_after);
    }

    /// The next `n` Actions end in `error` and change nothing.
    pub fn fail_actions(&self, n: u32) {
        self.inner.lock().expect("fake state").failing = n;
    }

    /// How many requests have been served so far.
    pub fn calls(&self) -> usize {
        self.inner.lock().expect("fake state").calls.len()
    }

    /// The requests served so far, `METHOD path` (without the query, ids as `{id}`).
    pub fn call_log(&self) -> Vec<String> {
        self.inner.lock().expect("fake state").calls.clone()
    }
}

fn timestamp() -> String {
    jiff::Timestamp::now().to_string()
}

fn with_rate_headers(r: Response, remaining: u64, reset_in: u64) -> Response {
    super::api_fake::rate_limit_headers(r, "3600", remaining, reset_in)
}

fn ok(status: StatusCode, body: Value) -> Response {
    with_rate_headers((status, axum::Json(body)).into_response(), 3599, 1)
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    with_rate_headers(
        (
            status,
            axum::Json(json!({"error": {"code": code, "message": message, "details": {}}})),
        )
            .into_response(),
        3599,
        1,
    )
}

fn invalid(field: &str, message: &str) -> Response {
    with_rate_headers(
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            axum::Json(json!({"error": {"code": "invalid_input", "message": format!("invalid input in field '{field}'"),
                "details": {"fields": [{"name": field, "messages": [message]}]}}})),
        )
            .into_response(),
        3599,
        1,
    )
}

/// Counts the call, applies throttling, checks the token, and finishes overdue Actions.
#[allow(clippy::result_large_err)]
fn gate(i: &mut Inner, headers: &HeaderMap, call: String) -> Result<(), Response> {
    i.calls.push(call);
    settle(i, None);
    if i.throttle.0 > 0 {
        i.throttle.0 -= 1;
        let (_, seconds, retry_after) = i.throttle;
        let body = json!({"error": {"code": "rate_limit_exceeded",
            "message": "limit of 3600 requests per hour reached", "details": {}}});
        return Err(super::api_fake::too_many_requests(
            body,
            "3600",
            seconds,
            retry_after,
        ));
    }
    let token = super::api_fake::bearer(headers);
    if token != Some(i.token.as_str()) {
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "unable to authenticate",
        ));
    }
    Ok(())
}

/// Finishes the Actions that are due: on their second poll (`polled`), or a second after
/// they started. A finished Action's change is applied then (or it fails, changing nothing).
fn settle(i: &mut Inner, polled: Option<u64>) {
    let due: Vec<u64> = i
        .actions
        .iter_mut()
        .filter(|(_, a)| a.status == "running")
        .filter_map(|(id, a)| {
            if polled == Some(*id) {
                a.polls += 1;
            }
            (a.polls >= 2 || a.started.elapsed() >= Duration::from_secs(1)).then_some(*id)
        })
        .collect();
    for id in due {
        let Some(action) = i.actions.get(&id) else {
            continue;
        };
        let (change, zone_id, fail) = (action.change.clone(), action.zone, action.fail);
        let outcome = if fail {
            Err((
                "action_failed".to_owned(),
                "Action failed: the change could not be applied".to_owned(),
            ))
        } else {
            i.zones
                .iter_mut()
                .find(|z| z.id == zone_id)
                .ok_or_else(|| ("not_found".to_owned(), "zone not found".to_owned()))
                .and_then(|z| apply(z, &change))
        };
        if let Some(a) = i.actions.get_mut(&id) {
            a.finished_at = Some(timestamp());
            match outcome {
                Ok(()) => a.status = "success".into(),
                Err(e) => {
                    a.status = "error".into();
                    a.error = Some(e);
                }
            }
        }
    }
}

fn apply(zone: &mut Zone, change: &Change) -> Result<(), (String, String)> {
    match change {
        Change::Add {
            name,
            rtype,
            values,
            ttl,
        } => match zone
            .rrsets
            .iter_mut()
            .find(|r| r.name == *name && r.rtype == *rtype)
        {
            Some(r) => {
                r.values.extend(values.iter().cloned());
                if ttl.is_some() {
                    r.ttl = *ttl;
                }
            }
            None => zone.rrsets.push(FakeRRset {
                name: name.clone(),
                rtype: rtype.clone(),
                ttl: *ttl,
                values: values.clone(),
            }),
        },
        Change::Remove {
            name,
            rtype,
            values,
        } => {
            if let Some(r) = zone
                .rrsets
                .iter_mut()
                .find(|r| r.name == *name && r.rtype == *rtype)
            {
                r.values.retain(|v| !values.contains(v));
            }
            zone.rrsets.retain(|r| !r.values.is_empty());
        }
        Change::Ttl { name, rtype, ttl } => {
            if let Some(r) = zone
                .rrsets
                .iter_mut()
                .find(|r| r.name == *name && r.rtype == *rtype)
            {
                r.ttl = Some(*ttl);
            }
        }
    }
    Ok(())
}

fn zone_json(z: &Zone) -> Value {
    json!({"id": z.id, "name": z.name, "created": "2026-01-01T00:00:00Z", "mode": z.mode, "ttl": z.ttl,
        "labels": {}, "protection": {"delete": false}, "primary_nameservers": [],
        "authoritative_nameservers": {"assigned": ["hydrogen.ns.hetzner.com.", "oxygen.ns.hetzner.com.",
            "helium.ns.hetzner.de."], "delegated": [], "delegation_last_check": null, "delegation_status": "unknown"},
        "registrar": "other", "status": "ok", "record_count": z.rrsets.iter().map(|r| r.values.len()).sum::<usize>()})
}

fn rrset_json(r: &FakeRRset, zone: u64) -> Value {
    json!({"id": format!("{}/{}", r.name, r.rtype), "name": r.name, "type": r.rtype, "ttl": r.ttl,
        "labels": {}, "protection": {"change": false},
        "records": r.values.iter().map(|v| json!({"value": v, "comment": null})).collect::<Vec<_>>(),
        "zone": zone})
}

fn action_json(id: u64, a: &FakeAction) -> Value {
    json!({"id": id, "command": a.command, "status": a.status,
        "progress": if a.status == "running" { 0 } else { 100 },
        "started": a.started_at, "finished": a.finished_at,
        "resources": [{"id": a.zone, "type": "zone"}],
        "error": a.error.as_ref().map(|(code, message)| json!({"code": code, "message": message}))})
}

fn pagination(page: usize, per_page: usize, total: usize) -> Value {
    let last = total.div_ceil(per_page).max(1);
    json!({"pagination": {"page": page, "per_page": per_page,
        "previous_page": if page > 1 { json!(page - 1) } else { Value::Null },
        "next_page": if page < last { json!(page + 1) } else { Value::Null },
        "last_page": last, "total_entries": total}})
}

fn query(raw: Option<String>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

fn first<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// Page and page size from the query: `per_page` 1..=`max`, default 25.
fn paging(q: &[(String, String)], max: usize) -> (usize, usize) {
    let page = first(q, "page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(1usize)
        .max(1);
    let per_page = first(q, "per_page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(25usize)
        .clamp(1, max);
    (page, per_page)
}

fn find_zone<'a>(i: &'a mut Inner, id_or_name: &str) -> Option<&'a mut Zone> {
    i.zones
        .iter_mut()
        .find(|z| z.id.to_string() == id_or_name || z.name == id_or_name)
}

async fn list_zones(
    State(s): State<Shared>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let mut i = s.lock().expect("fake state");
    if let Err(r) = gate(&mut i, &headers, "GET /zones".into()) {
        return r;
    }
    let q = query(raw);
    let (page, per_page) = paging(&q, 50);
    let all: Vec<Value> = i
        .zones
        .iter()
        .filter(|z| first(&q, "name").is_none_or(|n| n == z.name))
        .map(zone_json)
        .collect();
    let items: Vec<Value> = all
        .iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .cloned()
        .collect();
    ok(
        StatusCode::OK,
        json!({"zones": items, "meta": pagination(page, per_page, all.len())}),
    )
}

async fn list_rrsets(
    State(s): State<Shared>,
    Path(zone): Path<String>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let mut i = s.lock().expect("fake state");
    if let Err(r) = gate(&mut i, &headers, "GET /zones/{id}/rrsets".into()) {
        return r;
    }
    let q = query(raw);
    let Some(z) = find_zone(&mut i, &zone) else {
        return error(StatusCode::NOT_FOUND, "not_found", "zone not found");
    };
    if z.mode != "primary" {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "incorrect_zone_mode",
            "This operation is not supported for this Zone's mode.",
        );
    }
    let (page, per_page) = paging(&q, 100);
    let types: Vec<&str> = q
        .iter()
        .filter(|(k, _)| k == "type")
        .map(|(_, v)| v.as_str())
        .collect();
    let all: Vec<Value> = z
        .rrsets
        .iter()
        .filter(|r| first(&q, "name").is_none_or(|n| n == r.name))
        .filter(|r| types.is_empty() || types.contains(&r.rtype.as_str()))
        .map(|r| rrset_json(r, z.id))
        .collect();
    let items: Vec<Value> = all
        .iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .cloned()
        .collect();
    ok(
        StatusCode::OK,
        json!({"rrsets": items, "meta": pagination(page, per_page, all.len())}),
    )
}

/// One TXT value in presentation form: quoted strings of at most 255 bytes each.
fn valid_txt(value: &str) -> Result<(), String> {
    if !value.trim_start().starts_with('"') {
        return Err("TXT record values must be quoted".into());
    }
    mailsec_operator::domain::txt::parse_presentation(value)
        .map(|_| ())
        .map_err(|e| format!("invalid TXT record value: {e}"))
}

fn check_value(rtype: &str, value: &str) -> Result<(), String> {
    match rtype {
        "TXT" => valid_txt(value),
        "A" if value.parse::<std::net::Ipv4Addr>().is_err() => Err("invalid IPv4 address".into()),
        "AAAA" if value.parse::<std::net::Ipv6Addr>().is_err() => {
            Err("invalid IPv6 address".into())
        }
        "CNAME" if value.is_empty() || value.contains(' ') => Err("invalid host name".into()),
        "A" | "AAAA" | "CNAME" => Ok(()),
        _ => Err("record type not reproduced by this fake".into()),
    }
}

async fn rrset_action(
    State(s): State<Shared>,
    Path((zone, name, rtype, action)): Path<(String, String, String, String)>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let mut i = s.lock().expect("fake state");
    if let Err(r) = gate(
        &mut i,
        &headers,
        format!("POST /zones/{{id}}/rrsets/{{name}}/{{type}}/actions/{action}"),
    ) {
        return r;
    }
    let Ok(body) = serde_json::from_str::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "json_error", "invalid JSON");
    };
    let failing = i.failing > 0;
    let Some(z) = find_zone(&mut i, &zone) else {
        return error(StatusCode::NOT_FOUND, "not_found", "zone not found");
    };
    if z.mode != "primary" {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "incorrect_zone_mode",
            "This operation is not supported for this Zone's mode.",
        );
    }
    if name != name.to_ascii_lowercase() || name.ends_with('.') || name.ends_with(&z.name) {
        return invalid(
            "name",
            "must be lower case and relative to the zone, without a trailing dot",
        );
    }
    let existing = z
        .rrsets
        .iter()
        .find(|r| r.name == name && r.rtype == rtype)
        .cloned();
    let values: Vec<String> = body["records"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| r["value"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default();
    let ttl = body["ttl"].as_u64().map(|t| t as u32);
    let change = match action.as_str() {
        "add_records" | "remove_records" => {
            if values.is_empty() {
                return invalid("records", "must not be empty");
            }
            let mut distinct = values.clone();
            distinct.sort();
            distinct.dedup();
            if distinct.len() != values.len() {
                return invalid("records", "must only contain distinct record values");
            }
            if action == "add_records" {
                for v in &values {
                    if let Err(m) = check_value(&rtype, v) {
                        return invalid("records", &m);
                    }
                    if existing.as_ref().is_some_and(|r| r.values.contains(v)) {
                        return invalid("records", "record already exists in the RRSet");
                    }
                }
                let others = z.rrsets.iter().any(|r| r.name == name && r.rtype != rtype);
                let cname_count = values.len() + existing.as_ref().map_or(0, |r| r.values.len());
                if (rtype == "CNAME" && (others || cname_count > 1))
                    || (rtype != "CNAME"
                        && z.rrsets
                            .iter()
                            .any(|r| r.name == name && r.rtype == "CNAME"))
                {
                    return invalid(
                        "records",
                        "a CNAME RRSet must be the only RRSet at its name and hold one record",
                    );
                }
                Change::Add {
                    name: name.clone(),
                    rtype: rtype.clone(),
                    values,
                    ttl,
                }
            } else {
                let Some(r) = &existing else {
                    return error(StatusCode::NOT_FOUND, "not_found", "RRSet not found");
                };
                if let Some(v) = values.iter().find(|v| !r.values.contains(v)) {
                    return invalid("records", &format!("record {v} not found in the RRSet"));
                }
                Change::Remove {
                    name: name.clone(),
                    rtype: rtype.clone(),
                    values,
                }
            }
        }
        "change_ttl" => {
            if existing.is_none() {
                return error(StatusCode::NOT_FOUND, "not_found", "RRSet not found");
            }
            let Some(ttl) = ttl else {
                return invalid("ttl", "is required");
            };
            Change::Ttl {
                name: name.clone(),
                rtype: rtype.clone(),
                ttl,
            }
        }
        _ => return error(StatusCode::NOT_FOUND, "not_found", "no such action"),
    };
    let zone_id = z.id;
    if failing {
        i.failing -= 1;
    }
    i.next_id += 1;
    let id = i.next_id;
    let fake_action = FakeAction {
        command: action
            .replace("add_records", "add_rrset_records")
            .replace("remove_records", "remove_rrset_records")
            .replace("change_ttl", "change_rrset_ttl"),
        zone: zone_id,
        started: Instant::now(),
        started_at: timestamp(),
        polls: 0,
        change,
        fail: failing,
        status: "running".into(),
        finished_at: None,
        error: None,
    };
    let out = action_json(id, &fake_action);
    i.actions.insert(id, fake_action);
    ok(StatusCode::CREATED, json!({"action": out}))
}

async fn get_action(
    State(s): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let mut i = s.lock().expect("fake state");
    if let Err(r) = gate(&mut i, &headers, "GET /actions/{id}".into()) {
        return r;
    }
    let Ok(id) = id.parse::<u64>() else {
        return error(StatusCode::NOT_FOUND, "not_found", "action not found");
    };
    settle(&mut i, Some(id));
    match i.actions.get(&id) {
        Some(a) => ok(StatusCode::OK, json!({"action": action_json(id, a)})),
        None => error(StatusCode::NOT_FOUND, "not_found", "action not found"),
    }
}

async fn list_zone_actions(
    State(s): State<Shared>,
    Path(zone): Path<String>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let mut i = s.lock().expect("fake state");
    if let Err(r) = gate(&mut i, &headers, "GET /zones/{id}/actions".into()) {
        return r;
    }
    settle(&mut i, None);
    let q = query(raw);
    let Some(zone_id) = find_zone(&mut i, &zone).map(|z| z.id) else {
        return error(StatusCode::NOT_FOUND, "not_found", "zone not found");
    };
    let statuses: Vec<&str> = q
        .iter()
        .filter(|(k, _)| k == "status")
        .map(|(_, v)| v.as_str())
        .collect();
    let actions: Vec<Value> = i
        .actions
        .iter()
        .filter(|(_, a)| a.zone == zone_id)
        .filter(|(_, a)| statuses.is_empty() || statuses.contains(&a.status.as_str()))
        .map(|(id, a)| action_json(*id, a))
        .collect();
    let total = actions.len();
    ok(
        StatusCode::OK,
        json!({"actions": actions, "meta": {"pagination": {
            "page": 1, "per_page": 100, "previous_page": null, "next_page": null,
            "last_page": 1, "total_entries": total}}}),
    )
}
