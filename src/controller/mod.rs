//! The reconcile pipeline: validate → build → apply → check → status. Validate and build are
//! pure and shared with `mailsec render`.

pub mod build;
pub mod conditions;
pub mod error;
pub mod hosting;
pub mod provider;
pub mod reconcile;
pub mod run;
pub mod validate;
pub mod verify;
