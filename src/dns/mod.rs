//! DNS: the provider-agnostic plan, ownership markers, and the providers.

pub mod ownership;
pub mod plan;
