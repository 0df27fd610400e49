//! The names the controller writes under: its finalizer, its server-side-apply field manager
//! and the annotations users set to override a wait.

pub const FINALIZER: &str = "mailsec.io/cleanup";
pub const FIELD_MANAGER: &str = "mailsec-operator";
/// Annotation that publishes `enforce` without waiting for the live checks.
pub const FORCE_ENFORCE: &str = "mailsec.io/force-enforce";
/// Annotation that skips the wait with a `mode: none` policy when MTA-STS is withdrawn.
pub const SKIP_WITHDRAWAL: &str = "mailsec.io/skip-withdrawal";
