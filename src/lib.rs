//! mailsec-operator: publishes and verifies a domain's mail security records.
pub mod admin;
pub mod api;
pub mod checks;
pub mod cli;
pub mod conn;
pub mod controller;
pub mod dns;
pub mod domain;
pub mod intake;
pub mod metrics;
pub mod model;
pub mod report;
pub mod serve;
