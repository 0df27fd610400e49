//! A stateful fake of the DigitalOcean v2 API's domain records, on loopback, for the tests of
//! the digitalocean provider: no DigitalOcean server runs outside DigitalOcean. Shaped by
//! DigitalOcean's published OpenAPI document (github.com/digitalocean/openapi:
//! `specification/resources/domains`, the shared `responses`, `pages.yml`, `headers.yml` and
//! the description's "Rate Limit" and "Links & Pagination" sections) and, where that is
//! silent, by DNSControl's notes on DigitalOcean. It reproduces:
//!
//! - Bearer tokens: none or an unknown one → 401 `{"id": "unauthorized", "message": "Unable
//!   to authenticate you."}`; every error is `{id, message}`;
//! - `GET /v2/domains/{domain}/records?name=&type=&page=&per_page=`: `name` is the fully
//!   qualified name, records carry relative names (`@` for the apex); `{"domain_records":
//!   [...], "links": {"pages": {first, prev, next, last}}, "meta": {"total"}}`, `per_page`
//!   default 20, at most 200, links only for the pages that make sense (`{}` when there is one
//!   page); an unknown domain → 404 `not_found`;
//! - `POST /v2/domains/{domain}/records` → 201 `{"domain_record": {...}}` with a new integer
//!   id, every attribute present (`null` where the type does not use it); `DELETE
//!   /v2/domains/{domain}/records/{id}` → 204 with no body, an unknown id → 404;
//! - TXT `data` unquoted and joined, split into ≤255-byte strings only when served
//!   ([`Fake::published`]); **a TXT value whose encoding as quoted 255-byte strings is longer
//!   than 512 bytes → 422 `unprocessable_entity`** (DigitalOcean's undocumented limit, as
//!   DNSControl measured it, issue #370), an empty one likewise;
//! - CNAME `data` must be a host name ending with a dot, stored and read back without it; a
//!   CNAME beside other records at its name, or anything beside a CNAME → 422; A/AAAA data must
//!   be addresses; a TTL under 30 → 422;
//! - the `ratelimit-limit`/`-remaining`/`-reset` headers on every answer, and 429
//!   `too_many_requests` when a test asks, with `retry-after` when it asks for that too (the
//!   burst limit's answer).
//!
//! Assumed (stricter than what is known, to catch a sloppy client): creating a record identical
//! to one there (type, name, data) → 422. The 422 messages are ours, not DigitalOcean's.
//!
//! Not reproduced: other record types, `PUT`/`PATCH` of a record, the domains collection, the
//! real limits' accounting (5,000/h, 250/min), DigitalOcean's backslash handling.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use mailsec_operator::domain::txt;
use serde_json::{Value, json};

/// DigitalOcean's limit on a TXT value's encoded length.
pub const MAX_ENCODED: usize = 512;

#[derive(Debug, Clone)]
pub struct FakeRecord {
    pub id: u64,
    pub rtype: String,
    /// Relative to the domain, `@` for the apex.
    pub name: String,
    pub data: String,
    pub ttl: u32,
}

#[derive(Default)]
struct Inner {
    /// Domain name → its records, in creation order.
    domains: BTreeMap<String, Vec<FakeRecord>>,
    token: String,
    next_id: u64,
    throttle: (u32, u64, bool),
    calls: Vec<String>,
    /// Where the fake listens, for the pagination links.
    base: String,
}

type Shared = Arc<Mutex<Inner>>;

/// A running fake.
#[derive(Clone)]
pub struct Fake {
    /// The API base, as `apiUrl` takes it (`http://127.0.0.1:<port>`).
    pub url: String,
    pub token: String,
    pub zone: String,
    inner: Shared,
}

impl Fake {
    /// Starts the fake with one domain and one token.
    pub async fn start(zone: &str) -> Fake {
        let token = format!("dop_v1_{}", super::random_suffix());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr: SocketAddr = listener.local_addr().expect("addr");
        let inner: Shared = Arc::new(Mutex::new(Inner {
            domains: BTreeMap::from([(zone.to_owned(), Vec::new())]),
            token: token.clone(),
            next_id: 28_448_428,
            base: format!("http://{addr}"),
            ..Inner::default()
        }));
        let app = Router::new()
            .route(
                "/v2/domains/{domain}/records",
                get(list_records).post(create_record),
            )
            .route("/v2/domains/{domain}/records/{id}", delete(delete_record))
            .with_state(inner.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Fake {
            url: format!("http://{addr}"),
            token,
            zone: zone.to_owned(),
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

    /// Adds a TXT record given in presentation form at `name` (a full name) as someone else
    /// would (the control panel, another tool): DigitalOcean keeps its joined value.
    pub fn add_raw(&self, name: &str, presentation: &str, ttl: u32) {
        let strings = txt::parse_presentation_lenient(presentation).expect("presentation");
        self.add_record(name, "TXT", &txt::join(&strings), ttl);
    }

    /// Adds a record of any type, unchecked.
    pub fn add_record(&self, name: &str, rtype: &str, data: &str, ttl: u32) {
        let rel = self.relative(name);
        let mut i = self.inner.lock().expect("fake state");
        i.next_id += 1;
        let id = i.next_id;
        i.domains
            .get_mut(&self.zone)
            .expect("the domain")
            .push(FakeRecord {
                id,
                rtype: rtype.to_owned(),
                name: rel,
                data: data.trim_end_matches('.').to_owned(),
                ttl,
            });
    }

    /// The records of `rtype` at `name` (a full name), in creation order.
    pub fn records(&self, name: &str, rtype: &str) -> Vec<FakeRecord> {
        let rel = self.relative(name);
        let i = self.inner.lock().expect("fake state");
        i.domains[&self.zone]
            .iter()
            .filter(|r| r.name == rel && r.rtype == rtype)
            .cloned()
            .collect()
    }

    /// The TXT records at `name` as DigitalOcean serves them in DNS: each value split into
    /// ≤255-byte character-strings, in zone-file presentation.
    pub fn published(&self, name: &str) -> Vec<String> {
        self.records(name, "TXT")
            .iter()
            .map(|r| txt::to_presentation(&r.data))
            .collect()
    }

    /// The next `n` requests answer 429, the oldest request expiring in `seconds`; with
    /// `retry-after: seconds` (the burst limit's answer) when `retry_after`.
    pub fn throttle(&self, n: u32, seconds: u64, retry_after: bool) {
        self.inner.lock().expect("fake state").throttle = (n, seconds, retry_after);
    }

    /// How many requests have been served so far.
    pub fn calls(&self) -> usize {
        self.inner.lock().expect("fake state").calls.len()
    }
}

fn rate_headers(r: Response, remaining: u64, reset_in: u64) -> Response {
    super::api_fake::rate_limit_headers(r, "5000", remaining, reset_in)
}

fn ok(status: StatusCode, body: Value) -> Response {
    rate_headers((status, axum::Json(body)).into_response(), 4999, 3600)
}

fn error(status: StatusCode, id: &str, message: &str) -> Response {
    rate_headers(
        (status, axum::Json(json!({"id": id, "message": message}))).into_response(),
        4999,
        3600,
    )
}

fn unprocessable(message: &str) -> Response {
    error(
        StatusCode::UNPROCESSABLE_ENTITY,
        "unprocessable_entity",
        message,
    )
}

fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        "The resource you requested could not be found.",
    )
}

#[allow(clippy::result_large_err)]
fn gate(i: &mut Inner, headers: &HeaderMap, call: String) -> Result<(), Response> {
    i.calls.push(call);
    if i.throttle.0 > 0 {
        i.throttle.0 -= 1;
        let (_, seconds, retry_after) = i.throttle;
        let body = json!({"id": "too_many_requests", "message": "API rate limit exceeded."});
        return Err(super::api_fake::too_many_requests(
            body,
            "5000",
            seconds,
            retry_after,
        ));
    }
    let token = super::api_fake::bearer(headers);
    if token != Some(i.token.as_str()) {
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Unable to authenticate you.",
        ));
    }
    Ok(())
}

fn record_json(r: &FakeRecord) -> Value {
    json!({"id": r.id, "type": r.rtype, "name": r.name, "data": r.data, "priority": null,
        "port": null, "ttl": r.ttl, "weight": null, "flags": null, "tag": null})
}

fn fqdn(rel: &str, domain: &str) -> String {
    if rel == "@" {
        domain.to_owned()
    } else {
        format!("{rel}.{domain}")
    }
}

async fn list_records(
    State(s): State<Shared>,
    Path(domain): Path<String>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let mut i = s.lock().expect("fake state");
    if let Err(r) = gate(&mut i, &headers, "GET /records".into()) {
        return r;
    }
    let q: BTreeMap<String, String> =
        url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let Some(records) = i.domains.get(&domain) else {
        return not_found();
    };
    let page: usize = q
        .get("page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(1usize)
        .max(1);
    let per_page: usize = q
        .get("per_page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(20usize)
        .clamp(1, 200);
    let all: Vec<&FakeRecord> = records
        .iter()
        .filter(|r| q.get("type").is_none_or(|t| *t == r.rtype))
        .filter(|r| q.get("name").is_none_or(|n| *n == fqdn(&r.name, &domain)))
        .collect();
    let last = all.len().div_ceil(per_page).max(1);
    let items: Vec<Value> = all
        .iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .map(|r| record_json(r))
        .collect();
    let link = |p: usize| {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in q.iter().filter(|(k, _)| *k != "page") {
            query.append_pair(k, v);
        }
        query.append_pair("page", &p.to_string());
        format!("{}/v2/domains/{domain}/records?{}", i.base, query.finish())
    };
    let mut pages = serde_json::Map::new();
    if page > 1 {
        pages.insert("first".into(), json!(link(1)));
        pages.insert("prev".into(), json!(link(page - 1)));
    }
    if page < last {
        pages.insert("last".into(), json!(link(last)));
        pages.insert("next".into(), json!(link(page + 1)));
    }
    let links = if pages.is_empty() {
        json!({})
    } else {
        json!({"pages": pages})
    };
    ok(
        StatusCode::OK,
        json!({"domain_records": items, "links": links, "meta": {"total": all.len()}}),
    )
}

async fn create_record(
    State(s): State<Shared>,
    Path(domain): Path<String>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let mut i = s.lock().expect("fake state");
    if let Err(r) = gate(&mut i, &headers, "POST /records".into()) {
        return r;
    }
    let Ok(body) = serde_json::from_str::<Value>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "unable to parse the request body",
        );
    };
    if !i.domains.contains_key(&domain) {
        return not_found();
    }
    let rtype = body["type"].as_str().unwrap_or_default().to_owned();
    let Some(name) = body["name"].as_str().map(str::to_owned) else {
        return unprocessable("Name is required.");
    };
    let Some(data) = body["data"].as_str().map(str::to_owned) else {
        return unprocessable("Data is required.");
    };
    let ttl = body["ttl"].as_u64().unwrap_or(1800) as u32;
    if ttl < 30 {
        return unprocessable("TTL must be at least 30 seconds.");
    }
    let data = match rtype.as_str() {
        "TXT" => {
            if data.is_empty() {
                return unprocessable("Data is required.");
            }
            let encoded = txt::to_presentation(&data).len();
            if encoded > MAX_ENCODED {
                return unprocessable(&format!(
                    "TXT data is {encoded} bytes once encoded, more than {MAX_ENCODED}."
                ));
            }
            data
        }
        "A" if data.parse::<std::net::Ipv4Addr>().is_err() => {
            return unprocessable("Data must be an IPv4 address.");
        }
        "AAAA" if data.parse::<std::net::Ipv6Addr>().is_err() => {
            return unprocessable("Data must be an IPv6 address.");
        }
        "CNAME" if !data.ends_with('.') || data.contains(' ') => {
            return unprocessable("Data needs to end with a dot (.)");
        }
        "CNAME" => data.trim_end_matches('.').to_owned(),
        "A" | "AAAA" => data,
        _ => return unprocessable("This record type is not reproduced by the fake."),
    };
    let records = &i.domains[&domain];
    let at_name = || records.iter().filter(|r| r.name == name);
    if at_name().any(|r| r.rtype == rtype && r.data == data) {
        return unprocessable("An identical record already exists.");
    }
    if (rtype == "CNAME" && at_name().next().is_some()) || at_name().any(|r| r.rtype == "CNAME") {
        return unprocessable("CNAME records cannot share a name with other records.");
    }
    i.next_id += 1;
    let record = FakeRecord {
        id: i.next_id,
        rtype,
        name,
        data,
        ttl,
    };
    let out = record_json(&record);
    i.domains.get_mut(&domain).expect("the domain").push(record);
    ok(StatusCode::CREATED, json!({"domain_record": out}))
}

async fn delete_record(
    State(s): State<Shared>,
    Path((domain, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let mut i = s.lock().expect("fake state");
    if let Err(r) = gate(&mut i, &headers, "DELETE /records/{id}".into()) {
        return r;
    }
    let Some(records) = i.domains.get_mut(&domain) else {
        return not_found();
    };
    let before = records.len();
    records.retain(|r| r.id.to_string() != id);
    if records.len() == before {
        return not_found();
    }
    rate_headers(StatusCode::NO_CONTENT.into_response(), 4999, 3600)
}
