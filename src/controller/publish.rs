//! The DNS stage, the only DNS writes: read what the provider holds at our names, plan
//! (desired × current → value-level operations), apply them in one request. Records this
//! MailDomain published before and no longer wants are retired (removed if still ours).

use crate::api::{MailDomain, RecordState, RecordStatus};
use crate::dns::DnsError;
use crate::dns::address::{self, AddressSet, Step};
use crate::dns::ownership::{Owner, marker_name};
use crate::dns::plan::{self, Current, Operation, State};
use crate::domain::record::{RecordKind, TxtRecord};

use super::dereference::Target;
use super::hosting::Hosting;

/// What the policy host's address records should be (`spec.mtaSts.policyHost.address`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// None wanted: ours, if any, are removed.
    None,
    /// Left as they are: the load balancer has no address yet, or a withdrawal still serves.
    Keep(String),
    Set(AddressSet),
}

impl Address {
    /// From the spec and what the hosting stage found; `serving`: a policy is served, `wanted`:
    /// the spec asks for one (false while a withdrawal serves `mode: none`).
    pub fn wanted(
        md: &MailDomain,
        hosting: Option<&Hosting>,
        serving: bool,
        wanted: bool,
        ttl: u32,
    ) -> Address {
        let spec = md
            .spec
            .mta_sts
            .as_ref()
            .and_then(|s| s.policy_host.as_ref())
            .and_then(|h| h.address.as_ref());
        match (serving, wanted, spec) {
            (false, _, _) | (true, true, None) => Address::None,
            (true, false, _) => {
                Address::Keep("the MTA-STS withdrawal still serves the policy".into())
            }
            (true, true, Some(spec)) => {
                if let Some(target) = &spec.cname {
                    return Address::Set(AddressSet::cname(target, ttl));
                }
                let lb = hosting.map(|h| h.load_balancer.clone()).unwrap_or_default();
                if let Some(name) = lb.hostnames.first() {
                    Address::Set(AddressSet::cname(name, ttl))
                } else if !lb.ips.is_empty() {
                    Address::Set(AddressSet::ips(&lb.ips, ttl))
                } else {
                    Address::Keep(
                        "waiting for the load balancer's address in the Ingress's or Gateway's status"
                            .into(),
                    )
                }
            }
        }
    }
}

/// Address record types as status lists them.
const ADDRESS_TYPES: [&str; 3] = ["CNAME", "A", "AAAA"];

/// What the DNS stage leaves for status.
#[derive(Debug, Clone, PartialEq)]
pub struct Published {
    /// Every desired record and where it stands.
    pub records: Vec<RecordStatus>,
    /// Conflicts, one message per record that someone else's value blocks.
    pub conflicts: Vec<String>,
    /// The provider writes nothing (`manual`): the records are for a human to publish.
    pub manual: bool,
    /// Records the provider never writes (the externalDNS export's shared names) that DNS
    /// does not hold yet: one line each for a human to publish.
    pub by_hand: Vec<String>,
    /// Records written but not yet answered by DNS (the externalDNS export): why, per record.
    pub awaiting: Vec<String>,
    /// TXT values added or removed by this pass.
    pub changes: usize,
}

/// The records of this pass at names `before` does not list, as Pending. The controller lists
/// them in status before it writes DNS: a pass whose write lands but whose answer is lost (or
/// whose process dies before its status write) has then still named them, so a later spec
/// without them retires them instead of leaving them in the zone.
pub fn listed_ahead(records: &[TxtRecord], before: &[RecordStatus]) -> Vec<RecordStatus> {
    records
        .iter()
        .filter(|r| {
            !before
                .iter()
                .any(|b| b.record_type == "TXT" && b.name == r.name)
        })
        .map(|r| RecordStatus {
            name: r.name.clone(),
            record_type: "TXT".into(),
            value: r.value.clone(),
            state: RecordState::Pending,
            message: Some("being published".into()),
        })
        .collect()
}

/// Publishes `records` through `target`, and the policy host's `address` at `host`. `before` is
/// what the previous pass reported in `status.records`: names it lists that `records` no longer
/// has are retired.
pub async fn run(
    target: &Target,
    records: &[TxtRecord],
    host: &str,
    address: &Address,
    before: &[RecordStatus],
) -> Result<Published, DnsError> {
    let had_address = before
        .iter()
        .any(|r| r.name == host && ADDRESS_TYPES.contains(&r.record_type.as_str()));
    let backend = &target.backend;
    // Records the backend never writes are only read: listed for a human until DNS has them.
    let (by_hand, records): (Vec<TxtRecord>, Vec<TxtRecord>) = records
        .iter()
        .cloned()
        .partition(|r| backend.refuses(&r.name, "TXT").is_some());
    let retired: Vec<(String, RecordKind)> = before
        .iter()
        .filter(|r| r.record_type == "TXT")
        .filter(|r| backend.refuses(&r.name, "TXT").is_none())
        .filter(|r| !records.iter().any(|d| d.name == r.name))
        .filter_map(|r| {
            RecordKind::ALL
                .into_iter()
                .find(|k| k.matches(&r.value))
                .map(|k| (r.name.clone(), k))
        })
        .collect();
    let mut names: Vec<String> = records
        .iter()
        .map(|r| r.name.clone())
        .chain(retired.iter().map(|(n, _)| n.clone()))
        .collect();
    names.extend(names.clone().iter().map(|n| marker_name(n)));
    names.extend(by_hand.iter().map(|r| r.name.clone()));
    let address_step =
        matches!(address, Address::Set(_)) || (had_address && *address == Address::None);
    if address_step {
        names.push(marker_name(host));
    }
    names.sort();
    names.dedup();
    let current = backend.read(&target.zone, &names).await?;
    let plan = plan::plan(&records, &retired, &current, &target.settings);
    if !plan.operations.is_empty() && backend.writes() {
        backend
            .apply(&target.zone, &current, &plan.operations)
            .await?;
    }
    let manual = !backend.writes();
    let written: Vec<(String, String)> = plan
        .outcomes
        .iter()
        .filter(|o| !manual && matches!(o.state, State::Published | State::Pending))
        .map(|o| (o.record.name.clone(), o.record.value.clone()))
        .collect();
    let unpublished = backend
        .unpublished(&target.zone, &written)
        .await?
        .unwrap_or_default();
    let mut awaiting = Vec::new();
    let mut conflicts = Vec::new();
    let mut changes = if manual { 0 } else { plan.operations.len() };
    let mut records: Vec<RecordStatus> = plan
        .outcomes
        .iter()
        .map(|o| {
            let (state, message) = match (&o.state, manual) {
                (State::Conflict(m), _) => {
                    conflicts.push(m.clone());
                    (RecordState::Conflict, Some(m.clone()))
                }
                (_, true) => (
                    RecordState::Pending,
                    Some(format!(
                        "the {} provider writes nothing: publish this record by hand",
                        backend.kind()
                    )),
                ),
                (State::Published | State::Pending, false) => {
                    match unpublished.iter().find(|(name, _)| *name == o.record.name) {
                        Some((name, why)) => {
                            awaiting.push(format!("{name}: {why}"));
                            (RecordState::Pending, Some(why.clone()))
                        }
                        None => (RecordState::Published, None),
                    }
                }
            };
            RecordStatus {
                name: o.record.name.clone(),
                record_type: "TXT".into(),
                value: o.record.value.clone(),
                state,
                message,
            }
        })
        .collect();
    let mut by_hand_lines = Vec::new();
    for record in &by_hand {
        let held = current
            .get(&record.name)
            .is_some_and(|rr| rr.values.contains(&record.value));
        let why = backend.refuses(&record.name, "TXT").unwrap_or_default();
        let message = (!held).then(|| {
            by_hand_lines.push(format!("{} TXT \"{}\" ({why})", record.name, record.value));
            format!("publish this record by hand: {why}")
        });
        records.push(RecordStatus {
            name: record.name.clone(),
            record_type: "TXT".into(),
            value: record.value.clone(),
            state: if held {
                RecordState::Published
            } else {
                RecordState::Pending
            },
            message,
        });
    }
    match address {
        Address::Keep(why) => records.extend(
            before
                .iter()
                .filter(|r| r.name == host && ADDRESS_TYPES.contains(&r.record_type.as_str()))
                .cloned()
                .map(|r| RecordStatus {
                    message: Some(why.clone()),
                    ..r
                }),
        ),
        _ if !address_step => {}
        Address::None | Address::Set(_) => {
            let want = match address {
                Address::Set(set) => Some(set),
                _ => None,
            };
            let (state, message) =
                publish_address(target, host, want, &current, manual, &mut changes).await?;
            if let (RecordState::Pending, Some(why), Some(set)) =
                (state, backend.refuses(host, "CNAME"), want)
            {
                let values: Vec<String> = set
                    .records()
                    .into_iter()
                    .map(|(t, v)| format!("{t} {v}"))
                    .collect();
                by_hand_lines.push(format!("{host} {} ({why})", values.join(", ")));
            }
            if let Some(m) = message.as_ref().filter(|_| state == RecordState::Conflict) {
                conflicts.push(m.clone());
            }
            for (rtype, value) in want.map(AddressSet::records).unwrap_or_default() {
                records.push(RecordStatus {
                    name: host.to_owned(),
                    record_type: rtype.into(),
                    value,
                    state,
                    message: message.clone(),
                });
            }
        }
    }
    Ok(Published {
        records,
        conflicts,
        manual,
        by_hand: by_hand_lines,
        awaiting,
        changes,
    })
}

/// The address step: read what is at `host`, plan against our marker, write (marker first, so
/// records of ours are never unmarked; on removal, marker last).
async fn publish_address(
    target: &Target,
    host: &str,
    want: Option<&AddressSet>,
    current: &Current,
    manual: bool,
    changes: &mut usize,
) -> Result<(RecordState, Option<String>), DnsError> {
    if manual {
        return Ok((
            RecordState::Pending,
            Some("the manual provider writes nothing: publish this record by hand".into()),
        ));
    }
    let me = &target.settings.owner;
    let marker = marker_name(host);
    let holder = current
        .get(&marker)
        .and_then(|rr| rr.values.iter().find_map(|v| Owner::parse(v)));
    if let Some(other) = holder.as_ref().filter(|o| *o != me) {
        return Ok((
            RecordState::Conflict,
            Some(format!(
                "{host} is managed by {} (owner {}); left untouched",
                other.resource, other.owner
            )),
        ));
    }
    let backend = &target.backend;
    let now = backend.read_address(&target.zone, host).await?;
    if let Some(why) = backend.refuses(host, "CNAME") {
        // Only read: right when DNS already has what is wanted (or nothing, when none is).
        return Ok(match address::plan(host, want, &now, true) {
            Step::Nothing => (RecordState::Published, None),
            _ if want.is_none() => (RecordState::Published, None),
            _ => (
                RecordState::Pending,
                Some(format!("publish this record by hand: {why}")),
            ),
        });
    }
    let mark = |add: bool| {
        let value = me.render();
        if add {
            Operation::Add {
                name: marker.clone(),
                ttl: want.map_or(300, |w| w.ttl),
                value,
            }
        } else {
            Operation::Remove {
                name: marker.clone(),
                value,
            }
        }
    };
    match address::plan(host, want, &now, holder.is_some()) {
        Step::Nothing => Ok((RecordState::Published, None)),
        Step::Conflict(message) => Ok((RecordState::Conflict, Some(message))),
        Step::Write { after, mark: new } => {
            if new {
                backend.apply(&target.zone, current, &[mark(true)]).await?;
            }
            backend
                .write_address(&target.zone, host, &now, &after)
                .await?;
            if after.is_empty() {
                backend.apply(&target.zone, current, &[mark(false)]).await?;
            }
            *changes += 1;
            Ok((RecordState::Published, None))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::dns::backend::{DnsBackend, Manual};
    use crate::dns::memory::InMemory;
    use crate::dns::ownership::Owner;
    use crate::dns::plan::{Current, Policy, RRset, Settings};

    const HOST: &str = "mta-sts.example.com";

    fn md_with(policy_host: serde_json::Value) -> MailDomain {
        let spec = serde_json::from_value(serde_json::json!({
            "domain": "example.com", "mx": ["mx1.example.com"],
            "mtaSts": {"mode": "testing", "policyHost": policy_host}
        }))
        .expect("spec");
        MailDomain::new("example", spec)
    }

    #[test]
    fn the_wanted_address_follows_the_spec_and_the_load_balancer() {
        use crate::controller::hosting::LoadBalancer;
        let cname =
            md_with(serde_json::json!({"ingress": {}, "address": {"cname": "LB.example.net"}}));
        assert_eq!(
            Address::wanted(&cname, None, true, true, 60),
            Address::Set(AddressSet::cname("lb.example.net", 60))
        );
        // Not serving any more (MTA-STS off, withdrawal over): none; a withdrawal: kept.
        assert_eq!(
            Address::wanted(&cname, None, false, false, 60),
            Address::None
        );
        assert!(matches!(
            Address::wanted(&cname, None, true, false, 60),
            Address::Keep(_)
        ));
        let lb = md_with(serde_json::json!({"ingress": {}, "address": {"fromLoadBalancer": {}}}));
        let mut hosting = Hosting::default();
        assert!(
            matches!(Address::wanted(&lb, Some(&hosting), true, true, 60), Address::Keep(why) if why.contains("load balancer")),
            "no address yet: nothing changes"
        );
        hosting.load_balancer = LoadBalancer {
            ips: vec!["192.0.2.1".parse().unwrap()],
            hostnames: Vec::new(),
        };
        assert_eq!(
            Address::wanted(&lb, Some(&hosting), true, true, 60),
            Address::Set(AddressSet::ips(&["192.0.2.1".parse().unwrap()], 60))
        );
        hosting.load_balancer.hostnames = vec!["elb.example.net".into()];
        assert_eq!(
            Address::wanted(&lb, Some(&hosting), true, true, 60),
            Address::Set(AddressSet::cname("elb.example.net", 60)),
            "a load balancer with a name: a CNAME to it"
        );
        let without = md_with(serde_json::json!({"ingress": {}}));
        assert_eq!(
            Address::wanted(&without, None, true, true, 60),
            Address::None
        );
    }

    fn target(backend: Arc<dyn DnsBackend>) -> Target {
        Target {
            backend,
            zone: "example.com".into(),
            settings: Settings {
                owner: Owner::new("test", "mail/example"),
                policy: Policy::Sync,
                adopt: false,
            },
        }
    }

    fn record(name: &str, kind: RecordKind, value: &str) -> TxtRecord {
        TxtRecord {
            name: name.into(),
            kind,
            ttl: 300,
            value: value.into(),
        }
    }

    #[tokio::test]
    async fn publishes_then_settles_and_retires_what_is_no_longer_wanted() {
        let zone = Arc::new(InMemory::with(Current::from([(
            "example.com".to_owned(),
            RRset {
                ttl: 900,
                values: vec!["site-verification=abc".into()],
            },
        )])));
        let t = target(zone.clone());
        let wanted = [
            record("example.com", RecordKind::Spf, "v=spf1 mx -all"),
            record("_dmarc.example.com", RecordKind::Dmarc, "v=DMARC1; p=none"),
        ];
        let first = run(&t, &wanted, HOST, &Address::None, &[])
            .await
            .expect("publish");
        assert!(
            first
                .records
                .iter()
                .all(|r| r.state == RecordState::Published)
        );
        assert_eq!(first.changes, 4, "two values, two markers");
        assert_eq!(
            zone.records()["example.com"],
            RRset {
                ttl: 900,
                values: vec!["site-verification=abc".into(), "v=spf1 mx -all".into()]
            },
            "the foreign value and the RRset's TTL stay"
        );

        let second = run(&t, &wanted, HOST, &Address::None, &first.records)
            .await
            .expect("again");
        assert_eq!((second.changes, zone.writes()), (0, 1), "settled: no write");

        let third = run(&t, &wanted[..1], HOST, &Address::None, &second.records)
            .await
            .expect("retire");
        assert_eq!(third.records.len(), 1);
        assert!(!zone.records().contains_key("_dmarc.example.com"));
        assert!(!zone.records().contains_key("_mailsec._dmarc.example.com"));
        assert!(zone.records().contains_key("example.com"));
    }

    #[tokio::test]
    async fn a_foreign_value_of_our_kind_is_a_conflict_and_nothing_is_written() {
        let zone = Arc::new(InMemory::with(Current::from([(
            "_dmarc.example.com".to_owned(),
            RRset {
                ttl: 300,
                values: vec!["v=DMARC1; p=reject".into()],
            },
        )])));
        let wanted = [record(
            "_dmarc.example.com",
            RecordKind::Dmarc,
            "v=DMARC1; p=none",
        )];
        let published = run(&target(zone.clone()), &wanted, HOST, &Address::None, &[])
            .await
            .expect("plan");
        assert_eq!(published.records[0].state, RecordState::Conflict);
        assert_eq!(published.conflicts.len(), 1);
        assert_eq!(zone.writes(), 0);
    }

    #[tokio::test]
    async fn provider_errors_come_back_unchanged_and_write_nothing() {
        let zone = Arc::new(InMemory::default());
        zone.fail_with(Some(DnsError::RateLimited {
            retry_after: Some(std::time::Duration::from_secs(7)),
            detail: "slow down".into(),
        }));
        let wanted = [record(
            "_dmarc.example.com",
            RecordKind::Dmarc,
            "v=DMARC1; p=none",
        )];
        let err = run(&target(zone.clone()), &wanted, HOST, &Address::None, &[])
            .await
            .expect_err("rate limited");
        assert_eq!(err.category(), "DNSRateLimited");
        assert_eq!(err.retry_after(), Some(std::time::Duration::from_secs(7)));
        assert!(zone.records().is_empty());
    }

    #[tokio::test]
    async fn a_change_between_read_and_write_is_detected() {
        // A backend that changes the zone after the read, as a concurrent writer would.
        struct Racing(InMemory);
        impl DnsBackend for Racing {
            fn kind(&self) -> &'static str {
                "racing"
            }
            fn read<'a>(
                &'a self,
                zone: &'a str,
                names: &'a [String],
            ) -> futures_util::future::BoxFuture<'a, Result<Current, DnsError>> {
                Box::pin(async move {
                    let current = self.0.read(zone, names).await?;
                    self.0.set(
                        "_dmarc.example.com",
                        RRset {
                            ttl: 60,
                            values: vec!["v=DMARC1; p=reject".into()],
                        },
                    );
                    Ok(current)
                })
            }
            fn apply<'a>(
                &'a self,
                zone: &'a str,
                current: &'a Current,
                operations: &'a [plan::Operation],
            ) -> futures_util::future::BoxFuture<'a, Result<(), DnsError>> {
                self.0.apply(zone, current, operations)
            }
            fn read_address<'a>(
                &'a self,
                zone: &'a str,
                name: &'a str,
            ) -> futures_util::future::BoxFuture<'a, Result<AddressSet, DnsError>> {
                self.0.read_address(zone, name)
            }
            fn write_address<'a>(
                &'a self,
                zone: &'a str,
                name: &'a str,
                before: &'a AddressSet,
                after: &'a AddressSet,
            ) -> futures_util::future::BoxFuture<'a, Result<(), DnsError>> {
                self.0.write_address(zone, name, before, after)
            }
        }
        let racing = Arc::new(Racing(InMemory::default()));
        let wanted = [record(
            "_dmarc.example.com",
            RecordKind::Dmarc,
            "v=DMARC1; p=none",
        )];
        let err = run(&target(racing.clone()), &wanted, HOST, &Address::None, &[])
            .await
            .expect_err("the foreign write wins");
        assert_eq!(err.category(), "DNSConcurrentChange");
        assert_eq!(
            racing.0.records()["_dmarc.example.com"].values,
            ["v=DMARC1; p=reject"],
            "the foreign value is not lost"
        );
    }

    #[tokio::test]
    async fn the_manual_provider_lists_every_record_to_publish_by_hand() {
        let wanted = [record(
            "_dmarc.example.com",
            RecordKind::Dmarc,
            "v=DMARC1; p=none",
        )];
        let published = run(
            &target(Arc::new(Manual)),
            &wanted,
            HOST,
            &Address::None,
            &[],
        )
        .await
        .expect("plan");
        assert!(published.manual);
        assert_eq!(published.changes, 0);
        assert_eq!(published.records[0].state, RecordState::Pending);
        assert!(
            published.records[0]
                .message
                .as_deref()
                .is_some_and(|m| m.contains("by hand"))
        );
    }
}
