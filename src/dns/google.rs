//! The `google` provider: Google Cloud DNS through its v1 REST API, with an OAuth 2.0 access
//! token from the GKE metadata server (Workload Identity) or from a service-account key.
//!
//! Cloud DNS keeps whole resource record sets (a name and a type, `rrdatas[]`) and changes
//! them by `changes.create` — `{deletions, additions}` applied all or nothing. A deletion must
//! match the set as stored exactly (TTL and rrdatas), else 412 `conditionNotMet`; an addition
//! where a set of that name and type remains is 409 `alreadyExists`. So a write here is one
//! change for all the names of a plan: their sets read afresh (each rrdata as stored), stop if
//! one is no longer what the plan read, then one `changes.create` that deletes each old set as
//! read and adds it as [`rrsets_after`] says: a compare-and-swap of every name at once.
//! Someone's write in between fails it with 412 or 409 and nothing is written
//! ([`DnsError::ConcurrentChange`]; the next pass reads again). The change is then polled
//! (`changes.get`) until `done`, so the next read sees what was written.
//!
//! TXT: one rrdata is one record in zone-file presentation. Ours are quoted strings of at
//! most 255 bytes; foreign ones are written back exactly as read (and their sets' other
//! fields, routing policies included, are deleted as read, so a set we do not understand
//! fails the change rather than being rewritten). Values compare joined. Names are read with
//! `rrsets.list?name=&type=` (pages followed), never the whole zone. The managed zone is
//! found by its DNS name (`managedZones.list?dnsName=`, public zones only) unless the
//! settings name it.
//!
//! Credentials: GKE Workload Identity (the metadata server's token for the pod's identity;
//! `GCE_METADATA_HOST` when set, as Google's own libraries read it), or a service-account JSON
//! key from a Secret, exchanged as an RS256-signed JWT at the key's `token_uri`. A token is
//! kept until shortly before it expires. Rate limits (429, or 403 `rateLimitExceeded` /
//! `userRateLimitExceeded`) are waited out when short and retried a bounded number of times;
//! every request, token requests too, is metered.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use futures_util::future::BoxFuture;
use reqwest::Method;
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::sha2::Sha256;
use rsa::signature::{SignatureEncoding, Signer};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::DnsError;
use super::address::AddressSet;
use super::backend::{ApiMeter, ConnectError, DnsBackend, NoMeter, SecretSource, ZoneIds};
use super::content;
use super::http;
use super::plan::{Current, Operation, RRset, fqdn, rrsets_after};
use crate::api::GoogleSpec;

/// Cloud DNS, unless the settings say otherwise.
pub const ENDPOINT: &str = "https://dns.googleapis.com";
/// The metadata server of GCE and GKE, unless `GCE_METADATA_HOST` says otherwise.
pub const METADATA_HOST: &str = "metadata.google.internal";
/// Where a key's token exchange goes when the key does not say.
pub const TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
/// The access a token is asked for: read and write Cloud DNS.
pub const SCOPE: &str = "https://www.googleapis.com/auth/ndev.clouddns.readwrite";
/// How long one request may take.
const TIMEOUT: Duration = Duration::from_secs(15);
/// A token is renewed this long before it expires (or at half its life, if that is sooner).
const RENEW_EARLY: Duration = Duration::from_secs(300);
/// How long a change may stay `pending` before the pass gives up waiting (it is applied
/// anyway; the next pass reads the result).
const CHANGE_WAIT: Duration = Duration::from_secs(60);
/// The lifetime asked for a service-account assertion: Google's maximum.
const ASSERTION_LIFETIME: u64 = 3600;

/// How the backend gets its tokens.
#[derive(Clone)]
pub enum Credential {
    /// A metadata server (GKE Workload Identity, or a GCE VM's service account) at `base`
    /// (`http://metadata.google.internal`).
    Metadata { base: String },
    /// A service-account key.
    ServiceAccount(Box<ServiceAccount>),
}

/// A service-account key, read from its JSON file.
#[derive(Clone)]
pub struct ServiceAccount {
    email: String,
    key_id: Option<String>,
    token_uri: String,
    key: SigningKey<Sha256>,
}

impl std::fmt::Debug for Credential {
    // Never prints the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Metadata { base } => write!(f, "Metadata({base})"),
            Credential::ServiceAccount(sa) => {
                write!(f, "ServiceAccount({}, {})", sa.email, sa.token_uri)
            }
        }
    }
}

/// The fields of a key file that are used.
#[derive(Deserialize)]
struct KeyFile {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    client_email: String,
    private_key: String,
    #[serde(default)]
    private_key_id: Option<String>,
    #[serde(default)]
    token_uri: Option<String>,
}

impl Credential {
    /// The metadata server at `host` (a host and port, or a URL).
    pub fn metadata(host: &str) -> Credential {
        let base = if host.contains("://") {
            host.trim_end_matches('/').to_owned()
        } else {
            format!("http://{}", host.trim_end_matches('/'))
        };
        Credential::Metadata { base }
    }

    /// A service-account key from its JSON key file (as `gcloud iam service-accounts keys
    /// create` writes it).
    pub fn service_account(json: &str) -> Result<Credential, String> {
        let file: KeyFile = serde_json::from_str(json)
            .map_err(|e| format!("not a service-account JSON key file: {e}"))?;
        if let Some(kind) = file.kind.as_deref().filter(|k| *k != "service_account") {
            return Err(format!(
                "the key file's type is `{kind}`, not `service_account` (a user's or an external account's credentials cannot be used)"
            ));
        }
        let key = rsa::RsaPrivateKey::from_pkcs8_pem(&file.private_key)
            .map_err(|e| format!("the key file's private_key is not a PKCS#8 RSA key: {e}"))?;
        let token_uri = file.token_uri.unwrap_or_else(|| TOKEN_URI.to_owned());
        http::base_url("the key file's token_uri", &token_uri).map_err(|e| e.to_string())?;
        Ok(Credential::ServiceAccount(Box::new(ServiceAccount {
            email: file.client_email,
            key_id: file.private_key_id,
            token_uri,
            key: SigningKey::<Sha256>::new(key),
        })))
    }

    fn hint(&self) -> &'static str {
        match self {
            Credential::Metadata { .. } => {
                "check that the controller's ServiceAccount is allowed to act as a Google service account (iam.gke.io/gcp-service-account, roles/iam.workloadIdentityUser) or is granted roles/dns.admin itself, and that the node pool runs the GKE metadata server"
            }
            Credential::ServiceAccount(_) => {
                "check the service-account key (it may have been deleted or disabled)"
            }
        }
    }
}

impl ServiceAccount {
    /// The signed JWT that asks `token_uri` for a token, issued at `now` (Unix seconds).
    fn assertion(&self, now: u64) -> String {
        let b64 = |v: &Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string().as_bytes())
        };
        let mut header = json!({"alg": "RS256", "typ": "JWT"});
        if let Some(kid) = &self.key_id {
            header["kid"] = json!(kid);
        }
        let claims = json!({
            "iss": self.email, "scope": SCOPE, "aud": self.token_uri,
            "iat": now, "exp": now + ASSERTION_LIFETIME,
        });
        let signed = format!("{}.{}", b64(&header), b64(&claims));
        let signature = self.key.sign(signed.as_bytes()).to_vec();
        format!(
            "{signed}.{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signature)
        )
    }
}

struct Token {
    value: String,
    renew_at: Instant,
}

pub struct Google {
    http: reqwest::Client,
    /// `{endpoint}/dns/v1/projects/{project}/managedZones`
    zones: url::Url,
    project: String,
    /// The managed zone the settings name, for every zone; else looked up by DNS name.
    managed_zone: Option<String>,
    credential: Credential,
    /// One token for every request; the lock is held while one is fetched.
    token: tokio::sync::Mutex<Option<Token>>,
    managed: ZoneIds,
    change_wait: Duration,
    meter: Arc<dyn ApiMeter>,
}

/// Google's error body.
#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Debug, Deserialize)]
struct ErrorDetail {
    #[serde(default)]
    message: String,
    #[serde(default)]
    errors: Vec<ErrorItem>,
}

#[derive(Debug, Deserialize)]
struct ErrorItem {
    #[serde(default)]
    reason: String,
}

/// The token services' error body.
#[derive(Debug, Deserialize)]
struct TokenError {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
}

#[derive(Debug, Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct ZoneList {
    #[serde(default, rename = "managedZones")]
    managed_zones: Vec<ManagedZone>,
    #[serde(default, rename = "nextPageToken")]
    next_page_token: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ManagedZone {
    name: String,
    #[serde(rename = "dnsName")]
    dns_name: String,
    #[serde(default)]
    visibility: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RrsetList {
    #[serde(default)]
    rrsets: Vec<Value>,
    #[serde(default, rename = "nextPageToken")]
    next_page_token: Option<String>,
}

/// A resource record set as read: what is used, and the whole of it (to delete it exactly).
#[derive(Debug, Clone)]
struct Stored {
    rtype: String,
    ttl: u32,
    rrdatas: Vec<String>,
    raw: Value,
}

impl Stored {
    fn from_json(raw: Value) -> Result<Stored, DnsError> {
        let unreadable = || {
            DnsError::Server(format!(
                "google: a record set in the answer cannot be read: {}",
                raw.to_string().chars().take(200).collect::<String>()
            ))
        };
        let rtype = raw["type"].as_str().ok_or_else(unreadable)?.to_owned();
        let ttl = raw["ttl"]
            .as_u64()
            .and_then(|t| u32::try_from(t).ok())
            .unwrap_or_default();
        let rrdatas = raw["rrdatas"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        Ok(Stored {
            rtype,
            ttl,
            rrdatas,
            raw,
        })
    }
}

/// A change as `changes.create` takes it.
#[derive(Default)]
struct Change {
    additions: Vec<Value>,
    deletions: Vec<Value>,
}

impl Change {
    fn is_empty(&self) -> bool {
        self.additions.is_empty() && self.deletions.is_empty()
    }

    fn add(&mut self, name: &str, rtype: &str, ttl: u32, rrdatas: Vec<String>) {
        self.additions.push(json!({
            "kind": "dns#resourceRecordSet", "name": fqdn(name), "type": rtype,
            "ttl": ttl, "rrdatas": rrdatas,
        }));
    }
}

impl Google {
    pub async fn from_spec(
        spec: &GoogleSpec,
        secrets: &dyn SecretSource,
    ) -> Result<Self, ConnectError> {
        let config = |what: String| ConnectError::Dns(DnsError::Config(format!("google: {what}")));
        let credential = match (&spec.service_account_key_secret_ref, spec.workload_identity) {
            (Some(reference), false) => {
                let raw = secrets.value(reference).await?;
                let text = String::from_utf8(raw).map_err(|_| {
                    config(format!(
                        "Secret {} key {} is not text (a JSON key file)",
                        reference.name, reference.key
                    ))
                })?;
                Credential::service_account(&text).map_err(|e| {
                    config(format!(
                        "Secret {} key {}: {e}",
                        reference.name, reference.key
                    ))
                })?
            }
            (None, true) => Credential::metadata(
                &std::env::var("GCE_METADATA_HOST")
                    .ok()
                    .filter(|h| !h.trim().is_empty())
                    .unwrap_or_else(|| METADATA_HOST.to_owned()),
            ),
            _ => {
                return Err(config(
                    "set either serviceAccountKeySecretRef or workloadIdentity: true".into(),
                ));
            }
        };
        let google = Google::new(
            spec.endpoint.as_deref().unwrap_or(ENDPOINT),
            &spec.project,
            credential,
        )?;
        Ok(match &spec.managed_zone {
            Some(mz) => google.with_managed_zone(mz),
            None => google,
        })
    }

    pub fn new(endpoint: &str, project: &str, credential: Credential) -> Result<Self, DnsError> {
        let endpoint = http::base_url("google endpoint", endpoint)?;
        if let Credential::Metadata { base } = &credential {
            http::base_url("google metadata server", base)?;
        }
        let mut zones = url::Url::parse(&endpoint)
            .map_err(|e| DnsError::Config(format!("google endpoint: {e}")))?;
        zones
            .path_segments_mut()
            .map_err(|()| DnsError::Config("google endpoint cannot take a path".into()))?
            .pop_if_empty()
            .extend(["dns", "v1", "projects", project, "managedZones"]);
        Ok(Google {
            http: http::client(TIMEOUT)?,
            zones,
            project: project.to_owned(),
            managed_zone: None,
            credential,
            token: tokio::sync::Mutex::new(None),
            managed: ZoneIds::default(),
            change_wait: CHANGE_WAIT,
            meter: Arc::new(NoMeter),
        })
    }

    /// Writes every zone to the managed zone named `name` (no lookup by DNS name).
    pub fn with_managed_zone(self, name: &str) -> Self {
        Google {
            managed_zone: Some(name.to_owned()),
            ..self
        }
    }

    /// Reports every API request to `meter`.
    pub fn with_meter(self, meter: Arc<dyn ApiMeter>) -> Self {
        Google { meter, ..self }
    }

    /// Waits at most `wait` for a change to be `done`.
    pub fn with_change_wait(self, wait: Duration) -> Self {
        Google {
            change_wait: wait,
            ..self
        }
    }

    /// A bearer token: the one kept, or a new one.
    async fn bearer(&self) -> Result<String, DnsError> {
        let mut slot = self.token.lock().await;
        if let Some(t) = slot.as_ref()
            && Instant::now() < t.renew_at
        {
            return Ok(t.value.clone());
        }
        let (value, lifetime) =
            http::with_rate_limit_retries(self.meter.as_ref(), "google", || self.fetch_token())
                .await?;
        let early = RENEW_EARLY.min(lifetime / 2);
        *slot = Some(Token {
            value: value.clone(),
            renew_at: Instant::now() + lifetime.saturating_sub(early),
        });
        Ok(value)
    }

    /// Forgets the token, after the API refused it.
    async fn drop_token(&self) {
        *self.token.lock().await = None;
    }

    /// One token request: the token and how long it lasts.
    async fn fetch_token(&self) -> Result<(String, Duration), DnsError> {
        let (request, what) = match &self.credential {
            Credential::Metadata { base } => {
                let url =
                    format!("{base}/computeMetadata/v1/instance/service-accounts/default/token");
                let request = self.http.get(&url).header("Metadata-Flavor", "Google");
                (request, format!("google metadata server {base}"))
            }
            Credential::ServiceAccount(sa) => {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or_default();
                let body = url::form_urlencoded::Serializer::new(String::new())
                    .append_pair("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer")
                    .append_pair("assertion", &sa.assertion(now))
                    .finish();
                let request = self
                    .http
                    .post(&sa.token_uri)
                    .header(
                        reqwest::header::CONTENT_TYPE,
                        "application/x-www-form-urlencoded",
                    )
                    .body(body);
                (request, format!("google token {}", sa.token_uri))
            }
        };
        let answer = http::send(request, None, &what).await?;
        let status = answer.status;
        if status.is_success() {
            let parsed: TokenAnswer = serde_json::from_str(&answer.text).map_err(|e| {
                DnsError::Auth(format!("{what}: the answer holds no access_token: {e}"))
            })?;
            // Unsaid: an hour, the usual lifetime.
            let seconds = parsed.expires_in.unwrap_or(3600);
            return Ok((parsed.access_token, Duration::from_secs(seconds)));
        }
        let (code, description) = serde_json::from_str::<TokenError>(&answer.text)
            .map(|e| (e.error, e.error_description))
            .unwrap_or_else(|_| (String::new(), answer.text.chars().take(200).collect()));
        let detail = format!("{what}: HTTP {status}: {code}: {description}");
        Err(match status.as_u16() {
            429 => DnsError::RateLimited {
                retry_after: http::retry_after(&answer.headers),
                detail,
            },
            400..=499 => DnsError::Auth(format!("{detail}: {}", self.credential.hint())),
            _ => DnsError::Server(detail),
        })
    }

    /// `{zones}/{segments...}` with `query`.
    fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> Result<url::Url, DnsError> {
        let mut url = self.zones.clone();
        url.path_segments_mut()
            .map_err(|()| DnsError::Config("google endpoint cannot take a path".into()))?
            .extend(segments);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        Ok(url)
    }

    /// One request, repeated after a short rate limit: the body of a 2xx.
    async fn call(
        &self,
        method: Method,
        url: &url::Url,
        body: Option<&Value>,
    ) -> Result<String, DnsError> {
        let body = body.map(Value::to_string);
        http::with_rate_limit_retries(self.meter.as_ref(), "google", || {
            self.call_once(method.clone(), url, body.clone())
        })
        .await
    }

    async fn call_once(
        &self,
        method: Method,
        url: &url::Url,
        body: Option<String>,
    ) -> Result<String, DnsError> {
        let token = self.bearer().await?;
        let request = self
            .http
            .request(method.clone(), url.clone())
            .bearer_auth(token);
        // The path after the project, for messages.
        let path = url
            .path()
            .split("/managedZones")
            .nth(1)
            .unwrap_or(url.path());
        let what = format!("google {method} managedZones{path}");
        let answer = http::send(request, body, &what).await?;
        let status = answer.status;
        if status.is_success() {
            return Ok(answer.text);
        }
        let (reason, message) = serde_json::from_str::<ErrorBody>(&answer.text)
            .map(|e| {
                let reason = e.error.errors.into_iter().next().map(|i| i.reason);
                (reason.unwrap_or_default(), e.error.message)
            })
            .unwrap_or_else(|_| (String::new(), answer.text.chars().take(200).collect()));
        let detail = format!("{what}: HTTP {status}: {reason}: {message}");
        let limited = matches!(
            reason.as_str(),
            "rateLimitExceeded" | "userRateLimitExceeded"
        );
        Err(match status.as_u16() {
            429 => DnsError::RateLimited {
                retry_after: http::retry_after(&answer.headers),
                detail,
            },
            403 if limited => DnsError::RateLimited {
                retry_after: http::retry_after(&answer.headers),
                detail,
            },
            401 => {
                self.drop_token().await;
                DnsError::Auth(format!("{detail}: {}", self.credential.hint()))
            }
            403 if reason == "quotaExceeded" => DnsError::Refused(format!(
                "{detail}: a Cloud DNS quota of project {} is reached (gcloud dns project-info describe {} shows them)",
                self.project, self.project
            )),
            403 => DnsError::Refused(format!(
                "{detail}: the identity needs roles/dns.admin on project {} (or on the managed zone)",
                self.project
            )),
            // A set this change deletes as read is gone: someone deleted it meanwhile.
            404 if message.contains("entity.change.deletions") => {
                DnsError::ConcurrentChange(format!(
                    "{detail}: a record set was deleted since it was read; nothing was written, the next pass reads again"
                ))
            }
            404 => {
                DnsError::ZoneNotFound(format!("{detail}: check the project and the managed zone"))
            }
            409 | 412 => DnsError::ConcurrentChange(format!(
                "{detail}: a record set changed since it was read; nothing was written, the next pass reads again"
            )),
            _ => DnsError::Server(detail),
        })
    }

    /// The managed zone that holds `zone`.
    async fn managed_zone(&self, zone: &str) -> Result<String, DnsError> {
        if let Some(mz) = &self.managed_zone {
            return Ok(mz.clone());
        }
        self.managed
            .get_or_find(zone, self.find_managed_zone(zone))
            .await
    }

    async fn find_managed_zone(&self, zone: &str) -> Result<String, DnsError> {
        let dns_name = fqdn(&zone.to_ascii_lowercase());
        let mut found = Vec::new();
        let mut page: Option<String> = None;
        loop {
            let mut query = vec![("dnsName", dns_name.as_str())];
            if let Some(p) = &page {
                query.push(("pageToken", p));
            }
            let url = self.url(&[], &query)?;
            let body = self.call(Method::GET, &url, None).await?;
            let list: ZoneList = serde_json::from_str(&body).map_err(|e| {
                DnsError::Server(format!("google managedZones.list: unreadable answer: {e}"))
            })?;
            found.extend(list.managed_zones.into_iter().filter(|z| {
                z.dns_name.eq_ignore_ascii_case(&dns_name)
                    && z.visibility.as_deref().is_none_or(|v| v == "public")
            }));
            match list.next_page_token {
                Some(next) if !next.is_empty() => page = Some(next),
                _ => break,
            }
        }
        match found.as_slice() {
            [one] => Ok(one.name.clone()),
            [] => Err(DnsError::ZoneNotFound(format!(
                "google: project {} has no public managed zone for {dns_name}",
                self.project
            ))),
            several => Err(DnsError::Config(format!(
                "google: project {} has several public managed zones for {dns_name} ({}); name one in managedZone",
                self.project,
                several
                    .iter()
                    .map(|z| z.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    /// The record sets at `name` (of `rtype`, or all types), every page.
    async fn list(
        &self,
        managed: &str,
        name: &str,
        rtype: Option<&str>,
    ) -> Result<Vec<Stored>, DnsError> {
        let name = fqdn(name);
        let mut out = Vec::new();
        let mut page: Option<String> = None;
        loop {
            let mut query = vec![("name", name.as_str())];
            if let Some(t) = rtype {
                query.push(("type", t));
            }
            if let Some(p) = &page {
                query.push(("pageToken", p));
            }
            let url = self.url(&[managed, "rrsets"], &query)?;
            let body = self.call(Method::GET, &url, None).await?;
            let list: RrsetList = serde_json::from_str(&body).map_err(|e| {
                DnsError::Server(format!("google rrsets.list {name}: unreadable answer: {e}"))
            })?;
            for raw in list.rrsets {
                // The filter is the server's; a set of another name is not taken for this one.
                let same_name = raw["name"]
                    .as_str()
                    .is_some_and(|n| n.eq_ignore_ascii_case(&name));
                if same_name {
                    out.push(Stored::from_json(raw)?);
                }
            }
            match list.next_page_token {
                Some(next) if !next.is_empty() => page = Some(next),
                _ => break,
            }
        }
        Ok(out)
    }

    /// The TXT set at `name`, if any.
    async fn txt(&self, managed: &str, name: &str) -> Result<Option<Stored>, DnsError> {
        Ok(self
            .list(managed, name, Some("TXT"))
            .await?
            .into_iter()
            .find(|s| s.rtype == "TXT"))
    }

    /// Creates `change` and waits until it is `done`.
    async fn submit(&self, managed: &str, change: &Change) -> Result<(), DnsError> {
        let url = self.url(&[managed, "changes"], &[])?;
        let body = json!({
            "kind": "dns#change", "additions": change.additions, "deletions": change.deletions,
        });
        let answer = self.call(Method::POST, &url, Some(&body)).await?;
        let created: Value = serde_json::from_str(&answer).map_err(|e| {
            DnsError::Server(format!("google changes.create: unreadable answer: {e}"))
        })?;
        let id = created["id"].as_str().unwrap_or_default().to_owned();
        let mut status = created["status"].as_str().unwrap_or_default().to_owned();
        let deadline = Instant::now() + self.change_wait;
        let mut pause = Duration::from_millis(100);
        while status != "done" {
            if id.is_empty() {
                return Err(DnsError::Server(format!(
                    "google changes.create answered status `{status}` without a change id"
                )));
            }
            if Instant::now() + pause > deadline {
                return Err(DnsError::Server(format!(
                    "google: change {id} still `{status}` after {} s; it is applied in time, the next pass reads the result",
                    self.change_wait.as_secs()
                )));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
            let url = self.url(&[managed, "changes", &id], &[])?;
            let answer = self.call(Method::GET, &url, None).await?;
            let polled: Value = serde_json::from_str(&answer).map_err(|e| {
                DnsError::Server(format!("google changes.get {id}: unreadable answer: {e}"))
            })?;
            status = polled["status"].as_str().unwrap_or_default().to_owned();
        }
        Ok(())
    }

    async fn read_all(&self, zone: &str, names: &[String]) -> Result<Current, DnsError> {
        let managed = self.managed_zone(zone).await?;
        let mut current = Current::new();
        for name in names {
            if let Some(rrset) = logical(self.txt(&managed, name).await?.as_ref()) {
                current.insert(name.clone(), rrset);
            }
        }
        Ok(current)
    }

    async fn apply_all(
        &self,
        zone: &str,
        current: &Current,
        operations: &[Operation],
    ) -> Result<(), DnsError> {
        let managed = self.managed_zone(zone).await?;
        let mut change = Change::default();
        for (name, wanted) in rrsets_after(current, operations) {
            let stored = self.txt(&managed, &name).await?;
            if !RRset::same(logical(stored.as_ref()).as_ref(), current.get(&name)) {
                return Err(DnsError::ConcurrentChange(format!(
                    "google: {name} changed since it was read; nothing was written"
                )));
            }
            let rrdatas = content::contents_for(
                stored
                    .iter()
                    .flat_map(|s| s.rrdatas.iter().map(String::as_str)),
                &wanted.values,
            );
            let unchanged = match &stored {
                Some(s) => s.ttl == wanted.ttl && s.rrdatas == rrdatas,
                None => rrdatas.is_empty(),
            };
            if unchanged {
                continue;
            }
            if let Some(s) = stored {
                change.deletions.push(s.raw);
            }
            if !rrdatas.is_empty() {
                change.add(&name, "TXT", wanted.ttl, rrdatas);
            }
        }
        if change.is_empty() {
            return Ok(());
        }
        self.submit(&managed, &change)
            .await
            .map_err(|e| e.with_detail("nothing was changed (one change for all names)"))
    }

    /// The CNAME, A and AAAA sets at `name`, and what they hold.
    async fn addresses(
        &self,
        managed: &str,
        name: &str,
    ) -> Result<(AddressSet, BTreeMap<String, Stored>), DnsError> {
        let mut set = AddressSet::default();
        let mut sets = BTreeMap::new();
        for stored in self.list(managed, name, None).await? {
            if !matches!(stored.rtype.as_str(), "CNAME" | "A" | "AAAA") {
                continue;
            }
            for v in &stored.rrdatas {
                set.add(&stored.rtype, v, stored.ttl)
                    .map_err(|e| DnsError::Server(format!("google: {e} at {name}")))?;
            }
            sets.insert(stored.rtype.clone(), stored);
        }
        Ok((set, sets))
    }

    async fn read_address_of(&self, zone: &str, name: &str) -> Result<AddressSet, DnsError> {
        let managed = self.managed_zone(zone).await?;
        Ok(self.addresses(&managed, name).await?.0)
    }

    /// One change: the address sets as read deleted, the wanted ones added (a CNAME and an A
    /// swap places in one step).
    async fn write_address_of(
        &self,
        zone: &str,
        name: &str,
        before: &AddressSet,
        after: &AddressSet,
    ) -> Result<(), DnsError> {
        let managed = self.managed_zone(zone).await?;
        let (now, sets) = self.addresses(&managed, name).await?;
        if !now.same_records(before) {
            return Err(DnsError::ConcurrentChange(format!(
                "google: the address records at {name} changed since they were read; nothing written"
            )));
        }
        let wanted: [(&str, Vec<String>); 3] = [
            ("CNAME", after.cname.iter().map(|c| fqdn(c)).collect()),
            ("A", after.a.iter().map(ToString::to_string).collect()),
            ("AAAA", after.aaaa.iter().map(ToString::to_string).collect()),
        ];
        let mut change = Change::default();
        for (rtype, rrdatas) in wanted {
            let stored = sets.get(rtype);
            let same = stored.is_some_and(|s| {
                let mut have = s.rrdatas.clone();
                have.sort();
                let mut want = rrdatas.clone();
                want.sort();
                s.ttl == after.ttl && have == want
            });
            if same || (stored.is_none() && rrdatas.is_empty()) {
                continue;
            }
            if let Some(s) = stored {
                change.deletions.push(s.raw.clone());
            }
            if !rrdatas.is_empty() {
                change.add(name, rtype, after.ttl, rrdatas);
            }
        }
        if change.is_empty() {
            return Ok(());
        }
        self.submit(&managed, &change).await
    }
}

impl DnsBackend for Google {
    fn kind(&self) -> &'static str {
        "google"
    }

    fn read<'a>(
        &'a self,
        zone: &'a str,
        names: &'a [String],
    ) -> BoxFuture<'a, Result<Current, DnsError>> {
        Box::pin(self.read_all(zone, names))
    }

    fn apply<'a>(
        &'a self,
        zone: &'a str,
        current: &'a Current,
        operations: &'a [Operation],
    ) -> BoxFuture<'a, Result<(), DnsError>> {
        Box::pin(self.apply_all(zone, current, operations))
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

/// The logical values of a TXT set: each rrdata's strings joined.
fn logical(stored: Option<&Stored>) -> Option<RRset> {
    let stored = stored?;
    let values: Vec<String> = stored
        .rrdatas
        .iter()
        .map(|r| content::value_of(r))
        .collect();
    (!values.is_empty()).then_some(RRset {
        ttl: stored.ttl,
        values,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::pkcs1v15::VerifyingKey;
    use rsa::pkcs8::{EncodePrivateKey, LineEnding};
    use rsa::signature::Verifier;

    fn key_file(key: &rsa::RsaPrivateKey) -> String {
        let pem = key.to_pkcs8_pem(LineEnding::LF).expect("pem");
        json!({
            "type": "service_account", "project_id": "p", "private_key_id": "k1",
            "private_key": pem.as_str(), "client_email": "dns@p.iam.gserviceaccount.com",
            "token_uri": "https://oauth2.example/token",
        })
        .to_string()
    }

    #[test]
    fn the_assertion_is_an_rs256_jwt_the_key_verifies() {
        let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).expect("key");
        let Credential::ServiceAccount(sa) =
            Credential::service_account(&key_file(&key)).expect("credential")
        else {
            panic!("not a service account");
        };
        let jwt = sa.assertion(1_000);
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3, "{jwt}");
        let decode = |p: &str| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .expect("base64url")
        };
        let header: Value = serde_json::from_slice(&decode(parts[0])).expect("header");
        let claims: Value = serde_json::from_slice(&decode(parts[1])).expect("claims");
        assert_eq!(header["alg"], "RS256");
        assert_eq!(header["kid"], "k1");
        assert_eq!(claims["iss"], "dns@p.iam.gserviceaccount.com");
        assert_eq!(claims["aud"], "https://oauth2.example/token");
        assert_eq!(claims["scope"], SCOPE);
        assert_eq!(claims["exp"].as_u64(), Some(1_000 + ASSERTION_LIFETIME));
        let signature =
            rsa::pkcs1v15::Signature::try_from(decode(parts[2]).as_slice()).expect("signature");
        let verifier = VerifyingKey::<Sha256>::new(key.to_public_key());
        let signed = format!("{}.{}", parts[0], parts[1]);
        verifier
            .verify(signed.as_bytes(), &signature)
            .expect("verifies");
        assert!(
            verifier.verify(b"something else", &signature).is_err(),
            "a signature over other bytes does not verify"
        );
        assert!(!format!("{:?}", Credential::ServiceAccount(sa)).contains("PRIVATE"));
    }

    #[test]
    fn key_files_of_other_kinds_are_refused_with_the_reason() {
        let err = Credential::service_account(
            r#"{"type": "authorized_user", "client_email": "a", "private_key": "x"}"#,
        )
        .expect_err("user credentials");
        assert!(err.contains("authorized_user"), "{err}");
        let err = Credential::service_account(
            r#"{"type": "service_account", "client_email": "a", "private_key": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"}"#,
        )
        .expect_err("bad key");
        assert!(err.contains("PKCS#8"), "{err}");
        assert!(Credential::service_account("not json").is_err());
    }

    #[test]
    fn urls_name_the_project_zone_and_filter() {
        let g = Google::new(
            "https://dns.googleapis.com/",
            "my-project",
            Credential::metadata("metadata.google.internal"),
        )
        .expect("google");
        let url = g
            .url(
                &["zone-1", "rrsets"],
                &[("name", "_dmarc.example.com."), ("type", "TXT")],
            )
            .expect("url");
        assert_eq!(
            url.as_str(),
            "https://dns.googleapis.com/dns/v1/projects/my-project/managedZones/zone-1/rrsets?name=_dmarc.example.com.&type=TXT"
        );
        let Credential::Metadata { base } = Credential::metadata("127.0.0.1:8080") else {
            panic!("metadata");
        };
        assert_eq!(base, "http://127.0.0.1:8080");
        assert!(Google::new("ftp://x", "p", Credential::metadata("h")).is_err());
    }

    #[test]
    fn txt_sets_read_joined_and_are_deleted_as_read() {
        let raw = json!({"kind": "dns#resourceRecordSet", "name": "example.com.", "type": "TXT",
            "ttl": 300, "rrdatas": ["\"v=DKIM1; \" \"p=AB\"", "\"google-site-verification=x\""],
            "routingPolicy": {"geo": {}}});
        let stored = Stored::from_json(raw.clone()).expect("stored");
        let read = logical(Some(&stored)).expect("values");
        assert_eq!(read.ttl, 300);
        assert_eq!(read.values, ["v=DKIM1; p=AB", "google-site-verification=x"]);
        assert_eq!(stored.raw, raw, "the deletion carries every field as read");
        assert!(Stored::from_json(json!({"name": "x."})).is_err());
    }
}
