//! The custom resources of `mailsec.io/v1alpha1`.

mod dnsprovider;
mod maildomain;
pub mod patterns;
mod tlsreport;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

pub use dnsprovider::*;
pub use maildomain::*;
pub use tlsreport::*;

/// Every CRD of the API group, in a stable order.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![
        MailDomain::crd(),
        DNSProvider::crd(),
        ClusterDNSProvider::crd(),
        TLSReport::crd(),
    ]
}
