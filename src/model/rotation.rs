//! The rotation of managed DKIM keys, pure: given the spec's `managed` entries, the keys the
//! previous pass left in status and what DNS shows now, the keys' next states, the keys to
//! make and the private keys to delete.
//!
//! Per entry: `Pending` (published) → `Active` once DNS serves the record and the record's TTL
//! has passed since it was published (no resolver still caches its absence) → `Retiring`
//! when the next key becomes active (still published: mail signed before the switch keeps
//! verifying) → `Retired` after the overlap (record withdrawn) → gone once the record is out of
//! DNS (its private key deleted then, never while published). A new key is made when an entry
//! has neither a pending nor an active key, when the active one is older than `rotateEvery`,
//! when the algorithm changed, or on request; there is never a moment without an active key
//! once the first one is active.

use std::time::Duration;

use jiff::tz::Offset;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::{DkimAlgorithm, DkimKeyState, DkimKeyStatus, ManagedKeySpec};

/// How long a key whose `dkim[]` entry was removed stays published (the default overlap).
pub const ORPHAN_OVERLAP: Duration = Duration::from_secs(336 * 3600);

/// One `dkim[]` entry with `managed`, its durations parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The entry's `selector` (lower case): the prefix of its keys' selectors.
    pub prefix: String,
    pub algorithm: DkimAlgorithm,
    /// `None`: never rotate.
    pub rotate_every: Option<Duration>,
    pub overlap: Duration,
    /// How long a pending key waits after it was published; `None`: the records' TTL.
    pub activate_after: Option<Duration>,
}

impl Entry {
    /// The entry of a spec, or why its durations do not parse.
    pub fn new(prefix: &str, spec: &ManagedKeySpec) -> Result<Entry, String> {
        let rotate = parse_duration(&spec.rotate_every)
            .map_err(|e| format!("rotateEvery `{}` {e}", spec.rotate_every))?;
        let overlap =
            parse_duration(&spec.overlap).map_err(|e| format!("overlap `{}` {e}", spec.overlap))?;
        if !rotate.is_zero() && rotate <= overlap {
            return Err(format!(
                "rotateEvery ({}) must be longer than overlap ({})",
                spec.rotate_every, spec.overlap
            ));
        }
        let activate_after = spec
            .activate_after
            .as_deref()
            .map(|a| parse_duration(a).map_err(|e| format!("activateAfter `{a}` {e}")))
            .transpose()?;
        Ok(Entry {
            prefix: prefix.to_ascii_lowercase(),
            algorithm: spec.algorithm,
            rotate_every: (!rotate.is_zero()).then_some(rotate),
            overlap,
            activate_after,
        })
    }
}

/// A Go-style duration as Kubernetes writes them: `4320h`, `90m`, `1h30m`, `10s`, `500ms`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let mut total = Duration::ZERO;
    let mut rest = text;
    if rest.is_empty() {
        return Err("is empty".into());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or("has a number without a unit (ms, s, m or h)")?;
        let number: f64 = rest[..digits]
            .parse()
            .map_err(|_| format!("has `{}`, not a number", &rest[..digits]))?;
        rest = &rest[digits..];
        let (unit, seconds) = [("ms", 0.001), ("h", 3600.0), ("m", 60.0), ("s", 1.0)]
            .into_iter()
            .find(|(u, _)| rest.starts_with(u))
            .ok_or("has a unit other than ms, s, m or h")?;
        rest = &rest[unit.len()..];
        total += Duration::try_from_secs_f64(number * seconds).map_err(|e| e.to_string())?;
    }
    Ok(total)
}

/// What DNS shows of the managed keys' records.
pub trait Observed {
    /// The record of `selector` is served (a resolver returns its value).
    fn served(&self, selector: &str) -> bool;
    /// The provider still holds the record of `selector`.
    fn published(&self, selector: &str) -> bool;
}

/// A key to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewKey {
    pub entry: String,
    pub selector: String,
    pub algorithm: DkimAlgorithm,
}

/// A state change, for events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub selector: String,
    pub from: DkimKeyState,
    pub to: DkimKeyState,
}

/// The outcome of one pass.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    /// The keys that stay, in their new states (without the keys still to be made).
    pub keys: Vec<DkimKeyStatus>,
    pub make: Vec<NewKey>,
    /// Secrets of retired keys whose records are out of DNS: delete them.
    pub delete: Vec<String>,
    /// Keys dropped from status with their Secrets.
    pub transitions: Vec<Transition>,
    /// The soonest a timed step is due (a TTL or overlap passing, a rotation).
    pub next: Option<Duration>,
}

/// `selector` for a key of `prefix` made at `now`, not one of `taken`.
pub fn selector(prefix: &str, now: Timestamp, taken: &[&str]) -> String {
    let day = Offset::UTC
        .to_datetime(now)
        .date()
        .strftime("%Y%m%d")
        .to_string();
    let base = format!("{prefix}{day}");
    if !taken.contains(&base.as_str()) {
        return base;
    }
    (2..)
        .map(|n| format!("{base}-{n}"))
        .find(|s| !taken.contains(&s.as_str()))
        .unwrap_or(base)
}

fn elapsed(since: &Time, now: Timestamp) -> Duration {
    now.duration_since(since.0)
        .try_into()
        .unwrap_or(Duration::ZERO)
}

fn remaining(since: &Time, wait: Duration, now: Timestamp) -> Duration {
    wait.saturating_sub(elapsed(since, now))
}

/// The next pass. `ttl` is the records' TTL; `rotate` asks every entry for a new key now.
pub fn plan(
    entries: &[Entry],
    old: &[DkimKeyStatus],
    observed: &dyn Observed,
    ttl: Duration,
    rotate: bool,
    now: Timestamp,
) -> Plan {
    let mut out = Plan::default();
    let mut next: Vec<Duration> = Vec::new();
    let at = Time(now);
    let set = |key: &mut DkimKeyStatus, to: DkimKeyState, out: &mut Vec<Transition>| {
        out.push(Transition {
            selector: key.selector.clone(),
            from: key.state,
            to,
        });
        key.state = to;
        key.since = at.clone();
    };
    let taken: Vec<&str> = old.iter().map(|k| k.selector.as_str()).collect();
    for key in old {
        let mut key = key.clone();
        let entry = entries.iter().find(|e| e.prefix == key.entry);
        // A key whose entry was removed keeps the default overlap: mail signed with it may
        // still be in flight.
        let overlap = entry.map_or(ORPHAN_OVERLAP, |e| e.overlap);
        match key.state {
            // A key whose entry is gone is replaced by nothing: it retires like any other.
            DkimKeyState::Pending | DkimKeyState::Active if entry.is_none() => {
                set(&mut key, DkimKeyState::Retiring, &mut out.transitions);
            }
            DkimKeyState::Retiring => {
                let left = remaining(&key.since, overlap, now);
                if left.is_zero() {
                    set(&mut key, DkimKeyState::Retired, &mut out.transitions);
                } else {
                    next.push(left);
                }
            }
            DkimKeyState::Retired if !observed.published(&key.selector) => {
                out.delete.push(key.secret_name.clone());
                continue;
            }
            _ => {}
        }
        out.keys.push(key);
    }
    for entry in entries {
        let mine = |k: &&DkimKeyStatus| k.entry == entry.prefix;
        // A pending key that DNS serves, a TTL after it was published, becomes the active one.
        let ready: Option<String> = out
            .keys
            .iter()
            .filter(mine)
            .filter(|k| k.state == DkimKeyState::Pending)
            .find_map(|k| {
                let wait = entry.activate_after.unwrap_or(ttl);
                let left = remaining(&k.since, wait, now);
                if observed.served(&k.selector) && left.is_zero() {
                    Some(k.selector.clone())
                } else {
                    next.push(if left.is_zero() {
                        ttl.min(Duration::from_secs(30))
                    } else {
                        left
                    });
                    None
                }
            });
        if let Some(selector) = ready {
            for key in out.keys.iter_mut().filter(|k| k.entry == entry.prefix) {
                if key.selector == selector {
                    set(key, DkimKeyState::Active, &mut out.transitions);
                } else if key.state == DkimKeyState::Active {
                    set(key, DkimKeyState::Retiring, &mut out.transitions);
                    next.push(entry.overlap);
                }
            }
        }
        let pending = out
            .keys
            .iter()
            .filter(mine)
            .any(|k| k.state == DkimKeyState::Pending);
        let active = out
            .keys
            .iter()
            .filter(mine)
            .find(|k| k.state == DkimKeyState::Active);
        let due = match active {
            None => true,
            Some(a) if a.algorithm != entry.algorithm => true,
            Some(_) if rotate => true,
            Some(a) => match entry.rotate_every {
                Some(every) => {
                    let left = remaining(&a.since, every, now);
                    if !left.is_zero() {
                        next.push(left);
                    }
                    left.is_zero()
                }
                None => false,
            },
        };
        if due && !pending {
            let mut all: Vec<&str> = taken.clone();
            all.extend(out.make.iter().map(|m| m.selector.as_str()));
            out.make.push(NewKey {
                entry: entry.prefix.clone(),
                selector: selector(&entry.prefix, now, &all),
                algorithm: entry.algorithm,
            });
        }
    }
    out.next = next.into_iter().min();
    out
}

/// The keys whose records are published: pending, active and retiring.
pub fn published(keys: &[DkimKeyStatus]) -> impl Iterator<Item = &DkimKeyStatus> {
    keys.iter().filter(|k| {
        matches!(
            k.state,
            DkimKeyState::Pending | DkimKeyState::Active | DkimKeyState::Retiring
        )
    })
}

/// `since` of a key `age` before `now` (for tests and for adopting a key).
pub fn before(now: Timestamp, age: Duration) -> Time {
    Time(
        now.checked_sub(SignedDuration::try_from(age).unwrap_or(SignedDuration::ZERO))
            .unwrap_or(now),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    struct Dns {
        served: BTreeSet<String>,
        published: BTreeSet<String>,
    }

    impl Observed for Dns {
        fn served(&self, s: &str) -> bool {
            self.served.contains(s)
        }
        fn published(&self, s: &str) -> bool {
            self.published.contains(s)
        }
    }

    fn dns(served: &[&str], published: &[&str]) -> Dns {
        Dns {
            served: served.iter().map(|s| s.to_string()).collect(),
            published: published.iter().map(|s| s.to_string()).collect(),
        }
    }

    const H: Duration = Duration::from_secs(3600);

    fn entry() -> Entry {
        Entry {
            prefix: "s".into(),
            algorithm: DkimAlgorithm::Ed25519,
            rotate_every: Some(100 * H),
            overlap: 10 * H,
            activate_after: None,
        }
    }

    fn key(selector: &str, state: DkimKeyState, since: Time) -> DkimKeyStatus {
        DkimKeyStatus {
            entry: "s".into(),
            selector: selector.into(),
            algorithm: DkimAlgorithm::Ed25519,
            state,
            since,
            secret_name: format!("md-dkim-{selector}"),
            public_key: "p".into(),
        }
    }

    fn t0() -> Timestamp {
        "2026-12-01T12:00:00Z".parse().unwrap()
    }

    fn states(plan: &Plan) -> Vec<(&str, DkimKeyState)> {
        plan.keys
            .iter()
            .map(|k| (k.selector.as_str(), k.state))
            .collect()
    }

    #[test]
    fn durations_parse_like_kubernetes_writes_them() {
        assert_eq!(parse_duration("4320h").unwrap(), 4320 * H);
        assert_eq!(
            parse_duration("1h30m10s").unwrap(),
            H + Duration::from_secs(1810)
        );
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
        for bad in ["", "10", "10d", "h", "1x"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        let spec = ManagedKeySpec {
            algorithm: DkimAlgorithm::Rsa2048,
            rotate_every: "10h".into(),
            overlap: "20h".into(),
            activate_after: None,
        };
        assert!(
            Entry::new("s", &spec)
                .unwrap_err()
                .contains("longer than overlap")
        );
    }

    #[test]
    fn a_full_rotation_never_leaves_the_entry_without_an_active_key() {
        let e = [entry()];
        let ttl = Duration::from_secs(60);
        // Nothing yet: make the first key.
        let p = plan(&e, &[], &dns(&[], &[]), ttl, false, t0());
        assert_eq!(
            p.make,
            [NewKey {
                entry: "s".into(),
                selector: "s20261201".into(),
                algorithm: DkimAlgorithm::Ed25519
            }]
        );
        // Pending, published but not served yet; then served but a TTL has not passed.
        let pending = vec![key("s20261201", DkimKeyState::Pending, Time(t0()))];
        let p = plan(&e, &pending, &dns(&[], &["s20261201"]), ttl, false, t0());
        assert_eq!(states(&p), [("s20261201", DkimKeyState::Pending)]);
        assert!(p.make.is_empty());
        let p = plan(
            &e,
            &pending,
            &dns(&["s20261201"], &["s20261201"]),
            ttl,
            false,
            before(t0(), Duration::ZERO).0,
        );
        assert_eq!(states(&p), [("s20261201", DkimKeyState::Pending)]);
        assert_eq!(p.next, Some(ttl));
        // Served and a TTL later: active.
        let later = t0() + SignedDuration::from_secs(61);
        let p = plan(
            &e,
            &pending,
            &dns(&["s20261201"], &["s20261201"]),
            ttl,
            false,
            later,
        );
        assert_eq!(states(&p), [("s20261201", DkimKeyState::Active)]);
        // Rotation due after 100 h: a second key, the first stays active.
        let active = vec![key("s20261201", DkimKeyState::Active, Time(t0()))];
        let due = t0() + SignedDuration::from_hours(100);
        let p = plan(
            &e,
            &active,
            &dns(&["s20261201"], &["s20261201"]),
            ttl,
            false,
            due,
        );
        assert_eq!(states(&p), [("s20261201", DkimKeyState::Active)]);
        assert_eq!(p.make[0].selector, "s20261205");
        // The second active: the first retires, keeps its record for the overlap, then goes.
        let both = vec![
            key("s20261201", DkimKeyState::Active, Time(t0())),
            key("s20261205", DkimKeyState::Pending, Time(due)),
        ];
        let switch = due + SignedDuration::from_secs(61);
        let all = dns(&["s20261201", "s20261205"], &["s20261201", "s20261205"]);
        let p = plan(&e, &both, &all, ttl, false, switch);
        assert_eq!(
            states(&p),
            [
                ("s20261201", DkimKeyState::Retiring),
                ("s20261205", DkimKeyState::Active)
            ]
        );
        assert!(p.make.is_empty());
        let retiring = p.keys.clone();
        let p = plan(
            &e,
            &retiring,
            &all,
            ttl,
            false,
            switch + SignedDuration::from_hours(9),
        );
        assert_eq!(p.keys[0].state, DkimKeyState::Retiring);
        let p = plan(
            &e,
            &retiring,
            &all,
            ttl,
            false,
            switch + SignedDuration::from_hours(10),
        );
        assert_eq!(p.keys[0].state, DkimKeyState::Retired);
        // Retired but still in DNS: the private key stays. Out of DNS: deleted.
        let retired = p.keys.clone();
        let p = plan(
            &e,
            &retired,
            &all,
            ttl,
            false,
            switch + SignedDuration::from_hours(11),
        );
        assert!(p.delete.is_empty());
        let p = plan(
            &e,
            &retired,
            &dns(&["s20261205"], &["s20261205"]),
            ttl,
            false,
            switch + SignedDuration::from_hours(11),
        );
        assert_eq!(p.delete, ["md-dkim-s20261201"]);
        assert_eq!(states(&p), [("s20261205", DkimKeyState::Active)]);
    }

    #[test]
    fn a_request_an_algorithm_change_or_a_removed_entry_start_the_next_step() {
        let ttl = Duration::from_secs(60);
        let active = vec![key("s20261201", DkimKeyState::Active, Time(t0()))];
        let d = dns(&["s20261201"], &["s20261201"]);
        // Rotate now: a second key the same day gets a suffix.
        let p = plan(&[entry()], &active, &d, ttl, true, t0());
        assert_eq!(p.make[0].selector, "s20261201-2");
        // Another algorithm: a new key of it.
        let rsa = Entry {
            algorithm: DkimAlgorithm::Rsa2048,
            ..entry()
        };
        let p = plan(&[rsa], &active, &d, ttl, false, t0());
        assert_eq!(p.make[0].algorithm, DkimAlgorithm::Rsa2048);
        // The entry removed: its key retires (stays published for... nothing more to wait for).
        let p = plan(&[], &active, &d, ttl, false, t0());
        assert_eq!(states(&p), [("s20261201", DkimKeyState::Retiring)]);
        assert!(p.make.is_empty());
        // Never rotating: no second key however old the first is.
        let never = Entry {
            rotate_every: None,
            ..entry()
        };
        let p = plan(
            &[never],
            &active,
            &d,
            ttl,
            false,
            t0() + SignedDuration::from_hours(10_000),
        );
        assert!(p.make.is_empty());
    }
}
