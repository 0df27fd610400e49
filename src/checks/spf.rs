//! SPF evaluation limits, followed across includes and redirects the way a receiver would
//! (RFC 7208 §4.6.4): at most 10 DNS-querying terms in total, at most 2 "void" lookups (names
//! that answer nothing).

use super::dns::Dns;
use crate::domain::spf::{LOOKUP_LIMIT, Mechanism, SpfRecord, Term};

/// RFC 7208 §4.6.4: more than two void lookups is a permanent error.
pub const VOID_LIMIT: usize = 2;
/// Guards against include loops and absurd trees; far above what a valid record can reach.
const MAX_DEPTH: usize = 12;

/// What evaluating a record's tree costs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cost {
    pub lookups: usize,
    pub void: usize,
    /// Names that answered nothing.
    pub void_names: Vec<String>,
    /// What makes receivers return permerror on the way: an include without SPF, several SPF
    /// records, an invalid one, a loop.
    pub problems: Vec<String>,
}

/// Counts the DNS-querying terms of `record` and of everything it includes or redirects to.
pub async fn cost(dns: &Dns, record: &SpfRecord) -> Cost {
    let mut cost = Cost::default();
    walk(dns, record, 0, &mut cost).await;
    cost
}

async fn walk(dns: &Dns, record: &SpfRecord, depth: usize, cost: &mut Cost) {
    if depth > MAX_DEPTH {
        cost.problems
            .push("includes nest too deeply (a loop?)".into());
        return;
    }
    for term in &record.terms {
        // Stop early: past the limit the receiver has already given up.
        if cost.lookups > LOOKUP_LIMIT {
            return;
        }
        let target = match term {
            Term::Directive { mechanism, .. } if mechanism.costs_lookup() => {
                cost.lookups += 1;
                match mechanism {
                    Mechanism::Include(d) => Some(d.clone()),
                    Mechanism::A {
                        domain: Some(d), ..
                    }
                    | Mechanism::Exists(d) => {
                        if !d.contains('%') && dns.addresses(d).await.is_ok_and(|a| a.is_empty()) {
                            cost.void += 1;
                            cost.void_names.push(d.clone());
                        }
                        None
                    }
                    Mechanism::Mx {
                        domain: Some(d), ..
                    } => {
                        if !d.contains('%') && dns.mx(d).await.is_ok_and(|m| m.is_empty()) {
                            cost.void += 1;
                            cost.void_names.push(d.clone());
                        }
                        None
                    }
                    _ => None,
                }
            }
            Term::Redirect(d) => {
                cost.lookups += 1;
                Some(d.clone())
            }
            _ => None,
        };
        let Some(name) = target.filter(|n| !n.contains('%')) else {
            continue;
        };
        let values = dns.txt(&name).await.unwrap_or_default();
        let spf: Vec<&String> = values
            .iter()
            .filter(|v| crate::domain::record::RecordKind::Spf.matches(v))
            .collect();
        match spf.as_slice() {
            [] => {
                if values.is_empty() {
                    cost.void += 1;
                    cost.void_names.push(name.clone());
                }
                cost.problems.push(format!(
                    "{name} has no SPF record (receivers return permerror)"
                ));
            }
            [one] => match SpfRecord::parse(one) {
                Ok(inner) => Box::pin(walk(dns, &inner, depth + 1, cost)).await,
                Err(e) => cost.problems.push(format!("{name}: {e}")),
            },
            _ => cost.problems.push(format!(
                "{name} has several SPF records (receivers return permerror)"
            )),
        }
    }
}
