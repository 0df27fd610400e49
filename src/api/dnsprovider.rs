//! `DNSProvider` (namespaced) and `ClusterDNSProvider` (cluster-wide): where and how records are
//! written, in the manner of cert-manager's Issuer and ClusterIssuer.

use kube::core::Rule;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::patterns::HOST;

/// A DNS provider usable by MailDomains in its own namespace.
// kube's printcolumn(...) repeats `type_ = ...`, which clippy mistakes for a duplicate.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "mailsec.io",
    version = "v1alpha1",
    kind = "DNSProvider",
    plural = "dnsproviders",
    category = "mailsec",
    namespaced,
    derive = "PartialEq",
    doc = "Where and how the operator writes DNS records, for MailDomains in this namespace.",
    printcolumn(name = "Type", type_ = "string", json_path = ".spec.type"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = settings_block_rule())]
pub struct DNSProviderSpec {
    #[serde(flatten)]
    pub settings: ProviderSettings,
}

/// The settings DNSProvider and ClusterDNSProvider share.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProviderSettings {
    /// `rfc2136` (dynamic updates signed with TSIG, e.g. BIND, Knot, PowerDNS), `powerdns` (the
    /// PowerDNS Authoritative HTTP API), `cloudflare` (the Cloudflare v4 API), `route53`
    /// (Amazon Route 53), `hetzner` (Hetzner's Cloud DNS API), `digitalocean` (the
    /// DigitalOcean v2 API), `azure` (Azure DNS), `google` (Google Cloud DNS), `externalDNS`
    /// (hand the names the operator owns alone to external-dns as DNSEndpoint objects) or
    /// `manual` (write nothing; status lists the records to publish by hand). The settings block
    /// named like the type is required, and only it.
    #[serde(rename = "type")]
    pub provider_type: ProviderType,
    /// Settings of the rfc2136 provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rfc2136: Option<Rfc2136Spec>,
    /// Settings of the powerdns provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub powerdns: Option<PowerDnsSpec>,
    /// Settings of the cloudflare provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloudflare: Option<CloudflareSpec>,
    /// Settings of the route53 provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route53: Option<Route53Spec>,
    /// Settings of the hetzner provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hetzner: Option<HetznerSpec>,
    /// Settings of the digitalocean provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digitalocean: Option<DigitalOceanSpec>,
    /// Settings of the azure provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure: Option<AzureSpec>,
    /// Settings of the google provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub google: Option<GoogleSpec>,
    /// Settings of the externalDNS export.
    #[serde(
        default,
        rename = "externalDNS",
        skip_serializing_if = "Option::is_none"
    )]
    pub external_dns: Option<ExternalDnsSpec>,
    /// The zones this provider may write, e.g. `example.com`. A record goes to the zone with the
    /// longest matching suffix. When empty, the zone is the MailDomain's domain. MailDomains for
    /// domains outside these zones are refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 253)))]
    #[x_kube(validation = Rule::new(format!("self.all(z, z.matches('{HOST}'))")).message("each zone must be a domain name such as example.com, without a trailing dot"))]
    pub zones: Vec<String>,
    /// What the operator may do to existing records: `sync` (create, update and delete its own
    /// values), `upsert-only` (never delete) or `create-only` (never change a published value).
    #[serde(default)]
    pub policy: SyncPolicy,
    /// Identifies this installation in ownership markers, so two installations writing one zone
    /// do not take each other's records. Defaults to the operator's own id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([a-z0-9-]*[a-z0-9])?$')").message("ownerId must be lower-case letters, digits and inner hyphens"))]
    pub owner_id: Option<String>,
}

/// The provider implementation.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProviderType {
    Rfc2136,
    #[serde(rename = "powerdns")]
    PowerDns,
    Cloudflare,
    Route53,
    Hetzner,
    #[serde(rename = "digitalocean")]
    DigitalOcean,
    Azure,
    Google,
    #[serde(rename = "externalDNS")]
    ExternalDns,
    Manual,
}

impl ProviderType {
    pub const ALL: [ProviderType; 10] = [
        ProviderType::Rfc2136,
        ProviderType::PowerDns,
        ProviderType::Cloudflare,
        ProviderType::Route53,
        ProviderType::Hetzner,
        ProviderType::DigitalOcean,
        ProviderType::Azure,
        ProviderType::Google,
        ProviderType::ExternalDns,
        ProviderType::Manual,
    ];

    /// The `type` value, which also names the type's settings block.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderType::Rfc2136 => "rfc2136",
            ProviderType::PowerDns => "powerdns",
            ProviderType::Cloudflare => "cloudflare",
            ProviderType::Route53 => "route53",
            ProviderType::Hetzner => "hetzner",
            ProviderType::DigitalOcean => "digitalocean",
            ProviderType::Azure => "azure",
            ProviderType::Google => "google",
            ProviderType::ExternalDns => "externalDNS",
            ProviderType::Manual => "manual",
        }
    }

    /// Whether the type takes a settings block (named like the type).
    fn has_settings(self) -> bool {
        !matches!(self, ProviderType::Manual)
    }
}

/// The CEL rule on both provider kinds (they flatten [`ProviderSettings`]): a type's settings
/// block is there exactly when that type is chosen.
fn settings_block_rule() -> Rule {
    let with_settings: Vec<&str> = ProviderType::ALL
        .into_iter()
        .filter(|t| t.has_settings())
        .map(ProviderType::as_str)
        .collect();
    let rule = with_settings
        .iter()
        .map(|t| format!("(self.type == '{t}') == has(self.{t})"))
        .collect::<Vec<_>>()
        .join(" && ");
    // Names the type at hand, so the message says which block is missing or out of place.
    let message = "self.type == 'manual' ? 'type manual takes no provider settings block' : \
                   self.type + ' settings are required when type is ' + self.type + \
                   ', and only then (no other provider settings block)'";
    Rule::new(rule).message(kube::core::Message::Expression(message.to_owned()))
}

/// What the operator may change in DNS.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
pub enum SyncPolicy {
    #[default]
    #[serde(rename = "sync")]
    Sync,
    #[serde(rename = "upsert-only")]
    UpsertOnly,
    #[serde(rename = "create-only")]
    CreateOnly,
}

/// RFC 2136 dynamic update settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Rfc2136Spec {
    /// The primary server that accepts updates, `host:port` or `host` (port 53), e.g.
    /// `ns1.example.com:53` or `[2001:db8::53]:53`.
    #[schemars(length(min = 1, max = 261))]
    pub server: String,
    /// The TSIG key name, as configured on the server.
    #[schemars(length(min = 1, max = 253))]
    pub tsig_key_name: String,
    /// The TSIG algorithm.
    #[serde(default)]
    pub tsig_algorithm: TsigAlgorithm,
    /// The Secret (in the provider's namespace; for a ClusterDNSProvider, in the operator's
    /// namespace) holding the base64 TSIG secret.
    pub tsig_secret_ref: SecretKeyRef,
}

/// The externalDNS export: the operator writes the records of the names it owns alone
/// (`_mta-sts`, `_smtp._tls`, `_dmarc`, `<selector>._domainkey`, `<selector>._bimi` and their
/// `_mailsec` markers) as one `externaldns.k8s.io/v1alpha1` DNSEndpoint per MailDomain, in
/// the MailDomain's namespace and owned by it, for an external-dns with the CRD source
/// (`--source=crd`, `--managed-record-types` including TXT) to publish. A record counts as
/// published once `resolver` answers it. Names shared with other records (the domain itself,
/// where SPF lives) are never exported: status lists them to publish by hand.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalDnsSpec {
    /// The DNS server whose answers say what is published, `host:port` or `host` (port 53):
    /// the zone's primary or another authoritative server (asked without recursion), e.g.
    /// `ns1.example.com:53`.
    #[schemars(length(min = 1, max = 261))]
    pub resolver: String,
    /// Labels put on the DNSEndpoint objects, e.g. for external-dns's `--label-filter`.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 16))]
    pub labels: std::collections::BTreeMap<String, String>,
}

/// PowerDNS Authoritative HTTP API settings (PowerDNS 4.1 or later).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PowerDnsSpec {
    /// Base URL of the API (the server's webserver), without `/api/v1`, e.g.
    /// `http://pdns.dns.svc:8081`.
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = Rule::new("self.matches('^https?://[^/?#]+/?$')").message("url must be http:// or https:// and a host, without a path, e.g. http://pdns.dns.svc:8081"))]
    pub url: String,
    /// The server id in the API's paths; `localhost` unless the API sits behind something
    /// that serves several servers.
    #[serde(default = "default_server_id")]
    #[schemars(length(min = 1, max = 253))]
    pub server_id: String,
    /// The Secret (in the provider's namespace; for a ClusterDNSProvider, in the operator's
    /// namespace) holding the API key (`api-key` in pdns.conf), sent as `X-API-Key`.
    pub api_key_secret_ref: SecretKeyRef,
}

/// Cloudflare v4 API settings. The zone is found by name among the zones the token sees.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct CloudflareSpec {
    /// The Secret (in the provider's namespace; for a ClusterDNSProvider, in the operator's
    /// namespace) holding an API token with Zone:Read and DNS:Edit on the zones.
    pub api_token_secret_ref: SecretKeyRef,
    /// The API's base URL; `https://api.cloudflare.com/client/v4` unless set (for a proxy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = Rule::new("self.matches('^https?://[^?#]+$')").message("apiUrl must be an http:// or https:// URL"))]
    pub api_url: Option<String>,
}

/// Amazon Route 53 settings. Credentials: the two Secret references, or (both left out) the
/// controller's own AWS credentials: IRSA (`AWS_ROLE_ARN` and `AWS_WEB_IDENTITY_TOKEN_FILE`,
/// set by EKS on a ServiceAccount annotated `eks.amazonaws.com/role-arn`) or
/// `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` in its environment.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.accessKeyIDSecretRef) == has(self.secretAccessKeySecretRef)").message("accessKeyIDSecretRef and secretAccessKeySecretRef go together"))]
pub struct Route53Spec {
    /// The hosted zone's id (e.g. `Z0123456789ABCDEFGHIJ`); when left out, the hosted zone is
    /// found by the zone's name (there must be exactly one public one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub hosted_zone_id: Option<String>,
    /// The access key id, from a Secret.
    #[serde(
        rename = "accessKeyIDSecretRef",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub access_key_id_secret_ref: Option<SecretKeyRef>,
    /// The secret access key, from a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_access_key_secret_ref: Option<SecretKeyRef>,
    /// The API endpoint; `https://route53.amazonaws.com` unless set (or `AWS_ENDPOINT_URL`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = Rule::new("self.matches('^https?://[^/?#]+/?$')").message("endpoint must be an http:// or https:// URL without a path"))]
    pub endpoint: Option<String>,
}

/// Hetzner Cloud DNS settings (the DNS API of the Hetzner Console projects,
/// `https://api.hetzner.cloud/v1`; the old `dns.hetzner.com` API is shut down). The zone is
/// found by name among the project's zones and must be in primary mode.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct HetznerSpec {
    /// The Secret (in the provider's namespace; for a ClusterDNSProvider, in the operator's
    /// namespace) holding an API token of the project that holds the zones, with Read & Write
    /// permission (Security > API tokens in the Hetzner Console).
    pub token_secret_ref: SecretKeyRef,
    /// The API's base URL; `https://api.hetzner.cloud/v1` unless set (for a proxy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = Rule::new("self.matches('^https?://[^?#]+$')").message("apiUrl must be an http:// or https:// URL"))]
    pub api_url: Option<String>,
}

/// DigitalOcean DNS settings (the v2 API's domains). The zone is a domain added to the
/// DigitalOcean account. DigitalOcean refuses TXT values longer than about 500 bytes once
/// quoted: a 2048-bit DKIM key fits, a 4096-bit one does not.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DigitalOceanSpec {
    /// The Secret (in the provider's namespace; for a ClusterDNSProvider, in the operator's
    /// namespace) holding a personal access token with the `domain` scopes (read, create,
    /// update, delete).
    pub token_secret_ref: SecretKeyRef,
    /// The API's base URL; `https://api.digitalocean.com` unless set (for a proxy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = Rule::new("self.matches('^https?://[^?#]+$')").message("apiUrl must be an http:// or https:// URL"))]
    pub api_url: Option<String>,
}

/// Azure DNS settings (a public DNS zone of Azure Resource Manager). Credentials, one of: a
/// client secret of an app registration (`tenantId`, `clientId`, `clientSecretSecretRef`), or
/// AKS Workload Identity (`workloadIdentity: true`: the controller's pod is labelled
/// `azure.workload.identity/use: "true"` and its ServiceAccount names the managed identity in
/// `azure.workload.identity/client-id`; AKS sets `AZURE_CLIENT_ID`, `AZURE_TENANT_ID` and
/// `AZURE_FEDERATED_TOKEN_FILE`). The identity needs the DNS Zone Contributor role on the zone.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.clientSecretSecretRef) != (has(self.workloadIdentity) && self.workloadIdentity)").message("set either clientSecretSecretRef or workloadIdentity: true"))]
#[x_kube(validation = Rule::new("!has(self.clientSecretSecretRef) || (has(self.tenantId) && has(self.clientId))").message("clientSecretSecretRef needs tenantId and clientId"))]
pub struct AzureSpec {
    /// The subscription that holds the zone (a GUID).
    #[schemars(length(min = 1, max = 64))]
    pub subscription_id: String,
    /// The resource group that holds the zone.
    #[schemars(length(min = 1, max = 90))]
    pub resource_group: String,
    /// The Microsoft Entra tenant (directory) id. Required with clientSecretSecretRef; with
    /// workloadIdentity, `AZURE_TENANT_ID` unless set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub tenant_id: Option<String>,
    /// The application (client) id of the app registration or managed identity. Required with
    /// clientSecretSecretRef; with workloadIdentity, `AZURE_CLIENT_ID` unless set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub client_id: Option<String>,
    /// The Secret (in the provider's namespace; for a ClusterDNSProvider, in the operator's
    /// namespace) holding the app registration's client secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_secret_ref: Option<SecretKeyRef>,
    /// Use AKS Workload Identity (a federated token exchanged for the managed identity's)
    /// instead of a client secret.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub workload_identity: bool,
    /// Azure Resource Manager's base URL; `https://management.azure.com` unless set (for a
    /// proxy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = Rule::new("self.matches('^https?://[^/?#]+/?$')").message("managementEndpoint must be an http:// or https:// URL without a path"))]
    pub management_endpoint: Option<String>,
    /// The Microsoft Entra token service's base URL; `https://login.microsoftonline.com`
    /// unless set (or, with workloadIdentity, `AZURE_AUTHORITY_HOST`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = Rule::new("self.matches('^https?://[^/?#]+/?$')").message("authorityHost must be an http:// or https:// URL without a path"))]
    pub authority_host: Option<String>,
}

/// Google Cloud DNS settings (a public managed zone of a Google Cloud project). Credentials,
/// one of: a service-account key (`serviceAccountKeySecretRef`: the JSON key file as Google
/// issues it), or GKE Workload Identity (`workloadIdentity: true`: tokens from the GKE
/// metadata server for the controller's ServiceAccount, which is granted the role as a
/// principal or acts as a Google service account named in its `iam.gke.io/gcp-service-account`
/// annotation). The identity needs roles/dns.admin on the project (or on the managed zone, plus
/// dns.managedZones.list when managedZone is not set).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.serviceAccountKeySecretRef) != (has(self.workloadIdentity) && self.workloadIdentity)").message("set either serviceAccountKeySecretRef or workloadIdentity: true"))]
pub struct GoogleSpec {
    /// The project id that holds the managed zone, e.g. `my-project`.
    #[schemars(length(min = 6, max = 30))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z][a-z0-9-]*[a-z0-9]$')").message("project must be a project id (lower-case letters, digits, hyphens), not its number or display name"))]
    pub project: String,
    /// The managed zone's name (not its DNS name), used for every zone of this provider.
    /// Unless set, each zone's public managed zone is found by its DNS name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z]([a-z0-9-]*[a-z0-9])?$')").message("managedZone must be a managed zone name (lower-case letters, digits, hyphens)"))]
    pub managed_zone: Option<String>,
    /// The Secret (in the provider's namespace; for a ClusterDNSProvider, in the operator's
    /// namespace) holding a service-account JSON key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_key_secret_ref: Option<SecretKeyRef>,
    /// Use GKE Workload Identity (the metadata server's token) instead of a key.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub workload_identity: bool,
    /// The Cloud DNS API's base URL; `https://dns.googleapis.com` unless set (for a proxy or
    /// a private endpoint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = Rule::new("self.matches('^https?://[^/?#]+/?$')").message("endpoint must be an http:// or https:// URL without a path"))]
    pub endpoint: Option<String>,
}

fn default_server_id() -> String {
    "localhost".to_owned()
}

/// TSIG HMAC algorithms.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
pub enum TsigAlgorithm {
    #[default]
    #[serde(rename = "hmac-sha256")]
    HmacSha256,
    #[serde(rename = "hmac-sha384")]
    HmacSha384,
    #[serde(rename = "hmac-sha512")]
    HmacSha512,
}

/// A key inside a Secret.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The data key.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// A DNS provider usable by MailDomains in any allowed namespace.
// kube's printcolumn(...) repeats `type_ = ...`, which clippy mistakes for a duplicate.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "mailsec.io",
    version = "v1alpha1",
    kind = "ClusterDNSProvider",
    plural = "clusterdnsproviders",
    category = "mailsec",
    derive = "PartialEq",
    doc = "Where and how the operator writes DNS records, for MailDomains in the allowed namespaces.",
    printcolumn(name = "Type", type_ = "string", json_path = ".spec.type"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = settings_block_rule())]
pub struct ClusterDNSProviderSpec {
    #[serde(flatten)]
    pub settings: ProviderSettings,
    /// Namespaces whose MailDomains may use this provider. When empty, all may.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256), inner(length(min = 1, max = 63)))]
    pub allowed_namespaces: Vec<String>,
}
