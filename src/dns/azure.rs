//! The `azure` provider: Azure DNS through Azure Resource Manager (the `Microsoft.Network`
//! record sets API, version 2018-05-01), with a bearer token from Microsoft Entra ID.
//!
//! Azure keeps whole record sets (`…/dnsZones/{zone}/TXT/{name}`, `@` for the apex): a `PUT`
//! replaces every value at a name, atomically, and the record set's `etag` makes it a
//! compare-and-swap. So a write here is, per name: a fresh `GET` (the etag, and each value's
//! strings as stored); stop if it is no longer what the plan read; `PUT` the set as
//! [`rrsets_after`] says with `If-Match: <etag>` (or `If-None-Match: *` for a new set), or
//! `DELETE` an emptied one with `If-Match`. Someone's write in between fails the request with
//! 412, which is [`DnsError::ConcurrentChange`] with nothing of that set written; the next
//! pass reads again. Foreign values are written back with their strings exactly as read, and
//! the set's TTL and metadata are kept. Sets at different names are separate requests: not
//! atomic together, and a failure says what was applied before it.
//!
//! TXT: one entry of `TXTRecords` is one record, and its `value` array holds the record's
//! character-strings; ours are split into strings of at most 255 bytes, and values are read
//! joined. Names are read one `GET` each: listing a zone (`nextLink` pages) would read every
//! set of a zone that may hold thousands to find a dozen.
//!
//! Credentials: a client secret of an app registration (`tenantId`, `clientId`, the secret
//! from a Secret), or AKS Workload Identity (the projected token in
//! `AZURE_FEDERATED_TOKEN_FILE`, read anew for each exchange, as the kubelet renews it), both
//! exchanged at `{authority}/{tenant}/oauth2/v2.0/token` for an ARM token that is kept until
//! shortly before it expires. 429 answers are waited out when short (`Retry-After`) and
//! retried a bounded number of times; each request, token requests too, is metered.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use reqwest::Method;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::DnsError;
use super::address::AddressSet;
use super::backend::{ApiMeter, ConnectError, DnsBackend, NoMeter, SecretSource, secret_text};
use super::http;
use super::plan::{self, Current, Operation, RRset, rrsets_after};
use crate::api::AzureSpec;
use crate::domain::txt::MAX_STRING_BYTES;

/// Azure Resource Manager, unless the settings say otherwise.
pub const MANAGEMENT_ENDPOINT: &str = "https://management.azure.com";
/// Microsoft Entra ID's token service, unless the settings (or `AZURE_AUTHORITY_HOST`) say
/// otherwise.
pub const AUTHORITY_HOST: &str = "https://login.microsoftonline.com";
const API_VERSION: &str = "2018-05-01";
/// The token's audience: Azure Resource Manager.
pub const SCOPE: &str = "https://management.azure.com/.default";
/// How long one request may take.
const TIMEOUT: Duration = Duration::from_secs(15);
/// A token is renewed this long before it expires (or at half its life, if that is sooner),
/// so no request carries one that runs out on the way.
const RENEW_EARLY: Duration = Duration::from_secs(300);

/// How the backend gets its tokens.
#[derive(Clone)]
pub enum Credential {
    /// A client secret of an app registration (service principal).
    ClientSecret {
        tenant_id: String,
        client_id: String,
        client_secret: String,
    },
    /// AKS Workload Identity: the federated token in `token_file`, exchanged for the
    /// identity `client_id`.
    WorkloadIdentity {
        tenant_id: String,
        client_id: String,
        token_file: PathBuf,
    },
}

impl std::fmt::Debug for Credential {
    // Never prints the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::ClientSecret {
                tenant_id,
                client_id,
                ..
            } => write!(f, "ClientSecret(tenant {tenant_id}, client {client_id})"),
            Credential::WorkloadIdentity {
                tenant_id,
                client_id,
                token_file,
            } => write!(
                f,
                "WorkloadIdentity(tenant {tenant_id}, client {client_id}, {})",
                token_file.display()
            ),
        }
    }
}

impl Credential {
    fn tenant(&self) -> &str {
        match self {
            Credential::ClientSecret { tenant_id, .. }
            | Credential::WorkloadIdentity { tenant_id, .. } => tenant_id,
        }
    }

    fn hint(&self) -> &'static str {
        match self {
            Credential::ClientSecret { .. } => {
                "check tenantId, clientId and the client secret (and that it has not expired)"
            }
            Credential::WorkloadIdentity { .. } => {
                "check the managed identity's federated credential (issuer, subject system:serviceaccount:<namespace>:<name>) and the ServiceAccount's azure.workload.identity/client-id"
            }
        }
    }
}

struct Token {
    value: String,
    renew_at: Instant,
}

pub struct Azure {
    http: reqwest::Client,
    /// `{endpoint}/subscriptions/{id}/resourceGroups/{name}/providers/Microsoft.Network/dnsZones`
    zones: url::Url,
    /// `{authority}/{tenant}/oauth2/v2.0/token`
    token_url: String,
    credential: Credential,
    /// One token for every request; the lock is held while one is fetched, so concurrent
    /// reconciles wait for it instead of each asking.
    token: tokio::sync::Mutex<Option<Token>>,
    meter: Arc<dyn ApiMeter>,
}

/// ARM's error body (`CloudError`).
#[derive(Debug, Deserialize)]
struct CloudError {
    error: CloudErrorBody,
}

#[derive(Debug, Deserialize)]
struct CloudErrorBody {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// The token service's error body.
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
    /// Seconds; a number, though some versions of the service sent it as a string.
    #[serde(default)]
    expires_in: serde_json::Value,
}

/// A record set as the API shows it (only what is used; metadata kept as it is).
#[derive(Debug, Clone, Default, Deserialize)]
struct RecordSet {
    #[serde(default)]
    etag: Option<String>,
    #[serde(default)]
    properties: Properties,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Properties {
    #[serde(rename = "TTL", default, skip_serializing_if = "Option::is_none")]
    ttl: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    metadata: Option<serde_json::Value>,
    #[serde(
        rename = "TXTRecords",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    txt: Option<Vec<TxtRecord>>,
    #[serde(rename = "ARecords", default, skip_serializing_if = "Option::is_none")]
    a: Option<Vec<ARecord>>,
    #[serde(
        rename = "AAAARecords",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    aaaa: Option<Vec<AaaaRecord>>,
    #[serde(
        rename = "CNAMERecord",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    cname: Option<CnameRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct TxtRecord {
    #[serde(default)]
    value: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ARecord {
    #[serde(rename = "ipv4Address")]
    ipv4_address: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct AaaaRecord {
    #[serde(rename = "ipv6Address")]
    ipv6_address: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CnameRecord {
    cname: String,
}

#[derive(Serialize)]
struct Body<'a> {
    properties: &'a Properties,
}

/// What a write is conditioned on.
enum Precondition<'a> {
    /// The set as read, by its etag.
    Match(&'a str),
    /// No set there.
    Absent,
}

impl Azure {
    pub async fn from_spec(
        spec: &AzureSpec,
        secrets: &dyn SecretSource,
    ) -> Result<Self, ConnectError> {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let config = |what: String| ConnectError::Dns(DnsError::Config(format!("azure: {what}")));
        let credential = match (&spec.client_secret_secret_ref, spec.workload_identity) {
            (Some(reference), false) => {
                let (Some(tenant_id), Some(client_id)) = (&spec.tenant_id, &spec.client_id) else {
                    return Err(config(
                        "clientSecretSecretRef needs tenantId and clientId".into(),
                    ));
                };
                Credential::ClientSecret {
                    tenant_id: tenant_id.clone(),
                    client_id: client_id.clone(),
                    client_secret: secret_text(secrets, reference, "an Azure client secret")
                        .await?,
                }
            }
            (None, true) => {
                let tenant_id = spec.tenant_id.clone().or_else(|| env("AZURE_TENANT_ID"));
                let client_id = spec.client_id.clone().or_else(|| env("AZURE_CLIENT_ID"));
                let token_file = env("AZURE_FEDERATED_TOKEN_FILE");
                match (tenant_id, client_id, token_file) {
                    (Some(tenant_id), Some(client_id), Some(token_file)) => {
                        Credential::WorkloadIdentity {
                            tenant_id,
                            client_id,
                            token_file: PathBuf::from(token_file),
                        }
                    }
                    _ => {
                        return Err(config(
                            "workloadIdentity needs AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_FEDERATED_TOKEN_FILE in the controller's environment (set by AKS for a pod labelled azure.workload.identity/use: \"true\" whose ServiceAccount names the identity), or tenantId and clientId in the settings".into(),
                        ));
                    }
                }
            }
            _ => {
                return Err(config(
                    "set either clientSecretSecretRef (with tenantId and clientId) or workloadIdentity: true".into(),
                ));
            }
        };
        let authority = spec
            .authority_host
            .clone()
            .or_else(|| {
                matches!(credential, Credential::WorkloadIdentity { .. })
                    .then(|| env("AZURE_AUTHORITY_HOST"))
                    .flatten()
            })
            .unwrap_or_else(|| AUTHORITY_HOST.to_owned());
        Ok(Azure::new(
            spec.management_endpoint
                .as_deref()
                .unwrap_or(MANAGEMENT_ENDPOINT),
            &authority,
            &spec.subscription_id,
            &spec.resource_group,
            credential,
        )?)
    }

    pub fn new(
        management_endpoint: &str,
        authority_host: &str,
        subscription_id: &str,
        resource_group: &str,
        credential: Credential,
    ) -> Result<Self, DnsError> {
        let endpoint = http::base_url("azure managementEndpoint", management_endpoint)?;
        let authority = http::base_url("azure authorityHost", authority_host)?;
        let mut zones = url::Url::parse(&endpoint)
            .map_err(|e| DnsError::Config(format!("azure managementEndpoint: {e}")))?;
        zones
            .path_segments_mut()
            .map_err(|()| DnsError::Config("azure managementEndpoint cannot take a path".into()))?
            .pop_if_empty()
            .extend([
                "subscriptions",
                subscription_id,
                "resourceGroups",
                resource_group,
                "providers",
                "Microsoft.Network",
                "dnsZones",
            ]);
        let mut token_url = url::Url::parse(&authority)
            .map_err(|e| DnsError::Config(format!("azure authorityHost: {e}")))?;
        token_url
            .path_segments_mut()
            .map_err(|()| DnsError::Config("azure authorityHost cannot take a path".into()))?
            .pop_if_empty()
            .extend([credential.tenant(), "oauth2", "v2.0", "token"]);
        Ok(Azure {
            http: http::client(TIMEOUT)?,
            zones,
            token_url: token_url.to_string(),
            credential,
            token: tokio::sync::Mutex::new(None),
            meter: Arc::new(NoMeter),
        })
    }

    /// Reports every API request to `meter`.
    pub fn with_meter(self, meter: Arc<dyn ApiMeter>) -> Self {
        Azure { meter, ..self }
    }

    /// A bearer token for ARM: the one kept, or a new one.
    async fn bearer(&self) -> Result<String, DnsError> {
        let mut slot = self.token.lock().await;
        if let Some(t) = slot.as_ref()
            && Instant::now() < t.renew_at
        {
            return Ok(t.value.clone());
        }
        let (value, lifetime) =
            http::with_rate_limit_retries(self.meter.as_ref(), "azure", || self.fetch_token())
                .await?;
        let early = RENEW_EARLY.min(lifetime / 2);
        *slot = Some(Token {
            value: value.clone(),
            renew_at: Instant::now() + lifetime.saturating_sub(early),
        });
        Ok(value)
    }

    /// Forgets the token, after ARM refused it.
    async fn drop_token(&self) {
        *self.token.lock().await = None;
    }

    /// The client-credentials form: the client proven by its secret, or by `assertion` (the
    /// federated token). Built apart from any await: the form's serializer is not Send.
    fn token_form(&self, assertion: Option<&str>) -> String {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        form.append_pair("grant_type", "client_credentials")
            .append_pair("scope", SCOPE);
        match &self.credential {
            Credential::ClientSecret {
                client_id,
                client_secret,
                ..
            } => {
                form.append_pair("client_id", client_id)
                    .append_pair("client_secret", client_secret);
            }
            Credential::WorkloadIdentity { client_id, .. } => {
                form.append_pair("client_id", client_id)
                    .append_pair(
                        "client_assertion_type",
                        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    )
                    .append_pair("client_assertion", assertion.unwrap_or_default().trim());
            }
        }
        form.finish()
    }

    /// One client-credentials exchange at the token service: the token and how long it lasts.
    async fn fetch_token(&self) -> Result<(String, Duration), DnsError> {
        let assertion = match &self.credential {
            Credential::WorkloadIdentity { token_file, .. } => {
                Some(tokio::fs::read_to_string(token_file).await.map_err(|e| {
                    DnsError::Auth(format!(
                        "azure: the federated token {}: {e}",
                        token_file.display()
                    ))
                })?)
            }
            Credential::ClientSecret { .. } => None,
        };
        let body = self.token_form(assertion.as_deref());
        let request = self.http.post(&self.token_url).header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        );
        let what = format!("azure token {}", self.token_url);
        let answer = http::send(request.body(body), None, &what).await?;
        let status = answer.status;
        if status.is_success() {
            let parsed: TokenAnswer = serde_json::from_str(&answer.text).map_err(|e| {
                DnsError::Auth(format!("{what}: the answer holds no access_token: {e}"))
            })?;
            let seconds = match &parsed.expires_in {
                serde_json::Value::Number(n) => n.as_u64(),
                serde_json::Value::String(s) => s.trim().parse().ok(),
                _ => None,
            }
            // Unsaid: an hour, the service's usual lifetime.
            .unwrap_or(3600);
            return Ok((parsed.access_token, Duration::from_secs(seconds)));
        }
        let (code, description) = serde_json::from_str::<TokenError>(&answer.text)
            .map(|e| (e.error, e.error_description))
            .unwrap_or_else(|_| (String::new(), answer.text.chars().take(200).collect()));
        // The description's first line carries the AADSTS code; the rest is trace ids.
        let description = description.lines().next().unwrap_or_default();
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

    /// The URL of the record set of `rtype` at `rel` in `zone`.
    fn url(&self, zone: &str, rtype: &str, rel: &str) -> Result<url::Url, DnsError> {
        let mut url = self.zones.clone();
        url.path_segments_mut()
            .map_err(|()| DnsError::Config("azure managementEndpoint cannot take a path".into()))?
            .extend([zone, rtype, rel]);
        url.query_pairs_mut()
            .append_pair("api-version", API_VERSION);
        Ok(url)
    }

    /// One request (repeated after a short rate limit): the answer of a 2xx, or `None` for
    /// a 404 that means the record set is not there (a `GET`) or gone already (a `DELETE`,
    /// which answers 204 for that).
    async fn call(
        &self,
        method: Method,
        url: &url::Url,
        condition: Option<Precondition<'_>>,
        body: Option<String>,
    ) -> Result<Option<String>, DnsError> {
        http::with_rate_limit_retries(self.meter.as_ref(), "azure", || {
            self.call_once(method.clone(), url, condition.as_ref(), body.clone())
        })
        .await
    }

    async fn call_once(
        &self,
        method: Method,
        url: &url::Url,
        condition: Option<&Precondition<'_>>,
        body: Option<String>,
    ) -> Result<Option<String>, DnsError> {
        let token = self.bearer().await?;
        let mut request = self
            .http
            .request(method.clone(), url.clone())
            .bearer_auth(token);
        request = match condition {
            Some(Precondition::Match(etag)) => request.header(reqwest::header::IF_MATCH, *etag),
            Some(Precondition::Absent) => request.header(reqwest::header::IF_NONE_MATCH, "*"),
            None => request,
        };
        // The path without the subscription's prefix, for messages.
        let path = url.path().split("/dnsZones/").nth(1).unwrap_or(url.path());
        let what = format!("azure {method} {path}");
        let answer = http::send(request, body, &what).await?;
        let status = answer.status;
        if status.as_u16() == 204 && method == Method::DELETE {
            return Ok(None);
        }
        if status.is_success() {
            return Ok(Some(answer.text));
        }
        let (code, message) = serde_json::from_str::<CloudError>(&answer.text)
            .map(|e| (e.error.code, e.error.message))
            .unwrap_or_else(|_| (String::new(), answer.text.chars().take(200).collect()));
        let detail = format!("{what}: HTTP {status}: {code}: {message}");
        let zone_missing = matches!(
            code.as_str(),
            "ParentResourceNotFound" | "ResourceGroupNotFound" | "SubscriptionNotFound"
        );
        Err(match status.as_u16() {
            404 if !zone_missing && method == Method::GET => return Ok(None),
            429 => DnsError::RateLimited {
                retry_after: http::retry_after(&answer.headers),
                detail,
            },
            401 => {
                self.drop_token().await;
                DnsError::Auth(format!("{detail}: {}", self.credential.hint()))
            }
            403 => DnsError::Refused(format!(
                "{detail}: the identity needs the DNS Zone Contributor role on the zone (or its resource group)"
            )),
            404 => DnsError::ZoneNotFound(format!(
                "{detail}: check the zone, subscriptionId and resourceGroup"
            )),
            409 | 412 => DnsError::ConcurrentChange(format!(
                "{detail}: the record set changed since it was read; nothing of it was written, the next pass reads again"
            )),
            _ => DnsError::Server(detail),
        })
    }

    /// The record set of `rtype` at `rel`, if there is one.
    async fn get(&self, zone: &str, rtype: &str, rel: &str) -> Result<Option<RecordSet>, DnsError> {
        let url = self.url(zone, rtype, rel)?;
        let Some(body) = self.call(Method::GET, &url, None, None).await? else {
            return Ok(None);
        };
        serde_json::from_str(&body).map(Some).map_err(|e| {
            DnsError::Server(format!(
                "azure GET {rtype} {rel}: the answer is not a record set: {e}"
            ))
        })
    }

    /// Writes `properties` as the record set of `rtype` at `rel`, on `condition`.
    async fn put(
        &self,
        zone: &str,
        rtype: &str,
        rel: &str,
        properties: &Properties,
        condition: Precondition<'_>,
    ) -> Result<(), DnsError> {
        let url = self.url(zone, rtype, rel)?;
        let body = serde_json::to_string(&Body { properties })
            .map_err(|e| DnsError::Server(format!("azure: record set body: {e}")))?;
        self.call(Method::PUT, &url, Some(condition), Some(body))
            .await
            .map(|_| ())
    }

    /// Deletes the record set of `rtype` at `rel` if it still has `etag`.
    async fn delete(&self, zone: &str, rtype: &str, rel: &str, etag: &str) -> Result<(), DnsError> {
        let url = self.url(zone, rtype, rel)?;
        self.call(Method::DELETE, &url, Some(Precondition::Match(etag)), None)
            .await
            .map(|_| ())
    }

    async fn read_all(&self, zone: &str, names: &[String]) -> Result<Current, DnsError> {
        let mut current = Current::new();
        for name in names {
            let rel = relative(zone, name)?;
            if let Some(rrset) = logical(self.get(zone, "TXT", &rel).await?.as_ref()) {
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
        let mut done: Vec<String> = Vec::new();
        let mut after: Vec<_> = rrsets_after(current, operations).into_iter().collect();
        after.sort_by_key(|(name, _)| (plan::write_rank(name, operations), name.clone()));
        for (name, wanted) in after {
            if let Err(e) = self
                .apply_name(zone, &name, current, &wanted, &mut done)
                .await
            {
                return Err(if done.is_empty() {
                    e.with_detail("nothing was changed")
                } else {
                    e.with_detail(&format!(
                        "applied before this failure (Azure changes one record set per request): {}",
                        done.join(", ")
                    ))
                });
            }
        }
        Ok(())
    }

    /// Read, compare, write one name's TXT set with its etag.
    async fn apply_name(
        &self,
        zone: &str,
        name: &str,
        current: &Current,
        wanted: &RRset,
        done: &mut Vec<String>,
    ) -> Result<(), DnsError> {
        let rel = relative(zone, name)?;
        let fresh = self.get(zone, "TXT", &rel).await?;
        if !RRset::same(logical(fresh.as_ref()).as_ref(), current.get(name)) {
            return Err(DnsError::ConcurrentChange(format!(
                "azure: {name} changed since it was read"
            )));
        }
        let etag = fresh.as_ref().and_then(|f| f.etag.as_deref());
        let condition = match (&fresh, etag) {
            (Some(_), Some(etag)) => Precondition::Match(etag),
            (Some(_), None) => {
                return Err(DnsError::Server(format!(
                    "azure: the record set at {name} came without an etag; it is not written blindly"
                )));
            }
            (None, _) => Precondition::Absent,
        };
        if wanted.values.is_empty() {
            if let Precondition::Match(etag) = condition {
                self.delete(zone, "TXT", &rel, etag).await?;
                done.push(format!("deleted the TXT set at {name}"));
            }
            return Ok(());
        }
        let stored: Vec<&TxtRecord> = fresh
            .iter()
            .flat_map(|f| f.properties.txt.iter().flatten())
            .collect();
        let records = wanted
            .values
            .iter()
            .map(|v| {
                // Theirs (and ours) as stored, string boundaries and all; a new one split.
                stored
                    .iter()
                    .find(|r| r.value.concat() == *v)
                    .map_or_else(|| TxtRecord { value: split(v) }, |r| (*r).clone())
            })
            .collect();
        let properties = Properties {
            ttl: Some(wanted.ttl),
            metadata: fresh.as_ref().and_then(|f| f.properties.metadata.clone()),
            txt: Some(records),
            ..Properties::default()
        };
        self.put(zone, "TXT", &rel, &properties, condition).await?;
        done.push(format!("wrote the TXT set at {name}"));
        Ok(())
    }

    /// The CNAME, A and AAAA sets at `rel`, by type, and what they hold.
    async fn addresses(
        &self,
        zone: &str,
        rel: &str,
        name: &str,
    ) -> Result<(AddressSet, BTreeMap<&'static str, RecordSet>), DnsError> {
        let mut set = AddressSet::default();
        let mut sets = BTreeMap::new();
        for rtype in ["CNAME", "A", "AAAA"] {
            let Some(rs) = self.get(zone, rtype, rel).await? else {
                continue;
            };
            let ttl = rs.properties.ttl.unwrap_or_default();
            let p = &rs.properties;
            let values: Vec<&str> = match rtype {
                "CNAME" => p.cname.iter().map(|c| c.cname.as_str()).collect(),
                "A" => {
                    p.a.iter()
                        .flatten()
                        .map(|r| r.ipv4_address.as_str())
                        .collect()
                }
                _ => p
                    .aaaa
                    .iter()
                    .flatten()
                    .map(|r| r.ipv6_address.as_str())
                    .collect(),
            };
            for v in values {
                set.add(rtype, v, ttl)
                    .map_err(|e| DnsError::Server(format!("azure: {e} at {name}")))?;
            }
            sets.insert(rtype, rs);
        }
        Ok((set, sets))
    }

    async fn read_address_of(&self, zone: &str, name: &str) -> Result<AddressSet, DnsError> {
        let rel = relative(zone, name)?;
        Ok(self.addresses(zone, &rel, name).await?.0)
    }

    /// After a fresh read that must still be `before`: the sets of types no longer wanted are
    /// deleted first (a CNAME must make way before an A is made, and back), then the wanted
    /// ones written, each on its etag.
    async fn write_address_of(
        &self,
        zone: &str,
        name: &str,
        before: &AddressSet,
        after: &AddressSet,
    ) -> Result<(), DnsError> {
        let rel = relative(zone, name)?;
        let (now, sets) = self.addresses(zone, &rel, name).await?;
        if !now.same_records(before) {
            return Err(DnsError::ConcurrentChange(format!(
                "azure: the address records at {name} changed since they were read; nothing written"
            )));
        }
        let wanted = |rtype: &str| -> Option<Properties> {
            let mut p = Properties {
                ttl: Some(after.ttl),
                ..Properties::default()
            };
            match rtype {
                "CNAME" => p.cname = after.cname.clone().map(|cname| CnameRecord { cname }),
                "A" if !after.a.is_empty() => {
                    p.a = Some(
                        after
                            .a
                            .iter()
                            .map(|ip| ARecord {
                                ipv4_address: ip.to_string(),
                            })
                            .collect(),
                    );
                }
                "AAAA" if !after.aaaa.is_empty() => {
                    p.aaaa = Some(
                        after
                            .aaaa
                            .iter()
                            .map(|ip| AaaaRecord {
                                ipv6_address: ip.to_string(),
                            })
                            .collect(),
                    );
                }
                _ => return None,
            }
            (p.cname.is_some() || p.a.is_some() || p.aaaa.is_some()).then_some(p)
        };
        let etag_of = |rs: &RecordSet| -> Result<String, DnsError> {
            rs.etag.clone().ok_or_else(|| {
                DnsError::Server(format!(
                    "azure: a record set at {name} came without an etag; it is not written blindly"
                ))
            })
        };
        for rtype in ["CNAME", "A", "AAAA"] {
            if let (Some(rs), None) = (sets.get(rtype), wanted(rtype)) {
                self.delete(zone, rtype, &rel, &etag_of(rs)?).await?;
            }
        }
        for rtype in ["CNAME", "A", "AAAA"] {
            let Some(mut properties) = wanted(rtype) else {
                continue;
            };
            let condition = match sets.get(rtype) {
                Some(rs) => {
                    properties.metadata = rs.properties.metadata.clone();
                    Some(etag_of(rs)?)
                }
                None => None,
            };
            let condition = condition
                .as_deref()
                .map_or(Precondition::Absent, Precondition::Match);
            self.put(zone, rtype, &rel, &properties, condition).await?;
        }
        Ok(())
    }
}

impl DnsBackend for Azure {
    fn kind(&self) -> &'static str {
        "azure"
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

/// The logical values of a TXT record set: each record's strings joined.
fn logical(rs: Option<&RecordSet>) -> Option<RRset> {
    let rs = rs?;
    let values: Vec<String> = rs
        .properties
        .txt
        .iter()
        .flatten()
        .map(|r| r.value.concat())
        .collect();
    (!values.is_empty()).then(|| RRset {
        ttl: rs.properties.ttl.unwrap_or_default(),
        values,
    })
}

/// A value as strings of at most 255 bytes, cut between characters (JSON strings are text).
fn split(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = value;
    while rest.len() > MAX_STRING_BYTES {
        let mut cut = MAX_STRING_BYTES;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (head, tail) = rest.split_at(cut);
        out.push(head.to_owned());
        rest = tail;
    }
    out.push(rest.to_owned());
    out
}

/// The record set name the API wants: relative to the zone, lower case, `@` for the apex.
fn relative(zone: &str, name: &str) -> Result<String, DnsError> {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let zone = zone.trim_end_matches('.').to_ascii_lowercase();
    if name == zone {
        return Ok("@".to_owned());
    }
    name.strip_suffix(&format!(".{zone}"))
        .map(str::to_owned)
        .ok_or_else(|| DnsError::Config(format!("azure: {name} is not in zone {zone}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> Credential {
        Credential::ClientSecret {
            tenant_id: "tenant".into(),
            client_id: "client".into(),
            client_secret: "s3cret".into(),
        }
    }

    #[test]
    fn long_values_are_cut_into_strings_of_at_most_255_bytes_between_characters() {
        let long = format!("v=DKIM1; p={}", "A".repeat(600));
        let parts = split(&long);
        assert_eq!(parts.len(), 3);
        assert!(parts.iter().all(|p| p.len() <= 255));
        assert_eq!(parts.concat(), long);
        let wide = "é".repeat(200); // 400 bytes, two each
        let parts = split(&wide);
        assert_eq!(parts[0].len(), 254, "not inside a character");
        assert_eq!(parts.concat(), wide);
        assert_eq!(split(""), [""], "an empty value is one empty string");
    }

    #[test]
    fn record_sets_read_joined_with_their_ttl() {
        let rs: RecordSet = serde_json::from_str(
            r#"{"etag": "e1", "properties": {"TTL": 900, "metadata": {"k": "v"},
                "TXTRecords": [{"value": ["v=DKIM1; ", "p=AB"]}, {"value": ["google-site-verification=x"]}]}}"#,
        )
        .expect("record set");
        let read = logical(Some(&rs)).expect("values");
        assert_eq!(read.ttl, 900);
        assert_eq!(read.values, ["v=DKIM1; p=AB", "google-site-verification=x"]);
        assert!(logical(Some(&RecordSet::default())).is_none());
        let body = serde_json::to_value(Body {
            properties: &rs.properties,
        })
        .expect("json");
        assert_eq!(body["properties"]["TTL"], 900);
        assert_eq!(body["properties"]["metadata"]["k"], "v");
        assert!(body["properties"].get("ARecords").is_none(), "{body}");
    }

    #[test]
    fn urls_name_the_set_relative_with_the_api_version() {
        let az = Azure::new(
            "https://management.azure.com/",
            "https://login.microsoftonline.com",
            "0000-sub",
            "rg (dns)",
            secret(),
        )
        .expect("azure");
        let url = az
            .url(
                "example.com",
                "TXT",
                &relative("example.com", "example.com").expect("@"),
            )
            .expect("url");
        assert_eq!(
            url.as_str(),
            "https://management.azure.com/subscriptions/0000-sub/resourceGroups/rg%20(dns)/providers/Microsoft.Network/dnsZones/example.com/TXT/@?api-version=2018-05-01"
        );
        assert_eq!(
            az.token_url,
            "https://login.microsoftonline.com/tenant/oauth2/v2.0/token"
        );
        assert_eq!(
            relative("example.com", "_DMARC.Example.com.").expect("rel"),
            "_dmarc"
        );
        assert_eq!(
            relative("example.com", "badexample.com")
                .expect_err("outside")
                .category(),
            "DNSProviderInvalid"
        );
        assert!(Azure::new("ftp://x", AUTHORITY_HOST, "s", "r", secret()).is_err());
        assert!(
            !format!("{:?}", secret()).contains("s3cret"),
            "no secret in logs"
        );
    }
}
