//! Status conditions: stable types and reasons, and updates that keep `lastTransitionTime`
//! unless the status flips, so an unchanged reconcile writes nothing.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

pub const READY: &str = "Ready";
pub const DNS_PUBLISHED: &str = "DNSPublished";
pub const POLICY_HOSTED: &str = "PolicyHosted";
/// With `enforce` asked for: whether it is published or held in testing (safe enforce).
pub const ENFORCED: &str = "Enforced";

/// Sets a condition in `conditions`, keeping its transition time when the status is unchanged.
pub fn set(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
) {
    let status = if status { "True" } else { "False" };
    set_raw(
        conditions,
        type_,
        status,
        reason,
        message.into(),
        generation,
    );
}

/// Like [`set`] with status `Unknown`.
pub fn set_unknown(
    conditions: &mut Vec<Condition>,
    type_: &str,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
) {
    set_raw(
        conditions,
        type_,
        "Unknown",
        reason,
        message.into(),
        generation,
    );
}

fn set_raw(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    generation: Option<i64>,
) {
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            if c.status != status {
                c.last_transition_time = now;
            }
            c.status = status.to_owned();
            c.reason = reason.to_owned();
            c.message = message;
            c.observed_generation = generation;
        }
        None => conditions.push(Condition {
            type_: type_.to_owned(),
            status: status.to_owned(),
            reason: reason.to_owned(),
            message,
            observed_generation: generation,
            last_transition_time: now,
        }),
    }
}

/// Whether two condition lists say the same, ignoring transition times.
pub fn same(a: &[Condition], b: &[Condition]) -> bool {
    let key = |c: &Condition| {
        (
            c.type_.clone(),
            c.status.clone(),
            c.reason.clone(),
            c.message.clone(),
            c.observed_generation,
        )
    };
    let mut a: Vec<_> = a.iter().map(key).collect();
    let mut b: Vec<_> = b.iter().map(key).collect();
    a.sort();
    b.sort();
    a == b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_moves_only_when_status_flips() {
        let mut c = Vec::new();
        set(&mut c, READY, false, "Pending", "waiting", Some(1));
        let first = c[0].last_transition_time.clone();
        std::thread::sleep(std::time::Duration::from_millis(5));
        set(
            &mut c,
            READY,
            false,
            "StillPending",
            "still waiting",
            Some(2),
        );
        assert_eq!(c[0].last_transition_time, first);
        assert_eq!(c[0].reason, "StillPending");
        set(&mut c, READY, true, "Published", "done", Some(2));
        assert_ne!(c[0].last_transition_time, first);
        let mut d = c.clone();
        d[0].last_transition_time = first;
        assert!(same(&c, &d));
        set(&mut d, READY, true, "Published", "other text", Some(2));
        assert!(!same(&c, &d));
    }
}
