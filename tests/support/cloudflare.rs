//! A stateful fake of the Cloudflare v4 DNS API, on loopback, for the tests of the cloudflare
//! provider: no Cloudflare server exists outside Cloudflare. Shaped by Cloudflare's published
//! API reference (developers.cloudflare.com/api, the `dns/records` and `zones` resources) and
//! the behaviour reported in public issue threads. It reproduces:
//!
//! - the envelope `{success, errors: [{code, message}], messages, result, result_info: {page,
//!   per_page, count, total_count, total_pages}}` on every answer;
//! - Bearer API tokens: no or malformed `Authorization` → 400, code 6003 "Invalid request
//!   headers" (error chain 6111); an unknown token → 403, code 10000 "Authentication error";
//!   a token sees only the zones it was given;
//! - `GET /zones?name=` (an unknown or unseen name is an empty list, not an error);
//! - `GET /zones/{id}/dns_records?type=&name=&page=&per_page=`: exact name, one record per
//!   value, pages (`per_page` 5..=5000, default 100);
//! - `POST /zones/{id}/dns_records` and `DELETE /zones/{id}/dns_records/{rid}`; an identical
//!   record (type, name, content) → 400, code 81058 "An identical record already exists."; an
//!   unknown record → 404, code 81044; an unknown zone id → 404, code 7003;
//! - TXT content: quoted strings up to 255 bytes each are kept as sent; a single quoted string
//!   over 255 bytes is stored split into 255-byte quoted strings (so it reads back chunked);
//!   unquoted content is stored as given (records made in the dashboard or by older clients);
//! - `POST /zones/{id}/dns_records/batch`: deletes, patches, puts, posts, in that order, in one
//!   transaction: any failure leaves the zone as it was and answers the error;
//! - 429 with `Retry-After` (switched on by a test), and 500 (likewise).
//!
//! - CNAME, A and AAAA records (the policy host's address): content checked (an IPv4 or IPv6
//!   address, a host name), and a CNAME beside any other record at its name, or anything
//!   beside a CNAME, refused with 400, code 81053 "An A, AAAA, or CNAME record with that host
//!   already exists." (81054 for a CNAME beside other records); `proxied` stored and shown.
//!
//! Not reproduced: other record types, the proxy itself, comments and tags, `name.exact` and
//! other filter operators, the propagation delay to the edge.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde_json::{Value, json};

#[derive(Debug, Clone)]
pub struct FakeRecord {
    pub id: String,
    pub rtype: String,
    pub name: String,
    pub content: String,
    pub ttl: u32,
    pub proxied: bool,
}

#[derive(Default)]
struct Zone {
    name: String,
    records: Vec<FakeRecord>,
}

#[derive(Default)]
struct Inner {
    zones: BTreeMap<String, Zone>,
    /// token → the zone ids it may see and change.
    tokens: BTreeMap<String, Vec<String>>,
    next_id: u64,
    /// The next this many requests answer 429 (with this Retry-After), or 500.
    throttle: (u32, u64),
    broken: u32,
    /// Requests served, by `METHOD path` (without the query).
    pub calls: Vec<String>,
}

/// A running fake.
#[derive(Clone)]
pub struct Fake {
    pub url: String,
    pub token: String,
    pub zone_id: String,
    pub zone: String,
    inner: Arc<Mutex<Inner>>,
}

type Shared = Arc<Mutex<Inner>>;

impl Fake {
    /// Starts the fake with one zone, and one token that may use it.
    pub async fn start(zone: &str) -> Fake {
        let inner: Shared = Arc::new(Mutex::new(Inner::default()));
        let zone_id = "023e105f4ecef8ad9ca31a8372d0c353".to_owned();
        let token = format!("cf-token-{}", super::random_suffix());
        {
            let mut i = inner.lock().expect("fake state");
            i.zones.insert(
                zone_id.clone(),
                Zone {
                    name: zone.to_owned(),
                    records: Vec::new(),
                },
            );
            i.tokens.insert(token.clone(), vec![zone_id.clone()]);
        }
        let app = Router::new()
            .route("/client/v4/zones", get(list_zones))
            .route(
                "/client/v4/zones/{zone}/dns_records",
                get(list_records).post(create_record),
            )
            .route("/client/v4/zones/{zone}/dns_records/batch", post(batch))
            .route(
                "/client/v4/zones/{zone}/dns_records/{id}",
                delete(delete_record),
            )
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr: SocketAddr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Fake {
            url: format!("http://{addr}/client/v4"),
            token,
            zone_id,
            zone: zone.to_owned(),
            inner,
        }
    }

    /// Adds a record as someone else would (the dashboard, another tool).
    pub fn add_raw(&self, name: &str, content: &str, ttl: u32) {
        let mut i = self.inner.lock().expect("fake state");
        let id = new_id(&mut i);
        let zone = i.zones.get_mut(&self.zone_id).expect("the zone");
        zone.records.push(FakeRecord {
            id,
            rtype: "TXT".into(),
            name: name.to_owned(),
            content: stored_content(content),
            ttl,
            proxied: false,
        });
    }

    /// Adds an address record (A, AAAA, CNAME) as someone else would.
    pub fn add_raw_address(&self, name: &str, rtype: &str, content: &str) {
        let mut i = self.inner.lock().expect("fake state");
        let id = new_id(&mut i);
        let zone = i.zones.get_mut(&self.zone_id).expect("the zone");
        zone.records.push(FakeRecord {
            id,
            rtype: rtype.to_owned(),
            name: name.to_owned(),
            content: content.to_owned(),
            ttl: 300,
            proxied: false,
        });
    }

    /// The records at `name`, in creation order.
    pub fn records(&self, name: &str) -> Vec<FakeRecord> {
        self.all_records(name)
            .into_iter()
            .filter(|r| r.rtype == "TXT")
            .collect()
    }

    /// The records of every type at `name`, in creation order.
    pub fn all_records(&self, name: &str) -> Vec<FakeRecord> {
        let i = self.inner.lock().expect("fake state");
        i.zones[&self.zone_id]
            .records
            .iter()
            .filter(|r| r.name == name)
            .cloned()
            .collect()
    }

    /// The next `n` requests answer 429 with `Retry-After: seconds`.
    pub fn throttle(&self, n: u32, seconds: u64) {
        self.inner.lock().expect("fake state").throttle = (n, seconds);
    }

    /// The next `n` requests answer 500.
    pub fn break_next(&self, n: u32) {
        self.inner.lock().expect("fake state").broken = n;
    }

    /// How many requests have been served so far.
    pub fn calls(&self) -> usize {
        self.inner.lock().expect("fake state").calls.len()
    }
}

fn new_id(i: &mut Inner) -> String {
    i.next_id += 1;
    format!("{:032x}", i.next_id)
}

/// How the API stores TXT content: one quoted string over 255 bytes becomes 255-byte chunks.
fn stored_content(content: &str) -> String {
    let t = content.trim();
    let single = t.len() >= 2
        && t.starts_with('"')
        && t.ends_with('"')
        && !t[1..t.len() - 1].contains("\" \"");
    if single && t.len() - 2 > 255 && !t.contains('\\') {
        let inner = &t.as_bytes()[1..t.len() - 1];
        return inner
            .chunks(255)
            .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
            .collect::<Vec<_>>()
            .join(" ");
    }
    content.to_owned()
}

fn envelope(status: StatusCode, result: Value, info: Option<Value>) -> Response {
    let mut body = json!({"success": true, "errors": [], "messages": [], "result": result});
    if let Some(info) = info {
        body["result_info"] = info;
    }
    (status, axum::Json(body)).into_response()
}

fn error(status: StatusCode, code: u32, message: &str) -> Response {
    (
        status,
        axum::Json(
            json!({"success": false, "errors": [{"code": code, "message": message}],
            "messages": [], "result": null}),
        ),
    )
        .into_response()
}

/// Counts the call, applies throttling and breakage, and checks the token; the zones the
/// token may use, or the answer to give instead (a whole response, hence the large error).
#[allow(clippy::result_large_err)]
fn gate(i: &mut Inner, headers: &HeaderMap, call: String) -> Result<Vec<String>, Response> {
    i.calls.push(call);
    if i.throttle.0 > 0 {
        i.throttle.0 -= 1;
        let mut r = error(
            StatusCode::TOO_MANY_REQUESTS,
            10000,
            "Rate limited. Please wait and consider throttling your request speed",
        );
        if let Ok(v) = i.throttle.1.to_string().parse() {
            r.headers_mut().insert("retry-after", v);
        }
        return Err(r);
    }
    if i.broken > 0 {
        i.broken -= 1;
        return Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            10000,
            "Internal server error",
        ));
    }
    let token = headers
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "));
    let Some(token) = token.filter(|t| !t.is_empty() && !t.contains(' ')) else {
        return Err((
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"success": false, "errors": [{"code": 6003, "message": "Invalid request headers",
                "error_chain": [{"code": 6111, "message": "Invalid format for Authorization header"}]}],
                "messages": [], "result": null})),
        )
            .into_response());
    };
    i.tokens
        .get(token)
        .cloned()
        .ok_or_else(|| error(StatusCode::FORBIDDEN, 10000, "Authentication error"))
}

fn record_json(r: &FakeRecord, zone: &str) -> Value {
    let proxiable = r.rtype != "TXT";
    json!({"id": r.id, "type": r.rtype, "name": r.name, "content": r.content, "ttl": r.ttl,
        "proxiable": proxiable, "proxied": r.proxied, "zone_name": zone, "settings": {}, "meta": {},
        "comment": null, "tags": []})
}

async fn list_zones(
    State(s): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let mut i = s.lock().expect("fake state");
    let allowed = match gate(&mut i, &headers, "GET /zones".into()) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let found: Vec<Value> = i
        .zones
        .iter()
        .filter(|(id, z)| allowed.contains(id) && q.get("name").is_none_or(|n| *n == z.name))
        .map(|(id, z)| json!({"id": id, "name": z.name, "status": "active"}))
        .collect();
    let n = found.len();
    envelope(
        StatusCode::OK,
        Value::Array(found),
        Some(json!({"page": 1, "per_page": 20, "count": n, "total_count": n, "total_pages": 1})),
    )
}

async fn list_records(
    State(s): State<Shared>,
    Path(zone): Path<String>,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let mut i = s.lock().expect("fake state");
    let allowed = match gate(&mut i, &headers, "GET /dns_records".into()) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let Some(z) = i.zones.get(&zone).filter(|_| allowed.contains(&zone)) else {
        return no_route(&zone);
    };
    let per_page: usize = q
        .get("per_page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(100);
    let per_page = per_page.clamp(5, 5000);
    let page: usize = q
        .get("page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(1)
        .max(1);
    let all: Vec<&FakeRecord> = z
        .records
        .iter()
        .filter(|r| q.get("type").is_none_or(|t| *t == r.rtype))
        .filter(|r| q.get("name").is_none_or(|n| *n == r.name))
        .collect();
    let total_pages = all.len().div_ceil(per_page).max(1);
    let items: Vec<Value> = all
        .iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .map(|r| record_json(r, &z.name))
        .collect();
    let count = items.len();
    envelope(
        StatusCode::OK,
        Value::Array(items),
        Some(json!({"page": page, "per_page": per_page, "count": count,
            "total_count": all.len(), "total_pages": total_pages})),
    )
}

fn no_route(zone: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        7003,
        &format!(
            "Could not route to /zones/{zone}/dns_records, perhaps your object identifier is invalid?"
        ),
    )
}

/// Validates one new record against the zone as it is (`records`), and returns it.
fn check_new(
    records: &[FakeRecord],
    body: &Value,
    zone: &str,
) -> Result<FakeRecord, (StatusCode, u32, String)> {
    let bad = |m: &str| (StatusCode::BAD_REQUEST, 9000, m.to_owned());
    let rtype = body["type"].as_str().unwrap_or_default().to_owned();
    if !matches!(rtype.as_str(), "TXT" | "CNAME" | "A" | "AAAA") {
        return Err(bad("DNS record type is invalid."));
    }
    let name = body["name"]
        .as_str()
        .ok_or_else(|| bad("name is required"))?
        .to_owned();
    if name != zone && !name.ends_with(&format!(".{zone}")) {
        return Err((
            StatusCode::BAD_REQUEST,
            9005,
            "Content for name is invalid: not in the zone.".into(),
        ));
    }
    let raw = body["content"]
        .as_str()
        .ok_or_else(|| bad("content is required"))?;
    let content = match rtype.as_str() {
        "TXT" => stored_content(raw),
        "A" if raw.parse::<std::net::Ipv4Addr>().is_err() => {
            return Err((
                StatusCode::BAD_REQUEST,
                9005,
                "Content for A record is invalid. Must be a valid IPv4 address".into(),
            ));
        }
        "AAAA" if raw.parse::<std::net::Ipv6Addr>().is_err() => {
            return Err((
                StatusCode::BAD_REQUEST,
                9005,
                "Content for AAAA record is invalid. Must be a valid IPv6 address".into(),
            ));
        }
        "CNAME" if raw.is_empty() || raw.contains(' ') => {
            return Err((
                StatusCode::BAD_REQUEST,
                9007,
                "Content for CNAME record is invalid.".into(),
            ));
        }
        _ => raw.to_owned(),
    };
    let ttl = body["ttl"].as_u64().unwrap_or(1) as u32;
    if records
        .iter()
        .any(|r| r.name == name && r.rtype == rtype && r.content == content)
    {
        return Err((
            StatusCode::BAD_REQUEST,
            81058,
            "An identical record already exists.".into(),
        ));
    }
    let at_name = || records.iter().filter(|r| r.name == name);
    if rtype == "CNAME" && at_name().next().is_some() {
        return Err((
            StatusCode::BAD_REQUEST,
            81054,
            "A CNAME record with that host already exists.".into(),
        ));
    }
    if at_name().any(|r| r.rtype == "CNAME") {
        return Err((
            StatusCode::BAD_REQUEST,
            81053,
            "An A, AAAA, or CNAME record with that host already exists.".into(),
        ));
    }
    Ok(FakeRecord {
        id: String::new(),
        rtype,
        name,
        content,
        ttl,
        proxied: body["proxied"].as_bool().unwrap_or(false),
    })
}

async fn create_record(
    State(s): State<Shared>,
    Path(zone): Path<String>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    let mut i = s.lock().expect("fake state");
    let allowed = match gate(&mut i, &headers, "POST /dns_records".into()) {
        Ok(a) => a,
        Err(r) => return r,
    };
    if !allowed.contains(&zone) || !i.zones.contains_key(&zone) {
        return no_route(&zone);
    }
    let id = new_id(&mut i);
    let z = i.zones.get_mut(&zone).expect("the zone");
    match check_new(&z.records, &body, &z.name) {
        Ok(new) => {
            let r = FakeRecord { id, ..new };
            let out = record_json(&r, &z.name);
            z.records.push(r);
            envelope(StatusCode::OK, out, None)
        }
        Err((status, code, message)) => error(status, code, &message),
    }
}

async fn delete_record(
    State(s): State<Shared>,
    Path((zone, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let mut i = s.lock().expect("fake state");
    let allowed = match gate(&mut i, &headers, "DELETE /dns_records".into()) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let Some(z) = i.zones.get_mut(&zone).filter(|_| allowed.contains(&zone)) else {
        return no_route(&zone);
    };
    let before = z.records.len();
    z.records.retain(|r| r.id != id);
    if z.records.len() == before {
        return error(StatusCode::NOT_FOUND, 81044, "Record does not exist.");
    }
    envelope(StatusCode::OK, json!({"id": id}), None)
}

async fn batch(
    State(s): State<Shared>,
    Path(zone): Path<String>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    let mut i = s.lock().expect("fake state");
    let allowed = match gate(&mut i, &headers, "POST /dns_records/batch".into()) {
        Ok(a) => a,
        Err(r) => return r,
    };
    if !allowed.contains(&zone) || !i.zones.contains_key(&zone) {
        return no_route(&zone);
    }
    if body
        .get("patches")
        .is_some_and(|p| p.as_array().is_some_and(|a| !a.is_empty()))
        || body
            .get("puts")
            .is_some_and(|p| p.as_array().is_some_and(|a| !a.is_empty()))
    {
        return error(
            StatusCode::BAD_REQUEST,
            9000,
            "patches and puts are not reproduced by this fake",
        );
    }
    // One transaction: work on a copy, keep it only if every operation succeeds.
    let mut records = i.zones[&zone].records.clone();
    let zone_name = i.zones[&zone].name.clone();
    let mut deleted = Vec::new();
    for d in body["deletes"].as_array().cloned().unwrap_or_default() {
        let id = d["id"].as_str().unwrap_or_default().to_owned();
        let Some(pos) = records.iter().position(|r| r.id == id) else {
            return error(StatusCode::BAD_REQUEST, 81044, "Record does not exist.");
        };
        deleted.push(record_json(&records.remove(pos), &zone_name));
    }
    let mut posted = Vec::new();
    for p in body["posts"].as_array().cloned().unwrap_or_default() {
        match check_new(&records, &p, &zone_name) {
            Ok(new) => {
                let r = FakeRecord {
                    id: new_id(&mut i),
                    ..new
                };
                posted.push(record_json(&r, &zone_name));
                records.push(r);
            }
            Err((status, code, message)) => return error(status, code, &message),
        }
    }
    i.zones.get_mut(&zone).expect("the zone").records = records;
    envelope(
        StatusCode::OK,
        json!({"deletes": deleted, "patches": [], "puts": [], "posts": posted}),
        None,
    )
}
