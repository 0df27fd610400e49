//! A stateful fake of Azure DNS (Azure Resource Manager's `Microsoft.Network/dnsZones` record
//! sets, api-version 2018-05-01) and of the Microsoft Entra token endpoint, on loopback, for
//! the tests of the azure provider: there is no Azure DNS emulator (Azurite is storage only).
//! Shaped by the published REST API description, Azure/azure-rest-api-specs
//! `specification/dns/resource-manager/Microsoft.Network/stable/2018-05-01/dns.json` and its
//! examples (`CreateOrUpdateTXTRecordset.json`, `GetTXTRecordset.json`,
//! `DeleteTXTRecordset.json`, `CreateOrUpdateCNAMERecordset.json`, ...), and by the Microsoft
//! identity platform's client-credentials documentation. It reproduces:
//!
//! - the token endpoint `POST /{tenant}/oauth2/v2.0/token` (its own listener, as
//!   login.microsoftonline.com is another host): a form with `grant_type=client_credentials`,
//!   `scope=https://management.azure.com/.default`, `client_id`, and either `client_secret` or
//!   `client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer` with
//!   `client_assertion` (Workload Identity's federated token); the answer
//!   `{token_type: Bearer, expires_in, ext_expires_in, access_token}`; errors as the service
//!   sends them (`{error, error_description: "AADSTS…", error_codes, timestamp, trace_id,
//!   correlation_id}`): a wrong secret 401 `invalid_client` AADSTS7000215, an unknown client 400
//!   `unauthorized_client` AADSTS700016, an unknown tenant 400 `invalid_request` AADSTS90002,
//!   an assertion that matches no federated credential 400 `invalid_client` AADSTS70021;
//! - bearer tokens on ARM: none → 401 `AuthenticationFailed`, unknown → 401
//!   `InvalidAuthenticationToken`, expired → 401 `ExpiredAuthenticationToken`; `api-version`
//!   missing → 400 `MissingApiVersionParameter`, another one → 400
//!   `NoRegisteredProviderFound`; every error as `CloudError` (`{"error": {"code", "message"}}`);
//! - `GET`/`PUT`/`DELETE` of `…/subscriptions/{id}/resourceGroups/{rg}/providers/
//!   Microsoft.Network/dnsZones/{zone}/{type}/{name}` for TXT, A, AAAA and CNAME (`@` the
//!   apex, names case-insensitive): the record set body (`id`, `name`, `type`, `etag`,
//!   `properties` with `metadata`, `TTL`, `fqdn`, `provisioningState` and the type's records:
//!   `TXTRecords[].value[]`, `ARecords[].ipv4Address`, `AAAARecords[].ipv6Address`,
//!   `CNAMERecord.cname`); PUT answers 201 when it created and 200 when it replaced, DELETE
//!   200, or 204 when there was nothing; an unknown subscription, resource group or zone →
//!   404 `SubscriptionNotFound`, `ResourceGroupNotFound`, `ParentResourceNotFound`; a missing
//!   record set → 404 `NotFound`;
//! - etags: a new GUID-shaped etag on every write, in the body and the `ETag` header;
//!   `If-Match: <etag>` (PUT, DELETE) must name the set's current etag, and `If-None-Match: *`
//!   (PUT) needs no set there, else 412 `PreconditionFailed` and nothing changes;
//! - 429 `TooManyRequests` with `Retry-After` when a test asks, and
//!   `x-ms-ratelimit-remaining-subscription-reads`/`-writes` on answers.
//!
//! Assumed where the documents are silent, stricter so a sloppy client is caught: a TXT
//! string longer than 255 bytes, an empty `TXTRecords`, records of another type than the path's,
//! or a CNAME set beside other sets (and back) → 400 `BadRequest`; a PUT without `TTL` gets
//! 3600. Not reproduced: PATCH, listing with `$top`/`nextLink`, zones and other record types,
//! alias record sets (`targetResource`), the real throttling budget, role assignments (403
//! `AuthorizationFailed`), sovereign clouds, long-running operations, DNS serving.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use mailsec_operator::domain::txt;
use serde_json::{Value, json};

/// The ARM audience the token endpoint expects.
pub const SCOPE: &str = "https://management.azure.com/.default";
const API_VERSION: &str = "2018-05-01";
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// One record set as the fake holds it.
#[derive(Debug, Clone)]
pub struct FakeSet {
    /// As written, `@` for the apex.
    pub name: String,
    pub rtype: String,
    pub ttl: u32,
    pub etag: String,
    pub metadata: Option<Value>,
    /// TXT: each record's strings; A/AAAA: one address each; CNAME: the target.
    pub records: Vec<Vec<String>>,
}

#[derive(Default)]
struct Inner {
    subscription: String,
    resource_group: String,
    zone: String,
    tenant: String,
    client_id: String,
    client_secret: String,
    /// The federated token Workload Identity presents.
    assertion: String,
    /// Tokens issued, and when they expire.
    tokens: BTreeMap<String, Instant>,
    token_lifetime: u64,
    sets: Vec<FakeSet>,
    next: u64,
    /// The next this many ARM requests answer 429 with `Retry-After` this many seconds.
    throttle: (u32, u64),
    /// Before the next write, this value is added at this name as someone else would.
    race: Option<(String, String)>,
    calls: Vec<String>,
    token_requests: Vec<String>,
    preconditions_failed: u32,
}

type Shared = Arc<Mutex<Inner>>;

/// A running fake.
#[derive(Clone)]
pub struct Fake {
    /// ARM's base, as `managementEndpoint` takes it.
    pub management_url: String,
    /// The token service's base, as `authorityHost` takes it.
    pub authority_url: String,
    pub subscription: String,
    pub resource_group: String,
    pub zone: String,
    pub tenant: String,
    pub client_id: String,
    pub client_secret: String,
    /// What a Workload Identity token file must hold to be accepted.
    pub federated_token: String,
    inner: Shared,
}

impl Fake {
    /// Starts the fake with one zone in one resource group, and one app registration that
    /// has a client secret and a federated credential.
    pub async fn start(zone: &str) -> Fake {
        let suffix = super::random_suffix();
        let inner: Shared = Arc::new(Mutex::new(Inner {
            subscription: "00000000-1111-2222-3333-444444444444".into(),
            resource_group: "rg-dns".into(),
            zone: zone.to_owned(),
            tenant: "72f988bf-0000-0000-0000-000000000001".into(),
            client_id: "a1b2c3d4-0000-0000-0000-00000000c1d0".into(),
            client_secret: format!("Xy8Q~{suffix}"),
            assertion: format!("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzYSJ9.{suffix}"),
            token_lifetime: 3599,
            next: 1,
            ..Inner::default()
        }));
        let arm = Router::new()
            .route(
                "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Network/dnsZones/{zone}/{rtype}/{name}",
                get(get_set).put(put_set).delete(delete_set),
            )
            .with_state(inner.clone());
        let login = Router::new()
            .route("/{tenant}/oauth2/v2.0/token", post(token))
            .with_state(inner.clone());
        let management_url = serve(arm).await;
        let authority_url = serve(login).await;
        let i = inner.lock().expect("fake state");
        Fake {
            management_url,
            authority_url,
            subscription: i.subscription.clone(),
            resource_group: i.resource_group.clone(),
            zone: zone.to_owned(),
            tenant: i.tenant.clone(),
            client_id: i.client_id.clone(),
            client_secret: i.client_secret.clone(),
            federated_token: i.assertion.clone(),
            inner: inner.clone(),
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

    /// Adds one record at `name` (a full name) as someone else would (the portal, another
    /// tool): a TXT record from its presentation form (`"a" "b"`: two strings), an address,
    /// or a CNAME target; a new set gets `ttl`. The set's etag changes.
    pub fn add_raw(&self, name: &str, rtype: &str, value: &str, ttl: u32) {
        let rel = self.relative(name);
        let mut i = self.inner.lock().expect("fake state");
        add(&mut i, &rel, rtype, value, ttl);
    }

    /// The set of `rtype` at `name` (a full name), if any.
    pub fn set(&self, name: &str, rtype: &str) -> Option<FakeSet> {
        let rel = self.relative(name);
        let i = self.inner.lock().expect("fake state");
        find(&i.sets, &rel, rtype).map(|n| i.sets[n].clone())
    }

    /// The TXT records at `name` in presentation form (`"a" "b"`), as they would be served.
    pub fn txt(&self, name: &str) -> Vec<String> {
        self.set(name, "TXT")
            .map(|s| s.records.iter().map(|r| presentation(r)).collect())
            .unwrap_or_default()
    }

    /// The TXT values at `name`, each record's strings joined.
    pub fn values(&self, name: &str) -> Vec<String> {
        self.set(name, "TXT")
            .map(|s| s.records.iter().map(|r| r.concat()).collect())
            .unwrap_or_default()
    }

    /// The next `n` ARM requests answer 429 with `Retry-After: seconds`.
    pub fn throttle(&self, n: u32, seconds: u64) {
        self.inner.lock().expect("fake state").throttle = (n, seconds);
    }

    /// Just before the next PUT or DELETE of the TXT set at `name` is handled, `value`
    /// (presentation form) is added to it as someone else would, so a write on the etag read
    /// before fails.
    pub fn race_next_write(&self, name: &str, value: &str) {
        let rel = self.relative(name);
        self.inner.lock().expect("fake state").race = Some((rel, value.to_owned()));
    }

    /// Issued tokens expire this many seconds after they are issued.
    pub fn token_lifetime(&self, seconds: u64) {
        self.inner.lock().expect("fake state").token_lifetime = seconds;
    }

    /// The ARM requests served so far, `METHOD TYPE/name`, then ` if-match` or
    /// ` if-none-match` when the request carried that header.
    pub fn calls(&self) -> Vec<String> {
        self.inner.lock().expect("fake state").calls.clone()
    }

    /// The token requests so far, by how the client proved itself: `secret` or `assertion`.
    pub fn token_requests(&self) -> Vec<String> {
        self.inner
            .lock()
            .expect("fake state")
            .token_requests
            .clone()
    }

    /// How many writes were refused with 412.
    pub fn preconditions_failed(&self) -> u32 {
        self.inner.lock().expect("fake state").preconditions_failed
    }
}

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr: SocketAddr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

fn presentation(strings: &[String]) -> String {
    strings
        .iter()
        .map(|s| txt::to_presentation(s))
        .collect::<Vec<_>>()
        .join(" ")
}

fn find(sets: &[FakeSet], rel: &str, rtype: &str) -> Option<usize> {
    sets.iter()
        .position(|s| s.name.eq_ignore_ascii_case(rel) && s.rtype == rtype)
}

fn new_etag(i: &mut Inner) -> String {
    i.next += 1;
    let n = i.next;
    let salt = super::random_suffix();
    let hex: String = salt
        .bytes()
        .map(|b| format!("{:x}", b % 16))
        .chain(std::iter::repeat_n("0".to_owned(), 12))
        .take(12)
        .collect();
    format!("{:08x}-{:04x}-4{:03x}-a000-{hex}", n, n % 0xffff, n % 0xfff)
}

fn add(i: &mut Inner, rel: &str, rtype: &str, value: &str, ttl: u32) {
    let record: Vec<String> = if rtype == "TXT" {
        txt::parse_presentation_lenient(value)
            .expect("presentation")
            .iter()
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect()
    } else {
        vec![value.trim_end_matches('.').to_owned()]
    };
    let etag = new_etag(i);
    match find(&i.sets, rel, rtype) {
        Some(n) if rtype == "CNAME" => {
            i.sets[n].records = vec![record];
            i.sets[n].etag = etag;
        }
        Some(n) => {
            i.sets[n].records.push(record);
            i.sets[n].etag = etag;
        }
        None => i.sets.push(FakeSet {
            name: rel.to_owned(),
            rtype: rtype.to_owned(),
            ttl,
            etag,
            metadata: None,
            records: vec![record],
        }),
    }
}

fn cloud_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

fn with_budget(mut r: Response, write: bool) -> Response {
    let (name, left) = if write {
        ("x-ms-ratelimit-remaining-subscription-writes", "1199")
    } else {
        ("x-ms-ratelimit-remaining-subscription-reads", "11999")
    };
    r.headers_mut().insert(name, HeaderValue::from_static(left));
    r
}

fn set_json(i: &Inner, s: &FakeSet) -> Value {
    let fqdn = if s.name == "@" {
        format!("{}.", i.zone)
    } else {
        format!("{}.{}.", s.name, i.zone)
    };
    let mut properties = json!({"metadata": s.metadata, "TTL": s.ttl, "fqdn": fqdn,
        "provisioningState": "Succeeded", "targetResource": {}});
    match s.rtype.as_str() {
        "TXT" => {
            properties["TXTRecords"] = s.records.iter().map(|r| json!({"value": r})).collect();
        }
        "A" => {
            properties["ARecords"] = s
                .records
                .iter()
                .map(|r| json!({"ipv4Address": r.concat()}))
                .collect();
        }
        "AAAA" => {
            properties["AAAARecords"] = s
                .records
                .iter()
                .map(|r| json!({"ipv6Address": r.concat()}))
                .collect();
        }
        _ => {
            properties["CNAMERecord"] = json!({"cname": s.records.first().map(|r| r.concat())});
        }
    }
    json!({"id": format!("/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Network/dnsZones/{}/{}/{}",
            i.subscription, i.resource_group, i.zone, s.rtype, s.name),
        "name": s.name, "type": format!("Microsoft.Network/dnsZones/{}", s.rtype),
        "etag": s.etag, "properties": properties})
}

fn with_etag(mut r: Response, etag: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(etag) {
        r.headers_mut().insert("etag", v);
    }
    r
}

/// The path's parts, checked like ARM checks them.
struct Target {
    rtype: String,
    name: String,
}

/// Counts the call, throttles, checks the token, the api-version and the path.
#[allow(clippy::result_large_err)]
fn gate(
    i: &mut Inner,
    method: &str,
    headers: &HeaderMap,
    raw: Option<String>,
    (sub, rg, zone, rtype, name): (String, String, String, String, String),
) -> Result<Target, Response> {
    let condition = match (
        header(headers, "if-match"),
        header(headers, "if-none-match"),
    ) {
        (Some(_), _) => " if-match",
        (None, Some(_)) => " if-none-match",
        (None, None) => "",
    };
    i.calls.push(format!("{method} {rtype}/{name}{condition}"));
    if i.throttle.0 > 0 {
        i.throttle.0 -= 1;
        let mut r = cloud_error(
            StatusCode::TOO_MANY_REQUESTS,
            "TooManyRequests",
            "The request is being throttled as the limit has been reached for operation type.",
        );
        if let Ok(v) = HeaderValue::from_str(&i.throttle.1.to_string()) {
            r.headers_mut().insert("retry-after", v);
        }
        return Err(r);
    }
    let Some(token) = super::api_fake::bearer(headers) else {
        return Err(cloud_error(
            StatusCode::UNAUTHORIZED,
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is missing.",
        ));
    };
    match i.tokens.get(token) {
        None => {
            return Err(cloud_error(
                StatusCode::UNAUTHORIZED,
                "InvalidAuthenticationToken",
                "The access token is invalid.",
            ));
        }
        Some(until) if Instant::now() >= *until => {
            return Err(cloud_error(
                StatusCode::UNAUTHORIZED,
                "ExpiredAuthenticationToken",
                "The access token expiry UTC time is earlier than current UTC time.",
            ));
        }
        Some(_) => {}
    }
    let version = url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "api-version")
        .map(|(_, v)| v.into_owned());
    match version.as_deref() {
        None => {
            return Err(cloud_error(
                StatusCode::BAD_REQUEST,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            ));
        }
        Some(API_VERSION) => {}
        Some(other) => {
            return Err(cloud_error(
                StatusCode::BAD_REQUEST,
                "NoRegisteredProviderFound",
                &format!("No registered resource provider found for API version '{other}'."),
            ));
        }
    }
    if !sub.eq_ignore_ascii_case(&i.subscription) {
        return Err(cloud_error(
            StatusCode::NOT_FOUND,
            "SubscriptionNotFound",
            &format!("The subscription '{sub}' could not be found."),
        ));
    }
    if !rg.eq_ignore_ascii_case(&i.resource_group) {
        return Err(cloud_error(
            StatusCode::NOT_FOUND,
            "ResourceGroupNotFound",
            &format!("Resource group '{rg}' could not be found."),
        ));
    }
    if !zone.eq_ignore_ascii_case(&i.zone) {
        return Err(cloud_error(
            StatusCode::NOT_FOUND,
            "ParentResourceNotFound",
            &format!(
                "Failed to perform 'read' on resource(s) of type 'dnszones/{rtype}', because the parent resource '/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Network/dnszones/{zone}' could not be found."
            ),
        ));
    }
    if !matches!(rtype.as_str(), "TXT" | "A" | "AAAA" | "CNAME") {
        return Err(cloud_error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            &format!("record type {rtype} is not reproduced by this fake"),
        ));
    }
    Ok(Target { rtype, name })
}

fn not_found(i: &Inner, name: &str) -> Response {
    cloud_error(
        StatusCode::NOT_FOUND,
        "NotFound",
        &format!(
            "The resource record '{name}' does not exist in resource group '{}' of subscription '{}'.",
            i.resource_group, i.subscription
        ),
    )
}

fn precondition_failed(i: &mut Inner) -> Response {
    i.preconditions_failed += 1;
    cloud_error(
        StatusCode::PRECONDITION_FAILED,
        "PreconditionFailed",
        "The condition specified using HTTP conditional header(s) is not met.",
    )
}

/// Whether `If-Match: condition` holds for a set whose etag is `current` (`None`: no set):
/// `*` matches any set, an etag only itself.
fn matches_etag(condition: &str, current: Option<&str>) -> bool {
    match current {
        None => false,
        Some(_) if condition == "*" => true,
        Some(etag) => etag == condition,
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|h| h.to_str().ok())
}

/// Applies a pending race when this write is to its TXT set: someone else's value lands
/// first.
fn race(i: &mut Inner, t: &Target) {
    let due = i
        .race
        .as_ref()
        .is_some_and(|(rel, _)| t.rtype == "TXT" && rel.eq_ignore_ascii_case(&t.name));
    if let Some((rel, value)) = i.race.take_if(|_| due) {
        add(i, &rel, "TXT", &value, 300);
    }
}

async fn get_set(
    State(s): State<Shared>,
    Path(path): Path<(String, String, String, String, String)>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let mut i = s.lock().expect("fake state");
    let t = match gate(&mut i, "GET", &headers, raw, path) {
        Ok(t) => t,
        Err(r) => return r,
    };
    match find(&i.sets, &t.name, &t.rtype) {
        Some(n) => {
            let set = &i.sets[n];
            with_budget(
                with_etag(
                    (StatusCode::OK, axum::Json(set_json(&i, set))).into_response(),
                    &set.etag,
                ),
                false,
            )
        }
        None => not_found(&i, &t.name),
    }
}

/// The records of `rtype` in a PUT body's properties, checked.
fn records_of(rtype: &str, p: &Value) -> Result<Vec<Vec<String>>, String> {
    let keys = ["TXTRecords", "ARecords", "AAAARecords", "CNAMERecord"];
    let own = match rtype {
        "TXT" => "TXTRecords",
        "A" => "ARecords",
        "AAAA" => "AAAARecords",
        _ => "CNAMERecord",
    };
    if let Some(other) = keys.iter().find(|k| **k != own && !p[**k].is_null()) {
        return Err(format!(
            "{other} cannot be set on a record set of type {rtype}"
        ));
    }
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .map(|s| s.as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let records: Vec<Vec<String>> = match rtype {
        "TXT" => p["TXTRecords"]
            .as_array()
            .map(|a| a.iter().map(|r| strings(&r["value"])).collect())
            .unwrap_or_default(),
        "A" | "AAAA" => {
            let field = if rtype == "A" {
                "ipv4Address"
            } else {
                "ipv6Address"
            };
            let mut out = Vec::new();
            for r in p[own].as_array().into_iter().flatten() {
                let ip = r[field].as_str().unwrap_or_default();
                let ok = if rtype == "A" {
                    ip.parse::<std::net::Ipv4Addr>().is_ok()
                } else {
                    ip.parse::<std::net::Ipv6Addr>().is_ok()
                };
                if !ok {
                    return Err(format!("{field} '{ip}' is not a valid address"));
                }
                out.push(vec![ip.to_owned()]);
            }
            out
        }
        _ => p["CNAMERecord"]["cname"]
            .as_str()
            .filter(|c| !c.is_empty() && !c.contains(' '))
            .map(|c| vec![vec![c.to_owned()]])
            .unwrap_or_default(),
    };
    if records.is_empty() {
        return Err(format!(
            "a record set of type {rtype} needs at least one record"
        ));
    }
    if rtype == "TXT" {
        for r in &records {
            if r.is_empty() {
                return Err("a TXT record needs at least one string".into());
            }
            if let Some(long) = r.iter().find(|s| s.len() > 255) {
                return Err(format!(
                    "a TXT string is at most 255 bytes; one has {}",
                    long.len()
                ));
            }
        }
    }
    Ok(records)
}

async fn put_set(
    State(s): State<Shared>,
    Path(path): Path<(String, String, String, String, String)>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: String,
) -> Response {
    let mut i = s.lock().expect("fake state");
    let t = match gate(&mut i, "PUT", &headers, raw, path) {
        Ok(t) => t,
        Err(r) => return r,
    };
    race(&mut i, &t);
    let Ok(body) = serde_json::from_str::<Value>(&body) else {
        return cloud_error(
            StatusCode::BAD_REQUEST,
            "InvalidRequestContent",
            "The request content was invalid and could not be deserialized.",
        );
    };
    let existing = find(&i.sets, &t.name, &t.rtype);
    let current = existing.map(|n| i.sets[n].etag.clone());
    if let Some(etag) = header(&headers, "if-match")
        && !matches_etag(etag, current.as_deref())
    {
        return precondition_failed(&mut i);
    }
    if header(&headers, "if-none-match") == Some("*") && existing.is_some() {
        return precondition_failed(&mut i);
    }
    let p = &body["properties"];
    let records = match records_of(&t.rtype, p) {
        Ok(r) => r,
        Err(m) => return cloud_error(StatusCode::BAD_REQUEST, "BadRequest", &m),
    };
    let beside = i
        .sets
        .iter()
        .filter(|s| s.name.eq_ignore_ascii_case(&t.name) && s.rtype != t.rtype)
        .any(|s| s.rtype == "CNAME" || t.rtype == "CNAME");
    if beside {
        return cloud_error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "A CNAME record set cannot share its name with another record set.",
        );
    }
    let ttl = p["TTL"].as_u64().map_or(3600, |t| t as u32);
    let metadata = p.get("metadata").filter(|m| !m.is_null()).cloned();
    let etag = new_etag(&mut i);
    let set = FakeSet {
        name: t.name.clone(),
        rtype: t.rtype.clone(),
        ttl,
        etag: etag.clone(),
        metadata,
        records,
    };
    let status = match existing {
        Some(n) => {
            i.sets[n] = FakeSet {
                name: i.sets[n].name.clone(),
                ..set.clone()
            };
            StatusCode::OK
        }
        None => {
            i.sets.push(set.clone());
            StatusCode::CREATED
        }
    };
    let n = find(&i.sets, &t.name, &t.rtype).unwrap_or_default();
    let out = set_json(&i, &i.sets[n]);
    with_budget(
        with_etag((status, axum::Json(out)).into_response(), &etag),
        true,
    )
}

async fn delete_set(
    State(s): State<Shared>,
    Path(path): Path<(String, String, String, String, String)>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let mut i = s.lock().expect("fake state");
    let t = match gate(&mut i, "DELETE", &headers, raw, path) {
        Ok(t) => t,
        Err(r) => return r,
    };
    race(&mut i, &t);
    let existing = find(&i.sets, &t.name, &t.rtype);
    let current = existing.map(|n| i.sets[n].etag.clone());
    if let Some(etag) = header(&headers, "if-match")
        && !matches_etag(etag, current.as_deref())
    {
        return precondition_failed(&mut i);
    }
    match existing {
        Some(n) => {
            i.sets.remove(n);
            with_budget(StatusCode::OK.into_response(), true)
        }
        None => with_budget(StatusCode::NO_CONTENT.into_response(), true),
    }
}

fn aad_error(status: StatusCode, error: &str, code: u32, description: &str) -> Response {
    let trace = super::random_suffix();
    (
        status,
        axum::Json(json!({
            "error": error,
            "error_description": format!("AADSTS{code}: {description}\r\nTrace ID: {trace}\r\nCorrelation ID: {trace}\r\nTimestamp: {}", jiff::Timestamp::now()),
            "error_codes": [code],
            "timestamp": jiff::Timestamp::now().to_string(),
            "trace_id": trace,
            "correlation_id": trace,
            "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
        })),
    )
        .into_response()
}

async fn token(
    State(s): State<Shared>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let mut i = s.lock().expect("fake state");
    let form: BTreeMap<String, String> = url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let field = |k: &str| form.get(k).map(String::as_str);
    let how = if form.contains_key("client_assertion") {
        "assertion"
    } else {
        "secret"
    };
    i.token_requests.push(how.to_owned());
    if header(&headers, "content-type") != Some("application/x-www-form-urlencoded") {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'grant_type'.",
        );
    }
    if tenant != i.tenant {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            90002,
            &format!(
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."
            ),
        );
    }
    if field("grant_type") != Some("client_credentials") {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
            "The app requested an unsupported grant type.",
        );
    }
    if field("scope") != Some(SCOPE) {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            1002012,
            "The provided value for scope is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).",
        );
    }
    if field("client_id") != Some(i.client_id.as_str()) {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
            &format!(
                "Application with identifier '{}' was not found in the directory.",
                field("client_id").unwrap_or_default()
            ),
        );
    }
    let proven = match how {
        "assertion" => {
            field("client_assertion_type") == Some(ASSERTION_TYPE)
                && field("client_assertion") == Some(i.assertion.as_str())
        }
        _ => field("client_secret") == Some(i.client_secret.as_str()),
    };
    if !proven {
        return if how == "assertion" {
            aad_error(
                StatusCode::BAD_REQUEST,
                "invalid_client",
                70021,
                "No matching federated identity record found for presented assertion.",
            )
        } else {
            aad_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.",
            )
        };
    }
    let access = format!("eyJ0eXAiOiJKV1QifQ.fake.{}", super::random_suffix());
    let lifetime = i.token_lifetime;
    i.tokens.insert(
        access.clone(),
        Instant::now() + Duration::from_secs(lifetime),
    );
    (
        StatusCode::OK,
        axum::Json(json!({"token_type": "Bearer", "expires_in": lifetime,
            "ext_expires_in": lifetime, "access_token": access})),
    )
        .into_response()
}
