//! The DNS stage, the only DNS writes: read what the provider holds at our names, plan
//! (desired × current → value-level operations), apply them in one request. Records this
//! MailDomain published before and no longer wants are retired (removed if still ours).

use crate::api::{RecordState, RecordStatus};
use crate::dns::DnsError;
use crate::dns::ownership::marker_name;
use crate::dns::plan::{self, State};
use crate::domain::record::{RecordKind, TxtRecord};

use super::dereference::Target;

/// What the DNS stage leaves for status.
#[derive(Debug, Clone, PartialEq)]
pub struct Published {
    /// Every desired record and where it stands.
    pub records: Vec<RecordStatus>,
    /// Conflicts, one message per record that someone else's value blocks.
    pub conflicts: Vec<String>,
    /// The provider writes nothing (`manual`): the records are for a human to publish.
    pub manual: bool,
    /// TXT values added or removed by this pass.
    pub changes: usize,
}

/// Publishes `records` through `target`. `before` is what the previous pass reported in
/// `status.records`: names it lists that `records` no longer has are retired.
pub async fn run(
    target: &Target,
    records: &[TxtRecord],
    before: &[RecordStatus],
) -> Result<Published, DnsError> {
    let retired: Vec<(String, RecordKind)> = before
        .iter()
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
    names.sort();
    names.dedup();
    let backend = &target.backend;
    let current = backend.read(&target.zone, &names).await?;
    let plan = plan::plan(records, &retired, &current, &target.settings);
    if !plan.operations.is_empty() && backend.writes() {
        backend
            .apply(&target.zone, &current, &plan.operations)
            .await?;
    }
    let manual = !backend.writes();
    let mut conflicts = Vec::new();
    let records = plan
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
                (State::Published | State::Pending, false) => (RecordState::Published, None),
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
    Ok(Published {
        records,
        conflicts,
        manual,
        changes: if manual { 0 } else { plan.operations.len() },
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::dns::backend::{DnsBackend, Manual};
    use crate::dns::memory::InMemory;
    use crate::dns::ownership::Owner;
    use crate::dns::plan::{Current, Policy, RRset, Settings};

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
        let first = run(&t, &wanted, &[]).await.expect("publish");
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

        let second = run(&t, &wanted, &first.records).await.expect("again");
        assert_eq!((second.changes, zone.writes()), (0, 1), "settled: no write");

        let third = run(&t, &wanted[..1], &second.records)
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
        let published = run(&target(zone.clone()), &wanted, &[])
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
        let err = run(&target(zone.clone()), &wanted, &[])
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
        }
        let racing = Arc::new(Racing(InMemory::default()));
        let wanted = [record(
            "_dmarc.example.com",
            RecordKind::Dmarc,
            "v=DMARC1; p=none",
        )];
        let err = run(&target(racing.clone()), &wanted, &[])
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
        let published = run(&target(Arc::new(Manual)), &wanted, &[])
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
