//! The Kubernetes-free core: mail security records and the MTA-STS policy, each with a
//! renderer and a strict parser, plus DNS name and TXT encoding rules.

pub mod bimi;
pub mod dkim;
pub mod dmarc;
pub mod keygen;
pub mod mtasts;
pub mod name;
pub mod record;
pub mod spf;
pub mod tags;
pub mod tlsrpt;
pub mod txt;
