//! MTA-STS rollout: which policy the policy servers serve now and which id `_mta-sts` names.
//! RFC 8461 §8: a changed policy is served first and its id published only once it is served;
//! removing MTA-STS serves a `mode: none` policy under a new id for the old `max_age`, then
//! nothing. Safe enforce: with live checks on, `enforce` waits until every MX is covered and
//! passes STARTTLS. [`decide`] is pure; [`run`] adds the one HTTP confirmation.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::conditions::{self, Status, Type, reason};
use super::context::Context;
use crate::api::MailDomainStatus;
use crate::domain::mtasts::{Mode, Policy, PolicyId, WELL_KNOWN_PATH, policy_host};
use crate::domain::name::DomainName;
use crate::model::desired::{Desired, PolicyFile};

/// max_age of the `mode: none` policy published while withdrawing (RFC 8461 §8.3 suggests short).
pub const WITHDRAWAL_MAX_AGE: u32 = 86_400;

/// How soon to look again while the policy servers catch up.
pub const POLICY_POLL: Duration = Duration::from_secs(1);

/// What the rollout needs to know besides the previous status.
#[derive(Debug, Clone)]
pub struct Inputs<'a> {
    /// The policy the spec asks for (None: MTA-STS off or the MailDomain is being deleted).
    pub wanted: Option<&'a PolicyFile>,
    /// The live checks run, so `enforce` may be held back.
    pub checks_on: bool,
    /// `mailsec.io/force-enforce: "true"`.
    pub force_enforce: bool,
    /// `mailsec.io/skip-withdrawal: "true"`.
    pub skip_withdrawal: bool,
    /// The MailDomain's generation: a promotion to `enforce` waits for checks of this one.
    pub generation: Option<i64>,
    /// With `mtaSts.promote` on a `testing` policy: what the TLS reports say.
    pub promotion: Option<Promotion>,
    pub now: Timestamp,
}

/// `mtaSts.promote` on a `testing` policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Promotion {
    /// The reports are clean enough (or the policy was promoted before): `enforce`, as
    /// safe enforce allows.
    Promote,
    /// Not yet; why.
    Waiting(String),
}

/// The policy to serve now and the status fields that say so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The policy to serve now; None when MTA-STS is off.
    pub serve: Option<PolicyFile>,
    /// Until when the `mode: none` policy of a withdrawal is served.
    pub withdraw_until: Option<Time>,
    /// With `enforce` asked for and checks on, or with `mtaSts.promote`.
    pub enforce: Option<Enforce>,
    /// `status.promotedAt`: when `mtaSts.promote` first served `enforce`; kept while promote
    /// applies, so the promotion holds.
    pub promoted_at: Option<Time>,
}

/// Safe enforce's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enforce {
    Enforced,
    /// Held in `testing`: which checks block it, and why.
    Held(String),
    /// `testing` until the TLS reports show enough clean days (`mtaSts.promote`); how many
    /// are left.
    AwaitingReports(String),
}

/// Whether the policy servers return the policy to serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hosted {
    Served,
    /// Not (yet): a stable reason and what is going on.
    NotServed {
        reason: &'static str,
        message: String,
    },
}

/// The stage's output.
#[derive(Debug, Clone, PartialEq)]
pub struct Rollout {
    pub decision: Decision,
    /// `status.servedPolicy` from now on: what the policy servers are told to serve.
    pub served_policy: Option<String>,
    /// None when MTA-STS is off.
    pub hosted: Option<Hosted>,
    /// The id `_mta-sts` names now: the served policy's, or the one published before while
    /// it is not served yet; `None` (no record) once MTA-STS is off.
    pub publish_id: Option<PolicyId>,
}

impl Rollout {
    /// Whether this pass handed a new policy to the policy servers.
    pub fn handed_over(&self, before: &MailDomainStatus) -> bool {
        self.served_policy != before.served_policy
    }

    /// What the live checks compare with: the policy served now, and the `_mta-sts` record
    /// naming it (before its first id is published, the record is expected all the same).
    pub fn expected(&self, desired: &Desired) -> Desired {
        let id = self
            .publish_id
            .clone()
            .or_else(|| self.decision.serve.as_ref().map(|p| p.id.clone()));
        desired.as_published(
            desired.with_sts_id(id.as_ref()),
            self.decision.serve.clone(),
        )
    }

    /// When to look again: soon while the policy servers catch up, at the end of a withdrawal.
    pub fn requeue(&self, now: Timestamp) -> Option<Duration> {
        let polling = matches!(self.hosted, Some(Hosted::NotServed { .. })).then_some(POLICY_POLL);
        let withdrawal =
            self.decision.withdraw_until.as_ref().map(|until| {
                Duration::from_secs(until.0.duration_since(now).as_secs().max(1) as u64)
            });
        polling.into_iter().chain(withdrawal).min()
    }
}

/// The pure part: which policy to serve, given the spec and what the previous pass left.
pub fn decide(old: &MailDomainStatus, inputs: &Inputs) -> Decision {
    if let Some(wanted) = inputs.wanted {
        return match (&inputs.promotion, wanted.policy.mode) {
            (Some(Promotion::Waiting(why)), Mode::Testing) => Decision {
                serve: Some(wanted.clone()),
                withdraw_until: None,
                enforce: Some(Enforce::AwaitingReports(why.clone())),
                promoted_at: None,
            },
            (Some(Promotion::Promote), Mode::Testing) => {
                let enforce = PolicyFile::new(Policy {
                    mode: Mode::Enforce,
                    ..wanted.policy.clone()
                });
                let (serve, verdict) = hold_enforce(old, &enforce, inputs);
                let verdict = verdict.unwrap_or(Enforce::Enforced);
                let promoted_at = match verdict {
                    Enforce::Enforced => old.promoted_at.clone().or(Some(Time(inputs.now))),
                    _ => old.promoted_at.clone(),
                };
                Decision {
                    serve: Some(serve),
                    withdraw_until: None,
                    enforce: Some(verdict),
                    promoted_at,
                }
            }
            _ => {
                let (serve, enforce) = hold_enforce(old, wanted, inputs);
                Decision {
                    serve: Some(serve),
                    withdraw_until: None,
                    enforce,
                    promoted_at: None,
                }
            }
        };
    }
    let off = Decision {
        serve: None,
        withdraw_until: None,
        enforce: None,
        promoted_at: None,
    };
    if old.policy_id.is_none() || inputs.skip_withdrawal {
        return off;
    }
    // The period starts when the old policy stops being served: no sender can have cached it
    // after that, so its max_age from then covers every cache.
    let previous = old
        .served_policy
        .as_deref()
        .and_then(|p| Policy::parse(p).ok())
        .map(|p| p.value);
    let until = old.withdraw_until.clone().or_else(|| {
        let seconds = previous
            .as_ref()
            .filter(|p| p.mode != Mode::None)
            .map_or(WITHDRAWAL_MAX_AGE, |p| p.max_age);
        inputs
            .now
            .checked_add(SignedDuration::from_secs(i64::from(seconds)))
            .ok()
            .map(Time)
    });
    if until.as_ref().is_some_and(|u| u.0 <= inputs.now) {
        return off;
    }
    Decision {
        serve: Some(PolicyFile::new(Policy {
            mode: Mode::None,
            mx: previous.map(|p| p.mx).unwrap_or_default(),
            max_age: WITHDRAWAL_MAX_AGE,
        })),
        withdraw_until: until,
        enforce: None,
        promoted_at: None,
    }
}

/// Safe enforce: `enforce` is served only once the last live checks showed every MX covered
/// and offering valid STARTTLS; until then the policy stays `testing`, so no mail is refused.
/// A policy not served yet (a promotion, or new MX patterns) needs checks of the current
/// generation: the last ones may predate a change of the zone's MX hosts made together with
/// the spec change. The policy already served keeps going on the periodic checks.
fn hold_enforce(
    old: &MailDomainStatus,
    wanted: &PolicyFile,
    inputs: &Inputs,
) -> (PolicyFile, Option<Enforce>) {
    let previous: &[Condition] = &old.conditions;
    let promotion = old.served_policy.as_deref() != Some(wanted.text.as_str());
    if wanted.policy.mode != Mode::Enforce || !inputs.checks_on {
        return (wanted.clone(), None);
    }
    if inputs.force_enforce {
        return (wanted.clone(), Some(Enforce::Enforced));
    }
    let blockers: Vec<String> = [Type::MxCovered, Type::SmtpTlsVerified]
        .iter()
        .filter_map(|t| match conditions::find(previous, *t) {
            Some(c) if promotion && c.observed_generation != inputs.generation => Some(format!(
                "{} has not been checked for generation {} yet",
                t.as_str(),
                inputs.generation.unwrap_or_default()
            )),
            Some(c) if Status::parse(&c.status) == Status::True => None,
            Some(c) => Some(format!(
                "{} is {} ({}): {}",
                t.as_str(),
                c.status,
                c.reason,
                c.message
            )),
            None => Some(format!("{} has not been checked yet", t.as_str())),
        })
        .collect();
    if blockers.is_empty() {
        return (wanted.clone(), Some(Enforce::Enforced));
    }
    let testing = PolicyFile::new(Policy {
        mode: Mode::Testing,
        ..wanted.policy.clone()
    });
    (testing, Some(Enforce::Held(blockers.join("; "))))
}

/// The stage: [`decide`], hand the policy to the policy servers (through status), and confirm
/// over HTTP that they serve it before its id is published.
pub async fn run(
    ctx: &Context,
    domain: &DomainName,
    old: &MailDomainStatus,
    inputs: &Inputs<'_>,
) -> Rollout {
    let decision = decide(old, inputs);
    let hosted = match &decision.serve {
        None => None,
        Some(serve) if old.served_policy.as_deref() != Some(serve.text.as_str()) => {
            Some(Hosted::NotServed {
                reason: reason::POLICY_PENDING,
                message: format!(
                    "policy {} handed to the policy servers; its id is published once they serve it",
                    serve.id
                ),
            })
        }
        Some(serve) => Some(confirm(ctx, domain, serve).await),
    };
    outcome(old, decision, hosted)
}

/// The pure end of the stage: what `_mta-sts` names, given whether the policy is served.
pub fn outcome(old: &MailDomainStatus, decision: Decision, hosted: Option<Hosted>) -> Rollout {
    let previous_id = old
        .policy_id
        .as_deref()
        .and_then(|id| PolicyId::parse(id).ok());
    let publish_id = match (&decision.serve, &hosted) {
        // MTA-STS off: no policy served, no `_mta-sts` record.
        (None, _) => None,
        (Some(serve), Some(Hosted::Served)) => Some(serve.id.clone()),
        (Some(_), _) => previous_id,
    };
    Rollout {
        served_policy: decision.serve.as_ref().map(|p| p.text.clone()),
        publish_id,
        hosted,
        decision,
    }
}

/// Asks the policy server (when configured) for `policy` the way a sender would, by Host.
async fn confirm(ctx: &Context, domain: &DomainName, policy: &PolicyFile) -> Hosted {
    let Some(base) = &ctx.config.policy_server else {
        return Hosted::Served;
    };
    let unreachable = |message: String| Hosted::NotServed {
        reason: reason::POLICY_SERVER_UNREACHABLE,
        message,
    };
    let host = policy_host(domain);
    let url = match base.join(WELL_KNOWN_PATH) {
        Ok(u) => u,
        Err(e) => return unreachable(e.to_string()),
    };
    let response = ctx
        .http
        .get(url.clone())
        .header(reqwest::header::HOST, &host)
        .timeout(Duration::from_secs(3))
        .send()
        .await;
    let response = match response {
        Ok(r) => r,
        Err(e) => return unreachable(format!("{url} (Host: {host}): {e}")),
    };
    let code = response.status();
    let body = response.text().await.unwrap_or_default();
    if code.as_u16() == 200 && body == policy.text {
        Hosted::Served
    } else {
        Hosted::NotServed {
            reason: reason::POLICY_NOT_SERVED,
            message: format!(
                "the policy server does not return policy {} yet for {host} (HTTP {code})",
                policy.id
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::mtasts::MxPattern;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).unwrap()
    }

    fn policy(mode: Mode, max_age: u32) -> PolicyFile {
        PolicyFile::new(Policy {
            mode,
            mx: vec![MxPattern::parse("mx.example.com").unwrap()],
            max_age,
        })
    }

    fn inputs(wanted: Option<&PolicyFile>, now: Timestamp) -> Inputs<'_> {
        Inputs {
            wanted,
            checks_on: true,
            force_enforce: false,
            skip_withdrawal: false,
            generation: Some(2),
            promotion: None,
            now,
        }
    }

    fn condition(type_: Type, status: Status) -> Condition {
        Condition {
            type_: type_.as_str().into(),
            status: status.as_str().into(),
            reason: "R".into(),
            message: "m".into(),
            observed_generation: Some(2),
            last_transition_time: Time(at(0)),
        }
    }

    #[test]
    fn the_id_follows_the_policy_only_once_it_is_served() {
        let new = policy(Mode::Testing, 604_800);
        let old = MailDomainStatus {
            policy_id: Some("previous".into()),
            ..Default::default()
        };
        let serving = |hosted| {
            let d = Decision {
                serve: Some(new.clone()),
                withdraw_until: None,
                enforce: None,
                promoted_at: None,
            };
            outcome(&old, d, Some(hosted))
        };
        let pending = serving(Hosted::NotServed {
            reason: reason::POLICY_PENDING,
            message: String::new(),
        });
        assert_eq!(
            pending.publish_id.as_ref().map(PolicyId::as_str),
            Some("previous")
        );
        assert_eq!(
            pending.served_policy.as_ref(),
            Some(&new.text),
            "handed over"
        );
        assert!(pending.handed_over(&old));
        assert_eq!(pending.requeue(at(0)), Some(POLICY_POLL));
        let served = serving(Hosted::Served);
        assert_eq!(served.publish_id, Some(new.id.clone()));
        assert_eq!(served.requeue(at(0)), None);
        // Off: no record, whatever was published before.
        let off = Decision {
            serve: None,
            withdraw_until: None,
            enforce: None,
            promoted_at: None,
        };
        let off = outcome(&old, off, None);
        assert_eq!((off.publish_id, off.served_policy), (None, None));
    }

    #[test]
    fn the_wanted_policy_is_served_and_ends_a_withdrawal() {
        let wanted = policy(Mode::Testing, 604_800);
        let old = MailDomainStatus {
            withdraw_until: Some(Time(at(100))),
            ..Default::default()
        };
        let d = decide(&old, &inputs(Some(&wanted), at(0)));
        assert_eq!(d.serve, Some(wanted));
        assert_eq!(d.withdraw_until, None);
        assert_eq!(d.enforce, None, "testing asked for: nothing to hold");
    }

    #[test]
    fn enforce_is_held_until_every_mx_is_covered_and_passes() {
        let wanted = policy(Mode::Enforce, 604_800);
        let mut old = MailDomainStatus::default();
        let d = decide(&old, &inputs(Some(&wanted), at(0)));
        let served = d.serve.expect("a policy");
        assert_eq!(served.policy.mode, Mode::Testing);
        assert_eq!(served.policy.mx, wanted.policy.mx);
        assert_ne!(served.id, wanted.id);
        assert!(
            matches!(&d.enforce, Some(Enforce::Held(why)) if why.contains("MXCovered has not been checked yet") && why.contains("SMTPTLSVerified"))
        );

        old.conditions = vec![
            condition(Type::MxCovered, Status::True),
            condition(Type::SmtpTlsVerified, Status::Unknown),
        ];
        let d = decide(&old, &inputs(Some(&wanted), at(0)));
        assert!(
            matches!(&d.enforce, Some(Enforce::Held(why)) if why.starts_with("SMTPTLSVerified is Unknown") && !why.contains("MXCovered"))
        );

        old.conditions[1] = condition(Type::SmtpTlsVerified, Status::True);
        let d = decide(&old, &inputs(Some(&wanted), at(0)));
        assert_eq!(d.serve.as_ref(), Some(&wanted));
        assert_eq!(d.enforce, Some(Enforce::Enforced));

        // Checks of an older generation do not promote: the MX hosts may have changed with
        // the spec. Once this policy is served, they keep it (no flapping on unrelated edits).
        let newer = Inputs {
            generation: Some(3),
            ..inputs(Some(&wanted), at(0))
        };
        let d = decide(&old, &newer);
        assert_eq!(d.serve.as_ref().map(|p| p.policy.mode), Some(Mode::Testing));
        assert!(
            matches!(&d.enforce, Some(Enforce::Held(why)) if why.contains("MXCovered has not been checked for generation 3 yet")),
            "{:?}",
            d.enforce
        );
        let serving = MailDomainStatus {
            served_policy: Some(wanted.text.clone()),
            ..old.clone()
        };
        assert_eq!(decide(&serving, &newer).enforce, Some(Enforce::Enforced));

        // Forced, or checks off: enforce at once (without checks, nothing reports on it).
        old.conditions.clear();
        let forced = Inputs {
            force_enforce: true,
            ..inputs(Some(&wanted), at(0))
        };
        assert_eq!(decide(&old, &forced).enforce, Some(Enforce::Enforced));
        let unchecked = Inputs {
            checks_on: false,
            ..inputs(Some(&wanted), at(0))
        };
        let d = decide(&old, &unchecked);
        assert_eq!((d.serve.as_ref(), d.enforce), (Some(&wanted), None));
    }

    #[test]
    fn a_withdrawal_serves_mode_none_for_the_old_max_age_then_nothing() {
        let before = policy(Mode::Enforce, 1_209_600);
        let old = MailDomainStatus {
            policy_id: Some(before.id.to_string()),
            served_policy: Some(before.text.clone()),
            ..Default::default()
        };
        let d = decide(&old, &inputs(None, at(0)));
        let none = d.serve.expect("mode none");
        assert_eq!(none.policy.mode, Mode::None);
        assert_eq!(none.policy.mx, before.policy.mx, "same mx, new id");
        assert_eq!(none.policy.max_age, WITHDRAWAL_MAX_AGE);
        assert_eq!(d.withdraw_until, Some(Time(at(1_209_600))));

        // Later passes keep the end; after it, nothing is served.
        let withdrawing = MailDomainStatus {
            served_policy: Some(none.text.clone()),
            withdraw_until: d.withdraw_until.clone(),
            ..old.clone()
        };
        let later = decide(&withdrawing, &inputs(None, at(1_000)));
        assert_eq!(later.withdraw_until, d.withdraw_until);
        assert_eq!(later.serve.map(|p| p.id), Some(none.id));
        let over = decide(&withdrawing, &inputs(None, at(1_209_600)));
        assert_eq!(over.serve, None);
        assert_eq!(over.withdraw_until, None);

        // A withdrawal that starts from a mode none policy waits one day; never published or
        // skipped: nothing to withdraw.
        let from_none = MailDomainStatus {
            served_policy: Some(none.text.clone()),
            ..old.clone()
        };
        assert_eq!(
            decide(&from_none, &inputs(None, at(0))).withdraw_until,
            Some(Time(at(i64::from(WITHDRAWAL_MAX_AGE))))
        );
        let skip = Inputs {
            skip_withdrawal: true,
            ..inputs(None, at(0))
        };
        assert_eq!(decide(&old, &skip).serve, None);
        assert_eq!(
            decide(&MailDomainStatus::default(), &inputs(None, at(0))).serve,
            None
        );
    }

    #[test]
    fn promote_serves_testing_until_the_reports_allow_then_enforce_as_safe_enforce_allows() {
        let testing = policy(Mode::Testing, 86_400);
        let now = at(1_000);
        let waiting = Inputs {
            promotion: Some(Promotion::Waiting("3 of 14 clean days".into())),
            ..inputs(Some(&testing), now)
        };
        let d = decide(&MailDomainStatus::default(), &waiting);
        assert_eq!(d.serve.as_ref().map(|p| p.policy.mode), Some(Mode::Testing));
        assert_eq!(
            d.enforce,
            Some(Enforce::AwaitingReports("3 of 14 clean days".into()))
        );
        assert_eq!(d.promoted_at, None);

        let promote = Inputs {
            promotion: Some(Promotion::Promote),
            ..inputs(Some(&testing), now)
        };
        // Checks not passed yet: held in testing, not promoted.
        let d = decide(&MailDomainStatus::default(), &promote);
        assert_eq!(d.serve.as_ref().map(|p| p.policy.mode), Some(Mode::Testing));
        assert!(matches!(d.enforce, Some(Enforce::Held(_))));
        assert_eq!(d.promoted_at, None);
        // Checks passed for this generation: enforce, promoted now; later passes keep the time.
        let checked = MailDomainStatus {
            conditions: vec![
                condition(Type::MxCovered, Status::True),
                condition(Type::SmtpTlsVerified, Status::True),
            ],
            ..MailDomainStatus::default()
        };
        let d = decide(&checked, &promote);
        assert_eq!(d.serve.as_ref().map(|p| p.policy.mode), Some(Mode::Enforce));
        assert_eq!(d.enforce, Some(Enforce::Enforced));
        assert_eq!(d.promoted_at, Some(Time(now)));
        let later = MailDomainStatus {
            promoted_at: Some(Time(at(5))),
            ..checked
        };
        assert_eq!(decide(&later, &promote).promoted_at, Some(Time(at(5))));
        // Without promote (or with mode changed) the promotion is forgotten.
        assert_eq!(
            decide(&later, &inputs(Some(&testing), now)).promoted_at,
            None
        );
    }
}
