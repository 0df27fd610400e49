//! The `MailDomain` custom resource: one mail domain's security records and policy.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::patterns::{HOST, MX_PATTERN, SELECTOR};

/// A MailDomain as watched: one that does not deserialize is reported, and does not stop the
/// watch for the others.
pub type Guarded = kube::core::DeserializeGuard<MailDomain>;

/// The desired mail security of one domain: which records to publish (MTA-STS, TLS-RPT, SPF,
/// DMARC, DKIM, BIMI), through which DNS provider, and how the MTA-STS policy is hosted.
// kube's printcolumn(...) repeats `type_ = ...`, which clippy mistakes for a duplicate.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "mailsec.io",
    version = "v1alpha1",
    kind = "MailDomain",
    plural = "maildomains",
    shortname = "md",
    category = "mailsec",
    namespaced,
    status = "MailDomainStatus",
    derive = "PartialEq",
    doc = "A mail domain whose MTA-STS policy and mail security TXT records the operator publishes and verifies.",
    printcolumn(name = "Domain", type_ = "string", json_path = ".spec.domain"),
    printcolumn(name = "Mode", type_ = "string", json_path = ".spec.mtaSts.mode"),
    printcolumn(name = "Policy-ID", type_ = "string", json_path = ".status.policyId"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(
    validation = Rule::new("!has(self.mtaSts) || (has(self.mtaSts.mode) && self.mtaSts.mode == 'none') || (has(self.mx) && size(self.mx) > 0)")
        .message("mx must list at least one MX host pattern when mtaSts.mode is testing or enforce")
        .field_path(".mx")
        .reason(kube::core::Reason::FieldValueRequired),
    validation = Rule::new("has(self.mtaSts) || has(self.tlsRpt) || has(self.spf) || has(self.dmarc) || (has(self.dkim) && size(self.dkim) > 0) || has(self.bimi)")
        .message("nothing to publish: set at least one of mtaSts, tlsRpt, spf, dmarc, dkim, bimi")
)]
#[serde(rename_all = "camelCase")]
pub struct MailDomainSpec {
    /// The mail domain, e.g. `example.com`. Internationalized names are accepted and published
    /// as A-labels (`bücher.example` becomes `xn--bcher-kva.example`). No trailing dot.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new(format!("self.matches('{HOST}')")).message("domain must be a host name such as example.com, without a trailing dot"))]
    pub domain: String,

    /// The DNSProvider (same namespace) or ClusterDNSProvider that publishes the records. When
    /// absent, nothing is written to DNS and status lists the records to publish by hand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_provider_ref: Option<DnsProviderRef>,

    /// TTL in seconds of the records the operator writes.
    #[serde(default = "default_ttl")]
    #[schemars(with = "i32", range(min = 60, max = 604800))]
    pub ttl: u32,

    /// The MX host patterns of the MTA-STS policy, also what the MX checks expect: host names
    /// (`mx1.example.com`) or `*.` wildcards that match exactly one extra leftmost label
    /// (`*.mail.example.net` matches `a.mail.example.net`, not `mail.example.net`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(min = 1, max = 253)))]
    #[x_kube(
        validation = Rule::new(format!("self.all(m, m.matches('{MX_PATTERN}'))"))
            .message("each mx must be a host name (mx1.example.com) or a wildcard of one leftmost label (*.example.com), without a trailing dot"),
        merge_strategy = ListMerge::Set
    )]
    pub mx: Vec<String>,

    /// MTA-STS (RFC 8461): the `_mta-sts` TXT record and the policy served at
    /// `https://mta-sts.<domain>/.well-known/mta-sts.txt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mta_sts: Option<MtaStsSpec>,

    /// SMTP TLS reporting (RFC 8460): the `_smtp._tls` TXT record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_rpt: Option<TlsRptSpec>,

    /// SPF (RFC 7208): the `v=spf1` TXT value at the domain apex. Other TXT values at the apex
    /// are left untouched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spf: Option<SpfSpec>,

    /// DMARC (RFC 7489): the `_dmarc` TXT record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dmarc: Option<DmarcSpec>,

    /// DKIM (RFC 6376, RFC 8463) public keys, one `<selector>._domainkey` TXT record each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["selector".into()]))]
    pub dkim: Vec<DkimSpec>,

    /// The signing Secret of the `managed` DKIM keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dkim_signing: Option<DkimSigningSpec>,

    /// BIMI: the `<selector>._bimi` TXT record pointing at the brand logo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bimi: Option<BimiSpec>,

    /// Take over existing values of the managed kinds that this operator did not create.
    /// Without it such values are reported as `Conflict` and left untouched.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub adopt_existing: bool,
}

fn default_ttl() -> u32 {
    3600
}

/// A reference to the provider that publishes the records.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
pub struct DnsProviderRef {
    /// `DNSProvider` (in the MailDomain's namespace) or `ClusterDNSProvider`.
    #[serde(default)]
    pub kind: ProviderKind,
    /// Name of the provider object.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Which provider kind a reference points at.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, schemars::JsonSchema,
)]
pub enum ProviderKind {
    #[default]
    #[serde(rename = "DNSProvider")]
    DnsProvider,
    #[serde(rename = "ClusterDNSProvider")]
    ClusterDnsProvider,
}

/// MTA-STS settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct MtaStsSpec {
    /// `testing` (senders report failures but deliver), `enforce` (senders refuse to deliver
    /// without validated TLS to a listed MX) or `none` (withdraws the policy).
    #[serde(default)]
    pub mode: MtaStsMode,
    /// How long senders may cache the policy, in seconds (at most 31557600, about a year).
    /// RFC 8461 advises weeks.
    #[serde(default = "default_max_age")]
    #[schemars(with = "i32", range(min = 1, max = 31557600))]
    pub max_age: u32,
    /// How `https://mta-sts.<domain>` reaches the policy server. When absent the operator
    /// creates nothing for it and you route it yourself. Replaced as a whole by server-side
    /// apply, so switching between ingress and external never leaves both or neither.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-map-type" = "atomic"))]
    pub policy_host: Option<PolicyHostSpec>,
    /// Move a `testing` policy to `enforce` on evidence: once the received TLS reports (see
    /// `tlsRpt.receive`) about the policy served show that many consecutive clean UTC days
    /// from enough distinct reporters, and the live checks pass. Takes effect while `mode` is
    /// `testing`; once promoted the policy stays `enforce` (`status.promotedAt`) until `mode`
    /// or `promote` changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promote: Option<PromoteSpec>,
}

/// When a `testing` policy is promoted to `enforce`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PromoteSpec {
    /// Consecutive UTC days with reports and no failed session. A day without any report is
    /// not clean.
    #[serde(default = "default_clean_days")]
    #[schemars(with = "i32", range(min = 1, max = 90))]
    pub after_clean_days: u32,
    /// Distinct reporting organisations over those days.
    #[serde(default = "default_min_reporters")]
    #[schemars(with = "i32", range(min = 1, max = 20))]
    pub min_reporters: u32,
}

fn default_clean_days() -> u32 {
    14
}

fn default_min_reporters() -> u32 {
    2
}

fn default_max_age() -> u32 {
    604_800
}

/// The MTA-STS policy mode.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum MtaStsMode {
    #[default]
    Testing,
    Enforce,
    None,
}

/// How the policy host is exposed.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.ingress), has(self.gatewayRoute), has(self.external)].filter(x, x).size() == 1").message("set exactly one of ingress, gatewayRoute or external"))]
#[x_kube(validation = Rule::new("!has(self.address) || !has(self.address.fromLoadBalancer) || has(self.ingress) || has(self.gatewayRoute)").message("address.fromLoadBalancer needs ingress or gatewayRoute: their status has the load balancer's address"))]
pub struct PolicyHostSpec {
    /// Create an Ingress for `mta-sts.<domain>` that routes to the policy server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<IngressSpec>,
    /// Create a Gateway API HTTPRoute for `mta-sts.<domain>` that routes to the policy server,
    /// attached to your Gateway(s). The listener needs a certificate for the name: a
    /// cert-manager-annotated Gateway, or `certificate` here and a listener that references
    /// the Secret `mta-sts-<name>-tls` (a ReferenceGrant when the Gateway is elsewhere).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_route: Option<GatewayRouteSpec>,
    /// You route `mta-sts.<domain>` to the policy server yourself; the operator only checks it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalSpec>,
    /// A cert-manager Certificate for `mta-sts.<domain>`, used by the Ingress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<CertificateSpec>,
    /// Publish `mta-sts.<domain>` itself through the MailDomain's DNS provider, owned and
    /// marked like its TXT records. Records at that name that the operator did not create are
    /// never replaced: they are a conflict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<PolicyHostAddress>,
}

/// Where `mta-sts.<domain>` points.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.cname) != has(self.fromLoadBalancer)").message("set exactly one of cname or fromLoadBalancer"))]
pub struct PolicyHostAddress {
    /// A CNAME to this host name: your ingress controller's, Gateway's or load balancer's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new(format!("self.matches('{HOST}')")).message("cname must be a host name such as lb.example.net, without a trailing dot"))]
    pub cname: Option<String>,
    /// A and AAAA records for the addresses in the Ingress's `status.loadBalancer` (or the
    /// Gateway's `status.addresses`); a CNAME when the load balancer has a host name instead.
    /// Nothing changes while the load balancer has no address yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_load_balancer: Option<FromLoadBalancer>,
}

/// Marker: take the address from the load balancer.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
pub struct FromLoadBalancer {}

/// Ingress settings for the policy host.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct IngressSpec {
    /// The IngressClass to use; the cluster default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub class_name: Option<String>,
}

/// Gateway API settings for the policy host.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewayRouteSpec {
    /// The Gateways (listeners) the HTTPRoute attaches to.
    #[schemars(length(min = 1, max = 8))]
    pub parent_refs: Vec<GatewayParentRef>,
}

/// One Gateway (and optionally one of its listeners).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewayParentRef {
    /// Name of the Gateway.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Namespace of the Gateway; the MailDomain's when absent. The Gateway's listener must
    /// allow routes from the MailDomain's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub namespace: Option<String>,
    /// The listener to attach to (its `name`), e.g. the HTTPS listener that holds the
    /// certificate for `mta-sts.<domain>`; every matching listener when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub section_name: Option<String>,
}

/// Marker for a policy host routed by the user.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
pub struct ExternalSpec {}

/// cert-manager settings for the policy host certificate.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct CertificateSpec {
    /// The cert-manager issuer that signs the certificate.
    pub issuer_ref: IssuerRef,
}

/// A cert-manager issuer reference.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
pub struct IssuerRef {
    /// `Issuer` or `ClusterIssuer`.
    #[serde(default = "default_issuer_kind")]
    #[x_kube(validation = Rule::new("self in ['Issuer', 'ClusterIssuer']").message("kind must be Issuer or ClusterIssuer"))]
    #[schemars(length(max = 32))]
    pub kind: String,
    /// Name of the issuer.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

fn default_issuer_kind() -> String {
    "Issuer".into()
}

/// TLS-RPT settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.rua) && size(self.rua) > 0) || (has(self.receive) && self.receive)").message("list at least one rua destination, or set receive: true"))]
pub struct TlsRptSpec {
    /// Where senders send daily TLS reports: `mailto:` addresses or `https://` URLs. Commas,
    /// `!` and `;` inside a URI are percent-encoded when published.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10), inner(length(min = 1, max = 512)))]
    #[x_kube(validation = Rule::new("self.all(u, (u.startsWith('mailto:') && u.contains('@')) || u.startsWith('https://'))").message("each rua must be a mailto: address or an https:// URL"))]
    pub rua: Vec<String>,
    /// Also send reports to this installation's report receiver (`mailsec receive`, the
    /// chart's `reports.receiver`): its URL is added to `rua`, and the reports it receives
    /// become TLSReports, the `tlsReports` summary in status and the `TLSReportsClean`
    /// condition.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub receive: bool,
}

/// SPF settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new("!(has(self.all) && has(self.redirect))").message("set all or redirect, not both: receivers ignore redirect when all is present"))]
pub struct SpfSpec {
    /// Mechanisms in order, each optionally prefixed by a qualifier (`+ - ~ ?`): `mx`, `a`,
    /// `a:host/24`, `ip4:192.0.2.0/24`, `ip6:2001:db8::/32`, `include:_spf.example.net`,
    /// `exists:...`. At most 10 of them may need DNS lookups (RFC 7208 §4.6.4).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 255)))]
    #[x_kube(validation = Rule::new("self.all(m, !m.matches('^[-+~?]?(?i:all)$') && !m.contains('='))").message("set all and redirect with their own fields, not as mechanisms"))]
    pub mechanisms: Vec<String>,
    /// What happens to mail from hosts no mechanism matched: `fail` (`-all`), `softfail`
    /// (`~all`) or `neutral` (`?all`). Leave it out only when `redirect` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all: Option<SpfAll>,
    /// Use another domain's SPF record (`redirect=`), instead of `all`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub redirect: Option<String>,
}

/// The qualifier of the final `all`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SpfAll {
    Fail,
    Softfail,
    Neutral,
}

/// DMARC settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DmarcSpec {
    /// What receivers do with mail failing DMARC: `none`, `quarantine` or `reject`.
    pub policy: DmarcPolicy,
    /// The policy for subdomains (`sp=`); the main policy when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subdomain_policy: Option<DmarcPolicy>,
    /// Aggregate report destinations (`rua=`): `mailto:` addresses, optionally with a size limit
    /// such as `mailto:dmarc@example.com!10m`. A destination outside this domain must publish an
    /// authorization record (RFC 7489 §7.1).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10), inner(length(min = 1, max = 512)))]
    #[x_kube(validation = Rule::new("self.all(u, u.startsWith('mailto:') && u.contains('@'))").message("each rua must be a mailto: address"))]
    pub rua: Vec<String>,
    /// Failure report destinations (`ruf=`), `mailto:` addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10), inner(length(min = 1, max = 512)))]
    #[x_kube(validation = Rule::new("self.all(u, u.startsWith('mailto:') && u.contains('@'))").message("each ruf must be a mailto: address"))]
    pub ruf: Vec<String>,
    /// Percentage of failing mail the policy applies to (`pct=`), 0 to 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<i32>", range(min = 0, max = 100))]
    pub percent: Option<u8>,
    /// DKIM identifier alignment (`adkim=`): `relaxed` or `strict`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dkim_alignment: Option<Alignment>,
    /// SPF identifier alignment (`aspf=`): `relaxed` or `strict`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spf_alignment: Option<Alignment>,
    /// Failure reporting options (`fo=`): a `:`-separated list of `0`, `1`, `d`, `s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 16))]
    #[x_kube(validation = Rule::new("self.matches('^[01ds](:[01ds])*$')").message("failureOptions must be a :-separated list of 0, 1, d, s"))]
    pub failure_options: Option<String>,
    /// Requested aggregate report interval in seconds (`ri=`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<i32>", range(min = 3600, max = 31557600))]
    pub report_interval: Option<u32>,
}

/// A DMARC disposition.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DmarcPolicy {
    None,
    Quarantine,
    Reject,
}

/// An identifier alignment mode.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Alignment {
    Relaxed,
    Strict,
}

/// One DKIM selector and its key.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.keySecretRef), has(self.publicKey), has(self.managed)].filter(x, x).size() == 1").message("set exactly one of keySecretRef, publicKey or managed"))]
pub struct DkimSpec {
    /// The selector: the record is published at `<selector>._domainkey.<domain>`. With
    /// `managed`, the prefix of the selectors the operator makes: `s` gives `s20261201`, the
    /// prefix and the UTC day the key was made.
    #[schemars(length(min = 1, max = 126))]
    #[x_kube(validation = Rule::new(format!("self.matches('{SELECTOR}')")).message("selector must be one or more labels of letters, digits and inner hyphens, such as s2026"))]
    pub selector: String,
    /// A Secret in this namespace holding the key in PEM (RSA or Ed25519; private or public,
    /// PKCS#1, PKCS#8 or SubjectPublicKeyInfo). Only the public key is published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_secret_ref: Option<KeySecretRef>,
    /// The public key as your mail provider gives it: the base64 `p=` value, or a PEM block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    pub public_key: Option<String>,
    /// A key the operator makes, rotates and hands to the mail server through the signing
    /// Secret (`dkimSigning`), instead of one you bring.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed: Option<ManagedKeySpec>,
    /// Publish `t=y`: the domain is testing DKIM and verifiers should not treat failures
    /// differently from unsigned mail.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub testing: bool,
}

/// A DKIM key the operator makes and rotates: `Pending` (published, waiting until DNS serves
/// it and a TTL has passed) → `Active` (in the signing Secret) → `Retiring` (still published
/// for `overlap`, for mail signed before the switch) → `Retired` (record and private key
/// removed). A rotation never leaves the entry without an active key.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("duration(self.rotateEvery) == duration('0s') || duration(self.rotateEvery) > duration(self.overlap)").message("rotateEvery must be longer than overlap (or 0s: never rotate)"))]
pub struct ManagedKeySpec {
    /// `rsa-2048` (the default), `rsa-3072`, `rsa-4096` or `ed25519` (RFC 8463; sign with
    /// an RSA key too, as not every verifier knows Ed25519).
    #[serde(default)]
    pub algorithm: DkimAlgorithm,
    /// How long a key signs before the next one replaces it, as a duration (`4320h`, about 180
    /// days, the default); `0s` never rotates. Longer than `overlap`.
    #[serde(default = "default_rotate_every")]
    #[schemars(length(min = 2, max = 32))]
    #[x_kube(validation = Rule::new("self.matches('^([0-9]+(\\\\.[0-9]+)?(ms|s|m|h))+$')").message("rotateEvery must be a duration such as 4320h or 90m"))]
    pub rotate_every: String,
    /// How long a replaced key stays published, so mail signed with it in flight or queued
    /// still verifies (`336h`, 14 days, the default).
    #[serde(default = "default_overlap")]
    #[schemars(length(min = 2, max = 32))]
    #[x_kube(validation = Rule::new("self.matches('^([0-9]+(\\\\.[0-9]+)?(ms|s|m|h))+$')").message("overlap must be a duration such as 336h"))]
    pub overlap: String,
    /// How long a new key is published before it signs; it also waits until DNS serves it.
    /// Default: the records' TTL (caches that saw the name without the record have forgotten
    /// it). Set it longer for slow secondaries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 32))]
    #[x_kube(validation = Rule::new("self.matches('^([0-9]+(\\\\.[0-9]+)?(ms|s|m|h))+$')").message("activateAfter must be a duration such as 1h"))]
    pub activate_after: Option<String>,
}

fn default_rotate_every() -> String {
    "4320h".into()
}

fn default_overlap() -> String {
    "336h".into()
}

/// The algorithm of a managed DKIM key.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
pub enum DkimAlgorithm {
    #[default]
    #[serde(rename = "rsa-2048")]
    Rsa2048,
    #[serde(rename = "rsa-3072")]
    Rsa3072,
    #[serde(rename = "rsa-4096")]
    Rsa4096,
    #[serde(rename = "ed25519")]
    Ed25519,
}

impl DkimAlgorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            DkimAlgorithm::Rsa2048 => "rsa-2048",
            DkimAlgorithm::Rsa3072 => "rsa-3072",
            DkimAlgorithm::Rsa4096 => "rsa-4096",
            DkimAlgorithm::Ed25519 => "ed25519",
        }
    }
}

/// Where the active managed DKIM keys are handed to the mail server.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DkimSigningSpec {
    /// The Secret (this namespace) the operator writes the active keys into, for the mail
    /// server to mount; `<name>-dkim-signing` unless set. The operator owns it: a Secret of
    /// that name it did not make is a Conflict and is never overwritten.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: Option<String>,
    /// The directory the mail server mounts the Secret at: the paths in `KeyTable` and in
    /// `dkim_signing.conf` point into it (default `/etc/mailsec/dkim`).
    #[serde(default = "default_key_directory")]
    #[schemars(length(min = 1, max = 253))]
    pub key_directory: String,
}

fn default_key_directory() -> String {
    "/etc/mailsec/dkim".into()
}

/// A key inside a Secret.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
pub struct KeySecretRef {
    /// Name of the Secret, in the MailDomain's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The data key holding the PEM.
    #[serde(default = "default_secret_key")]
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

fn default_secret_key() -> String {
    "private.key".into()
}

/// BIMI settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct BimiSpec {
    /// The selector: the record is published at `<selector>._bimi.<domain>`.
    #[serde(default = "default_bimi_selector")]
    #[schemars(length(min = 1, max = 126))]
    #[x_kube(validation = Rule::new(format!("self.matches('{SELECTOR}')")).message("selector must be one or more labels of letters, digits and inner hyphens"))]
    pub selector: String,
    /// HTTPS URL of the logo, an SVG Tiny PS file (`l=`).
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = Rule::new("self.startsWith('https://')").message("logoUrl must be an https:// URL"))]
    pub logo_url: String,
    /// HTTPS URL of the Verified Mark Certificate in PEM (`a=`), if you have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = Rule::new("self.startsWith('https://')").message("authorityUrl must be an https:// URL"))]
    pub authority_url: Option<String>,
}

fn default_bimi_selector() -> String {
    "default".into()
}

/// What the operator observed and did.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct MailDomainStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The id published in `_mta-sts`: 32 hex digits derived from the policy content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_id: Option<String>,
    /// The exact policy file the policy servers return. The controller sets it first and changes
    /// the `_mta-sts` id only once the servers return it (RFC 8461 §8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_policy: Option<String>,
    /// While MTA-STS is being withdrawn: the `mode: none` policy stays published until this time
    /// (the previous max_age), then the records are removed. Annotate the MailDomain with
    /// `mailsec.io/skip-withdrawal: "true"` to remove them at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withdraw_until: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    /// When the live checks (the *Verified conditions) last ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_checked: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    /// The received TLS reports, summed over the last 1, 7 and 30 UTC days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_reports: Option<TlsReportsSummary>,
    /// When `mtaSts.promote` moved the policy from testing to enforce.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoted_at: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    /// The managed DKIM keys (`dkim[].managed`), each with its state and since when.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dkim: Vec<DkimKeyStatus>,
    /// The last `mailsec.io/rotate-dkim` annotation value acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dkim_rotated: Option<String>,
    /// The records the operator manages, with their state in DNS.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub records: Vec<RecordStatus>,
    /// Current conditions: Ready, DNSPublished, PolicyHosted, CertificateReady and the checks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
}

/// One managed record.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecordStatus {
    /// Owner name, e.g. `_mta-sts.example.com`.
    pub name: String,
    /// Record type, `TXT`.
    #[serde(rename = "type")]
    pub record_type: String,
    /// The logical value (character-strings joined).
    pub value: String,
    /// `Published`, `Pending`, `Conflict` or `Error`.
    pub state: RecordState,
    /// Why the record is not published, when it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The state of one managed record.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum RecordState {
    Published,
    Pending,
    Conflict,
    Error,
}

/// What the stored TLSReports of a MailDomain say.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct TlsReportsSummary {
    /// TLSReports stored for this MailDomain.
    #[schemars(with = "i32")]
    pub stored: u32,
    /// The UTC day of the latest report, `YYYY-MM-DD`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_day: Option<String>,
    /// Consecutive clean UTC days up to the latest report day (reports, none with a failed
    /// session, about the policy served).
    #[schemars(with = "i32")]
    pub clean_days: u32,
    /// The last 1, 7 and 30 UTC days (up to today).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<ReportWindow>,
}

/// Reports of the last `days` UTC days, summed.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReportWindow {
    #[schemars(with = "i32")]
    pub days: u32,
    #[schemars(with = "i32")]
    pub reports: u32,
    /// Distinct reporting organisations (at most 20 named).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reporters: Vec<String>,
    #[schemars(with = "i64")]
    pub successful: u64,
    #[schemars(with = "i64")]
    pub failed: u64,
    /// Failed sessions by result type and MX, largest first (at most 10).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<FailureCount>,
}

/// Failed sessions of one result type at one MX.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailureCount {
    pub result_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mx: Option<String>,
    #[schemars(with = "i64")]
    pub sessions: u64,
}

/// One managed DKIM key.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DkimKeyStatus {
    /// The `dkim[]` entry (its `selector`, the prefix) the key belongs to.
    pub entry: String,
    /// The key's selector, e.g. `s20261201`.
    pub selector: String,
    pub algorithm: DkimAlgorithm,
    pub state: DkimKeyState,
    /// When the key entered its state.
    pub since: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
    /// The Secret holding the key (private and public PEM); deleted when the key is retired.
    pub secret_name: String,
    /// The public key's `p=` value, as published.
    pub public_key: String,
}

/// Where a managed DKIM key is in its rotation.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, schemars::JsonSchema,
)]
pub enum DkimKeyState {
    /// Published; waiting until DNS serves it and a TTL has passed.
    Pending,
    /// In the signing Secret: mail is signed with it.
    Active,
    /// Replaced; still published for the overlap.
    Retiring,
    /// Record withdrawn; the private key is deleted once DNS no longer has the record.
    Retired,
}
