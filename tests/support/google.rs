//! Google Cloud DNS for the tests of the google provider, two ways, and a side door to both.
//!
//! [`LocalDns`] runs Google's own in-memory Cloud DNS v1 server, `LocalDnsHelper` from
//! `com.google.cloud:google-cloud-dns:0.7.0` (the last release whose main jar ships it),
//! through the launcher `tests/support/google-dns/LocalDnsServer.java`, which binds 127.0.0.1
//! instead of the wildcard address LocalDnsHelper's constructor binds
//! (`scripts/tools.d/google-dns.sh` installs it as `google-dns-local`). What it checks was read
//! from its bytecode (`javap -c`) and tried by hand; tests/google_api.rs holds the fake to it:
//!
//! - the REST paths `/dns/v1/projects/{project}/managedZones[/{zone}[/rrsets|/changes[/{id}]]]`,
//!   no authentication at all; a project exists on first use; `POST managedZones` needs
//!   `name` (`[a-z][a-z0-9-]*`, at most 32), `dnsName` (ending in `.`; not `com.`, `net.`,
//!   `org.`, `example.com.`, `google.com.`) and `description`, and makes the apex SOA and NS;
//! - `changes.create` checks each rrset (name inside the zone and ending in `.`, a known type,
//!   `ttl` >= 0 when given, A/AAAA rdata an address), then: a deletion whose name and type are
//!   absent → 404 `notFound`; a deletion not equal to the stored rrset (ttl, and rrdatas *in
//!   order*) → 412 `conditionNotMet`; an addition whose name and type exist and are not deleted
//!   in the same change → 409 `alreadyExists`; nothing of a refused change is applied. With a
//!   delay (`google-dns-local <ms>`) a change answers `pending` and is applied after the delay;
//! - `rrsets.list` with `name` (must end in `.`; case-sensitive), `type` (needs `name`, else 400
//!   `invalid`), `maxResults` (> 0) and an opaque `pageToken`/`nextPageToken`;
//! - errors as `{"error":{"code","message","errors":[{"reason","domain":"global","message"}],
//!   "status"}}`.
//!
//! It does not check TXT rdata at all (unquoted text, strings over 255 bytes pass), nor CNAME
//! beside other data, nor two additions of one name and type in one change, nor an empty
//! `rrdatas`, nor quotas (its project resource only reports them: 100 additions and 100
//! deletions per change, 100 records per rrset, 10000 bytes of rrdata per change), and it sends
//! no `kind` fields.
//!
//! [`Fake`] is a stateful fake of Cloud DNS v1 with what LocalDnsHelper leaves out: OAuth 2
//! bearer tokens from a service-account JWT (RFC 7523, as Google's "Using OAuth 2.0 for
//! Server to Server Applications" describes it) or from the GCE metadata server, TXT checks,
//! quotas, throttling, pending changes and injected races. Shaped by the Cloud DNS v1 REST
//! reference (resources `managedZones`, `resourceRecordSets`, `changes`, `projects` and its
//! `Quota`), Google's JSON error format and the Compute Engine metadata server documentation.
//! It reproduces:
//!
//! - `POST {url}/token` (`token_uri` in the key file): form `grant_type=
//!   urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=<JWT>`; the JWT must be RS256 (and
//!   its `kid`, when present, the key's `private_key_id`), signed by the service account's key,
//!   `iss` its `client_email`, `aud` the token URI, `scope` holding
//!   `https://www.googleapis.com/auth/ndev.clouddns.readwrite` or
//!   `https://www.googleapis.com/auth/cloud-platform`, `iat` and `exp` with `exp` in the future
//!   and at most an hour after `iat`; else 400 `{"error":"invalid_grant",
//!   "error_description"}` (`invalid_scope` for the scope, `unsupported_grant_type` for another
//!   grant) as Google's token service answers; success `{"access_token","expires_in":3599,
//!   "token_type":"Bearer"}`;
//! - the metadata server (its own listener, `metadata_url`): `GET /computeMetadata/v1/instance/
//!   service-accounts/default/token` and `/computeMetadata/v1/project/project-id`, only with
//!   `Metadata-Flavor: Google` (else 403);
//! - on the API, `Authorization: Bearer <a token it issued and that has not expired>`, else
//!   401 `UNAUTHENTICATED` (reason `required` without one, `authError` for a bad or expired one);
//! - `GET managedZones[?dnsName=]` (the one zone), `GET managedZones/{zone}`, `GET
//!   managedZones/{zone}/rrsets?name=&type=&maxResults=&pageToken=` (real paging, a default
//!   page size a test can set), `POST managedZones/{zone}/changes` and `GET .../changes/{id}`,
//!   with `kind` fields; an unknown project or zone → 404 `notFound`;
//! - changes as LocalDnsHelper checks them (same codes, reasons and messages), validated
//!   whole before anything is applied, and applied all at once;
//! - besides: TXT rdata must be one or more quoted character-strings (`"a" "b"`, `\"`, `\\`
//!   and `\DDD` escapes), each at most 255 bytes, else 400 `invalid` with `Invalid value for
//!   'entity.change.additions[i].rrdata[j]': '…'`; a CNAME beside other data at a name → 400
//!   `cnameResourceRecordSetConflict`; the quotas above → 403 `quotaExceeded`;
//! - faults a test asks for: 429 `rateLimitExceeded` (`RESOURCE_EXHAUSTED`), a write by
//!   someone else just before the next change, changes that stay `pending` for a number of
//!   polls or some time, short token lifetimes.
//!
//! Assumed where the documents are silent, stricter so a sloppy client is caught: deletions
//! compare `rrdatas` as a multiset (LocalDnsHelper compares them in order: a client that sends
//! back what it read passes both), an addition needs `ttl` and a non-empty `rrdatas`, one change
//! cannot name one name and type twice among its additions (or deletions), names compare
//! case-insensitively. A pending change is applied at once (later reads and changes see it,
//! unlike LocalDnsHelper, where two pending changes are not checked against each other); only
//! its status lags. Not reproduced: zone creation and deletion through the API, other
//! projects, `changes.list`, `rrsets` create/patch/delete (the newer per-rrset methods),
//! routing policies, DNSSEC, private zones, IAM (403 `forbidden`), the real rate limits, batch
//! requests, gzip, DNS serving.
//!
//! [`Api`] is the side door both are reached by: it writes records the operator did not
//! create and reads what is stored, through the REST API itself.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::Method;
use rsa::RsaPrivateKey;
use rsa::pkcs1v15::{Signature, SigningKey, VerifyingKey};
use rsa::pkcs8::{EncodePrivateKey, LineEnding};
use rsa::sha2::Sha256;
use rsa::signature::{SignatureEncoding, Signer, Verifier};
use serde_json::{Value, json};

/// The Cloud DNS scope.
pub const SCOPE_DNS: &str = "https://www.googleapis.com/auth/ndev.clouddns.readwrite";
/// The catch-all scope, which includes Cloud DNS.
pub const SCOPE_CLOUD_PLATFORM: &str = "https://www.googleapis.com/auth/cloud-platform";
/// The grant type of a service-account assertion (RFC 7523).
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// The metadata server's token path.
pub const METADATA_TOKEN_PATH: &str = "/computeMetadata/v1/instance/service-accounts/default/token";

/// The record types Cloud DNS v1 knew in LocalDnsHelper's time (the ones it accepts).
const TYPES: [&str; 11] = [
    "A", "AAAA", "CNAME", "MX", "NAPTR", "NS", "PTR", "SOA", "SPF", "SRV", "TXT",
];

/// One resource record set as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeRrset {
    pub ttl: u32,
    /// As stored (TXT: presentation form, `"a" "b"`).
    pub rrdatas: Vec<String>,
}

/// The quotas the fake enforces (defaults: what LocalDnsHelper's project resource reports).
#[derive(Clone, Copy, Debug)]
pub struct Quota {
    pub rrset_additions_per_change: usize,
    pub rrset_deletions_per_change: usize,
    pub resource_records_per_rrset: usize,
    pub total_rrdata_size_per_change: usize,
}

impl Default for Quota {
    fn default() -> Self {
        Quota {
            rrset_additions_per_change: 100,
            rrset_deletions_per_change: 100,
            resource_records_per_rrset: 100,
            total_rrdata_size_per_change: 10_000,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// LocalDnsHelper

/// Google's LocalDnsHelper, running on 127.0.0.1 until dropped.
pub struct LocalDns {
    /// `http://127.0.0.1:<port>`; the API is at `{url}/dns/v1/projects/...`.
    pub url: String,
    /// The project the [`LocalDns::api`] side doors use (any name works: projects exist on
    /// first use).
    pub project: String,
    child: Child,
    stderr: Arc<Mutex<String>>,
}

impl LocalDns {
    /// Starts `google-dns-local` with changes applied at once.
    pub fn start() -> LocalDns {
        LocalDns::start_with_delay(0)
    }

    /// Starts `google-dns-local` with changes `pending` for `delay_ms` before they are applied.
    /// Panics (the test fails, also outside CI) when the tool is missing: run `make tools`.
    pub fn start_with_delay(delay_ms: u64) -> LocalDns {
        let tool = tool_path("google-dns-local");
        let mut child = Command::new(&tool)
            .arg(delay_ms.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", tool.display()));
        let stderr = Arc::new(Mutex::new(String::new()));
        if let Some(mut err) = child.stderr.take() {
            let sink = stderr.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = err.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    if let Ok(mut s) = sink.lock() {
                        s.push_str(&String::from_utf8_lossy(&buf[..n]));
                    }
                }
            });
        }
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let out = child.stdout.take().expect("the child's stdout");
        std::thread::spawn(move || {
            let mut lines = BufReader::new(out).lines();
            let mut sent = false;
            // Reads on after the first line, so the child never blocks on a full pipe.
            while let Some(Ok(line)) = lines.next() {
                if !sent && line.starts_with("listening on ") {
                    let _ = tx.send(line);
                    sent = true;
                }
            }
        });
        let mut local = LocalDns {
            url: String::new(),
            project: format!("mailsec-{}", super::random_suffix()),
            child,
            stderr,
        };
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(line) => {
                let addr = line.trim_start_matches("listening on ").trim();
                let addr: SocketAddr = addr
                    .parse()
                    .unwrap_or_else(|e| panic!("google-dns-local printed {line:?}: {e}"));
                assert!(addr.ip().is_loopback(), "google-dns-local bound {addr}");
                local.url = format!("http://{addr}");
            }
            Err(e) => {
                let status = local.child.try_wait().ok().flatten();
                panic!(
                    "google-dns-local did not say where it listens within 20 s ({e}; exit: \
                     {status:?}); stderr:\n{}",
                    local.stderr()
                );
            }
        }
        local
    }

    /// What the server wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// A side door (no authentication: LocalDnsHelper has none) to the managed zone
    /// `managed_zone` of this server's project; create it with [`Api::create_zone`].
    pub fn api(&self, managed_zone: &str) -> Api {
        Api::new(&self.url, &self.project, managed_zone, None)
    }
}

impl Drop for LocalDns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Path of a tool in the tools bin directory (`MAILSEC_TOOLS_BIN`, else `scripts/tools.sh
/// bindir`). Panics when it is not there.
pub fn tool_path(name: &str) -> std::path::PathBuf {
    let bin = match std::env::var("MAILSEC_TOOLS_BIN") {
        Ok(dir) if !dir.is_empty() => std::path::PathBuf::from(dir),
        _ => super::tools_bindir().unwrap_or_else(|e| panic!("no tools bin directory: {e}")),
    };
    let path = bin.join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `make tools` (scripts/tools.sh) to install it",
        path.display()
    );
    path
}

// ---------------------------------------------------------------------------------------------
// The fake

#[derive(Clone, Debug)]
struct Set {
    /// Absolute, with the trailing dot.
    name: String,
    rtype: String,
    ttl: u32,
    rrdatas: Vec<String>,
}

struct ChangeRecord {
    body: Value,
    polls_left: u32,
    done_at: Instant,
}

struct Inner {
    project: String,
    managed_zone: String,
    /// With the trailing dot.
    dns_name: String,
    zone_id: String,
    created: String,
    client_email: String,
    private_key_id: String,
    token_uri: String,
    public_key: rsa::RsaPublicKey,
    /// Tokens issued, and when they expire.
    tokens: BTreeMap<String, Instant>,
    token_lifetime: u64,
    sets: Vec<Set>,
    changes: Vec<ChangeRecord>,
    page_size: usize,
    quota: Quota,
    throttle: u32,
    race: Option<(String, String, String)>,
    pending_polls: u32,
    pending_for: Duration,
    calls: Vec<String>,
    token_requests: Vec<String>,
}

type Shared = Arc<Mutex<Inner>>;

/// A running fake of Cloud DNS v1, its token endpoint and a GCE metadata server.
#[derive(Clone)]
pub struct Fake {
    /// The API's base: `http://127.0.0.1:<port>` (the API is at `{url}/dns/v1/projects/...`).
    pub url: String,
    pub project: String,
    /// The managed zone's name (`mailsec-test`).
    pub managed_zone: String,
    /// The zone's DNS name, without the trailing dot.
    pub zone: String,
    /// The metadata server's base (`http://127.0.0.1:<port>`).
    pub metadata_url: String,
    /// `{url}/token`.
    pub token_uri: String,
    /// The service account's `client_email`.
    pub client_email: String,
    /// A JSON key file as Google issues it for the service account.
    pub service_account_key: String,
    inner: Shared,
}

/// The service account's key: one per test process (RSA generation is slow).
fn account_key() -> &'static RsaPrivateKey {
    static KEY: OnceLock<RsaPrivateKey> = OnceLock::new();
    KEY.get_or_init(new_rsa_key)
}

/// A fresh RSA 2048 key.
pub fn new_rsa_key() -> RsaPrivateKey {
    RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).expect("RSA key generation")
}

impl Fake {
    /// Starts the fake with the public zone `zone` (no trailing dot) in one project, holding
    /// its SOA and NS, and one service account with a key.
    pub async fn start(zone: &str) -> Fake {
        let suffix = super::random_suffix();
        let project = format!("mailsec-{}", &suffix[..6]);
        let key = account_key();
        let client_email = format!("mailsec-dns@{project}.iam.gserviceaccount.com");
        let private_key_id = suffix.repeat(4);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr: SocketAddr = listener.local_addr().expect("addr");
        let url = format!("http://{addr}");
        let token_uri = format!("{url}/token");
        let dns_name = format!("{}.", zone.trim_end_matches('.'));
        let created = jiff::Timestamp::now().to_string();
        let inner: Shared = Arc::new(Mutex::new(Inner {
            project: project.clone(),
            managed_zone: "mailsec-test".into(),
            dns_name: dns_name.clone(),
            zone_id: (u64::from_str_radix(&suffix, 16).unwrap_or(1) | (1 << 60)).to_string(),
            created,
            client_email: client_email.clone(),
            private_key_id: private_key_id.clone(),
            token_uri: token_uri.clone(),
            public_key: key.to_public_key(),
            tokens: BTreeMap::new(),
            token_lifetime: 3599,
            sets: vec![
                Set {
                    name: dns_name.clone(),
                    rtype: "SOA".into(),
                    ttl: 21600,
                    rrdatas: vec![
                        "ns-cloud-a1.googledomains.com. cloud-dns-hostmaster.google.com. 1 21600 3600 259200 300"
                            .into(),
                    ],
                },
                Set {
                    name: dns_name.clone(),
                    rtype: "NS".into(),
                    ttl: 21600,
                    rrdatas: (1..=4)
                        .map(|n| format!("ns-cloud-a{n}.googledomains.com."))
                        .collect(),
                },
            ],
            changes: Vec::new(),
            page_size: 100,
            quota: Quota::default(),
            throttle: 0,
            race: None,
            pending_polls: 0,
            pending_for: Duration::ZERO,
            calls: Vec::new(),
            token_requests: Vec::new(),
        }));
        let base = "/dns/v1/projects/{project}/managedZones";
        let api = Router::new()
            .route(base, get(list_zones))
            .route(&format!("{base}/{{zone}}"), get(get_zone))
            .route(&format!("{base}/{{zone}}/rrsets"), get(list_rrsets))
            .route(&format!("{base}/{{zone}}/changes"), post(create_change))
            .route(&format!("{base}/{{zone}}/changes/{{id}}"), get(get_change))
            .route("/token", post(token))
            .with_state(inner.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, api).await;
        });
        let metadata = Router::new()
            .route(METADATA_TOKEN_PATH, get(metadata_token))
            .route(
                "/computeMetadata/v1/project/project-id",
                get(metadata_project),
            )
            .with_state(inner.clone());
        let metadata_url = serve(metadata).await;
        let pem = key
            .to_pkcs8_pem(LineEnding::LF)
            .expect("PKCS#8 PEM")
            .to_string();
        let service_account_key = serde_json::to_string_pretty(&json!({
            "type": "service_account",
            "project_id": project,
            "private_key_id": private_key_id,
            "private_key": pem,
            "client_email": client_email,
            "client_id": format!("1{}", u64::from_str_radix(&suffix, 16).unwrap_or(7)),
            "auth_uri": format!("{url}/o/oauth2/auth"),
            "token_uri": token_uri,
            "auth_provider_x509_cert_url": format!("{url}/oauth2/v1/certs"),
            "client_x509_cert_url": format!("{url}/robot/v1/metadata/x509/{client_email}"),
            "universe_domain": "googleapis.com",
        }))
        .expect("key file");
        Fake {
            url,
            project,
            managed_zone: "mailsec-test".into(),
            zone: dns_name.trim_end_matches('.').to_owned(),
            metadata_url,
            token_uri,
            client_email,
            service_account_key,
            inner,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("fake state")
    }

    /// A token the API accepts, issued as the token endpoint would (not counted as a token
    /// request).
    pub fn issue_token(&self) -> String {
        issue(&mut self.lock())
    }

    /// A side door to the fake's zone, with a token of its own.
    pub fn api(&self) -> Api {
        Api::new(
            &self.url,
            &self.project,
            &self.managed_zone,
            Some(self.issue_token()),
        )
    }

    /// Adds one rrdata (TXT: presentation form) to the rrset of `rtype` at `name` (absolute,
    /// trailing dot optional), as someone else would; a new rrset gets `ttl`.
    pub fn add_raw(&self, name: &str, rtype: &str, rrdata: &str, ttl: u32) {
        add(&mut self.lock(), name, rtype, rrdata, ttl);
    }

    /// The rrset of `rtype` at `name`, if any.
    pub fn rrset(&self, name: &str, rtype: &str) -> Option<FakeRrset> {
        let i = self.lock();
        find(&i.sets, &fqdn(name), rtype).map(|n| FakeRrset {
            ttl: i.sets[n].ttl,
            rrdatas: i.sets[n].rrdatas.clone(),
        })
    }

    /// The TXT rrdatas at `name`, as stored.
    pub fn txt(&self, name: &str) -> Vec<String> {
        self.rrset(name, "TXT")
            .map(|s| s.rrdatas)
            .unwrap_or_default()
    }

    /// The TXT values at `name`: each rrdata's strings unescaped and joined.
    pub fn values(&self, name: &str) -> Vec<String> {
        self.txt(name).iter().map(|r| txt_value(r)).collect()
    }

    /// Lists answer at most `n` rrsets per page unless `maxResults` asks for fewer.
    pub fn page_size(&self, n: usize) {
        self.lock().page_size = n.max(1);
    }

    /// The quotas changes are held to.
    pub fn quota(&self, quota: Quota) {
        self.lock().quota = quota;
    }

    /// The next `n` API requests answer 429 `rateLimitExceeded`.
    pub fn throttle(&self, n: u32) {
        self.lock().throttle = n;
    }

    /// Just before the next change is checked and applied, `rrdata` is added to the rrset of
    /// `rtype` at `name` as someone else would, so that a deletion of the rrset as read before
    /// fails with 412.
    pub fn race_next_write(&self, name: &str, rtype: &str, rrdata: &str) {
        self.lock().race = Some((fqdn(name), rtype.to_owned(), rrdata.to_owned()));
    }

    /// Changes created from now on answer `pending` and stay so for `polls` reads of
    /// `changes/{id}` and at least `time` (both zero: `done` at once).
    pub fn pending(&self, polls: u32, time: Duration) {
        let mut i = self.lock();
        i.pending_polls = polls;
        i.pending_for = time;
    }

    /// Tokens issued from now on expire this many seconds after they are issued (and say so
    /// in `expires_in`).
    pub fn token_lifetime(&self, seconds: u64) {
        self.lock().token_lifetime = seconds;
    }

    /// The API requests served so far, `METHOD path` (no query).
    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    /// The token requests so far: `jwt` (token endpoint) or `metadata`, then ` ok` or the
    /// error (` invalid_grant`, ` forbidden`, ...).
    pub fn token_requests(&self) -> Vec<String> {
        self.lock().token_requests.clone()
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

/// `name` absolute with its trailing dot.
pub fn fqdn(name: &str) -> String {
    format!("{}.", name.trim_end_matches('.'))
}

fn find(sets: &[Set], name: &str, rtype: &str) -> Option<usize> {
    sets.iter()
        .position(|s| s.name.eq_ignore_ascii_case(name) && s.rtype == rtype)
}

fn add(i: &mut Inner, name: &str, rtype: &str, rrdata: &str, ttl: u32) {
    let name = fqdn(name);
    match find(&i.sets, &name, rtype) {
        Some(n) => i.sets[n].rrdatas.push(rrdata.to_owned()),
        None => i.sets.push(Set {
            name,
            rtype: rtype.to_owned(),
            ttl,
            rrdatas: vec![rrdata.to_owned()],
        }),
    }
}

fn issue(i: &mut Inner) -> String {
    let token = format!(
        "ya29.c.{}{}",
        super::random_suffix(),
        super::random_suffix()
    );
    i.tokens.insert(
        token.clone(),
        Instant::now() + Duration::from_secs(i.token_lifetime),
    );
    token
}

/// The strings of a TXT rdata in presentation form, unescaped and joined (what a resolver
/// hands out); rdata that is not presentation form is taken as it is.
pub fn txt_value(rrdata: &str) -> String {
    match txt_strings(rrdata) {
        Ok(strings) => String::from_utf8_lossy(&strings.concat()).into_owned(),
        Err(_) => rrdata.to_owned(),
    }
}

/// Parses TXT rdata as the fake requires it: one or more quoted character-strings separated
/// by white space, with `\X` and `\DDD` escapes, each at most 255 bytes.
pub fn txt_strings(rrdata: &str) -> Result<Vec<Vec<u8>>, String> {
    let b = rrdata.as_bytes();
    let mut strings = Vec::new();
    let mut i = 0;
    loop {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i == b.len() {
            break;
        }
        if b[i] != b'"' {
            return Err(format!("byte {i} is outside a quoted string"));
        }
        i += 1;
        let mut s = Vec::new();
        loop {
            let Some(&c) = b.get(i) else {
                return Err("unterminated quoted string".into());
            };
            match c {
                b'"' => {
                    i += 1;
                    break;
                }
                b'\\' => {
                    let digits = b
                        .get(i + 1..i + 4)
                        .filter(|d| d.iter().all(u8::is_ascii_digit));
                    if let Some(d) = digits {
                        let n = d.iter().fold(0u32, |a, &x| a * 10 + u32::from(x - b'0'));
                        s.push(u8::try_from(n).map_err(|_| format!("escape \\{n} over 255"))?);
                        i += 4;
                    } else {
                        match b.get(i + 1) {
                            Some(x) if !x.is_ascii_digit() => {
                                s.push(*x);
                                i += 2;
                            }
                            _ => return Err(format!("bad escape at byte {i}")),
                        }
                    }
                }
                _ => {
                    s.push(c);
                    i += 1;
                }
            }
        }
        if s.len() > 255 {
            return Err(format!(
                "character-string {} is {} bytes (at most 255)",
                strings.len() + 1,
                s.len()
            ));
        }
        strings.push(s);
        if i < b.len() && !b[i].is_ascii_whitespace() {
            return Err(format!("no space after the string ending at byte {i}"));
        }
    }
    if strings.is_empty() {
        return Err("no character-string".into());
    }
    Ok(strings)
}

/// Google's JSON error.
fn google_error(status: StatusCode, reason: &str, message: &str, state: &str) -> Response {
    (
        status,
        axum::Json(
            json!({"error": {"code": status.as_u16(), "message": message,
            "errors": [{"message": message, "domain": "global", "reason": reason}],
            "status": state}}),
        ),
    )
        .into_response()
}

fn invalid(message: String) -> Response {
    google_error(StatusCode::BAD_REQUEST, "invalid", &message, "INVALID")
}

fn not_found(message: String) -> Response {
    google_error(StatusCode::NOT_FOUND, "notFound", &message, "NOT_FOUND")
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// Counts the call, throttles, checks the bearer token and the project (and the zone, when
/// given).
#[allow(clippy::result_large_err)]
fn gate(
    i: &mut Inner,
    method: &str,
    path: &str,
    headers: &HeaderMap,
    project: &str,
    zone: Option<&str>,
) -> Result<(), Response> {
    i.calls.push(format!("{method} {path}"));
    if i.throttle > 0 {
        i.throttle -= 1;
        return Err(google_error(
            StatusCode::TOO_MANY_REQUESTS,
            "rateLimitExceeded",
            &format!(
                "Quota exceeded for quota metric 'Write requests' and limit 'Write requests per \
                 minute' of service 'dns.googleapis.com' for consumer 'project_number:{}'.",
                i.zone_id
            ),
            "RESOURCE_EXHAUSTED",
        ));
    }
    let unauthenticated = |reason: &str, message: &str| {
        let mut r = google_error(StatusCode::UNAUTHORIZED, reason, message, "UNAUTHENTICATED");
        r.headers_mut().insert(
            "www-authenticate",
            axum::http::HeaderValue::from_static("Bearer realm=\"https://accounts.google.com/\""),
        );
        r
    };
    let Some(token) = super::api_fake::bearer(headers) else {
        return Err(unauthenticated(
            "required",
            "Request is missing required authentication credential. Expected OAuth 2 access \
             token, login cookie or other valid authentication credential.",
        ));
    };
    match i.tokens.get(token) {
        Some(until) if Instant::now() < *until => {}
        _ => {
            return Err(unauthenticated(
                "authError",
                "Request had invalid authentication credentials. Expected OAuth 2 access \
                 token, login cookie or other valid authentication credential.",
            ));
        }
    }
    if project != i.project {
        return Err(not_found(format!(
            "The 'parameters.project' resource named '{project}' does not exist."
        )));
    }
    if let Some(zone) = zone
        && zone != i.managed_zone
    {
        return Err(not_found(format!(
            "The 'parameters.managedZone' resource named '{zone}' does not exist."
        )));
    }
    Ok(())
}

fn zone_json(i: &Inner) -> Value {
    json!({"kind": "dns#managedZone", "name": i.managed_zone, "dnsName": i.dns_name,
        "description": "mailsec test zone", "id": i.zone_id, "creationTime": i.created,
        "visibility": "public",
        "nameServers": (1..=4).map(|n| format!("ns-cloud-a{n}.googledomains.com.")).collect::<Vec<_>>()})
}

fn set_json(s: &Set) -> Value {
    json!({"kind": "dns#resourceRecordSet", "name": s.name, "type": s.rtype, "ttl": s.ttl,
        "rrdatas": s.rrdatas})
}

fn query(raw: Option<String>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn param<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

async fn list_zones(
    State(s): State<Shared>,
    Path(project): Path<String>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let mut i = s.lock().expect("fake state");
    let path = format!("/dns/v1/projects/{project}/managedZones");
    if let Err(r) = gate(&mut i, "GET", &path, &headers, &project, None) {
        return r;
    }
    let q = query(raw);
    let zones: Vec<Value> = match param(&q, "dnsName") {
        Some(d) if !d.ends_with('.') => {
            return invalid(format!("Invalid value for 'parameters.dnsName': '{d}'"));
        }
        Some(d) if !d.eq_ignore_ascii_case(&i.dns_name) => Vec::new(),
        _ => vec![zone_json(&i)],
    };
    axum::Json(json!({"kind": "dns#managedZonesListResponse", "managedZones": zones}))
        .into_response()
}

async fn get_zone(
    State(s): State<Shared>,
    Path((project, zone)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let mut i = s.lock().expect("fake state");
    let path = format!("/dns/v1/projects/{project}/managedZones/{zone}");
    if let Err(r) = gate(&mut i, "GET", &path, &headers, &project, Some(&zone)) {
        return r;
    }
    axum::Json(zone_json(&i)).into_response()
}

async fn list_rrsets(
    State(s): State<Shared>,
    Path((project, zone)): Path<(String, String)>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let mut i = s.lock().expect("fake state");
    let path = format!("/dns/v1/projects/{project}/managedZones/{zone}/rrsets");
    if let Err(r) = gate(&mut i, "GET", &path, &headers, &project, Some(&zone)) {
        return r;
    }
    let q = query(raw);
    let name = param(&q, "name");
    let rtype = param(&q, "type");
    if let Some(n) = name
        && !n.ends_with('.')
    {
        return invalid(format!("Invalid value for 'parameters.name': '{n}'"));
    }
    if let Some(t) = rtype {
        if name.is_none() {
            return invalid(
                "Invalid value for 'parameters.name': '' (name must be specified if type is \
                 specified)"
                    .into(),
            );
        }
        if !TYPES.contains(&t) {
            return invalid(format!("Invalid value for 'parameters.type': '{t}'"));
        }
    }
    let mut page = i.page_size;
    if let Some(m) = param(&q, "maxResults") {
        match m.parse::<usize>() {
            Ok(n) if n > 0 => page = page.min(n),
            _ => return invalid(format!("Invalid value for 'parameters.maxResults': '{m}'")),
        }
    }
    let mut sets: Vec<&Set> = i
        .sets
        .iter()
        .filter(|s| name.is_none_or(|n| s.name.eq_ignore_ascii_case(n)))
        .filter(|s| rtype.is_none_or(|t| s.rtype == t))
        .collect();
    let key = |s: &Set| format!("{}\n{}", s.name.to_ascii_lowercase(), s.rtype);
    sets.sort_by_key(|s| key(s));
    // The token is the key of the first rrset of the next page.
    let start = match param(&q, "pageToken") {
        None | Some("") => 0,
        Some(t) => {
            let Some(from) = URL_SAFE_NO_PAD
                .decode(t)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
            else {
                return invalid(format!("Invalid value for 'parameters.pageToken': '{t}'"));
            };
            sets.iter()
                .position(|s| key(s) >= from)
                .unwrap_or(sets.len())
        }
    };
    let end = (start + page).min(sets.len());
    let mut body = json!({"kind": "dns#resourceRecordSetsListResponse",
        "rrsets": sets[start..end].iter().map(|s| set_json(s)).collect::<Vec<_>>()});
    if end < sets.len() {
        body["nextPageToken"] = json!(URL_SAFE_NO_PAD.encode(key(sets[end])));
    }
    axum::Json(body).into_response()
}

/// One rrset of a change request, read and checked on its own.
struct Entry {
    name: String,
    rtype: String,
    ttl: Option<u32>,
    rrdatas: Vec<String>,
}

#[allow(clippy::result_large_err)]
fn read_entry(i: &Inner, kind: &str, n: usize, v: &Value) -> Result<Entry, Response> {
    let field = |f: &str| format!("entity.change.{kind}[{n}].{f}");
    let required = |f: &str| {
        google_error(
            StatusCode::BAD_REQUEST,
            "required",
            &format!("The '{}' parameter is required but was missing.", field(f)),
            "REQUIRED",
        )
    };
    let name = v
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| required("name"))?;
    let zone = &i.dns_name;
    let inside = name.ends_with('.')
        && (name.eq_ignore_ascii_case(zone)
            || name
                .to_ascii_lowercase()
                .ends_with(&format!(".{}", zone.to_ascii_lowercase())));
    if !inside {
        return Err(invalid(format!(
            "Invalid value for '{}': '{name}'",
            field("name")
        )));
    }
    let rtype = v
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| required("type"))?;
    if !TYPES.contains(&rtype) {
        return Err(invalid(format!(
            "Invalid value for '{}': '{rtype}'",
            field("type")
        )));
    }
    let ttl = match v.get("ttl") {
        None | Some(Value::Null) if kind == "additions" => return Err(required("ttl")),
        None | Some(Value::Null) => None,
        Some(t) => match t.as_u64().and_then(|t| u32::try_from(t).ok()) {
            Some(t) => Some(t),
            None => {
                return Err(invalid(format!(
                    "Invalid value for '{}': '{t}'",
                    field("ttl")
                )));
            }
        },
    };
    let rrdatas: Vec<String> = match v.get("rrdatas").and_then(Value::as_array) {
        Some(a) if !a.is_empty() => {
            let mut out = Vec::new();
            for (j, r) in a.iter().enumerate() {
                let Some(r) = r.as_str() else {
                    return Err(invalid(format!(
                        "Invalid value for '{}': '{r}'",
                        field(&format!("rrdata[{j}]"))
                    )));
                };
                out.push(r.to_owned());
            }
            out
        }
        _ => {
            return Err(invalid(format!(
                "Invalid value for '{}': '<empty>'",
                field("rrdata")
            )));
        }
    };
    for (j, r) in rrdatas.iter().enumerate() {
        let ok = match rtype {
            "A" => r.parse::<std::net::Ipv4Addr>().is_ok(),
            "AAAA" => r.parse::<std::net::Ipv6Addr>().is_ok(),
            "TXT" | "SPF" => txt_strings(r).is_ok(),
            _ => !r.trim().is_empty(),
        };
        if !ok {
            return Err(invalid(format!(
                "Invalid value for '{}': '{r}'",
                field(&format!("rrdata[{j}]"))
            )));
        }
    }
    Ok(Entry {
        name: name.to_owned(),
        rtype: rtype.to_owned(),
        ttl,
        rrdatas,
    })
}

fn quota_exceeded(what: &str) -> Response {
    google_error(
        StatusCode::FORBIDDEN,
        "quotaExceeded",
        &format!("The change would exceed quota for {what}."),
        "RESOURCE_EXHAUSTED",
    )
}

fn same_rrdatas(a: &[String], b: &[String]) -> bool {
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort();
    b.sort();
    a == b
}

async fn create_change(
    State(s): State<Shared>,
    Path((project, zone)): Path<(String, String)>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let mut guard = s.lock().expect("fake state");
    let i = &mut *guard;
    let path = format!("/dns/v1/projects/{project}/managedZones/{zone}/changes");
    if let Err(r) = gate(i, "POST", &path, &headers, &project, Some(&zone)) {
        return r;
    }
    let change: Value = match serde_json::from_str(&body) {
        Ok(v) => v,
        Err(e) => {
            return google_error(
                StatusCode::BAD_REQUEST,
                "parseError",
                &format!("Invalid JSON payload received. {e}"),
                "INVALID_ARGUMENT",
            );
        }
    };
    let list = |k: &str| {
        change
            .get(k)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let (additions, deletions) = (list("additions"), list("deletions"));
    if additions.is_empty() && deletions.is_empty() {
        return google_error(
            StatusCode::BAD_REQUEST,
            "required",
            "The 'entity.change' parameter is required but was missing.",
            "REQUIRED",
        );
    }
    // Quotas first, then each rrset on its own, then against the zone: all before any write.
    if additions.len() > i.quota.rrset_additions_per_change {
        return quota_exceeded("additions per change");
    }
    if deletions.len() > i.quota.rrset_deletions_per_change {
        return quota_exceeded("deletions per change");
    }
    let mut adds = Vec::new();
    let mut dels = Vec::new();
    for (n, v) in additions.iter().enumerate() {
        match read_entry(i, "additions", n, v) {
            Ok(e) => adds.push(e),
            Err(r) => return r,
        }
    }
    for (n, v) in deletions.iter().enumerate() {
        match read_entry(i, "deletions", n, v) {
            Ok(e) => dels.push(e),
            Err(r) => return r,
        }
    }
    if adds
        .iter()
        .chain(&dels)
        .any(|e| e.rrdatas.len() > i.quota.resource_records_per_rrset)
    {
        return quota_exceeded("records per resource record set");
    }
    let size: usize = adds.iter().flat_map(|e| &e.rrdatas).map(String::len).sum();
    if size > i.quota.total_rrdata_size_per_change {
        return quota_exceeded("total rrdata size per change");
    }
    for (kind, list) in [("additions", &adds), ("deletions", &dels)] {
        for (n, e) in list.iter().enumerate() {
            if list[..n]
                .iter()
                .any(|o| o.name.eq_ignore_ascii_case(&e.name) && o.rtype == e.rtype)
            {
                return invalid(format!(
                    "Invalid value for 'entity.change.{kind}[{n}]': '{} ({})' is named twice \
                     in this change",
                    e.name, e.rtype
                ));
            }
        }
    }
    // Someone else writes first.
    if let Some((name, rtype, rrdata)) = i.race.take() {
        add(i, &name, &rtype, &rrdata, 300);
    }
    let mut sets = i.sets.clone();
    for (n, d) in dels.iter().enumerate() {
        let Some(k) = find(&sets, &d.name, &d.rtype) else {
            return not_found(format!(
                "The 'entity.change.deletions[{n}]' resource named '{} ({})' does not exist.",
                d.name, d.rtype
            ));
        };
        let now = &sets[k];
        if d.ttl != Some(now.ttl) || !same_rrdatas(&d.rrdatas, &now.rrdatas) {
            return google_error(
                StatusCode::PRECONDITION_FAILED,
                "conditionNotMet",
                &format!("Precondition not met for 'entity.change.deletions[{n}]'"),
                "CONDITION_NOT_MET",
            );
        }
        sets.remove(k);
    }
    for (n, a) in adds.iter().enumerate() {
        if find(&sets, &a.name, &a.rtype).is_some() {
            return google_error(
                StatusCode::CONFLICT,
                "alreadyExists",
                &format!(
                    "The 'entity.change.additions[{n}]' resource named '{} ({})' already \
                     exists.",
                    a.name, a.rtype
                ),
                "ALREADY_EXISTS",
            );
        }
        sets.push(Set {
            name: a.name.clone(),
            rtype: a.rtype.clone(),
            ttl: a.ttl.unwrap_or(300),
            rrdatas: a.rrdatas.clone(),
        });
    }
    for (n, a) in adds.iter().enumerate() {
        let at: Vec<&Set> = sets
            .iter()
            .filter(|s| s.name.eq_ignore_ascii_case(&a.name))
            .collect();
        if at.len() > 1 && at.iter().any(|s| s.rtype == "CNAME") {
            return google_error(
                StatusCode::BAD_REQUEST,
                "cnameResourceRecordSetConflict",
                &format!(
                    "The resource record set 'entity.change.additions[{n}]' is invalid because \
                     the DNS name '{}' may have either one CNAME resource record set or \
                     resource record sets of other types, but not both.",
                    a.name
                ),
                "INVALID",
            );
        }
    }
    i.sets = sets;
    let pending = i.pending_polls > 0 || !i.pending_for.is_zero();
    let id = (i.changes.len() + 1).to_string();
    let echo = |list: &[Entry]| -> Vec<Value> {
        list.iter()
            .map(|e| {
                json!({"kind": "dns#resourceRecordSet", "name": e.name, "type": e.rtype,
                    "ttl": e.ttl, "rrdatas": e.rrdatas})
            })
            .collect()
    };
    let body = json!({"kind": "dns#change", "id": id, "startTime": jiff::Timestamp::now().to_string(),
        "status": if pending { "pending" } else { "done" },
        "additions": echo(&adds), "deletions": echo(&dels)});
    i.changes.push(ChangeRecord {
        body: body.clone(),
        polls_left: i.pending_polls,
        done_at: Instant::now() + i.pending_for,
    });
    axum::Json(body).into_response()
}

async fn get_change(
    State(s): State<Shared>,
    Path((project, zone, id)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let mut i = s.lock().expect("fake state");
    let path = format!("/dns/v1/projects/{project}/managedZones/{zone}/changes/{id}");
    if let Err(r) = gate(&mut i, "GET", &path, &headers, &project, Some(&zone)) {
        return r;
    }
    let n = id
        .parse::<usize>()
        .ok()
        .filter(|n| *n >= 1 && *n <= i.changes.len());
    let Some(n) = n else {
        return not_found(format!(
            "The 'parameters.changeId' resource named '{id}' does not exist."
        ));
    };
    let c = &mut i.changes[n - 1];
    if c.polls_left > 0 {
        c.polls_left -= 1;
    } else if Instant::now() >= c.done_at {
        c.body["status"] = json!("done");
    }
    axum::Json(c.body.clone()).into_response()
}

fn token_error(error: &str, description: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

/// Checks a service-account assertion; the error and its description when refused.
fn check_assertion(i: &Inner, jwt: &str) -> Result<(), (&'static str, String)> {
    let grant = |d: &str| ("invalid_grant", d.to_owned());
    let parts: Vec<&str> = jwt.split('.').collect();
    let [h, c, sig] = parts[..] else {
        return Err(grant(
            "Invalid JWT: the assertion is not three dot-separated parts.",
        ));
    };
    let decode = |p: &str| -> Option<Value> {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).ok()?).ok()
    };
    let (Some(header), Some(claims)) = (decode(h), decode(c)) else {
        return Err(grant(
            "Invalid JWT: the header or claims are not base64url JSON.",
        ));
    };
    if header.get("alg").and_then(Value::as_str) != Some("RS256") {
        return Err(grant("Invalid JWT: the algorithm must be RS256."));
    }
    if let Some(kid) = header.get("kid").and_then(Value::as_str)
        && kid != i.private_key_id
    {
        return Err(grant("Invalid JWT Signature."));
    }
    let signature = URL_SAFE_NO_PAD
        .decode(sig)
        .ok()
        .and_then(|s| Signature::try_from(s.as_slice()).ok());
    let verifier = VerifyingKey::<Sha256>::new(i.public_key.clone());
    let signed = format!("{h}.{c}");
    if signature.is_none_or(|s| verifier.verify(signed.as_bytes(), &s).is_err()) {
        return Err(grant("Invalid JWT Signature."));
    }
    if claims.get("iss").and_then(Value::as_str) != Some(i.client_email.as_str()) {
        return Err(grant(
            "Invalid JWT: iss is not the service account's client_email.",
        ));
    }
    if claims.get("aud").and_then(Value::as_str) != Some(i.token_uri.as_str()) {
        return Err(grant("Invalid JWT: aud is not the token URI."));
    }
    let scope = claims
        .get("scope")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !scope
        .split(' ')
        .any(|s| s == SCOPE_DNS || s == SCOPE_CLOUD_PLATFORM)
    {
        return Err((
            "invalid_scope",
            "Invalid OAuth scope or ID token audience provided.".into(),
        ));
    }
    let (Some(iat), Some(exp)) = (
        claims.get("iat").and_then(Value::as_u64),
        claims.get("exp").and_then(Value::as_u64),
    ) else {
        return Err(grant("Invalid JWT: iat and exp are required."));
    };
    let now = now_secs();
    if exp <= now || exp < iat || exp - iat > 3600 || iat > now + 300 {
        return Err(grant(
            "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable \
             timeframe. Check your iat and exp values in the JWT claim.",
        ));
    }
    Ok(())
}

async fn token(State(s): State<Shared>, body: String) -> Response {
    let mut i = s.lock().expect("fake state");
    let form: Vec<(String, String)> = url::form_urlencoded::parse(body.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let grant = param(&form, "grant_type").unwrap_or_default().to_owned();
    if grant != JWT_BEARER {
        i.token_requests.push("jwt unsupported_grant_type".into());
        return token_error(
            "unsupported_grant_type",
            &format!("Invalid grant_type: {grant}"),
        );
    }
    let assertion = param(&form, "assertion").unwrap_or_default().to_owned();
    if let Err((error, description)) = check_assertion(&i, &assertion) {
        i.token_requests.push(format!("jwt {error}"));
        return token_error(error, &description);
    }
    i.token_requests.push("jwt ok".into());
    let token = issue(&mut i);
    axum::Json(
        json!({"access_token": token, "expires_in": i.token_lifetime,
        "token_type": "Bearer"}),
    )
    .into_response()
}

fn metadata_allowed(headers: &HeaderMap) -> bool {
    headers.get("metadata-flavor").and_then(|v| v.to_str().ok()) == Some("Google")
        && !headers.contains_key("x-forwarded-for")
}

fn metadata_forbidden() -> Response {
    (
        StatusCode::FORBIDDEN,
        [("content-type", "text/html; charset=UTF-8")],
        "Missing required header \"Metadata-Flavor\"",
    )
        .into_response()
}

async fn metadata_token(State(s): State<Shared>, headers: HeaderMap) -> Response {
    let mut i = s.lock().expect("fake state");
    if !metadata_allowed(&headers) {
        i.token_requests.push("metadata forbidden".into());
        return metadata_forbidden();
    }
    i.token_requests.push("metadata ok".into());
    let token = issue(&mut i);
    axum::Json(
        json!({"access_token": token, "expires_in": i.token_lifetime,
        "token_type": "Bearer"}),
    )
    .into_response()
}

async fn metadata_project(State(s): State<Shared>, headers: HeaderMap) -> Response {
    let i = s.lock().expect("fake state");
    if !metadata_allowed(&headers) {
        return metadata_forbidden();
    }
    (
        [
            ("content-type", "application/text"),
            ("metadata-flavor", "Google"),
        ],
        i.project.clone(),
    )
        .into_response()
}

// ---------------------------------------------------------------------------------------------
// Signing assertions (for tests that play the client)

/// A signed RS256 JWT: base64url (no padding) header and claims, and the PKCS#1 v1.5 SHA-256
/// signature over `header.claims`.
pub fn sign_jwt(key: &RsaPrivateKey, kid: Option<&str>, claims: &Value) -> String {
    let mut header = json!({"alg": "RS256", "typ": "JWT"});
    if let Some(kid) = kid {
        header["kid"] = json!(kid);
    }
    let signed = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = SigningKey::<Sha256>::new(key.clone()).sign(signed.as_bytes());
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
}

/// The claims a service account sends for `scope`, valid for `lifetime` seconds from now.
pub fn claims(key_file: &Value, scope: &str, lifetime: u64) -> Value {
    let now = now_secs();
    json!({"iss": key_file["client_email"], "aud": key_file["token_uri"], "scope": scope,
        "iat": now, "exp": now + lifetime})
}

/// The private key of a JSON key file.
pub fn key_of(key_file: &Value) -> RsaPrivateKey {
    use rsa::pkcs8::DecodePrivateKey;
    RsaPrivateKey::from_pkcs8_pem(key_file["private_key"].as_str().expect("private_key"))
        .expect("a PKCS#8 private key")
}

// ---------------------------------------------------------------------------------------------
// The side door

/// A Cloud DNS v1 client for one managed zone, for tests to write what the operator did not
/// and read what is stored.
#[derive(Clone)]
pub struct Api {
    pub url: String,
    pub project: String,
    pub managed_zone: String,
    /// Sent as `Authorization: Bearer` when set.
    pub token: Option<String>,
    http: reqwest::Client,
}

/// An rrset as the API takes it.
pub fn rrset_body(name: &str, rtype: &str, ttl: u32, rrdatas: &[String]) -> Value {
    json!({"name": fqdn(name), "type": rtype, "ttl": ttl, "rrdatas": rrdatas})
}

impl Api {
    pub fn new(url: &str, project: &str, managed_zone: &str, token: Option<String>) -> Api {
        Api {
            url: url.to_owned(),
            project: project.to_owned(),
            managed_zone: managed_zone.to_owned(),
            token,
            http: super::http_client(),
        }
    }

    /// The same server and zone, another managed zone name.
    pub fn with_zone(&self, managed_zone: &str) -> Api {
        Api {
            managed_zone: managed_zone.to_owned(),
            ..self.clone()
        }
    }

    /// A request to `{url}/dns/v1/projects/{project}{path}` (`path` with its query); the
    /// status and the body (`Value::Null` when it is not JSON).
    pub async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> (u16, Value) {
        let url = format!("{}/dns/v1/projects/{}{path}", self.url, self.project);
        let mut request = self.http.request(method, &url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.expect("Cloud DNS request");
        let status = response.status().as_u16();
        let text = response.text().await.expect("Cloud DNS body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    fn zone_path(&self) -> String {
        format!("/managedZones/{}", self.managed_zone)
    }

    /// Creates this managed zone for `dns_name` (LocalDnsHelper; the fake has its one zone).
    pub async fn create_zone(&self, dns_name: &str) {
        let body = json!({"name": self.managed_zone, "dnsName": fqdn(dns_name),
            "description": "mailsec test zone"});
        let (status, answer) = self.call(Method::POST, "/managedZones", Some(&body)).await;
        assert_eq!(status, 200, "create zone {}: {answer}", self.managed_zone);
    }

    /// `GET rrsets` with this query (`name=a.example.&type=TXT`, ...): status and body.
    pub async fn list(&self, query: &str) -> (u16, Value) {
        let path = format!("{}/rrsets?{query}", self.zone_path());
        self.call(Method::GET, &path, None).await
    }

    /// Every rrset of the zone as `(name, type)`, page by page with `maxResults`.
    pub async fn list_all(&self, max_results: u32) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..10_000 {
            let mut q = format!("maxResults={max_results}");
            if let Some(t) = &token {
                q.push_str(&format!("&pageToken={}", urlencode(t)));
            }
            let (status, body) = self.list(&q).await;
            assert_eq!(status, 200, "list rrsets: {body}");
            let page = body["rrsets"].as_array().cloned().unwrap_or_default();
            assert!(
                page.len() <= max_results as usize,
                "a page of {} rrsets for maxResults={max_results}",
                page.len()
            );
            for s in page {
                out.push((
                    s["name"].as_str().unwrap_or_default().to_owned(),
                    s["type"].as_str().unwrap_or_default().to_owned(),
                ));
            }
            match body["nextPageToken"].as_str() {
                Some(t) if !t.is_empty() => token = Some(t.to_owned()),
                _ => return out,
            }
        }
        panic!("paging never ended")
    }

    /// `POST changes` with these additions and deletions: status and body.
    pub async fn change(&self, additions: &[Value], deletions: &[Value]) -> (u16, Value) {
        let mut body = json!({});
        if !additions.is_empty() {
            body["additions"] = json!(additions);
        }
        if !deletions.is_empty() {
            body["deletions"] = json!(deletions);
        }
        let path = format!("{}/changes", self.zone_path());
        self.call(Method::POST, &path, Some(&body)).await
    }

    /// `GET changes/{id}`: status and body.
    pub async fn get_change(&self, id: &str) -> (u16, Value) {
        let path = format!("{}/changes/{id}", self.zone_path());
        self.call(Method::GET, &path, None).await
    }

    /// The rrset of `rtype` at `name`, if any.
    pub async fn rrset(&self, name: &str, rtype: &str) -> Option<FakeRrset> {
        let (status, body) = self
            .list(&format!("name={}&type={rtype}", urlencode(&fqdn(name))))
            .await;
        assert_eq!(status, 200, "list {name} {rtype}: {body}");
        body["rrsets"].as_array()?.iter().find_map(|s| {
            let same = s["name"]
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case(&fqdn(name)))
                && s["type"] == rtype;
            same.then(|| FakeRrset {
                ttl: s["ttl"]
                    .as_u64()
                    .and_then(|t| u32::try_from(t).ok())
                    .unwrap_or_default(),
                rrdatas: s["rrdatas"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|r| r.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
    }

    /// Adds one rrdata to the rrset of `rtype` at `name` as someone else would: one change that
    /// deletes the rrset as read and adds it with the rrdata appended (or only adds it, with
    /// `ttl`, when there is none).
    pub async fn add_raw(&self, name: &str, rtype: &str, rrdata: &str, ttl: u32) {
        let (additions, deletions) = match self.rrset(name, rtype).await {
            Some(now) => {
                let mut rrdatas = now.rrdatas.clone();
                rrdatas.push(rrdata.to_owned());
                (
                    vec![rrset_body(name, rtype, now.ttl, &rrdatas)],
                    vec![rrset_body(name, rtype, now.ttl, &now.rrdatas)],
                )
            }
            None => (
                vec![rrset_body(name, rtype, ttl, &[rrdata.to_owned()])],
                Vec::new(),
            ),
        };
        let (status, body) = self.change(&additions, &deletions).await;
        assert_eq!(status, 200, "side-door change at {name}: {body}");
    }

    /// The TXT rrdatas at `name`, as stored.
    pub async fn txt(&self, name: &str) -> Vec<String> {
        self.rrset(name, "TXT")
            .await
            .map(|s| s.rrdatas)
            .unwrap_or_default()
    }

    /// The TXT values at `name`: each rrdata's strings unescaped and joined.
    pub async fn values(&self, name: &str) -> Vec<String> {
        self.txt(name).await.iter().map(|r| txt_value(r)).collect()
    }
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
