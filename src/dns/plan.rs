//! The plan: desired TXT values × what DNS holds now → the record operations to perform, and
//! the state of each record. Provider-agnostic, pure, and conservative: a value the operator did
//! not create is never changed or removed unless the user asked to adopt it, values of other
//! kinds in a shared RRset are never touched, and each managed kind ends with exactly one value.

use std::collections::BTreeMap;

use super::ownership::{Owner, marker_name};
use crate::domain::record::{RecordKind, TxtRecord};

/// A TXT RRset as read from DNS, each value joined from its character-strings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RRset {
    pub ttl: u32,
    pub values: Vec<String>,
}

impl RRset {
    /// Whether two RRsets (or their absence) are the same: TTL and values, in any order.
    pub fn same(a: Option<&RRset>, b: Option<&RRset>) -> bool {
        let key = |r: Option<&RRset>| {
            r.map(|r| {
                let mut v = r.values.clone();
                v.sort();
                (r.ttl, v)
            })
        };
        key(a) == key(b)
    }
}

/// A name as APIs write it: with the root dot.
pub fn fqdn(name: &str) -> String {
    format!("{}.", name.trim_end_matches('.'))
}

/// What DNS holds now, by owner name. Missing names have no TXT records.
pub type Current = BTreeMap<String, RRset>;

/// One TXT value to add or remove. Providers apply a plan's operations together.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Operation {
    Add {
        name: String,
        ttl: u32,
        value: String,
    },
    Remove {
        name: String,
        value: String,
    },
}

/// What the operator may change (DNSProvider `policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    #[default]
    Sync,
    UpsertOnly,
    CreateOnly,
}

/// Where one desired record stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// DNS already holds exactly the desired value.
    Published,
    /// The plan's operations publish it.
    Pending,
    /// Something not ours is in the way; nothing is written for this record.
    Conflict(String),
}

/// The outcome for one desired record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub record: TxtRecord,
    pub state: State,
}

/// Operations plus per-record outcomes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub operations: Vec<Operation>,
    pub outcomes: Vec<Outcome>,
}

/// The inputs that are not records.
#[derive(Debug, Clone)]
pub struct Settings {
    pub owner: Owner,
    pub policy: Policy,
    /// Take over values of our kinds that exist without our marker.
    pub adopt: bool,
}

/// Who holds a name, from its marker.
enum Holder {
    Nobody,
    Us,
    Other(String),
}

fn holder(current: &Current, name: &str, me: &Owner) -> Holder {
    let marker = current
        .get(&marker_name(name))
        .and_then(|rr| rr.values.iter().find_map(|v| Owner::parse(v)));
    match marker {
        None => Holder::Nobody,
        Some(o) if o == *me => Holder::Us,
        Some(o) if o.owner == me.owner => Holder::Other(format!("MailDomain {}", o.resource)),
        Some(o) => Holder::Other(format!(
            "another mailsec installation (owner {}, MailDomain {})",
            o.owner, o.resource
        )),
    }
}

/// Plans `desired` against `current`; `retired` are `(name, kind)` pairs this MailDomain managed
/// before and no longer wants (their values are removed only if our marker is still there).
pub fn plan(
    desired: &[TxtRecord],
    retired: &[(String, RecordKind)],
    current: &Current,
    settings: &Settings,
) -> Plan {
    let mut p = Plan::default();
    for record in desired {
        let state = plan_record(record, current, settings, &mut p.operations);
        p.outcomes.push(Outcome {
            record: record.clone(),
            state,
        });
    }
    if settings.policy == Policy::Sync {
        for (name, kind) in retired {
            if desired.iter().any(|r| r.name == *name)
                || !matches!(holder(current, name, &settings.owner), Holder::Us)
            {
                continue;
            }
            let rr = current.get(name).cloned().unwrap_or_default();
            for value in rr.values.iter().filter(|v| kind.matches(v)) {
                p.operations.push(Operation::Remove {
                    name: name.clone(),
                    value: value.clone(),
                });
            }
            p.operations.push(Operation::Remove {
                name: marker_name(name),
                value: settings.owner.render(),
            });
        }
    }
    p
}

fn plan_record(
    record: &TxtRecord,
    current: &Current,
    s: &Settings,
    ops: &mut Vec<Operation>,
) -> State {
    let rr = current.get(&record.name).cloned().unwrap_or_default();
    let ours: Vec<&String> = rr
        .values
        .iter()
        .filter(|v| record.kind.matches(v))
        .collect();
    let has_desired = ours.iter().any(|v| **v == record.value);
    let extra: Vec<&String> = ours
        .iter()
        .copied()
        .filter(|v| **v != record.value)
        .collect();
    let who = holder(current, &record.name, &s.owner);
    if let Holder::Other(other) = &who {
        return State::Conflict(format!("{} is managed by {other}", record.name));
    }
    let owned = matches!(who, Holder::Us);
    if has_desired && extra.is_empty() {
        // Exactly right. An identical value we did not create stays unowned (we will never
        // delete it) unless the user asked to adopt it.
        if !owned && s.adopt {
            ops.push(marker_op(record, s));
        }
        return State::Published;
    }
    if !extra.is_empty() && !owned && !s.adopt {
        let listed = extra
            .iter()
            .map(|v| format!("`{v}`"))
            .collect::<Vec<_>>()
            .join(", ");
        return State::Conflict(format!(
            "{} already holds {} {listed} that this operator did not create; {}remove it or set spec.adoptExisting to take it over",
            record.name,
            record.kind,
            if has_desired || extra.len() > 1 {
                "receivers ignore all values when there is more than one; "
            } else {
                ""
            },
        ));
    }
    if !extra.is_empty() {
        match s.policy {
            Policy::CreateOnly => {
                return State::Conflict(format!(
                    "{} holds another {} value and the provider policy is create-only",
                    record.name, record.kind
                ));
            }
            Policy::UpsertOnly if extra.len() > 1 || has_desired => {
                return State::Conflict(format!(
                    "{} holds several {} values; receivers ignore them all, and the upsert-only policy forbids removing any",
                    record.name, record.kind
                ));
            }
            _ => {}
        }
    }
    for value in extra {
        ops.push(Operation::Remove {
            name: record.name.clone(),
            value: value.clone(),
        });
    }
    if !has_desired {
        let ttl = if rr.values.is_empty() {
            record.ttl
        } else {
            rr.ttl
        };
        ops.push(Operation::Add {
            name: record.name.clone(),
            ttl,
            value: record.value.clone(),
        });
    }
    if !owned {
        ops.push(marker_op(record, s));
    }
    State::Pending
}

/// The RRsets at every name `operations` touch once they are applied to `current`: what a
/// provider that replaces whole RRsets writes. Foreign values stay as they are, in their order;
/// an emptied name maps to an empty RRset (delete it). A new RRset takes the TTL of its first
/// added value; an existing one keeps its own.
pub fn rrsets_after(current: &Current, operations: &[Operation]) -> BTreeMap<String, RRset> {
    let mut after: BTreeMap<String, RRset> = BTreeMap::new();
    for op in operations {
        let name = match op {
            Operation::Add { name, .. } | Operation::Remove { name, .. } => name,
        };
        let rrset = after
            .entry(name.clone())
            .or_insert_with(|| current.get(name).cloned().unwrap_or_default());
        match op {
            Operation::Add { ttl, value, .. } => {
                if rrset.values.is_empty() {
                    rrset.ttl = *ttl;
                }
                if !rrset.values.contains(value) {
                    rrset.values.push(value.clone());
                }
            }
            Operation::Remove { value, .. } => rrset.values.retain(|v| v != value),
        }
    }
    after
}

/// Where the changes at `name` go in a write that a provider makes one name (or one record)
/// at a time: markers added first, markers removed last, values between. A write cut half-way
/// then never leaves a value of ours without the marker that says it is ours: the next pass
/// would take it for someone else's, neither retire it nor update it.
pub fn write_rank(name: &str, operations: &[Operation]) -> u8 {
    let is_marker = name.starts_with(&marker_name(""));
    let adds = operations
        .iter()
        .any(|op| matches!(op, Operation::Add { name: n, .. } if n == name));
    match (is_marker, adds) {
        (true, true) => 0,
        (false, _) => 1,
        (true, false) => 2,
    }
}

fn marker_op(record: &TxtRecord, s: &Settings) -> Operation {
    Operation::Add {
        name: marker_name(&record.name),
        ttl: record.ttl,
        value: s.owner.render(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rrsets_after_keeps_foreign_values_and_their_ttl() {
        let mut current = Current::new();
        current.insert(
            "example.com".into(),
            RRset {
                ttl: 900,
                values: vec!["google-site-verification=x".into(), "v=spf1 -all".into()],
            },
        );
        let ops = [
            Operation::Remove {
                name: "example.com".into(),
                value: "v=spf1 -all".into(),
            },
            Operation::Add {
                name: "example.com".into(),
                ttl: 300,
                value: "v=spf1 mx -all".into(),
            },
            Operation::Add {
                name: "_dmarc.example.com".into(),
                ttl: 300,
                value: "v=DMARC1; p=none".into(),
            },
            Operation::Remove {
                name: "gone.example.com".into(),
                value: "v=DMARC1; p=none".into(),
            },
        ];
        let after = rrsets_after(&current, &ops);
        assert_eq!(
            after["example.com"],
            RRset {
                ttl: 900,
                values: vec!["google-site-verification=x".into(), "v=spf1 mx -all".into()]
            }
        );
        assert_eq!(after["_dmarc.example.com"].ttl, 300);
        assert!(after["gone.example.com"].values.is_empty());
        assert_eq!(after.len(), 3, "names without operations are not listed");
    }

    fn rec(name: &str, kind: RecordKind, value: &str) -> TxtRecord {
        TxtRecord {
            name: name.into(),
            kind,
            ttl: 300,
            value: value.into(),
        }
    }

    fn settings() -> Settings {
        Settings {
            owner: Owner::new("test", "mail/example"),
            policy: Policy::Sync,
            adopt: false,
        }
    }

    fn current(entries: &[(&str, &[&str])]) -> Current {
        entries
            .iter()
            .map(|(n, vs)| {
                (
                    n.to_string(),
                    RRset {
                        ttl: 600,
                        values: vs.iter().map(|v| v.to_string()).collect(),
                    },
                )
            })
            .collect()
    }

    fn add(name: &str, ttl: u32, value: &str) -> Operation {
        Operation::Add {
            name: name.into(),
            ttl,
            value: value.into(),
        }
    }

    fn remove(name: &str, value: &str) -> Operation {
        Operation::Remove {
            name: name.into(),
            value: value.into(),
        }
    }

    const MARK: &str = "heritage=mailsec-operator,owner=test,resource=mail/example";

    #[test]
    fn creates_missing_records_with_a_marker() {
        let d = [rec(
            "_dmarc.example.com",
            RecordKind::Dmarc,
            "v=DMARC1; p=none",
        )];
        let p = plan(&d, &[], &Current::new(), &settings());
        assert_eq!(
            p.operations,
            vec![
                add("_dmarc.example.com", 300, "v=DMARC1; p=none"),
                add("_mailsec._dmarc.example.com", 300, MARK)
            ]
        );
        assert_eq!(p.outcomes[0].state, State::Pending);
    }

    #[test]
    fn foreign_values_in_a_shared_rrset_are_untouched() {
        let d = [rec("example.com", RecordKind::Spf, "v=spf1 mx -all")];
        let c = current(&[(
            "example.com",
            &["google-site-verification=abc", "v=spf10 looks-similar"],
        )]);
        let p = plan(&d, &[], &c, &settings());
        // Added with the RRset's TTL, so the foreign values keep theirs; nothing else removed.
        assert_eq!(
            p.operations,
            vec![
                add("example.com", 600, "v=spf1 mx -all"),
                add("_mailsec.example.com", 300, MARK)
            ]
        );
    }

    #[test]
    fn nothing_to_do_when_published_and_owned() {
        let d = [rec(
            "_dmarc.example.com",
            RecordKind::Dmarc,
            "v=DMARC1; p=none",
        )];
        let c = current(&[
            ("_dmarc.example.com", &["v=DMARC1; p=none"]),
            ("_mailsec._dmarc.example.com", &[MARK]),
        ]);
        let p = plan(&d, &[], &c, &settings());
        assert!(p.operations.is_empty());
        assert_eq!(p.outcomes[0].state, State::Published);
    }

    #[test]
    fn a_different_value_we_did_not_create_is_a_conflict_until_adopted() {
        let d = [rec(
            "_mta-sts.example.com",
            RecordKind::MtaSts,
            "v=STSv1; id=new",
        )];
        let c = current(&[("_mta-sts.example.com", &["v=STSv1; id=old"])]);
        let p = plan(&d, &[], &c, &settings());
        assert!(p.operations.is_empty());
        assert!(
            matches!(&p.outcomes[0].state, State::Conflict(m) if m.contains("v=STSv1; id=old") && m.contains("adoptExisting"))
        );
        let p = plan(
            &d,
            &[],
            &c,
            &Settings {
                adopt: true,
                ..settings()
            },
        );
        assert_eq!(
            p.operations,
            vec![
                remove("_mta-sts.example.com", "v=STSv1; id=old"),
                add("_mta-sts.example.com", 600, "v=STSv1; id=new"),
                add("_mailsec._mta-sts.example.com", 300, MARK)
            ]
        );
    }

    #[test]
    fn an_identical_value_we_did_not_create_is_left_unowned() {
        let d = [rec(
            "_dmarc.example.com",
            RecordKind::Dmarc,
            "v=DMARC1; p=none",
        )];
        let c = current(&[("_dmarc.example.com", &["v=DMARC1; p=none"])]);
        let p = plan(&d, &[], &c, &settings());
        assert!(p.operations.is_empty());
        assert_eq!(p.outcomes[0].state, State::Published);
        // And retiring it later removes nothing, because it was never ours.
        let p = plan(
            &[],
            &[("_dmarc.example.com".into(), RecordKind::Dmarc)],
            &c,
            &settings(),
        );
        assert!(p.operations.is_empty());
    }

    #[test]
    fn owned_values_are_replaced_and_duplicates_end_as_exactly_one() {
        let d = [rec("example.com", RecordKind::Spf, "v=spf1 mx -all")];
        let c = current(&[
            ("example.com", &["v=spf1 a -all", "V=SPF1 ~all", "other"]),
            ("_mailsec.example.com", &[MARK]),
        ]);
        let p = plan(&d, &[], &c, &settings());
        assert_eq!(
            p.operations,
            vec![
                remove("example.com", "v=spf1 a -all"),
                remove("example.com", "V=SPF1 ~all"),
                add("example.com", 600, "v=spf1 mx -all")
            ]
        );
    }

    #[test]
    fn policies_limit_changes() {
        let d = [rec(
            "_dmarc.example.com",
            RecordKind::Dmarc,
            "v=DMARC1; p=reject",
        )];
        let c = current(&[
            ("_dmarc.example.com", &["v=DMARC1; p=none"]),
            ("_mailsec._dmarc.example.com", &[MARK]),
        ]);
        let create_only = plan(
            &d,
            &[],
            &c,
            &Settings {
                policy: Policy::CreateOnly,
                ..settings()
            },
        );
        assert!(create_only.operations.is_empty());
        assert!(matches!(create_only.outcomes[0].state, State::Conflict(_)));
        let upsert = plan(
            &d,
            &[],
            &c,
            &Settings {
                policy: Policy::UpsertOnly,
                ..settings()
            },
        );
        assert_eq!(
            upsert.operations.len(),
            2,
            "a replacement is allowed: {:?}",
            upsert.operations
        );
        let retire = [("_dmarc.example.com".to_owned(), RecordKind::Dmarc)];
        assert!(
            plan(
                &[],
                &retire,
                &c,
                &Settings {
                    policy: Policy::UpsertOnly,
                    ..settings()
                }
            )
            .operations
            .is_empty()
        );
        assert_eq!(
            plan(&[], &retire, &c, &settings()).operations,
            vec![
                remove("_dmarc.example.com", "v=DMARC1; p=none"),
                remove("_mailsec._dmarc.example.com", MARK)
            ]
        );
    }

    #[test]
    fn another_owner_is_never_overridden() {
        let d = [rec(
            "_dmarc.example.com",
            RecordKind::Dmarc,
            "v=DMARC1; p=reject",
        )];
        let other = "heritage=mailsec-operator,owner=staging,resource=mail/example";
        let c = current(&[
            ("_dmarc.example.com", &["v=DMARC1; p=none"]),
            ("_mailsec._dmarc.example.com", &[other]),
        ]);
        for adopt in [false, true] {
            let p = plan(
                &d,
                &[],
                &c,
                &Settings {
                    adopt,
                    ..settings()
                },
            );
            assert!(p.operations.is_empty());
            assert!(
                matches!(&p.outcomes[0].state, State::Conflict(m) if m.contains("owner staging"))
            );
        }
        let sibling = "heritage=mailsec-operator,owner=test,resource=other/example";
        let c = current(&[("_mailsec._dmarc.example.com", &[sibling])]);
        let p = plan(&d, &[], &c, &settings());
        assert!(
            matches!(&p.outcomes[0].state, State::Conflict(m) if m.contains("MailDomain other/example"))
        );
    }

    #[test]
    fn markers_are_written_before_values_and_removed_after_them() {
        let add = |name: &str| Operation::Add {
            name: name.into(),
            ttl: 300,
            value: "v".into(),
        };
        let remove = |name: &str| Operation::Remove {
            name: name.into(),
            value: "v".into(),
        };
        let ops = [
            add("_dmarc.example.com"),
            add("_mailsec._dmarc.example.com"),
            remove("_mta-sts.example.com"),
            remove("_mailsec._mta-sts.example.com"),
        ];
        let mut names: Vec<&str> = vec![
            "_dmarc.example.com",
            "_mailsec._mta-sts.example.com",
            "_mailsec._dmarc.example.com",
            "_mta-sts.example.com",
        ];
        names.sort_by_key(|n| (write_rank(n, &ops), *n));
        assert_eq!(
            names,
            [
                "_mailsec._dmarc.example.com",
                "_dmarc.example.com",
                "_mta-sts.example.com",
                "_mailsec._mta-sts.example.com",
            ]
        );
    }
}
