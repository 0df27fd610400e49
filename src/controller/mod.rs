//! The controller: each MailDomain through the stages of [`reconcile`], in the order they run.
//!
//! | stage | module | output |
//! | --- | --- | --- |
//! | dereference | [`dereference`] | the DKIM Secrets; then the claim and the provider [`dereference::Target`] |
//! | validate, build | [`crate::model`] (pure) | [`crate::model::desired::Desired`] and warnings |
//! | managed DKIM keys | [`keys`] | [`keys::Keys`]: keys made and rotated, the signing Secret, their records |
//! | TLS reports | [`reports`] | [`reports::Reports`]: summary, `TLSReportsClean`, evidence for `mtaSts.promote` |
//! | MTA-STS rollout | [`rollout`] | [`rollout::Rollout`]: the policy to serve, the id to publish |
//! | policy hosting | [`hosting`] | [`hosting::Hosting`]: Ingress, Service, Certificate |
//! | DNS | [`publish`] | [`publish::Published`]: read, plan, apply |
//! | live checks | [`verify`] | [`verify::Checked`] |
//! | status | [`status`] (pure, then one write) | `MailDomainStatus` with [`conditions`] |

pub mod conditions;
pub mod context;
pub mod dereference;
pub mod error;
pub mod hosting;
pub mod keys;
pub mod names;
pub mod providers;
pub mod publish;
pub mod reconcile;
pub mod reports;
pub mod rollout;
pub mod run;
pub mod status;
pub mod verify;
