//! Live checks: what the internet sees of a domain's mail security, compared with what it
//! should see. Each finding names the record or host and the exact problem.

pub mod dns;
pub mod legacy_tls;
pub mod policy;
pub mod run;
pub mod smtp;
pub mod spf;
pub mod tls;
